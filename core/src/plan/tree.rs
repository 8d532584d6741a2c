//! The step machine for a whole tree of filesystems.
//!
//! Built from both sides' filesystems and versions, it plans every filesystem up
//! front and then hands out actions one at a time: the job layer executes each
//! action (a `zfs` command, a send/receive pair) and answers with its result.
//!
//! - A filesystem runs its actions strictly in order, one at a time.
//! - A child starts only after its parent finished successfully (a parent that
//!   needs nothing done counts as finished at once): ZFS can only receive into an
//!   existing parent.
//! - A failure stops the failing filesystem and its whole subtree, nothing else.
//! - At most `max_concurrent_filesystems` filesystems are running at once.
//!
//! Driving it: call [`TreeMachine::poll_action`] until it returns `None`, execute
//! the actions, feed each result to [`TreeMachine::handle_result`], and poll again;
//! stop when [`TreeMachine::is_done`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroUsize;

use crate::zfs::{DatasetPath, FilesystemVersion};

use super::mapping::{Mapping, MappingError};
use super::steps::{plan, Idle, Plan, PlanError, ReplicationPolicy, ResumeInfo, Step, StepKind};

/// Filesystems replicated at once unless configured otherwise: one keeps the load
/// on both pools predictable.
pub const DEFAULT_MAX_CONCURRENT_FILESYSTEMS: usize = 1;

/// A selected sender filesystem and its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderFilesystem {
    pub path: DatasetPath,
    pub versions: Vec<FilesystemVersion>,
}

/// An existing receiver filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverFilesystem {
    pub path: DatasetPath,
    pub versions: Vec<FilesystemVersion>,
    /// Carries zferry's placeholder marker (created by zferry, holds no replica).
    pub is_placeholder: bool,
    /// A partial receive waiting to be resumed.
    pub resume: Option<ResumeInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeOptions {
    pub max_concurrent_filesystems: NonZeroUsize,
    /// Set on a filesystem right after the receive that created it.
    pub received_properties: Vec<(String, String)>,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions {
            max_concurrent_filesystems: NonZeroUsize::new(DEFAULT_MAX_CONCURRENT_FILESYSTEMS)
                .unwrap_or(NonZeroUsize::MIN),
            received_properties: vec![("readonly".into(), "on".into())],
        }
    }
}

/// A handle for one action handed out; answers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u64);

/// What the job layer is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanAction {
    /// Create an empty, unmounted filesystem carrying the placeholder marker.
    CreatePlaceholder { fs: DatasetPath },
    /// `zfs send` on the sender piped into `zfs receive` (never `-F`).
    Transfer { sender_fs: DatasetPath, receiver_fs: DatasetPath, step: Step },
    /// A full receive with `-F` into `receiver_fs`. The executor must check right
    /// before receiving that `receiver_fs` still carries the placeholder marker and
    /// has no snapshot, and fail the action otherwise: `-F` over anything else could
    /// destroy data.
    ReplacePlaceholder { sender_fs: DatasetPath, receiver_fs: DatasetPath, step: Step },
    /// Set properties (and remove the placeholder marker if asked) after a receive
    /// created or replaced the filesystem.
    SetProperties { fs: DatasetPath, props: Vec<(String, String)>, clear_placeholder: bool },
}

impl PlanAction {
    /// True for the actions that move snapshot data.
    pub fn is_transfer(&self) -> bool {
        matches!(self, PlanAction::Transfer { .. } | PlanAction::ReplacePlaceholder { .. })
    }
}

impl fmt::Display for PlanAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanAction::CreatePlaceholder { fs } => write!(f, "create placeholder {fs}"),
            PlanAction::Transfer { sender_fs, receiver_fs, step } => {
                write!(f, "send {sender_fs} {step} to {receiver_fs}")
            }
            PlanAction::ReplacePlaceholder { sender_fs, receiver_fs, step } => {
                write!(f, "send {sender_fs} {step} to placeholder {receiver_fs} (-F)")
            }
            PlanAction::SetProperties { fs, props, clear_placeholder } => {
                write!(f, "set")?;
                for (k, v) in props {
                    write!(f, " {k}={v}")?;
                }
                if *clear_placeholder {
                    write!(f, " (clear placeholder)")?;
                }
                write!(f, " on {fs}")
            }
        }
    }
}

/// The answer to one action. `bytes` is what the action moved in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    Completed { bytes: u64 },
    Failed { error: String, bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsRole {
    /// Receives `sender_fs`.
    Target { sender_fs: DatasetPath },
    /// Only a parent for targets below it.
    Placeholder,
}

/// Why a filesystem failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsFailure {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(
        "the receiving filesystem exists, has no snapshot and is not a zferry placeholder; \
         zferry will not overwrite it. Destroy or rename it if it holds nothing you need, \
         or set the placeholder marker on it"
    )]
    ExistsWithoutSnapshots,
    #[error("{action} failed: {error}")]
    Action { action: String, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsState {
    /// Not started: waiting for its parent or for a free slot.
    Waiting,
    Running,
    Succeeded,
    Failed(FsFailure),
    /// Not attempted because an ancestor failed.
    Skipped {
        failed_ancestor: DatasetPath,
    },
}

impl FsState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, FsState::Succeeded | FsState::Failed(_) | FsState::Skipped { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionStatus {
    Pending,
    Running,
    Completed,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    pub action: PlanAction,
    pub status: ActionStatus,
    /// Bytes moved so far (final once completed or failed).
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemReport {
    /// The receiver path; the sender path for a filesystem that could not be mapped.
    pub fs: DatasetPath,
    pub role: FsRole,
    pub state: FsState,
    /// Why a target has nothing to send, when it has not.
    pub idle: Option<Idle>,
    pub actions: Vec<ActionReport>,
}

impl FilesystemReport {
    pub fn actions_done(&self) -> usize {
        self.actions.iter().filter(|a| a.status == ActionStatus::Completed).count()
    }

    pub fn bytes(&self) -> u64 {
        self.actions.iter().fold(0u64, |sum, a| sum.saturating_add(a.bytes))
    }
}

/// Totals over the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeProgress {
    pub filesystems: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Actions run or still to run (those a failure cancelled are left out).
    pub actions_total: usize,
    pub actions_done: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("sender filesystem {0} is listed twice")]
    DuplicateSender(DatasetPath),
    #[error("receiver filesystem {0} is listed twice")]
    DuplicateReceiver(DatasetPath),
    #[error("no action {0:?} is in flight")]
    UnknownAction(ActionId),
}

#[derive(Debug)]
struct Node {
    report: FilesystemReport,
    parent: Option<usize>,
    children: Vec<usize>,
    /// Index of the next action to hand out.
    next: usize,
}

/// The stepped state machine over one tree.
#[derive(Debug)]
pub struct TreeMachine {
    /// Top-down (a parent's index is below its children's).
    nodes: Vec<Node>,
    /// Sender filesystems that have no receiver path.
    unmapped: Vec<FilesystemReport>,
    max_running: usize,
    running: usize,
    /// Waiting nodes whose parent is done, in tree order.
    ready: BTreeSet<usize>,
    /// Running nodes with no action in flight.
    runnable: BTreeSet<usize>,
    in_flight: BTreeMap<ActionId, usize>,
    next_id: u64,
}

impl TreeMachine {
    /// Plans every filesystem. Per-filesystem problems (conflicts, paths that cannot
    /// be mapped) become that filesystem's failure; only inconsistent input is an
    /// error of the whole.
    pub fn new(
        senders: Vec<SenderFilesystem>,
        receivers: Vec<ReceiverFilesystem>,
        mapping: &Mapping,
        policy: &ReplicationPolicy,
        options: &TreeOptions,
    ) -> Result<TreeMachine, TreeError> {
        let mut receiver_by_path: BTreeMap<DatasetPath, ReceiverFilesystem> = BTreeMap::new();
        for r in receivers {
            if receiver_by_path.contains_key(&r.path) {
                return Err(TreeError::DuplicateReceiver(r.path));
            }
            receiver_by_path.insert(r.path.clone(), r);
        }
        let mut seen_senders = BTreeSet::new();
        let mut targets: BTreeMap<DatasetPath, SenderFilesystem> = BTreeMap::new();
        let mut unmapped = Vec::new();
        for s in senders {
            if !seen_senders.insert(s.path.clone()) {
                return Err(TreeError::DuplicateSender(s.path));
            }
            match mapping.map(&s.path) {
                Ok(receiver_path) => {
                    targets.insert(receiver_path, s);
                }
                Err(e) => unmapped.push(FilesystemReport {
                    fs: s.path.clone(),
                    role: FsRole::Target { sender_fs: s.path },
                    state: FsState::Failed(e.into()),
                    idle: None,
                    actions: Vec::new(),
                }),
            }
        }
        let placeholders: BTreeSet<DatasetPath> =
            mapping.placeholders(targets.keys()).into_iter().collect();
        // Component-wise order: each path comes before, and right next to, the paths
        // below it.
        let paths: BTreeSet<&DatasetPath> = targets.keys().chain(placeholders.iter()).collect();
        let paths: Vec<&DatasetPath> = paths.into_iter().collect();
        let index: BTreeMap<&DatasetPath, usize> =
            paths.iter().enumerate().map(|(i, p)| (*p, i)).collect();

        let mut nodes: Vec<Node> = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            let parent = path.parent().and_then(|p| index.get(&p).copied());
            let has_children = paths.get(i + 1).is_some_and(|next| next.has_prefix(path));
            let receiver = receiver_by_path.get(*path);
            let (role, state, idle, actions) = match targets.get(*path) {
                None => {
                    let actions = match receiver {
                        Some(_) => Vec::new(),
                        None => vec![PlanAction::CreatePlaceholder { fs: (*path).clone() }],
                    };
                    (FsRole::Placeholder, FsState::Waiting, None, actions)
                }
                Some(sender) => {
                    let role = FsRole::Target { sender_fs: sender.path.clone() };
                    match target_actions(sender, path, receiver, has_children, policy, options) {
                        Ok((idle, actions)) => (role, FsState::Waiting, idle, actions),
                        Err(failure) => (role, FsState::Failed(failure), None, Vec::new()),
                    }
                }
            };
            if let Some(n) = parent.and_then(|p| nodes.get_mut(p)) {
                n.children.push(i);
            }
            nodes.push(Node {
                report: FilesystemReport {
                    fs: (*path).clone(),
                    role,
                    state,
                    idle,
                    actions: actions
                        .into_iter()
                        .map(|action| ActionReport {
                            action,
                            status: ActionStatus::Pending,
                            bytes: 0,
                        })
                        .collect(),
                },
                parent,
                children: Vec::new(),
                next: 0,
            });
        }

        let mut machine = TreeMachine {
            nodes,
            unmapped,
            max_running: options.max_concurrent_filesystems.get(),
            running: 0,
            ready: BTreeSet::new(),
            runnable: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            next_id: 0,
        };
        for i in 0..machine.nodes.len() {
            if matches!(machine.nodes[i].report.state, FsState::Failed(_)) {
                machine.skip_subtree(i);
            }
        }
        for i in 0..machine.nodes.len() {
            if machine.nodes[i].parent.is_none() {
                machine.make_ready(i);
            }
        }
        Ok(machine)
    }

    /// The next action to execute, if one may start now.
    pub fn poll_action(&mut self) -> Option<(ActionId, PlanAction)> {
        let node = match self.runnable.pop_first() {
            Some(node) => node,
            None if self.running < self.max_running => {
                let node = self.ready.pop_first()?;
                self.running += 1;
                self.nodes[node].report.state = FsState::Running;
                node
            }
            None => return None,
        };
        let id = ActionId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(id, node);
        let n = &mut self.nodes[node];
        let action = &mut n.report.actions[n.next];
        action.status = ActionStatus::Running;
        Some((id, action.action.clone()))
    }

    /// Bytes an action in flight has moved so far.
    pub fn handle_progress(&mut self, id: ActionId, bytes: u64) -> Result<(), TreeError> {
        let node = *self.in_flight.get(&id).ok_or(TreeError::UnknownAction(id))?;
        let n = &mut self.nodes[node];
        n.report.actions[n.next].bytes = bytes;
        Ok(())
    }

    /// The outcome of an action handed out by [`TreeMachine::poll_action`].
    pub fn handle_result(&mut self, id: ActionId, result: ActionResult) -> Result<(), TreeError> {
        let node = self.in_flight.remove(&id).ok_or(TreeError::UnknownAction(id))?;
        let n = &mut self.nodes[node];
        let action = &mut n.report.actions[n.next];
        match result {
            ActionResult::Completed { bytes } => {
                action.bytes = bytes;
                action.status = ActionStatus::Completed;
                n.next += 1;
                if n.next < n.report.actions.len() {
                    self.runnable.insert(node);
                } else {
                    self.running -= 1;
                    self.finish(node);
                }
            }
            ActionResult::Failed { error, bytes } => {
                action.bytes = bytes;
                action.status = ActionStatus::Failed(error.clone());
                let failure = FsFailure::Action { action: action.action.to_string(), error };
                n.report.state = FsState::Failed(failure);
                self.running -= 1;
                self.skip_subtree(node);
            }
        }
        Ok(())
    }

    /// True when every filesystem has succeeded, failed or been skipped.
    pub fn is_done(&self) -> bool {
        self.in_flight.is_empty() && self.nodes.iter().all(|n| n.report.state.is_terminal())
    }

    /// One report per filesystem, top-down, then the ones that could not be mapped.
    pub fn report(&self) -> Vec<FilesystemReport> {
        self.nodes.iter().map(|n| n.report.clone()).chain(self.unmapped.iter().cloned()).collect()
    }

    pub fn progress(&self) -> TreeProgress {
        let mut p = TreeProgress::default();
        for r in self.nodes.iter().map(|n| &n.report).chain(self.unmapped.iter()) {
            p.filesystems += 1;
            match r.state {
                FsState::Succeeded => p.succeeded += 1,
                FsState::Failed(_) => p.failed += 1,
                FsState::Skipped { .. } => p.skipped += 1,
                FsState::Waiting | FsState::Running => {}
            }
            // Actions that will never run (after a failure) are not part of the total.
            p.actions_total += if r.state.is_terminal() {
                r.actions.iter().filter(|a| a.status != ActionStatus::Pending).count()
            } else {
                r.actions.len()
            };
            p.actions_done += r.actions_done();
            p.bytes = p.bytes.saturating_add(r.bytes());
        }
        p
    }

    /// `node`'s parent is done: queue it, or finish it at once if it has nothing to do.
    fn make_ready(&mut self, node: usize) {
        if self.nodes[node].report.state != FsState::Waiting {
            return;
        }
        if self.nodes[node].report.actions.is_empty() {
            self.finish(node);
        } else {
            self.ready.insert(node);
        }
    }

    /// Marks `node` succeeded and releases its children, iteratively (trees can be
    /// deep and wide; no recursion).
    fn finish(&mut self, node: usize) {
        let mut stack = vec![node];
        while let Some(done) = stack.pop() {
            self.nodes[done].report.state = FsState::Succeeded;
            for child in self.nodes[done].children.clone() {
                if self.nodes[child].report.state != FsState::Waiting {
                    continue;
                }
                if self.nodes[child].report.actions.is_empty() {
                    stack.push(child);
                } else {
                    self.ready.insert(child);
                }
            }
        }
    }

    /// Every waiting descendant of `failed` is skipped (descendants that failed on
    /// their own keep their own reason).
    fn skip_subtree(&mut self, failed: usize) {
        let failed_ancestor = self.nodes[failed].report.fs.clone();
        let mut stack = self.nodes[failed].children.clone();
        while let Some(node) = stack.pop() {
            if self.nodes[node].report.state == FsState::Waiting {
                self.nodes[node].report.state =
                    FsState::Skipped { failed_ancestor: failed_ancestor.clone() };
                self.ready.remove(&node);
            }
            stack.extend(self.nodes[node].children.iter().copied());
        }
    }
}

/// The actions of one target filesystem, or why it cannot be replicated.
fn target_actions(
    sender: &SenderFilesystem,
    receiver_fs: &DatasetPath,
    receiver: Option<&ReceiverFilesystem>,
    has_children: bool,
    policy: &ReplicationPolicy,
    options: &TreeOptions,
) -> Result<(Option<Idle>, Vec<PlanAction>), FsFailure> {
    let no_versions: &[FilesystemVersion] = &[];
    let receiver_versions = receiver.map_or(no_versions, |r| r.versions.as_slice());
    let resume = receiver.and_then(|r| r.resume.as_ref());
    let steps = match plan(&sender.versions, receiver_versions, resume, policy)? {
        Plan::Idle(idle) => {
            // Children still need a parent to receive into.
            let actions = if receiver.is_none() && has_children {
                vec![PlanAction::CreatePlaceholder { fs: receiver_fs.clone() }]
            } else {
                Vec::new()
            };
            return Ok((Some(idle), actions));
        }
        Plan::Steps(steps) => steps,
    };
    let transfer = |step: Step| PlanAction::Transfer {
        sender_fs: sender.path.clone(),
        receiver_fs: receiver_fs.clone(),
        step,
    };
    let set_properties = |clear_placeholder: bool| {
        (clear_placeholder || !options.received_properties.is_empty()).then(|| {
            PlanAction::SetProperties {
                fs: receiver_fs.clone(),
                props: options.received_properties.clone(),
                clear_placeholder,
            }
        })
    };
    let mut steps = steps.into_iter();
    let mut actions = Vec::new();
    let Some(first) = steps.next() else { return Ok((None, actions)) };
    if first.from.is_some() {
        actions.push(transfer(first));
    } else {
        // The first step creates the filesystem (full send, or a full one resumed).
        let resuming = matches!(first.kind, StepKind::Resume { .. });
        match receiver {
            None => {
                actions.push(transfer(first));
                actions.extend(set_properties(false));
            }
            Some(r) if r.is_placeholder => {
                actions.push(PlanAction::ReplacePlaceholder {
                    sender_fs: sender.path.clone(),
                    receiver_fs: receiver_fs.clone(),
                    step: first,
                });
                actions.extend(set_properties(true));
            }
            // An interrupted full receive leaves the new filesystem behind, empty.
            Some(_) if resuming => {
                actions.push(transfer(first));
                actions.extend(set_properties(false));
            }
            Some(_) => return Err(FsFailure::ExistsWithoutSnapshots),
        }
    }
    actions.extend(steps.map(transfer));
    Ok((None, actions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diff::tests::v;
    use crate::plan::mapping::ClientIdentity;
    use crate::plan::policy::InitialReplication;
    use crate::plan::steps::StepMode;

    fn p(s: &str) -> DatasetPath {
        DatasetPath::parse(s).unwrap()
    }

    fn history(n: u64) -> Vec<FilesystemVersion> {
        (1..=n).map(|i| v(&format!("@s{i}"), i, 10 * i)).collect()
    }

    fn sender(path: &str, versions: Vec<FilesystemVersion>) -> SenderFilesystem {
        SenderFilesystem { path: p(path), versions }
    }

    fn receiver(
        path: &str,
        versions: Vec<FilesystemVersion>,
        is_placeholder: bool,
    ) -> ReceiverFilesystem {
        ReceiverFilesystem { path: p(path), versions, is_placeholder, resume: None }
    }

    fn mapping() -> Mapping {
        Mapping::push_to_sink(p("backup"), &ClientIdentity::new("h").unwrap()).unwrap()
    }

    fn policy() -> ReplicationPolicy {
        ReplicationPolicy {
            initial: InitialReplication::MostRecent,
            mode: StepMode::PerSnapshot,
            ..Default::default()
        }
    }

    /// Drives the machine, answering each action with `answer`; returns the
    /// actions in the order they were handed out.
    fn drive(
        machine: &mut TreeMachine,
        answer: impl Fn(&PlanAction) -> ActionResult,
    ) -> Vec<String> {
        let mut log = Vec::new();
        let mut guard = 0;
        while !machine.is_done() {
            let mut batch = Vec::new();
            while let Some((id, action)) = machine.poll_action() {
                batch.push((id, action));
            }
            assert!(!batch.is_empty(), "stuck: not done, nothing to do");
            for (id, action) in batch {
                let result = answer(&action);
                let tag =
                    if matches!(result, ActionResult::Failed { .. }) { " FAILED" } else { "" };
                log.push(format!("{action}{tag}"));
                machine.handle_result(id, result).unwrap();
            }
            guard += 1;
            assert!(guard < 100_000);
        }
        log
    }

    fn fail_on(needle: &'static str) -> impl Fn(&PlanAction) -> ActionResult {
        move |action| {
            if action.to_string().contains(needle) {
                ActionResult::Failed { error: "cannot receive: out of space".into(), bytes: 7 }
            } else {
                ActionResult::Completed { bytes: if action.is_transfer() { 1000 } else { 0 } }
            }
        }
    }

    /// A tree with every kind of filesystem: placeholders to create, an initial
    /// receive with children, incrementals, a placeholder to replace, a conflict, a
    /// filesystem in sync, one whose receive fails, and a sender without snapshots.
    fn scenario() -> (Vec<SenderFilesystem>, Vec<ReceiverFilesystem>) {
        let s = history(3);
        let rcv = |n: usize| -> Vec<FilesystemVersion> {
            s[..n]
                .iter()
                .enumerate()
                .map(|(i, x)| v(&format!("@{}", x.name), x.guid, 1 + i as u64))
                .collect()
        };
        let senders = vec![
            sender("tank/a", s.clone()),
            sender("tank/a/child", s.clone()),
            sender("tank/b", s.clone()),
            sender("tank/b/bad", s.clone()),
            sender("tank/b/bad/deep", s.clone()),
            sender("tank/c", s.clone()),
            sender("tank/d", s.clone()),
            sender("tank/d/e", s.clone()),
            sender("tank/e", s.clone()),
            sender("tank/empty", vec![]),
            sender("tank/empty/x", s.clone()),
        ];
        let receivers = vec![
            receiver("backup", vec![], false),
            receiver("backup/h", vec![], true),
            receiver("backup/h/tank/b", rcv(1), false),
            receiver("backup/h/tank/c", vec![], true),
            receiver("backup/h/tank/d", vec![rcv(1)[0].clone(), v("@x", 99, 5)], false),
            receiver("backup/h/tank/e", rcv(3), false),
            receiver("backup/h/unrelated", vec![], false),
        ];
        (senders, receivers)
    }

    #[test]
    fn whole_tree_in_order_with_a_failing_child() {
        let (senders, receivers) = scenario();
        let mut m =
            TreeMachine::new(senders, receivers, &mapping(), &policy(), &TreeOptions::default())
                .unwrap();
        // Before anything ran: the conflict is known, its subtree skipped.
        let progress = m.progress();
        assert_eq!((progress.failed, progress.skipped, progress.actions_done), (1, 1, 0));
        let log = drive(&mut m, fail_on("tank/b/bad"));
        assert_eq!(
            log,
            [
                "create placeholder backup/h/tank",
                "send tank/a full @s3 to backup/h/tank/a",
                "set readonly=on on backup/h/tank/a",
                "send tank/a/child full @s3 to backup/h/tank/a/child",
                "set readonly=on on backup/h/tank/a/child",
                "send tank/b -i @s1 @s2 to backup/h/tank/b",
                "send tank/b -i @s2 @s3 to backup/h/tank/b",
                "send tank/b/bad full @s3 to backup/h/tank/b/bad FAILED",
                "send tank/c full @s3 to placeholder backup/h/tank/c (-F)",
                "set readonly=on (clear placeholder) on backup/h/tank/c",
                "create placeholder backup/h/tank/empty",
                "send tank/empty/x full @s3 to backup/h/tank/empty/x",
                "set readonly=on on backup/h/tank/empty/x",
            ]
        );
        let report = m.report();
        let state = |fs: &str| report.iter().find(|r| r.fs == p(fs)).unwrap().state.clone();
        assert_eq!(state("backup/h"), FsState::Succeeded);
        assert_eq!(state("backup/h/tank/b"), FsState::Succeeded);
        assert_eq!(
            state("backup/h/tank/b/bad"),
            FsState::Failed(FsFailure::Action {
                action: "send tank/b/bad full @s3 to backup/h/tank/b/bad".into(),
                error: "cannot receive: out of space".into()
            })
        );
        assert_eq!(
            state("backup/h/tank/b/bad/deep"),
            FsState::Skipped { failed_ancestor: p("backup/h/tank/b/bad") }
        );
        let FsState::Failed(FsFailure::Plan(conflict)) = state("backup/h/tank/d") else { panic!() };
        assert!(conflict.to_string().contains("diverged"), "{conflict}");
        assert_eq!(
            state("backup/h/tank/d/e"),
            FsState::Skipped { failed_ancestor: p("backup/h/tank/d") }
        );
        assert_eq!(state("backup/h/tank/e"), FsState::Succeeded);
        let e = report.iter().find(|r| r.fs == p("backup/h/tank/e")).unwrap();
        assert_eq!(e.idle, Some(Idle::UpToDate));
        let empty = report.iter().find(|r| r.fs == p("backup/h/tank/empty")).unwrap();
        assert_eq!(empty.idle, Some(Idle::SenderHasNoSnapshots));
        assert_eq!(empty.role, FsRole::Target { sender_fs: p("tank/empty") });
        assert!(report.iter().all(|r| r.fs != p("backup/h/unrelated")));
        let b = report.iter().find(|r| r.fs == p("backup/h/tank/b")).unwrap();
        assert_eq!((b.actions_done(), b.actions.len(), b.bytes()), (2, 2, 2000));
        let progress = m.progress();
        assert_eq!(
            progress,
            TreeProgress {
                filesystems: 13,
                succeeded: 9,
                failed: 2,
                skipped: 2,
                actions_total: 13,
                actions_done: 12,
                bytes: 6 * 1000 + 7,
            }
        );
    }

    #[test]
    fn concurrency_limit_and_parent_before_child() {
        let (senders, receivers) = scenario();
        let options = TreeOptions {
            max_concurrent_filesystems: NonZeroUsize::new(3).unwrap(),
            ..TreeOptions::default()
        };
        let mut m = TreeMachine::new(senders, receivers, &mapping(), &policy(), &options).unwrap();
        // Only the shared parent can start; everything else waits for it.
        let (id, first) = m.poll_action().unwrap();
        assert_eq!(first.to_string(), "create placeholder backup/h/tank");
        assert_eq!(m.poll_action(), None);
        m.handle_result(id, ActionResult::Completed { bytes: 0 }).unwrap();
        // Now three filesystems run at once, one action each.
        let started: Vec<_> = std::iter::from_fn(|| m.poll_action()).collect();
        let names: Vec<String> = started.iter().map(|(_, a)| a.to_string()).collect();
        assert_eq!(
            names,
            [
                "send tank/a full @s3 to backup/h/tank/a",
                "send tank/b -i @s1 @s2 to backup/h/tank/b",
                "send tank/c full @s3 to placeholder backup/h/tank/c (-F)",
            ]
        );
        assert_eq!(m.progress().actions_done, 1);
        // Progress is visible while a transfer runs.
        m.handle_progress(started[0].0, 512).unwrap();
        let a = m.report().into_iter().find(|r| r.fs == p("backup/h/tank/a")).unwrap();
        assert_eq!((a.state.clone(), a.bytes()), (FsState::Running, 512));
        // Finishing tank/b's first step gives its second step, not a new filesystem.
        m.handle_result(started[1].0, ActionResult::Completed { bytes: 10 }).unwrap();
        let (_, next) = m.poll_action().unwrap();
        assert_eq!(next.to_string(), "send tank/b -i @s2 @s3 to backup/h/tank/b");
        assert_eq!(m.poll_action(), None);
        // Answers for unknown or already answered actions are refused, harmlessly.
        assert_eq!(
            m.handle_result(started[1].0, ActionResult::Completed { bytes: 0 }),
            Err(TreeError::UnknownAction(started[1].0))
        );
        assert_eq!(
            m.handle_progress(ActionId(999), 1),
            Err(TreeError::UnknownAction(ActionId(999)))
        );
        let (b_second, _) = (m.in_flight.keys().max().copied().unwrap(), ());
        for id in [started[0].0, started[2].0, b_second] {
            m.handle_result(id, ActionResult::Completed { bytes: 1 }).unwrap();
        }
        drive(&mut m, |_| ActionResult::Completed { bytes: 1 });
        assert!(m.is_done());
        let progress = m.progress();
        assert_eq!(progress.actions_done, progress.actions_total);
        assert_eq!((progress.failed, progress.skipped), (1, 1), "only the conflict and below");
    }

    #[test]
    fn receivers_that_need_care() {
        let s = history(2);
        let resume = ResumeInfo {
            token: "1-abc".into(),
            toguid: 2,
            fromguid: None,
            toname: "s2".into(),
            bytes: 10,
        };
        let senders = vec![
            sender("tank/exists", s.clone()),
            sender("tank/partial", s.clone()),
            sender("tank/ph-partial", s.clone()),
        ];
        let receivers = vec![
            receiver("backup/h", vec![], true),
            receiver("backup/h/tank", vec![], true),
            receiver("backup/h/tank/exists", vec![], false),
            ReceiverFilesystem {
                resume: Some(resume.clone()),
                ..receiver("backup/h/tank/partial", vec![], false)
            },
            ReceiverFilesystem {
                resume: Some(resume),
                ..receiver("backup/h/tank/ph-partial", vec![], true)
            },
        ];
        let options = TreeOptions { received_properties: vec![], ..TreeOptions::default() };
        let mut m = TreeMachine::new(senders, receivers, &mapping(), &policy(), &options).unwrap();
        let log = drive(&mut m, |_| ActionResult::Completed { bytes: 1 });
        assert_eq!(
            log,
            [
                "send tank/partial resume full @s2 to backup/h/tank/partial",
                "send tank/ph-partial resume full @s2 to placeholder backup/h/tank/ph-partial (-F)",
                "set (clear placeholder) on backup/h/tank/ph-partial",
            ]
        );
        let report = m.report();
        assert_eq!(report[2].state, FsState::Failed(FsFailure::ExistsWithoutSnapshots));
    }

    #[test]
    fn bad_input() {
        let s = history(1);
        let dup = vec![sender("tank/a", s.clone()), sender("tank/a", s.clone())];
        assert_eq!(
            TreeMachine::new(dup, vec![], &mapping(), &policy(), &TreeOptions::default())
                .unwrap_err(),
            TreeError::DuplicateSender(p("tank/a"))
        );
        let dup = vec![receiver("backup/h", vec![], true), receiver("backup/h", vec![], true)];
        assert_eq!(
            TreeMachine::new(vec![], dup, &mapping(), &policy(), &TreeOptions::default())
                .unwrap_err(),
            TreeError::DuplicateReceiver(p("backup/h"))
        );
        // A path that cannot be mapped fails alone.
        let long = format!("tank/{}", "x".repeat(245));
        let senders = vec![sender(&long, s.clone()), sender("tank", s.clone())];
        let mut m =
            TreeMachine::new(senders, vec![], &mapping(), &policy(), &TreeOptions::default())
                .unwrap();
        let log = drive(&mut m, |_| ActionResult::Completed { bytes: 1 });
        assert_eq!(
            log,
            [
                "create placeholder backup/h",
                "send tank full @s1 to backup/h/tank",
                "set readonly=on on backup/h/tank",
            ]
        );
        let report = m.report();
        assert!(matches!(report.last().unwrap().state, FsState::Failed(FsFailure::Mapping(_))));
        // Nothing at all to do.
        let mut m =
            TreeMachine::new(vec![], vec![], &mapping(), &policy(), &TreeOptions::default())
                .unwrap();
        assert!(m.is_done());
        assert_eq!(m.poll_action(), None);
    }

    #[test]
    fn plans_a_large_tree() {
        // 2,000 filesystems × 200 snapshots, half of them 150 snapshots behind.
        // Its speed is measured by `cargo bench --bench plan`, not asserted here.
        let snapshots = 200u64;
        let history = history(snapshots);
        let mut senders = Vec::new();
        let mut receivers =
            vec![receiver("backup/h", vec![], true), receiver("backup/h/tank", vec![], true)];
        for i in 0..2_000 {
            let path = format!("tank/fs{i}");
            senders.push(sender(&path, history.clone()));
            let have = if i % 2 == 0 { snapshots as usize } else { 50 };
            let versions = history[..have]
                .iter()
                .enumerate()
                .map(|(k, x)| v(&format!("@{}", x.name), x.guid, 1 + k as u64))
                .collect();
            receivers.push(receiver(&format!("backup/h/{path}"), versions, false));
        }
        let policy = ReplicationPolicy { mode: StepMode::Batched, ..policy() };
        let options = TreeOptions {
            max_concurrent_filesystems: NonZeroUsize::new(8).unwrap(),
            ..TreeOptions::default()
        };
        let mut m = TreeMachine::new(senders, receivers, &mapping(), &policy, &options).unwrap();
        let log = drive(&mut m, |_| ActionResult::Completed { bytes: 1 });
        assert_eq!(log.len(), 1_000);
        assert_eq!(m.progress().succeeded, 2_002);
    }
}
