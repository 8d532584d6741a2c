//! The ZFS model: dataset paths, versions, typed commands and their output parsers.

pub mod path;
pub mod version;

pub use path::{DatasetPath, PathError};
pub use version::{FilesystemVersion, VersionKind};
