//! The replication planner: what to send, per filesystem, and never wrongly.
//!
//! - [`diff`]: where a receiver stands in the sender's history (matched by guid).
//! - [`policy`]: the admin's choices (initial replication, snapshot filter, protection).
//! - [`filter`]: which sender filesystems a job replicates.
//! - [`mapping`]: where sender filesystems land on the receiver; placeholders.
//! - [`steps`]: one filesystem's transfers, from its diff and the policies.
//! - [`tree`]: the step machine that replicates a whole tree of filesystems.

pub mod diff;
pub mod filter;
pub mod mapping;
pub mod policy;
pub mod steps;
pub mod tree;

pub use diff::{diff, Conflict, Diff, DiffError, ListingError, Side};
pub use filter::{FilesystemFilter, FilterError};
pub use mapping::{ClientIdentity, Mapping, MappingError};
pub use policy::{
    InitialReplication, Protection, SnapshotFilter, SnapshotFilterError, UnknownSetting,
};
pub use steps::{
    plan, Idle, Plan, PlanError, ReplicationPolicy, ResumeInfo, Step, StepKind, StepMode,
};
pub use tree::{
    ActionId, ActionReport, ActionResult, ActionStatus, FilesystemReport, FsFailure, FsRole,
    FsState, PlanAction, ReceiverFilesystem, SenderFilesystem, TreeError, TreeMachine, TreeOptions,
    TreeProgress, DEFAULT_MAX_CONCURRENT_FILESYSTEMS,
};
