//! Full names of snapshots and bookmarks (`pool/fs@snap`, `pool/fs#mark`), and of
//! any dataset that `zfs list` or `zfs get` may print.

use std::fmt;

use super::path::{allowed_char, DatasetPath, PathError, MAX_NAME_LEN};
use super::version::VersionKind;

/// The part after `@` or `#`: checked by the same rules as a dataset component.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VersionName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionNameError {
    #[error("empty snapshot or bookmark name")]
    Empty,
    #[error("snapshot or bookmark name {name:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong { name: String },
    #[error("snapshot or bookmark name {name:?} contains {ch:?}, which ZFS does not allow")]
    BadChar { name: String, ch: char },
}

impl VersionName {
    pub fn parse(s: &str) -> Result<VersionName, VersionNameError> {
        if s.is_empty() {
            return Err(VersionNameError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(VersionNameError::TooLong { name: s.to_owned() });
        }
        if let Some(ch) = s.chars().find(|c| !allowed_char(*c)) {
            return Err(VersionNameError::BadChar { name: s.to_owned(), ch });
        }
        Ok(VersionName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VersionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VersionName {
    type Error = VersionNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        VersionName::parse(&s)
    }
}

impl From<VersionName> for String {
    fn from(n: VersionName) -> String {
        n.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionPathError {
    #[error("{input:?} names no snapshot or bookmark: it has no '@' or '#'")]
    NoDelimiter { input: String },
    #[error("{input:?} has more than one '@' or '#'")]
    ManyDelimiters { input: String },
    #[error("{input:?} is a bookmark, but a snapshot is required here")]
    NotASnapshot { input: String },
    #[error("{input:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong { input: String },
    #[error("in {input:?}: {source}")]
    Filesystem { input: String, source: PathError },
    #[error("in {input:?}: {source}")]
    Name { input: String, source: VersionNameError },
}

/// `pool/fs@snap` or `pool/fs#bookmark`. Holding one of these (never a bare
/// [`DatasetPath`]) is what lets `zfs destroy` be built without any risk of
/// naming a whole filesystem.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VersionPath {
    filesystem: DatasetPath,
    kind: VersionKind,
    name: VersionName,
}

impl VersionPath {
    /// Joins the parts, checking ZFS's limit on the full name.
    pub fn new(
        filesystem: DatasetPath,
        kind: VersionKind,
        name: VersionName,
    ) -> Result<VersionPath, VersionPathError> {
        let path = VersionPath { filesystem, kind, name };
        let text = path.to_string();
        if text.len() > MAX_NAME_LEN {
            return Err(VersionPathError::TooLong { input: text });
        }
        Ok(path)
    }

    pub fn parse(s: &str) -> Result<VersionPath, VersionPathError> {
        let mut delimiters = s.match_indices(['@', '#']);
        let Some((at, delim)) = delimiters.next() else {
            return Err(VersionPathError::NoDelimiter { input: s.to_owned() });
        };
        if delimiters.next().is_some() {
            return Err(VersionPathError::ManyDelimiters { input: s.to_owned() });
        }
        let kind = if delim == "@" { VersionKind::Snapshot } else { VersionKind::Bookmark };
        let filesystem = DatasetPath::parse(&s[..at])
            .map_err(|source| VersionPathError::Filesystem { input: s.to_owned(), source })?;
        let name = VersionName::parse(&s[at + 1..])
            .map_err(|source| VersionPathError::Name { input: s.to_owned(), source })?;
        VersionPath::new(filesystem, kind, name)
    }

    pub fn filesystem(&self) -> &DatasetPath {
        &self.filesystem
    }

    pub fn kind(&self) -> VersionKind {
        self.kind
    }

    pub fn name(&self) -> &VersionName {
        &self.name
    }
}

impl fmt::Display for VersionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.filesystem, self.kind.delimiter(), self.name)
    }
}

impl std::str::FromStr for VersionPath {
    type Err = VersionPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VersionPath::parse(s)
    }
}

impl TryFrom<String> for VersionPath {
    type Error = VersionPathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        VersionPath::parse(&s)
    }
}

impl From<VersionPath> for String {
    fn from(p: VersionPath) -> String {
        p.to_string()
    }
}

/// A [`VersionPath`] that is known to be a snapshot: what `zfs send`, `zfs hold`
/// and `zfs bookmark` require.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotPath(VersionPath);

impl SnapshotPath {
    pub fn new(
        filesystem: DatasetPath,
        name: VersionName,
    ) -> Result<SnapshotPath, VersionPathError> {
        VersionPath::new(filesystem, VersionKind::Snapshot, name).map(SnapshotPath)
    }

    pub fn parse(s: &str) -> Result<SnapshotPath, VersionPathError> {
        SnapshotPath::try_from(VersionPath::parse(s)?)
    }

    pub fn filesystem(&self) -> &DatasetPath {
        self.0.filesystem()
    }

    pub fn name(&self) -> &VersionName {
        self.0.name()
    }

    pub fn as_version(&self) -> &VersionPath {
        &self.0
    }
}

impl TryFrom<VersionPath> for SnapshotPath {
    type Error = VersionPathError;
    fn try_from(p: VersionPath) -> Result<Self, Self::Error> {
        match p.kind {
            VersionKind::Snapshot => Ok(SnapshotPath(p)),
            VersionKind::Bookmark => Err(VersionPathError::NotASnapshot { input: p.to_string() }),
        }
    }
}

impl From<SnapshotPath> for VersionPath {
    fn from(p: SnapshotPath) -> VersionPath {
        p.0
    }
}

impl fmt::Display for SnapshotPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SnapshotPath {
    type Err = VersionPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SnapshotPath::parse(s)
    }
}

impl TryFrom<String> for SnapshotPath {
    type Error = VersionPathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SnapshotPath::parse(&s)
    }
}

impl From<SnapshotPath> for String {
    fn from(p: SnapshotPath) -> String {
        p.to_string()
    }
}

/// Any name `zfs list` / `zfs get` prints: a filesystem (or volume), or a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DatasetName {
    Filesystem(DatasetPath),
    Version(VersionPath),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetNameError {
    #[error(transparent)]
    Filesystem(#[from] PathError),
    #[error(transparent)]
    Version(#[from] VersionPathError),
}

impl DatasetName {
    pub fn parse(s: &str) -> Result<DatasetName, DatasetNameError> {
        if s.contains(['@', '#']) {
            Ok(DatasetName::Version(VersionPath::parse(s)?))
        } else {
            Ok(DatasetName::Filesystem(DatasetPath::parse(s)?))
        }
    }

    /// The filesystem itself, or the one a version belongs to.
    pub fn filesystem(&self) -> &DatasetPath {
        match self {
            DatasetName::Filesystem(fs) => fs,
            DatasetName::Version(v) => v.filesystem(),
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetName::Filesystem(fs) => fs.fmt(f),
            DatasetName::Version(v) => v.fmt(f),
        }
    }
}

impl From<DatasetPath> for DatasetName {
    fn from(p: DatasetPath) -> Self {
        DatasetName::Filesystem(p)
    }
}

impl From<VersionPath> for DatasetName {
    fn from(p: VersionPath) -> Self {
        DatasetName::Version(p)
    }
}

impl From<SnapshotPath> for DatasetName {
    fn from(p: SnapshotPath) -> Self {
        DatasetName::Version(p.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snapshots_and_bookmarks() {
        let s = VersionPath::parse("pool/a@zferry_2024-01-01:00.00").expect("snapshot");
        assert_eq!(s.filesystem().to_string(), "pool/a");
        assert_eq!(s.kind(), VersionKind::Snapshot);
        assert_eq!(s.name().as_str(), "zferry_2024-01-01:00.00");
        assert_eq!(s.to_string(), "pool/a@zferry_2024-01-01:00.00");

        let b = VersionPath::parse("pool#mark").expect("bookmark");
        assert_eq!(b.kind(), VersionKind::Bookmark);
        assert_eq!(b.to_string(), "pool#mark");
    }

    #[test]
    fn checked_on_zfs_fuse_snapshot_names_may_contain_space_colon_dot() {
        // `zfs snapshot "zt-A/a/b@with space:1.x_y-z"` succeeded on zfs-fuse 0.7.0.
        assert!(VersionPath::parse("zt-A/a/b@with space:1.x_y-z").is_ok());
    }

    #[test]
    fn rejects_malformed_names_quoting_the_input() {
        let no_delim = VersionPath::parse("pool/a");
        assert_eq!(no_delim, Err(VersionPathError::NoDelimiter { input: "pool/a".into() }));
        // zfs-fuse: "cannot snapshot 'zt-A/a@b#c': invalid character '#' in name"
        assert_eq!(
            VersionPath::parse("pool/a@b#c"),
            Err(VersionPathError::ManyDelimiters { input: "pool/a@b#c".into() })
        );
        assert_eq!(
            VersionPath::parse("pool/a@b@c"),
            Err(VersionPathError::ManyDelimiters { input: "pool/a@b@c".into() })
        );
        // zfs-fuse: "cannot snapshot 'zt-A/a@': empty component in name"
        assert_eq!(
            VersionPath::parse("pool/a@"),
            Err(VersionPathError::Name {
                input: "pool/a@".into(),
                source: VersionNameError::Empty
            })
        );
        assert!(matches!(
            VersionPath::parse("@s"),
            Err(VersionPathError::Filesystem { source: PathError::Empty, .. })
        ));
        assert!(matches!(VersionPath::parse("pool/@s"), Err(VersionPathError::Filesystem { .. })));
        assert!(matches!(
            VersionPath::parse("pool@a/b"),
            Err(VersionPathError::Name { source: VersionNameError::BadChar { ch: '/', .. }, .. })
        ));
        let long = format!("pool@{}", "s".repeat(MAX_NAME_LEN - 4));
        assert!(matches!(VersionPath::parse(&long), Err(VersionPathError::TooLong { .. })));
        let fits = format!("pool@{}", "s".repeat(MAX_NAME_LEN - 5));
        assert!(VersionPath::parse(&fits).is_ok());
        let err = VersionPath::parse("pool/a@b c\t").expect_err("tab");
        assert!(err.to_string().contains("pool/a@b c\\t"), "{err}");
    }

    #[test]
    fn snapshot_path_refuses_bookmarks() {
        assert!(SnapshotPath::parse("pool/a@s").is_ok());
        assert_eq!(
            SnapshotPath::parse("pool/a#s"),
            Err(VersionPathError::NotASnapshot { input: "pool/a#s".into() })
        );
    }

    #[test]
    fn version_name_rules() {
        assert_eq!(VersionName::parse(""), Err(VersionNameError::Empty));
        assert_eq!(
            VersionName::parse("a%b"),
            Err(VersionNameError::BadChar { name: "a%b".into(), ch: '%' })
        );
        assert!(matches!(
            VersionName::parse(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(VersionNameError::TooLong { .. })
        ));
    }

    #[test]
    fn dataset_name_tells_filesystems_from_versions() {
        assert!(matches!(DatasetName::parse("pool/a"), Ok(DatasetName::Filesystem(_))));
        assert!(matches!(DatasetName::parse("pool/a@s"), Ok(DatasetName::Version(_))));
        assert!(matches!(DatasetName::parse("pool/a#s"), Ok(DatasetName::Version(_))));
        assert!(DatasetName::parse("pool//a").is_err());
        let v = DatasetName::parse("pool/a@s").expect("version");
        assert_eq!(v.filesystem().to_string(), "pool/a");
        assert_eq!(v.to_string(), "pool/a@s");
    }

    #[test]
    fn serde_round_trips_and_checks() {
        let v = VersionPath::parse("pool/a#m").expect("bookmark");
        let bytes = postcard::to_allocvec(&v).expect("encode");
        assert_eq!(postcard::from_bytes::<VersionPath>(&bytes), Ok(v));
        let bad = postcard::to_allocvec("pool/a#m").expect("encode");
        assert!(postcard::from_bytes::<SnapshotPath>(&bad).is_err());
    }
}
