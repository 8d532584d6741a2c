//! Taking a job's snapshots on its schedule: push, source and snap jobs each
//! own one [`Snapper`].
//!
//! A round lists the job's filesystems, runs the `pre_snapshot` hooks, takes
//! every snapshot with as few `zfs snapshot` commands as the dialect allows (one
//! per pool on OpenZFS, which makes the round atomic per pool; one per
//! filesystem on zfs-fuse), then runs the `post_snapshot` hooks. Hooks get
//! zrepl's environment (`ZREPL_HOOKTYPE`, `ZREPL_FS`, `ZREPL_SNAPNAME`,
//! `ZREPL_DRYRUN`), so zrepl users' hook scripts work unchanged.
//!
//! `periodic` windows are aligned to the Unix epoch: at start, a snapshot is
//! taken at once only if the current window has none yet, so a restart neither
//! drifts the schedule nor doubles a snapshot.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::zfsops;
use super::{DialectProbe, JobCtx};
use crate::config::TimestampFormat;
use crate::node::{Level, ProcId, ProcessResult, ProcessSpec, StdinFrom, StdoutTo};
use crate::plan::filter::FilesystemFilter;
use crate::snap::{periodic_due, snapshot_name, CronSchedule};
use crate::time::{Instant, Now, WallTime};
use crate::zfs::{DatasetPath, Dialect};

/// When rounds run.
#[derive(Debug, Clone)]
pub enum Schedule {
    Periodic(Duration),
    Cron(CronSchedule),
}

/// A `type: command` hook, its filter compiled.
#[derive(Debug, Clone)]
pub struct SnapHook {
    /// Absolute path of the executable.
    pub path: String,
    pub timeout: Duration,
    /// A failing pre hook stops that filesystem's snapshot.
    pub err_is_fatal: bool,
    pub filter: FilesystemFilter,
}

#[derive(Debug, Clone)]
pub struct SnapperSpec {
    pub job: String,
    pub prefix: String,
    pub schedule: Schedule,
    pub format: TimestampFormat,
    pub hooks: Vec<SnapHook>,
    pub filter: FilesystemFilter,
    /// The pools the filter names, to list filesystems under.
    pub list_roots: Vec<DatasetPath>,
}

/// How a round went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoundOutcome {
    /// `fs@name` of each snapshot taken.
    pub taken: Vec<String>,
    /// Filesystems not snapshotted, and why.
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookType {
    Pre,
    Post,
}

impl HookType {
    fn env(self) -> &'static str {
        match self {
            HookType::Pre => "pre_snapshot",
            HookType::Post => "post_snapshot",
        }
    }
}

#[derive(Debug)]
struct HookRun {
    hook: usize,
    fs: DatasetPath,
    kind: HookType,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// At start (periodic): the newest existing snapshot's time.
    Checking {
        proc: ProcId,
    },
    /// The round's filesystems.
    Listing {
        proc: ProcId,
    },
    Hook {
        proc: ProcId,
        run: HookRun,
        deadline: Instant,
        timed_out: bool,
    },
    Snapshotting {
        proc: ProcId,
    },
}

#[derive(Debug, Default)]
struct Round {
    name: String,
    filesystems: Vec<DatasetPath>,
    hooks: VecDeque<HookRun>,
    /// Pre-hook failures that stop a filesystem's snapshot (`err_is_fatal`).
    vetoed: BTreeMap<DatasetPath, String>,
    commands: VecDeque<(ProcessSpec, Vec<String>)>,
    /// The snapshots are taken: the hooks left are post hooks.
    post: bool,
    outcome: RoundOutcome,
}

#[derive(Debug)]
pub struct Snapper {
    spec: SnapperSpec,
    phase: Phase,
    round: Option<Round>,
    /// When to look next (monotonic), and the wall time that stands for.
    due: Option<(Instant, WallTime)>,
    /// The next round comes right after the current one (a wakeup).
    checked: bool,
    stopping: bool,
    /// Rounds follow the schedule (see [`Snapper::start`]).
    scheduled: bool,
}

/// How long to wait for `zfs version` before looking again.
const DIALECT_RETRY: Duration = Duration::from_secs(1);

impl Snapper {
    pub fn new(spec: SnapperSpec) -> Snapper {
        Snapper {
            spec,
            phase: Phase::Idle,
            round: None,
            due: None,
            checked: false,
            stopping: false,
            scheduled: false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// Arms the first look: right away. A snapper never started (a one-shot
    /// `run`) takes only the rounds it is triggered for.
    pub fn start(&mut self, now: Now) {
        self.scheduled = true;
        self.due = Some((now.mono, now.wall));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Hook { deadline, timed_out: false, .. } => Some(*deadline),
            Phase::Idle => self.due.map(|(at, _)| at),
            _ => None,
        }
    }

    /// Wall-clock time of the next scheduled round, for `status`.
    pub fn next_snapshot(&self) -> Option<WallTime> {
        self.due.filter(|_| self.checked).map(|(_, wall)| wall)
    }

    pub fn busy(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    pub fn owns(&self, p: ProcId) -> bool {
        match &self.phase {
            Phase::Idle => false,
            Phase::Checking { proc, .. }
            | Phase::Listing { proc, .. }
            | Phase::Hook { proc, .. }
            | Phase::Snapshotting { proc } => *proc == p,
        }
    }

    pub fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.stopping = true;
        self.due = None;
        // Hooks are the admin's scripts: stop them. A running `zfs snapshot`
        // finishes on its own (it is short, and killing zfs can wedge zfs-fuse).
        if let Phase::Hook { proc, .. }
        | Phase::Checking { proc, .. }
        | Phase::Listing { proc, .. } = &self.phase
        {
            ctx.kill(*proc);
        }
    }

    fn log(&self, ctx: &mut JobCtx<'_, '_>, level: Level, message: impl std::fmt::Display) {
        ctx.log(level, format!("job {}: {message}", self.spec.job));
    }

    /// Schedules the round after `now`.
    fn schedule_after(&mut self, now: Now, newest: Option<WallTime>) -> bool {
        if !self.scheduled {
            return false;
        }
        let (due_now, next) = match &self.spec.schedule {
            Schedule::Periodic(interval) => {
                let due = periodic_due(*interval, now.wall, newest);
                (due.now, Some(due.next))
            }
            Schedule::Cron(cron) => (false, cron.next_after(now.wall)),
        };
        self.checked = true;
        self.due = next.map(|wall| {
            let wait = Duration::from_secs(wall.0.saturating_sub(now.wall.0).max(0) as u64);
            (now.mono + wait, wall)
        });
        due_now
    }

    /// The timer fired: look whether a round is due, or stop a hook that ran
    /// too long. With no dialect yet (the job's `zfs version` probe failed, zfs
    /// not ready at boot), the probe runs again and the round waits for it.
    pub(crate) fn on_timeout(&mut self, ctx: &mut JobCtx<'_, '_>, probe: &mut DialectProbe) {
        let now = ctx.now();
        if let Phase::Hook { proc, deadline, timed_out, .. } = &mut self.phase {
            if *deadline <= now.mono && !*timed_out {
                *timed_out = true;
                ctx.kill(*proc);
            }
            return;
        }
        if self.stopping || self.busy() || !self.due.is_some_and(|(at, _)| at <= now.mono) {
            return;
        }
        let Some(dialect) = probe.get() else {
            probe.start(ctx);
            self.due = Some((now.mono + DIALECT_RETRY, now.wall));
            return;
        };
        self.due = None;
        if !self.checked && matches!(self.spec.schedule, Schedule::Periodic(_)) {
            match zfsops::list_versions_under(dialect, &self.spec.list_roots) {
                Ok(spec) => {
                    let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                    self.phase = Phase::Checking { proc };
                }
                Err(e) => {
                    self.log(ctx, Level::Error, format!("cannot list snapshots: {e}"));
                    self.schedule_after(now, None);
                }
            }
            return;
        }
        if !self.checked {
            // Cron: the first round is the next matching time, never now.
            self.schedule_after(now, None);
            return;
        }
        self.begin_round(ctx, dialect);
    }

    /// Takes a round now (a wakeup), whatever the schedule says.
    pub fn trigger(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) -> Result<(), String> {
        if self.busy() {
            return Err("a snapshot round is already running".to_owned());
        }
        self.begin_round(ctx, dialect);
        Ok(())
    }

    fn begin_round(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) {
        let now = ctx.now();
        let name = match snapshot_name(&self.spec.prefix, now.wall, &self.spec.format) {
            Ok(n) => n.as_str().to_owned(),
            Err(e) => {
                self.log(ctx, Level::Error, format!("cannot name the snapshot: {e}"));
                self.schedule_after(now, Some(now.wall));
                return;
            }
        };
        match zfsops::list_filesystems_under(dialect, &self.spec.list_roots) {
            Ok(spec) => {
                self.round = Some(Round { name, ..Round::default() });
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                self.phase = Phase::Listing { proc };
            }
            Err(e) => {
                self.log(ctx, Level::Error, format!("cannot list filesystems: {e}"));
                self.schedule_after(now, Some(now.wall));
            }
        }
    }

    /// Feeds a finished process; `Some` when a round ended.
    pub fn on_process_done(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        result: ProcessResult,
    ) -> Option<RoundOutcome> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => None,
            Phase::Checking { .. } => {
                let mut newest = Vec::new();
                if result.status.success() {
                    match zfsops::parse_versions(dialect, &result.stdout) {
                        Ok(by_fs) => newest.extend(
                            by_fs
                                .iter()
                                .filter(|(fs, _)| self.spec.filter.selects(fs))
                                .flat_map(|(_, vs)| vs)
                                .filter(|v| {
                                    v.is_snapshot() && v.name.starts_with(&self.spec.prefix)
                                })
                                .map(|v| WallTime(v.creation)),
                        ),
                        Err(e) => self.log(ctx, Level::Warn, format!("cannot read snapshots: {e}")),
                    }
                } else {
                    self.log(
                        ctx,
                        Level::Warn,
                        format!("listing snapshots failed: {}", result.stderr.trim()),
                    );
                }
                let now = ctx.now();
                let newest = newest.into_iter().max();
                if self.schedule_after(now, newest) {
                    self.begin_round(ctx, dialect);
                } else if let Some((_, wall)) = self.due {
                    self.log(ctx, Level::Info, format!("next snapshot at {wall:?} (unix time)"));
                }
                None
            }
            Phase::Listing { .. } => {
                if !result.status.success() {
                    let why = format!("listing filesystems failed: {}", result.stderr.trim());
                    self.fail_round(why);
                    return self.end_round(ctx);
                }
                let found = match zfsops::parse_filesystems(&result.stdout) {
                    Ok(list) => list
                        .into_iter()
                        .filter(|f| !f.placeholder && self.spec.filter.selects(&f.path))
                        .map(|f| f.path)
                        .collect(),
                    Err(e) => {
                        self.fail_round(format!("cannot read the filesystem listing: {e}"));
                        return self.end_round(ctx);
                    }
                };
                self.plan_round(found);
                self.next_hook(ctx, dialect)
            }
            Phase::Hook { run, timed_out, .. } => {
                let hook = &self.spec.hooks[run.hook];
                if !result.status.success() {
                    let why = if timed_out {
                        format!("timed out after {:?}", hook.timeout)
                    } else {
                        format!("failed ({}): {}", result.status, result.stderr.trim())
                    };
                    let line =
                        format!("{} hook {} for {} {why}", run.kind.env(), hook.path, run.fs);
                    let fatal = hook.err_is_fatal && run.kind == HookType::Pre;
                    self.log(ctx, if fatal { Level::Error } else { Level::Warn }, &line);
                    if let Some(round) = &mut self.round {
                        if fatal {
                            round.vetoed.insert(run.fs, line);
                        }
                    }
                }
                self.next_hook(ctx, dialect)
            }
            Phase::Snapshotting { .. } => {
                let Some(round) = &mut self.round else { return None };
                if let Some((_, names)) = round.commands.pop_front() {
                    if result.status.success() {
                        round.outcome.taken.extend(names);
                    } else {
                        let why = result.stderr.trim().to_owned();
                        round.outcome.failed.extend(names.iter().map(|n| format!("{n}: {why}")));
                    }
                }
                self.next_command(ctx, dialect)
            }
        }
    }

    fn fail_round(&mut self, why: String) {
        if let Some(round) = &mut self.round {
            round.outcome.failed.push(why);
        }
    }

    /// The round's filesystems and its pre hooks.
    fn plan_round(&mut self, filesystems: Vec<DatasetPath>) {
        let Some(round) = &mut self.round else { return };
        for (i, hook) in self.spec.hooks.iter().enumerate() {
            for fs in filesystems.iter().filter(|fs| hook.filter.selects(fs)) {
                round.hooks.push_back(HookRun { hook: i, fs: fs.clone(), kind: HookType::Pre });
            }
        }
        round.filesystems = filesystems;
    }

    fn next_hook(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) -> Option<RoundOutcome> {
        let next = self.round.as_mut().and_then(|r| r.hooks.pop_front());
        let Some(run) = next else {
            // Pre hooks done: snapshot. Post hooks done: the round is over.
            if self.round.as_ref().is_some_and(|r| r.post) {
                return self.end_round(ctx);
            }
            return self.snapshot(ctx, dialect);
        };
        let hook = &self.spec.hooks[run.hook];
        let name = self.round.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let spec = ProcessSpec {
            argv: vec![hook.path.clone()],
            env: vec![
                ("ZREPL_HOOKTYPE".into(), run.kind.env().into()),
                ("ZREPL_FS".into(), run.fs.to_string()),
                ("ZREPL_SNAPNAME".into(), name),
                ("ZREPL_DRYRUN".into(), "false".into()),
            ],
            stdin: false,
            stdout: false,
        };
        let deadline = ctx.now().mono + hook.timeout;
        let proc = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null);
        self.phase = Phase::Hook { proc, run, deadline, timed_out: false };
        None
    }

    /// Takes the round's snapshots, skipping filesystems a fatal pre hook vetoed.
    fn snapshot(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) -> Option<RoundOutcome> {
        let Some(round) = &mut self.round else { return None };
        let targets: Vec<DatasetPath> = round
            .filesystems
            .iter()
            .filter(|fs| !round.vetoed.contains_key(*fs))
            .cloned()
            .collect();
        round.outcome.failed.extend(round.vetoed.values().cloned());
        if targets.is_empty() {
            if round.filesystems.is_empty() {
                round.outcome.failed.push("no filesystem selected".to_owned());
            }
            return self.end_round(ctx);
        }
        round.post = true;
        match zfsops::snapshot(dialect, &targets, &round.name) {
            Ok(commands) => round.commands = commands.into(),
            Err(e) => {
                round.outcome.failed.push(format!("cannot build zfs snapshot: {e}"));
                return self.end_round(ctx);
            }
        }
        for (i, hook) in self.spec.hooks.iter().enumerate() {
            for fs in targets.iter().filter(|fs| hook.filter.selects(fs)) {
                round.hooks.push_back(HookRun { hook: i, fs: fs.clone(), kind: HookType::Post });
            }
        }
        self.next_command(ctx, dialect)
    }

    fn next_command(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) -> Option<RoundOutcome> {
        let Some(round) = &mut self.round else { return None };
        match round.commands.front() {
            Some((spec, _)) => {
                let proc = ctx.spawn(spec.clone(), StdoutTo::Null, StdinFrom::Null);
                self.phase = Phase::Snapshotting { proc };
                None
            }
            None => self.next_hook(ctx, dialect),
        }
    }

    fn end_round(&mut self, ctx: &mut JobCtx<'_, '_>) -> Option<RoundOutcome> {
        self.phase = Phase::Idle;
        let round = self.round.take()?;
        let outcome = round.outcome;
        let level = if outcome.failed.is_empty() { Level::Info } else { Level::Warn };
        let mut line = format!("took {} snapshot(s) @{}", outcome.taken.len(), round.name);
        if !outcome.failed.is_empty() {
            line.push_str(&format!("; not taken: {}", outcome.failed.join("; ")));
        }
        self.log(ctx, level, line);
        if !self.stopping {
            let now = ctx.now();
            self.schedule_after(now, Some(now.wall));
        }
        Some(outcome)
    }
}
