//! The node: the one state machine a driver runs.
//!
//! A node owns every connection's [`Session`](crate::rpc::Session), the listeners,
//! the child processes and their pipes, and the application on top (the transport
//! probe, the replication jobs). It takes [`Input`]s and hands out [`Output`]s, in the manner of str0m:
//! after each input, drain [`Node::poll_output`] until it returns
//! [`Output::Timeout`], executing each action, before giving the next input.
//!
//! Buffers belong to the node. To read, a driver asks [`Node::read_slot`] for a
//! region, reads the socket or pipe into it and reports [`Input::Read`]; to write,
//! it takes [`Node::io_slices`], makes one vectored write and reports
//! [`Input::Written`]. Every handle is an integer the node allocated.
//!
//! Readiness contract: after draining the outputs, a driver attempts I/O on every
//! socket or pipe whose last [`Action::Interest`] asked for it, and again whenever it
//! becomes ready; it reads only while a read slot is offered. This works alike with
//! edge-triggered (mio) and awaited (smol) readiness.
//!
//! A process's stdout can feed a session's outgoing stream (`zfs send`) and a
//! session's incoming stream can feed a process's stdin (`zfs receive`): the node
//! moves those bytes itself, under the session's credit, so a slow reader slows
//! the writer at the other end and memory stays bounded.

mod app;
mod conn;
mod process;

pub use app::{App, AppCtx};
pub use conn::{ConnId, Endpoint, IoId, ListenerId};
pub use process::{ExitStatus, ProcId, ProcessResult, ProcessSpec, StdinFrom, StdoutTo};

use process::Proc;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::IoSlice;

use crate::rpc::{Role, Session, SessionConfig, SessionEvent};
use crate::time::{Instant, Now};

/// What a driver tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The time given to `handle_input` reached the last [`Output::Timeout`].
    Timeout,
    /// A listener is bound; `local` is its actual address (port 0 resolved).
    Listening {
        listener: ListenerId,
        local: String,
    },
    ListenFailed {
        listener: ListenerId,
        error: String,
    },
    /// An outgoing connection is established.
    Connected(ConnId),
    ConnectFailed {
        conn: ConnId,
        error: String,
    },
    /// `n` bytes were read into the read slot of `io`; 0 is end of stream.
    Read {
        io: IoId,
        n: usize,
    },
    /// `n` bytes of `io` (a process's stdout) were spliced into the transit pipe of
    /// the connection [`Node::splice_slot`] named; 0 is end of stream.
    Spliced {
        io: IoId,
        n: usize,
    },
    /// The OS refused a splice (this kernel, these descriptors): the node turns
    /// splicing off for good and says so. A refused drain also fails its connection
    /// ([`Input::IoError`]), since that frame's bytes are stuck in the pipe.
    SpliceRefused {
        error: String,
    },
    /// `n` bytes of the offered slices (or of the transit pipe, when
    /// [`Node::spliced_front`] offered it) were written to `io`.
    Written {
        io: IoId,
        n: usize,
    },
    /// Reading or writing `io` failed; it is unusable.
    IoError {
        io: IoId,
        error: String,
    },
    /// The process could not be started; it will never report an exit.
    SpawnFailed {
        proc: ProcId,
        error: String,
    },
    /// The process exited. Its pipes may still hold output to read.
    Exited {
        proc: ProcId,
        status: ExitStatus,
    },
    /// SIGTERM or SIGINT: finish gracefully.
    Shutdown,
}

/// What the node asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Action(Action),
    Event(Event),
    /// Nothing more to do until this time, or until the next input.
    Timeout(Option<Instant>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Bind and listen; answer with [`Input::Listening`] or [`Input::ListenFailed`].
    Listen { listener: ListenerId, endpoint: Endpoint },
    /// Stop accepting and close the listening socket.
    Unlisten(ListenerId),
    /// Connect; answer with [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect { conn: ConnId, endpoint: Endpoint },
    /// Close the connection's socket; the handle is dead after this.
    Close(ConnId),
    /// Start a process; report [`Input::SpawnFailed`] or, later, [`Input::Exited`].
    Spawn { proc: ProcId, spec: ProcessSpec },
    /// Close the process's stdin: its input is complete.
    CloseStdin(ProcId),
    /// Kill the process (SIGKILL); it still reports its exit.
    Kill(ProcId),
    /// Whether the node wants to read from and write to `io`.
    Interest { io: IoId, read: bool, write: bool },
}

/// What the node reports to the person running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Log {
        level: Level,
        message: String,
    },
    /// Output for the user on stdout (`zferry status`), as opposed to the log.
    Print(String),
    /// The node has finished its work; the process should exit with this code.
    Exit(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// A driver called the node with a handle or in a state that makes no sense; the
/// node is unchanged. These are driver bugs, reported instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("unknown connection {0:?}")]
    UnknownConn(ConnId),
    #[error("unknown listener {0:?}")]
    UnknownListener(ListenerId),
    #[error("unknown process {0:?}")]
    UnknownProc(ProcId),
    #[error("{0:?} is not waiting to connect")]
    NotConnecting(ConnId),
    #[error("{0:?} is not spliced into a connection")]
    NotSpliced(IoId),
}

#[derive(Debug)]
struct Conn {
    session: Session,
    /// False until the socket is connected (outgoing connections).
    connected: bool,
    peer: String,
    /// The interest last announced to the driver.
    interest: (bool, bool),
    /// The process whose stdin this connection's incoming stream feeds.
    feeds: Option<ProcId>,
    /// The process whose stdout feeds this connection's outgoing stream.
    fed_by: Option<ProcId>,
    /// The other end of an in-process connection, while it lives.
    local_peer: Option<ConnId>,
    /// In-process: no socket, so the driver never hears of this connection.
    in_process: bool,
}

#[derive(Debug)]
struct Listener {
    endpoint: Endpoint,
    bound: Option<String>,
}

/// The I/O half of a node: connections, listeners, processes, queued outputs.
/// Apps reach it through [`AppCtx`].
#[derive(Debug)]
pub struct Transport {
    conns: BTreeMap<ConnId, Conn>,
    listeners: BTreeMap<ListenerId, Listener>,
    procs: BTreeMap<ProcId, Proc>,
    outputs: VecDeque<Output>,
    /// In-process events for the app, delivered on the next settle: accepted
    /// local connections and local connects that found no listener.
    local_accepts: VecDeque<(ListenerId, ConnId)>,
    local_failures: VecDeque<(ConnId, String)>,
    /// Connections and processes whose state changed since outputs were computed.
    dirty: BTreeSet<ConnId>,
    dirty_procs: BTreeSet<ProcId>,
    /// Connections changed while interest was being flushed; seen next time.
    dirty_later: Vec<ConnId>,
    next_id: u64,
    session_config: SessionConfig,
    now: Now,
    /// The driver moves stdout into sockets with splice(2) (see `splice_slot`).
    splice: bool,
}

#[derive(Debug)]
pub struct Node<A: App> {
    transport: Transport,
    app: A,
    exited: bool,
}

impl<A: App> Node<A> {
    pub fn new(app: A, session_config: SessionConfig, now: Now) -> Node<A> {
        let mut node = Node {
            transport: Transport {
                conns: BTreeMap::new(),
                listeners: BTreeMap::new(),
                procs: BTreeMap::new(),
                outputs: VecDeque::new(),
                local_accepts: VecDeque::new(),
                local_failures: VecDeque::new(),
                dirty: BTreeSet::new(),
                dirty_procs: BTreeSet::new(),
                dirty_later: Vec::new(),
                next_id: 1,
                session_config,
                now,
                splice: false,
            },
            app,
            exited: false,
        };
        node.with_app(|app, ctx| app.start(ctx));
        node.settle();
        node
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    /// Connections currently open or opening.
    pub fn connection_count(&self) -> usize {
        self.transport.conns.len()
    }

    /// Processes started and not yet done.
    pub fn process_count(&self) -> usize {
        self.transport.procs.len()
    }

    /// The driver can splice(2) a process's stdout into a socket through a transit
    /// pipe per connection, and will: from now on such stdout is offered through
    /// [`Node::splice_slot`] instead of [`Node::read_slot`]. Until it turns splicing
    /// off again (a kernel that refuses it), nothing else changes.
    pub fn set_splice(&mut self, on: bool) {
        self.transport.set_splice(on);
        self.settle();
    }

    /// For a process's stdout that feeds a socket's stream while splicing is on:
    /// the connection whose transit pipe to splice into, and at most how many bytes
    /// (one frame). The transit pipe is empty whenever this offers a slot; report
    /// what moved with [`Input::Spliced`].
    pub fn splice_slot(&self, io: IoId) -> Option<(ConnId, usize)> {
        let IoId::Stdout(proc) = io else { return None };
        let t = &self.transport;
        let conn = t.splice_target(proc)?;
        let c = t.conns.get(&conn)?;
        if c.session.has_spliced() {
            return None;
        }
        let max = stdout_room(&t.conns, conn)
            .min(c.session.peer_max_data_payload())
            .min(crate::limits::PIPE_CAPACITY);
        (max > 0).then_some((conn, max))
    }

    /// When the next bytes to write to `conn` wait in its transit pipe: how many.
    /// A driver asks when [`Node::io_slices`] offers nothing.
    pub fn spliced_front(&self, conn: ConnId) -> Option<usize> {
        let c = self.transport.conns.get(&conn)?;
        c.connected.then(|| c.session.spliced_front()).flatten()
    }

    /// Where to read the next bytes of `io`; `None` if the node wants none now.
    pub fn read_slot(&mut self, io: IoId) -> Option<&mut [u8]> {
        let t = &mut self.transport;
        match io {
            IoId::Conn(conn) => {
                let c = t.conns.get_mut(&conn)?;
                if !c.connected {
                    return None;
                }
                c.session.read_slot()
            }
            IoId::Stdout(proc) => {
                if t.splice_target(proc).is_some() {
                    return None;
                }
                let p = t.procs.get_mut(&proc)?;
                if !p.stdout_open {
                    return None;
                }
                let max = match p.stdout_to {
                    StdoutTo::Stream(conn) => stdout_room(&t.conns, conn),
                    StdoutTo::Collect | StdoutTo::Null => crate::limits::READ_CHUNK,
                };
                (max > 0).then(|| p.stdout_slot(max))
            }
            IoId::Stderr(proc) => {
                let p = t.procs.get_mut(&proc)?;
                p.stderr_open.then(|| p.stderr_slot())
            }
            IoId::Stdin(_) => None,
        }
    }

    /// The queued bytes of `io`, for one vectored write.
    pub fn io_slices<'a>(&'a self, io: IoId, out: &mut [IoSlice<'a>]) -> usize {
        match io {
            IoId::Conn(conn) => match self.transport.conns.get(&conn) {
                Some(c) if c.connected => c.session.io_slices(out),
                _ => 0,
            },
            IoId::Stdin(proc) => match self.transport.procs.get(&proc) {
                Some(p) if p.stdin_open => {
                    let mut n = 0;
                    for (slot, chunk) in out.iter_mut().zip(p.stdin_queue.iter()) {
                        *slot = IoSlice::new(chunk);
                        n += 1;
                    }
                    n
                }
                _ => 0,
            },
            IoId::Stdout(_) | IoId::Stderr(_) => 0,
        }
    }

    /// A new incoming connection on `listener`. Returns its handle, or `None` if
    /// the node refuses it (the driver then closes the socket at once).
    pub fn accept(&mut self, now: Now, listener: ListenerId, peer: String) -> Option<ConnId> {
        self.transport.now = now;
        if !self.transport.listeners.contains_key(&listener) {
            return None;
        }
        if self.transport.conns.len() >= crate::limits::MAX_CONNECTIONS {
            self.transport
                .log(Level::Warn, format!("refused connection from {peer}: too many connections"));
            return None;
        }
        let conn = ConnId(self.transport.alloc_id());
        let session = Session::new(Role::Server, self.transport.session_config.clone(), now.mono);
        self.transport.conns.insert(
            conn,
            Conn {
                session,
                connected: true,
                peer: peer.clone(),
                interest: (false, false),
                feeds: None,
                fed_by: None,
                local_peer: None,
                in_process: false,
            },
        );
        self.transport.dirty.insert(conn);
        self.with_app(|app, ctx| app.on_accept(ctx, listener, conn, &peer));
        self.settle();
        Some(conn)
    }

    pub fn handle_input(&mut self, now: Now, input: Input) -> Result<(), InputError> {
        self.transport.now = now;
        let t = &mut self.transport;
        match input {
            Input::Timeout => {
                for c in t.conns.values_mut() {
                    c.session.handle_timeout(now.mono);
                }
                t.dirty.extend(t.conns.keys().copied());
                self.with_app(|app, ctx| app.on_timeout(ctx));
            }
            Input::Listening { listener, local } => {
                let l =
                    t.listeners.get_mut(&listener).ok_or(InputError::UnknownListener(listener))?;
                l.bound = Some(local.clone());
                self.with_app(|app, ctx| app.on_listening(ctx, listener, &local));
            }
            Input::ListenFailed { listener, error } => {
                let l =
                    t.listeners.remove(&listener).ok_or(InputError::UnknownListener(listener))?;
                let msg = format!("cannot listen on {}: {error}", l.endpoint);
                self.with_app(|app, ctx| app.on_listen_failed(ctx, listener, &msg));
            }
            Input::Connected(conn) => {
                let c = t.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                if c.connected {
                    return Err(InputError::NotConnecting(conn));
                }
                c.connected = true;
                t.dirty.insert(conn);
            }
            Input::ConnectFailed { conn, error } => {
                let c = t.conns.remove(&conn).ok_or(InputError::UnknownConn(conn))?;
                let msg = format!("cannot connect to {}: {error}", c.peer);
                self.with_app(|app, ctx| app.on_conn_closed(ctx, conn, Some(msg)));
            }
            Input::Read { io, n } => t.on_read(io, n)?,
            Input::Spliced { io, n } => t.on_spliced(io, n)?,
            Input::SpliceRefused { error } => {
                t.log(Level::Warn, format!("splice(2) refused ({error}); copying instead"));
                t.set_splice(false);
            }
            Input::Written { io, n } => t.on_written(io, n)?,
            Input::IoError { io, error } => t.on_io_error(io, error)?,
            Input::SpawnFailed { proc, error } => {
                let p = t.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                p.stdout_open = false;
                p.stderr_open = false;
                p.stdin_open = false;
                p.status = Some(ExitStatus::Code(127));
                p.stderr_tail.extend(format!("cannot start: {error}").bytes());
                t.dirty_procs.insert(proc);
            }
            Input::Exited { proc, status } => {
                let p = t.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                p.status = Some(status);
                t.dirty_procs.insert(proc);
            }
            Input::Shutdown => {
                self.transport.log(Level::Info, "shutting down".to_owned());
                self.with_app(|app, ctx| app.on_shutdown(ctx));
            }
        }
        self.settle();
        Ok(())
    }

    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.transport.outputs.pop_front() {
            return o;
        }
        Output::Timeout(self.next_timeout())
    }

    fn next_timeout(&self) -> Option<Instant> {
        let sessions = self.transport.conns.values().filter_map(|c| c.session.poll_timeout());
        sessions.chain(self.app.poll_timeout()).min()
    }

    fn with_app(&mut self, f: impl FnOnce(&mut A, &mut AppCtx<'_>)) {
        let mut ctx = AppCtx { transport: &mut self.transport };
        f(&mut self.app, &mut ctx);
    }

    /// Delivers session events and finished processes to the app until quiet,
    /// then turns state changes into actions. Each pass consumes events or stops.
    fn settle(&mut self) {
        loop {
            self.settle_events();
            self.transport.flush_interest();
            if self.transport.dirty_later.is_empty() {
                break;
            }
            let later = std::mem::take(&mut self.transport.dirty_later);
            self.transport.dirty.extend(later);
        }
        if !self.exited {
            if let Some(code) = self.app.exit_code() {
                self.exited = true;
                self.transport.outputs.push_back(Output::Event(Event::Exit(code)));
            }
        }
    }

    fn settle_events(&mut self) {
        loop {
            let mut delivered = self.transport.shuttle_local();
            while let Some((listener, conn)) = self.transport.local_accepts.pop_front() {
                delivered = true;
                let peer =
                    self.transport.conns.get(&conn).map(|c| c.peer.clone()).unwrap_or_default();
                self.with_app(|app, ctx| app.on_accept(ctx, listener, conn, &peer));
            }
            while let Some((conn, error)) = self.transport.local_failures.pop_front() {
                delivered = true;
                self.with_app(|app, ctx| app.on_conn_closed(ctx, conn, Some(error)));
            }
            let dirty: Vec<ConnId> = self.transport.dirty.iter().copied().collect();
            for conn in dirty {
                while let Some(ev) =
                    self.transport.conns.get_mut(&conn).and_then(|c| c.session.poll_event())
                {
                    delivered = true;
                    let Some(ev) = self.transport.route(conn, ev) else { continue };
                    if let SessionEvent::Closed(err) = &ev {
                        self.transport.log_session_end(conn, err.as_ref());
                        self.with_app(|app, ctx| {
                            app.on_conn_closed(ctx, conn, err.as_ref().map(|e| e.to_string()))
                        });
                    } else {
                        self.with_app(|app, ctx| app.on_session_event(ctx, conn, ev));
                    }
                }
            }
            let dirty_procs: Vec<ProcId> = self.transport.dirty_procs.iter().copied().collect();
            for proc in dirty_procs {
                if let Some(result) = self.transport.finish_proc_if_done(proc) {
                    delivered = true;
                    self.with_app(|app, ctx| app.on_process_done(ctx, proc, result));
                }
            }
            self.with_app(|app, ctx| app.poll(ctx));
            if !delivered && !self.transport.has_pending_events() {
                break;
            }
        }
    }
}

/// How much of a process's stdout may be read for the stream of `conn`: the
/// stream's credit, or, once the stream is gone, a chunk to discard, so that the
/// (killed) process's end of file is still seen and it can be reaped.
fn stdout_room(conns: &BTreeMap<ConnId, Conn>, conn: ConnId) -> usize {
    match conns.get(&conn) {
        Some(c) if c.session.has_outbound_stream() => c.session.stream_send_capacity(),
        _ => crate::limits::READ_CHUNK,
    }
}

impl Transport {
    /// The socket connection `proc`'s open stdout is spliced into, if splicing is on.
    /// In-process connections have no socket: their bytes go through the core. Once
    /// the stream is over (answered early, cancelled), stdout is read as usual,
    /// which stops the process.
    fn splice_target(&self, proc: ProcId) -> Option<ConnId> {
        if !self.splice {
            return None;
        }
        let p = self.procs.get(&proc)?;
        let StdoutTo::Stream(conn) = p.stdout_to else { return None };
        let c = self.conns.get(&conn)?;
        let socket = c.connected && !c.in_process && c.local_peer.is_none();
        (p.stdout_open && socket && c.session.has_outbound_stream()).then_some(conn)
    }

    /// Every process's stdout interest depends on whether it is spliced.
    fn set_splice(&mut self, on: bool) {
        self.splice = on;
        let procs: Vec<ProcId> = self.procs.keys().copied().collect();
        self.dirty_procs.extend(procs);
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Moves bytes between the two ends of in-process connections until neither
    /// has anything queued; true if any moved.
    fn shuttle_local(&mut self) -> bool {
        let now = self.now.mono;
        let mut moved_any = false;
        loop {
            let mut moved = false;
            let pairs: Vec<(ConnId, ConnId)> =
                self.conns.iter().filter_map(|(id, c)| c.local_peer.map(|p| (*id, p))).collect();
            for (from, to) in pairs {
                let mut chunk = Vec::new();
                if let Some(c) = self.conns.get(&from) {
                    let mut slices = [IoSlice::new(&[]); 16];
                    let n = c.session.io_slices(&mut slices);
                    for s in &slices[..n] {
                        chunk.extend_from_slice(s);
                    }
                }
                if chunk.is_empty() {
                    continue;
                }
                let mut pos = 0;
                if let Some(peer) = self.conns.get_mut(&to) {
                    while pos < chunk.len() {
                        let Some(slot) = peer.session.read_slot() else { break };
                        let k = slot.len().min(chunk.len() - pos);
                        slot[..k].copy_from_slice(&chunk[pos..pos + k]);
                        peer.session.handle_read(now, k);
                        pos += k;
                    }
                }
                if let Some(c) = self.conns.get_mut(&from) {
                    // What the peer could not take (it closed) is dropped with it.
                    c.session.handle_written(now, chunk.len());
                }
                self.dirty.insert(from);
                self.dirty.insert(to);
                moved = true;
            }
            if !moved {
                return moved_any;
            }
            moved_any = true;
        }
    }

    fn has_pending_events(&self) -> bool {
        self.dirty.iter().any(|c| self.conns.get(c).is_some_and(|c| c.session.has_events()))
            || self.dirty_procs.iter().any(|p| self.procs.get(p).is_some_and(Proc::is_done))
            || !self.local_accepts.is_empty()
            || !self.local_failures.is_empty()
            || self.conns.values().any(|c| c.local_peer.is_some() && c.session.wants_write())
    }

    fn log(&mut self, level: Level, message: String) {
        self.outputs.push_back(Output::Event(Event::Log { level, message }));
    }

    fn log_session_end(&mut self, conn: ConnId, err: Option<&crate::rpc::SessionError>) {
        let peer = self.conns.get(&conn).map(|c| c.peer.clone()).unwrap_or_default();
        match err {
            None => self.log(Level::Debug, format!("connection {} with {peer} closed", conn.0)),
            Some(e) => {
                self.log(Level::Warn, format!("connection {} with {peer} failed: {e}", conn.0))
            }
        }
    }

    /// Sends a connection's incoming stream to the process it feeds; returns the
    /// events the app should see.
    fn route(&mut self, conn: ConnId, ev: SessionEvent) -> Option<SessionEvent> {
        let Some(proc) = self.conns.get(&conn).and_then(|c| c.feeds) else { return Some(ev) };
        match &ev {
            SessionEvent::StreamData(data) => {
                if let Some(p) = self.procs.get_mut(&proc) {
                    if p.stdin_open {
                        p.queue_stdin(data.clone());
                        self.dirty_procs.insert(proc);
                        return None;
                    }
                }
                // The process no longer reads: drop the bytes, but give the
                // credit back so the sender is not stuck before the response.
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session.stream_consumed(data.len());
                }
                None
            }
            SessionEvent::StreamEnd => {
                self.end_stdin(proc);
                Some(ev)
            }
            SessionEvent::StreamAborted(_) | SessionEvent::Closed(_) => {
                // An incomplete stream must not be taken for a complete one: the
                // process is stopped rather than given end of input.
                self.kill(proc);
                Some(ev)
            }
            _ => Some(ev),
        }
    }

    pub(super) fn end_stdin(&mut self, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(&proc) {
            p.stdin_ending = true;
            self.dirty_procs.insert(proc);
        }
    }

    pub(super) fn kill(&mut self, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(&proc) {
            if !p.killed && p.status.is_none() {
                p.killed = true;
                self.outputs.push_back(Output::Action(Action::Kill(proc)));
            }
        }
    }

    fn on_read(&mut self, io: IoId, n: usize) -> Result<(), InputError> {
        let now = self.now.mono;
        match io {
            IoId::Conn(conn) => {
                let c = self.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_read(now, n);
                self.dirty.insert(conn);
            }
            IoId::Stdout(proc) => {
                let p = self.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                self.dirty_procs.insert(proc);
                if n == 0 {
                    p.stdout_open = false;
                    return Ok(());
                }
                let chunk = p.take_stdout(n);
                match p.stdout_to {
                    StdoutTo::Collect => p.collect(&chunk),
                    StdoutTo::Null => {}
                    StdoutTo::Stream(conn) => {
                        let sent = self
                            .conns
                            .get_mut(&conn)
                            .map(|c| c.session.send_stream_data(now, chunk).is_ok());
                        self.dirty.insert(conn);
                        if sent != Some(true) {
                            // The stream is gone (cancelled, connection lost).
                            self.kill(proc);
                        }
                    }
                }
            }
            IoId::Stderr(proc) => {
                let p = self.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                if n == 0 {
                    p.stderr_open = false;
                } else {
                    p.commit_stderr(n);
                }
                self.dirty_procs.insert(proc);
            }
            IoId::Stdin(proc) => return Err(InputError::UnknownProc(proc)),
        }
        Ok(())
    }

    fn on_spliced(&mut self, io: IoId, n: usize) -> Result<(), InputError> {
        let IoId::Stdout(proc) = io else { return Err(InputError::NotSpliced(io)) };
        let conn = self.splice_target(proc).ok_or(InputError::NotSpliced(io))?;
        let p = self.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
        self.dirty_procs.insert(proc);
        self.dirty.insert(conn);
        if n == 0 {
            p.stdout_open = false;
            return Ok(());
        }
        p.bytes += n as u64;
        let now = self.now.mono;
        let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
        if let Err(e) = c.session.send_stream_spliced(now, n) {
            // The bytes sit in the transit pipe with no frame to carry them: the
            // connection cannot be used any more, or the next frame would carry them.
            c.session.handle_io_error(now, format!("spliced stream bytes lost: {e}"));
            self.kill(proc);
        }
        Ok(())
    }

    fn on_written(&mut self, io: IoId, n: usize) -> Result<(), InputError> {
        match io {
            IoId::Conn(conn) => {
                let c = self.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_written(self.now.mono, n);
                self.dirty.insert(conn);
            }
            IoId::Stdin(proc) => {
                let p = self.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                p.advance_stdin(n);
                if let StdinFrom::Stream(conn) = p.stdin_from {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.session.stream_consumed(n);
                        self.dirty.insert(conn);
                    }
                }
                self.dirty_procs.insert(proc);
            }
            IoId::Stdout(proc) | IoId::Stderr(proc) => return Err(InputError::UnknownProc(proc)),
        }
        Ok(())
    }

    fn on_io_error(&mut self, io: IoId, error: String) -> Result<(), InputError> {
        match io {
            IoId::Conn(conn) => {
                let c = self.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_io_error(self.now.mono, error);
                self.dirty.insert(conn);
            }
            IoId::Stdin(proc) | IoId::Stdout(proc) | IoId::Stderr(proc) => {
                let p = self.procs.get_mut(&proc).ok_or(InputError::UnknownProc(proc))?;
                match io {
                    // The reader went away (a failing `zfs receive`): its exit
                    // status and stderr will say why.
                    IoId::Stdin(_) => {
                        p.stdin_open = false;
                        p.stdin_queue.clear();
                        p.stdin_queued = 0;
                    }
                    IoId::Stdout(_) => p.stdout_open = false,
                    _ => p.stderr_open = false,
                }
                self.dirty_procs.insert(proc);
            }
        }
        Ok(())
    }

    /// When a process has exited and its output is read, ends the stream it fed,
    /// forgets it, and returns what the app should learn.
    fn finish_proc_if_done(&mut self, proc: ProcId) -> Option<ProcessResult> {
        if !self.procs.get(&proc)?.is_done() {
            return None;
        }
        let mut p = self.procs.remove(&proc)?;
        self.dirty_procs.remove(&proc);
        let result = p.result()?;
        let now = self.now.mono;
        if let StdoutTo::Stream(conn) = p.stdout_to {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.session.has_outbound_stream() {
                    // Only a clean exit makes the stream complete; anything else
                    // aborts it so the receiver discards what it got.
                    let _ = if result.status.success() {
                        c.session.end_stream(now)
                    } else {
                        let reason = format!(
                            "`{}` failed ({}): {}",
                            p.spec_text, result.status, result.stderr
                        );
                        c.session.abort_stream(now, &reason)
                    };
                }
                self.dirty.insert(conn);
            }
        }
        if let StdinFrom::Stream(conn) = p.stdin_from {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.feeds = None;
            }
        }
        if let StdoutTo::Stream(conn) = p.stdout_to {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.fed_by = None;
            }
        }
        self.log(
            Level::Debug,
            format!("`{}` finished: {}, {} bytes", p.spec_text, result.status, result.bytes),
        );
        Some(result)
    }

    /// Emits interest changes, closes what is done.
    fn flush_interest(&mut self) {
        // Credit arriving on a connection may let its feeding process be read.
        for conn in &self.dirty {
            if let Some(proc) = self.conns.get(conn).and_then(|c| c.fed_by) {
                self.dirty_procs.insert(proc);
            }
        }
        let dirty = std::mem::take(&mut self.dirty);
        for conn in dirty {
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            if !c.connected {
                continue;
            }
            if c.session.should_drop() {
                // A process writing into this connection's stream would block
                // forever on a pipe nobody reads any more; one reading from it
                // must not take a cut stream for a complete one.
                let doomed = [c.feeds, c.fed_by];
                let (local_peer, in_process) = (c.local_peer, c.in_process);
                self.conns.remove(&conn);
                if !in_process {
                    self.outputs.push_back(Output::Action(Action::Close(conn)));
                }
                // The other end sees end of stream, as a socket's would.
                if let Some(p) = local_peer.and_then(|peer| self.conns.get_mut(&peer)) {
                    p.local_peer = None;
                    p.session.handle_read(self.now.mono, 0);
                    self.dirty_later.extend(local_peer);
                }
                for proc in doomed.into_iter().flatten() {
                    self.kill(proc);
                }
                continue;
            }
            let want = (c.session.wants_read(), c.session.wants_write());
            if want != c.interest && !c.in_process {
                c.interest = want;
                let (read, write) = want;
                self.outputs.push_back(Output::Action(Action::Interest {
                    io: IoId::Conn(conn),
                    read,
                    write,
                }));
            }
        }
        let dirty_procs = std::mem::take(&mut self.dirty_procs);
        for proc in dirty_procs {
            let Some(p) = self.procs.get_mut(&proc) else { continue };
            if p.stdin_open && p.stdin_ending && p.stdin_queue.is_empty() {
                p.stdin_open = false;
                self.outputs.push_back(Output::Action(Action::CloseStdin(proc)));
            }
            let stdout_capacity = match p.stdout_to {
                StdoutTo::Stream(conn) => {
                    // A spliced frame's bytes must leave the transit pipe first.
                    let spliced = self.splice
                        && self.conns.get(&conn).is_some_and(|c| c.session.has_spliced());
                    stdout_room(&self.conns, conn) > 0 && !spliced
                }
                StdoutTo::Collect | StdoutTo::Null => true,
            };
            let want = [
                (false, p.stdin_open && !p.stdin_queue.is_empty()),
                (p.stdout_open && stdout_capacity, false),
                (p.stderr_open, false),
            ];
            let ios = [IoId::Stdin(proc), IoId::Stdout(proc), IoId::Stderr(proc)];
            for i in 0..3 {
                if want[i] != p.interest[i] {
                    p.interest[i] = want[i];
                    let (read, write) = want[i];
                    self.outputs.push_back(Output::Action(Action::Interest {
                        io: ios[i],
                        read,
                        write,
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
