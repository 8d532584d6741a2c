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
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' ')
}

impl DatasetPath {
    pub fn parse(s: &str) -> Result<DatasetPath, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        if s.len() > MAX_NAME_LEN {
            return Err(PathError::TooLong { path: s.to_owned() });
        }
        let mut components = Vec::new();
        for comp in s.split('/') {
            if comp.is_empty() {
                return Err(PathError::EmptyComponent { path: s.to_owned() });
            }
            if let Some(ch) = comp.chars().find(|c| !allowed_char(*c)) {
                return Err(PathError::BadChar { path: s.to_owned(), ch });
            }
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

    /// `self` with `tail` appended, checked again against the length limit.
    pub fn join(&self, tail: &[String]) -> Result<DatasetPath, PathError> {
        let mut components = self.components.clone();
        components.extend_from_slice(tail);
        let joined = DatasetPath { components };
        if joined.to_string().len() > MAX_NAME_LEN {
            return Err(PathError::TooLong { path: joined.to_string() });
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
