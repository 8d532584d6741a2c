//! Replication jobs: push and pull (active), sink and source (passive), hosted
//! by the [`Daemon`] app.
//!
//! Each job is its own state machine behind the [`Job`] trait. The daemon owns the
//! node's connections, listeners and processes on the jobs' behalf and routes each
//! event to the job that created the handle, so jobs never see each other's
//! traffic.

mod active;
mod build;
pub mod clients;
mod daemon;
pub mod destroy;
pub mod protocol;
pub mod prune;
mod receiver;
mod sink;
mod snap;
pub mod snapper;
mod source;
mod testfs;
pub mod zfsops;

pub use active::{ActiveJob, ActiveSpec, Direction};
pub use build::{build_jobs, job_filter};

pub use daemon::{Daemon, DaemonMode};
pub use sink::{SinkJob, SinkSpec};
pub use snap::{SnapJob, SnapJobSpec};
pub use source::{SourceJob, SourceSpec};
pub use testfs::TestFilesystems;

use std::collections::BTreeMap;

use crate::control::{JobStatus, RunSummary};
use crate::node::{
    AppCtx, ConnId, Endpoint, Level, ListenerId, ProcId, ProcessResult, ProcessSpec, StdinFrom,
    StdoutTo,
};
use crate::rpc::{Session, SessionEvent};
use crate::time::{Instant, Now};

/// One job's state machine. Every method gets a [`JobCtx`] whose handles are
/// recorded as this job's; none of them may block.
pub trait Job {
    fn name(&self) -> &str;
    /// push, sink, pull, source or snap.
    fn kind(&self) -> &'static str;
    fn start(&mut self, ctx: &mut JobCtx<'_, '_>);
    /// Called before `start` in the one-shot modes (`run`, `prune`): the job
    /// does what it is asked once and keeps no schedule (no interval, no
    /// periodic snapshots), so the process can end.
    fn set_one_shot(&mut self) {}
    /// A passive job serving an in-process (`local`) listener: `zferry run` of a
    /// local push or pull needs it running in the same process.
    fn serves_in_process(&self) -> bool {
        false
    }
    fn on_accept(&mut self, _ctx: &mut JobCtx<'_, '_>, _conn: ConnId, _peer: &str) {}
    fn on_session_event(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, event: SessionEvent);
    fn on_conn_closed(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, error: Option<String>);
    fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, proc: ProcId, result: ProcessResult);
    fn on_timeout(&mut self, _ctx: &mut JobCtx<'_, '_>) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Starts a cycle now (active jobs); passive jobs say why they cannot.
    fn wakeup(&mut self, ctx: &mut JobCtx<'_, '_>) -> Result<(), String>;
    /// Prunes now without replicating (`zferry prune`); with `dry_run`, only
    /// prints what would be destroyed and why the rest is kept.
    fn prune_now(&mut self, _ctx: &mut JobCtx<'_, '_>, _dry_run: bool) -> Result<(), String> {
        Err(format!("job {} does not prune", self.name()))
    }
    /// Stop starting work; abort what runs. The daemon waits for `is_idle`.
    fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>);
    /// Nothing in flight: no cycle running, no process, no request being served.
    fn is_idle(&self) -> bool;
    fn status(&self) -> JobStatus;
    /// How the last completed cycle went (active jobs).
    fn last_run(&self) -> Option<&RunSummary> {
        None
    }
}

/// Which job owns a handle.
pub(crate) type JobIndex = usize;

/// The handles each job created, so the daemon can route events back.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    pub conns: BTreeMap<ConnId, JobIndex>,
    pub listeners: BTreeMap<ListenerId, JobIndex>,
    pub procs: BTreeMap<ProcId, JobIndex>,
}

/// A job's view of the node: like [`AppCtx`], with every new handle recorded as
/// the job's own.
#[derive(Debug)]
pub struct JobCtx<'a, 'b> {
    app: &'a mut AppCtx<'b>,
    owners: &'a mut Owners,
    job: JobIndex,
}

impl<'a, 'b> JobCtx<'a, 'b> {
    pub(crate) fn new(app: &'a mut AppCtx<'b>, owners: &'a mut Owners, job: JobIndex) -> Self {
        JobCtx { app, owners, job }
    }

    pub fn now(&self) -> Now {
        self.app.now()
    }

    pub fn listen(&mut self, endpoint: Endpoint) -> ListenerId {
        let l = self.app.listen(endpoint);
        self.owners.listeners.insert(l, self.job);
        l
    }

    /// Connects; an in-process listener learns `identity` as the client's name.
    pub fn connect(&mut self, endpoint: Endpoint, identity: &str) -> ConnId {
        let c = self.app.connect_as(endpoint, identity);
        self.owners.conns.insert(c, self.job);
        c
    }

    pub fn session(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.app.session(conn)
    }

    pub fn close(&mut self, conn: ConnId, reason: &str) {
        self.app.close(conn, reason);
    }

    pub fn spawn(&mut self, spec: ProcessSpec, stdout: StdoutTo, stdin: StdinFrom) -> ProcId {
        let p = self.app.spawn(spec, stdout, stdin);
        self.owners.procs.insert(p, self.job);
        p
    }

    pub fn kill(&mut self, proc: ProcId) {
        self.app.kill(proc);
    }

    pub fn process_bytes(&self, proc: ProcId) -> Option<u64> {
        self.app.process_bytes(proc)
    }

    pub fn feed_stdin(&mut self, proc: ProcId, data: bytes::Bytes) {
        self.app.feed_stdin(proc, data);
    }

    pub fn end_stdin(&mut self, proc: ProcId) {
        self.app.end_stdin(proc);
    }

    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.app.log(level, message);
    }

    pub fn print(&mut self, text: impl Into<String>) {
        self.app.print(text);
    }
}

/// The installed `zfs` dialect, learned once per job from `zfs version`.
#[derive(Debug, Default)]
pub(crate) struct DialectProbe {
    proc: Option<ProcId>,
    result: Option<Result<crate::zfs::Dialect, String>>,
    /// Requests that arrived before the dialect was known (passive jobs).
    deferred: Vec<(ConnId, crate::rpc::IncomingRequest)>,
}

impl DialectProbe {
    /// Runs `zfs version` unless it runs already or has answered well: a
    /// failed probe (zfs not ready at boot, a spawn failure) is tried again at
    /// the next need rather than wedging the job until a restart.
    pub fn start(&mut self, ctx: &mut JobCtx<'_, '_>) {
        if self.proc.is_none() && !matches!(self.result, Some(Ok(_))) {
            self.proc = Some(ctx.spawn(zfsops::version(), StdoutTo::Collect, StdinFrom::Null));
        }
    }

    pub fn get(&self) -> Option<crate::zfs::Dialect> {
        self.result.as_ref().and_then(|r| r.as_ref().ok().copied())
    }

    /// Why the dialect is unknown, for error messages.
    pub fn error(&self) -> String {
        match &self.result {
            Some(Err(e)) => e.clone(),
            _ => "the installed zfs is not known yet".to_owned(),
        }
    }

    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    /// Holds a request until the dialect is known.
    pub fn defer(&mut self, conn: ConnId, request: crate::rpc::IncomingRequest) {
        self.deferred.push((conn, request));
    }

    /// `Some` if `proc` was the probe (now finished): the requests that waited
    /// for it, to be handled now.
    pub fn on_process_done(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        proc: ProcId,
        result: &ProcessResult,
        job: &str,
    ) -> Option<Vec<(ConnId, crate::rpc::IncomingRequest)>> {
        if self.proc != Some(proc) {
            return None;
        }
        self.proc = None;
        let code = match result.status {
            crate::node::ExitStatus::Code(c) => Some(c),
            crate::node::ExitStatus::Signal(_) => None,
        };
        let detected = crate::zfs::detect(code, &result.stdout, result.stderr.as_bytes())
            .map_err(|e| e.to_string());
        match &detected {
            Ok(d) => ctx.log(Level::Debug, format!("job {job}: zfs is {d}")),
            Err(e) => {
                ctx.log(Level::Error, format!("job {job}: cannot use the installed zfs: {e}"))
            }
        }
        self.result = Some(detected);
        Some(std::mem::take(&mut self.deferred))
    }
}
