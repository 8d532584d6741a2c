//! Replication policies chosen by the admin: what to do on first contact, which
//! snapshots to ship, and how strongly incremental bases are protected.

use std::fmt;
use std::str::FromStr;

use crate::zfs::FilesystemVersion;

/// What to send when the receiver has no snapshot of a filesystem yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitialReplication {
    /// A full send of the newest selected snapshot only (zrepl: `most_recent`).
    #[default]
    MostRecent,
    /// A full send of the oldest selected snapshot, then incrementals up to the
    /// newest (zrepl: `all`).
    All,
    /// Refuse: the admin seeds the receiver by hand (zrepl: `fail`).
    Fail,
}

impl InitialReplication {
    pub const ALL: [InitialReplication; 3] =
        [InitialReplication::MostRecent, InitialReplication::All, InitialReplication::Fail];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InitialReplication::MostRecent => "most_recent",
            InitialReplication::All => "all",
            InitialReplication::Fail => "fail",
        }
    }
}

impl fmt::Display for InitialReplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration word that names no known choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {setting} {value:?}; expected one of: {expected}")]
pub struct UnknownSetting {
    pub setting: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for InitialReplication {
    type Err = UnknownSetting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InitialReplication::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            UnknownSetting {
                setting: "initial replication policy",
                value: s.to_owned(),
                expected: "most_recent, all, fail",
            }
        })
    }
}

/// How strongly the versions a transfer depends on are protected while it runs
/// (zrepl's `replication.protection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protection {
    /// Hold the step's source and target so an interrupted step can always resume
    /// (`guarantee_resumability`). Holds are per step, so steps are per snapshot.
    #[default]
    Resumability,
    /// Keep a bookmark of the last common version so the next incremental is always
    /// possible (`guarantee_incremental_replication`).
    IncrementalReplication,
    /// No holds, no bookmarks (`guarantee_nothing`).
    Nothing,
}

impl Protection {
    pub const ALL: [Protection; 3] =
        [Protection::Resumability, Protection::IncrementalReplication, Protection::Nothing];

    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Resumability => "guarantee_resumability",
            Protection::IncrementalReplication => "guarantee_incremental_replication",
            Protection::Nothing => "guarantee_nothing",
        }
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protection {
    type Err = UnknownSetting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protection::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| UnknownSetting {
            setting: "replication protection",
            value: s.to_owned(),
            expected:
                "guarantee_resumability, guarantee_incremental_replication, guarantee_nothing",
        })
    }
}

/// Which sender snapshots are shipped, by name.
///
/// A snapshot is selected when its name (the part after `@`) starts with one of the
/// prefixes; with no prefix list every snapshot is selected. Prefixes, not regular
/// expressions: the crate has no regex engine, and a snapshot naming scheme is in
/// practice a prefix (`zrepl_`, `autosnap_`). Snapshots that are not selected
/// ("foreign" ones, e.g. an admin's manual `@before-upgrade`) are never a step's
/// target; they may still be the common ancestor an incremental starts from, because
/// guid equality makes them exactly as good a base as any selected snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotFilter {
    /// Sorted and deduplicated; `None` selects everything.
    prefixes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFilterError {
    #[error(
        "the snapshot prefix list is empty, so no snapshot would ever be replicated; \
         leave the filter out to replicate every snapshot"
    )]
    NoPrefixes,
    #[error("snapshot prefix {0:?} is empty; leave the filter out to replicate every snapshot")]
    EmptyPrefix(String),
    #[error(
        "snapshot prefix {prefix:?} contains {ch:?}, which ZFS does not allow in a snapshot name"
    )]
    BadChar { prefix: String, ch: char },
}

/// The characters ZFS accepts in a snapshot name.
fn snapshot_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' ')
}

impl SnapshotFilter {
    /// Every snapshot is selected.
    pub fn all() -> SnapshotFilter {
        SnapshotFilter { prefixes: None }
    }

    /// Only snapshots whose name starts with one of `prefixes`.
    pub fn with_prefixes<I, S>(prefixes: I) -> Result<SnapshotFilter, SnapshotFilterError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list = Vec::new();
        for prefix in prefixes {
            let prefix: String = prefix.into();
            if prefix.is_empty() {
                return Err(SnapshotFilterError::EmptyPrefix(prefix));
            }
            if let Some(ch) = prefix.chars().find(|c| !snapshot_name_char(*c)) {
                return Err(SnapshotFilterError::BadChar { prefix, ch });
            }
            list.push(prefix);
        }
        if list.is_empty() {
            return Err(SnapshotFilterError::NoPrefixes);
        }
        list.sort();
        list.dedup();
        Ok(SnapshotFilter { prefixes: Some(list) })
    }

    /// The prefixes, or `None` when every snapshot is selected.
    pub fn prefixes(&self) -> Option<&[String]> {
        self.prefixes.as_deref()
    }

    pub fn selects_name(&self, snapshot_name: &str) -> bool {
        match &self.prefixes {
            None => true,
            Some(list) => list.iter().any(|p| snapshot_name.starts_with(p.as_str())),
        }
    }

    /// True if `version` is a snapshot this filter ships. Bookmarks are never
    /// shipped, so never selected (they can still be an incremental's base).
    pub fn selects(&self, version: &FilesystemVersion) -> bool {
        version.is_snapshot() && self.selects_name(&version.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::VersionKind;

    fn version(kind: VersionKind, name: &str) -> FilesystemVersion {
        FilesystemVersion { kind, name: name.into(), guid: 1, createtxg: 1, creation: 0 }
    }

    #[test]
    fn initial_replication_spellings_round_trip() {
        assert_eq!(InitialReplication::default(), InitialReplication::MostRecent);
        for v in InitialReplication::ALL {
            assert_eq!(v.as_str().parse::<InitialReplication>(), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
        }
        assert_eq!("most_recent".parse(), Ok(InitialReplication::MostRecent));
        assert_eq!("all".parse(), Ok(InitialReplication::All));
        assert_eq!("fail".parse(), Ok(InitialReplication::Fail));
        for bad in ["", "MostRecent", "most-recent", "ALL", " all"] {
            let err = bad.parse::<InitialReplication>().unwrap_err();
            assert!(err.to_string().contains("most_recent, all, fail"), "{err}");
        }
    }

    #[test]
    fn protection_spellings_round_trip() {
        assert_eq!(Protection::default(), Protection::Resumability);
        for v in Protection::ALL {
            assert_eq!(v.as_str().parse::<Protection>(), Ok(v));
        }
        assert_eq!(
            "guarantee_incremental_replication".parse(),
            Ok(Protection::IncrementalReplication)
        );
        assert_eq!("guarantee_nothing".parse(), Ok(Protection::Nothing));
        assert!("guarantee".parse::<Protection>().is_err());
    }

    #[test]
    fn no_filter_selects_every_snapshot_but_no_bookmark() {
        let f = SnapshotFilter::all();
        assert!(f.selects(&version(VersionKind::Snapshot, "anything")));
        assert!(!f.selects(&version(VersionKind::Bookmark, "anything")));
        assert_eq!(f.prefixes(), None);
        assert_eq!(SnapshotFilter::default(), f);
    }

    #[test]
    fn prefix_filter_selects_by_name_start() {
        let f = SnapshotFilter::with_prefixes(["zrepl_", "auto", "zrepl_"]).unwrap();
        assert_eq!(f.prefixes(), Some(&["auto".to_string(), "zrepl_".to_string()][..]));
        assert!(f.selects(&version(VersionKind::Snapshot, "zrepl_20240101")));
        assert!(f.selects(&version(VersionKind::Snapshot, "autosnap_daily")));
        assert!(f.selects(&version(VersionKind::Snapshot, "auto")));
        assert!(!f.selects(&version(VersionKind::Snapshot, "manual")));
        assert!(!f.selects(&version(VersionKind::Snapshot, "zrepl")));
        assert!(!f.selects(&version(VersionKind::Snapshot, "Zrepl_x")), "case-sensitive");
        assert!(!f.selects(&version(VersionKind::Bookmark, "zrepl_20240101")));
    }

    #[test]
    fn bad_prefix_lists_are_rejected_naming_the_prefix() {
        assert_eq!(
            SnapshotFilter::with_prefixes(Vec::<String>::new()),
            Err(SnapshotFilterError::NoPrefixes)
        );
        assert_eq!(
            SnapshotFilter::with_prefixes(["ok", ""]),
            Err(SnapshotFilterError::EmptyPrefix(String::new()))
        );
        for (prefix, ch) in [("a@b", '@'), ("a/b", '/'), ("a#", '#'), ("é", 'é'), ("a*", '*')] {
            let err = SnapshotFilter::with_prefixes([prefix]).unwrap_err();
            assert_eq!(err, SnapshotFilterError::BadChar { prefix: prefix.into(), ch });
            assert!(err.to_string().contains(prefix));
        }
    }
}
