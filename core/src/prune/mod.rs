//! Pruning: which snapshots of one filesystem the keep rules let go.
//!
//! The semantics are zrepl's (docs/configuration/prune.rst): each rule keeps some
//! snapshots, and a snapshot is destroyed only when no rule keeps it. Rules see
//! every snapshot of the filesystem, never bookmarks. On top of that, zferry adds
//! two safety nets that only ever keep more:
//!
//! - a [`CandidateFilter`]: with `Prefix`, only snapshots whose name starts with
//!   the job's snapshot prefix may be destroyed. The rules still see all
//!   snapshots, so what zferry destroys is always a subset of what zrepl would.
//! - protected guids (the incremental bases): never destroyed, whatever the rules.
//!
//! As in zrepl, an empty rule list keeps everything.
//!
//! Use: [`compile`] the configured rules once (this is where a bad regex is
//! refused), then [`KeepRules::evaluate`] each filesystem's versions.

mod grid;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use crate::time::WallTime;
use crate::zfs::FilesystemVersion;

pub use rules::{compile, KeepRules, RuleSide};

/// Which snapshots pruning may destroy at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateFilter {
    /// Every snapshot (zrepl's behaviour).
    All,
    /// Only snapshots whose name starts with this prefix.
    Prefix(String),
}

impl CandidateFilter {
    fn admits(&self, name: &str) -> bool {
        match self {
            CandidateFilter::All => true,
            CandidateFilter::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// The replication cursor: the sender's newest version that the receiver also
/// has. Both values are the sender's (its createtxg orders the sender's pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub guid: u64,
    pub createtxg: u64,
}

/// What [`KeepRules::evaluate`] needs besides the versions.
#[derive(Debug, Clone, Copy)]
pub struct PruneContext<'a> {
    /// Wall-clock time; only the grid uses it, to recognize future-dated snapshots.
    pub now: WallTime,
    pub candidates: &'a CandidateFilter,
    /// Guids that must survive: the incremental bases on this side.
    pub protected: &'a BTreeSet<u64>,
    /// The replication cursor, for `not_replicated`; `None` when nothing has been
    /// replicated yet (or on a receiver, where the rule is refused anyway).
    pub cursor: Option<Cursor>,
}

/// Why a version is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// Bookmarks are never pruned.
    Bookmark,
    /// A protected guid: the next incremental step needs it.
    IncrementalBase,
    /// The first rule, by index in the configured list, that keeps it.
    Rule(usize),
    /// No rule keeps it, but the candidate filter does not let it be destroyed.
    NotCandidate,
    /// The rule list is empty, which keeps everything.
    NoRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep(KeepReason),
    Destroy,
}

/// One version with its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub version: FilesystemVersion,
    pub verdict: Verdict,
}

/// The verdict on every version of one filesystem, in createtxg order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneDecision {
    pub entries: Vec<Decided>,
}

impl PruneDecision {
    /// The snapshots to destroy, oldest first.
    pub fn destroys(&self) -> Vec<&FilesystemVersion> {
        self.entries.iter().filter(|d| d.verdict == Verdict::Destroy).map(|d| &d.version).collect()
    }
}

impl KeepRules {
    /// Decides, for each of one filesystem's versions, whether it is kept and why.
    pub fn evaluate(&self, versions: &[FilesystemVersion], ctx: &PruneContext) -> PruneDecision {
        let snapshots: Vec<&FilesystemVersion> =
            versions.iter().filter(|v| v.is_snapshot()).collect();
        let kept_by = self.kept_by(&snapshots, ctx.now, ctx.cursor);
        let mut rule_of = kept_by.into_iter();

        let mut entries: Vec<Decided> = versions
            .iter()
            .map(|v| {
                // Advance the rule iterator for every snapshot, whatever wins below.
                let rule = if v.is_snapshot() { rule_of.next().flatten() } else { None };
                let verdict = if !v.is_snapshot() {
                    Verdict::Keep(KeepReason::Bookmark)
                } else if ctx.protected.contains(&v.guid) {
                    Verdict::Keep(KeepReason::IncrementalBase)
                } else if let Some(i) = rule {
                    Verdict::Keep(KeepReason::Rule(i))
                } else if !ctx.candidates.admits(&v.name) {
                    Verdict::Keep(KeepReason::NotCandidate)
                } else if self.is_empty() {
                    Verdict::Keep(KeepReason::NoRules)
                } else {
                    Verdict::Destroy
                };
                Decided { version: v.clone(), verdict }
            })
            .collect();
        // Stable, so equal keys keep the caller's order.
        entries.sort_by(|a, b| {
            (a.version.createtxg, a.version.kind, &a.version.name).cmp(&(
                b.version.createtxg,
                b.version.kind,
                &b.version.name,
            ))
        });
        PruneDecision { entries }
    }

    /// A reason in words, for logs and dry runs: `kept by grid 1x1h(keep=all) | 24x1h`.
    pub fn explain(&self, verdict: &Verdict) -> String {
        match verdict {
            Verdict::Destroy => "destroy: no rule keeps it".to_owned(),
            Verdict::Keep(KeepReason::Bookmark) => "kept: bookmark".to_owned(),
            Verdict::Keep(KeepReason::IncrementalBase) => "kept: incremental base".to_owned(),
            Verdict::Keep(KeepReason::Rule(i)) => {
                format!("kept by {}", self.description(*i).unwrap_or("an unknown rule"))
            }
            Verdict::Keep(KeepReason::NotCandidate) => {
                "kept: not a pruning candidate (name lacks the job's prefix)".to_owned()
            }
            Verdict::Keep(KeepReason::NoRules) => "kept: no keep rules configured".to_owned(),
        }
    }
}
