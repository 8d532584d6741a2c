//! The diff of one filesystem: where the receiver stands in the sender's history.
//!
//! A pure function of two version lists. Versions are matched by guid and never by
//! name (a name is a label anyone can reuse), and each side is ordered by its own
//! createtxg (txgs of different pools are not comparable). Receiver bookmarks are
//! ignored: an incremental stream is received onto a snapshot, never a bookmark.
//!
//! Cost: O(n log n) in the number of versions (maps by guid, one sort per side).

use std::collections::BTreeMap;
use std::fmt;

use crate::zfs::FilesystemVersion;

/// Where the receiver stands, when sending can go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff {
    /// The sender has no snapshot at all: there is nothing that could be sent.
    SenderHasNoSnapshots,
    /// The receiver has no snapshot (and so no version that counts): the initial
    /// replication policy decides. `snapshots` are the sender's, oldest first.
    Initial { snapshots: Vec<FilesystemVersion> },
    /// The receiver's newest snapshot is the newest the sender can send from
    /// `common`, the sender's version of it.
    InSync { common: FilesystemVersion },
    /// Send `path` (sender snapshots newer than `base`, oldest first, never empty),
    /// starting from `base`: the sender's version (snapshot, or a bookmark if the
    /// snapshot is gone) of the receiver's newest snapshot.
    Incremental { base: FilesystemVersion, path: Vec<FilesystemVersion> },
}

/// Histories that cannot be joined without destroying data on the receiver. zferry
/// reports them and leaves the decision to the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The receiver has snapshots, and none of them is a version of the sender.
    NoCommonAncestor {
        /// All sender versions, oldest first.
        sender: Vec<FilesystemVersion>,
        /// All receiver snapshots, oldest first.
        receiver: Vec<FilesystemVersion>,
    },
    /// The receiver has snapshots after the most recent common version that the
    /// sender does not have (also when the receiver is simply ahead of the sender).
    Diverged {
        /// The sender's version of the most recent common snapshot.
        common_ancestor: FilesystemVersion,
        /// Sender snapshots newer than the common ancestor, oldest first.
        sender_only_after: Vec<FilesystemVersion>,
        /// Receiver snapshots newer than the common ancestor, oldest first.
        receiver_only_after: Vec<FilesystemVersion>,
        sender: Vec<FilesystemVersion>,
        receiver: Vec<FilesystemVersion>,
    },
}

/// Which side of the replication a version list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Sender,
    Receiver,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        })
    }
}

/// A version list that ZFS cannot have produced for one filesystem. The diff
/// refuses to guess what it means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    #[error("{side} lists two snapshots with guid {guid}: @{first} and @{second}")]
    DuplicateGuid { side: Side, guid: u64, first: String, second: String },
    #[error(
        "{side} lists versions with guid {guid} at different createtxg: {first} ({first_txg}) \
         and {second} ({second_txg})"
    )]
    GuidTxgMismatch {
        side: Side,
        guid: u64,
        first: String,
        first_txg: u64,
        second: String,
        second_txg: u64,
    },
    #[error("{side} lists {name} twice")]
    DuplicateName { side: Side, name: String },
    #[error("{side} lists {first} and {second} with the same createtxg {txg} but different guids")]
    DuplicateTxg { side: Side, txg: u64, first: String, second: String },
    #[error(
        "sender and receiver order their common versions differently ({earlier} comes before \
         {later} on the receiver, after it on the sender)"
    )]
    OrderMismatch { earlier: String, later: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    // Boxed: conflicts carry whole version lists, and results travel by value.
    #[error(transparent)]
    Conflict(Box<Conflict>),
    #[error("inconsistent version listing: {0}")]
    Listing(#[from] ListingError),
}

impl std::error::Error for Conflict {}

impl From<Conflict> for DiffError {
    fn from(c: Conflict) -> DiffError {
        DiffError::Conflict(Box::new(c))
    }
}

/// At most this many versions of a list are spelled out in a message; a filesystem
/// with thousands of snapshots must not produce a page-long error.
const SHOWN_VERSIONS: usize = 12;

/// `@a (guid 1), @b (guid 2)`, newest last, the oldest elided past `SHOWN_VERSIONS`.
struct VersionList<'a>(&'a [FilesystemVersion]);

impl fmt::Display for VersionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        let skipped = self.0.len().saturating_sub(SHOWN_VERSIONS);
        if skipped > 0 {
            write!(f, "({skipped} older not shown) ")?;
        }
        for (i, v) in self.0[skipped..].iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} (guid {})", v.relative_name(), v.guid)?;
        }
        Ok(())
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::NoCommonAncestor { sender, receiver } => {
                write!(
                    f,
                    "no common ancestor: none of the receiver's snapshots is a snapshot or \
                     bookmark of the sender (compared by guid), so no incremental send can \
                     start.\n  sender:   {}\n  receiver: {}\n\
                     To resolve: if the receiver's data is still needed, rename the receiving \
                     filesystem away; otherwise destroy it. zferry then starts over with an \
                     initial replication. zferry never destroys or overwrites it by itself.",
                    VersionList(sender),
                    VersionList(receiver),
                )
            }
            Conflict::Diverged {
                common_ancestor,
                sender_only_after,
                receiver_only_after,
                sender,
                receiver,
            } => {
                let common = common_ancestor.relative_name();
                if sender_only_after.is_empty() {
                    write!(
                        f,
                        "receiver is ahead of the sender: after the common version {common} \
                         (guid {}) it has {} snapshot(s) the sender does not have (destroyed or \
                         rolled back on the sender?): {}.",
                        common_ancestor.guid,
                        receiver_only_after.len(),
                        VersionList(receiver_only_after),
                    )?;
                } else {
                    write!(
                        f,
                        "receiver has diverged from the sender: after the common version \
                         {common} (guid {}) it has {} snapshot(s) the sender does not have: {}; \
                         the sender has {} newer snapshot(s) to send: {}.",
                        common_ancestor.guid,
                        receiver_only_after.len(),
                        VersionList(receiver_only_after),
                        sender_only_after.len(),
                        VersionList(sender_only_after),
                    )?;
                }
                let by_name: BTreeMap<&str, &FilesystemVersion> = sender
                    .iter()
                    .filter(|v| v.is_snapshot())
                    .map(|v| (v.name.as_str(), v))
                    .collect();
                for r in receiver_only_after {
                    if let Some(s) = by_name.get(r.name.as_str()) {
                        write!(
                            f,
                            "\n  note: the receiver's @{} (guid {}) only shares its name with \
                             the sender's (guid {}); it is a different snapshot.",
                            r.name, r.guid, s.guid
                        )?;
                    }
                }
                write!(
                    f,
                    "\n  sender:   {}\n  receiver: {}\n\
                     To resolve, on the receiver: copy away any data you need from the \
                     diverging snapshots, then roll back to {common} (`zfs rollback -r`, which \
                     destroys the later snapshots) or destroy those snapshots. zferry never \
                     does this by itself.",
                    VersionList(sender),
                    VersionList(receiver),
                )
            }
        }
    }
}

/// Indexes one side's list by guid and checks it is a list ZFS could produce.
/// Returns the chosen version per guid (a snapshot before a bookmark of it; among
/// bookmarks of one snapshot the first by name) and the list sorted by createtxg.
struct Indexed<'a> {
    by_guid: BTreeMap<u64, &'a FilesystemVersion>,
    /// One version per guid, oldest first.
    ordered: Vec<&'a FilesystemVersion>,
}

fn index<'a>(
    side: Side,
    versions: impl Iterator<Item = &'a FilesystemVersion>,
) -> Result<Indexed<'a>, ListingError> {
    let mut by_guid: BTreeMap<u64, &FilesystemVersion> = BTreeMap::new();
    let mut names: BTreeMap<(bool, &str), ()> = BTreeMap::new();
    for v in versions {
        if names.insert((v.is_snapshot(), v.name.as_str()), ()).is_some() {
            return Err(ListingError::DuplicateName { side, name: v.relative_name() });
        }
        match by_guid.get(&v.guid) {
            None => {
                by_guid.insert(v.guid, v);
            }
            Some(prev) => {
                if prev.createtxg != v.createtxg {
                    return Err(ListingError::GuidTxgMismatch {
                        side,
                        guid: v.guid,
                        first: prev.relative_name(),
                        first_txg: prev.createtxg,
                        second: v.relative_name(),
                        second_txg: v.createtxg,
                    });
                }
                match (prev.is_snapshot(), v.is_snapshot()) {
                    (true, true) => {
                        return Err(ListingError::DuplicateGuid {
                            side,
                            guid: v.guid,
                            first: prev.name.clone(),
                            second: v.name.clone(),
                        })
                    }
                    // Several bookmarks of one snapshot are normal (zferry's own cursor
                    // and step bookmarks may coincide); any of them is as good a base.
                    (false, true) => {
                        by_guid.insert(v.guid, v);
                    }
                    (false, false) if v.name < prev.name => {
                        by_guid.insert(v.guid, v);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut ordered: Vec<&FilesystemVersion> = by_guid.values().copied().collect();
    ordered.sort_by_key(|v| v.createtxg);
    // ZFS takes at most one snapshot of a filesystem per txg; two guids at one txg
    // would leave their order to chance.
    for w in ordered.windows(2) {
        if w[0].createtxg == w[1].createtxg {
            return Err(ListingError::DuplicateTxg {
                side,
                txg: w[0].createtxg,
                first: w[0].relative_name(),
                second: w[1].relative_name(),
            });
        }
    }
    Ok(Indexed { by_guid, ordered })
}

fn cloned(list: &[&FilesystemVersion]) -> Vec<FilesystemVersion> {
    list.iter().map(|v| (*v).clone()).collect()
}

/// Compares the sender's versions (snapshots and bookmarks) with the receiver's
/// (its bookmarks are ignored) and says where the receiver stands. The input lists
/// may be in any order.
pub fn diff(
    sender: &[FilesystemVersion],
    receiver: &[FilesystemVersion],
) -> Result<Diff, DiffError> {
    let sender_index = index(Side::Sender, sender.iter())?;
    let receiver_index = index(Side::Receiver, receiver.iter().filter(|v| v.is_snapshot()))?;
    let sender_all = &sender_index.ordered;
    let receiver_snaps = &receiver_index.ordered;
    let sender_snaps: Vec<&FilesystemVersion> =
        sender_all.iter().copied().filter(|v| v.is_snapshot()).collect();

    if sender_snaps.is_empty() {
        return Ok(Diff::SenderHasNoSnapshots);
    }
    if receiver_snaps.is_empty() {
        return Ok(Diff::Initial { snapshots: cloned(&sender_snaps) });
    }

    // Common versions must appear in the same order on both sides; ZFS can only
    // receive onto the newest snapshot, so anything else means a listing is wrong.
    let mut last_common: Option<(&FilesystemVersion, &FilesystemVersion)> = None;
    for r in receiver_snaps {
        if let Some(s) = sender_index.by_guid.get(&r.guid) {
            if let Some((prev_r, prev_s)) = last_common {
                if prev_s.createtxg >= s.createtxg {
                    return Err(ListingError::OrderMismatch {
                        earlier: prev_r.relative_name(),
                        later: r.relative_name(),
                    }
                    .into());
                }
            }
            last_common = Some((r, s));
        }
    }

    let Some((common_on_receiver, base)) = last_common else {
        return Err(Conflict::NoCommonAncestor {
            sender: cloned(sender_all),
            receiver: cloned(receiver_snaps),
        }
        .into());
    };

    let receiver_after: Vec<&FilesystemVersion> = receiver_snaps
        .iter()
        .copied()
        .filter(|v| v.createtxg > common_on_receiver.createtxg)
        .collect();
    let path: Vec<&FilesystemVersion> =
        sender_snaps.iter().copied().filter(|v| v.createtxg > base.createtxg).collect();

    if !receiver_after.is_empty() {
        return Err(Conflict::Diverged {
            common_ancestor: base.clone(),
            sender_only_after: cloned(&path),
            receiver_only_after: cloned(&receiver_after),
            sender: cloned(sender_all),
            receiver: cloned(receiver_snaps),
        }
        .into());
    }
    if path.is_empty() {
        return Ok(Diff::InSync { common: base.clone() });
    }
    Ok(Diff::Incremental { base: base.clone(), path: cloned(&path) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::zfs::VersionKind;
    use proptest::prelude::*;

    /// `@name` or `#name` with its guid and createtxg.
    pub(crate) fn v(spec: &str, guid: u64, createtxg: u64) -> FilesystemVersion {
        let (kind, name) = match spec.split_at(1) {
            ("@", name) => (VersionKind::Snapshot, name),
            ("#", name) => (VersionKind::Bookmark, name),
            _ => panic!("test version spec must start with @ or #: {spec}"),
        };
        FilesystemVersion {
            kind,
            name: name.to_owned(),
            guid,
            createtxg,
            creation: createtxg as i64 * 60,
        }
    }

    fn names(list: &[FilesystemVersion]) -> Vec<String> {
        list.iter().map(|v| v.relative_name()).collect()
    }

    /// A compact rendering of an outcome, for table tests.
    fn outcome(sender: &[FilesystemVersion], receiver: &[FilesystemVersion]) -> String {
        match diff(sender, receiver) {
            Ok(Diff::SenderHasNoSnapshots) => "sender has no snapshots".into(),
            Ok(Diff::Initial { snapshots }) => format!("initial {}", names(&snapshots).join(" ")),
            Ok(Diff::InSync { common }) => format!("in sync at {}", common.relative_name()),
            Ok(Diff::Incremental { base, path }) => {
                format!("incremental {} -> {}", base.relative_name(), names(&path).join(" "))
            }
            Err(DiffError::Conflict(c)) => match *c {
                Conflict::NoCommonAncestor { .. } => "no common ancestor".into(),
                Conflict::Diverged {
                    common_ancestor,
                    sender_only_after,
                    receiver_only_after,
                    ..
                } => format!(
                    "diverged at {}, sender {}, receiver {}",
                    common_ancestor.relative_name(),
                    names(&sender_only_after).join(" "),
                    names(&receiver_only_after).join(" ")
                ),
            },
            Err(DiffError::Listing(e)) => format!("listing: {e}"),
        }
    }

    #[test]
    fn table() {
        // Receiver txgs are deliberately unrelated to the sender's: another pool.
        let (a, b, c, d) = (v("@a", 1, 10), v("@b", 2, 20), v("@c", 3, 30), v("@d", 4, 40));
        let (ra, rb, rc, rd) = (v("@a", 1, 5), v("@b", 2, 6), v("@c", 3, 7), v("@d", 4, 8));
        let cases: Vec<(&str, Vec<FilesystemVersion>, Vec<FilesystemVersion>, &str)> = vec![
            ("both empty", vec![], vec![], "sender has no snapshots"),
            ("sender only", vec![a.clone(), b.clone()], vec![], "initial @a @b"),
            ("sender only, unsorted", vec![b.clone(), a.clone()], vec![], "initial @a @b"),
            (
                "receiver only bookmarks count as nothing",
                vec![a.clone()],
                vec![v("#a", 1, 5)],
                "initial @a",
            ),
            ("receiver only", vec![], vec![ra.clone()], "sender has no snapshots"),
            (
                "sender has only bookmarks",
                vec![v("#a", 1, 10)],
                vec![],
                "sender has no snapshots",
            ),
            ("in sync", vec![a.clone(), b.clone()], vec![ra.clone(), rb.clone()], "in sync at @b"),
            (
                "in sync, receiver pruned older",
                vec![a.clone(), b.clone()],
                vec![rb.clone()],
                "in sync at @b",
            ),
            (
                "in sync, sender pruned older",
                vec![b.clone()],
                vec![ra.clone(), rb.clone()],
                "in sync at @b",
            ),
            (
                "in sync on a bookmark: newer sender snapshot gone",
                vec![a.clone(), v("#b", 2, 20)],
                vec![ra.clone(), rb.clone()],
                "in sync at #b",
            ),
            (
                "linear incremental",
                vec![a.clone(), b.clone(), c.clone(), d.clone()],
                vec![ra.clone(), rb.clone()],
                "incremental @b -> @c @d",
            ),
            (
                "incremental from oldest",
                vec![a.clone(), b.clone(), c.clone()],
                vec![ra.clone()],
                "incremental @a -> @b @c",
            ),
            (
                "bookmark as base",
                vec![v("#a", 1, 10), c.clone(), d.clone()],
                vec![ra.clone()],
                "incremental #a -> @c @d",
            ),
            (
                "snapshot preferred over its bookmark",
                vec![v("#a-cursor", 1, 10), a.clone(), v("#a", 1, 10), b.clone()],
                vec![ra.clone()],
                "incremental @a -> @b",
            ),
            (
                "first bookmark by name among bookmarks of one snapshot",
                vec![v("#z", 1, 10), v("#m", 1, 10), b.clone()],
                vec![ra.clone()],
                "incremental #m -> @b",
            ),
            (
                "receiver bookmark is never a base",
                vec![v("#a", 1, 10), b.clone()],
                vec![v("#a", 1, 5)],
                "initial @b",
            ),
            (
                "receiver bookmark ignored beside snapshots",
                vec![a.clone(), b.clone(), c.clone()],
                vec![ra.clone(), v("#c", 3, 9)],
                "incremental @a -> @b @c",
            ),
            (
                "same name, another guid",
                vec![a.clone(), b.clone(), c.clone()],
                vec![ra.clone(), v("@b", 99, 6)],
                "diverged at @a, sender @b @c, receiver @b",
            ),
            (
                "same name, another guid, nothing common",
                vec![a.clone()],
                vec![v("@a", 99, 5)],
                "no common ancestor",
            ),
            (
                "receiver ahead",
                vec![a.clone(), b.clone()],
                vec![ra.clone(), rb.clone(), rc.clone()],
                "diverged at @b, sender , receiver @c",
            ),
            (
                "receiver ahead of a sender that kept only a bookmark",
                vec![v("#a", 1, 10)],
                vec![ra.clone(), rb.clone()],
                "sender has no snapshots",
            ),
            (
                "diverged",
                vec![a.clone(), b.clone(), c.clone()],
                vec![ra.clone(), v("@x", 50, 6), v("@y", 51, 7)],
                "diverged at @a, sender @b @c, receiver @x @y",
            ),
            (
                "diverged, sender has bookmark of the common version",
                vec![v("#b", 2, 20), c.clone()],
                vec![ra.clone(), rb.clone(), v("@x", 50, 7)],
                "diverged at #b, sender @c, receiver @x",
            ),
            (
                "diverged: a sender snapshot destroyed, its receiver copy kept",
                vec![a.clone(), c.clone()],
                vec![ra.clone(), rb.clone()],
                "diverged at @a, sender @c, receiver @b",
            ),
            (
                "no common ancestor",
                vec![a.clone(), b.clone()],
                vec![v("@x", 50, 5), v("@y", 51, 6)],
                "no common ancestor",
            ),
            (
                "no common ancestor with receiver bookmark matching",
                vec![a.clone(), b.clone()],
                vec![v("#b", 2, 5), v("@y", 51, 6)],
                "no common ancestor",
            ),
            (
                "older common, newer receiver-only",
                vec![a.clone(), b.clone(), c.clone(), d.clone()],
                vec![ra.clone(), rd.clone(), v("@x", 50, 9)],
                "diverged at @d, sender , receiver @x",
            ),
            (
                "duplicate guid on sender",
                vec![a.clone(), v("@a2", 1, 10)],
                vec![],
                "listing: sender lists two snapshots with guid 1: @a and @a2",
            ),
            (
                "duplicate guid on receiver",
                vec![a.clone()],
                vec![ra.clone(), v("@a2", 1, 5)],
                "listing: receiver lists two snapshots with guid 1: @a and @a2",
            ),
            (
                "bookmark at another txg than its snapshot",
                vec![a.clone(), v("#a", 1, 11)],
                vec![],
                "listing: sender lists versions with guid 1 at different createtxg: @a (10) and #a (11)",
            ),
            (
                "duplicate name",
                vec![a.clone(), v("@a", 7, 15)],
                vec![],
                "listing: sender lists @a twice",
            ),
            (
                "bookmark and snapshot may share a name",
                vec![a.clone(), v("#a", 1, 10), b.clone()],
                vec![ra.clone()],
                "incremental @a -> @b",
            ),
            (
                "two guids at one txg",
                vec![a.clone(), v("@a2", 7, 10)],
                vec![],
                "listing: sender lists @a and @a2 with the same createtxg 10 but different guids",
            ),
            (
                "common versions in different order",
                vec![a.clone(), b.clone()],
                vec![v("@b", 2, 5), v("@a", 1, 6)],
                "listing: sender and receiver order their common versions differently (@b comes before @a on the receiver, after it on the sender)",
            ),
        ];
        for (what, sender, receiver, expected) in cases {
            assert_eq!(outcome(&sender, &receiver), expected, "case: {what}");
        }
    }

    #[test]
    fn conflicts_carry_both_lists_sorted() {
        let sender = vec![v("@b", 2, 20), v("#a", 1, 10), v("@c", 3, 30)];
        let receiver = vec![v("@x", 9, 3), v("#q", 8, 1), v("@w", 7, 2)];
        match diff(&sender, &receiver) {
            Err(DiffError::Conflict(c)) => match *c {
                Conflict::NoCommonAncestor { sender, receiver } => {
                    assert_eq!(names(&sender), ["#a", "@b", "@c"]);
                    assert_eq!(names(&receiver), ["@w", "@x"]);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn diverged_message_is_actionable() {
        let sender = vec![v("@a", 1, 10), v("@b", 2, 20), v("@c", 3, 30)];
        let receiver = vec![v("@a", 1, 5), v("@b", 99, 6)];
        let err = diff(&sender, &receiver).unwrap_err();
        let text = err.to_string();
        for needle in [
            "diverged",
            "after the common version @a (guid 1)",
            "1 snapshot(s) the sender does not have: @b (guid 99)",
            "2 newer snapshot(s) to send: @b (guid 2), @c (guid 3)",
            "the receiver's @b (guid 99) only shares its name with the sender's (guid 2)",
            "sender:   @a (guid 1), @b (guid 2), @c (guid 3)",
            "receiver: @a (guid 1), @b (guid 99)",
            "roll back to @a",
            "never does this by itself",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn ahead_and_no_common_messages_are_actionable() {
        let ahead = diff(&[v("@a", 1, 10)], &[v("@a", 1, 5), v("@b", 2, 6)]).unwrap_err();
        let text = ahead.to_string();
        assert!(text.contains("receiver is ahead"), "{text}");
        assert!(text.contains("@b (guid 2)"), "{text}");
        assert!(text.contains("zfs rollback -r"), "{text}");

        let none = diff(&[v("@a", 1, 10)], &[v("@x", 5, 5)]).unwrap_err();
        let text = none.to_string();
        assert!(text.contains("no common ancestor"), "{text}");
        assert!(text.contains("sender:   @a (guid 1)"), "{text}");
        assert!(text.contains("receiver: @x (guid 5)"), "{text}");
        assert!(text.contains("rename the receiving filesystem away"), "{text}");
    }

    #[test]
    fn long_lists_are_elided_in_messages() {
        let sender: Vec<_> = (1..=100).map(|i| v(&format!("@s{i}"), i, i * 10)).collect();
        let receiver = vec![v("@x", 1000, 1)];
        let text = diff(&sender, &receiver).unwrap_err().to_string();
        assert!(text.contains("(88 older not shown) @s89 (guid 89)"), "{text}");
        assert!(!text.contains("@s88 "), "{text}");
        assert!(text.len() < 2000, "{} bytes", text.len());
    }

    /// The diff written the slow and obvious way, as an independent reference:
    /// quadratic scans, no maps, no shared helpers. Only valid listings.
    fn reference(sender: &[FilesystemVersion], receiver: &[FilesystemVersion]) -> String {
        let mut sender_snaps: Vec<&FilesystemVersion> =
            sender.iter().filter(|v| v.is_snapshot()).collect();
        sender_snaps.sort_by_key(|v| v.createtxg);
        let mut receiver_snaps: Vec<&FilesystemVersion> =
            receiver.iter().filter(|v| v.is_snapshot()).collect();
        receiver_snaps.sort_by_key(|v| v.createtxg);
        if sender_snaps.is_empty() {
            return "sender has no snapshots".into();
        }
        if receiver_snaps.is_empty() {
            let n: Vec<String> = sender_snaps.iter().map(|v| v.relative_name()).collect();
            return format!("initial {}", n.join(" "));
        }
        // Newest receiver snapshot that the sender knows, as snapshot or bookmark.
        let mut found = None;
        for r in receiver_snaps.iter().rev() {
            let snap = sender.iter().find(|s| s.guid == r.guid && s.is_snapshot());
            let mut bookmarks: Vec<&FilesystemVersion> =
                sender.iter().filter(|s| s.guid == r.guid && !s.is_snapshot()).collect();
            bookmarks.sort_by(|x, y| x.name.cmp(&y.name));
            if let Some(s) = snap.or(bookmarks.first().copied()) {
                found = Some((*r, s));
                break;
            }
        }
        let Some((r, base)) = found else {
            return "no common ancestor".into();
        };
        let after: Vec<String> = sender_snaps
            .iter()
            .filter(|s| s.createtxg > base.createtxg)
            .map(|s| s.relative_name())
            .collect();
        let receiver_after: Vec<String> = receiver_snaps
            .iter()
            .filter(|x| x.createtxg > r.createtxg)
            .map(|x| x.relative_name())
            .collect();
        if !receiver_after.is_empty() {
            return format!(
                "diverged at {}, sender {}, receiver {}",
                base.relative_name(),
                after.join(" "),
                receiver_after.join(" ")
            );
        }
        if after.is_empty() {
            return format!("in sync at {}", base.relative_name());
        }
        format!("incremental {} -> {}", base.relative_name(), after.join(" "))
    }

    /// What becomes of one snapshot of the shared history on the sender.
    #[derive(Debug, Clone, Copy)]
    enum OnSender {
        Snapshot,
        Bookmark,
        Both,
        Gone,
    }

    fn on_sender() -> impl Strategy<Value = OnSender> {
        prop_oneof![
            5 => Just(OnSender::Snapshot),
            2 => Just(OnSender::Bookmark),
            1 => Just(OnSender::Both),
            1 => Just(OnSender::Gone),
        ]
    }

    /// Deterministic shuffle so that the diff is shown not to depend on input order.
    fn shuffle(list: &mut [FilesystemVersion], mut seed: u64) {
        for i in (1..list.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (seed >> 33) as usize % (i + 1);
            list.swap(i, j);
        }
    }

    prop_compose! {
        /// A shared linear history; the sender prunes some of it and turns some into
        /// bookmarks; the receiver got a prefix, pruned some, and may have diverged
        /// (extra snapshots, possibly reusing the sender's names with other guids).
        fn histories()(
            fate in proptest::collection::vec(on_sender(), 0..12),
            received in 0usize..14,
            receiver_kept in proptest::collection::vec(any::<bool>(), 12),
            divergent in proptest::collection::vec(any::<bool>(), 0..3),
            receiver_bookmarks in proptest::collection::vec(any::<bool>(), 12),
            seeds in (any::<u64>(), any::<u64>()),
        ) -> (Vec<FilesystemVersion>, Vec<FilesystemVersion>) {
            let mut sender = Vec::new();
            let mut receiver = Vec::new();
            for (i, f) in fate.iter().enumerate() {
                let guid = 1000 + i as u64;
                let txg = 100 + 10 * i as u64;
                let name = format!("s{i}");
                if matches!(f, OnSender::Snapshot | OnSender::Both) {
                    sender.push(v(&format!("@{name}"), guid, txg));
                }
                if matches!(f, OnSender::Bookmark | OnSender::Both) {
                    sender.push(v(&format!("#{name}"), guid, txg));
                }
                let rtxg = 7 + 3 * i as u64;
                if i < received && receiver_kept[i] {
                    receiver.push(v(&format!("@{name}"), guid, rtxg));
                }
                if receiver_bookmarks[i] {
                    receiver.push(v(&format!("#{name}"), guid, rtxg));
                }
            }
            let top = 7 + 3 * fate.len().min(received) as u64;
            for (k, same_name) in divergent.iter().enumerate() {
                let name = if *same_name { format!("s{}", received.min(fate.len()) + k) } else { format!("x{k}") };
                receiver.push(v(&format!("@{name}"), 9000 + k as u64, top + 1 + k as u64));
            }
            shuffle(&mut sender, seeds.0);
            shuffle(&mut receiver, seeds.1);
            (sender, receiver)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn diff_matches_reference((sender, receiver) in histories()) {
            prop_assert_eq!(outcome(&sender, &receiver), reference(&sender, &receiver));
        }

        /// Never a step onto something the receiver already has, never from a
        /// version the receiver lacks.
        #[test]
        fn incremental_path_is_sound((sender, receiver) in histories()) {
            if let Ok(Diff::Incremental { base, path }) = diff(&sender, &receiver) {
                prop_assert!(receiver.iter().any(|r| r.is_snapshot() && r.guid == base.guid));
                prop_assert!(!path.is_empty());
                for p in &path {
                    prop_assert!(p.is_snapshot());
                    prop_assert!(p.createtxg > base.createtxg);
                    prop_assert!(!receiver.iter().any(|r| r.guid == p.guid && r.is_snapshot()));
                }
                prop_assert!(path.windows(2).all(|w| w[0].createtxg < w[1].createtxg));
            }
        }
    }

    #[test]
    fn large_history_is_fast_enough() {
        // Quadratic code would take minutes here, even in a release build.
        let n = 50_000u64;
        let sender: Vec<_> = (0..n).map(|i| v(&format!("@s{i}"), i + 1, i + 1)).collect();
        let receiver: Vec<_> = (0..n / 2).map(|i| v(&format!("@s{i}"), i + 1, 3 * i + 1)).collect();
        match diff(&sender, &receiver) {
            Ok(Diff::Incremental { base, path }) => {
                assert_eq!(base.guid, n / 2);
                assert_eq!(path.len() as u64, n - n / 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
