//! The snap job: snapshots on a schedule and prunes them locally, no
//! replication. After each round (or on `zferry prune`), every selected
//! filesystem's snapshots go through the `keep` rules; only snapshots with the
//! job's prefix may be destroyed.

use std::collections::{BTreeMap, VecDeque};

use super::destroy::DestroyTask;
use super::snapper::{Snapper, SnapperSpec};
use super::zfsops;
use super::{DialectProbe, Job, JobCtx};
use crate::control::{JobStatus, PruneSummary, RunSummary};
use crate::node::{ConnId, Level, ProcId, ProcessResult, StdinFrom, StdoutTo};
use crate::plan::filter::FilesystemFilter;
use crate::prune::{CandidateFilter, KeepRules, PruneContext};
use crate::rpc::SessionEvent;
use crate::time::Instant;
use crate::zfs::{DatasetPath, Dialect, FilesystemVersion};

#[derive(Debug, Clone)]
pub struct SnapJobSpec {
    pub name: String,
    pub filter: FilesystemFilter,
    pub list_roots: Vec<DatasetPath>,
    /// `None` with manual snapshotting: the job only prunes.
    pub snapshotting: Option<SnapperSpec>,
    pub keep: KeepRules,
    pub candidates: CandidateFilter,
}

#[derive(Debug)]
enum Pruning {
    Listing {
        proc: ProcId,
    },
    Destroying {
        task: Box<DestroyTask>,
        fs: DatasetPath,
        queue: VecDeque<(DatasetPath, Vec<FilesystemVersion>)>,
    },
}

#[derive(Debug)]
pub struct SnapJob {
    spec: SnapJobSpec,
    dialect: DialectProbe,
    snapper: Option<Snapper>,
    pruning: Option<Pruning>,
    dry_run: bool,
    summary: PruneSummary,
    last_prune: Option<PruneSummary>,
    wake_after_dialect: Option<bool>,
    stopping: bool,
    /// The run in progress (snapshot round and pruning), for `last_run`.
    run_started: i64,
    run_lines: Vec<String>,
    run_failed: u32,
    last_run: Option<RunSummary>,
    /// `run`/`prune`: no schedule of our own.
    one_shot: bool,
}

impl SnapJob {
    pub fn new(spec: SnapJobSpec) -> SnapJob {
        let snapper = spec.snapshotting.clone().map(Snapper::new);
        SnapJob {
            spec,
            dialect: DialectProbe::default(),
            snapper,
            pruning: None,
            dry_run: false,
            summary: PruneSummary::default(),
            last_prune: None,
            wake_after_dialect: None,
            stopping: false,
            run_started: 0,
            run_lines: Vec::new(),
            run_failed: 0,
            last_run: None,
            one_shot: false,
        }
    }

    fn log(&self, ctx: &mut JobCtx<'_, '_>, level: Level, message: impl std::fmt::Display) {
        ctx.log(level, format!("job {}: {message}", self.spec.name));
    }

    fn start_pruning(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect, dry_run: bool) {
        if self.pruning.is_some() || self.stopping {
            return;
        }
        self.dry_run = dry_run;
        self.summary = PruneSummary::default();
        if self.run_lines.is_empty() && self.run_failed == 0 {
            self.run_started = ctx.now().wall.0;
        }
        match zfsops::list_versions_under(dialect, &self.spec.list_roots) {
            Ok(spec) => {
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                self.pruning = Some(Pruning::Listing { proc });
            }
            Err(e) => {
                self.log(ctx, Level::Error, format!("cannot list snapshots: {e}"));
                self.summary.failed += 1;
                self.end_pruning(ctx);
            }
        }
    }

    fn end_pruning(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.pruning = None;
        let mut summary = std::mem::take(&mut self.summary);
        summary.finished = ctx.now().wall.0;
        let line = if self.dry_run {
            "pruning dry run: nothing destroyed".to_owned()
        } else {
            format!("pruned {} snapshot(s), {} failed", summary.sender_destroyed, summary.failed)
        };
        self.log(ctx, Level::Info, &line);
        self.run_lines.push(line);
        self.last_run = Some(RunSummary {
            started: self.run_started,
            finished: summary.finished,
            filesystems: std::mem::take(&mut self.run_lines),
            failed: std::mem::take(&mut self.run_failed) + summary.failed,
        });
        if !self.dry_run {
            self.last_prune = Some(summary);
        }
    }

    /// Decides per filesystem, then destroys one filesystem after another.
    fn decide(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        versions: BTreeMap<DatasetPath, Vec<FilesystemVersion>>,
    ) {
        let protected = Default::default();
        let context = PruneContext {
            now: ctx.now().wall,
            candidates: &self.spec.candidates,
            protected: &protected,
            cursor: None,
        };
        let mut queue = VecDeque::new();
        for (fs, vs) in versions.iter().filter(|(fs, _)| self.spec.filter.selects(fs)) {
            let decision = self.spec.keep.evaluate(vs, &context);
            let gone: Vec<FilesystemVersion> = decision.destroys().into_iter().cloned().collect();
            if self.dry_run {
                ctx.print(format!("{fs}: would destroy {}", gone.len()));
                for line in super::prune::explain("local", &self.spec.keep, &decision) {
                    ctx.print(line);
                }
            } else if !gone.is_empty() {
                queue.push_back((fs.clone(), gone));
            }
        }
        self.next_destroy(ctx, dialect, queue);
    }

    fn next_destroy(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        mut queue: VecDeque<(DatasetPath, Vec<FilesystemVersion>)>,
    ) {
        match queue.pop_front() {
            Some((fs, gone)) => {
                let task = Box::new(DestroyTask::start(ctx, dialect, fs.clone(), gone));
                self.pruning = Some(Pruning::Destroying { task, fs, queue });
                self.check_destroy(ctx, dialect);
            }
            None => self.end_pruning(ctx),
        }
    }

    fn check_destroy(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect) {
        let Some(Pruning::Destroying { task, .. }) = &self.pruning else { return };
        let Some(result) = task.result().cloned() else { return };
        let Some(Pruning::Destroying { fs, queue, .. }) = self.pruning.take() else { return };
        match result {
            Ok(outcome) => {
                self.summary.sender_destroyed += outcome.destroyed.len() as u32;
                if !outcome.destroyed.is_empty() {
                    let names = outcome.destroyed.join(", @");
                    self.log(ctx, Level::Info, format!("{fs}: pruned @{names}"));
                }
                if !outcome.errors.is_empty() {
                    self.summary.failed += 1;
                    let why = outcome.errors.join("; ");
                    self.log(ctx, Level::Error, format!("{fs}: zfs destroy: {why}"));
                }
            }
            Err(e) => {
                self.summary.failed += 1;
                self.log(ctx, Level::Error, format!("{fs}: pruning failed: {e}"));
            }
        }
        self.next_destroy(ctx, dialect, queue);
    }

    fn begin(&mut self, ctx: &mut JobCtx<'_, '_>, dialect: Dialect, prune_only: Option<bool>) {
        match (&mut self.snapper, prune_only) {
            (Some(s), None) => {
                if let Err(e) = s.trigger(ctx, dialect) {
                    self.log(ctx, Level::Warn, e);
                }
            }
            (_, dry_run) => self.start_pruning(ctx, dialect, dry_run.unwrap_or(false)),
        }
    }
}

impl Job for SnapJob {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn kind(&self) -> &'static str {
        "snap"
    }

    fn set_one_shot(&mut self) {
        self.one_shot = true;
    }

    fn start(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.dialect.start(ctx);
        let now = ctx.now();
        if let Some(s) = self.snapper.as_mut().filter(|_| !self.one_shot) {
            s.start(now);
        }
    }

    fn on_session_event(&mut self, _: &mut JobCtx<'_, '_>, _: ConnId, _: SessionEvent) {}

    fn on_conn_closed(&mut self, _: &mut JobCtx<'_, '_>, _: ConnId, _: Option<String>) {}

    fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, proc: ProcId, result: ProcessResult) {
        let name = self.spec.name.clone();
        if self.dialect.on_process_done(ctx, proc, &result, &name).is_some() {
            if let Some(what) = self.wake_after_dialect.take() {
                match self.dialect.get() {
                    Some(d) => self.begin(ctx, d, if what { Some(self.dry_run) } else { None }),
                    None => self.log(ctx, Level::Error, self.dialect.error()),
                }
            }
            return;
        }
        let dialect = self.dialect.get().unwrap_or(Dialect::ZfsFuse);
        if let Some(s) = self.snapper.as_mut().filter(|s| s.owns(proc)) {
            if let Some(outcome) = s.on_process_done(ctx, dialect, result) {
                self.run_started = ctx.now().wall.0;
                self.run_lines = vec![format!("took {} snapshot(s)", outcome.taken.len())];
                self.run_failed = outcome.failed.len() as u32;
                self.run_lines.extend(outcome.failed.iter().map(|f| format!("not taken: {f}")));
                self.start_pruning(ctx, dialect, false);
            }
            return;
        }
        match self.pruning.take() {
            Some(Pruning::Listing { proc: p }) if p == proc => {
                if !result.status.success() {
                    self.summary.failed += 1;
                    self.log(
                        ctx,
                        Level::Error,
                        format!("listing snapshots failed: {}", result.stderr.trim()),
                    );
                    return self.end_pruning(ctx);
                }
                match zfsops::parse_versions(dialect, &result.stdout) {
                    Ok(versions) => self.decide(ctx, dialect, versions),
                    Err(e) => {
                        self.summary.failed += 1;
                        self.log(
                            ctx,
                            Level::Error,
                            format!("cannot read the snapshot listing: {e}"),
                        );
                        self.end_pruning(ctx);
                    }
                }
            }
            Some(Pruning::Destroying { mut task, fs, queue }) if task.owns(proc) => {
                task.on_process_done(ctx, result);
                self.pruning = Some(Pruning::Destroying { task, fs, queue });
                self.check_destroy(ctx, dialect);
            }
            other => self.pruning = other,
        }
    }

    fn on_timeout(&mut self, ctx: &mut JobCtx<'_, '_>) {
        if let Some(s) = &mut self.snapper {
            s.on_timeout(ctx, &mut self.dialect);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.snapper.as_ref().and_then(Snapper::poll_timeout)
    }

    fn wakeup(&mut self, ctx: &mut JobCtx<'_, '_>) -> Result<(), String> {
        if self.stopping {
            return Err("shutting down".to_owned());
        }
        match self.dialect.get() {
            Some(d) => self.begin(ctx, d, None),
            None => self.wake_after_dialect = Some(false),
        }
        Ok(())
    }

    fn prune_now(&mut self, ctx: &mut JobCtx<'_, '_>, dry_run: bool) -> Result<(), String> {
        self.dry_run = dry_run;
        match self.dialect.get() {
            Some(d) => self.begin(ctx, d, Some(dry_run)),
            None => self.wake_after_dialect = Some(true),
        }
        Ok(())
    }

    fn last_run(&self) -> Option<&RunSummary> {
        self.last_run.as_ref()
    }

    fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.stopping = true;
        self.wake_after_dialect = None;
        if let Some(s) = &mut self.snapper {
            s.shutdown(ctx);
        }
    }

    fn is_idle(&self) -> bool {
        self.pruning.is_none()
            && self.wake_after_dialect.is_none()
            && !self.dialect.running()
            && !self.snapper.as_ref().is_some_and(Snapper::busy)
    }

    fn status(&self) -> JobStatus {
        let state = if self.snapper.as_ref().is_some_and(Snapper::busy) {
            "snapshotting"
        } else if self.pruning.is_some() {
            "pruning"
        } else {
            "idle"
        };
        JobStatus {
            name: self.spec.name.clone(),
            kind: "snap".to_owned(),
            state: state.to_owned(),
            next_run: None,
            progress: None,
            last_run: self.last_run.clone(),
            next_snapshot: self.snapper.as_ref().and_then(Snapper::next_snapshot).map(|w| w.0),
            last_prune: self.last_prune.clone(),
        }
    }
}
