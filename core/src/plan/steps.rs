//! From a diff and the policies to the transfers of one filesystem.
//!
//! A plan is recomputed from the current state of both sides every time: an
//! interrupted run needs no memory of its own, the next plan starts from whatever
//! the receiver has fully received (or resumes its partial receive first).

use std::fmt;

use crate::zfs::FilesystemVersion;

use super::diff::{diff, Diff, DiffError};
use super::policy::{InitialReplication, Protection, SnapshotFilter};

/// How incremental transfers are cut into steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepMode {
    /// One `zfs send -i` per snapshot.
    PerSnapshot,
    /// One `zfs send -I` over each run of consecutive selected snapshots.
    Batched,
}

impl StepMode {
    /// The mode a protection level allows. Resumability holds the source and target
    /// of each step, which a `-I` package spanning many snapshots cannot honour, so
    /// it needs per-snapshot steps; the weaker levels only protect the common base.
    pub fn for_protection(protection: Protection) -> StepMode {
        match protection {
            Protection::Resumability => StepMode::PerSnapshot,
            Protection::IncrementalReplication | Protection::Nothing => StepMode::Batched,
        }
    }
}

impl Default for StepMode {
    fn default() -> StepMode {
        StepMode::for_protection(Protection::default())
    }
}

/// The admin's choices that shape one filesystem's plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicationPolicy {
    pub initial: InitialReplication,
    pub snapshots: SnapshotFilter,
    pub mode: StepMode,
}

/// What a receiver reports about a partial, resumable receive (decoded from its
/// `receive_resume_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeInfo {
    /// The token itself, as `zfs send -t` wants it.
    pub token: String,
    /// Guid of the snapshot being received.
    pub toguid: u64,
    /// Guid of the incremental source; `None` for a full send.
    pub fromguid: Option<u64>,
    /// The target's name as recorded in the token (for messages).
    pub toname: String,
    /// Bytes already received.
    pub bytes: u64,
}

/// The kind of `zfs send` a step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// A full stream of `to`; `from` is `None`.
    Full,
    /// `zfs send -i from to`: only `to`, no snapshot in between.
    Incremental,
    /// `zfs send -I from to`: every snapshot after `from` up to `to`.
    Batched,
    /// `zfs send -t token`: continue a partial receive; `from` and `to` are the
    /// sender's versions the token names.
    Resume { token: String },
}

/// One transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: Option<FilesystemVersion>,
    pub to: FilesystemVersion,
    pub kind: StepKind,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self.from.as_ref().map(|v| v.relative_name());
        let to = self.to.relative_name();
        match (&self.kind, from) {
            (StepKind::Full, _) => write!(f, "full {to}"),
            (StepKind::Incremental, Some(from)) => write!(f, "-i {from} {to}"),
            (StepKind::Batched, Some(from)) => write!(f, "-I {from} {to}"),
            (StepKind::Resume { .. }, Some(from)) => write!(f, "resume {from} {to}"),
            (StepKind::Resume { .. }, None) => write!(f, "resume full {to}"),
            (_, None) => write!(f, "{to}"),
        }
    }
}

/// Why a plan has nothing to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Idle {
    /// The receiver has the newest selected snapshot (or newer selected ones don't
    /// exist).
    UpToDate,
    /// The sender has no snapshot.
    SenderHasNoSnapshots,
    /// The receiver has nothing yet and no sender snapshot passes the filter.
    NoSelectedSnapshots,
}

impl fmt::Display for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Idle::UpToDate => "up to date",
            Idle::SenderHasNoSnapshots => "the sender has no snapshots yet: nothing to send",
            Idle::NoSelectedSnapshots => {
                "no sender snapshot matches the snapshot filter: nothing to send"
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Idle(Idle),
    /// Never empty; run in order, each after the previous succeeded.
    Steps(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error(
        "the receiver has no snapshot and the initial replication policy is `fail`: seed it \
         by hand, or set the policy to `most_recent` or `all`"
    )]
    InitialReplicationRefused,
    #[error(
        "the receiver holds a partial receive of @{toname} (guid {toguid}), which no longer \
         exists on the sender, so it cannot be resumed; abort it on the receiver with \
         `zfs receive -A` (this discards only the partial data)"
    )]
    ResumeTargetGone { toname: String, toguid: u64 },
    #[error(
        "the receiver's partial receive of @{toname} does not continue from its newest \
         snapshot ({detail}); check what else receives into it, then abort the partial \
         receive with `zfs receive -A`"
    )]
    ResumeMismatch { toname: String, detail: String },
}

/// Plans one filesystem: resume first, then the remaining path under the policy.
/// `receiver` is empty when the receiving filesystem does not exist.
pub fn plan(
    sender: &[FilesystemVersion],
    receiver: &[FilesystemVersion],
    resume: Option<&ResumeInfo>,
    policy: &ReplicationPolicy,
) -> Result<Plan, PlanError> {
    let diff = diff(sender, receiver)?;
    match resume {
        Some(resume) => plan_resume(diff, resume, policy),
        None => plan_fresh(diff, policy),
    }
}

fn plan_fresh(diff: Diff, policy: &ReplicationPolicy) -> Result<Plan, PlanError> {
    let steps = match diff {
        Diff::SenderHasNoSnapshots => return Ok(Plan::Idle(Idle::SenderHasNoSnapshots)),
        Diff::InSync { .. } => return Ok(Plan::Idle(Idle::UpToDate)),
        Diff::Incremental { base, path } => incremental_steps(&base, &path, policy),
        Diff::Initial { snapshots } => {
            let selected =
                || snapshots.iter().enumerate().filter(|(_, s)| policy.snapshots.selects(s));
            let first = match policy.initial {
                InitialReplication::Fail => return Err(PlanError::InitialReplicationRefused),
                InitialReplication::MostRecent => selected().next_back(),
                InitialReplication::All => selected().next(),
            };
            let Some((index, first)) = first else {
                return Ok(Plan::Idle(Idle::NoSelectedSnapshots));
            };
            let mut steps = vec![Step { from: None, to: first.clone(), kind: StepKind::Full }];
            steps.extend(incremental_steps(first, &snapshots[index + 1..], policy));
            steps
        }
    };
    Ok(if steps.is_empty() { Plan::Idle(Idle::UpToDate) } else { Plan::Steps(steps) })
}

fn plan_resume(
    diff: Diff,
    resume: &ResumeInfo,
    policy: &ReplicationPolicy,
) -> Result<Plan, PlanError> {
    let toname = resume.toname.clone();
    let mismatch = |detail: String| PlanError::ResumeMismatch { toname: toname.clone(), detail };
    // What the receiver stands on, and what it could still get.
    let (base, candidates) = match diff {
        Diff::SenderHasNoSnapshots => {
            return Err(PlanError::ResumeTargetGone { toname, toguid: resume.toguid })
        }
        Diff::InSync { common } => (Some(common), Vec::new()),
        Diff::Incremental { base, path } => (Some(base), path),
        Diff::Initial { snapshots } => (None, snapshots),
    };
    let Some(index) = candidates.iter().position(|s| s.guid == resume.toguid) else {
        return Err(match &base {
            Some(base) if base.guid == resume.toguid => {
                mismatch(format!("the receiver already has guid {}", resume.toguid))
            }
            _ => PlanError::ResumeTargetGone { toname, toguid: resume.toguid },
        });
    };
    match (&base, resume.fromguid) {
        (None, None) => {}
        (Some(base), Some(from)) if base.guid == from => {}
        (None, Some(from)) => {
            return Err(mismatch(format!(
                "it continues from guid {from}, but the receiver has no snapshot"
            )))
        }
        (Some(base), Some(from)) => {
            return Err(mismatch(format!(
            "it continues from guid {from}, the receiver's newest common version is {} (guid {})",
            base.relative_name(),
            base.guid
        )))
        }
        (Some(base), None) => {
            return Err(mismatch(format!(
                "it is a full receive, but the receiver already has {} (guid {})",
                base.relative_name(),
                base.guid
            )))
        }
    }
    let to = &candidates[index];
    let mut steps = vec![Step {
        from: base,
        to: to.clone(),
        kind: StepKind::Resume { token: resume.token.clone() },
    }];
    steps.extend(incremental_steps(to, &candidates[index + 1..], policy));
    Ok(Plan::Steps(steps))
}

/// Steps from `base` over `path` (every sender snapshot after `base`, oldest first)
/// to the newest selected snapshot.
///
/// Batched mode never lets a `-I` package carry a snapshot the filter rejects (it
/// jumps over those with `-i`), and never starts a `-I` at a bookmark: not every ZFS
/// accepts a bookmark as the source of `-I`, while every one that has bookmarks
/// accepts it for `-i`.
fn incremental_steps(
    base: &FilesystemVersion,
    path: &[FilesystemVersion],
    policy: &ReplicationPolicy,
) -> Vec<Step> {
    let selected: Vec<usize> =
        (0..path.len()).filter(|&i| policy.snapshots.selects(&path[i])).collect();
    let mut steps = Vec::new();
    let mut from = base;
    // Index in `path` of `from`; `None` for `base`, which sits just before path[0].
    let mut from_index: Option<usize> = None;
    let mut next = 0;
    while next < selected.len() {
        let target = selected[next];
        let adjacent = target == from_index.map_or(0, |i| i + 1);
        let mut last = next;
        if policy.mode == StepMode::Batched && adjacent && from.is_snapshot() {
            while last + 1 < selected.len() && selected[last + 1] == selected[last] + 1 {
                last += 1;
            }
        }
        let to = &path[selected[last]];
        let kind = if last > next { StepKind::Batched } else { StepKind::Incremental };
        steps.push(Step { from: Some(from.clone()), to: to.clone(), kind });
        from = to;
        from_index = Some(selected[last]);
        next = last + 1;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diff::tests::v;

    fn policy(initial: InitialReplication, mode: StepMode) -> ReplicationPolicy {
        ReplicationPolicy { initial, snapshots: SnapshotFilter::all(), mode }
    }

    fn render(result: Result<Plan, PlanError>) -> String {
        match result {
            Ok(Plan::Idle(idle)) => format!("idle: {idle}"),
            Ok(Plan::Steps(steps)) => {
                steps.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; ")
            }
            Err(PlanError::Diff(e)) => {
                format!("diff error: {}", e.to_string().lines().next().unwrap_or(""))
            }
            Err(e) => format!("error: {e}"),
        }
    }

    fn history(n: u64) -> Vec<FilesystemVersion> {
        (1..=n).map(|i| v(&format!("@s{i}"), i, 10 * i)).collect()
    }

    /// The receiver's copies of the given sender snapshots (own txgs).
    fn received(of: &[FilesystemVersion]) -> Vec<FilesystemVersion> {
        of.iter()
            .enumerate()
            .map(|(i, s)| v(&format!("@{}", s.name), s.guid, 1 + i as u64))
            .collect()
    }

    #[test]
    fn default_mode_follows_default_protection() {
        assert_eq!(StepMode::default(), StepMode::PerSnapshot);
        assert_eq!(StepMode::for_protection(Protection::Resumability), StepMode::PerSnapshot);
        assert_eq!(StepMode::for_protection(Protection::IncrementalReplication), StepMode::Batched);
        assert_eq!(StepMode::for_protection(Protection::Nothing), StepMode::Batched);
        let p = ReplicationPolicy::default();
        assert_eq!(p.initial, InitialReplication::MostRecent);
        assert_eq!(p.mode, StepMode::PerSnapshot);
    }

    /// What, sender, receiver, policy, expected plan.
    type Case = (
        &'static str,
        Vec<FilesystemVersion>,
        Vec<FilesystemVersion>,
        ReplicationPolicy,
        &'static str,
    );

    #[test]
    fn table() {
        use InitialReplication::*;
        use StepMode::*;
        let s = history(4);
        let bookmark_base = vec![v("#s1", 1, 10), s[1].clone(), s[2].clone()];
        let cases: Vec<Case> = vec![
            ("nothing anywhere", vec![], vec![], policy(MostRecent, Batched), "idle: the sender has no snapshots yet: nothing to send"),
            ("in sync", s.clone(), received(&s), policy(MostRecent, Batched), "idle: up to date"),
            ("initial most recent", s.clone(), vec![], policy(MostRecent, Batched), "full @s4"),
            ("initial most recent, per snapshot", s.clone(), vec![], policy(MostRecent, PerSnapshot), "full @s4"),
            ("initial all, batched", s.clone(), vec![], policy(All, Batched), "full @s1; -I @s1 @s4"),
            ("initial all, per snapshot", s.clone(), vec![], policy(All, PerSnapshot), "full @s1; -i @s1 @s2; -i @s2 @s3; -i @s3 @s4"),
            ("initial all, one snapshot", s[..1].to_vec(), vec![], policy(All, Batched), "full @s1"),
            ("initial all, two snapshots", s[..2].to_vec(), vec![], policy(All, Batched), "full @s1; -i @s1 @s2"),
            ("initial fail", s.clone(), vec![], policy(Fail, Batched), "error: the receiver has no snapshot and the initial replication policy is `fail`: seed it by hand, or set the policy to `most_recent` or `all`"),
            ("incremental per snapshot", s.clone(), received(&s[..2]), policy(Fail, PerSnapshot), "-i @s2 @s3; -i @s3 @s4"),
            ("incremental batched", s.clone(), received(&s[..1]), policy(Fail, Batched), "-I @s1 @s4"),
            ("incremental batched, one snapshot", s.clone(), received(&s[..3]), policy(Fail, Batched), "-i @s3 @s4"),
            ("bookmark base, per snapshot", bookmark_base.clone(), received(&s[..1]), policy(MostRecent, PerSnapshot), "-i #s1 @s2; -i @s2 @s3"),
            ("bookmark base, batched: -I never from a bookmark", bookmark_base.clone(), received(&s[..1]), policy(MostRecent, Batched), "-i #s1 @s2; -i @s2 @s3"),
            ("conflict", s.clone(), vec![v("@x", 99, 1)], policy(MostRecent, Batched), "diff error: no common ancestor: none of the receiver's snapshots is a snapshot or bookmark of the sender (compared by guid), so no incremental send can start."),
        ];
        for (what, sender, receiver, policy, expected) in cases {
            assert_eq!(render(plan(&sender, &receiver, None, &policy)), expected, "case: {what}");
        }
    }

    #[test]
    fn filter_keeps_foreign_snapshots_out_of_every_step() {
        // @m1 and @m2 are an admin's manual snapshots; only `auto` ones are shipped.
        let sender = vec![
            v("@auto1", 1, 10),
            v("@auto2", 2, 20),
            v("@m1", 3, 30),
            v("@auto3", 4, 40),
            v("@auto4", 5, 50),
            v("@auto5", 6, 60),
            v("@m2", 7, 70),
        ];
        let filter = SnapshotFilter::with_prefixes(["auto"]).unwrap();
        let with = |initial, mode| ReplicationPolicy { initial, snapshots: filter.clone(), mode };
        let receiver = received(&sender[..1]);
        assert_eq!(
            render(plan(
                &sender,
                &receiver,
                None,
                &with(InitialReplication::MostRecent, StepMode::Batched)
            )),
            "-i @auto1 @auto2; -i @auto2 @auto3; -I @auto3 @auto5"
        );
        assert_eq!(
            render(plan(
                &sender,
                &receiver,
                None,
                &with(InitialReplication::MostRecent, StepMode::PerSnapshot)
            )),
            "-i @auto1 @auto2; -i @auto2 @auto3; -i @auto3 @auto4; -i @auto4 @auto5"
        );
        assert_eq!(
            render(plan(
                &sender,
                &[],
                None,
                &with(InitialReplication::MostRecent, StepMode::Batched)
            )),
            "full @auto5"
        );
        assert_eq!(
            render(plan(&sender, &[], None, &with(InitialReplication::All, StepMode::Batched))),
            "full @auto1; -i @auto1 @auto2; -i @auto2 @auto3; -I @auto3 @auto5"
        );
        // A foreign snapshot is a perfectly good base when the receiver has it (and the
        // start of a -I, which carries only selected snapshots here).
        let receiver = received(&[sender[0].clone(), sender[1].clone(), sender[2].clone()]);
        assert_eq!(
            render(plan(
                &sender,
                &receiver,
                None,
                &with(InitialReplication::MostRecent, StepMode::Batched)
            )),
            "-I @m1 @auto5"
        );
        // Only foreign snapshots are newer: nothing to do.
        let receiver = received(&sender[..6]);
        assert_eq!(
            render(plan(
                &sender,
                &receiver,
                None,
                &with(InitialReplication::MostRecent, StepMode::Batched)
            )),
            "idle: up to date"
        );
        let only_manual = vec![v("@m1", 3, 30)];
        assert_eq!(
            render(plan(
                &only_manual,
                &[],
                None,
                &with(InitialReplication::All, StepMode::Batched)
            )),
            "idle: no sender snapshot matches the snapshot filter: nothing to send"
        );
    }

    fn resume(to: &FilesystemVersion, from: Option<&FilesystemVersion>) -> ResumeInfo {
        ResumeInfo {
            token: format!("token-{}", to.name),
            toguid: to.guid,
            fromguid: from.map(|f| f.guid),
            toname: to.name.clone(),
            bytes: 4096,
        }
    }

    #[test]
    fn resume_comes_first_then_the_rest_of_the_path() {
        let s = history(5);
        let batched = policy(InitialReplication::MostRecent, StepMode::Batched);
        let per = policy(InitialReplication::MostRecent, StepMode::PerSnapshot);
        let receiver = received(&s[..2]);
        let token = resume(&s[2], Some(&s[1]));
        let got = plan(&s, &receiver, Some(&token), &batched).unwrap();
        assert_eq!(render(Ok(got.clone())), "resume @s2 @s3; -I @s3 @s5");
        let Plan::Steps(steps) = got else { unreachable!() };
        assert_eq!(steps[0].kind, StepKind::Resume { token: "token-s3".into() });
        assert_eq!(
            render(plan(&s, &receiver, Some(&token), &per)),
            "resume @s2 @s3; -i @s3 @s4; -i @s4 @s5"
        );
        // Resuming the last snapshot leaves nothing after it.
        let token = resume(&s[4], Some(&s[3]));
        assert_eq!(render(plan(&s, &received(&s[..4]), Some(&token), &batched)), "resume @s4 @s5");
        // A full receive resumes even under `fail`: it was started already.
        let token = resume(&s[0], None);
        let fail = policy(InitialReplication::Fail, StepMode::Batched);
        assert_eq!(render(plan(&s, &[], Some(&token), &fail)), "resume full @s1; -I @s1 @s5");
        // A resume may skip snapshots (a -i step) and come from a bookmark.
        let sender = vec![v("#s1", 1, 10), s[1].clone(), s[2].clone()];
        let token = resume(&s[2], Some(&sender[0]));
        assert_eq!(
            render(plan(&sender, &received(&s[..1]), Some(&token), &batched)),
            "resume #s1 @s3"
        );
    }

    #[test]
    fn resume_that_cannot_continue_is_a_clear_error() {
        let s = history(4);
        let batched = policy(InitialReplication::MostRecent, StepMode::Batched);
        let receiver = received(&s[..2]);
        // Target destroyed on the sender.
        let gone = vec![s[0].clone(), s[1].clone(), s[3].clone()];
        let token = resume(&s[2], Some(&s[1]));
        let err = plan(&gone, &receiver, Some(&token), &batched).unwrap_err();
        assert_eq!(err, PlanError::ResumeTargetGone { toname: "s3".into(), toguid: 3 });
        assert!(err.to_string().contains("@s3 (guid 3), which no longer exists on the sender"));
        assert!(err.to_string().contains("zfs receive -A"));
        // The sender has nothing left at all.
        let err = plan(&[], &receiver, Some(&token), &batched).unwrap_err();
        assert_eq!(err, PlanError::ResumeTargetGone { toname: "s3".into(), toguid: 3 });
        // The token continues from something other than the receiver's newest.
        let token = resume(&s[2], Some(&s[0]));
        let err = plan(&s, &receiver, Some(&token), &batched).unwrap_err();
        assert!(matches!(err, PlanError::ResumeMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("continues from guid 1"), "{err}");
        // A full receive token on a receiver that has snapshots.
        let token = resume(&s[2], None);
        assert!(matches!(
            plan(&s, &receiver, Some(&token), &batched),
            Err(PlanError::ResumeMismatch { .. })
        ));
        // An incremental token on a receiver without snapshots.
        let token = resume(&s[2], Some(&s[1]));
        let err = plan(&s, &[], Some(&token), &batched).unwrap_err();
        assert!(err.to_string().contains("the receiver has no snapshot"), "{err}");
        // The token's target is already on the receiver.
        let token = resume(&s[1], Some(&s[0]));
        assert!(matches!(
            plan(&s[..2], &receiver, Some(&token), &batched),
            Err(PlanError::ResumeMismatch { .. })
        ));
        // Conflicts win over resuming.
        let diverged = vec![receiver[0].clone(), receiver[1].clone(), v("@x", 99, 50)];
        assert!(matches!(plan(&s, &diverged, Some(&token), &batched), Err(PlanError::Diff(_))));
    }

    #[test]
    fn interrupted_batch_continues_from_the_newest_received_snapshot() {
        let s = history(6);
        let batched = policy(InitialReplication::MostRecent, StepMode::Batched);
        let receiver = received(&s[..1]);
        assert_eq!(render(plan(&s, &receiver, None, &batched)), "-I @s1 @s6");
        // The -I package broke off after @s3 arrived, without a resume token...
        let receiver = received(&s[..3]);
        assert_eq!(render(plan(&s, &receiver, None, &batched)), "-I @s3 @s6");
        // ...or with one for the snapshot it was in the middle of.
        let token = resume(&s[3], Some(&s[2]));
        assert_eq!(
            render(plan(&s, &receiver, Some(&token), &batched)),
            "resume @s3 @s4; -I @s4 @s6"
        );
        // And a new snapshot taken meanwhile simply joins the path.
        let mut grown = s.clone();
        grown.push(v("@s7", 7, 70));
        assert_eq!(render(plan(&grown, &receiver, None, &batched)), "-I @s3 @s7");
    }

    proptest::proptest! {
        /// Over random histories, filters and modes: steps form one chain from the
        /// receiver's position to the newest selected snapshot, every target is
        /// selected, and no -I carries a foreign snapshot or starts at a bookmark.
        #[test]
        fn steps_form_a_safe_chain(
            selected in proptest::collection::vec(proptest::bool::ANY, 1..15),
            received_count in 0usize..15,
            base_is_bookmark in proptest::bool::ANY,
            batched in proptest::bool::ANY,
            all in proptest::bool::ANY,
        ) {
            let sender_snaps: Vec<FilesystemVersion> = selected.iter().enumerate().map(|(i, sel)| {
                let name = if *sel { format!("@auto{i}") } else { format!("@manual{i}") };
                v(&name, i as u64 + 1, 10 * (i as u64 + 1))
            }).collect();
            let count = received_count.min(sender_snaps.len());
            let mut sender = sender_snaps.clone();
            if base_is_bookmark && count > 0 {
                let b = &sender_snaps[count - 1];
                sender[count - 1] = v(&format!("#{}", b.name), b.guid, b.createtxg);
            }
            let receiver = received(&sender_snaps[..count]);
            let policy = ReplicationPolicy {
                initial: if all { InitialReplication::All } else { InitialReplication::MostRecent },
                snapshots: SnapshotFilter::with_prefixes(["auto"]).unwrap(),
                mode: if batched { StepMode::Batched } else { StepMode::PerSnapshot },
            };
            let newest_selected = sender_snaps.iter().rev().find(|s| policy.snapshots.selects(s));
            let newest_selected_index = sender_snaps.iter().rposition(|s| policy.snapshots.selects(s));
            match plan(&sender, &receiver, None, &policy).unwrap() {
                Plan::Idle(_) => {
                    let behind = newest_selected_index.is_some_and(|i| i + 1 > count);
                    proptest::prop_assert!(!behind, "idle while a selected snapshot is missing");
                }
                Plan::Steps(steps) => {
                    let mut position = receiver.last().map(|r| r.guid);
                    for step in &steps {
                        proptest::prop_assert_eq!(step.from.as_ref().map(|f| f.guid), position);
                        proptest::prop_assert!(policy.snapshots.selects(&step.to));
                        let to_index = sender_snaps.iter().position(|s| s.guid == step.to.guid).unwrap();
                        match (&step.kind, &step.from) {
                            (StepKind::Full, None) => proptest::prop_assert!(receiver.is_empty()),
                            (StepKind::Incremental, Some(_)) => {}
                            (StepKind::Batched, Some(from)) => {
                                proptest::prop_assert!(from.is_snapshot());
                                let from_index = sender_snaps.iter().position(|s| s.guid == from.guid).unwrap();
                                proptest::prop_assert!(to_index > from_index + 1);
                                for carried in &sender_snaps[from_index + 1..to_index] {
                                    proptest::prop_assert!(policy.snapshots.selects(carried));
                                }
                            }
                            other => proptest::prop_assert!(false, "unexpected step {:?}", other),
                        }
                        position = Some(step.to.guid);
                    }
                    proptest::prop_assert_eq!(position, newest_selected.map(|s| s.guid));
                    if !batched {
                        let expected = sender_snaps[count..].iter().filter(|s| policy.snapshots.selects(s)).count();
                        let expected = if count == 0 && !all { 1 } else { expected };
                        proptest::prop_assert_eq!(steps.len(), expected);
                    }
                }
            }
        }
    }
}
