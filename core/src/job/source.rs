//! The source: serves pull clients the filesystems its filter selects, and
//! nothing else. Every request names a filesystem that is checked against the
//! filter before any `zfs` command runs.

use std::collections::{BTreeMap, VecDeque};

use super::clients;
use super::destroy::DestroyTask;
use super::protocol::{
    DescribeResumeToken, DestroySnapshots, FilesystemState, ListFilesystems, ListVersions,
    MoveCursor, ResumeDescription, Send, StepSpec,
};
use super::snapper::{Snapper, SnapperSpec};
use super::zfsops;
use super::{DialectProbe, Job, JobCtx};
use crate::config::ClientMap;
use crate::control::JobStatus;
use crate::node::{
    ConnId, Endpoint, Level, ProcId, ProcessResult, ProcessSpec, StdinFrom, StdoutTo,
};
use crate::plan::filter::FilesystemFilter;
use crate::rpc::{IncomingRequest, RemoteError, RemoteErrorKind, SessionEvent};
use crate::time::Instant;
use crate::zfs::{DatasetPath, Dialect, FilesystemVersion};

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub serve: Endpoint,
    pub clients: ClientMap,
    pub filter: FilesystemFilter,
    /// The datasets to list filesystems under (the pools the filter names).
    pub list_roots: Vec<DatasetPath>,
    /// Periodic or cron snapshotting of the served filesystems.
    pub snapshotting: Option<SnapperSpec>,
}

#[derive(Debug)]
enum Pending {
    ListFilesystems {
        proc: ProcId,
        rest: VecDeque<DatasetPath>,
        found: Vec<FilesystemState>,
    },
    ListVersions {
        proc: ProcId,
        fs: DatasetPath,
    },
    /// Reading a resume token: to answer it, or (`resume` set) to check it
    /// before sending its resumption.
    Describing {
        proc: ProcId,
        fs: DatasetPath,
        resume: Option<StepSpec>,
    },
    Sending {
        proc: ProcId,
    },
    /// Pruning on behalf of the pull client.
    Destroy(DestroyTask),
    /// Moving the client's replication cursor: listing `fs` first.
    CursorList {
        proc: ProcId,
        fs: DatasetPath,
        to: FilesystemVersion,
    },
    /// Then `zfs bookmark` and the destroys of older cursors, in turn.
    CursorCommands {
        proc: ProcId,
        rest: VecDeque<ProcessSpec>,
        errors: Vec<String>,
    },
}

impl Pending {
    fn owns(&self, p: ProcId) -> bool {
        match self {
            Pending::ListFilesystems { proc, .. }
            | Pending::ListVersions { proc, .. }
            | Pending::Describing { proc, .. }
            | Pending::CursorList { proc, .. }
            | Pending::CursorCommands { proc, .. }
            | Pending::Sending { proc } => *proc == p,
            Pending::Destroy(task) => task.owns(p),
        }
    }

    /// The process to stop when the client goes away. Not a `zfs destroy`:
    /// it is short, and killing one can leave zfs-fuse wedged.
    fn killable(&self) -> Option<ProcId> {
        match self {
            Pending::ListFilesystems { proc, .. }
            | Pending::ListVersions { proc, .. }
            | Pending::Describing { proc, .. }
            | Pending::CursorList { proc, .. }
            | Pending::Sending { proc } => Some(*proc),
            Pending::Destroy(_) | Pending::CursorCommands { .. } => None,
        }
    }
}

#[derive(Debug)]
struct Client {
    identity: String,
    pending: Option<Pending>,
}

#[derive(Debug)]
pub struct SourceJob {
    spec: SourceSpec,
    dialect: DialectProbe,
    clients: BTreeMap<ConnId, Client>,
    sent: u64,
    snapper: Option<Snapper>,
    /// `run`/`prune` serve this source in-process: no snapshot schedule then.
    one_shot: bool,
}

fn refused(why: String) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Refused, why)
}

fn failed(why: String) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Failed, why)
}

impl SourceJob {
    pub fn new(spec: SourceSpec) -> SourceJob {
        let snapper = spec.snapshotting.clone().map(Snapper::new);
        SourceJob {
            spec,
            dialect: DialectProbe::default(),
            clients: BTreeMap::new(),
            sent: 0,
            snapper,
            one_shot: false,
        }
    }

    fn respond_error(ctx: &mut JobCtx<'_, '_>, conn: ConnId, error: RemoteError) {
        let now = ctx.now().mono;
        if let Some(s) = ctx.session(conn) {
            let _ = s.respond_error(now, error);
        }
    }

    /// Refuses, and logs, a filesystem outside the filter.
    fn check(
        &self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        fs: &DatasetPath,
    ) -> Result<(), RemoteError> {
        if self.spec.filter.selects(fs) {
            return Ok(());
        }
        let who = self.clients.get(&conn).map_or("?", |c| c.identity.as_str());
        ctx.log(
            Level::Warn,
            format!(
                "job {}: refused {who} access to {fs}: not in this source's filesystems",
                self.spec.name
            ),
        );
        Err(refused(format!("{fs} is not among the filesystems this source serves")))
    }

    fn list_next(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        dialect: Dialect,
        mut rest: VecDeque<DatasetPath>,
        found: Vec<FilesystemState>,
    ) -> Result<Pending, RemoteError> {
        let root = rest.pop_front().ok_or_else(|| failed("no pool to list".to_owned()))?;
        let spec = zfsops::list_filesystems(dialect, &root).map_err(failed)?;
        let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
        Ok(Pending::ListFilesystems { proc, rest, found })
    }

    /// The job part of this client's cursor name: one cursor per source job and
    /// client, so two pullers of one filesystem do not move each other's.
    fn cursor_job(&self, conn: ConnId) -> String {
        let who = self.clients.get(&conn).map_or("unknown", |c| c.identity.as_str());
        format!("{}_{who}", self.spec.name)
    }

    fn next_cursor_command(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        mut rest: VecDeque<ProcessSpec>,
        errors: Vec<String>,
    ) {
        let now = ctx.now().mono;
        match rest.pop_front() {
            Some(spec) => {
                let proc = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Null);
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.pending = Some(Pending::CursorCommands { proc, rest, errors });
                }
            }
            None if errors.is_empty() => {
                if let Some(s) = ctx.session(conn) {
                    let _ = s.respond::<MoveCursor>(now, Ok(&()), false);
                }
            }
            None => Self::respond_error(ctx, conn, failed(errors.join("; "))),
        }
    }

    /// Answers a send request and starts its stream.
    fn start_send(
        &self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        dialect: Dialect,
        step: &StepSpec,
    ) -> Result<Pending, RemoteError> {
        let now = ctx.now().mono;
        let spec = zfsops::send(
            dialect,
            &step.filesystem,
            step.from.as_ref(),
            &step.to,
            step.intermediate,
            step.resume_token.as_deref(),
        )
        .map_err(failed)?;
        // The stream follows the answer; a failing send aborts it with zfs's
        // own message.
        if let Some(s) = ctx.session(conn) {
            s.respond::<Send>(now, Ok(&()), true).map_err(|e| failed(e.to_string()))?;
        }
        let what = if step.resume_token.is_some() { "resuming" } else { "sending" };
        ctx.log(
            Level::Info,
            format!(
                "job {}: {what} {} {}",
                self.spec.name,
                step.filesystem,
                step.to.relative_name()
            ),
        );
        Ok(Pending::Sending { proc: ctx.spawn(spec, StdoutTo::Stream(conn), StdinFrom::Null) })
    }

    fn handle_request(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        req: IncomingRequest,
        dialect: Dialect,
    ) {
        let pending = if req.is::<ListFilesystems>() {
            let roots: VecDeque<DatasetPath> = self.spec.list_roots.iter().cloned().collect();
            self.list_next(ctx, dialect, roots, Vec::new())
        } else if req.is::<ListVersions>() {
            req.decode::<ListVersions>().and_then(|fs| {
                self.check(ctx, conn, &fs)?;
                let spec = zfsops::list_versions(dialect, &fs).map_err(failed)?;
                Ok(Pending::ListVersions {
                    proc: ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null),
                    fs,
                })
            })
        } else if req.is::<DestroySnapshots>() {
            req.decode::<DestroySnapshots>().and_then(|r| {
                self.check(ctx, conn, &r.filesystem)?;
                let who = self.clients.get(&conn).map_or("?", |c| c.identity.as_str());
                let names: Vec<&str> = r.snapshots.iter().map(|v| v.name.as_str()).collect();
                ctx.log(
                    Level::Info,
                    format!(
                        "job {}: {who} prunes {}: {}",
                        self.spec.name,
                        r.filesystem,
                        names.join(", ")
                    ),
                );
                Ok(Pending::Destroy(DestroyTask::start(ctx, dialect, r.filesystem, r.snapshots)))
            })
        } else if req.is::<MoveCursor>() && !dialect.capabilities().bookmarks {
            // No bookmarks here: there is no cursor to keep, which is no error.
            let now = ctx.now().mono;
            if let Some(s) = ctx.session(conn) {
                let _ = s.respond::<MoveCursor>(now, Ok(&()), false);
            }
            return;
        } else if req.is::<MoveCursor>() {
            req.decode::<MoveCursor>().and_then(|r| {
                self.check(ctx, conn, &r.filesystem)?;
                let spec = zfsops::list_versions(dialect, &r.filesystem).map_err(failed)?;
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                Ok(Pending::CursorList { proc, fs: r.filesystem, to: r.to })
            })
        } else if req.is::<DescribeResumeToken>() {
            req.decode::<DescribeResumeToken>().and_then(|r| {
                self.check(ctx, conn, &r.filesystem)?;
                let spec = zfsops::describe_resume_token(dialect, &r.token).map_err(failed)?;
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                Ok(Pending::Describing { proc, fs: r.filesystem, resume: None })
            })
        } else if req.is::<Send>() {
            req.decode::<Send>().and_then(|step| {
                self.check(ctx, conn, &step.filesystem)?;
                match &step.resume_token {
                    // A token is the client's word for what to send: read it
                    // ourselves first, and send only what it is meant to be.
                    Some(token) => {
                        let spec = zfsops::describe_resume_token(dialect, token).map_err(failed)?;
                        let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                        let fs = step.filesystem.clone();
                        Ok(Pending::Describing { proc, fs, resume: Some(step) })
                    }
                    None => self.start_send(ctx, conn, dialect, &step),
                }
            })
        } else {
            Err(RemoteError::new(
                RemoteErrorKind::UnknownMethod,
                format!("a source does not answer {}", req.method),
            ))
        };
        match pending {
            Ok(p) => {
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.pending = Some(p);
                }
            }
            Err(e) => Self::respond_error(ctx, conn, e),
        }
    }
}

impl Job for SourceJob {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn kind(&self) -> &'static str {
        "source"
    }

    fn serves_in_process(&self) -> bool {
        matches!(self.spec.serve, Endpoint::Local(_))
    }

    fn set_one_shot(&mut self) {
        self.one_shot = true;
    }

    fn start(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.dialect.start(ctx);
        ctx.listen(self.spec.serve.clone());
        let now = ctx.now();
        if let Some(s) = self.snapper.as_mut().filter(|_| !self.one_shot) {
            s.start(now);
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

    fn on_accept(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, peer: &str) {
        if let Some(identity) = clients::admit(ctx, &self.spec.name, &self.spec.clients, conn, peer)
        {
            self.clients.insert(conn, Client { identity, pending: None });
        }
    }

    fn on_session_event(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, event: SessionEvent) {
        if !self.clients.contains_key(&conn) {
            return;
        }
        match event {
            SessionEvent::Request(req) => match self.dialect.get() {
                Some(d) => self.handle_request(ctx, conn, req, d),
                None => {
                    self.dialect.defer(conn, req);
                    self.dialect.start(ctx);
                }
            },
            SessionEvent::StreamCancelled(reason) => {
                ctx.log(
                    Level::Warn,
                    format!("job {}: the client stopped the stream: {reason}", self.spec.name),
                );
            }
            _ => {}
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, _error: Option<String>) {
        if let Some(c) = self.clients.remove(&conn) {
            if let Some(p) = c.pending.as_ref().and_then(Pending::killable) {
                ctx.kill(p);
            }
        }
    }

    fn on_process_done(&mut self, ctx: &mut JobCtx<'_, '_>, proc: ProcId, result: ProcessResult) {
        let job = self.spec.name.clone();
        if let Some(waiting) = self.dialect.on_process_done(ctx, proc, &result, &job) {
            for (conn, req) in waiting {
                if !self.clients.contains_key(&conn) {
                    continue;
                }
                match self.dialect.get() {
                    Some(d) => self.handle_request(ctx, conn, req, d),
                    None => Self::respond_error(ctx, conn, failed(self.dialect.error())),
                }
            }
            return;
        }
        let Some(conn) =
            self.clients.iter().find_map(|(c, cl)| cl.pending.as_ref()?.owns(proc).then_some(*c))
        else {
            return;
        };
        let dialect = self.dialect.get().unwrap_or(Dialect::ZfsFuse);
        let now = ctx.now().mono;
        let Some(pending) = self.clients.get_mut(&conn).and_then(|c| c.pending.take()) else {
            return;
        };
        match pending {
            Pending::ListFilesystems { rest, mut found, .. } => {
                if !result.status.success() {
                    return Self::respond_error(
                        ctx,
                        conn,
                        failed(format!("listing filesystems failed: {}", result.stderr)),
                    );
                }
                match zfsops::parse_filesystems(&result.stdout) {
                    Ok(list) => found.extend(
                        list.into_iter()
                            .filter(|f| !f.placeholder && self.spec.filter.selects(&f.path))
                            .map(|f| FilesystemState {
                                path: f.path,
                                placeholder: false,
                                resume_token: None,
                            }),
                    ),
                    Err(e) => return Self::respond_error(ctx, conn, failed(e)),
                }
                if rest.is_empty() {
                    if let Some(s) = ctx.session(conn) {
                        let _ = s.respond::<ListFilesystems>(now, Ok(&found), false);
                    }
                } else {
                    match self.list_next(ctx, dialect, rest, found) {
                        Ok(p) => {
                            if let Some(c) = self.clients.get_mut(&conn) {
                                c.pending = Some(p);
                            }
                        }
                        Err(e) => Self::respond_error(ctx, conn, e),
                    }
                }
            }
            Pending::ListVersions { fs, .. } => {
                let answer = if result.status.success() {
                    zfsops::parse_versions(dialect, &result.stdout)
                        .map(|mut by_fs| by_fs.remove(&fs).unwrap_or_default())
                        .map_err(failed)
                } else {
                    Err(failed(format!("listing versions of {fs} failed: {}", result.stderr)))
                };
                if let Some(s) = ctx.session(conn) {
                    let _ = s.respond::<ListVersions>(
                        now,
                        answer.as_ref().map_err(Clone::clone),
                        false,
                    );
                }
            }
            Pending::CursorList { fs, to, .. } => {
                let cursor_job = self.cursor_job(conn);
                let specs = if result.status.success() {
                    zfsops::parse_versions(dialect, &result.stdout).and_then(|mut by_fs| {
                        let versions = by_fs.remove(&fs).unwrap_or_default();
                        if !versions.iter().any(|v| v.is_snapshot() && v.guid == to.guid) {
                            return Err(format!("{fs} has no snapshot of guid {}", to.guid));
                        }
                        let new_name = zfsops::cursor_name(&cursor_job, to.guid);
                        let stale: Vec<_> = versions
                            .into_iter()
                            .filter(|v| !v.is_snapshot() && v.name != new_name)
                            .filter(|v| zfsops::is_cursor_of(&v.name, &cursor_job))
                            .collect();
                        zfsops::move_cursor(dialect, &fs, &to, &stale, &cursor_job)
                    })
                } else {
                    Err(format!("listing versions of {fs} failed: {}", result.stderr.trim()))
                };
                match specs {
                    Ok(specs) => self.next_cursor_command(ctx, conn, specs.into(), Vec::new()),
                    Err(e) => Self::respond_error(ctx, conn, failed(e)),
                }
            }
            Pending::CursorCommands { rest, mut errors, .. } => {
                if !result.status.success() {
                    errors.push(result.stderr.trim().to_owned());
                }
                self.next_cursor_command(ctx, conn, rest, errors);
            }
            Pending::Destroy(mut task) => {
                task.on_process_done(ctx, result);
                match task.result().cloned() {
                    None => {
                        if let Some(c) = self.clients.get_mut(&conn) {
                            c.pending = Some(Pending::Destroy(task));
                        }
                    }
                    Some(outcome) => {
                        let answer = outcome.map_err(failed);
                        if let Some(s) = ctx.session(conn) {
                            let answer = answer.as_ref().map_err(Clone::clone);
                            let _ = s.respond::<DestroySnapshots>(now, answer, false);
                        }
                    }
                }
            }
            Pending::Describing { fs, resume, .. } => {
                let described = zfsops::parse_resume_description(&fs, &result);
                match (described, resume) {
                    (Err(e), _) => Self::respond_error(ctx, conn, failed(e)),
                    (Ok(info), None) => {
                        if let Some(s) = ctx.session(conn) {
                            let answer = ResumeDescription::from(&info);
                            let _ = s.respond::<DescribeResumeToken>(now, Ok(&answer), false);
                        }
                    }
                    (Ok(info), Some(step)) if info.to_guid != step.to.guid => {
                        let why = format!(
                            "the resume token continues {} (guid {}), not {} (guid {})",
                            info.to_name,
                            info.to_guid,
                            step.to.relative_name(),
                            step.to.guid
                        );
                        Self::respond_error(ctx, conn, refused(why));
                    }
                    (Ok(_), Some(step)) => match self.start_send(ctx, conn, dialect, &step) {
                        Ok(p) => {
                            if let Some(c) = self.clients.get_mut(&conn) {
                                c.pending = Some(p);
                            }
                        }
                        Err(e) => Self::respond_error(ctx, conn, e),
                    },
                }
            }
            Pending::Sending { .. } => {
                // The node has ended or aborted the stream already.
                if result.status.success() {
                    self.sent += result.bytes;
                } else {
                    ctx.log(
                        Level::Error,
                        format!("job {}: zfs send failed: {}", self.spec.name, result.stderr),
                    );
                }
            }
        }
    }

    fn wakeup(&mut self, ctx: &mut JobCtx<'_, '_>) -> Result<(), String> {
        match (&mut self.snapper, self.dialect.get()) {
            (Some(s), Some(d)) => s.trigger(ctx, d),
            (Some(_), None) => Err("zfs is not detected yet; try again in a moment".to_owned()),
            (None, _) => Err(format!(
                "job {} is a source without periodic or cron snapshotting: there is nothing to wake",
                self.spec.name
            )),
        }
    }

    fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>) {
        if let Some(s) = &mut self.snapper {
            s.shutdown(ctx);
        }
        for (conn, c) in &self.clients {
            if let Some(p) = c.pending.as_ref().and_then(Pending::killable) {
                ctx.kill(p);
            }
            ctx.close(*conn, "the source is shutting down");
        }
    }

    fn is_idle(&self) -> bool {
        self.clients.values().all(|c| c.pending.is_none())
            && !self.dialect.running()
            && !self.snapper.as_ref().is_some_and(Snapper::busy)
    }

    fn status(&self) -> JobStatus {
        JobStatus {
            name: self.spec.name.clone(),
            kind: "source".to_owned(),
            state: format!("{} client(s) connected, {} bytes sent", self.clients.len(), self.sent),
            next_run: None,
            progress: None,
            last_run: None,
            next_snapshot: self.snapper.as_ref().and_then(Snapper::next_snapshot).map(|w| w.0),
            last_prune: None,
        }
    }
}
