//! Pruning one replicated filesystem on both sides, as the active job decides it.
//!
//! The incremental base (the sender's newest version that the receiver also
//! has, matched by guid) is protected on both sides whatever the rules say: the
//! next incremental step starts from it. While the receiver holds a partially
//! received stream, every sender snapshot after the base is protected too, so
//! the resumption still finds what it continues.

use std::collections::BTreeSet;

use crate::prune::{CandidateFilter, Cursor, KeepRules, PruneContext, PruneDecision, Verdict};
use crate::time::WallTime;
use crate::zfs::FilesystemVersion;

/// A job's pruning configuration, compiled.
#[derive(Debug, Clone)]
pub struct PruneSpec {
    pub sender: KeepRules,
    pub receiver: KeepRules,
    /// Which snapshots may be destroyed at all (the job's snapshot prefix).
    pub candidates: CandidateFilter,
}

/// Both sides' verdicts for one filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemPrune {
    pub sender: PruneDecision,
    pub receiver: PruneDecision,
}

/// The sender's newest version whose guid the receiver has.
fn incremental_base<'a>(
    sender: &'a [FilesystemVersion],
    receiver: &[FilesystemVersion],
) -> Option<&'a FilesystemVersion> {
    let received: BTreeSet<u64> = receiver.iter().map(|v| v.guid).collect();
    sender.iter().filter(|v| received.contains(&v.guid)).max_by_key(|v| v.createtxg)
}

/// Decides what each side may destroy. `partial_receive`: the receiver holds a
/// resumable partial receive of this filesystem.
pub fn decide(
    spec: &PruneSpec,
    now: WallTime,
    sender: &[FilesystemVersion],
    receiver: &[FilesystemVersion],
    partial_receive: bool,
) -> FilesystemPrune {
    let base = incremental_base(sender, receiver);
    let mut protected: BTreeSet<u64> = base.iter().map(|b| b.guid).collect();
    if partial_receive {
        let after = base.map_or(0, |b| b.createtxg);
        protected.extend(sender.iter().filter(|v| v.createtxg > after).map(|v| v.guid));
    }
    let cursor = base.map(|b| Cursor { guid: b.guid, createtxg: b.createtxg });
    let sender_ctx =
        PruneContext { now, candidates: &spec.candidates, protected: &protected, cursor };
    let receiver_ctx =
        PruneContext { now, candidates: &spec.candidates, protected: &protected, cursor: None };
    FilesystemPrune {
        sender: spec.sender.evaluate(sender, &sender_ctx),
        receiver: spec.receiver.evaluate(receiver, &receiver_ctx),
    }
}

/// One line per version, for `zferry prune --dry-run`:
/// `  receiver @s1  destroy: no rule keeps it`.
pub fn explain(side: &str, rules: &KeepRules, decision: &PruneDecision) -> Vec<String> {
    decision
        .entries
        .iter()
        .map(|d| {
            let verdict = match d.verdict {
                Verdict::Destroy => "destroy".to_owned(),
                keep => rules.explain(&keep),
            };
            format!("  {side:<8} {}  {verdict}", d.version.relative_name())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeepRule;
    use crate::prune::{compile, RuleSide};
    use crate::zfs::VersionKind;

    fn snap(name: &str, guid: u64, txg: u64) -> FilesystemVersion {
        FilesystemVersion {
            kind: VersionKind::Snapshot,
            name: name.into(),
            guid,
            createtxg: txg,
            creation: txg as i64 * 60,
        }
    }

    fn spec(sender: KeepRule, receiver: KeepRule) -> PruneSpec {
        PruneSpec {
            sender: compile(&[sender], RuleSide::Sender).unwrap(),
            receiver: compile(&[receiver], RuleSide::Receiver).unwrap(),
            candidates: CandidateFilter::Prefix("zf_".into()),
        }
    }

    fn names(d: &PruneDecision) -> Vec<String> {
        d.destroys().iter().map(|v| v.name.clone()).collect()
    }

    fn last(n: u32) -> KeepRule {
        KeepRule::LastN { count: n, regex: None }
    }

    #[test]
    fn the_incremental_base_survives_last_n_1_on_the_sender() {
        // The receiver lags at zf_2; the sender has two newer snapshots.
        let sender: Vec<_> = (1..=4).map(|i| snap(&format!("zf_{i}"), 100 + i, i)).collect();
        let receiver = vec![snap("zf_1", 101, 7), snap("zf_2", 102, 9)];
        let got = decide(&spec(last(1), last(1)), WallTime(10_000), &sender, &receiver, false);
        assert_eq!(names(&got.sender), ["zf_1", "zf_3"], "zf_2 is the base, zf_4 the newest");
        assert_eq!(names(&got.receiver), ["zf_1"]);
    }

    #[test]
    fn a_partial_receive_protects_what_it_continues() {
        let sender: Vec<_> = (1..=4).map(|i| snap(&format!("zf_{i}"), 100 + i, i)).collect();
        let receiver = vec![snap("zf_2", 102, 9)];
        let got = decide(&spec(last(0), last(0)), WallTime(10_000), &sender, &receiver, true);
        assert_eq!(names(&got.sender), ["zf_1"], "base and everything after it stay");
        assert!(names(&got.receiver).is_empty());
    }

    #[test]
    fn matching_is_by_guid_not_name() {
        // The receiver's zf_2 is another snapshot of the same name: no base.
        let sender = vec![snap("zf_1", 1, 1), snap("zf_2", 2, 2)];
        let receiver = vec![snap("zf_2", 99, 5)];
        let got = decide(&spec(last(1), last(0)), WallTime(10_000), &sender, &receiver, false);
        assert_eq!(names(&got.sender), ["zf_1"]);
        assert_eq!(names(&got.receiver), ["zf_2"], "nothing protects a foreign snapshot");
    }

    #[test]
    fn snapshots_without_the_prefix_are_never_destroyed() {
        let sender = vec![snap("manual", 1, 1), snap("zf_1", 2, 2), snap("zf_2", 3, 3)];
        let receiver = vec![snap("zf_2", 3, 9)];
        let got = decide(&spec(last(0), last(0)), WallTime(10_000), &sender, &receiver, false);
        assert_eq!(names(&got.sender), ["zf_1"]);
        let lines = explain("sender", &spec(last(0), last(0)).sender, &got.sender);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("@manual") && lines[0].contains("not a pruning candidate"));
        assert!(lines[1].ends_with("destroy"), "{}", lines[1]);
        assert!(lines[2].contains("incremental base"), "{}", lines[2]);
    }
}
