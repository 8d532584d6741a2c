//! Filesystem versions: the snapshots and bookmarks of one filesystem.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VersionKind {
    Snapshot,
    Bookmark,
}

impl VersionKind {
    /// The character that separates filesystem and version name: `@` or `#`.
    pub fn delimiter(self) -> char {
        match self {
            VersionKind::Snapshot => '@',
            VersionKind::Bookmark => '#',
        }
    }
}

/// One snapshot or bookmark. Identity is the `guid`; the name is only a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilesystemVersion {
    pub kind: VersionKind,
    /// The part after `@` or `#`.
    pub name: String,
    pub guid: u64,
    /// Transaction group of creation: orders versions of one filesystem.
    pub createtxg: u64,
    /// Creation time, seconds since the Unix epoch.
    pub creation: i64,
}

impl FilesystemVersion {
    /// `@name` or `#name`, as appended to a filesystem path.
    pub fn relative_name(&self) -> String {
        format!("{}{}", self.kind.delimiter(), self.name)
    }

    pub fn is_snapshot(&self) -> bool {
        self.kind == VersionKind::Snapshot
    }
}
