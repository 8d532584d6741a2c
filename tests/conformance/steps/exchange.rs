//! A client and a server in the one node, over a real socket: handshake, calls,
//! and streams from the app or from processes, ended, aborted or cancelled.

use bytes::Bytes;
use zferry_core::node::{
    AppCtx, ConnId, Endpoint, ListenerId, ProcId, ProcessSpec, StdinFrom, StdoutTo,
};
use zferry_core::probe::StreamDigest;
use zferry_core::rpc::{RemoteError, RemoteErrorKind, SessionEvent};

use super::{command, sh};
use crate::calls::{Echo, Unknown, Upload};
use crate::script::{Ev, Step};
use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tcp,
    Unix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two calls without a stream: one the server answers, one it does not know.
    Echo,
    /// The client app streams a pattern through the credit window to the server app.
    AppStream,
    /// A process's stdout streamed into the stdin of a process slow to start.
    Pipe,
    /// The server answers before the stream ends: the endless producer is killed.
    EarlyAnswer,
    /// The producer fails midway: the stream is aborted and its consumer killed.
    Abort,
    /// The server cancels the stream it receives.
    Cancel,
}

/// The app's stream goes in pieces of this size: one frame each, since the node
/// is configured with it as its largest data payload (see main.rs), so that the
/// server sees the same pieces in every run.
pub const PIECE: usize = 16 * 1024;
const APP_STREAM_BYTES: u64 = 3 * 1024 * 1024 + 123;
const ENDLESS: u64 = 64 * 1024 * 1024;
const CANCEL_AFTER: u64 = 1024 * 1024;
const PATTERN_LEN: usize = 1024 * 1024;

#[derive(Debug)]
pub struct Exchange {
    name: &'static str,
    via: Via,
    kind: Kind,
    client: Option<ConnId>,
    server: Option<ConnId>,
    /// Connections not yet closed.
    open: usize,
    /// Processes not yet done.
    running: usize,
    producer: Option<ProcId>,
    responses: usize,
    closing: bool,
    pattern: Bytes,
    to_send: u64,
    sent: u64,
    sent_digest: StreamDigest,
    received: u64,
    received_digest: StreamDigest,
    cancelled: bool,
}

impl Exchange {
    pub fn new(name: &'static str, via: Via, kind: Kind) -> Exchange {
        Exchange {
            name,
            via,
            kind,
            client: None,
            server: None,
            open: 0,
            running: 0,
            producer: None,
            responses: 0,
            closing: false,
            pattern: Bytes::new(),
            to_send: 0,
            sent: 0,
            sent_digest: StreamDigest::default(),
            received: 0,
            received_digest: StreamDigest::default(),
            cancelled: false,
        }
    }

    fn client_event(
        &mut self,
        w: &mut World,
        ctx: &mut AppCtx<'_>,
        conn: ConnId,
        ev: &SessionEvent,
    ) {
        let now = ctx.now().mono;
        match ev {
            SessionEvent::Established { .. } => {
                let Some(s) = ctx.session(conn) else { return };
                let sent = match self.kind {
                    Kind::Echo => s.request::<Echo>(now, &"ping".to_owned(), false),
                    _ => s.request::<Upload>(now, &self.name.to_owned(), true),
                };
                if let Err(e) = sent {
                    w.note(conn.0, format!("request refused: {e}"));
                }
                match self.kind {
                    Kind::Echo => {}
                    Kind::AppStream => self.stream_from_app(APP_STREAM_BYTES),
                    Kind::Cancel => self.stream_from_app(ENDLESS),
                    Kind::Pipe => {
                        let spec = sh("yes zferry-conformance | head -c 3000000");
                        self.produce(w, ctx, conn, spec, true);
                    }
                    Kind::EarlyAnswer => {
                        let spec = command(&["yes", "zferry-conformance"]);
                        self.produce(w, ctx, conn, spec, false);
                    }
                    Kind::Abort => {
                        let spec = sh("head -c 100000 /dev/zero; echo broken >&2; exit 5");
                        self.produce(w, ctx, conn, spec, false);
                    }
                }
            }
            SessionEvent::Response(r) => {
                self.responses += 1;
                if self.kind == Kind::Echo && self.responses == 1 {
                    let Some(s) = ctx.session(conn) else { return };
                    if let Err(e) = s.request::<Unknown>(now, &"anyone?".to_owned(), false) {
                        w.note(conn.0, format!("request refused: {e}"));
                    }
                }
                if self.kind == Kind::AppStream {
                    let same = r.decode::<Upload>().ok() == Some(summary(&self.sent_digest));
                    w.note(conn.0, format!("the server saw what was sent: {same}"));
                }
            }
            SessionEvent::StreamCancelled(_) => self.to_send = self.sent,
            _ => {}
        }
    }

    fn server_event(
        &mut self,
        w: &mut World,
        ctx: &mut AppCtx<'_>,
        conn: ConnId,
        ev: &SessionEvent,
    ) {
        let now = ctx.now().mono;
        match ev {
            SessionEvent::Request(r) if r.is::<Echo>() => {
                let text = r.decode::<Echo>().unwrap_or_default();
                self.respond(w, ctx, conn, Ok(format!("echo: {text}")));
            }
            SessionEvent::Request(r) if r.is::<Upload>() => {
                let (spec, counted) = match self.kind {
                    Kind::Pipe => (sh("sleep 0.2; exec cat"), true),
                    Kind::EarlyAnswer => (command(&["head", "-c", "1000"]), false),
                    Kind::Abort => (command(&["wc", "-c"]), false),
                    Kind::Echo | Kind::AppStream | Kind::Cancel => return,
                };
                let proc = ctx.spawn(spec, StdoutTo::Collect, StdinFrom::Stream(conn));
                self.started(w, proc, "consumer", counted);
            }
            SessionEvent::Request(r) => {
                let error = RemoteError::new(RemoteErrorKind::UnknownMethod, r.method.clone());
                self.respond(w, ctx, conn, Err(error));
            }
            SessionEvent::StreamData(data) if !self.cancelled => {
                self.received += data.len() as u64;
                self.received_digest.update(data);
                let Some(s) = ctx.session(conn) else { return };
                s.stream_consumed(data.len());
                if self.kind == Kind::Cancel && self.received >= CANCEL_AFTER {
                    self.cancelled = true;
                    if let Err(e) = s.cancel_inbound(now, "enough") {
                        w.note(conn.0, format!("cancel refused: {e}"));
                    }
                    w.note(conn.0, format!("cancelled after {} bytes", self.received));
                }
            }
            SessionEvent::StreamEnd if self.kind == Kind::AppStream => {
                self.respond(w, ctx, conn, Ok(summary(&self.received_digest)));
            }
            SessionEvent::StreamAborted(_) if self.kind == Kind::Abort => {
                let error = RemoteError::new(RemoteErrorKind::Failed, "the stream was aborted");
                self.respond(w, ctx, conn, Err(error));
            }
            SessionEvent::StreamAborted(_) if self.kind == Kind::Cancel => {
                let text = format!("cancelled after {} bytes", self.received);
                self.respond(w, ctx, conn, Ok(text));
            }
            _ => {}
        }
    }

    fn consumer_done(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, stdout: &[u8]) {
        let Some(server) = self.server else { return };
        match self.kind {
            Kind::Pipe => {
                let mut d = StreamDigest::default();
                d.update(stdout);
                self.respond(w, ctx, server, Ok(summary(&d)));
            }
            Kind::EarlyAnswer => {
                self.respond(w, ctx, server, Ok(format!("took {} bytes", stdout.len())));
            }
            _ => {}
        }
    }

    /// Answers the request being handled. Every call of the script answers with a
    /// string, and the client labels a response with its request's method.
    fn respond(
        &mut self,
        w: &mut World,
        ctx: &mut AppCtx<'_>,
        conn: ConnId,
        answer: Result<String, RemoteError>,
    ) {
        let now = ctx.now().mono;
        let Some(s) = ctx.session(conn) else { return };
        let sent = match answer {
            Ok(text) => s.respond::<Upload>(now, Ok(&text), false),
            Err(e) => s.respond_error(now, e),
        };
        if let Err(e) = sent {
            w.note(conn.0, format!("response refused: {e}"));
        }
    }

    fn stream_from_app(&mut self, bytes: u64) {
        self.to_send = bytes;
        self.pattern = pattern();
    }

    fn produce(
        &mut self,
        w: &mut World,
        ctx: &mut AppCtx<'_>,
        conn: ConnId,
        spec: ProcessSpec,
        counted: bool,
    ) {
        let proc = ctx.spawn(spec, StdoutTo::Stream(conn), StdinFrom::Null);
        self.producer = Some(proc);
        self.started(w, proc, "producer", counted);
    }

    fn started(&mut self, w: &mut World, proc: ProcId, name: &str, counted: bool) {
        self.running += 1;
        if counted {
            w.name_counted(proc.0, name);
        } else {
            w.name(proc.0, name);
        }
    }

    /// Sends whole pieces of the app's stream while the credit allows.
    fn send(&mut self, ctx: &mut AppCtx<'_>) {
        let Some(conn) = self.client else { return };
        if self.sent >= self.to_send {
            return;
        }
        let now = ctx.now().mono;
        let Some(s) = ctx.session(conn) else { return };
        if !s.has_outbound_stream() {
            return;
        }
        while self.sent < self.to_send {
            let len = PIECE.min((self.to_send - self.sent) as usize);
            if s.stream_send_capacity() < len {
                return;
            }
            let at = (self.sent % PATTERN_LEN as u64) as usize;
            let piece = self.pattern.slice(at..at + len);
            if s.send_stream_data(now, piece.clone()).is_err() {
                return;
            }
            self.sent_digest.update(&piece);
            self.sent += len as u64;
        }
        let _ = s.end_stream(now);
    }

    /// The client closes once it has its answers and its producer is done.
    fn maybe_close(&mut self, ctx: &mut AppCtx<'_>) {
        let answers = if self.kind == Kind::Echo { 2 } else { 1 };
        if self.closing || self.responses < answers || self.producer.is_some() {
            return;
        }
        if let Some(client) = self.client {
            self.closing = true;
            ctx.close(client, "done");
        }
    }
}

impl Exchange {
    fn listener(&self, w: &World) -> Option<ListenerId> {
        match self.via {
            Via::Tcp => w.tcp,
            Via::Unix => w.unix,
        }
    }
}

impl Step for Exchange {
    fn name(&self) -> &'static str {
        self.name
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let endpoint = match self.via {
            Via::Tcp => Endpoint::Tcp(w.tcp_addr.clone()),
            Via::Unix => Endpoint::Unix(w.unix_path.clone()),
        };
        let client = ctx.connect(endpoint);
        w.name(client.0, "client");
        self.client = Some(client);
        self.open = 1;
    }

    fn on(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Accepted(l, conn, _) if self.server.is_none() && Some(*l) == self.listener(w) => {
                self.server = Some(*conn);
                self.open += 1;
                if self.kind == Kind::Cancel {
                    // Pieces already decoded when it cancels still arrive.
                    w.name_data_varies(conn.0, "server");
                } else {
                    w.name(conn.0, "server");
                }
            }
            Ev::Session(conn, event) if Some(*conn) == self.client => {
                self.client_event(w, ctx, *conn, event)
            }
            Ev::Session(conn, event) if Some(*conn) == self.server => {
                self.server_event(w, ctx, *conn, event)
            }
            Ev::Closed(conn, _) if [self.client, self.server].contains(&Some(*conn)) => {
                self.open -= 1;
            }
            Ev::ProcessDone(proc, result) => {
                self.running = self.running.saturating_sub(1);
                if Some(*proc) == self.producer {
                    self.producer = None;
                } else {
                    self.consumer_done(w, ctx, &result.stdout);
                }
            }
            Ev::Poll => self.send(ctx),
            _ => {}
        }
        self.maybe_close(ctx);
    }

    fn done(&self) -> bool {
        self.open == 0 && self.running == 0
    }
}

fn summary(d: &StreamDigest) -> String {
    let s = d.finish();
    format!("{} bytes, digest {:016x}", s.bytes, s.digest)
}

/// Bytes that differ with their position, so that a lost or reordered piece
/// changes the digest.
fn pattern() -> Bytes {
    (0..PATTERN_LEN as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}
