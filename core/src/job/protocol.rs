//! The calls between an active job (push, pull) and its passive peer (sink,
//! source). Each is declared once; the RPC layer needs nothing else.
//!
//! Paths on the wire are always the *sender's* dataset paths: a sink maps them
//! under its receive root itself, and refuses any that would leave it, so a client
//! can never name a dataset outside its own subtree.

use serde::{Deserialize, Serialize};

use super::destroy::DestroyOutcome;
use crate::plan::steps::ResumeInfo;
use crate::rpc::Method;
use crate::zfs::{DatasetPath, FilesystemVersion, ResumeTokenInfo};

/// What one side knows of one filesystem it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemState {
    /// The sender's path of this filesystem.
    pub path: DatasetPath,
    /// A placeholder: created by zferry (or zrepl) to hold children, no data.
    pub placeholder: bool,
    /// A partially received stream can be resumed with this token.
    pub resume_token: Option<String>,
}

/// Lists the filesystems the peer holds for this job: a source, those its filter
/// selects; a sink, those under the client's receive root.
#[derive(Debug)]
pub struct ListFilesystems;

impl Method for ListFilesystems {
    const NAME: &'static str = "zferry.ListFilesystems";
    type Request = ();
    type Response = Vec<FilesystemState>;
}

/// The snapshots and bookmarks of one filesystem, oldest first.
#[derive(Debug)]
pub struct ListVersions;

impl Method for ListVersions {
    const NAME: &'static str = "zferry.ListVersions";
    type Request = DatasetPath;
    type Response = Vec<FilesystemVersion>;
}

/// One step of replication: from `from` (none for a full send) to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub filesystem: DatasetPath,
    pub from: Option<FilesystemVersion>,
    pub to: FilesystemVersion,
    /// Send every snapshot between `from` and `to` (`zfs send -I`).
    pub intermediate: bool,
    /// Resume a partial receive instead of starting the step afresh.
    pub resume_token: Option<String>,
}

/// Push: the client streams a `zfs send` of the step; the sink receives it.
#[derive(Debug)]
pub struct Receive;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveRequest {
    pub step: StepSpec,
    /// The target is a placeholder that this full stream replaces.
    pub replace_placeholder: bool,
}

impl Method for Receive {
    const NAME: &'static str = "zferry.Receive";
    type Request = ReceiveRequest;
    type Response = ();
}

/// Pull: the source answers with the `zfs send` stream of the step.
#[derive(Debug)]
pub struct Send;

impl Method for Send {
    const NAME: &'static str = "zferry.Send";
    type Request = StepSpec;
    type Response = ();
}

/// Decodes a partial receive's resume token on the sending side: only the host
/// that has the snapshot it names can read it. The source answers only for a
/// filesystem it serves and a token that names that filesystem.
#[derive(Debug)]
pub struct DescribeResumeToken;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeResumeTokenRequest {
    /// The sender's path of the filesystem being received.
    pub filesystem: DatasetPath,
    pub token: String,
}

/// What a resume token continues, in the sender's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeDescription {
    pub from_guid: Option<u64>,
    pub to_guid: u64,
    /// The snapshot being sent, `fs@name`.
    pub to_name: String,
    /// Bytes the receiver already has.
    pub bytes: u64,
}

impl Method for DescribeResumeToken {
    const NAME: &'static str = "zferry.DescribeResumeToken";
    type Request = DescribeResumeTokenRequest;
    type Response = ResumeDescription;
}

impl From<&ResumeTokenInfo> for ResumeDescription {
    fn from(info: &ResumeTokenInfo) -> Self {
        ResumeDescription {
            from_guid: info.from_guid,
            to_guid: info.to_guid,
            to_name: info.to_name.to_string(),
            bytes: info.bytes,
        }
    }
}

impl ResumeDescription {
    /// What the planner needs to put the resumption first.
    pub fn into_resume_info(self, token: String) -> ResumeInfo {
        // The planner's messages name the snapshot as `@name`.
        let toname = match self.to_name.split_once('@') {
            Some((_, name)) => name.to_owned(),
            None => self.to_name,
        };
        ResumeInfo {
            token,
            toguid: self.to_guid,
            fromguid: self.from_guid,
            toname,
            bytes: self.bytes,
        }
    }
}

/// Destroys snapshots of one filesystem that the active side's pruning let go:
/// a sink within the client's subtree, a source among the filesystems it
/// serves. Each snapshot is named with its guid and destroyed only if it still
/// has it.
#[derive(Debug)]
pub struct DestroySnapshots;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyRequest {
    /// The sender's path of the filesystem.
    pub filesystem: DatasetPath,
    pub snapshots: Vec<FilesystemVersion>,
}

impl Method for DestroySnapshots {
    const NAME: &'static str = "zferry.DestroySnapshots";
    type Request = DestroyRequest;
    type Response = DestroyOutcome;
}

/// Pull: after a filesystem replicated, asks the source to bookmark the newest
/// snapshot the puller now has (the replication cursor, see
/// [`super::zfsops::cursor_name`]) and to drop this client's older cursor.
#[derive(Debug)]
pub struct MoveCursor;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveCursorRequest {
    pub filesystem: DatasetPath,
    pub to: FilesystemVersion,
}

impl Method for MoveCursor {
    const NAME: &'static str = "zferry.MoveCursor";
    type Request = MoveCursorRequest;
    type Response = ();
}
