//! The daemon: hosts the jobs, routes the node's events to them, answers the
//! control socket, and knows when to exit.

use std::collections::BTreeSet;

use super::{Job, JobCtx, JobIndex, Owners};
use crate::control::{DaemonStatus, Status, Wakeup};
use crate::node::{App, AppCtx, ConnId, Endpoint, Level, ListenerId, ProcId, ProcessResult};
use crate::rpc::{RemoteError, RemoteErrorKind, SessionEvent};
use crate::time::Instant;

/// How the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonMode {
    /// All jobs, until SIGTERM; answers `status` and `signal` on this socket.
    Daemon { control_socket: String },
    /// One cycle of the named active job, then exit with its result. Passive jobs
    /// serving in-process (`local`) listeners run too, so a local push finds its
    /// sink.
    RunOnce { job: String },
    /// Prune the named active job's filesystems on both sides without
    /// replicating, then exit; with `dry_run`, only print what would go.
    Prune { job: String, dry_run: bool },
}

pub struct Daemon {
    mode: DaemonMode,
    jobs: Vec<Box<dyn Job>>,
    owners: Owners,
    control: Option<ListenerId>,
    control_conns: BTreeSet<ConnId>,
    /// RunOnce: the job whose cycle decides the exit code, once woken.
    target: Option<JobIndex>,
    target_woken: bool,
    shutting_down: bool,
    /// Set when the daemon cannot run at all (bad job name, socket in use).
    fatal: Option<String>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("mode", &self.mode).field("jobs", &self.jobs.len()).finish()
    }
}

impl Daemon {
    pub fn new(mode: DaemonMode, jobs: Vec<Box<dyn Job>>) -> Daemon {
        Daemon {
            mode,
            jobs,
            owners: Owners::default(),
            control: None,
            control_conns: BTreeSet::new(),
            target: None,
            target_woken: false,
            shutting_down: false,
            fatal: None,
        }
    }

    fn with_job(
        &mut self,
        ctx: &mut AppCtx<'_>,
        job: JobIndex,
        f: impl FnOnce(&mut dyn Job, &mut JobCtx<'_, '_>),
    ) {
        let mut jctx = JobCtx::new(ctx, &mut self.owners, job);
        f(self.jobs[job].as_mut(), &mut jctx);
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus { jobs: self.jobs.iter().map(|j| j.status()).collect() }
    }

    fn fail(&mut self, ctx: &mut AppCtx<'_>, why: String) {
        ctx.log(Level::Error, why.clone());
        self.fatal.get_or_insert(why);
    }

    /// One-shot modes: start the named job (and the in-process listeners it
    /// may need), then `begin` its work.
    fn start_once(
        &mut self,
        ctx: &mut AppCtx<'_>,
        job: &str,
        begin: impl FnOnce(&mut dyn Job, &mut JobCtx<'_, '_>) -> Result<(), String>,
    ) {
        let Some(target) = self.jobs.iter().position(|j| j.name() == job) else {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name()).collect();
            return self.fail(
                ctx,
                format!("no job named {job:?} in the config (jobs: {})", names.join(", ")),
            );
        };
        self.target = Some(target);
        for i in 0..self.jobs.len() {
            if i == target || self.jobs[i].serves_in_process() {
                self.jobs[i].set_one_shot();
                self.with_job(ctx, i, |job, jctx| job.start(jctx));
            }
        }
        let mut begun = Ok(());
        self.with_job(ctx, target, |j, jctx| begun = begin(j, jctx));
        match begun {
            Ok(()) => self.target_woken = true,
            Err(why) => self.fail(ctx, format!("cannot run job {job:?}: {why}")),
        }
    }

    fn control_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        let SessionEvent::Request(req) = event else { return };
        if req.is::<Status>() {
            let status = self.status();
            if let Some(s) = ctx.session(conn) {
                let _ = s.respond::<Status>(now, Ok(&status), false);
            }
        } else if req.is::<Wakeup>() {
            let answer = match req.decode::<Wakeup>() {
                Ok(name) => match self.jobs.iter().position(|j| j.name() == name) {
                    Some(i) => {
                        let mut result = Ok(());
                        self.with_job(ctx, i, |job, jctx| result = job.wakeup(jctx));
                        result.map_err(|why| RemoteError::new(RemoteErrorKind::Refused, why))
                    }
                    None => Err(RemoteError::new(
                        RemoteErrorKind::Refused,
                        format!("no job named {name:?}"),
                    )),
                },
                Err(e) => Err(e),
            };
            if let Some(s) = ctx.session(conn) {
                let _ = s.respond::<Wakeup>(
                    now,
                    answer.as_ref().map(|()| &()).map_err(Clone::clone),
                    false,
                );
            }
        } else if let Some(s) = ctx.session(conn) {
            let _ =
                s.respond_error(now, RemoteError::new(RemoteErrorKind::UnknownMethod, req.method));
        }
    }
}

impl App for Daemon {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        match self.mode.clone() {
            DaemonMode::Daemon { control_socket } => {
                self.control = Some(ctx.listen(Endpoint::Unix(control_socket)));
                for i in 0..self.jobs.len() {
                    self.with_job(ctx, i, |job, jctx| job.start(jctx));
                }
            }
            DaemonMode::RunOnce { job } => {
                self.start_once(ctx, &job, |j, jctx| j.wakeup(jctx));
            }
            DaemonMode::Prune { job, dry_run } => {
                self.start_once(ctx, &job, |j, jctx| j.prune_now(jctx, dry_run));
            }
        }
    }

    fn on_listening(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, local: &str) {
        if Some(listener) == self.control {
            ctx.log(Level::Info, format!("control socket at {local}"));
        } else if let Some(&job) = self.owners.listeners.get(&listener) {
            let name = self.jobs[job].name().to_owned();
            ctx.log(Level::Info, format!("job {name}: listening on {local}"));
        }
    }

    fn on_listen_failed(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, error: &str) {
        let whose = match self.owners.listeners.get(&listener) {
            Some(&job) => format!("job {}", self.jobs[job].name()),
            None => "control socket".to_owned(),
        };
        self.fail(ctx, format!("{whose}: {error}"));
    }

    fn on_accept(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, conn: ConnId, peer: &str) {
        if Some(listener) == self.control {
            self.control_conns.insert(conn);
            return;
        }
        let Some(&job) = self.owners.listeners.get(&listener) else { return };
        self.owners.conns.insert(conn, job);
        self.with_job(ctx, job, |j, jctx| j.on_accept(jctx, conn, peer));
    }

    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        if self.control_conns.contains(&conn) {
            return self.control_event(ctx, conn, event);
        }
        if let Some(&job) = self.owners.conns.get(&conn) {
            self.with_job(ctx, job, |j, jctx| j.on_session_event(jctx, conn, event));
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, error: Option<String>) {
        if self.control_conns.remove(&conn) {
            return;
        }
        if let Some(job) = self.owners.conns.remove(&conn) {
            self.with_job(ctx, job, |j, jctx| j.on_conn_closed(jctx, conn, error));
        }
    }

    fn on_process_done(&mut self, ctx: &mut AppCtx<'_>, proc: ProcId, result: ProcessResult) {
        if let Some(job) = self.owners.procs.remove(&proc) {
            self.with_job(ctx, job, |j, jctx| j.on_process_done(jctx, proc, result));
        }
    }

    fn on_timeout(&mut self, ctx: &mut AppCtx<'_>) {
        let now = ctx.now().mono;
        for i in 0..self.jobs.len() {
            if self.jobs[i].poll_timeout().is_some_and(|t| t <= now) {
                self.with_job(ctx, i, |j, jctx| j.on_timeout(jctx));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.jobs.iter().filter_map(|j| j.poll_timeout()).min()
    }

    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>) {
        if self.shutting_down {
            // A second signal: stop waiting; the driver kills what still runs.
            ctx.log(Level::Warn, "second signal: exiting without waiting for running work");
            self.fatal.get_or_insert_with(|| "interrupted twice".to_owned());
            return;
        }
        self.shutting_down = true;
        if let Some(l) = self.control.take() {
            ctx.unlisten(l);
        }
        for i in 0..self.jobs.len() {
            self.with_job(ctx, i, |j, jctx| j.shutdown(jctx));
        }
    }

    fn exit_code(&self) -> Option<i32> {
        if self.fatal.is_some() {
            return Some(2);
        }
        let all_idle = self.jobs.iter().all(|j| j.is_idle()) && self.owners.procs.is_empty();
        if self.shutting_down && all_idle {
            return Some(if self.target.is_some() { 1 } else { 0 });
        }
        let target = self.target?;
        if !self.target_woken || !all_idle || !self.owners.conns.is_empty() {
            return None;
        }
        let failed = self.jobs[target].last_run().map_or(1, |r| r.failed);
        Some(if failed == 0 { 0 } else { 1 })
    }
}
