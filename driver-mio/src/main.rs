//! `zferry`: the node's actions executed with mio.
//!
//! One thread, one `Poll`. Every socket is registered edge-triggered for reading and
//! writing; the node's interest decides which of them the loop acts on. Tokens are
//! the node's own handle numbers, which it never reuses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice, Read, Write};
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use zferry_cli::{Clock, Driver, Report};
use zferry_core::node::{Action, App, ConnId, Endpoint, Input, ListenerId, Node, Output};

fn main() -> ExitCode {
    zferry_cli::main::<MioDriver>()
}

struct MioDriver;

/// Reads per readiness event before other sockets get a turn; the rest is picked
/// up on the next loop turn without waiting.
const READS_PER_TURN: usize = 16;
const MAX_IOVECS: usize = 64;

struct Conn {
    stream: TcpStream,
    connected: bool,
    want_write: bool,
}

struct Loop<A: App> {
    node: Node<A>,
    poll: Poll,
    clock: Clock,
    report: Report,
    listeners: BTreeMap<ListenerId, TcpListener>,
    conns: BTreeMap<ConnId, Conn>,
    /// Sockets that may have more to read than one turn took.
    read_again: BTreeSet<ConnId>,
    deadline: Option<zferry_core::time::Instant>,
}

impl Driver for MioDriver {
    fn run<A: App + 'static>(node: Node<A>, clock: Clock, report: Report) -> io::Result<i32> {
        let mut lp = Loop {
            node,
            poll: Poll::new()?,
            clock,
            report,
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            read_again: BTreeSet::new(),
            deadline: None,
        };
        lp.run()
    }
}

fn resolve(endpoint: &Endpoint) -> io::Result<std::net::SocketAddr> {
    let Endpoint::Tcp(addr) = endpoint;
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to nothing"))
    })
}

impl<A: App> Loop<A> {
    fn run(&mut self) -> io::Result<i32> {
        let mut events = Events::with_capacity(256);
        loop {
            self.drain()?;
            if let Some(code) = self.report.exit_code() {
                return Ok(code);
            }
            let timeout = if self.read_again.is_empty() {
                self.deadline.map(|d| self.clock.until(d))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let id = event.token().0 as u64;
                if self.listeners.contains_key(&ListenerId(id)) {
                    self.accept(ListenerId(id))?;
                    continue;
                }
                let conn = ConnId(id);
                if event.is_writable() || event.is_error() {
                    self.on_writable(conn)?;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(conn)?;
                }
            }
            for conn in std::mem::take(&mut self.read_again) {
                self.read(conn)?;
            }
            if self.deadline.is_some_and(|d| self.clock.now().mono >= d) {
                self.input(Input::Timeout)?;
            }
        }
    }

    fn input(&mut self, input: Input) -> io::Result<()> {
        self.node
            .handle_input(self.clock.now(), input)
            .map_err(|e| io::Error::other(format!("driver bug: {e}")))?;
        self.drain()
    }

    /// Executes every queued output, then flushes the sockets that want writing.
    fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.node.poll_output() {
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    break;
                }
                Output::Event(e) => self.report.event(e),
                Output::Action(a) => self.execute(a)?,
            }
        }
        let writers: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.want_write && c.connected)
            .map(|(id, _)| *id)
            .collect();
        for conn in writers {
            self.write(conn)?;
        }
        Ok(())
    }

    fn execute(&mut self, action: Action) -> io::Result<()> {
        match action {
            Action::Listen { listener, endpoint } => {
                let bound = resolve(&endpoint).and_then(TcpListener::bind);
                match bound {
                    Ok(mut l) => {
                        let local = l.local_addr()?.to_string();
                        self.poll.registry().register(
                            &mut l,
                            Token(listener.0 as usize),
                            Interest::READABLE,
                        )?;
                        self.listeners.insert(listener, l);
                        self.input(Input::Listening { listener, local })?;
                    }
                    Err(e) => self.input(Input::ListenFailed { listener, error: e.to_string() })?,
                }
            }
            Action::Unlisten(listener) => {
                if let Some(mut l) = self.listeners.remove(&listener) {
                    self.poll.registry().deregister(&mut l)?;
                }
            }
            Action::Connect { conn, endpoint } => match resolve(&endpoint)
                .and_then(TcpStream::connect)
            {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    self.poll.registry().register(&mut stream, Token(conn.0 as usize), interest)?;
                    self.conns.insert(conn, Conn { stream, connected: false, want_write: false });
                }
                Err(e) => self.input(Input::ConnectFailed { conn, error: e.to_string() })?,
            },
            Action::Close(conn) => {
                if let Some(mut c) = self.conns.remove(&conn) {
                    self.read_again.remove(&conn);
                    let _ = self.poll.registry().deregister(&mut c.stream);
                }
            }
            Action::Interest { conn, write, .. } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.want_write = write;
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, listener: ListenerId) -> io::Result<()> {
        loop {
            let Some(l) = self.listeners.get(&listener) else { return Ok(()) };
            let (mut stream, peer) = match l.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors and the like: say so, keep serving.
                    self.report.error(&format!("accept failed: {e}"));
                    return Ok(());
                }
            };
            let Some(conn) = self.node.accept(self.clock.now(), listener, peer.to_string()) else {
                continue;
            };
            stream.set_nodelay(true)?;
            self.poll.registry().register(
                &mut stream,
                Token(conn.0 as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            self.conns.insert(conn, Conn { stream, connected: true, want_write: false });
            self.drain()?;
        }
    }

    fn on_writable(&mut self, conn: ConnId) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
        if !c.connected {
            // A non-blocking connect finished, one way or the other.
            let failed = match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => c.stream.peer_addr().err(),
            };
            if let Some(e) = failed {
                if e.kind() == io::ErrorKind::NotConnected {
                    return Ok(()); // Spurious wakeup: still connecting.
                }
                self.conns.remove(&conn);
                return self.input(Input::ConnectFailed { conn, error: e.to_string() });
            }
            c.connected = true;
            c.stream.set_nodelay(true)?;
            return self.input(Input::Connected(conn));
        }
        self.write(conn)
    }

    fn write(&mut self, conn: ConnId) -> io::Result<()> {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.node.io_slices(conn, &mut slices);
            if n == 0 {
                return Ok(());
            }
            let result = c.stream.write_vectored(&slices[..n]);
            match result {
                Ok(written) => self.input(Input::Written { conn, n: written })?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.input(Input::IoError { conn, error: e.to_string() }),
            }
        }
    }

    fn read(&mut self, conn: ConnId) -> io::Result<()> {
        for _ in 0..READS_PER_TURN {
            let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
            if !c.connected {
                return Ok(());
            }
            let Some(slot) = self.node.read_slot(conn) else { return Ok(()) };
            match c.stream.read(slot) {
                Ok(n) => {
                    self.input(Input::Read { conn, n })?;
                    if n == 0 {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.input(Input::IoError { conn, error: e.to_string() }),
            }
        }
        self.read_again.insert(conn);
        Ok(())
    }
}
