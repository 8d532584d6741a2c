//! Dataset properties: checked names and values, where a value comes from, and
//! the placeholder marker that zferry (and zrepl before it) sets on filesystems
//! it creates only to hold replicated children.

use std::fmt;

use super::path::DatasetPath;
use super::version_path::DatasetName;

/// ZFS's limit on a property name (ZAP_MAXNAMELEN - 1).
pub const MAX_PROPERTY_NAME_LEN: usize = 255;
/// ZFS's limit on a user property value (ZAP_MAXVALUELEN - 1).
pub const MAX_PROPERTY_VALUE_LEN: usize = 8191;

/// zferry's marker for a filesystem that exists only as a parent of replicas.
pub const ZFERRY_PLACEHOLDER: &str = "zferry:placeholder";
/// zrepl's marker, honoured so that a receiver zrepl filled can be taken over.
pub const ZREPL_PLACEHOLDER: &str = "zrepl:placeholder";

/// A native (`readonly`) or user (`zferry:placeholder`) property name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PropertyName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("property name {name:?} must start with a lowercase letter and contain only a-z, 0-9, ':', '_', '-' and '.'")]
    BadName { name: String },
    #[error("property name {name:?} is longer than {MAX_PROPERTY_NAME_LEN} bytes")]
    NameTooLong { name: String },
    #[error("property value {value:?} contains {ch:?}; tabs, newlines and NUL cannot be read back from `zfs get -H`")]
    BadValue { value: String, ch: char },
    #[error("property value of {len} bytes is longer than ZFS allows ({MAX_PROPERTY_VALUE_LEN})")]
    ValueTooLong { len: usize },
}

impl PropertyName {
    /// User properties must be lowercase in ZFS (zfs_prop_user); native ones are.
    /// The leading letter also keeps a name from being read as an option.
    pub fn parse(s: &str) -> Result<PropertyName, PropertyError> {
        if s.len() > MAX_PROPERTY_NAME_LEN {
            return Err(PropertyError::NameTooLong { name: s.to_owned() });
        }
        let valid = s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '_' | '-' | '.')
            });
        if !valid {
            return Err(PropertyError::BadName { name: s.to_owned() });
        }
        Ok(PropertyName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// User properties contain a colon (`module:name`); native ones never do.
    pub fn is_user(&self) -> bool {
        self.0.contains(':')
    }
}

impl fmt::Display for PropertyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PropertyName {
    type Error = PropertyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PropertyName::parse(&s)
    }
}

impl From<PropertyName> for String {
    fn from(n: PropertyName) -> String {
        n.0
    }
}

/// A value zferry may set: one that reads back unchanged from `zfs get -H`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PropertyValue(String);

impl PropertyValue {
    pub fn parse(s: &str) -> Result<PropertyValue, PropertyError> {
        if s.len() > MAX_PROPERTY_VALUE_LEN {
            return Err(PropertyError::ValueTooLong { len: s.len() });
        }
        if let Some(ch) = s.chars().find(|c| matches!(c, '\t' | '\n' | '\r' | '\0')) {
            return Err(PropertyError::BadValue { value: s.to_owned(), ch });
        }
        Ok(PropertyValue(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PropertyValue {
    type Error = PropertyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PropertyValue::parse(&s)
    }
}

impl From<PropertyValue> for String {
    fn from(v: PropertyValue) -> String {
        v.0
    }
}

/// The SOURCE column of `zfs get`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PropertySource {
    /// Set on this dataset itself.
    Local,
    Default,
    Inherited {
        from: DatasetPath,
    },
    /// Set by `zfs receive` from the stream's properties.
    Received,
    Temporary,
    /// `-`: read-only, unset user property, or not applicable to this type.
    None,
}

impl PropertySource {
    /// Parses the SOURCE column; `None` for text that is not a known source.
    pub fn parse(s: &str) -> Option<PropertySource> {
        Some(match s {
            "local" => PropertySource::Local,
            "default" => PropertySource::Default,
            "received" => PropertySource::Received,
            "temporary" => PropertySource::Temporary,
            "-" => PropertySource::None,
            _ => {
                let from = DatasetPath::parse(s.strip_prefix("inherited from ")?).ok()?;
                PropertySource::Inherited { from }
            }
        })
    }
}

impl fmt::Display for PropertySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertySource::Local => f.write_str("local"),
            PropertySource::Default => f.write_str("default"),
            PropertySource::Inherited { from } => write!(f, "inherited from {from}"),
            PropertySource::Received => f.write_str("received"),
            PropertySource::Temporary => f.write_str("temporary"),
            PropertySource::None => f.write_str("-"),
        }
    }
}

/// One line of `zfs get -H -p -o name,property,value,source`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropertyRow {
    pub dataset: DatasetName,
    pub property: PropertyName,
    /// As printed; `-` stands for "unset" or "not applicable".
    pub value: String,
    pub source: PropertySource,
}

/// True only if `filesystem` carries `zferry:placeholder=on` or
/// `zrepl:placeholder=on` set on itself. An inherited marker does not count: the
/// children of a placeholder inherit it, yet they are real replicas. A marker
/// received from a sender does not count either: it describes the sender's side.
pub fn is_placeholder(filesystem: &DatasetPath, rows: &[PropertyRow]) -> bool {
    rows.iter().any(|row| {
        matches!(&row.dataset, DatasetName::Filesystem(fs) if fs == filesystem)
            && matches!(row.property.as_str(), ZFERRY_PLACEHOLDER | ZREPL_PLACEHOLDER)
            && row.value == "on"
            && row.source == PropertySource::Local
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dataset: &str, property: &str, value: &str, source: &str) -> PropertyRow {
        PropertyRow {
            dataset: DatasetName::parse(dataset).expect("dataset"),
            property: PropertyName::parse(property).expect("property"),
            value: value.to_owned(),
            source: PropertySource::parse(source).expect("source"),
        }
    }

    fn fs(s: &str) -> DatasetPath {
        DatasetPath::parse(s).expect("path")
    }

    #[test]
    fn property_names() {
        for ok in ["readonly", "zferry:placeholder", "com.example:x-y_z.1", "receive_resume_token"]
        {
            assert!(PropertyName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-r", "Readonly", "zferry:Placeholder", "a b", "a=b", ":x", "1x"] {
            assert_eq!(PropertyName::parse(bad), Err(PropertyError::BadName { name: bad.into() }));
        }
        assert!(PropertyName::parse("zferry:placeholder").expect("user").is_user());
        assert!(!PropertyName::parse("readonly").expect("native").is_user());
    }

    #[test]
    fn property_values_must_survive_tab_separated_output() {
        assert!(PropertyValue::parse("on").is_ok());
        assert!(PropertyValue::parse("a=b with space").is_ok());
        assert!(PropertyValue::parse("").is_ok());
        assert_eq!(
            PropertyValue::parse("a\tb"),
            Err(PropertyError::BadValue { value: "a\tb".into(), ch: '\t' })
        );
        assert!(PropertyValue::parse("a\nb").is_err());
        assert!(PropertyValue::parse("a\0b").is_err());
        assert!(PropertyValue::parse(&"x".repeat(MAX_PROPERTY_VALUE_LEN)).is_ok());
        assert!(PropertyValue::parse(&"x".repeat(MAX_PROPERTY_VALUE_LEN + 1)).is_err());
    }

    #[test]
    fn checked_on_zfs_fuse_property_sources() {
        // Seen in zfs-fuse 0.7.0 output of `zfs get -H -p -o name,property,value,source`.
        assert_eq!(PropertySource::parse("local"), Some(PropertySource::Local));
        assert_eq!(PropertySource::parse("default"), Some(PropertySource::Default));
        assert_eq!(PropertySource::parse("received"), Some(PropertySource::Received));
        assert_eq!(PropertySource::parse("-"), Some(PropertySource::None));
        assert_eq!(
            PropertySource::parse("inherited from zt-A/a"),
            Some(PropertySource::Inherited { from: fs("zt-A/a") })
        );
        assert_eq!(PropertySource::parse("inherited from "), None);
        assert_eq!(PropertySource::parse("Local"), None);
        for s in ["local", "default", "received", "temporary", "-", "inherited from p/a b"] {
            assert_eq!(PropertySource::parse(s).expect(s).to_string(), s);
        }
    }

    #[test]
    fn placeholder_needs_a_local_on() {
        // Rows as zfs-fuse 0.7.0 printed them after `zfs set zferry:placeholder=on zt-A/a`
        // and `zfs set zrepl:placeholder=on zt-A/a/b`.
        let rows = [
            row("zt-A", "zferry:placeholder", "-", "-"),
            row("zt-A/a", "zferry:placeholder", "on", "local"),
            row("zt-A/a@s1", "zferry:placeholder", "on", "inherited from zt-A/a"),
            row("zt-A/a/b", "zferry:placeholder", "on", "inherited from zt-A/a"),
            row("zt-A/a/b", "zrepl:placeholder", "on", "local"),
            row("zt-A/a/c", "zferry:placeholder", "on", "inherited from zt-A/a"),
            row("zt-A/rcv", "zferry:placeholder", "on", "received"),
            row("zt-A/off", "zferry:placeholder", "off", "local"),
            row("zt-A/other", "com.example:placeholder", "on", "local"),
        ];
        assert!(!is_placeholder(&fs("zt-A"), &rows));
        assert!(is_placeholder(&fs("zt-A/a"), &rows));
        assert!(is_placeholder(&fs("zt-A/a/b"), &rows), "zrepl's marker counts");
        assert!(!is_placeholder(&fs("zt-A/a/c"), &rows), "inherited marker does not count");
        assert!(!is_placeholder(&fs("zt-A/rcv"), &rows), "received marker does not count");
        assert!(!is_placeholder(&fs("zt-A/off"), &rows));
        assert!(!is_placeholder(&fs("zt-A/other"), &rows));
        assert!(!is_placeholder(&fs("zt-A/missing"), &rows));
    }
}
