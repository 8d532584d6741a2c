//! `zferry-smol`: the node's actions executed with smol.
//!
//! One thread, one `LocalExecutor`. The node and the sockets live in a shared
//! `State`; small tasks wait for readiness (a socket readable or writable, a timer,
//! an accept) and then call into the state, which does the non-blocking I/O with
//! the node's buffers and executes the node's outputs. No task holds the state
//! across an await.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::{Rc, Weak};

use smol::channel::{self, Receiver, Sender};
use smol::{Async, LocalExecutor, Timer};
use zferry_cli::{Clock, Driver, Report};
use zferry_core::node::{Action, App, ConnId, Endpoint, Input, ListenerId, Node, Output};
use zferry_core::time::Instant;

fn main() -> ExitCode {
    zferry_cli::main::<SmolDriver>()
}

struct SmolDriver;

const READS_PER_TURN: usize = 16;
const MAX_IOVECS: usize = 64;

struct Conn {
    stream: Rc<Async<TcpStream>>,
    /// Wakes the writer task when the node has bytes to send.
    write_wake: Sender<()>,
}

struct State<A: App> {
    node: Node<A>,
    clock: Clock,
    report: Report,
    ex: Rc<LocalExecutor<'static>>,
    me: Weak<RefCell<State<A>>>,
    conns: BTreeMap<ConnId, Conn>,
    listeners: BTreeMap<ListenerId, smol::Task<()>>,
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
                conns: BTreeMap::new(),
                listeners: BTreeMap::new(),
                deadline: None,
                timer_wake: timer_tx,
                exit: exit_tx,
                failure: None,
            })
        });
        ex.spawn(timer_task(Rc::downgrade(&state), timer_rx)).detach();
        state.borrow_mut().drain();
        let code = smol::block_on(ex.run(async { exit_rx.recv().await }));
        let mut st = state.borrow_mut();
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        code.map_err(|_| io::Error::other("driver stopped without an exit code"))
    }
}

fn resolve(endpoint: &Endpoint) -> io::Result<std::net::SocketAddr> {
    let Endpoint::Tcp(addr) = endpoint;
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to nothing"))
    })
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
            Action::Listen { listener, endpoint } => {
                let bound = resolve(&endpoint).and_then(Async::<TcpListener>::bind);
                match bound {
                    Ok(l) => {
                        let local =
                            l.get_ref().local_addr().map(|a| a.to_string()).unwrap_or_default();
                        let task = self.ex.spawn(accept_task(self.me.clone(), listener, l));
                        self.listeners.insert(listener, task);
                        self.input(Input::Listening { listener, local });
                    }
                    Err(e) => self.input(Input::ListenFailed { listener, error: e.to_string() }),
                }
            }
            Action::Unlisten(listener) => {
                self.listeners.remove(&listener);
            }
            Action::Connect { conn, endpoint } => match resolve(&endpoint) {
                Ok(addr) => self.ex.spawn(connect_task(self.me.clone(), conn, addr)).detach(),
                Err(e) => self.input(Input::ConnectFailed { conn, error: e.to_string() }),
            },
            Action::Close(conn) => {
                if let Some(c) = self.conns.remove(&conn) {
                    // Wakes the reader (EOF) and ends the writer (channel closed);
                    // both then drop their handles and the socket closes.
                    let _ = c.stream.get_ref().shutdown(std::net::Shutdown::Both);
                }
            }
            Action::Interest { conn, write, .. } => {
                if let (true, Some(c)) = (write, self.conns.get(&conn)) {
                    let _ = c.write_wake.try_send(());
                }
            }
        }
    }

    fn add_conn(&mut self, conn: ConnId, stream: Async<TcpStream>) {
        let stream = Rc::new(stream);
        let (wake_tx, wake_rx) = channel::bounded(1);
        self.ex.spawn(read_task(self.me.clone(), conn, stream.clone())).detach();
        self.ex.spawn(write_task(self.me.clone(), conn, stream.clone(), wake_rx)).detach();
        // The first write attempt happens when the writer starts.
        let _ = wake_tx.try_send(());
        self.conns.insert(conn, Conn { stream, write_wake: wake_tx });
    }

    /// Reads until the socket would block; `Some(true)` if the turn ran out first.
    fn read(&mut self, conn: ConnId) -> Option<bool> {
        for _ in 0..READS_PER_TURN {
            let stream = self.conns.get(&conn)?.stream.clone();
            let slot = self.node.read_slot(conn)?;
            let mut socket: &TcpStream = stream.get_ref();
            match socket.read(slot) {
                Ok(n) => {
                    self.input(Input::Read { conn, n });
                    if n == 0 {
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.input(Input::IoError { conn, error: e.to_string() });
                    return None;
                }
            }
        }
        Some(true)
    }

    /// Writes until the queue is empty (`Some(false)`) or the socket would block
    /// (`Some(true)`); `None` once the connection is gone.
    fn write(&mut self, conn: ConnId) -> Option<bool> {
        loop {
            let stream = self.conns.get(&conn)?.stream.clone();
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.node.io_slices(conn, &mut slices);
            if n == 0 {
                return Some(false);
            }
            let mut socket: &TcpStream = stream.get_ref();
            match socket.write_vectored(&slices[..n]) {
                Ok(written) => self.input(Input::Written { conn, n: written }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.input(Input::IoError { conn, error: e.to_string() });
                    return None;
                }
            }
        }
    }
}

async fn accept_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    listener: ListenerId,
    l: Async<TcpListener>,
) {
    loop {
        let accepted = l.accept().await;
        let Some(state) = state.upgrade() else { return };
        let mut st = state.borrow_mut();
        match accepted {
            Ok((stream, peer)) => {
                let now = st.clock.now();
                if let Some(conn) = st.node.accept(now, listener, peer.to_string()) {
                    let _ = stream.get_ref().set_nodelay(true);
                    st.add_conn(conn, stream);
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
    addr: std::net::SocketAddr,
) {
    let result = Async::<TcpStream>::connect(addr).await;
    let Some(state) = state.upgrade() else { return };
    let mut st = state.borrow_mut();
    match result {
        Ok(stream) => {
            let _ = stream.get_ref().set_nodelay(true);
            st.add_conn(conn, stream);
            st.input(Input::Connected(conn));
        }
        Err(e) => st.input(Input::ConnectFailed { conn, error: e.to_string() }),
    }
}

async fn read_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    conn: ConnId,
    stream: Rc<Async<TcpStream>>,
) {
    loop {
        let more = {
            let Some(state) = state.upgrade() else { return };
            let more = state.borrow_mut().read(conn);
            more
        };
        match more {
            None => return,
            Some(true) => smol::future::yield_now().await,
            Some(false) => {
                if stream.readable().await.is_err() {
                    // Polling failed: the reader's next read reports the error.
                    smol::future::yield_now().await;
                }
            }
        }
    }
}

async fn write_task<A: App + 'static>(
    state: Weak<RefCell<State<A>>>,
    conn: ConnId,
    stream: Rc<Async<TcpStream>>,
    wake: Receiver<()>,
) {
    while wake.recv().await.is_ok() {
        loop {
            let blocked = {
                let Some(state) = state.upgrade() else { return };
                let blocked = state.borrow_mut().write(conn);
                blocked
            };
            match blocked {
                None => return,
                Some(false) => break,
                Some(true) => {
                    if stream.writable().await.is_err() {
                        smol::future::yield_now().await;
                    }
                }
            }
        }
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
