//! The replication planner: what to send, per filesystem, and never wrongly.
//!
//! - [`diff`]: where a receiver stands in the sender's history (matched by guid).
//! - [`policy`]: the admin's choices (initial replication, snapshot filter, protection).

pub mod diff;
pub mod policy;

pub use diff::{diff, Conflict, Diff, DiffError, ListingError, Side};
pub use policy::{
    InitialReplication, Protection, SnapshotFilter, SnapshotFilterError, UnknownSetting,
};
