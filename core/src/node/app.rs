//! The application side of a node: what runs on top of the connections.

use super::{
    Action, Conn, ConnId, Endpoint, Event, Level, Listener, ListenerId, Output, Proc, ProcId,
    ProcessResult, ProcessSpec, StdinFrom, StdoutTo, Transport,
};
use crate::rpc::{Role, Session, SessionEvent};
use crate::time::{Instant, Now};

/// An application hosted by a [`Node`](super::Node). Every method gets an
/// [`AppCtx`] to act on connections; none of them may block or do I/O.
pub trait App {
    /// Called once, when the node is created.
    fn start(&mut self, ctx: &mut AppCtx<'_>);
    fn on_listening(&mut self, _ctx: &mut AppCtx<'_>, _listener: ListenerId, _local: &str) {}
    fn on_listen_failed(&mut self, ctx: &mut AppCtx<'_>, listener: ListenerId, error: &str);
    fn on_accept(
        &mut self,
        _ctx: &mut AppCtx<'_>,
        _listener: ListenerId,
        _conn: ConnId,
        _peer: &str,
    ) {
    }
    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent);
    /// The connection is gone: `error` is `None` after a graceful close.
    fn on_conn_closed(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, error: Option<String>);
    /// A process started with [`AppCtx::spawn`] exited and its output is read.
    fn on_process_done(&mut self, _ctx: &mut AppCtx<'_>, _proc: ProcId, _result: ProcessResult) {}
    /// After every input: a chance to send stream data as capacity allows.
    fn poll(&mut self, _ctx: &mut AppCtx<'_>) {}
    fn on_timeout(&mut self, _ctx: &mut AppCtx<'_>) {}
    fn on_shutdown(&mut self, ctx: &mut AppCtx<'_>);
    /// The app's own next deadline.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// `Some(code)` once the app is finished and the process should exit.
    fn exit_code(&self) -> Option<i32>;
}

fn new_conn(t: &Transport, role: Role, peer: String, socket: bool) -> Conn {
    Conn {
        session: Session::new(role, t.session_config.clone(), t.now.mono),
        // An in-process connection is connected from the start.
        connected: !socket,
        peer,
        interest: (false, false),
        feeds: None,
        fed_by: None,
        local_peer: None,
        in_process: !socket,
    }
}

/// What an app may do: open and close connections, use their sessions, log.
#[derive(Debug)]
pub struct AppCtx<'a> {
    pub(super) transport: &'a mut Transport,
}

impl AppCtx<'_> {
    pub fn now(&self) -> Now {
        self.transport.now
    }

    pub fn listen(&mut self, endpoint: Endpoint) -> ListenerId {
        let listener = ListenerId(self.transport.alloc_id());
        if let Endpoint::Local(name) = &endpoint {
            // In-process: bound at once, and no driver is involved.
            let bound = Some(format!("local:{name}"));
            self.transport.listeners.insert(listener, Listener { endpoint, bound });
            return listener;
        }
        self.transport
            .listeners
            .insert(listener, Listener { endpoint: endpoint.clone(), bound: None });
        self.transport.outputs.push_back(Output::Action(Action::Listen { listener, endpoint }));
        listener
    }

    pub fn unlisten(&mut self, listener: ListenerId) {
        if self.transport.listeners.remove(&listener).is_some() {
            self.transport.outputs.push_back(Output::Action(Action::Unlisten(listener)));
        }
    }

    /// The address a listener is bound to, once the driver reported it.
    pub fn listener_address(&self, listener: ListenerId) -> Option<&str> {
        self.transport.listeners.get(&listener)?.bound.as_deref()
    }

    /// Opens a client connection; its session starts once the socket connects.
    /// A [`Endpoint::Local`] connection is made at once, to this node's own
    /// listener of that name, or fails if there is none.
    pub fn connect(&mut self, endpoint: Endpoint) -> ConnId {
        self.connect_as(endpoint, "")
    }

    /// Like [`AppCtx::connect`]; an in-process peer learns `identity` as the
    /// client's name (zrepl's `client_identity`), as a TCP peer learns an address.
    pub fn connect_as(&mut self, endpoint: Endpoint, identity: &str) -> ConnId {
        let conn = ConnId(self.transport.alloc_id());
        let t = &mut *self.transport;
        let local = matches!(endpoint, Endpoint::Local(_));
        let client = new_conn(t, Role::Client, endpoint.to_string(), !local);
        t.conns.insert(conn, client);
        if !local {
            t.outputs.push_back(Output::Action(Action::Connect { conn, endpoint }));
            return conn;
        }
        let listener = t.listeners.iter().find(|(_, l)| l.endpoint == endpoint).map(|(id, _)| *id);
        match listener {
            Some(listener) => {
                let server = ConnId(t.alloc_id());
                let mut s = new_conn(t, Role::Server, format!("local:{identity}"), false);
                s.local_peer = Some(conn);
                t.conns.insert(server, s);
                if let Some(c) = t.conns.get_mut(&conn) {
                    c.local_peer = Some(server);
                }
                t.dirty.insert(conn);
                t.dirty.insert(server);
                t.local_accepts.push_back((listener, server));
            }
            None => {
                t.conns.remove(&conn);
                t.local_failures.push_back((conn, format!("no local listener named {endpoint}")));
            }
        }
        conn
    }

    /// The connection's session, if it is still open.
    pub fn session(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.transport.dirty.insert(conn);
        self.transport.conns.get_mut(&conn).map(|c| &mut c.session)
    }

    /// Closes gracefully: goodbye, bounded wait, then the socket.
    pub fn close(&mut self, conn: ConnId, reason: &str) {
        let now = self.transport.now.mono;
        if let Some(s) = self.session(conn) {
            s.close(now, reason);
        }
    }

    /// Starts a process. Its stdout and stdin are routed as asked; the node moves
    /// stream bytes itself, under the session's credit. Every command is logged
    /// here, the one place all of them pass.
    pub fn spawn(&mut self, mut spec: ProcessSpec, stdout: StdoutTo, stdin: StdinFrom) -> ProcId {
        let proc = ProcId(self.transport.alloc_id());
        spec.stdout = stdout != StdoutTo::Null;
        spec.stdin = stdin != StdinFrom::Null;
        if let StdinFrom::Stream(conn) = stdin {
            if let Some(c) = self.transport.conns.get_mut(&conn) {
                c.feeds = Some(proc);
            }
        }
        if let StdoutTo::Stream(conn) = stdout {
            if let Some(c) = self.transport.conns.get_mut(&conn) {
                c.fed_by = Some(proc);
            }
        }
        self.log(Level::Debug, format!("running `{spec}`"));
        self.transport.procs.insert(proc, Proc::new(&spec, stdout, stdin));
        self.transport.dirty_procs.insert(proc);
        self.transport.outputs.push_back(Output::Action(Action::Spawn { proc, spec }));
        proc
    }

    /// Queues bytes for a process's stdin, as if they came from its stream: for
    /// stream data that arrived before the process was started.
    pub fn feed_stdin(&mut self, proc: ProcId, data: bytes::Bytes) {
        if let Some(p) = self.transport.procs.get_mut(&proc) {
            if p.stdin_open && !data.is_empty() {
                p.queue_stdin(data);
                self.transport.dirty_procs.insert(proc);
            }
        }
    }

    /// The process's input is complete: its stdin closes once the queue is written.
    pub fn end_stdin(&mut self, proc: ProcId) {
        self.transport.end_stdin(proc);
    }

    /// Bytes that went through the process's piped stdout or stdin so far.
    pub fn process_bytes(&self, proc: ProcId) -> Option<u64> {
        self.transport.procs.get(&proc).map(|p| p.bytes)
    }

    /// Kills a process; it is still reported through `on_process_done`.
    pub fn kill(&mut self, proc: ProcId) {
        self.transport.kill(proc);
    }

    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.transport.conns.keys().copied().collect()
    }

    /// Prints a line for the user on stdout.
    pub fn print(&mut self, text: impl Into<String>) {
        self.transport.outputs.push_back(Output::Event(Event::Print(text.into())));
    }

    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.transport
            .outputs
            .push_back(Output::Event(Event::Log { level, message: message.into() }));
    }
}
