//! The sink: receives what push clients send, each under its own subtree
//! `root_fs/<client identity>`, and lets no client touch anything outside it.

use std::collections::BTreeMap;

use super::clients;
use super::destroy::DestroyTask;
use super::protocol::{DestroySnapshots, FilesystemState, ListFilesystems, ListVersions, Receive};
use super::receiver::{ReceiveKind, ReceiveTask};
use super::zfsops;
use super::{DialectProbe, Job, JobCtx};
use crate::config::ClientMap;
use crate::control::JobStatus;
use crate::node::{ConnId, Endpoint, Level, ProcId, ProcessResult, StdinFrom, StdoutTo};
use crate::rpc::{IncomingRequest, RemoteError, RemoteErrorKind, SessionEvent};
use crate::zfs::{DatasetPath, Dialect};

#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub serve: Endpoint,
    /// Who may connect, and as whom (TCP); in-process clients name themselves.
    pub clients: ClientMap,
    pub root_fs: DatasetPath,
}

fn failed(why: String) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Failed, why)
}

/// What one connection's request is waiting for.
#[derive(Debug)]
enum Pending {
    ListFilesystems { proc: ProcId, root: DatasetPath },
    ListVersions { proc: ProcId, target: DatasetPath },
    Receive(ReceiveTask),
    Destroy(DestroyTask),
}

#[derive(Debug)]
struct Client {
    identity: String,
    pending: Option<Pending>,
}

#[derive(Debug)]
pub struct SinkJob {
    spec: SinkSpec,
    dialect: DialectProbe,
    clients: BTreeMap<ConnId, Client>,
    received: u64,
}

impl SinkJob {
    pub fn new(spec: SinkSpec) -> SinkJob {
        SinkJob { spec, dialect: DialectProbe::default(), clients: BTreeMap::new(), received: 0 }
    }

    /// `root_fs/<identity>/<sender path>`, the only place a client may write.
    fn map(&self, identity: &str, sender_path: &DatasetPath) -> Result<DatasetPath, RemoteError> {
        let mut tail = vec![identity.to_owned()];
        tail.extend_from_slice(sender_path.components());
        self.spec.root_fs.join(&tail).map_err(|e| {
            RemoteError::new(RemoteErrorKind::Refused, format!("cannot map {sender_path}: {e}"))
        })
    }

    fn client_root(&self, identity: &str) -> Result<DatasetPath, RemoteError> {
        self.spec
            .root_fs
            .join(&[identity.to_owned()])
            .map_err(|e| RemoteError::new(RemoteErrorKind::Refused, e.to_string()))
    }

    fn respond_error(ctx: &mut JobCtx<'_, '_>, conn: ConnId, error: RemoteError) {
        let now = ctx.now().mono;
        if let Some(s) = ctx.session(conn) {
            let _ = s.respond_error(now, error);
        }
    }

    fn handle_request(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        req: IncomingRequest,
        dialect: Dialect,
    ) {
        let Some(identity) = self.clients.get(&conn).map(|c| c.identity.clone()) else { return };
        let pending = if req.is::<ListFilesystems>() {
            match self.client_root(&identity) {
                Ok(root) => match zfsops::list_filesystems(dialect, &root) {
                    Ok(spec) => {
                        let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                        Some(Pending::ListFilesystems { proc, root })
                    }
                    Err(e) => return Self::respond_error(ctx, conn, failed(e)),
                },
                Err(e) => return Self::respond_error(ctx, conn, e),
            }
        } else if req.is::<ListVersions>() {
            let target = match req.decode::<ListVersions>().and_then(|fs| self.map(&identity, &fs))
            {
                Ok(t) => t,
                Err(e) => return Self::respond_error(ctx, conn, e),
            };
            match zfsops::list_versions(dialect, &target) {
                Ok(spec) => {
                    let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Null);
                    Some(Pending::ListVersions { proc, target })
                }
                Err(e) => return Self::respond_error(ctx, conn, failed(e)),
            }
        } else if req.is::<DestroySnapshots>() {
            let (target, snapshots) = match req
                .decode::<DestroySnapshots>()
                .and_then(|r| Ok((self.map(&identity, &r.filesystem)?, r.snapshots)))
            {
                Ok(t) => t,
                Err(e) => return Self::respond_error(ctx, conn, e),
            };
            let names: Vec<&str> = snapshots.iter().map(|v| v.name.as_str()).collect();
            ctx.log(
                Level::Info,
                format!("job {}: {identity} prunes {target}: {}", self.spec.name, names.join(", ")),
            );
            Some(Pending::Destroy(DestroyTask::start(ctx, dialect, target, snapshots)))
        } else if req.is::<Receive>() {
            let request = match req.decode::<Receive>() {
                Ok(r) => r,
                Err(e) => return Self::respond_error(ctx, conn, e),
            };
            let target = match self.map(&identity, &request.step.filesystem) {
                Ok(t) => t,
                Err(e) => return Self::respond_error(ctx, conn, e),
            };
            if !req.stream {
                return Self::respond_error(
                    ctx,
                    conn,
                    RemoteError::new(RemoteErrorKind::BadRequest, "a receive carries a stream"),
                );
            }
            ctx.log(
                Level::Info,
                format!(
                    "job {}: receiving {} from {identity}",
                    self.spec.name, request.step.filesystem
                ),
            );
            let kind =
                ReceiveKind::of(request.step.from.is_some(), request.step.resume_token.is_some());
            let task =
                ReceiveTask::start(ctx, dialect, self.spec.root_fs.clone(), target, kind, conn);
            Some(Pending::Receive(task))
        } else {
            let why = format!("a sink does not answer {}", req.method);
            return Self::respond_error(
                ctx,
                conn,
                RemoteError::new(RemoteErrorKind::UnknownMethod, why),
            );
        };
        if let Some(c) = self.clients.get_mut(&conn) {
            c.pending = pending;
        }
    }

    fn finish_listing(
        &mut self,
        ctx: &mut JobCtx<'_, '_>,
        conn: ConnId,
        pending: Pending,
        result: ProcessResult,
    ) {
        let now = ctx.now().mono;
        let out = &result.stdout;
        // A client root that does not exist yet simply holds nothing.
        let missing = !result.status.success() && zfsops::is_missing_dataset(&result.stderr);
        let failed = !result.status.success() && !missing;
        let fail = |what: &str| {
            RemoteError::new(RemoteErrorKind::Failed, format!("{what}: {}", result.stderr))
        };
        let Some(s) = ctx.session(conn) else { return };
        match pending {
            Pending::ListFilesystems { root, .. } => {
                let answer = if failed {
                    Err(fail("listing filesystems failed"))
                } else if missing {
                    Ok(Vec::new())
                } else {
                    zfsops::parse_filesystems(out)
                        .map(|list| {
                            list.into_iter()
                                .filter_map(|f| {
                                    // Paths go back to the client in its own namespace.
                                    let tail = f.path.strip_prefix(&root)?;
                                    let path = DatasetPath::parse(&tail.join("/")).ok()?;
                                    Some(FilesystemState {
                                        path,
                                        placeholder: f.placeholder,
                                        resume_token: f.resume_token,
                                    })
                                })
                                .collect()
                        })
                        .map_err(|e| RemoteError::new(RemoteErrorKind::Failed, e))
                };
                let _ =
                    s.respond::<ListFilesystems>(now, answer.as_ref().map_err(Clone::clone), false);
            }
            Pending::ListVersions { target, .. } => {
                let answer = if failed {
                    Err(fail("listing versions failed"))
                } else if missing {
                    Ok(Vec::new())
                } else {
                    let dialect = self.dialect.get().unwrap_or(Dialect::ZfsFuse);
                    zfsops::parse_versions(dialect, out)
                        .map(|mut by_fs| by_fs.remove(&target).unwrap_or_default())
                        .map_err(|e| RemoteError::new(RemoteErrorKind::Failed, e))
                };
                let _ =
                    s.respond::<ListVersions>(now, answer.as_ref().map_err(Clone::clone), false);
            }
            Pending::Receive(_) | Pending::Destroy(_) => {}
        }
    }
}

impl Job for SinkJob {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn kind(&self) -> &'static str {
        "sink"
    }

    fn serves_in_process(&self) -> bool {
        matches!(self.spec.serve, Endpoint::Local(_))
    }

    fn start(&mut self, ctx: &mut JobCtx<'_, '_>) {
        self.dialect.start(ctx);
        ctx.listen(self.spec.serve.clone());
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
            ev @ (SessionEvent::StreamData(_)
            | SessionEvent::StreamEnd
            | SessionEvent::StreamAborted(_)) => {
                if let Some(Client { pending: Some(Pending::Receive(task)), .. }) =
                    self.clients.get_mut(&conn)
                {
                    task.on_stream_event(ctx, &ev);
                }
            }
            _ => {}
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut JobCtx<'_, '_>, conn: ConnId, error: Option<String>) {
        if let Some(mut c) = self.clients.remove(&conn) {
            // A pending `zfs destroy` is short and killing one can leave
            // zfs-fuse wedged: it finishes unobserved.
            if let Some(Pending::Receive(task)) = &mut c.pending {
                task.abort(ctx, error.as_deref().unwrap_or("the client went away"));
            }
            if let Some(e) = error {
                ctx.log(Level::Warn, format!("job {}: client {}: {e}", self.spec.name, c.identity));
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
        let Some(conn) = self.clients.iter().find_map(|(conn, c)| match &c.pending {
            Some(
                Pending::ListFilesystems { proc: p, .. } | Pending::ListVersions { proc: p, .. },
            ) if *p == proc => Some(*conn),
            Some(Pending::Receive(task)) if task.owns(proc) => Some(*conn),
            Some(Pending::Destroy(task)) if task.owns(proc) => Some(*conn),
            _ => None,
        }) else {
            return;
        };
        let Some(client) = self.clients.get_mut(&conn) else { return };
        match client.pending.take() {
            Some(Pending::Receive(mut task)) => {
                task.on_process_done(ctx, result);
                match task.result().cloned() {
                    None => client.pending = Some(Pending::Receive(task)),
                    Some(outcome) => {
                        let now = ctx.now().mono;
                        let identity = client.identity.clone();
                        if let Ok(bytes) = &outcome {
                            self.received += bytes;
                        }
                        if let Err(e) = &outcome {
                            ctx.log(
                                Level::Error,
                                format!(
                                    "job {}: receive from {identity} failed: {e}",
                                    self.spec.name
                                ),
                            );
                        }
                        let answer = outcome
                            .map(|_| ())
                            .map_err(|e| RemoteError::new(RemoteErrorKind::Failed, e));
                        if let Some(s) = ctx.session(conn) {
                            let _ = s.respond::<Receive>(
                                now,
                                answer.as_ref().map_err(Clone::clone),
                                false,
                            );
                        }
                    }
                }
            }
            Some(Pending::Destroy(mut task)) => {
                task.on_process_done(ctx, result);
                match task.result().cloned() {
                    None => client.pending = Some(Pending::Destroy(task)),
                    Some(outcome) => {
                        let now = ctx.now().mono;
                        let answer = outcome.map_err(failed);
                        if let Some(s) = ctx.session(conn) {
                            let answer = answer.as_ref().map_err(Clone::clone);
                            let _ = s.respond::<DestroySnapshots>(now, answer, false);
                        }
                    }
                }
            }
            Some(listing) => self.finish_listing(ctx, conn, listing, result),
            None => {}
        }
    }

    fn wakeup(&mut self, _ctx: &mut JobCtx<'_, '_>) -> Result<(), String> {
        Err(format!("job {} is a sink: it only answers its clients", self.spec.name))
    }

    fn shutdown(&mut self, ctx: &mut JobCtx<'_, '_>) {
        for (conn, c) in self.clients.iter_mut() {
            if let Some(Pending::Receive(task)) = &mut c.pending {
                task.abort(ctx, "the sink is shutting down");
            }
            ctx.close(*conn, "the sink is shutting down");
        }
    }

    fn is_idle(&self) -> bool {
        self.clients.values().all(|c| c.pending.is_none()) && !self.dialect.running()
    }

    fn status(&self) -> JobStatus {
        let busy = self.clients.values().filter(|c| c.pending.is_some()).count();
        JobStatus {
            name: self.spec.name.clone(),
            kind: "sink".to_owned(),
            state: format!(
                "{} client(s) connected, {busy} busy, {} bytes received",
                self.clients.len(),
                self.received
            ),
            next_run: None,
            progress: None,
            last_run: None,
            next_snapshot: None,
            last_prune: None,
        }
    }
}
