//! The ZFS model: dataset paths, versions, typed commands and their output parsers.

pub mod command;
pub mod dialect;
pub mod parse;
pub mod path;
pub mod property;
pub mod resume;
pub mod version;
pub mod version_path;

pub use dialect::{detect, Capabilities, Dialect, DialectError, OpenZfsVersion};
pub use path::{DatasetPath, PathError};
pub use property::{
    is_placeholder, PropertyError, PropertyName, PropertyRow, PropertySource, PropertyValue,
};
pub use resume::{ResumeToken, ResumeTokenError, ResumeTokenInfo};
pub use version::{FilesystemVersion, VersionKind};
pub use version_path::{
    DatasetName, DatasetNameError, SnapshotPath, VersionName, VersionNameError, VersionPath,
    VersionPathError,
};
