//! The transport probe: a client streams a known byte pattern to a server, which
//! answers with the byte count and digest it saw.
//!
//! It checks a link end to end through the same frames, sessions and credit that
//! replication uses, and measures its throughput, without touching ZFS.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::node::{
    App, AppCtx, ConnId, Endpoint, Level, ListenerId, ProcId, ProcessResult, ProcessSpec,
    StdinFrom, StdoutTo,
};
use crate::rpc::{Method, RemoteError, RemoteErrorKind, SessionEvent};
use crate::time::Instant;

/// The probe call: a request with a stream of `bytes` bytes.
#[derive(Debug)]
pub struct ProbeCall;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSummary {
    pub bytes: u64,
    pub digest: u64,
}

impl Method for ProbeCall {
    const NAME: &'static str = "zferry.probe";
    type Request = ProbeRequest;
    type Response = ProbeSummary;
}

/// An order-sensitive digest of a byte stream, independent of how it is split.
/// Not cryptographic: it catches lost, reordered or corrupted bytes in transit.
#[derive(Debug, Clone, Default)]
pub struct StreamDigest {
    state: u64,
    len: u64,
    /// Bytes of an incomplete 8-byte word, carried to the next update.
    carry: [u8; 8],
    carried: usize,
}

const DIGEST_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

impl StreamDigest {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.carried > 0 {
            let take = (8 - self.carried).min(data.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&data[..take]);
            self.carried += take;
            data = &data[take..];
            if self.carried < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.carry));
            self.carried = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(w);
            self.mix(u64::from_le_bytes(raw));
        }
        let rest = words.remainder();
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
    }

    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(DIGEST_MUL).rotate_left(29);
    }

    pub fn finish(&self) -> ProbeSummary {
        let mut tail = [0u8; 8];
        tail[..self.carried].copy_from_slice(&self.carry[..self.carried]);
        let state = (self.state ^ u64::from_le_bytes(tail) ^ self.len).wrapping_mul(DIGEST_MUL);
        ProbeSummary { bytes: self.len, digest: state }
    }
}

/// The pattern the client sends: a block of pseudo-random bytes, repeated.
fn pattern_block(len: usize) -> Bytes {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

const BLOCK_LEN: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeMode {
    /// Answer probes until shut down, or after the first one with `once`. With a
    /// command, each probe's stream is piped into a new run of it instead.
    Serve { endpoint: Endpoint, once: bool, command: Option<Vec<String>> },
    /// Send `bytes` to the server at `endpoint` and check its answer. With a
    /// command, its output is sent instead and only the byte count is checked.
    Send { endpoint: Endpoint, bytes: u64, command: Option<Vec<String>> },
}

fn command_spec(argv: &[String]) -> ProcessSpec {
    ProcessSpec { argv: argv.to_vec(), env: Vec::new(), stdin: false, stdout: false }
}

/// Outcome of a probe run, kept for the driver's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Verified { bytes: u64, nanos: u64 },
    Failed(String),
}

#[derive(Debug)]
pub struct Probe {
    mode: ProbeMode,
    /// Server: digest of each connection's stream in progress.
    receiving: BTreeMap<ConnId, StreamDigest>,
    /// Server: connections not yet closed; `once` exits when none is left.
    open_conns: usize,
    /// Client state.
    conn: Option<ConnId>,
    block: Bytes,
    sent: u64,
    sent_digest: StreamDigest,
    started: Option<Instant>,
    outcome: Option<ProbeOutcome>,
    served: u64,
    shutting_down: bool,
    /// Server: the command consuming each connection's stream.
    consumers: BTreeMap<ProcId, ConnId>,
    /// Client: how the command producing our stream ended.
    produced: Option<ProcessResult>,
}

impl Probe {
    pub fn new(mode: ProbeMode) -> Probe {
        Probe {
            mode,
            receiving: BTreeMap::new(),
            open_conns: 0,
            conn: None,
            block: Bytes::new(),
            sent: 0,
            sent_digest: StreamDigest::default(),
            started: None,
            outcome: None,
            served: 0,
            shutting_down: false,
            consumers: BTreeMap::new(),
            produced: None,
        }
    }

    pub fn outcome(&self) -> Option<&ProbeOutcome> {
        self.outcome.as_ref()
    }

    fn fail(&mut self, ctx: &mut AppCtx<'_>, why: String) {
        if self.outcome.is_none() {
            ctx.log(Level::Error, format!("probe failed: {why}"));
            self.outcome = Some(ProbeOutcome::Failed(why));
        }
    }

    fn total(&self) -> u64 {
        match self.mode {
            ProbeMode::Send { bytes, .. } => bytes,
            ProbeMode::Serve { .. } => 0,
        }
    }

    fn serve_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        match event {
            SessionEvent::Request(req) => {
                let Some(session) = ctx.session(conn) else { return };
                if !req.is::<ProbeCall>() {
                    let err = RemoteError::new(RemoteErrorKind::UnknownMethod, req.method.clone());
                    let _ = session.respond_error(now, err);
                    return;
                }
                match req.decode::<ProbeCall>() {
                    Ok(_) if req.stream => {
                        if let ProbeMode::Serve { command: Some(argv), .. } = &self.mode {
                            let spec = command_spec(argv);
                            let proc = ctx.spawn(spec, StdoutTo::Null, StdinFrom::Stream(conn));
                            self.consumers.insert(proc, conn);
                        } else {
                            self.receiving.insert(conn, StreamDigest::default());
                        }
                    }
                    Ok(_) => {
                        let err = RemoteError::new(
                            RemoteErrorKind::BadRequest,
                            "a probe carries a stream",
                        );
                        let _ = session.respond_error(now, err);
                    }
                    Err(e) => {
                        let _ = session.respond_error(now, e);
                    }
                }
            }
            SessionEvent::StreamData(data) => {
                if let Some(d) = self.receiving.get_mut(&conn) {
                    d.update(&data);
                }
                if let Some(s) = ctx.session(conn) {
                    s.stream_consumed(data.len());
                }
            }
            SessionEvent::StreamEnd => {
                let Some(d) = self.receiving.remove(&conn) else { return };
                let summary = d.finish();
                if let Some(s) = ctx.session(conn) {
                    let _ = s.respond::<ProbeCall>(now, Ok(&summary), false);
                }
                self.served += 1;
                ctx.log(Level::Info, format!("probe received {} bytes", summary.bytes));
            }
            SessionEvent::StreamAborted(reason) => {
                ctx.log(Level::Warn, format!("probe stream aborted by the client: {reason}"));
                self.receiving.remove(&conn);
                if let Some(s) = ctx.session(conn) {
                    let err = RemoteError::new(
                        RemoteErrorKind::Failed,
                        format!("stream aborted: {reason}"),
                    );
                    let _ = s.respond_error(now, err);
                }
            }
            _ => {}
        }
    }

    fn send_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        match event {
            SessionEvent::Established { peer_software } => {
                ctx.log(Level::Info, format!("connected to {peer_software}"));
                let bytes = self.total();
                let Some(s) = ctx.session(conn) else { return };
                if let Err(e) = s.request::<ProbeCall>(now, &ProbeRequest { bytes }, true) {
                    self.fail(ctx, e.to_string());
                    return;
                }
                self.started = Some(now);
                if let ProbeMode::Send { command: Some(argv), .. } = &self.mode {
                    ctx.spawn(command_spec(argv), StdoutTo::Stream(conn), StdinFrom::Null);
                } else {
                    self.block = pattern_block(BLOCK_LEN);
                }
            }
            SessionEvent::Response(resp) => {
                let expected = match &self.produced {
                    // Bytes through commands cannot be digested here: count them.
                    Some(p) => ProbeSummary { bytes: p.bytes, digest: 0 },
                    None => self.sent_digest.finish(),
                };
                let outcome = match resp.decode::<ProbeCall>() {
                    Ok(got) if got == expected => {
                        let nanos =
                            self.started.map_or(0, |s| now.saturating_since(s).as_nanos() as u64);
                        ctx.log(
                            Level::Info,
                            format!(
                                "probe verified: {} bytes in {:.3} s",
                                got.bytes,
                                nanos as f64 / 1e9
                            ),
                        );
                        ProbeOutcome::Verified { bytes: got.bytes, nanos }
                    }
                    Ok(got) => ProbeOutcome::Failed(format!(
                        "server saw {} bytes with digest {:016x}, we sent {} with {:016x}",
                        got.bytes, got.digest, expected.bytes, expected.digest
                    )),
                    Err(e) => ProbeOutcome::Failed(e.to_string()),
                };
                if let ProbeOutcome::Failed(why) = &outcome {
                    ctx.log(Level::Error, format!("probe failed: {why}"));
                }
                self.outcome.get_or_insert(outcome);
                ctx.close(conn, "probe done");
            }
            SessionEvent::StreamCancelled(reason) => {
                self.fail(ctx, format!("server cancelled: {reason}"))
            }
            _ => {}
        }
    }
}

impl App for Probe {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        match self.mode.clone() {
            ProbeMode::Serve { endpoint, .. } => {
                ctx.listen(endpoint);
            }
            ProbeMode::Send { endpoint, .. } => {
                self.conn = Some(ctx.connect(endpoint));
            }
        }
    }

    fn on_accept(
        &mut self,
        _ctx: &mut AppCtx<'_>,
        _listener: ListenerId,
        _conn: ConnId,
        _peer: &str,
    ) {
        self.open_conns += 1;
    }

    fn on_listening(&mut self, ctx: &mut AppCtx<'_>, _listener: ListenerId, local: &str) {
        ctx.log(Level::Info, format!("probe server listening on {local}"));
    }

    fn on_listen_failed(&mut self, ctx: &mut AppCtx<'_>, _listener: ListenerId, error: &str) {
        self.fail(ctx, error.to_owned());
    }

    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        match self.mode {
            ProbeMode::Serve { .. } => self.serve_event(ctx, conn, event),
            ProbeMode::Send { .. } => self.send_event(ctx, conn, event),
        }
    }

    fn on_conn_closed(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, error: Option<String>) {
        self.receiving.remove(&conn);
        if matches!(self.mode, ProbeMode::Serve { .. }) {
            self.open_conns = self.open_conns.saturating_sub(1);
        }
        if self.conn == Some(conn) {
            self.conn = None;
            if self.outcome.is_none() {
                let why = error.unwrap_or_else(|| "server closed the connection".to_owned());
                self.fail(ctx, why);
            }
        }
    }

    fn on_process_done(&mut self, ctx: &mut AppCtx<'_>, proc: ProcId, result: ProcessResult) {
        let now = ctx.now().mono;
        if let Some(conn) = self.consumers.remove(&proc) {
            let Some(s) = ctx.session(conn) else { return };
            if result.status.success() {
                let _ = s.respond::<ProbeCall>(
                    now,
                    Ok(&ProbeSummary { bytes: result.bytes, digest: 0 }),
                    false,
                );
                self.served += 1;
                ctx.log(
                    Level::Info,
                    format!("probe piped {} bytes into the command", result.bytes),
                );
            } else {
                let why = format!("the command failed ({}): {}", result.status, result.stderr);
                let _ =
                    s.respond_error(now, RemoteError::new(RemoteErrorKind::Failed, why.clone()));
                ctx.log(Level::Error, format!("probe: {why}"));
            }
            return;
        }
        if !result.status.success() {
            self.fail(ctx, format!("the command failed ({}): {}", result.status, result.stderr));
        }
        self.produced = Some(result);
    }

    fn poll(&mut self, ctx: &mut AppCtx<'_>) {
        let (Some(conn), None) = (self.conn, &self.outcome) else { return };
        if self.started.is_none() || matches!(self.mode, ProbeMode::Send { command: Some(_), .. }) {
            return;
        }
        let total = self.total();
        let now = ctx.now().mono;
        let Some(s) = ctx.session(conn) else { return };
        if !s.has_outbound_stream() {
            return;
        }
        while self.sent < total {
            let cap = s.stream_send_capacity();
            if cap == 0 {
                return;
            }
            let offset = (self.sent % BLOCK_LEN as u64) as usize;
            let len = (BLOCK_LEN - offset).min(cap).min((total - self.sent) as usize);
            let chunk = self.block.slice(offset..offset + len);
            self.sent_digest.update(&chunk);
            if s.send_stream_data(now, chunk).is_err() {
                return;
            }
            self.sent += len as u64;
        }
        let _ = s.end_stream(now);
    }

    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>) {
        self.shutting_down = true;
        for conn in ctx.conn_ids() {
            ctx.close(conn, "shutting down");
        }
        if matches!(self.mode, ProbeMode::Send { .. }) {
            self.fail(ctx, "interrupted".to_owned());
        }
    }

    fn exit_code(&self) -> Option<i32> {
        match (&self.mode, &self.outcome) {
            (_, Some(ProbeOutcome::Failed(_))) => Some(1),
            (ProbeMode::Send { .. }, Some(ProbeOutcome::Verified { .. }))
                if self.conn.is_none() =>
            {
                Some(0)
            }
            (ProbeMode::Serve { once: true, .. }, _)
                if self.served > 0 && self.receiving.is_empty() =>
            {
                Some(0)
            }
            (ProbeMode::Serve { .. }, _) if self.shutting_down => Some(0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn digest_ignores_splits(data in proptest::collection::vec(any::<u8>(), 0..200), cuts in proptest::collection::vec(0usize..200, 0..6)) {
            let mut whole = StreamDigest::default();
            whole.update(&data);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut parts = StreamDigest::default();
            for w in cuts.windows(2) {
                parts.update(&data[w[0]..w[1]]);
            }
            prop_assert_eq!(whole.finish(), parts.finish());
        }
    }

    #[test]
    fn digest_sees_changes() {
        let mut a = StreamDigest::default();
        a.update(b"hello world, hello");
        let mut b = StreamDigest::default();
        b.update(b"hello world, hellp");
        let mut c = StreamDigest::default();
        c.update(b"hello world, hello\0");
        assert_ne!(a.finish(), b.finish());
        assert_ne!(a.finish(), c.finish(), "a trailing zero byte counts");
    }
}
