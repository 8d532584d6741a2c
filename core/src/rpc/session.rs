//! The session state machine shared by client and server.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{BufMut, Bytes};

use super::wire::{
    decode_exact, decode_handshake, encode_handshake, hex_prefix, Hello, RequestHeader,
    ResponseHeader, FLAG_CANCEL, FLAG_ERROR,
};
use super::{CallError, Method, RemoteError, RemoteErrorKind, Role, SessionError};
use crate::frame::{Decoder, Frame, FrameLimits, FrameType, OutQueue};
use crate::limits;
use crate::time::Instant;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub handshake_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    /// Bound on a request without streams, from sending it to its whole response.
    pub request_timeout: Duration,
    pub close_timeout: Duration,
    /// Largest data payload we accept; announced to the peer.
    pub max_data_payload: usize,
    /// Credit window we grant for streams we receive; announced to the peer.
    pub stream_window: usize,
    pub software: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            handshake_timeout: limits::DEFAULT_HANDSHAKE_TIMEOUT,
            heartbeat_interval: limits::DEFAULT_HEARTBEAT_INTERVAL,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            request_timeout: limits::DEFAULT_REQUEST_TIMEOUT,
            close_timeout: limits::DEFAULT_CLOSE_TIMEOUT,
            max_data_payload: limits::DEFAULT_DATA_PAYLOAD,
            stream_window: limits::DEFAULT_STREAM_WINDOW,
            software: concat!("zferry ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What a session reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Handshake done; requests may flow.
    Established { peer_software: String },
    /// Server side: a request arrived. Answer it with [`Session::respond`].
    Request(IncomingRequest),
    /// Client side: the response to the request in flight.
    Response(IncomingResponse),
    /// Bytes of the stream we receive. Report them with [`Session::stream_consumed`]
    /// once they are written onward, or the peer runs out of credit.
    StreamData(Bytes),
    /// The stream we receive ended completely.
    StreamEnd,
    /// The stream we receive was aborted by its sender, with the reason.
    StreamAborted(String),
    /// The peer cancelled the stream we were sending; it is closed on our side.
    StreamCancelled(String),
    /// The session is over: `None` after a graceful close, else why it failed.
    Closed(Option<SessionError>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    pub method: String,
    pub body: Bytes,
    /// A byte stream follows; its data arrives as [`SessionEvent::StreamData`].
    pub stream: bool,
}

impl IncomingRequest {
    pub fn is<M: Method>(&self) -> bool {
        self.method == M::NAME
    }

    /// The typed request, or the error to send back to the client.
    pub fn decode<M: Method>(&self) -> Result<M::Request, RemoteError> {
        decode_exact(&self.body, "request body")
            .map_err(|e| RemoteError::new(RemoteErrorKind::BadRequest, format!("{}: {e}", M::NAME)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingResponse {
    pub method: String,
    pub result: Result<Bytes, RemoteError>,
    pub stream: bool,
}

impl IncomingResponse {
    pub fn decode<M: Method>(&self) -> Result<M::Response, CallError> {
        if self.method != M::NAME {
            return Err(CallError::WrongMethod { expected: M::NAME, got: self.method.clone() });
        }
        let body = self.result.as_ref().map_err(|e| CallError::Remote(e.clone()))?;
        decode_exact(body, "response body")
            .map_err(|e| CallError::Decode { method: self.method.clone(), detail: e.to_string() })
    }
}

/// The application called a session method at the wrong time. The session is
/// unchanged; these are bugs in the caller, reported instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("session is not open")]
    NotOpen,
    #[error("only a {0:?} may do this")]
    WrongRole(Role),
    #[error("a request is already in flight")]
    Busy,
    #[error("no request is waiting for a response")]
    NoPendingRequest,
    #[error("no outgoing stream is open")]
    NoOutboundStream,
    #[error("no incoming stream is open")]
    NoInboundStream,
    #[error("{len} stream bytes offered with only {capacity} of capacity")]
    OverCapacity { len: usize, capacity: usize },
    #[error("could not encode {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Open,
    /// We said goodbye and wait for the peer's, until the deadline.
    Closing,
    Closed,
}

#[derive(Debug)]
enum Rpc {
    Idle,
    /// Client: request sent, waiting for the response header.
    AwaitHeader {
        method: String,
    },
    /// Client: response header said Ok, waiting for the body.
    AwaitResponseBody {
        method: String,
        stream: bool,
    },
    /// Server: request header arrived, waiting for the body.
    AwaitRequestBody {
        header: RequestHeader,
    },
    /// Server: the application holds the request.
    Handling,
    /// Response complete (client) or sent (server); streams may still run.
    Draining,
}

#[derive(Debug)]
struct InStream {
    /// Total bytes we let the peer send: our window plus all credit granted.
    allowed: u64,
    received: u64,
    /// Consumed bytes not yet returned to the peer as credit.
    unacked: u64,
    /// We no longer want the data (cancelled, or the request was answered early).
    discard: bool,
}

#[derive(Debug)]
struct OutStream {
    credit: u64,
}

/// Deadlines the session keeps; the next timeout is the earliest of them.
#[derive(Debug, Default)]
struct Timers {
    handshake: Option<Instant>,
    request: Option<Instant>,
    close: Option<Instant>,
    /// After the session closed, how long the driver may still flush our goodbye.
    linger: Option<Instant>,
}

/// Stream data a session queues for the socket beyond which it stops offering
/// capacity, whatever the credit: the socket, not our queue, should hold the bytes.
const MAX_QUEUED_DATA: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Session {
    role: Role,
    config: SessionConfig,
    decoder: Decoder,
    out: OutQueue,
    events: VecDeque<SessionEvent>,
    phase: Phase,
    peer: Option<Hello>,
    rpc: Rpc,
    /// For the request timeout message.
    request_method: String,
    inbound: Option<InStream>,
    outbound: Option<OutStream>,
    timers: Timers,
    last_recv: Instant,
    last_sent: Instant,
    received_any: bool,
    sent_goodbye: bool,
    lingering_done: bool,
}

impl Session {
    /// A new session; its handshake is queued at once.
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Session {
        let mut config = config;
        config.max_data_payload = config.max_data_payload.clamp(1024, limits::MAX_DATA_PAYLOAD);
        config.stream_window =
            config.stream_window.clamp(limits::MIN_STREAM_WINDOW, limits::MAX_STREAM_WINDOW);
        let mut s = Session {
            role,
            decoder: Decoder::new(FrameLimits { max_data_payload: config.max_data_payload }),
            out: OutQueue::new(),
            events: VecDeque::new(),
            phase: Phase::Handshaking,
            peer: None,
            rpc: Rpc::Idle,
            request_method: String::new(),
            inbound: None,
            outbound: None,
            timers: Timers { handshake: Some(now + config.handshake_timeout), ..Timers::default() },
            last_recv: now,
            last_sent: now,
            received_any: false,
            sent_goodbye: false,
            lingering_done: false,
            config,
        };
        let hello = Hello {
            role,
            max_data_payload: s.config.max_data_payload as u32,
            stream_window: s.config.stream_window as u32,
            software: s.config.software.chars().take(200).collect(),
        };
        s.out.push_with(FrameType::Handshake, 0, |b| encode_handshake(&hello, b));
        s
    }

    // ---- getters ----

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// True once the session ended; its last bytes may still be queued.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True when the driver should close the connection now: the session ended and
    /// its goodbye was flushed, or the peer would not take it in time.
    pub fn should_drop(&self) -> bool {
        self.phase == Phase::Closed && (self.out.is_empty() || self.lingering_done)
    }

    /// True while a request is in flight (client) or being handled (server).
    pub fn is_busy(&self) -> bool {
        !matches!(self.rpc, Rpc::Idle)
    }

    pub fn peer_software(&self) -> Option<&str> {
        self.peer.as_ref().map(|h| h.software.as_str())
    }

    /// Bytes queued for the socket.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether reading from the socket is useful now.
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Closed
    }

    /// How many stream bytes may be sent now: bounded by the peer's credit and by
    /// what is already queued. Zero when no outgoing stream is open.
    pub fn stream_send_capacity(&self) -> usize {
        match &self.outbound {
            Some(o) if self.phase == Phase::Open => {
                let credit = usize::try_from(o.credit).unwrap_or(usize::MAX);
                credit.min(MAX_QUEUED_DATA.saturating_sub(self.out.len()))
            }
            _ => 0,
        }
    }

    /// Largest data payload the peer accepts in one frame.
    pub fn peer_max_data_payload(&self) -> usize {
        self.peer.as_ref().map_or(limits::DEFAULT_DATA_PAYLOAD, |h| h.max_data_payload as usize)
    }

    pub fn has_outbound_stream(&self) -> bool {
        self.outbound.is_some()
    }

    pub fn has_inbound_stream(&self) -> bool {
        self.inbound.is_some()
    }

    // ---- input ----

    /// Where the driver reads socket bytes into; `None` once the session ended.
    pub fn read_slot(&mut self) -> Option<&mut [u8]> {
        if self.phase == Phase::Closed {
            return None;
        }
        Some(self.decoder.read_slot())
    }

    /// `n` bytes were read into the slot; zero means the peer closed its side.
    pub fn handle_read(&mut self, now: Instant, n: usize) {
        if self.phase == Phase::Closed {
            return;
        }
        if n == 0 {
            self.decoder.commit(0);
            self.handle_eof(now);
            return;
        }
        self.decoder.commit(n);
        self.last_recv = now;
        self.process_frames(now);
    }

    /// Bytes from a source other than `read_slot` (tests, fuzzing); copied.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        if bytes.is_empty() {
            self.handle_eof(now);
            return;
        }
        self.decoder.feed(bytes);
        self.last_recv = now;
        self.process_frames(now);
    }

    /// The connection failed underneath us.
    pub fn handle_io_error(&mut self, now: Instant, error: String) {
        match self.phase {
            Phase::Closed => {}
            // We were leaving anyway: a peer that resets instead of answering our
            // goodbye has still let us go.
            Phase::Closing => self.finish(now, None),
            Phase::Handshaking | Phase::Open => self.fail(now, SessionError::Io(error), false),
        }
    }

    /// Offers the queued chunks for one vectored write.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.out.io_slices(out)
    }

    /// The driver wrote `n` bytes of what `io_slices` offered.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        if n > 0 {
            self.out.advance(n);
            self.last_sent = now;
        }
    }

    /// The earliest time at which [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        let mut next = [t.handshake, t.request, t.close, t.linger].into_iter().flatten().min();
        if matches!(self.phase, Phase::Open | Phase::Handshaking) {
            let idle = self.last_recv + self.config.idle_timeout;
            next = Some(next.map_or(idle, |n| n.min(idle)));
        }
        if self.phase == Phase::Open {
            let beat = self.last_sent + self.config.heartbeat_interval;
            next = Some(next.map_or(beat, |n| n.min(beat)));
        }
        next
    }

    /// Fires every deadline at or before `now`; an early call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Closed {
            if self.timers.linger.is_some_and(|t| now >= t) {
                self.timers.linger = None;
                self.lingering_done = true;
            }
            return;
        }
        if self.timers.handshake.is_some_and(|t| now >= t) {
            self.fail(now, SessionError::HandshakeTimeout(self.config.handshake_timeout), true);
            return;
        }
        if self.timers.close.is_some_and(|t| now >= t) {
            let err = SessionError::CloseTimeout(self.config.close_timeout);
            self.finish(now, Some(err));
            return;
        }
        if self.timers.request.is_some_and(|t| now >= t) {
            let err = SessionError::RequestTimeout {
                method: self.request_method.clone(),
                timeout: self.config.request_timeout,
            };
            self.fail(now, err, true);
            return;
        }
        if matches!(self.phase, Phase::Open | Phase::Handshaking)
            && now >= self.last_recv + self.config.idle_timeout
        {
            self.fail(now, SessionError::IdleTimeout(self.config.idle_timeout), true);
            return;
        }
        if self.phase == Phase::Open && now >= self.last_sent + self.config.heartbeat_interval {
            self.out.push(FrameType::Heartbeat, 0, Bytes::new());
            self.last_sent = now;
        }
    }

    // ---- output ----

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    // ---- application actions ----

    /// Client: sends a request. With `stream`, the application then sends the
    /// stream with [`Session::send_stream_data`] and [`Session::end_stream`].
    pub fn request<M: Method>(
        &mut self,
        now: Instant,
        request: &M::Request,
        stream: bool,
    ) -> Result<(), UsageError> {
        self.require_open()?;
        if self.role != Role::Client {
            return Err(UsageError::WrongRole(Role::Client));
        }
        if !matches!(self.rpc, Rpc::Idle) {
            return Err(UsageError::Busy);
        }
        let body = postcard::to_stdvec(request).map_err(|e| UsageError::Encode(e.to_string()))?;
        if body.len() > limits::MAX_RPC_BODY_PAYLOAD {
            return Err(UsageError::Encode(format!("{} request of {} bytes", M::NAME, body.len())));
        }
        let header = RequestHeader { method: M::NAME.to_owned(), stream };
        self.push_postcard(FrameType::RpcHeader, &header)?;
        self.out.push(FrameType::RpcBody, 0, Bytes::from(body));
        self.last_sent = now;
        self.rpc = Rpc::AwaitHeader { method: M::NAME.to_owned() };
        self.request_method = M::NAME.to_owned();
        if stream {
            let credit = self.peer.as_ref().map_or(0, |h| u64::from(h.stream_window));
            self.outbound = Some(OutStream { credit });
        } else {
            self.timers.request = Some(now + self.config.request_timeout);
        }
        Ok(())
    }

    /// Server: answers the request being handled. `stream` is honoured only for a
    /// successful response: the stream follows it.
    pub fn respond<M: Method>(
        &mut self,
        now: Instant,
        result: Result<&M::Response, RemoteError>,
        stream: bool,
    ) -> Result<(), UsageError> {
        let body = match result {
            Ok(r) => Some(postcard::to_stdvec(r).map_err(|e| UsageError::Encode(e.to_string()))?),
            Err(_) => None,
        };
        self.respond_raw(now, result.map(|_| ()), body, stream)
    }

    /// Server: answers with an error, e.g. for a request the server does not know.
    pub fn respond_error(&mut self, now: Instant, error: RemoteError) -> Result<(), UsageError> {
        self.respond_raw(now, Err(error), None, false)
    }

    fn respond_raw(
        &mut self,
        now: Instant,
        status: Result<(), RemoteError>,
        body: Option<Vec<u8>>,
        stream: bool,
    ) -> Result<(), UsageError> {
        self.require_open()?;
        if self.role != Role::Server {
            return Err(UsageError::WrongRole(Role::Server));
        }
        if !matches!(self.rpc, Rpc::Handling) {
            return Err(UsageError::NoPendingRequest);
        }
        if body.as_ref().is_some_and(|b| b.len() > limits::MAX_RPC_BODY_PAYLOAD) {
            return Err(UsageError::Encode("response larger than the body limit".to_owned()));
        }
        let stream = stream && status.is_ok();
        self.push_postcard(FrameType::RpcHeader, &ResponseHeader { status, stream })?;
        if let Some(body) = body {
            self.out.push(FrameType::RpcBody, 0, Bytes::from(body));
        }
        self.last_sent = now;
        // A response ends the request's stream: the client stops sending on seeing
        // it, and whatever is still in flight is dropped.
        if let Some(i) = &mut self.inbound {
            i.discard = true;
        }
        if stream {
            let credit = self.peer.as_ref().map_or(0, |h| u64::from(h.stream_window));
            self.outbound = Some(OutStream { credit });
        }
        self.rpc = Rpc::Draining;
        self.maybe_finish_rpc();
        Ok(())
    }

    /// Sends stream bytes, split into frames the peer accepts. `data` must fit in
    /// [`Session::stream_send_capacity`]; the driver sizes its reads by it.
    pub fn send_stream_data(&mut self, now: Instant, mut data: Bytes) -> Result<(), UsageError> {
        self.require_open()?;
        let capacity = self.stream_send_capacity();
        let Some(out) = &mut self.outbound else { return Err(UsageError::NoOutboundStream) };
        if data.len() > capacity {
            return Err(UsageError::OverCapacity { len: data.len(), capacity });
        }
        out.credit -= data.len() as u64;
        let max = self
            .peer
            .as_ref()
            .map_or(limits::DEFAULT_DATA_PAYLOAD, |h| h.max_data_payload as usize);
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(max));
            self.out.push(FrameType::StreamData, 0, chunk);
        }
        self.last_sent = now;
        Ok(())
    }

    /// Sends `len` stream bytes as one frame whose payload the driver holds in its
    /// transit pipe for this connection (see [`OutQueue::push_spliced`]). `len`
    /// must fit in [`Session::stream_send_capacity`] and in one frame for the peer.
    pub fn send_stream_spliced(&mut self, now: Instant, len: usize) -> Result<(), UsageError> {
        self.require_open()?;
        let capacity = self.stream_send_capacity().min(self.peer_max_data_payload());
        let Some(out) = &mut self.outbound else { return Err(UsageError::NoOutboundStream) };
        if len == 0 || len > capacity {
            return Err(UsageError::OverCapacity { len, capacity });
        }
        out.credit -= len as u64;
        self.out.push_spliced(FrameType::StreamData, 0, len);
        self.last_sent = now;
        Ok(())
    }

    /// True while a spliced payload waits in the driver's transit pipe.
    pub fn has_spliced(&self) -> bool {
        self.out.has_spliced()
    }

    /// When the next bytes to write are a spliced payload: how many remain.
    pub fn spliced_front(&self) -> Option<usize> {
        self.out.spliced_front()
    }

    /// Ends the outgoing stream: every byte was sent.
    pub fn end_stream(&mut self, now: Instant) -> Result<(), UsageError> {
        self.require_open()?;
        if self.outbound.take().is_none() {
            return Err(UsageError::NoOutboundStream);
        }
        self.out.push(FrameType::StreamEnd, 0, Bytes::new());
        self.last_sent = now;
        self.maybe_finish_rpc();
        Ok(())
    }

    /// Aborts the outgoing stream: the receiver must discard what it got.
    pub fn abort_stream(&mut self, now: Instant, reason: &str) -> Result<(), UsageError> {
        self.require_open()?;
        if self.outbound.take().is_none() {
            return Err(UsageError::NoOutboundStream);
        }
        self.push_reason(FrameType::StreamAbort, 0, reason);
        self.last_sent = now;
        self.maybe_finish_rpc();
        Ok(())
    }

    /// Asks the sender of our incoming stream to stop. Data still in flight is
    /// dropped; the stream completes when the sender's abort arrives.
    pub fn cancel_inbound(&mut self, now: Instant, reason: &str) -> Result<(), UsageError> {
        self.require_open()?;
        let Some(i) = &mut self.inbound else { return Err(UsageError::NoInboundStream) };
        if !i.discard {
            i.discard = true;
            self.push_reason(FrameType::StreamAbort, FLAG_CANCEL, reason);
            self.last_sent = now;
        }
        Ok(())
    }

    /// The application passed on `n` bytes of the incoming stream; return credit
    /// once a quarter of the window is free again, so frames stay large.
    pub fn stream_consumed(&mut self, n: usize) {
        if self.phase != Phase::Open {
            return;
        }
        let Some(i) = &mut self.inbound else { return };
        i.unacked += n as u64;
        let threshold = (self.config.stream_window / 4) as u64;
        if i.unacked >= threshold {
            let grant = i.unacked;
            i.unacked = 0;
            i.allowed += grant;
            self.out.push_with(FrameType::StreamCredit, 0, |b| b.put_u64(grant));
        }
    }

    /// Starts a graceful close: goodbye now, then wait a bounded time for the peer's.
    pub fn close(&mut self, now: Instant, reason: &str) {
        match self.phase {
            Phase::Closed | Phase::Closing => {}
            Phase::Handshaking | Phase::Open => {
                self.push_reason(FrameType::Goodbye, 0, reason);
                self.sent_goodbye = true;
                self.phase = Phase::Closing;
                self.timers.close = Some(now + self.config.close_timeout);
                self.timers.request = None;
                self.timers.handshake = None;
            }
        }
    }

    // ---- internals ----

    fn require_open(&self) -> Result<(), UsageError> {
        if self.phase == Phase::Open {
            Ok(())
        } else {
            Err(UsageError::NotOpen)
        }
    }

    fn push_postcard<T: serde::Serialize>(
        &mut self,
        kind: FrameType,
        value: &T,
    ) -> Result<(), UsageError> {
        let v = postcard::to_stdvec(value).map_err(|e| UsageError::Encode(e.to_string()))?;
        if v.len() > kind.max_payload() {
            return Err(UsageError::Encode(format!("{kind:?} of {} bytes", v.len())));
        }
        self.out.push(kind, 0, Bytes::from(v));
        Ok(())
    }

    fn push_reason(&mut self, kind: FrameType, flags: u8, reason: &str) {
        let mut end = reason.len().min(limits::MAX_REASON_PAYLOAD);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.out.push(kind, flags, Bytes::copy_from_slice(&reason.as_bytes()[..end]));
    }

    fn handle_eof(&mut self, now: Instant) {
        let during = match (&self.phase, &self.rpc) {
            (Phase::Closing, _) => None,
            (Phase::Handshaking, _) => Some("the handshake"),
            _ if self.inbound.is_some() => Some("a stream"),
            (_, Rpc::Idle) | (_, Rpc::Handling) if self.outbound.is_none() => None,
            _ => Some("a request"),
        };
        match during {
            // A peer that hangs up between requests has simply left.
            None => self.finish(now, None),
            Some(what) => self.fail(now, SessionError::UnexpectedEof(what), false),
        }
    }

    /// Ends the session with an error; tells the peer why when that can help.
    fn fail(&mut self, now: Instant, error: SessionError, tell_peer: bool) {
        if tell_peer && !self.sent_goodbye {
            self.push_reason(FrameType::Goodbye, FLAG_ERROR, &error.to_string());
            self.sent_goodbye = true;
        }
        self.finish(now, Some(error));
    }

    fn finish(&mut self, now: Instant, error: Option<SessionError>) {
        self.phase = Phase::Closed;
        self.timers = Timers { linger: Some(now + self.config.close_timeout), ..Timers::default() };
        self.inbound = None;
        self.outbound = None;
        self.events.push_back(SessionEvent::Closed(error));
    }

    fn process_frames(&mut self, now: Instant) {
        while self.phase != Phase::Closed {
            let frame = match self.decoder.decode() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let err = if self.received_any {
                        SessionError::Frame(e)
                    } else {
                        SessionError::NotZferry { first_bytes: hex_prefix(self.decoder.peek()) }
                    };
                    self.fail(now, err, true);
                    break;
                }
            };
            let first = !self.received_any;
            self.received_any = true;
            if let Err(e) = self.handle_frame(now, frame, first) {
                self.fail(now, e, true);
            }
        }
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        frame: Frame,
        first: bool,
    ) -> Result<(), SessionError> {
        if first && frame.kind != FrameType::Handshake {
            let mut raw = crate::frame::Header {
                kind: frame.kind,
                flags: frame.flags,
                len: frame.payload.len() as u32,
            }
            .encode()
            .to_vec();
            raw.extend_from_slice(&frame.payload[..frame.payload.len().min(8)]);
            return Err(SessionError::NotZferry { first_bytes: hex_prefix(&raw) });
        }
        let allowed_flags = match frame.kind {
            FrameType::StreamAbort => FLAG_CANCEL,
            FrameType::Goodbye => FLAG_ERROR,
            _ => 0,
        };
        if frame.flags & !allowed_flags != 0 {
            return Err(SessionError::Malformed {
                what: "frame flags",
                detail: format!("{:?} frame with flags 0x{:02x}", frame.kind, frame.flags),
            });
        }
        match frame.kind {
            FrameType::Handshake => self.on_handshake(now, &frame.payload),
            FrameType::Heartbeat => self.require_phase_open("heartbeat"),
            FrameType::Goodbye => {
                self.on_goodbye(now, &frame.payload, frame.flags & FLAG_ERROR != 0);
                Ok(())
            }
            FrameType::RpcHeader => self.on_rpc_header(now, &frame.payload),
            FrameType::RpcBody => self.on_rpc_body(frame.payload),
            FrameType::StreamData => self.on_stream_data(frame.payload),
            FrameType::StreamEnd => self.on_stream_end(None),
            FrameType::StreamAbort if frame.flags & FLAG_CANCEL != 0 => {
                self.on_cancel(now, &frame.payload)
            }
            FrameType::StreamAbort => self.on_stream_end(Some(reason_text(&frame.payload))),
            FrameType::StreamCredit => self.on_credit(&frame.payload),
        }
    }

    fn require_phase_open(&self, frame: &'static str) -> Result<(), SessionError> {
        match self.phase {
            Phase::Open | Phase::Closing => Ok(()),
            Phase::Handshaking => Err(SessionError::OutOfOrder { frame, state: "handshaking" }),
            Phase::Closed => Err(SessionError::OutOfOrder { frame, state: "closed" }),
        }
    }

    fn on_handshake(&mut self, _now: Instant, payload: &[u8]) -> Result<(), SessionError> {
        if self.peer.is_some() {
            return Err(SessionError::OutOfOrder { frame: "a second handshake", state: "open" });
        }
        let hello = decode_handshake(payload)?;
        if hello.role == self.role {
            return Err(SessionError::SameRole(self.role));
        }
        let max = hello.max_data_payload as usize;
        let window = hello.stream_window as usize;
        if !(1024..=limits::MAX_DATA_PAYLOAD).contains(&max)
            || !(limits::MIN_STREAM_WINDOW..=limits::MAX_STREAM_WINDOW).contains(&window)
        {
            return Err(SessionError::Malformed {
                what: "handshake",
                detail: format!("data payload {max} or stream window {window} out of range"),
            });
        }
        self.timers.handshake = None;
        let software = hello.software.clone();
        self.peer = Some(hello);
        if self.phase == Phase::Handshaking {
            self.phase = Phase::Open;
            self.events.push_back(SessionEvent::Established { peer_software: software });
        }
        Ok(())
    }

    fn on_goodbye(&mut self, now: Instant, payload: &[u8], peer_failed: bool) {
        let reason = reason_text(payload);
        if self.phase == Phase::Closing {
            self.finish(now, None);
            return;
        }
        // Answer so the peer's close completes without waiting out its timeout.
        self.push_reason(FrameType::Goodbye, 0, "goodbye");
        self.sent_goodbye = true;
        let in_flight = self.inbound.is_some() || self.outbound.is_some() || self.is_busy();
        let graceful = self.phase == Phase::Open && !in_flight && !peer_failed;
        self.finish(now, if graceful { None } else { Some(SessionError::PeerGoodbye(reason)) });
    }

    fn on_rpc_header(&mut self, _now: Instant, payload: &[u8]) -> Result<(), SessionError> {
        self.require_phase_open("an RPC header")?;
        match (self.role, &self.rpc) {
            (Role::Server, Rpc::Idle) => {
                let header: RequestHeader = decode_exact(payload, "request header")?;
                self.rpc = Rpc::AwaitRequestBody { header };
                Ok(())
            }
            (Role::Client, Rpc::AwaitHeader { method }) => {
                let header: ResponseHeader = decode_exact(payload, "response header")?;
                let method = method.clone();
                match header.status {
                    Ok(()) => {
                        self.rpc = Rpc::AwaitResponseBody { method, stream: header.stream };
                    }
                    Err(e) => {
                        if header.stream {
                            return Err(SessionError::Malformed {
                                what: "response header",
                                detail: "an error response cannot carry a stream".to_owned(),
                            });
                        }
                        self.deliver_response(IncomingResponse {
                            method,
                            result: Err(e),
                            stream: false,
                        });
                    }
                }
                Ok(())
            }
            (_, state) => Err(SessionError::OutOfOrder {
                frame: "an RPC header",
                state: rpc_state_name(state),
            }),
        }
    }

    fn on_rpc_body(&mut self, body: Bytes) -> Result<(), SessionError> {
        self.require_phase_open("an RPC body")?;
        match std::mem::replace(&mut self.rpc, Rpc::Idle) {
            Rpc::AwaitRequestBody { header } => {
                if header.stream {
                    self.inbound = Some(self.new_inbound());
                }
                self.rpc = Rpc::Handling;
                self.events.push_back(SessionEvent::Request(IncomingRequest {
                    method: header.method,
                    body,
                    stream: header.stream,
                }));
                Ok(())
            }
            Rpc::AwaitResponseBody { method, stream } => {
                if stream {
                    self.inbound = Some(self.new_inbound());
                }
                self.deliver_response(IncomingResponse { method, result: Ok(body), stream });
                Ok(())
            }
            other => {
                let state = rpc_state_name(&other);
                self.rpc = other;
                Err(SessionError::OutOfOrder { frame: "an RPC body", state })
            }
        }
    }

    fn new_inbound(&self) -> InStream {
        InStream {
            allowed: self.config.stream_window as u64,
            received: 0,
            unacked: 0,
            discard: false,
        }
    }

    /// Client: a response is complete. It ends our request stream if one is open.
    fn deliver_response(&mut self, response: IncomingResponse) {
        self.timers.request = None;
        if self.outbound.take().is_some() {
            self.push_reason(
                FrameType::StreamAbort,
                0,
                "the peer answered before the stream ended",
            );
        }
        self.rpc = Rpc::Draining;
        self.events.push_back(SessionEvent::Response(response));
        self.maybe_finish_rpc();
    }

    fn on_stream_data(&mut self, data: Bytes) -> Result<(), SessionError> {
        self.require_phase_open("stream data")?;
        let max = self.config.max_data_payload;
        let Some(i) = &mut self.inbound else {
            return Err(SessionError::OutOfOrder {
                frame: "stream data",
                state: "no stream is open",
            });
        };
        if data.len() > max {
            return Err(SessionError::DataFrameTooLarge { len: data.len(), max });
        }
        i.received += data.len() as u64;
        if i.received > i.allowed {
            return Err(SessionError::CreditViolation { got: i.received, allowed: i.allowed });
        }
        // Discarded data still counts against credit: the sender stops on its own
        // once it sees our cancel or our response.
        if !i.discard && !data.is_empty() {
            self.events.push_back(SessionEvent::StreamData(data));
        }
        Ok(())
    }

    fn on_stream_end(&mut self, abort: Option<String>) -> Result<(), SessionError> {
        let frame = if abort.is_some() { "a stream abort" } else { "a stream end" };
        self.require_phase_open(frame)?;
        if self.inbound.take().is_none() {
            return Err(SessionError::OutOfOrder { frame, state: "no stream is open" });
        }
        self.events.push_back(match abort {
            None => SessionEvent::StreamEnd,
            Some(reason) => SessionEvent::StreamAborted(reason),
        });
        self.maybe_finish_rpc();
        Ok(())
    }

    fn on_cancel(&mut self, now: Instant, payload: &[u8]) -> Result<(), SessionError> {
        self.require_phase_open("a stream cancel")?;
        // A cancel that crosses our own end of the stream is harmless.
        if self.outbound.take().is_some() {
            let reason = reason_text(payload);
            self.push_reason(
                FrameType::StreamAbort,
                0,
                &format!("cancelled by the receiver: {reason}"),
            );
            self.last_sent = now;
            self.events.push_back(SessionEvent::StreamCancelled(reason));
            self.maybe_finish_rpc();
        }
        Ok(())
    }

    fn on_credit(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        self.require_phase_open("stream credit")?;
        let raw: [u8; 8] = payload.try_into().map_err(|_| SessionError::Malformed {
            what: "stream credit",
            detail: format!("{} bytes instead of 8", payload.len()),
        })?;
        let grant = u64::from_be_bytes(raw);
        // Credit for a stream that already ended on our side is late, not wrong.
        if let Some(o) = &mut self.outbound {
            o.credit = o.credit.saturating_add(grant).min(limits::MAX_STREAM_WINDOW as u64 * 2);
        }
        Ok(())
    }

    fn maybe_finish_rpc(&mut self) {
        if matches!(self.rpc, Rpc::Draining) && self.inbound.is_none() && self.outbound.is_none() {
            self.rpc = Rpc::Idle;
        }
    }
}

fn reason_text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

fn rpc_state_name(rpc: &Rpc) -> &'static str {
    match rpc {
        Rpc::Idle => "no request is in flight",
        Rpc::AwaitHeader { .. } => "waiting for a response header",
        Rpc::AwaitResponseBody { .. } => "waiting for a response body",
        Rpc::AwaitRequestBody { .. } => "waiting for a request body",
        Rpc::Handling => "a request is being handled",
        Rpc::Draining => "a stream is still running",
    }
}
