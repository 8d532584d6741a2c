//! The node's actions executed with mio: the driver of the `zferry` binary.
//!
//! One thread, one `Poll`. Sockets and pipes are registered edge-triggered; the
//! node's interest decides which of them the loop acts on, and a newly raised
//! interest gets an immediate attempt, since no new edge may come. Tokens encode the
//! node's own handle numbers, which it never reuses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::Child;
use std::time::Duration;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::unix::pipe;
use mio::{Events, Interest, Poll, Token, Waker};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use zferry_cli::net::{self, Target};
use zferry_cli::splice::{self, Transit};
use zferry_cli::{process, Clock, Driver, Report};
use zferry_core::limits::{MAX_IOVECS, READS_PER_TURN, REAP_INTERVAL};
use zferry_core::node::{
    Action, App, ConnId, Input, IoId, ListenerId, Node, Output, ProcId, ProcessSpec,
};

/// Executes a node's actions; the `zferry` binary is [`zferry_cli::main`] with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MioDriver;

/// Outside the node's handle space (handles are shifted left by two bits).
const SIGNALS: Token = Token(usize::MAX);
/// Wakes the loop when a name lookup (run on its own thread) has finished.
const LOOKUPS: Token = Token(usize::MAX - 1);

/// A child exited (SIGCHLD): reap it now rather than at the next tick.
const CHILD_EXITS: Token = Token(usize::MAX - 2);

/// A finished name lookup for a connection.
type Lookup = (ConnId, io::Result<Target>);

fn token(io: IoId) -> Token {
    let (id, kind) = match io {
        IoId::Conn(c) => (c.0, 0),
        IoId::Stdin(p) => (p.0, 1),
        IoId::Stdout(p) => (p.0, 2),
        IoId::Stderr(p) => (p.0, 3),
    };
    Token((id as usize) << 2 | kind)
}

fn io_of(t: Token) -> IoId {
    let id = (t.0 >> 2) as u64;
    match t.0 & 3 {
        0 => IoId::Conn(ConnId(id)),
        1 => IoId::Stdin(ProcId(id)),
        2 => IoId::Stdout(ProcId(id)),
        _ => IoId::Stderr(ProcId(id)),
    }
}

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Socket::Tcp(s) => s,
            Socket::Unix(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }

    /// Whether a non-blocking connect has finished, and how.
    fn connect_result(&mut self) -> Option<io::Error> {
        match self {
            Socket::Tcp(s) => match s.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => s.peer_addr().err(),
            },
            Socket::Unix(s) => s.take_error().unwrap_or_else(Some),
        }
    }
}

enum Acceptor {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Acceptor {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Acceptor::Tcp(l) => l,
            Acceptor::Unix(l) => l,
        }
    }

    fn accept(&self) -> io::Result<(Socket, String)> {
        match self {
            Acceptor::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Socket::Tcp(s), peer.to_string()))
            }
            Acceptor::Unix(l) => {
                l.accept().map(|(s, _)| (Socket::Unix(s), "unix client".to_owned()))
            }
        }
    }
}

struct Conn {
    stream: Socket,
    connected: bool,
}

struct Proc {
    child: Child,
    stdin: Option<pipe::Sender>,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    exit_reported: bool,
}

struct Loop<A: App> {
    node: Node<A>,
    poll: Poll,
    clock: Clock,
    report: Report,
    listeners: BTreeMap<ListenerId, Acceptor>,
    conns: BTreeMap<ConnId, Conn>,
    procs: BTreeMap<ProcId, Proc>,
    /// Sockets and pipes the node wants written.
    writers: BTreeSet<IoId>,
    /// Writers whose last write would have blocked: retried on their writable edge,
    /// not after every read (which would only fail again).
    blocked: BTreeSet<IoId>,
    /// Sockets and pipes to read without waiting for an edge.
    read_again: BTreeSet<IoId>,
    /// Transit pipes of the connections a child's stdout is spliced into.
    transits: BTreeMap<ConnId, Transit>,
    deadline: Option<zferry_core::time::Instant>,
    signals: mio::net::UnixStream,
    child_exits: mio::net::UnixStream,
    /// Connections waiting for a name lookup, and where the lookups report.
    resolving: BTreeSet<ConnId>,
    lookups: (Sender<Lookup>, Receiver<Lookup>),
    waker: Arc<Waker>,
}

impl Driver for MioDriver {
    fn run<A: App + 'static>(node: Node<A>, clock: Clock, report: Report) -> io::Result<i32> {
        let poll = Poll::new()?;
        let mut signals = mio::net::UnixStream::from_std(zferry_cli::shutdown_signals()?);
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), LOOKUPS)?);
        let mut child_exits = mio::net::UnixStream::from_std(zferry_cli::child_exits()?);
        poll.registry().register(&mut child_exits, CHILD_EXITS, Interest::READABLE)?;
        let mut lp = Loop {
            child_exits,
            resolving: BTreeSet::new(),
            lookups: channel(),
            waker,
            node,
            poll,
            signals,
            clock,
            report,
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            procs: BTreeMap::new(),
            writers: BTreeSet::new(),
            blocked: BTreeSet::new(),
            read_again: BTreeSet::new(),
            transits: BTreeMap::new(),
            deadline: None,
        };
        if zferry_cli::splice::wanted() {
            lp.node.set_splice(true);
        }
        let result = lp.run();
        // Never leave a child behind: the node's work is over, or failed.
        for p in lp.procs.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        result
    }
}

fn bind(target: Target) -> io::Result<(Acceptor, String)> {
    match target {
        Target::Tcp(addr) => {
            let l = TcpListener::bind(addr)?;
            let local = l.local_addr()?.to_string();
            Ok((Acceptor::Tcp(l), local))
        }
        Target::Unix(path) => {
            let l = UnixListener::from_std(net::bind_unix(&path)?);
            Ok((Acceptor::Unix(l), path.display().to_string()))
        }
    }
}

fn connect(target: Target) -> io::Result<Socket> {
    match target {
        Target::Tcp(addr) => TcpStream::connect(addr).map(Socket::Tcp),
        Target::Unix(path) => Ok(Socket::Unix(UnixStream::from_std(net::connect_unix(&path)?))),
    }
}

impl<A: App> Loop<A> {
    fn run(&mut self) -> io::Result<i32> {
        let mut events = Events::with_capacity(256);
        loop {
            self.drain()?;
            if let Some(code) = self.report.exit_code() {
                return Ok(code);
            }
            let reaping = self.procs.values().any(|p| p.stdout.is_none() && p.stderr.is_none());
            let mut timeout = self.deadline.map(|d| self.clock.until(d));
            if reaping {
                timeout = Some(timeout.map_or(REAP_INTERVAL, |t| t.min(REAP_INTERVAL)));
            }
            if !self.read_again.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                if event.token() == LOOKUPS {
                    while let Ok((conn, target)) = self.lookups.1.try_recv() {
                        // A connection closed while its name was looked up is gone.
                        if self.resolving.remove(&conn) {
                            self.connect_to(conn, target)?;
                        }
                    }
                    continue;
                }
                if event.token() == SIGNALS {
                    let mut buf = [0u8; 64];
                    while matches!(self.signals.read(&mut buf), Ok(n) if n > 0) {}
                    self.input(Input::Shutdown)?;
                    continue;
                }
                if event.token() == CHILD_EXITS {
                    let mut buf = [0u8; 64];
                    while matches!(self.child_exits.read(&mut buf), Ok(n) if n > 0) {}
                    continue;
                }
                if self.listeners.contains_key(&ListenerId((event.token().0 >> 2) as u64))
                    && event.token().0 & 3 == 0
                {
                    self.accept(ListenerId((event.token().0 >> 2) as u64))?;
                    continue;
                }
                let io = io_of(event.token());
                if event.is_writable() || event.is_error() {
                    self.on_writable(io)?;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(io)?;
                }
            }
            for io in std::mem::take(&mut self.read_again) {
                self.read(io)?;
            }
            // Every turn, not only on the timer: a child's last pipe closing and its
            // SIGCHLD each end a turn, and whichever comes second finds it exited.
            self.reap()?;
            if self.deadline.is_some_and(|d| self.clock.now().mono >= d) {
                self.input(Input::Timeout)?;
            }
        }
    }

    fn input(&mut self, input: Input) -> io::Result<()> {
        self.node
            .handle_input(self.clock.now(), input)
            .map_err(|e| io::Error::other(format!("driver bug: {e}")))
    }

    /// Executes every queued output, then flushes what wants writing.
    fn drain(&mut self) -> io::Result<()> {
        loop {
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
            let mut wrote = false;
            let ready: Vec<IoId> = self.writers.difference(&self.blocked).copied().collect();
            for io in ready {
                wrote |= self.write(io)?;
            }
            if !wrote {
                return Ok(());
            }
        }
    }

    fn execute(&mut self, action: Action) -> io::Result<()> {
        match action {
            Action::Listen { listener, endpoint } => match net::resolve(&endpoint).and_then(bind) {
                Ok((mut l, local)) => {
                    let t = Token((listener.0 as usize) << 2);
                    self.poll.registry().register(l.source(), t, Interest::READABLE)?;
                    self.listeners.insert(listener, l);
                    self.input(Input::Listening { listener, local })?;
                }
                Err(e) => self.input(Input::ListenFailed { listener, error: e.to_string() })?,
            },
            Action::Unlisten(listener) => {
                if let Some(mut l) = self.listeners.remove(&listener) {
                    self.poll.registry().deregister(l.source())?;
                }
            }
            Action::Connect { conn, endpoint } => match net::resolve_without_lookup(&endpoint) {
                Ok(Some(target)) => self.connect_to(conn, Ok(target))?,
                Ok(None) => {
                    self.resolving.insert(conn);
                    let (tx, waker) = (self.lookups.0.clone(), self.waker.clone());
                    std::thread::spawn(move || {
                        let _ = tx.send((conn, net::resolve(&endpoint)));
                        let _ = waker.wake();
                    });
                }
                Err(e) => self.connect_to(conn, Err(e))?,
            },
            Action::Close(conn) => {
                self.resolving.remove(&conn);
                self.transits.remove(&conn);
                if let Some(mut c) = self.conns.remove(&conn) {
                    let _ = self.poll.registry().deregister(c.stream.source());
                }
                self.forget(IoId::Conn(conn));
            }
            Action::Spawn { proc, spec } => self.spawn(proc, &spec)?,
            Action::CloseStdin(proc) => {
                if let Some(mut tx) = self.procs.get_mut(&proc).and_then(|p| p.stdin.take()) {
                    let _ = self.poll.registry().deregister(&mut tx);
                }
                self.forget(IoId::Stdin(proc));
            }
            Action::Kill(proc) => {
                if let Some(p) = self.procs.get_mut(&proc) {
                    let _ = p.child.kill();
                }
            }
            Action::Interest { io, read, write } => {
                if write {
                    self.writers.insert(io);
                } else {
                    self.writers.remove(&io);
                }
                if read {
                    self.read_again.insert(io);
                }
            }
        }
        Ok(())
    }

    fn connect_to(&mut self, conn: ConnId, target: io::Result<Target>) -> io::Result<()> {
        match target.and_then(connect) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                let t = token(IoId::Conn(conn));
                self.poll.registry().register(stream.source(), t, interest)?;
                self.conns.insert(conn, Conn { stream, connected: false });
                Ok(())
            }
            Err(e) => self.input(Input::ConnectFailed { conn, error: e.to_string() }),
        }
    }

    fn forget(&mut self, io: IoId) {
        self.writers.remove(&io);
        self.blocked.remove(&io);
        self.read_again.remove(&io);
    }

    fn spawn(&mut self, proc: ProcId, spec: &ProcessSpec) -> io::Result<()> {
        let mut child = match process::spawn(spec) {
            Ok(c) => c,
            Err(e) => return self.input(Input::SpawnFailed { proc, error: e.to_string() }),
        };
        let registry = self.poll.registry();
        let stdin = match child.stdin.take() {
            Some(s) => {
                let mut tx = pipe::Sender::from(s);
                tx.set_nonblocking(true)?;
                registry.register(&mut tx, token(IoId::Stdin(proc)), Interest::WRITABLE)?;
                Some(tx)
            }
            None => None,
        };
        let reader = |rx: Option<pipe::Receiver>, io: IoId| -> io::Result<Option<pipe::Receiver>> {
            let Some(mut rx) = rx else { return Ok(None) };
            rx.set_nonblocking(true)?;
            registry.register(&mut rx, token(io), Interest::READABLE)?;
            Ok(Some(rx))
        };
        let stdout = reader(child.stdout.take().map(pipe::Receiver::from), IoId::Stdout(proc))?;
        let stderr = reader(child.stderr.take().map(pipe::Receiver::from), IoId::Stderr(proc))?;
        self.procs.insert(proc, Proc { child, stdin, stdout, stderr, exit_reported: false });
        Ok(())
    }

    /// Reports the exit of children whose pipes are all closed.
    fn reap(&mut self) -> io::Result<()> {
        let candidates: Vec<ProcId> = self
            .procs
            .iter()
            .filter(|(_, p)| p.stdout.is_none() && p.stderr.is_none() && !p.exit_reported)
            .map(|(id, _)| *id)
            .collect();
        for proc in candidates {
            let Some(p) = self.procs.get_mut(&proc) else { continue };
            if let Some(status) = p.child.try_wait()? {
                p.exit_reported = true;
                let status = process::exit_status(status);
                self.procs.remove(&proc);
                self.forget(IoId::Stdin(proc));
                self.input(Input::Exited { proc, status })?;
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
            let Some(conn) = self.node.accept(self.clock.now(), listener, peer) else {
                continue;
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll.registry().register(stream.source(), token(IoId::Conn(conn)), interest)?;
            self.conns.insert(conn, Conn { stream, connected: true });
            // Read before the first write, as the smol driver does: a peer that
            // already hung up is then reported as such, not as our broken pipe.
            self.read(IoId::Conn(conn))?;
            self.drain()?;
        }
    }

    fn on_writable(&mut self, io: IoId) -> io::Result<()> {
        if let IoId::Conn(conn) = io {
            let Some(c) = self.conns.get_mut(&conn) else { return Ok(()) };
            if !c.connected {
                // A non-blocking connect finished, one way or the other.
                if let Some(e) = c.stream.connect_result() {
                    if e.kind() == io::ErrorKind::NotConnected {
                        return Ok(()); // Spurious wakeup: still connecting.
                    }
                    if let Some(mut c) = self.conns.remove(&conn) {
                        let _ = self.poll.registry().deregister(c.stream.source());
                    }
                    return self.input(Input::ConnectFailed { conn, error: e.to_string() });
                }
                c.connected = true;
                if let Socket::Tcp(s) = &c.stream {
                    s.set_nodelay(true)?;
                }
                return self.input(Input::Connected(conn));
            }
        }
        self.blocked.remove(&io);
        if self.writers.contains(&io) {
            self.write(io)?;
        }
        Ok(())
    }

    /// Writes until done or blocked; true if anything was written.
    fn write(&mut self, io: IoId) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.node.io_slices(io, &mut slices);
            let spliced = match io {
                IoId::Conn(c) if n == 0 => self.node.spliced_front(c).map(|len| (c, len)),
                _ => None,
            };
            if n == 0 && spliced.is_none() {
                return Ok(wrote);
            }
            let result = match io {
                IoId::Conn(c) => match (self.conns.get_mut(&c), spliced) {
                    (Some(conn), Some((_, len))) if conn.connected => match self.transits.get(&c) {
                        Some(t) => t.drain(conn.stream.fd(), len),
                        None => Err(io::Error::other("spliced bytes without a transit pipe")),
                    },
                    (Some(c), None) if c.connected => c.stream.write_vectored(&slices[..n]),
                    _ => return Ok(wrote),
                },
                IoId::Stdin(p) => match self.procs.get_mut(&p).and_then(|p| p.stdin.as_mut()) {
                    Some(tx) => tx.write_vectored(&slices[..n]),
                    None => return Ok(wrote),
                },
                IoId::Stdout(_) | IoId::Stderr(_) => return Ok(wrote),
            };
            match result {
                Ok(written) => {
                    wrote = true;
                    self.input(Input::Written { io, n: written })?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked.insert(io);
                    return Ok(wrote);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if spliced.is_some() && splice::unsupported(&e) {
                        self.input(Input::SpliceRefused { error: e.to_string() })?;
                    }
                    // Unusable now. A closed session may still hold bytes for it
                    // until it lingers out; retrying them would spin the loop.
                    self.writers.remove(&io);
                    self.input(Input::IoError { io, error: e.to_string() })?;
                    return Ok(true);
                }
            }
        }
    }

    fn read(&mut self, io: IoId) -> io::Result<()> {
        for _ in 0..READS_PER_TURN {
            let splice_to = self.node.splice_slot(io);
            let result = match splice_to {
                Some((conn, max)) => self.fill_transit(io, conn, max),
                None => {
                    let Some(slot) = self.node.read_slot(io) else { return Ok(()) };
                    match io {
                        IoId::Conn(c) => match self.conns.get_mut(&c) {
                            Some(c) if c.connected => c.stream.read(slot),
                            _ => return Ok(()),
                        },
                        IoId::Stdout(p) => {
                            match self.procs.get_mut(&p).and_then(|p| p.stdout.as_mut()) {
                                Some(rx) => rx.read(slot),
                                None => return Ok(()),
                            }
                        }
                        IoId::Stderr(p) => {
                            match self.procs.get_mut(&p).and_then(|p| p.stderr.as_mut()) {
                                Some(rx) => rx.read(slot),
                                None => return Ok(()),
                            }
                        }
                        IoId::Stdin(_) => return Ok(()),
                    }
                }
            };
            match result {
                Err(e) if splice_to.is_some() && splice::unsupported(&e) => {
                    // Nothing moved; read this and every later stream as usual.
                    self.input(Input::SpliceRefused { error: e.to_string() })?;
                    self.drain()?;
                }
                Ok(n) => {
                    if n == 0 {
                        self.close_reader(io)?;
                    }
                    let input = if splice_to.is_some() {
                        Input::Spliced { io, n }
                    } else {
                        Input::Read { io, n }
                    };
                    self.input(input)?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.drain()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close_reader(io)?;
                    return self.input(Input::IoError { io, error: e.to_string() });
                }
            }
        }
        self.read_again.insert(io);
        Ok(())
    }

    /// Splices up to `max` bytes of `io` (a child's stdout) into `conn`'s transit pipe.
    fn fill_transit(&mut self, io: IoId, conn: ConnId, max: usize) -> io::Result<usize> {
        let IoId::Stdout(p) = io else { return Err(io::ErrorKind::Unsupported.into()) };
        let Some(rx) = self.procs.get(&p).and_then(|p| p.stdout.as_ref()) else {
            return Err(io::Error::other("no stdout to splice"));
        };
        splice::transit(&mut self.transits, conn)?.fill(rx, max)
    }

    /// Drops a pipe that reached its end; sockets stay until the node closes them.
    fn close_reader(&mut self, io: IoId) -> io::Result<()> {
        let pipe = match io {
            IoId::Stdout(p) => self.procs.get_mut(&p).and_then(|p| p.stdout.take()),
            IoId::Stderr(p) => self.procs.get_mut(&p).and_then(|p| p.stderr.take()),
            IoId::Conn(_) | IoId::Stdin(_) => None,
        };
        if let Some(mut rx) = pipe {
            self.poll.registry().deregister(&mut rx)?;
            self.forget(io);
        }
        Ok(())
    }
}
