//! The node: the one state machine a driver runs.
//!
//! A node owns every connection's [`Session`](crate::rpc::Session), the listeners,
//! and the application on top (for now the transport probe; the replication jobs
//! join it). It takes [`Input`]s and hands out [`Output`]s, in the manner of str0m:
//! after each input, drain [`Node::poll_output`] until it returns
//! [`Output::Timeout`], executing each action, before giving the next input.
//!
//! Buffers belong to the node. To read, a driver asks [`Node::read_slot`] for a
//! region, reads the socket into it and reports [`Input::Read`]; to write, it takes
//! [`Node::io_slices`], makes one vectored write and reports [`Input::Written`].
//! Every handle is an integer the node allocated.
//!
//! Readiness contract: a driver attempts a write on every connection whose last
//! [`Action::Interest`] asked for writing, right after draining the outputs and again
//! whenever the socket becomes writable; it reads whenever the socket is readable and
//! a read slot is offered. This works alike with edge-triggered (mio) and awaited
//! (smol) readiness.

mod app;
mod conn;

pub use app::{App, AppCtx};
pub use conn::{ConnId, Endpoint, ListenerId};

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
    /// `n` bytes were read into the connection's read slot; 0 is end of stream.
    Read {
        conn: ConnId,
        n: usize,
    },
    /// `n` bytes of the offered slices were written.
    Written {
        conn: ConnId,
        n: usize,
    },
    /// Reading or writing failed; the connection is gone.
    IoError {
        conn: ConnId,
        error: String,
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
    /// Whether the node wants to read from and write to the connection.
    Interest { conn: ConnId, read: bool, write: bool },
}

/// What the node reports to the person running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Log {
        level: Level,
        message: String,
    },
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
    #[error("{0:?} is not waiting to connect")]
    NotConnecting(ConnId),
}

#[derive(Debug)]
struct Conn {
    session: Session,
    /// False until the socket is connected (outgoing connections).
    connected: bool,
    peer: String,
    /// The interest last announced to the driver.
    interest: (bool, bool),
}

#[derive(Debug)]
struct Listener {
    endpoint: Endpoint,
    bound: Option<String>,
}

/// The transport half of a node: connections, listeners, queued outputs. Apps
/// reach it through [`AppCtx`].
#[derive(Debug)]
pub struct Transport {
    conns: BTreeMap<ConnId, Conn>,
    listeners: BTreeMap<ListenerId, Listener>,
    outputs: VecDeque<Output>,
    /// Connections whose state changed since outputs were last computed.
    dirty: BTreeSet<ConnId>,
    next_id: u64,
    session_config: SessionConfig,
    now: Now,
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
                outputs: VecDeque::new(),
                dirty: BTreeSet::new(),
                next_id: 1,
                session_config,
                now,
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

    /// Where to read the connection's next bytes; `None` if it wants none now.
    pub fn read_slot(&mut self, conn: ConnId) -> Option<&mut [u8]> {
        let c = self.transport.conns.get_mut(&conn)?;
        if !c.connected {
            return None;
        }
        c.session.read_slot()
    }

    /// The connection's queued bytes, for one vectored write.
    pub fn io_slices<'a>(&'a self, conn: ConnId, out: &mut [IoSlice<'a>]) -> usize {
        match self.transport.conns.get(&conn) {
            Some(c) if c.connected => c.session.io_slices(out),
            _ => 0,
        }
    }

    /// A new incoming connection on `listener`. Returns its handle, or `None` if
    /// the node refuses it (the driver then closes the socket at once).
    pub fn accept(&mut self, now: Now, listener: ListenerId, peer: String) -> Option<ConnId> {
        self.transport.now = now;
        if !self.transport.listeners.contains_key(&listener)
            || self.transport.conns.len() >= crate::limits::MAX_CONNECTIONS
        {
            self.transport
                .log(Level::Warn, format!("refused connection from {peer}: too many connections"));
            return None;
        }
        let conn = ConnId(self.transport.alloc_id());
        let session = Session::new(Role::Server, self.transport.session_config.clone(), now.mono);
        self.transport.conns.insert(
            conn,
            Conn { session, connected: true, peer: peer.clone(), interest: (false, false) },
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
            Input::Read { conn, n } => {
                let c = t.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_read(now.mono, n);
                t.dirty.insert(conn);
            }
            Input::Written { conn, n } => {
                let c = t.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_written(now.mono, n);
                t.dirty.insert(conn);
            }
            Input::IoError { conn, error } => {
                let c = t.conns.get_mut(&conn).ok_or(InputError::UnknownConn(conn))?;
                c.session.handle_io_error(now.mono, error);
                t.dirty.insert(conn);
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

    /// Delivers session events to the app until quiet, then turns state changes
    /// into actions. Bounded: each pass either consumes events or stops.
    fn settle(&mut self) {
        loop {
            let mut delivered = false;
            let dirty: Vec<ConnId> = self.transport.dirty.iter().copied().collect();
            for conn in dirty {
                while let Some(ev) =
                    self.transport.conns.get_mut(&conn).and_then(|c| c.session.poll_event())
                {
                    delivered = true;
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
            self.with_app(|app, ctx| app.poll(ctx));
            if !delivered && !self.transport.has_pending_events() {
                break;
            }
        }
        self.transport.flush_interest();
        if !self.exited {
            if let Some(code) = self.app.exit_code() {
                self.exited = true;
                self.transport.outputs.push_back(Output::Event(Event::Exit(code)));
            }
        }
    }
}

impl Transport {
    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn has_pending_events(&self) -> bool {
        self.dirty.iter().any(|c| self.conns.get(c).is_some_and(|c| c.session.has_events()))
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

    /// Emits interest changes and closes connections whose sessions are done.
    fn flush_interest(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for conn in dirty {
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            if !c.connected {
                continue;
            }
            if c.session.should_drop() {
                self.conns.remove(&conn);
                self.outputs.push_back(Output::Action(Action::Close(conn)));
                continue;
            }
            let want = (c.session.wants_read(), c.session.wants_write());
            if want != c.interest {
                c.interest = want;
                self.outputs.push_back(Output::Action(Action::Interest {
                    conn,
                    read: want.0,
                    write: want.1,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests;
