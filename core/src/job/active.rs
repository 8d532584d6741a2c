//! The active jobs: push (send local filesystems to a sink) and pull (fetch a
//! source's filesystems into a local root). One replication cycle at a time:
//! list both sides, then per filesystem, parents first, plan by guid and run the
//! steps. A filesystem that fails stops its own subtree and nothing else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::destroy::{DestroyOutcome, DestroyTask};
use super::protocol::{
    DescribeResumeToken, DescribeResumeTokenRequest, DestroySnapshots, FilesystemState,
    ListFilesystems, ListVersions, MoveCursor, MoveCursorRequest, Receive, ReceiveRequest,
    ResumeDescription, Send, StepSpec,
};
use super::prune::PruneSpec;
use super::receiver::{ReceiveKind, ReceiveTask};
use super::snapper::{RoundOutcome, Snapper, SnapperSpec};
use super::zfsops;
use super::{DialectProbe, Job, JobCtx};

mod prune_phase;
use crate::control::{JobStatus, Progress, PruneSummary, RunSummary};
use crate::node::{ConnId, Endpoint, Level, ProcId, ProcessResult, StdinFrom, StdoutTo};
use crate::plan::filter::FilesystemFilter;
use crate::plan::steps::{plan, Plan, ReplicationPolicy, ResumeInfo, Step, StepKind, StepMode};
use crate::rpc::SessionEvent;
use crate::time::Instant;
use crate::zfs::{DatasetPath, Dialect, FilesystemVersion};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
}

#[derive(Debug, Clone)]
pub struct ActiveSpec {
    pub name: String,
    pub direction: Direction,
    pub connect: Endpoint,
    /// Our name for an in-process listener (zrepl's `client_identity`).
    pub client_identity: String,
    /// Push: which local filesystems to send. Pull: unused (the source filters).
    pub filter: FilesystemFilter,
    /// Push: the datasets to list the sender's filesystems under (the pools the
    /// filter names); empty means every pool.
    pub list_roots: Vec<DatasetPath>,
    /// Pull: the local receive root. It must exist; zferry never creates it.
    pub root_fs: Option<DatasetPath>,
    pub policy: ReplicationPolicy,
    /// Run a cycle this often (pull's `interval`); `None`: only when woken.
    pub interval: Option<Duration>,
    /// Prune both sides after each cycle; `None`: the job has no pruning rules.
    pub prune: Option<PruneSpec>,
    /// Push with periodic or cron snapshotting: each round is followed by a
    /// replication cycle.
    pub snapshotting: Option<SnapperSpec>,
}

/// What a cycle does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CycleKind {
    /// Replicate, then prune.
    #[default]
    Replicate,
    /// Prune only (`zferry prune`); with `dry_run`, print what would go.
    PruneOnly { dry_run: bool },
}

/// What the cycle waits for now.
#[derive(Debug)]
enum Wait {
    Dialect,
    Connection,
    /// A local listing process.
    LocalList {
        proc: ProcId,
        what: ListKind,
    },
    RemoteFilesystems,
    RemoteVersions,
    /// Reading the receiver's resume token on the sending side: a local
    /// process (push, `proc` set) or the source (pull).
    ResumeToken {
        proc: Option<ProcId>,
        token: String,
        receiver: Vec<FilesystemVersion>,
    },
    Transfer(Box<Transfer>),
    /// The source moving the replication cursor of `fs` (pull).
    RemoteCursor {
        fs: DatasetPath,
    },
    /// Moving the replication cursor bookmark of `fs` (push).
    Cursor {
        proc: ProcId,
        fs: DatasetPath,
        rest: VecDeque<crate::node::ProcessSpec>,
    },
    /// Pruning `fs`: both sides' versions, listed at once (`proc` lists ours).
    PruneLists {
        fs: DatasetPath,
        proc: ProcId,
        remote: Option<Result<Vec<FilesystemVersion>, String>>,
        local: Option<ProcessResult>,
    },
    /// Pruning `fs`: destroying on our side, then `remote` on the other.
    PruneLocalDestroy {
        task: Box<DestroyTask>,
        fs: DatasetPath,
        remote: Vec<FilesystemVersion>,
    },
    PruneRemoteDestroy {
        fs: DatasetPath,
        local: DestroyOutcome,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Filesystems,
    Versions,
}

#[derive(Debug)]
struct Transfer {
    step: Step,
    /// Push: our `zfs send`. Pull: the receive task (which runs `zfs receive`).
    send: Option<ProcId>,
    send_result: Option<ProcessResult>,
    receive: Option<ReceiveTask>,
    /// The peer's answer (push: the sink's receive; pull: the source's send).
    answered: Option<Result<(), String>>,
    /// Pull: the source's stream has ended or was aborted.
    stream_done: bool,
    /// Pull: we asked the source to stop its stream.
    cancelled: bool,
}

#[derive(Debug, Default)]
struct Cycle {
    started_wall: i64,
    conn: Option<ConnId>,
    local_filesystems: BTreeMap<DatasetPath, zfsops::LocalFilesystem>,
    local_versions: BTreeMap<DatasetPath, Vec<FilesystemVersion>>,
    /// The other side's filesystems, by sender path.
    remote: BTreeMap<DatasetPath, FilesystemState>,
    /// Filesystems to replicate, parents first.
    queue: VecDeque<DatasetPath>,
    current: Option<DatasetPath>,
    sender_versions: Vec<FilesystemVersion>,
    steps: VecDeque<Step>,
    steps_total: u32,
    step_index: u32,
    fs_bytes: u64,
    failed: BTreeSet<DatasetPath>,
    reports: Vec<String>,
    failures: u32,
    /// Set when the cycle cannot go on at all (no connection, listing failed).
    fatal: Option<String>,
    kind: CycleKind,
    /// Filesystems whose replication ended (well or not) in this cycle.
    filesystems_done: u32,
    /// The newest snapshot the current filesystem's receiver got in this cycle.
    last_sent: Option<FilesystemVersion>,
    /// Filesystems replicated (or found up to date) in this cycle: the only
    /// ones pruned, since a failed one's state is not known well enough.
    replicated: Vec<DatasetPath>,
    prune_queue: VecDeque<DatasetPath>,
    prune: Option<PruneSummary>,
}

/// How often a running transfer's progress is logged.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// The last progress sample of the running transfer.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: Instant,
    bytes: u64,
    rate: u64,
}

#[derive(Debug)]
pub struct ActiveJob {
    spec: ActiveSpec,
    progress: Sample,
    next_progress: Option<Instant>,
    dialect: DialectProbe,
    cycle: Option<Cycle>,
    wait: Option<Wait>,
    last_run: Option<RunSummary>,
    last_prune: Option<PruneSummary>,
    next_run: Option<Instant>,
    stopping: bool,
    snapper: Option<Snapper>,
    /// Woken before `zfs version` answered: snapshot once it has.
    wake_after_dialect: bool,
    /// A snapshot round ended during a cycle: run another cycle after it.
    cycle_again: bool,
    /// What the last snapshot round could not take, for the next cycle's report.
    snapshot_failures: Vec<String>,
    /// `run`/`prune`: no schedule of our own.
    one_shot: bool,
}

impl ActiveJob {
    pub fn new(spec: ActiveSpec) -> ActiveJob {
        let snapper = spec.snapshotting.clone().map(Snapper::new);
        ActiveJob {
            snapper,
            wake_after_dialect: false,
            cycle_again: false,
            snapshot_failures: Vec::new(),
            one_shot: false,
            spec,
            progress: Sample::default(),
            next_progress: None,
            dialect: DialectProbe::default(),
            cycle: None,
            wait: None,
            last_run: None,
            last_prune: None,
            next_run: None,
            stopping: false,
        }
    }

    fn dialect(&self) -> Dialect {
        self.dialect.get().unwrap_or(Dialect::ZfsFuse)
    }

    fn log(&self, ctx: &mut JobCtx<'_, '_>, level: Level, message: impl std::fmt::Display) {
        ctx.log(level, format!("job {}: {message}", self.spec.name));
    }

    fn start_cycle(&mut self, ctx: &mut JobCtx<'_, '_>, kind: CycleKind) {
        self.next_run = None;
        let failures = std::mem::take(&mut self.snapshot_failures);
        let reports = failures.iter().map(|f| format!("snapshot not taken: {f}")).collect();
        self.cycle = Some(Cycle {
            started_wall: ctx.now().wall.0,
            kind,
            failures: failures.len() as u32,
            reports,
            ..Cycle::default()
        });
        let what = match kind {
            CycleKind::Replicate => "replication cycle starts",
            CycleKind::PruneOnly { dry_run: false } => "pruning starts",
            CycleKind::PruneOnly { dry_run: true } => {
                "pruning dry run starts (nothing is destroyed)"
            }
        };
        self.log(ctx, Level::Info, what);
        if self.dialect.get().is_some() {
            self.connect(ctx);
        } else {
            self.dialect.start(ctx);
            self.wait = Some(Wait::Dialect);
        }
    }

    fn connect(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let conn = ctx.connect(self.spec.connect.clone(), &self.spec.client_identity);
        if let Some(c) = &mut self.cycle {
            c.conn = Some(conn);
        }
        self.wait = Some(Wait::Connection);
    }

    fn conn(&self) -> Option<ConnId> {
        self.cycle.as_ref().and_then(|c| c.conn)
    }

    /// Ends the cycle because it cannot go on.
    fn abort_cycle(&mut self, ctx: &mut JobCtx<'_, '_>, why: String) {
        self.log(ctx, Level::Error, format!("replication cycle failed: {why}"));
        if let Some(c) = &mut self.cycle {
            c.fatal.get_or_insert(why);
        }
        self.finish_cycle(ctx);
    }

    fn finish_cycle(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let Some(mut cycle) = self.cycle.take() else { return };
        self.wait = None;
        if let Some(conn) = cycle.conn.take() {
            ctx.close(conn, "replication cycle done");
        }
        let mut failed = cycle.failures;
        if let Some(why) = cycle.fatal.take() {
            cycle.reports.push(format!("cycle failed: {why}"));
            failed += 1;
        }
        for line in &cycle.reports {
            ctx.print(format!("{}: {line}", self.spec.name));
        }
        if let Some(mut p) = cycle.prune.take() {
            p.finished = ctx.now().wall.0;
            failed += p.failed;
            if cycle.kind != (CycleKind::PruneOnly { dry_run: true }) {
                self.last_prune = Some(p);
            }
        }
        let done = match cycle.kind {
            CycleKind::Replicate => {
                format!("replication cycle done: {} filesystem(s)", cycle.filesystems_done)
            }
            CycleKind::PruneOnly { .. } => "pruning done".to_owned(),
        };
        self.log(
            ctx,
            if failed == 0 { Level::Info } else { Level::Warn },
            format!("{done}, {failed} failure(s)"),
        );
        self.last_run = Some(RunSummary {
            started: cycle.started_wall,
            finished: ctx.now().wall.0,
            filesystems: cycle.reports,
            failed,
        });
        if !self.stopping && !self.one_shot {
            self.next_run = self.spec.interval.map(|i| ctx.now().mono + i);
            if std::mem::take(&mut self.cycle_again) {
                self.start_cycle(ctx, CycleKind::Replicate);
            }
        }
    }

    /// A snapshot round ended: replicate what it took.
    fn after_round(&mut self, ctx: &mut JobCtx<'_, '_>, outcome: RoundOutcome) {
        self.snapshot_failures.extend(outcome.failed);
        if self.stopping {
            return;
        }
        if self.cycle.is_some() {
            self.cycle_again = true;
        } else {
            self.start_cycle(ctx, CycleKind::Replicate);
        }
    }

    /// After connecting: learn both sides' filesystems.
    fn list_both_sides(&mut self, ctx: &mut JobCtx<'_, '_>) {
        match self.spec.direction {
            // Our own filesystems first, then the sink's.
            Direction::Push => {
                let roots = self.spec.list_roots.clone();
                self.list_local(ctx, ListKind::Filesystems, &roots)
            }
            Direction::Pull => self.request_remote_filesystems(ctx),
        }
    }

    /// Lists our side under `roots`, in one command.
    fn list_local(&mut self, ctx: &mut JobCtx<'_, '_>, what: ListKind, roots: &[DatasetPath]) {
        let spec = match what {
            ListKind::Filesystems => zfsops::list_filesystems_under(self.dialect(), roots),
            ListKind::Versions => zfsops::list_versions_under(self.dialect(), roots),
        };
        let spec = match spec {
            Ok(s) => s,
            Err(e) => return self.abort_cycle(ctx, format!("cannot list local filesystems: {e}")),
        };
        let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
        self.wait = Some(Wait::LocalList { proc, what });
    }

    fn request_remote_filesystems(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let now = ctx.now().mono;
        let Some(conn) = self.conn() else { return };
        match ctx.session(conn).map(|s| s.request::<ListFilesystems>(now, &(), false)) {
            Some(Ok(())) => self.wait = Some(Wait::RemoteFilesystems),
            other => {
                self.abort_cycle(ctx, format!("cannot ask the peer for its filesystems: {other:?}"))
            }
        }
    }

    fn on_local_list(&mut self, ctx: &mut JobCtx<'_, '_>, what: ListKind, result: ProcessResult) {
        let dialect = self.dialect();
        let out = result.stdout.clone();
        let missing_ok =
            self.spec.direction == Direction::Pull && zfsops::is_missing_dataset(&result.stderr);
        if !result.status.success() && !missing_ok {
            return self
                .abort_cycle(ctx, format!("listing local filesystems failed: {}", result.stderr));
        }
        let Some(cycle) = &mut self.cycle else { return };
        let parsed = match what {
            ListKind::Filesystems => zfsops::parse_filesystems(&out).map(|list| {
                cycle.local_filesystems.extend(list.into_iter().map(|f| (f.path.clone(), f)));
            }),
            ListKind::Versions => {
                zfsops::parse_versions(dialect, &out).map(|v| cycle.local_versions.extend(v))
            }
        };
        if let Err(e) = parsed {
            return self.abort_cycle(ctx, format!("cannot read the local listing: {e}"));
        }
        match (self.spec.direction, what) {
            (Direction::Push, ListKind::Filesystems) => {
                let roots = self.spec.list_roots.clone();
                self.list_local(ctx, ListKind::Versions, &roots);
            }
            (Direction::Push, ListKind::Versions) => self.request_remote_filesystems(ctx),
            (Direction::Pull, ListKind::Filesystems) => {
                let Some(root) = self.spec.root_fs.clone() else { return };
                if !self.cycle.as_ref().is_some_and(|c| c.local_filesystems.contains_key(&root)) {
                    return self.abort_cycle(ctx, format!("the receive root {root} does not exist; create it first (zferry never creates it)"));
                }
                self.list_local(ctx, ListKind::Versions, &[root]);
            }
            (Direction::Pull, ListKind::Versions) => self.build_queue(ctx),
        }
    }

    fn on_remote_filesystems(&mut self, ctx: &mut JobCtx<'_, '_>, list: Vec<FilesystemState>) {
        let Some(cycle) = &mut self.cycle else { return };
        cycle.remote = list.into_iter().map(|f| (f.path.clone(), f)).collect();
        match self.spec.direction {
            Direction::Push => self.build_queue(ctx),
            Direction::Pull => {
                let Some(root) = self.spec.root_fs.clone() else {
                    return self.abort_cycle(ctx, "a pull job needs root_fs".to_owned());
                };
                self.list_local(ctx, ListKind::Filesystems, &[root]);
            }
        }
    }

    /// The sender's filesystems to replicate, parents before children.
    fn build_queue(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let Some(cycle) = &mut self.cycle else { return };
        let senders: Vec<DatasetPath> = match self.spec.direction {
            Direction::Push => cycle
                .local_filesystems
                .values()
                // A placeholder holds no data of its own: there is nothing to send.
                .filter(|f| !f.placeholder && self.spec.filter.selects(&f.path))
                .map(|f| f.path.clone())
                .collect(),
            Direction::Pull => {
                cycle.remote.values().filter(|f| !f.placeholder).map(|f| f.path.clone()).collect()
            }
        };
        cycle.queue = senders.into_iter().collect();
        if cycle.queue.is_empty() {
            cycle.reports.push("no filesystem selected".to_owned());
        }
        if matches!(cycle.kind, CycleKind::PruneOnly { .. }) {
            cycle.replicated = std::mem::take(&mut cycle.queue).into();
            return self.start_pruning(ctx);
        }
        self.next_filesystem(ctx);
    }

    fn receiver_path(&self, sender: &DatasetPath) -> Option<DatasetPath> {
        match self.spec.direction {
            Direction::Push => Some(sender.clone()),
            Direction::Pull => self.spec.root_fs.as_ref()?.join(sender.components()).ok(),
        }
    }

    fn next_filesystem(&mut self, ctx: &mut JobCtx<'_, '_>) {
        loop {
            if self.stopping {
                if let Some(c) = &mut self.cycle {
                    c.fatal.get_or_insert("stopped by shutdown".to_owned());
                }
                return self.finish_cycle(ctx);
            }
            let Some(cycle) = &mut self.cycle else { return };
            let Some(fs) = cycle.queue.pop_front() else {
                cycle.current = None;
                return self.start_pruning(ctx);
            };
            if let Some(parent) = cycle.failed.iter().find(|f| fs.has_prefix(f) && **f != fs) {
                let line = format!("{fs}: skipped, because {parent} failed");
                cycle.reports.push(line);
                cycle.filesystems_done += 1;
                cycle.failed.insert(fs);
                cycle.failures += 1;
                continue;
            }
            cycle.current = Some(fs.clone());
            cycle.fs_bytes = 0;
            cycle.last_sent = None;
            cycle.step_index = 0;
            let now = ctx.now().mono;
            let conn = cycle.conn;
            match self.spec.direction {
                Direction::Push => {
                    cycle.sender_versions =
                        cycle.local_versions.get(&fs).cloned().unwrap_or_default();
                    if !cycle.remote.contains_key(&fs) {
                        // Nothing on the receiver yet: plan from an empty history.
                        return self.plan_filesystem(ctx, Vec::new());
                    }
                }
                Direction::Pull => {}
            }
            let sent = conn
                .and_then(|c| ctx.session(c))
                .map(|s| s.request::<ListVersions>(now, &fs, false));
            match sent {
                Some(Ok(())) => {
                    self.wait = Some(Wait::RemoteVersions);
                    return;
                }
                other => {
                    return self.abort_cycle(
                        ctx,
                        format!("cannot ask for the versions of {fs}: {other:?}"),
                    )
                }
            }
        }
    }

    fn on_remote_versions(&mut self, ctx: &mut JobCtx<'_, '_>, versions: Vec<FilesystemVersion>) {
        match self.spec.direction {
            Direction::Push => self.plan_filesystem(ctx, versions),
            Direction::Pull => {
                let Some(cycle) = &mut self.cycle else { return };
                let Some(fs) = cycle.current.clone() else { return };
                cycle.sender_versions = versions;
                let receiver = self
                    .receiver_path(&fs)
                    .and_then(|p| self.cycle.as_ref()?.local_versions.get(&p).cloned())
                    .unwrap_or_default();
                self.plan_filesystem(ctx, receiver);
            }
        }
    }

    fn fail_filesystem(&mut self, ctx: &mut JobCtx<'_, '_>, why: String) {
        let Some(cycle) = &mut self.cycle else { return };
        let Some(fs) = cycle.current.take() else { return };
        self.log(ctx, Level::Error, format!("{fs}: {why}"));
        let Some(cycle) = &mut self.cycle else { return };
        cycle.reports.push(format!("{fs}: failed: {why}"));
        cycle.filesystems_done += 1;
        cycle.failed.insert(fs);
        cycle.failures += 1;
        self.wait = None;
        self.next_filesystem(ctx);
    }

    /// The receiver's partial-receive token for the current filesystem, if any.
    fn receiver_resume_token(&self) -> Option<String> {
        let fs = self.cycle.as_ref()?.current.clone()?;
        self.resume_token_of(&fs)
    }

    fn resume_token_of(&self, fs: &DatasetPath) -> Option<String> {
        let cycle = self.cycle.as_ref()?;
        match self.spec.direction {
            Direction::Push => cycle.remote.get(fs)?.resume_token.clone(),
            Direction::Pull => {
                cycle.local_filesystems.get(&self.receiver_path(fs)?)?.resume_token.clone()
            }
        }
    }

    /// Plans the current filesystem; a partial receive on the receiver is first
    /// read on the sending side, so the plan can resume it.
    fn plan_filesystem(&mut self, ctx: &mut JobCtx<'_, '_>, receiver: Vec<FilesystemVersion>) {
        let Some(token) = self.receiver_resume_token() else {
            return self.plan_with(ctx, receiver, None);
        };
        let Some(fs) = self.cycle.as_ref().and_then(|c| c.current.clone()) else { return };
        match self.spec.direction {
            Direction::Push => match zfsops::describe_resume_token(self.dialect(), &token) {
                Ok(spec) => {
                    let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                    self.wait = Some(Wait::ResumeToken { proc: Some(proc), token, receiver });
                }
                Err(e) => self.fail_filesystem(ctx, format!("cannot read its resume token: {e}")),
            },
            Direction::Pull => {
                let now = ctx.now().mono;
                let request = DescribeResumeTokenRequest { filesystem: fs, token: token.clone() };
                let sent = self
                    .conn()
                    .and_then(|c| ctx.session(c))
                    .map(|s| s.request::<DescribeResumeToken>(now, &request, false));
                match sent {
                    Some(Ok(())) => {
                        self.wait = Some(Wait::ResumeToken { proc: None, token, receiver })
                    }
                    other => self.abort_cycle(
                        ctx,
                        format!("cannot ask the source to read a resume token: {other:?}"),
                    ),
                }
            }
        }
    }

    fn on_resume_description(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        token: String,
        receiver: Vec<FilesystemVersion>,
        described: Result<ResumeDescription, String>,
    ) {
        match described {
            Ok(d) => {
                let resume = d.into_resume_info(token);
                self.log(
                    ctx,
                    Level::Info,
                    format!(
                        "{}: the receiver holds {} bytes of a partial receive of @{}: resuming it",
                        self.cycle.as_ref().and_then(|c| c.current.as_ref()).map_or_else(String::new, ToString::to_string),
                        resume.bytes,
                        resume.toname
                    ),
                );
                self.plan_with(ctx, receiver, Some(resume));
            }
            Err(e) => self.fail_filesystem(
                ctx,
                format!(
                    "the receiver holds a partial receive whose resume token cannot be used: {e}; \
                     discard it on the receiver with `zfs receive -A` (this drops only the partial data)"
                ),
            ),
        }
    }

    fn plan_with(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        receiver: Vec<FilesystemVersion>,
        resume: Option<ResumeInfo>,
    ) {
        let Some(cycle) = &mut self.cycle else { return };
        let Some(fs) = cycle.current.clone() else { return };
        // One step per snapshot exists to keep each step resumable; a ZFS that
        // cannot resume gains nothing from it and pays a send, a receive and a
        // listing per snapshot, so it gets `-I` packages instead.
        let mut policy = self.spec.policy.clone();
        if !self.dialect.get().is_some_and(|d| d.capabilities().resumable) {
            policy.mode = StepMode::Batched;
        }
        let planned = plan(&cycle.sender_versions, &receiver, resume.as_ref(), &policy);
        match planned {
            Err(e) => self.fail_filesystem(ctx, e.to_string()),
            Ok(Plan::Idle(idle)) => {
                cycle.reports.push(format!("{fs}: {idle}"));
                cycle.filesystems_done += 1;
                cycle.replicated.push(fs);
                cycle.current = None;
                self.next_filesystem(ctx);
            }
            Ok(Plan::Steps(steps)) => {
                cycle.steps_total = steps.len() as u32;
                cycle.steps = steps.into();
                self.next_step(ctx);
            }
        }
    }

    fn next_step(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let Some(cycle) = &mut self.cycle else { return };
        let Some(fs) = cycle.current.clone() else { return };
        let Some(step) = cycle.steps.pop_front() else {
            let line = format!("{fs}: ok, {} step(s), {} bytes", cycle.steps_total, cycle.fs_bytes);
            cycle.reports.push(line);
            cycle.filesystems_done += 1;
            cycle.replicated.push(fs.clone());
            cycle.current = None;
            if let Some(to) = cycle.last_sent.take() {
                return self.move_cursor(ctx, fs, to);
            }
            return self.next_filesystem(ctx);
        };
        if self.stopping {
            return self.fail_filesystem(ctx, "stopped by shutdown".to_owned());
        }
        cycle.step_index += 1;
        let Some(conn) = cycle.conn else { return };
        let now = ctx.now().mono;
        let spec = StepSpec {
            filesystem: fs.clone(),
            from: step.from.clone(),
            to: step.to.clone(),
            intermediate: step.kind == StepKind::Batched,
            resume_token: match &step.kind {
                StepKind::Resume { token } => Some(token.clone()),
                _ => None,
            },
        };
        let placeholder = cycle.remote.get(&fs).is_some_and(|f| f.placeholder);
        self.log(
            ctx,
            Level::Info,
            format!(
                "{fs}: step {}/{}: {step}",
                self.cycle.as_ref().map_or(0, |c| c.step_index),
                self.cycle.as_ref().map_or(0, |c| c.steps_total)
            ),
        );
        let mut transfer = Transfer {
            step,
            send: None,
            send_result: None,
            receive: None,
            answered: None,
            stream_done: false,
            cancelled: false,
        };
        let Some(session) = ctx.session(conn) else {
            return self.abort_cycle(ctx, "the connection is gone".to_owned());
        };
        match self.spec.direction {
            Direction::Push => {
                let request = ReceiveRequest {
                    step: spec.clone(),
                    replace_placeholder: placeholder && spec.from.is_none(),
                };
                if let Err(e) = session.request::<Receive>(now, &request, true) {
                    return self.abort_cycle(ctx, format!("cannot send the receive request: {e}"));
                }
                let send = zfsops::send(
                    self.dialect(),
                    &fs,
                    spec.from.as_ref(),
                    &spec.to,
                    spec.intermediate,
                    spec.resume_token.as_deref(),
                );
                match send {
                    Ok(send) => {
                        transfer.send =
                            Some(ctx.spawn(send, StdoutTo::Stream(conn), StdinFrom::Null))
                    }
                    Err(e) => {
                        // The request is out: abort its stream so the peer answers,
                        // and end the cycle, since that answer is still to come.
                        if let Some(s) = ctx.session(conn) {
                            let _ = s.abort_stream(now, &e);
                        }
                        return self.abort_cycle(ctx, format!("cannot build zfs send: {e}"));
                    }
                }
            }
            Direction::Pull => {
                if let Err(e) = session.request::<Send>(now, &spec, false) {
                    return self.abort_cycle(ctx, format!("cannot send the send request: {e}"));
                }
            }
        }
        self.wait = Some(Wait::Transfer(Box::new(transfer)));
        self.progress = Sample { at: now, bytes: 0, rate: 0 };
        self.next_progress = Some(now + PROGRESS_INTERVAL);
    }

    /// Push on a ZFS with bookmarks: bookmark the newest snapshot the receiver
    /// has, so the next incremental can start from it even if someone destroys
    /// that snapshot, and drop this job's older cursor. A failure here costs
    /// only that safety net: it is logged, and replication goes on.
    fn move_cursor(&mut self, ctx: &mut JobCtx<'_, '_>, fs: DatasetPath, to: FilesystemVersion) {
        let dialect = self.dialect();
        if self.spec.direction == Direction::Pull {
            // The source keeps the cursor; it answers at once if it cannot.
            let now = ctx.now().mono;
            let request = MoveCursorRequest { filesystem: fs.clone(), to };
            let sent = self
                .conn()
                .and_then(|c| ctx.session(c))
                .map(|s| s.request::<MoveCursor>(now, &request, false));
            return match sent {
                Some(Ok(())) => self.wait = Some(Wait::RemoteCursor { fs }),
                other => self
                    .abort_cycle(ctx, format!("cannot ask the source to bookmark {fs}: {other:?}")),
            };
        }
        if !dialect.capabilities().bookmarks {
            return self.next_filesystem(ctx);
        }
        let new_name = zfsops::cursor_name(&self.spec.name, to.guid);
        let stale: Vec<FilesystemVersion> = self
            .cycle
            .as_ref()
            .and_then(|c| c.local_versions.get(&fs))
            .map(|vs| {
                vs.iter()
                    .filter(|v| !v.is_snapshot() && v.name != new_name)
                    .filter(|v| zfsops::is_cursor_of(&v.name, &self.spec.name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        match zfsops::move_cursor(dialect, &fs, &to, &stale, &self.spec.name) {
            Ok(specs) => self.next_cursor_command(ctx, fs, specs.into()),
            Err(e) => {
                self.log(
                    ctx,
                    Level::Warn,
                    format!("{fs}: cannot move the replication cursor: {e}"),
                );
                self.next_filesystem(ctx);
            }
        }
    }

    fn next_cursor_command(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        fs: DatasetPath,
        mut rest: VecDeque<crate::node::ProcessSpec>,
    ) {
        match rest.pop_front() {
            Some(spec) => {
                let proc = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null);
                self.wait = Some(Wait::Cursor { proc, fs, rest });
            }
            None => self.next_filesystem(ctx),
        }
    }

    /// Logs the running transfer's bytes and rate, and arms the next report.
    fn report_progress(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let now = ctx.now().mono;
        let proc = match &self.wait {
            Some(Wait::Transfer(t)) => t.send.or_else(|| t.receive.as_ref()?.receive_proc()),
            _ => None,
        };
        let Some(bytes) = proc.and_then(|p| ctx.process_bytes(p)) else {
            self.next_progress = None;
            return;
        };
        let elapsed = now.saturating_since(self.progress.at).as_secs_f64();
        let rate = if elapsed > 0.0 {
            (bytes.saturating_sub(self.progress.bytes) as f64 / elapsed) as u64
        } else {
            0
        };
        self.progress = Sample { at: now, bytes, rate };
        let (fs, step, steps) = self
            .cycle
            .as_ref()
            .map(|c| {
                (
                    c.current.as_ref().map(ToString::to_string).unwrap_or_default(),
                    c.step_index,
                    c.steps_total,
                )
            })
            .unwrap_or_default();
        self.log(
            ctx,
            Level::Info,
            format!(
                "{fs}: step {step}/{steps}: {:.1} MiB so far, {:.1} MiB/s",
                bytes as f64 / 1048576.0,
                rate as f64 / 1048576.0
            ),
        );
        self.next_progress = Some(now + PROGRESS_INTERVAL);
    }

    /// Settles a transfer once every part of it has reported.
    fn check_transfer(&mut self, ctx: &mut JobCtx<'_, '_>) {
        // Pull: the next request may only go out once this one's stream is over;
        // a receive that failed early asks the source to stop sending.
        if let Some(Wait::Transfer(t)) = &mut self.wait {
            let failed =
                t.receive.as_ref().and_then(ReceiveTask::result).is_some_and(Result::is_err);
            if failed && !t.stream_done && !t.cancelled && matches!(t.answered, Some(Ok(()))) {
                t.cancelled = true;
                let (now, conn) = (ctx.now().mono, self.cycle.as_ref().and_then(|c| c.conn));
                if let Some(s) = conn.and_then(|c| ctx.session(c)) {
                    let _ = s.cancel_inbound(now, "the receive failed");
                }
            }
        }
        let Some(Wait::Transfer(t)) = &self.wait else { return };
        let outcome: Option<Result<u64, String>> = match self.spec.direction {
            Direction::Push => match (&t.send_result, &t.answered) {
                // The receiver's refusal explains a send we then had to stop.
                (Some(sent), Some(answer)) => Some(match answer {
                    Err(e) => Err(e.clone()),
                    Ok(()) if !sent.status.success() => {
                        Err(format!("zfs send failed ({}): {}", sent.status, sent.stderr))
                    }
                    Ok(()) => Ok(sent.bytes),
                }),
                _ => None,
            },
            Direction::Pull => match (&t.answered, &t.receive) {
                // An error answer carries no stream.
                (Some(Err(e)), _) => Some(Err(e.clone())),
                (Some(Ok(())), Some(task)) => task.result().filter(|_| t.stream_done).cloned(),
                _ => None,
            },
        };
        let Some(outcome) = outcome else { return };
        let to = t.step.to.clone();
        self.wait = None;
        self.next_progress = None;
        self.progress = Sample::default();
        match outcome {
            Ok(bytes) => {
                if let Some(c) = &mut self.cycle {
                    c.fs_bytes += bytes;
                    c.last_sent = Some(to);
                }
                self.next_step(ctx);
            }
            Err(why) => self.fail_filesystem(ctx, why),
        }
    }
}

impl Job for ActiveJob {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn kind(&self) -> &'static str {
        match self.spec.direction {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }

    fn set_one_shot(&mut self) {
        self.one_shot = true;
    }

    fn start(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.dialect.start(ctx);
        if self.one_shot {
            return;
        }
        self.next_run = self.spec.interval.map(|_| ctx.now().mono);
        let now = ctx.now();
        if let Some(s) = &mut self.snapper {
            s.start(now);
        }
    }

    fn on_session_event(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, event: SessionEvent) {
        if self.conn() != Some(conn) {
            return;
        }
        match event {
            SessionEvent::Established { peer_software } => {
                self.log(
                    ctx,
                    Level::Debug,
                    format!("connected to {} ({peer_software})", self.spec.connect),
                );
                if matches!(self.wait, Some(Wait::Connection)) {
                    self.list_both_sides(ctx);
                }
            }
            SessionEvent::Response(response) => match self.wait.take() {
                Some(Wait::RemoteFilesystems) => match response.decode::<ListFilesystems>() {
                    Ok(list) => self.on_remote_filesystems(ctx, list),
                    Err(e) => self
                        .abort_cycle(ctx, format!("the peer could not list its filesystems: {e}")),
                },
                Some(Wait::RemoteVersions) => match response.decode::<ListVersions>() {
                    Ok(v) => self.on_remote_versions(ctx, v),
                    Err(e) => {
                        self.fail_filesystem(ctx, format!("the peer could not list versions: {e}"))
                    }
                },
                Some(Wait::RemoteCursor { fs }) => {
                    if let Err(e) = response.decode::<MoveCursor>() {
                        self.log(ctx, Level::Warn, format!("{fs}: replication cursor: {e}"));
                    }
                    self.next_filesystem(ctx);
                }
                Some(Wait::PruneLists { fs, proc, remote: None, local }) => {
                    let remote = response.decode::<ListVersions>().map_err(|e| e.to_string());
                    self.on_prune_lists(ctx, fs, proc, Some(remote), local);
                }
                Some(Wait::PruneRemoteDestroy { fs, local }) => {
                    match response.decode::<DestroySnapshots>() {
                        Ok(remote) => self.prune_done(ctx, fs, local, remote),
                        Err(e) => {
                            self.prune_failed(ctx, &fs, format!("the peer could not prune: {e}"))
                        }
                    }
                }
                Some(Wait::ResumeToken { proc: None, token, receiver }) => {
                    let described =
                        response.decode::<DescribeResumeToken>().map_err(|e| e.to_string());
                    self.on_resume_description(ctx, token, receiver, described);
                }
                Some(Wait::Transfer(mut t)) => {
                    match self.spec.direction {
                        Direction::Push => {
                            t.answered =
                                Some(response.decode::<Receive>().map_err(|e| e.to_string()))
                        }
                        Direction::Pull => {
                            let answer = response.decode::<Send>().map_err(|e| e.to_string());
                            if answer.is_ok() {
                                let fs = self.cycle.as_ref().and_then(|c| c.current.clone());
                                let target = fs.as_ref().and_then(|fs| self.receiver_path(fs));
                                if let (Some(target), Some(root)) =
                                    (target, self.spec.root_fs.clone())
                                {
                                    let kind = ReceiveKind::of(
                                        t.step.from.is_some(),
                                        matches!(t.step.kind, StepKind::Resume { .. }),
                                    );
                                    t.receive = Some(ReceiveTask::start(
                                        ctx,
                                        self.dialect(),
                                        root,
                                        target,
                                        kind,
                                        conn,
                                    ));
                                }
                            }
                            t.answered = Some(answer);
                        }
                    }
                    self.wait = Some(Wait::Transfer(t));
                    self.check_transfer(ctx);
                }
                other => self.wait = other,
            },
            ev @ (SessionEvent::StreamData(_)
            | SessionEvent::StreamEnd
            | SessionEvent::StreamAborted(_)) => {
                if let Some(Wait::Transfer(t)) = &mut self.wait {
                    if let Some(task) = &mut t.receive {
                        task.on_stream_event(ctx, &ev);
                    }
                    t.stream_done |= !matches!(ev, SessionEvent::StreamData(_));
                }
                self.check_transfer(ctx);
            }
            SessionEvent::StreamCancelled(reason) => {
                self.log(ctx, Level::Warn, format!("the peer stopped our stream: {reason}"));
            }
            _ => {}
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, error: Option<String>) {
        if self.conn() != Some(conn) {
            return;
        }
        if let Some(c) = &mut self.cycle {
            c.conn = None;
        }
        if let Some(Wait::Transfer(t)) = &mut self.wait {
            if let Some(task) = &mut t.receive {
                task.abort(ctx, "the connection was lost");
            }
        }
        let why = error.unwrap_or_else(|| "the peer closed the connection".to_owned());
        self.abort_cycle(ctx, why);
    }

    fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, proc: ProcId, result: ProcessResult) {
        let name = self.spec.name.clone();
        if self.dialect.on_process_done(ctx, proc, &result, &name).is_some() {
            if std::mem::take(&mut self.wake_after_dialect) {
                if let (Some(s), Some(d)) = (&mut self.snapper, self.dialect.get()) {
                    let _ = s.trigger(ctx, d);
                } else {
                    self.log(ctx, Level::Error, self.dialect.error());
                }
            }
            if matches!(self.wait, Some(Wait::Dialect)) {
                match self.dialect.get() {
                    Some(_) => self.connect(ctx),
                    None => self.abort_cycle(ctx, self.dialect.error()),
                }
            }
            return;
        }
        if let Some(s) = self.snapper.as_mut().filter(|s| s.owns(proc)) {
            let dialect = self.dialect.get().unwrap_or(Dialect::ZfsFuse);
            if let Some(outcome) = s.on_process_done(ctx, dialect, result) {
                self.after_round(ctx, outcome);
            }
            return;
        }
        match self.wait.take() {
            Some(Wait::LocalList { proc: p, what }) if p == proc => {
                self.on_local_list(ctx, what, result);
            }
            Some(Wait::Cursor { proc: p, fs, rest }) if p == proc => {
                if !result.status.success() {
                    let why = result.stderr.trim().to_owned();
                    self.log(ctx, Level::Warn, format!("{fs}: replication cursor: {why}"));
                }
                self.next_cursor_command(ctx, fs, rest);
            }
            Some(Wait::PruneLists { fs, proc: p, remote, local: None }) if p == proc => {
                self.on_prune_lists(ctx, fs, p, remote, Some(result));
            }
            Some(Wait::PruneLocalDestroy { mut task, fs, remote }) if task.owns(proc) => {
                task.on_process_done(ctx, result);
                self.wait = Some(Wait::PruneLocalDestroy { task, fs, remote });
                self.check_prune_local(ctx);
            }
            Some(Wait::ResumeToken { proc: Some(p), token, receiver }) if p == proc => {
                let Some(fs) = self.cycle.as_ref().and_then(|c| c.current.clone()) else { return };
                let described = zfsops::parse_resume_description(&fs, &result)
                    .map(|info| ResumeDescription::from(&info));
                self.on_resume_description(ctx, token, receiver, described);
            }
            Some(Wait::Transfer(mut t)) => {
                if t.send == Some(proc) {
                    t.send_result = Some(result);
                } else if let Some(task) = t.receive.as_mut().filter(|task| task.owns(proc)) {
                    task.on_process_done(ctx, result);
                }
                self.wait = Some(Wait::Transfer(t));
                self.check_transfer(ctx);
            }
            other => self.wait = other,
        }
    }

    fn on_timeout(&mut self, ctx: &mut JobCtx<'_, '_>) {
        let now = ctx.now().mono;
        if self.next_progress.is_some_and(|t| t <= now) {
            self.report_progress(ctx);
        }
        if self.next_run.is_some_and(|t| t <= now) && self.cycle.is_none() && !self.stopping {
            self.start_cycle(ctx, CycleKind::Replicate);
        }
        if let Some(s) =
            self.snapper.as_mut().filter(|s| s.poll_timeout().is_some_and(|t| t <= now))
        {
            s.on_timeout(ctx, &mut self.dialect);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = if self.cycle.is_some() { self.next_progress } else { self.next_run };
        let snap = self.snapper.as_ref().and_then(Snapper::poll_timeout);
        own.into_iter().chain(snap).min()
    }

    fn wakeup(&mut self, ctx: &mut JobCtx<'_, '_>) -> Result<(), String> {
        if self.stopping {
            return Err("shutting down".to_owned());
        }
        if let Some(s) = &mut self.snapper {
            // Snapshot first; the round's end starts the replication cycle.
            return match self.dialect.get() {
                Some(d) => s.trigger(ctx, d),
                None => {
                    self.wake_after_dialect = true;
                    Ok(())
                }
            };
        }
        if self.cycle.is_some() {
            return Err(format!("job {} is already replicating", self.spec.name));
        }
        self.start_cycle(ctx, CycleKind::Replicate);
        Ok(())
    }

    fn prune_now(&mut self, ctx: &mut JobCtx<'_, '_>, dry_run: bool) -> Result<(), String> {
        if self.spec.prune.is_none() {
            return Err(format!("job {} has no pruning rules", self.spec.name));
        }
        if self.cycle.is_some() {
            return Err(format!("job {} is busy", self.spec.name));
        }
        self.start_cycle(ctx, CycleKind::PruneOnly { dry_run });
        Ok(())
    }

    fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.stopping = true;
        self.next_run = None;
        self.wake_after_dialect = false;
        if let Some(s) = &mut self.snapper {
            s.shutdown(ctx);
        }
        if let Some(Wait::Transfer(t)) = &mut self.wait {
            if let Some(p) = t.send {
                ctx.kill(p);
            }
            if let Some(task) = &mut t.receive {
                task.abort(ctx, "shutting down");
            }
        }
        if let Some(conn) = self.conn() {
            ctx.close(conn, "shutting down");
        }
    }

    fn is_idle(&self) -> bool {
        self.cycle.is_none()
            && !self.dialect.running()
            && !self.wake_after_dialect
            && !self.snapper.as_ref().is_some_and(Snapper::busy)
    }

    fn status(&self) -> JobStatus {
        let (state, progress) = match &self.cycle {
            None => ("idle".to_owned(), None),
            Some(c) => match &c.current {
                Some(fs) => (
                    "replicating".to_owned(),
                    Some(Progress {
                        filesystem: fs.to_string(),
                        step: c.step_index,
                        steps: c.steps_total,
                        bytes: c.fs_bytes + self.progress.bytes,
                        rate: self.progress.rate,
                    }),
                ),
                None => ("listing filesystems".to_owned(), None),
            },
        };
        JobStatus {
            name: self.spec.name.clone(),
            kind: self.kind().to_owned(),
            state,
            next_run: None,
            progress,
            last_run: self.last_run.clone(),
            next_snapshot: self.snapper.as_ref().and_then(Snapper::next_snapshot).map(|w| w.0),
            last_prune: self.last_prune.clone(),
        }
    }

    fn last_run(&self) -> Option<&RunSummary> {
        self.last_run.as_ref()
    }
}
