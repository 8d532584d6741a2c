//! The daemon's control socket: `zferry status` and `zferry signal` talk to a
//! running daemon over a unix socket with the same sessions as replication.

use serde::{Deserialize, Serialize};

use crate::node::{App, AppCtx, ConnId, Endpoint, Level, ListenerId};
use crate::rpc::{Method, SessionEvent};

/// What the daemon reports about itself.
#[derive(Debug)]
pub struct Status;

impl Method for Status {
    const NAME: &'static str = "zferry.control.Status";
    type Request = ();
    type Response = DaemonStatus;
}

/// Asks a job to start a cycle now.
#[derive(Debug)]
pub struct Wakeup;

impl Method for Wakeup {
    const NAME: &'static str = "zferry.control.Wakeup";
    /// The job's name.
    type Request = String;
    type Response = ();
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub jobs: Vec<JobStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    /// push, sink, pull, source or snap.
    pub kind: String,
    /// What the job is doing now, in words: "idle", "replicating", ...
    pub state: String,
    /// Wall-clock seconds of the next scheduled cycle, if any.
    pub next_run: Option<i64>,
    /// The transfer in progress, if any.
    pub progress: Option<Progress>,
    /// How the last cycle ended, if one ran.
    pub last_run: Option<RunSummary>,
    /// Wall-clock seconds of the next scheduled snapshot, if the job takes any.
    pub next_snapshot: Option<i64>,
    /// What the last pruning destroyed, if the job prunes.
    pub last_prune: Option<PruneSummary>,
}

/// The outcome of one pruning pass over a job's filesystems.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PruneSummary {
    /// Wall-clock seconds when it ended.
    pub finished: i64,
    /// Snapshots destroyed on the sending side.
    pub sender_destroyed: u32,
    pub receiver_destroyed: u32,
    /// Filesystems whose pruning failed (or was skipped for safety).
    pub failed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub filesystem: String,
    pub step: u32,
    pub steps: u32,
    pub bytes: u64,
    /// Bytes per second over the last few seconds.
    pub rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Wall-clock seconds.
    pub started: i64,
    pub finished: i64,
    /// One line per filesystem: "pool/a: ok, 3 steps", "pool/b: failed: ...".
    pub filesystems: Vec<String>,
    pub failed: u32,
}

/// What the control client does once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    Status { json: bool },
    Wakeup(String),
}

impl DaemonStatus {
    /// The machine-readable form of `zferry status --json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The human-readable form `zferry status` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for job in &self.jobs {
            out.push_str(&format!("{} ({}): {}\n", job.name, job.kind, job.state));
            if let Some(p) = &job.progress {
                out.push_str(&format!(
                    "  {} step {}/{}: {} bytes at {} bytes/s\n",
                    p.filesystem, p.step, p.steps, p.bytes, p.rate
                ));
            }
            if let Some(next) = job.next_run {
                out.push_str(&format!("  next run at {next} (unix time)\n"));
            }
            if let Some(next) = job.next_snapshot {
                out.push_str(&format!("  next snapshot at {next} (unix time)\n"));
            }
            if let Some(p) = &job.last_prune {
                out.push_str(&format!(
                    "  last prune at {}: destroyed {} on the sender, {} on the receiver, {} failed\n",
                    p.finished, p.sender_destroyed, p.receiver_destroyed, p.failed
                ));
            }
            if let Some(last) = &job.last_run {
                out.push_str(&format!(
                    "  last run {}..{}: {} filesystem(s), {} failed\n",
                    last.started,
                    last.finished,
                    last.filesystems.len(),
                    last.failed
                ));
                for line in &last.filesystems {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
        if self.jobs.is_empty() {
            out.push_str("no jobs\n");
        }
        out.trim_end().to_owned()
    }
}

/// The `zferry status` / `zferry signal` side: one request, then exit.
#[derive(Debug)]
pub struct ControlClient {
    socket: String,
    request: ControlRequest,
    conn: Option<ConnId>,
    answer: Option<Result<Option<DaemonStatus>, String>>,
}

impl ControlClient {
    pub fn new(socket: String, request: ControlRequest) -> ControlClient {
        ControlClient { socket, request, conn: None, answer: None }
    }

    /// The daemon's answer: its status for `Status`, `None` for `Wakeup`.
    pub fn answer(&self) -> Option<&Result<Option<DaemonStatus>, String>> {
        self.answer.as_ref()
    }
}

impl App for ControlClient {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        self.conn = Some(ctx.connect(Endpoint::Unix(self.socket.clone())));
    }

    fn on_listen_failed(&mut self, _ctx: &mut AppCtx<'_>, _listener: ListenerId, _error: &str) {}

    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        match event {
            SessionEvent::Established { .. } => {
                let Some(s) = ctx.session(conn) else { return };
                let sent = match &self.request {
                    ControlRequest::Status { .. } => s.request::<Status>(now, &(), false),
                    ControlRequest::Wakeup(job) => s.request::<Wakeup>(now, job, false),
                };
                if let Err(e) = sent {
                    self.answer = Some(Err(e.to_string()));
                    ctx.close(conn, "done");
                }
            }
            SessionEvent::Response(r) => {
                let answer = match &self.request {
                    ControlRequest::Status { json } => r.decode::<Status>().map(|status| {
                        ctx.print(if *json { status.to_json() } else { status.render() });
                        Some(status)
                    }),
                    ControlRequest::Wakeup(job) => r.decode::<Wakeup>().map(|()| {
                        ctx.print(format!("woke up job {job}"));
                        None
                    }),
                };
                if let Err(e) = &answer {
                    ctx.log(Level::Error, e.to_string());
                }
                self.answer = Some(answer.map_err(|e| e.to_string()));
                ctx.close(conn, "done");
            }
            _ => {}
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut AppCtx<'_>, _conn: ConnId, error: Option<String>) {
        self.conn = None;
        if self.answer.is_none() {
            let why = error.unwrap_or_else(|| "the daemon closed the connection".to_owned());
            ctx.log(Level::Error, why.clone());
            self.answer = Some(Err(why));
        }
    }

    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>) {
        self.answer.get_or_insert(Err("interrupted".to_owned()));
        if let Some(conn) = self.conn {
            ctx.close(conn, "interrupted");
        }
    }

    fn exit_code(&self) -> Option<i32> {
        match (&self.answer, self.conn) {
            (Some(Ok(_)), None) => Some(0),
            (Some(Err(_)), None) => Some(1),
            _ => None,
        }
    }
}
