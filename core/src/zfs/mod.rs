//! The ZFS model: dataset paths, versions, typed commands and their output parsers.

pub mod path;
pub mod version;
pub mod version_path;

pub use path::{DatasetPath, PathError};
pub use version::{FilesystemVersion, VersionKind};
pub use version_path::{
    DatasetName, DatasetNameError, SnapshotPath, VersionName, VersionNameError, VersionPath,
    VersionPathError,
};
