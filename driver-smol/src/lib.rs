//! The node's actions executed with smol: the driver of the `zferry-smol` binary.
//!
//! One thread, one `LocalExecutor`. The node, the sockets and the pipes live in a
//! shared `State`; small tasks wait for readiness (readable, writable, a timer, an
//! accept, a child's exit) and then call into the state, which does the
//! non-blocking I/O with the node's buffers and executes the node's outputs. No
//! task holds the state across an await.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::rc::{Rc, Weak};

use smol::channel::{self, Receiver, Sender};
use smol::{Async, LocalExecutor, Timer};
use zferry_cli::net::{self, Target};
use zferry_cli::splice::{self, Transit};
use zferry_cli::{process, Clock, Driver, Report};
use zferry_core::limits::{MAX_IOVECS, READS_PER_TURN, REAP_INTERVAL};
use zferry_core::node::{
    Action, App, ConnId, Endpoint, Input, IoId, ListenerId, Node, Output, ProcId, ProcessSpec,
};
use zferry_core::time::Instant;

/// Executes a node's actions; the `zferry-smol` binary is [`zferry_cli::main`] with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolDriver;

/// A socket or a pipe; both are read and written through shared references.
enum Handle {
    Tcp(Async<TcpStream>),
    Unix(Async<UnixStream>),
    Pipe(Async<File>),
}

impl Handle {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Handle::Tcp(s) => s.get_ref().read(buf),
            Handle::Unix(s) => s.get_ref().read(buf),
            Handle::Pipe(f) => f.get_ref().read(buf),
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Handle::Tcp(s) => s.get_ref().write_vectored(bufs),
            Handle::Unix(s) => s.get_ref().write_vectored(bufs),
            Handle::Pipe(f) => f.get_ref().write_vectored(bufs),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Handle::Tcp(s) => s.as_fd(),
            Handle::Unix(s) => s.as_fd(),
            Handle::Pipe(f) => f.as_fd(),
        }
    }

    async fn readable(&self) -> io::Result<()> {
        match self {
            Handle::Tcp(s) => s.readable().await,
            Handle::Unix(s) => s.readable().await,
            Handle::Pipe(f) => f.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Handle::Tcp(s) => s.writable().await,
            Handle::Unix(s) => s.writable().await,
            Handle::Pipe(f) => f.writable().await,
        }
    }
}

struct IoEntry {
    handle: Rc<Handle>,
    /// Wakes the reader task when the node wants reading again.
    read_wake: Option<Sender<()>>,
    /// Wakes the writer task when the node has bytes to write.
    write_wake: Option<Sender<()>>,
}

enum Turn {
    /// The handle is gone; the task ends.
    Gone,
    /// Would block: wait for readiness.
    Blocked,
    /// The node wants no I/O now: wait to be woken.
    Paused,
    /// More may be ready: yield, then go on.
    More,
}

struct State<A: App> {
    node: Node<A>,
    clock: Clock,
    report: Report,
    ex: Rc<LocalExecutor<'static>>,
    me: Weak<RefCell<State<A>>>,
    ios: BTreeMap<IoId, IoEntry>,
    children: BTreeMap<ProcId, Child>,
    listeners: BTreeMap<ListenerId, smol::Task<()>>,
    /// Transit pipes of the connections a child's stdout is spliced into.
    transits: BTreeMap<ConnId, Transit>,
    deadline: Option<Instant>,
    /// Wakes the timer task when the deadline changes.
    timer_wake: Sender<()>,
    exit: Sender<i32>,
    failure: Option<io::Error>,
}

impl Driver for SmolDriver {
    fn run<A: App + 'static>(node: Node<A>, clock: Clock, report: Report) -> io::Result<i32> {
        let ex = Rc::new(LocalExecutor::new());
        let (exit_tx, exit_rx) = channel::bounded(1);
        let (timer_tx, timer_rx) = channel::bounded(1);
        let state = Rc::new_cyclic(|me| {
            RefCell::new(State {
                node,
                clock,
                report,
                ex: ex.clone(),
                me: me.clone(),
                ios: BTreeMap::new(),
                children: BTreeMap::new(),
                listeners: BTreeMap::new(),
                transits: BTreeMap::new(),
                deadline: None,
                timer_wake: timer_tx,
                exit: exit_tx,
                failure: None,
            })
        });
        ex.spawn(timer_task(Rc::downgrade(&state), timer_rx)).detach();
        let signals = Async::new(zferry_cli::shutdown_signals()?)?;
        ex.spawn(signal_task(Rc::downgrade(&state), signals)).detach();
        let child_exits = Async::new(zferry_cli::child_exits()?)?;
        ex.spawn(child_exit_task(Rc::downgrade(&state), child_exits)).detach();
        if zferry_cli::splice::wanted() {
            state.borrow_mut().node.set_splice(true);
        }
        state.borrow_mut().drain();
        let code = smol::block_on(ex.run(async { exit_rx.recv().await }));
        let mut st = state.borrow_mut();
        // Never leave a child behind: the node's work is over, or failed.
        for child in st.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        code.map_err(|_| io::Error::other("driver stopped without an exit code"))
    }
}

enum Acceptor {
    Tcp(Async<TcpListener>),
    Unix(Async<UnixListener>),
}

impl Acceptor {
    async fn accept(&self) -> io::Result<(Handle, String)> {
        match self {
            Acceptor::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.get_ref().set_nodelay(true)?;
                Ok((Handle::Tcp(s), peer.to_string()))
            }
            Acceptor::Unix(l) => Ok((Handle::Unix(l.accept().await?.0), "unix client".to_owned())),
        }
    }
}

fn bind(target: Target) -> io::Result<(Acceptor, String)> {
    match target {
        Target::Tcp(addr) => {
            let l = Async::<TcpListener>::bind(addr)?;
            let local = l.get_ref().local_addr()?.to_string();
            Ok((Acceptor::Tcp(l), local))
        }
        Target::Unix(path) => {
            let l = Async::new(net::bind_unix(&path)?)?;
            Ok((Acceptor::Unix(l), path.display().to_string()))
        }
    }
}

fn pipe(fd: impl Into<OwnedFd>) -> io::Result<Handle> {
    Ok(Handle::Pipe(Async::new(File::from(fd.into()))?))
}

impl<A: App + 'static> State<A> {
    fn input(&mut self, input: Input) {
        if let Err(e) = self.node.handle_input(self.clock.now(), input) {
            self.fatal(io::Error::other(format!("driver bug: {e}")));
        }
        self.drain();
    }

    fn fatal(&mut self, e: io::Error) {
        self.failure.get_or_insert(e);
        let _ = self.exit.try_send(2);
    }

    /// Executes every queued output and wakes the tasks that have work.
    fn drain(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Timeout(deadline) => {
                    if deadline != self.deadline {
                        self.deadline = deadline;
                        let _ = self.timer_wake.try_send(());
                    }
                    break;
                }
                Output::Event(e) => {
                    self.report.event(e);
                    if let Some(code) = self.report.exit_code() {
                        let _ = self.exit.try_send(code);
                    }
                }
                Output::Action(a) => self.execute(a),
            }
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Listen { listener, endpoint } => match net::resolve(&endpoint).and_then(bind) {
                Ok((l, local)) => {
                    let task = self.ex.spawn(accept_task(self.me.clone(), listener, l));
                    self.listeners.insert(listener, task);
                    self.input(Input::Listening { listener, local });
                }
                Err(e) => self.input(Input::ListenFailed { listener, error: e.to_string() }),
            },
            Action::Unlisten(listener) => {
                self.listeners.remove(&listener);
            }
            Action::Connect { conn, endpoint } => match net::resolve_without_lookup(&endpoint) {
                // A name is looked up on smol's blocking pool, off the loop.
                Ok(None) | Ok(Some(Target::Tcp(_))) => {
                    self.ex.spawn(connect_task(self.me.clone(), conn, endpoint)).detach()
                }
                Ok(Some(Target::Unix(path))) => match net::connect_unix(&path).and_then(Async::new)
                {
                    Ok(s) => {
                        self.add_io(IoId::Conn(conn), Handle::Unix(s), true, true);
                        self.input(Input::Connected(conn));
                    }
                    Err(e) => self.input(Input::ConnectFailed { conn, error: e.to_string() }),
                },
                Err(e) => self.input(Input::ConnectFailed { conn, error: e.to_string() }),
            },
            Action::Close(conn) => {
                self.transits.remove(&conn);
                if let Some(e) = self.ios.remove(&IoId::Conn(conn)) {
                    // Wakes the reader (EOF) and ends the writer (channel closed);
                    // both then drop their handles and the socket closes.
                    match &*e.handle {
                        Handle::Tcp(s) => drop(s.get_ref().shutdown(std::net::Shutdown::Both)),
                        Handle::Unix(s) => drop(s.get_ref().shutdown(std::net::Shutdown::Both)),
                        Handle::Pipe(_) => {}
                    }
                }
            }
            Action::Spawn { proc, spec } => self.spawn(proc, &spec),
            Action::CloseStdin(proc) => {
                // Dropping the entry closes the writer's channel; the writer task
                // then drops the last handle and the pipe closes.
                self.ios.remove(&IoId::Stdin(proc));
            }
            Action::Kill(proc) => {
                if let Some(child) = self.children.get_mut(&proc) {
                    let _ = child.kill();
                }
            }
            Action::Interest { io, read, write } => {
                if let Some(e) = self.ios.get(&io) {
                    if read {
                        e.read_wake.as_ref().map(|w| w.try_send(()));
                    }
                    if write {
                        e.write_wake.as_ref().map(|w| w.try_send(()));
                    }
                }
            }
        }
    }

    fn add_io(&mut self, io: IoId, handle: Handle, read: bool, write: bool) {
        let handle = Rc::new(handle);
        let mut entry = IoEntry { handle: handle.clone(), read_wake: None, write_wake: None };
        if read {
            let (tx, rx) = channel::bounded(1);
            self.ex.spawn(read_task(self.me.clone(), io, handle.clone(), rx)).detach();
            entry.read_wake = Some(tx);
        }
        if write {
            let (tx, rx) = channel::bounded(1);
            self.ex.spawn(write_task(self.me.clone(), io, handle, rx)).detach();
            // The first attempt happens when the writer starts.
            let _ = tx.try_send(());
            entry.write_wake = Some(tx);
        }
        self.ios.insert(io, entry);
    }

    fn spawn(&mut self, proc: ProcId, spec: &ProcessSpec) {
        let mut child = match process::spawn(spec) {
            Ok(c) => c,
            Err(e) => return self.input(Input::SpawnFailed { proc, error: e.to_string() }),
        };
        let pipes = (|| -> io::Result<_> {
            let stdin = child.stdin.take().map(pipe).transpose()?;
            let stdout = child.stdout.take().map(pipe).transpose()?;
            let stderr = child.stderr.take().map(pipe).transpose()?;
            Ok((stdin, stdout, stderr))
        })();
        match pipes {
            Ok((stdin, stdout, stderr)) => {
                if let Some(h) = stdin {
                    self.add_io(IoId::Stdin(proc), h, false, true);
                }
                if let Some(h) = stdout {
                    self.add_io(IoId::Stdout(proc), h, true, false);
                }
                if let Some(h) = stderr {
                    self.add_io(IoId::Stderr(proc), h, true, false);
                }
                self.children.insert(proc, child);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                self.input(Input::SpawnFailed { proc, error: e.to_string() });
            }
        }
    }

    fn read(&mut self, io: IoId) -> Turn {
        for _ in 0..READS_PER_TURN {
            let Some(handle) = self.ios.get(&io).map(|e| e.handle.clone()) else {
                return Turn::Gone;
            };
            let splice_to = self.node.splice_slot(io);
            let result = match splice_to {
                Some((conn, max)) => self.fill_transit(&handle, conn, max),
                None => {
                    let Some(slot) = self.node.read_slot(io) else { return Turn::Paused };
                    handle.read(slot)
                }
            };
            match result {
                Err(e) if splice_to.is_some() && splice::unsupported(&e) => {
                    // Nothing moved; read this and every later stream as usual.
                    self.input(Input::SpliceRefused { error: e.to_string() });
                }
                Ok(n) => {
                    if n == 0 && !matches!(io, IoId::Conn(_)) {
                        self.close_pipe(io);
                    }
                    let input = if splice_to.is_some() {
                        Input::Spliced { io, n }
                    } else {
                        Input::Read { io, n }
                    };
                    self.input(input);
                    if n == 0 {
                        return Turn::Gone;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if !matches!(io, IoId::Conn(_)) {
                        self.close_pipe(io);
                    }
                    self.input(Input::IoError { io, error: e.to_string() });
                    return Turn::Gone;
                }
            }
        }
        Turn::More
    }

    fn write(&mut self, io: IoId) -> Turn {
        loop {
            let Some(handle) = self.ios.get(&io).map(|e| e.handle.clone()) else {
                return Turn::Gone;
            };
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.node.io_slices(io, &mut slices);
            let spliced = match io {
                IoId::Conn(c) if n == 0 => self.node.spliced_front(c).map(|len| (c, len)),
                _ => None,
            };
            let result = match spliced {
                _ if n > 0 => handle.write_vectored(&slices[..n]),
                Some((c, len)) => match self.transits.get(&c) {
                    Some(t) => t.drain(handle.fd(), len),
                    None => Err(io::Error::other("spliced bytes without a transit pipe")),
                },
                None => return Turn::Paused,
            };
            match result {
                Ok(written) => self.input(Input::Written { io, n: written }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if spliced.is_some() && splice::unsupported(&e) {
                        self.input(Input::SpliceRefused { error: e.to_string() });
                    }
                    self.input(Input::IoError { io, error: e.to_string() });
                    return Turn::Gone;
                }
            }
        }
    }

    /// Splices up to `max` bytes of a child's stdout into `conn`'s transit pipe.
    fn fill_transit(&mut self, stdout: &Handle, conn: ConnId, max: usize) -> io::Result<usize> {
        splice::transit(&mut self.transits, conn)?.fill(stdout.fd(), max)
    }

    /// A pipe reached its end; once stdout and stderr both did, watch for the exit.
    fn close_pipe(&mut self, io: IoId) {
        self.ios.remove(&io);
        let (IoId::Stdout(proc) | IoId::Stderr(proc)) = io else { return };
        if !self.pipes_open(proc) {
            self.ex.spawn(reap_task(self.me.clone(), proc)).detach();
        }
    }

    fn pipes_open(&self, proc: ProcId) -> bool {
        [IoId::Stdout(proc), IoId::Stderr(proc)].iter().any(|i| self.ios.contains_key(i))
    }

    /// Reports the exit of `proc` if it has exited; false while it runs (or is gone).
    fn try_reap(&mut self, proc: ProcId) -> bool {
        let Some(child) = self.children.get_mut(&proc) else { return false };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.children.remove(&proc);
                self.ios.remove(&IoId::Stdin(proc));
                self.input(Input::Exited { proc, status: process::exit_status(status) });
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.fatal(e);
                false
            }
        }
    }
}

async fn accept_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    listener: ListenerId,
    l: Acceptor,
) {
    loop {
        let accepted = l.accept().await;
        let Some(state) = state.upgrade() else { return };
        let mut st = state.borrow_mut();
        match accepted {
            Ok((handle, peer)) => {
                let now = st.clock.now();
                if let Some(conn) = st.node.accept(now, listener, peer) {
                    st.add_io(IoId::Conn(conn), handle, true, true);
                }
                st.drain();
            }
            Err(e) => st.report.error(&format!("accept failed: {e}")),
        }
    }
}

async fn connect_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    conn: ConnId,
    endpoint: Endpoint,
) {
    let target = match net::resolve_without_lookup(&endpoint) {
        Ok(Some(target)) => Ok(target),
        Ok(None) => smol::unblock(move || net::resolve(&endpoint)).await,
        Err(e) => Err(e),
    };
    let result = match target {
        Ok(Target::Tcp(addr)) => Async::<TcpStream>::connect(addr).await,
        Ok(Target::Unix(_)) => Err(io::Error::other("a unix socket is connected directly")),
        Err(e) => Err(e),
    };
    let Some(state) = state.upgrade() else { return };
    let mut st = state.borrow_mut();
    match result {
        Ok(stream) => {
            let _ = stream.get_ref().set_nodelay(true);
            st.add_io(IoId::Conn(conn), Handle::Tcp(stream), true, true);
            st.input(Input::Connected(conn));
        }
        Err(e) => st.input(Input::ConnectFailed { conn, error: e.to_string() }),
    }
}

async fn read_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    io: IoId,
    handle: Rc<Handle>,
    wake: Receiver<()>,
) {
    loop {
        let turn = match state.upgrade() {
            Some(state) => state.borrow_mut().read(io),
            None => return,
        };
        match turn {
            Turn::Gone => return,
            Turn::More => smol::future::yield_now().await,
            Turn::Paused => {
                if wake.recv().await.is_err() {
                    return;
                }
            }
            Turn::Blocked => {
                if handle.readable().await.is_err() {
                    // Polling failed: the next read reports the error.
                    smol::future::yield_now().await;
                }
            }
        }
    }
}

async fn write_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    io: IoId,
    handle: Rc<Handle>,
    wake: Receiver<()>,
) {
    while wake.recv().await.is_ok() {
        loop {
            let turn = match state.upgrade() {
                Some(state) => state.borrow_mut().write(io),
                None => return,
            };
            match turn {
                Turn::Gone => return,
                Turn::Paused => break,
                Turn::More => smol::future::yield_now().await,
                Turn::Blocked => {
                    if handle.writable().await.is_err() {
                        smol::future::yield_now().await;
                    }
                }
            }
        }
    }
}

async fn reap_task<A: App + 'static>(state: Weak<RefCell<State<A>>>, proc: ProcId) {
    loop {
        {
            let Some(state) = state.upgrade() else { return };
            let mut st = state.borrow_mut();
            if !st.children.contains_key(&proc) || st.try_reap(proc) || st.failure.is_some() {
                return;
            }
        }
        Timer::after(REAP_INTERVAL).await;
    }
}

/// On every SIGCHLD, reaps the children whose pipes are closed: a child whose
/// pipes closed before it had quite exited is reported now, not at the next tick.
async fn child_exit_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    exits: Async<UnixStream>,
) {
    loop {
        if exits.readable().await.is_err() {
            return;
        }
        let mut buf = [0u8; 64];
        while matches!(exits.get_ref().read(&mut buf), Ok(n) if n > 0) {}
        let Some(state) = state.upgrade() else { return };
        let mut st = state.borrow_mut();
        let done: Vec<ProcId> =
            st.children.keys().copied().filter(|p| !st.pipes_open(*p)).collect();
        for proc in done {
            st.try_reap(proc);
        }
    }
}

async fn signal_task<A: App + 'static>(state: Weak<RefCell<State<A>>>, signals: Async<UnixStream>) {
    loop {
        if signals.readable().await.is_err() {
            return;
        }
        let mut buf = [0u8; 64];
        while matches!(signals.get_ref().read(&mut buf), Ok(n) if n > 0) {}
        let Some(state) = state.upgrade() else { return };
        state.borrow_mut().input(Input::Shutdown);
    }
}

async fn timer_task<A: App + 'static>(state: Weak<RefCell<State<A>>>, wake: Receiver<()>) {
    loop {
        let deadline = {
            let Some(state) = state.upgrade() else { return };
            let st = state.borrow();
            st.deadline.map(|d| st.clock.until(d))
        };
        let fired = match deadline {
            None => {
                if wake.recv().await.is_err() {
                    return;
                }
                false
            }
            Some(wait) => {
                let timer = async {
                    Timer::after(wait).await;
                    true
                };
                let woken = async {
                    let _ = wake.recv().await;
                    false
                };
                smol::future::or(timer, woken).await
            }
        };
        if fired {
            let Some(state) = state.upgrade() else { return };
            let mut st = state.borrow_mut();
            if st.deadline.is_some_and(|d| st.clock.now().mono >= d) {
                st.input(Input::Timeout);
            }
        }
    }
}
