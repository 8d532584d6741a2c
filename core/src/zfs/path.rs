//! Dataset paths: `pool/a/b`, validated by ZFS's own rules.

use std::fmt;

/// ZFS's limit on a full dataset name (ZFS_MAX_DATASET_NAME_LEN - 1).
pub const MAX_NAME_LEN: usize = 255;

/// A filesystem or volume path: a pool name and zero or more child components.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetPath {
    components: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty dataset path")]
    Empty,
    #[error("dataset path {path:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong { path: String },
    #[error("dataset path {path:?} has an empty component")]
    EmptyComponent { path: String },
    #[error("dataset path {path:?} contains {ch:?}, which ZFS does not allow in a dataset name")]
    BadChar { path: String, ch: char },
    #[error("dataset path {path:?} has a component {component:?}, which ZFS reserves")]
    ReservedComponent { path: String, component: String },
    #[error("dataset path {path:?} does not start with a letter; ZFS pool names must")]
    PoolNotLetter { path: String },
}

/// The characters ZFS allows in a dataset, snapshot or bookmark name component
/// (zfs_namecheck.c's `valid_char`, without the internal `%`).
pub(crate) fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' ')
}

fn check_component(path: &str, comp: &str) -> Result<(), PathError> {
    if comp.is_empty() {
        return Err(PathError::EmptyComponent { path: path.to_owned() });
    }
    if let Some(ch) = comp.chars().find(|c| !allowed_char(*c)) {
        return Err(PathError::BadChar { path: path.to_owned(), ch });
    }
    // OpenZFS rejects `.` and `..` as components; they would also read as
    // relative paths in any mountpoint derived from the name.
    if comp == "." || comp == ".." {
        return Err(PathError::ReservedComponent {
            path: path.to_owned(),
            component: comp.to_owned(),
        });
    }
    Ok(())
}

impl DatasetPath {
    pub fn parse(s: &str) -> Result<DatasetPath, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(PathError::TooLong { path: s.to_owned() });
        }
        // A pool name starts with a letter (zpool rejects anything else). This also
        // guarantees that no path handed to `zfs` as an argument starts with `-`
        // and could be taken for an option.
        if !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(PathError::PoolNotLetter { path: s.to_owned() });
        }
        let mut components = Vec::new();
        for comp in s.split('/') {
            check_component(s, comp)?;
            components.push(comp.to_owned());
        }
        Ok(DatasetPath { components })
    }

    pub fn components(&self) -> &[String] {
        &self.components
    }

    pub fn depth(&self) -> usize {
        self.components.len()
    }

    pub fn pool(&self) -> &str {
        &self.components[0]
    }

    /// The parent dataset, `None` for a pool's root.
    pub fn parent(&self) -> Option<DatasetPath> {
        (self.components.len() > 1).then(|| DatasetPath {
            components: self.components[..self.components.len() - 1].to_vec(),
        })
    }

    /// True if `self` is `other` or lies below it.
    pub fn has_prefix(&self, other: &DatasetPath) -> bool {
        self.components.starts_with(&other.components)
    }

    /// `self` with `prefix` taken off its front; `None` unless `self.has_prefix(prefix)`.
    pub fn strip_prefix(&self, prefix: &DatasetPath) -> Option<&[String]> {
        self.components.strip_prefix(prefix.components.as_slice())
    }

    /// `self` with `tail` appended; each new component and the length are checked.
    pub fn join(&self, tail: &[String]) -> Result<DatasetPath, PathError> {
        let mut components = self.components.clone();
        components.extend_from_slice(tail);
        let joined = DatasetPath { components };
        let text = joined.to_string();
        for comp in tail {
            check_component(&text, comp)?;
        }
        if text.len() > MAX_NAME_LEN {
            return Err(PathError::TooLong { path: text });
        }
        Ok(joined)
    }
}

impl fmt::Display for DatasetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(c)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DatasetPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetPath::parse(s)
    }
}

impl TryFrom<String> for DatasetPath {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DatasetPath::parse(&s)
    }
}

impl From<DatasetPath> for String {
    fn from(p: DatasetPath) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DatasetPath {
        DatasetPath::parse(s).expect(s)
    }

    #[test]
    fn parses_and_displays_round_trip() {
        for s in ["pool", "pool/a", "pool/a/b", "zt-A/a/b", "p/with space/x:y.z_-"] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p("pool/a/b").components(), ["pool", "a", "b"]);
        assert_eq!(p("pool/a/b").depth(), 3);
        assert_eq!(p("pool/a/b").pool(), "pool");
    }

    #[test]
    fn rejects_bad_paths_naming_the_input() {
        assert_eq!(DatasetPath::parse(""), Err(PathError::Empty));
        let cases = [
            ("pool/", PathError::EmptyComponent { path: "pool/".into() }),
            ("pool//a", PathError::EmptyComponent { path: "pool//a".into() }),
            ("pool/a@s", PathError::BadChar { path: "pool/a@s".into(), ch: '@' }),
            ("pool/a#b", PathError::BadChar { path: "pool/a#b".into(), ch: '#' }),
            ("pool/a%recv", PathError::BadChar { path: "pool/a%recv".into(), ch: '%' }),
            ("pool/a\tb", PathError::BadChar { path: "pool/a\tb".into(), ch: '\t' }),
            (
                "pool/..",
                PathError::ReservedComponent { path: "pool/..".into(), component: "..".into() },
            ),
            (
                "pool/.",
                PathError::ReservedComponent { path: "pool/.".into(), component: ".".into() },
            ),
            ("-pool/a", PathError::PoolNotLetter { path: "-pool/a".into() }),
            ("1pool", PathError::PoolNotLetter { path: "1pool".into() }),
            ("/pool", PathError::PoolNotLetter { path: "/pool".into() }),
        ];
        for (input, want) in cases {
            assert_eq!(DatasetPath::parse(input), Err(want), "{input:?}");
        }
        let long = format!("p/{}", "a".repeat(MAX_NAME_LEN));
        assert!(matches!(DatasetPath::parse(&long), Err(PathError::TooLong { .. })));
        assert!(DatasetPath::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn checked_on_zfs_fuse_a_component_may_start_with_a_dash() {
        // `zfs create zt-A/-bad` succeeded on zfs-fuse 0.7.0: only the pool must
        // start with a letter, so no full path can look like an option.
        assert!(DatasetPath::parse("pool/-bad").is_ok());
    }

    #[test]
    fn parent_prefix_and_join() {
        assert_eq!(p("pool/a/b").parent(), Some(p("pool/a")));
        assert_eq!(p("pool").parent(), None);
        assert!(p("pool/a/b").has_prefix(&p("pool/a")));
        assert!(p("pool/a").has_prefix(&p("pool/a")));
        assert!(!p("pool/ab").has_prefix(&p("pool/a")));
        let tail = p("src/x/y").strip_prefix(&p("src")).expect("prefix").to_vec();
        assert_eq!(p("dst/r").join(&tail), Ok(p("dst/r/x/y")));
        assert_eq!(p("pool").strip_prefix(&p("other")), None);
    }

    #[test]
    fn join_rejects_components_that_would_change_the_path() {
        let bad = ["a/b".to_owned()];
        assert!(matches!(p("pool").join(&bad), Err(PathError::BadChar { ch: '/', .. })));
        assert!(matches!(p("pool").join(&[String::new()]), Err(PathError::EmptyComponent { .. })));
        assert!(matches!(
            p("pool").join(&["..".to_owned()]),
            Err(PathError::ReservedComponent { .. })
        ));
        let long = ["a".repeat(MAX_NAME_LEN)];
        assert!(matches!(p("pool").join(&long), Err(PathError::TooLong { .. })));
    }

    #[test]
    fn serde_is_a_checked_string() {
        let bytes = postcard::to_allocvec(&p("pool/a")).expect("encode");
        assert_eq!(postcard::from_bytes::<DatasetPath>(&bytes), Ok(p("pool/a")));
        let bad = postcard::to_allocvec("pool//a").expect("encode");
        assert!(postcard::from_bytes::<DatasetPath>(&bad).is_err());
    }
}
