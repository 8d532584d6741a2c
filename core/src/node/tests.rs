//! Two nodes joined in memory: the server runs a probe listener, the client sends.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::time::Duration;

use super::*;
use crate::probe::{Probe, ProbeMode, ProbeOutcome};
use crate::time::WallTime;

fn now(ms: u64) -> Now {
    Now { mono: Instant::from_nanos(ms * 1_000_000), wall: WallTime(0) }
}

/// What one side's driver remembers: which socket is which.
#[derive(Default)]
struct FakeDriver {
    listener: Option<ListenerId>,
    connecting: Vec<ConnId>,
    closed: Vec<ConnId>,
    logs: Vec<String>,
    exit: Option<i32>,
    interest: BTreeMap<IoId, (bool, bool)>,
    actions: Vec<Action>,
}

fn drain<A: App>(node: &mut Node<A>, d: &mut FakeDriver) {
    loop {
        match node.poll_output() {
            Output::Timeout(_) => break,
            Output::Action(Action::Listen { listener, .. }) => d.listener = Some(listener),
            Output::Action(Action::Connect { conn, .. }) => d.connecting.push(conn),
            Output::Action(Action::Close(c)) => d.closed.push(c),
            Output::Action(Action::Interest { io, read, write }) => {
                d.interest.insert(io, (read, write));
            }
            Output::Action(a) => d.actions.push(a),
            Output::Event(Event::Log { message, .. } | Event::Print(message)) => {
                d.logs.push(message)
            }
            Output::Event(Event::Exit(code)) => d.exit = Some(code),
        }
    }
}

/// Moves queued bytes from `a`'s connection to `b`'s; true if any moved.
fn shuttle<A: App, B: App>(
    a: &mut Node<A>,
    ac: ConnId,
    b: &mut Node<B>,
    bc: ConnId,
    t: Now,
) -> bool {
    let mut slices = [IoSlice::new(&[]); 32];
    let n = a.io_slices(IoId::Conn(ac), &mut slices);
    let wire: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    if wire.is_empty() {
        return false;
    }
    let pos = deliver(b, bc, &wire, t);
    a.handle_input(t, Input::Written { io: IoId::Conn(ac), n: pos }).unwrap();
    true
}

/// Feeds `wire` to `b`'s connection as socket reads; returns how much it took.
fn deliver<B: App>(b: &mut Node<B>, bc: ConnId, wire: &[u8], t: Now) -> usize {
    let mut pos = 0;
    while pos < wire.len() {
        let Some(slot) = b.read_slot(IoId::Conn(bc)) else { break };
        let k = slot.len().min(wire.len() - pos);
        slot[..k].copy_from_slice(&wire[pos..pos + k]);
        b.handle_input(t, Input::Read { io: IoId::Conn(bc), n: k }).unwrap();
        pos += k;
    }
    pos
}

#[test]
fn probe_over_an_in_memory_wire() {
    let t = now(0);
    let endpoint = Endpoint::Tcp("127.0.0.1:0".into());
    let mut server = Node::new(
        Probe::new(ProbeMode::Serve { endpoint: endpoint.clone(), once: true, command: None }),
        SessionConfig::default(),
        t,
    );
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    let listener = sd.listener.expect("server listens");
    server.handle_input(t, Input::Listening { listener, local: "127.0.0.1:4000".into() }).unwrap();

    let total = 20 * 1024 * 1024 + 3;
    let mut client = Node::new(
        Probe::new(ProbeMode::Send { endpoint, bytes: total, command: None }),
        SessionConfig::default(),
        t,
    );
    let mut cd = FakeDriver::default();
    drain(&mut client, &mut cd);
    let cc = cd.connecting[0];
    let sc = server.accept(t, listener, "127.0.0.1:5000".into()).unwrap();
    client.handle_input(t, Input::Connected(cc)).unwrap();
    drain(&mut client, &mut cd);
    drain(&mut server, &mut sd);

    for _ in 0..10_000 {
        let a = shuttle(&mut client, cc, &mut server, sc, t);
        let b = shuttle(&mut server, sc, &mut client, cc, t);
        drain(&mut client, &mut cd);
        drain(&mut server, &mut sd);
        if !a && !b {
            break;
        }
    }
    assert_eq!(client.app().outcome(), Some(&ProbeOutcome::Verified { bytes: total, nanos: 0 }));
    assert_eq!(cd.exit, Some(0), "{:?}", cd.logs);
    assert_eq!(sd.exit, Some(0), "{:?}", sd.logs);
    assert_eq!(cd.closed, vec![cc]);
    assert_eq!(sd.closed, vec![sc]);
}

#[test]
fn refused_connection_fails_the_probe() {
    let t = now(0);
    let mut client = Node::new(
        Probe::new(ProbeMode::Send {
            endpoint: Endpoint::Tcp("127.0.0.1:9".into()),
            bytes: 1,
            command: None,
        }),
        SessionConfig::default(),
        t,
    );
    let mut cd = FakeDriver::default();
    drain(&mut client, &mut cd);
    let cc = cd.connecting[0];
    client
        .handle_input(t, Input::ConnectFailed { conn: cc, error: "connection refused".into() })
        .unwrap();
    drain(&mut client, &mut cd);
    assert_eq!(cd.exit, Some(1));
    assert!(
        cd.logs.iter().any(|l| l.contains("connection refused") && l.contains("tcp://127.0.0.1:9")),
        "{:?}",
        cd.logs
    );
}

#[test]
fn garbage_peer_is_dropped_and_the_server_lives_on() {
    let t = now(0);
    let mut server = Node::new(
        Probe::new(ProbeMode::Serve {
            endpoint: Endpoint::Tcp("x:1".into()),
            once: false,
            command: None,
        }),
        SessionConfig::default(),
        t,
    );
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    let listener = sd.listener.unwrap();
    let conn = server.accept(t, listener, "evil".into()).unwrap();
    let slot = server.read_slot(IoId::Conn(conn)).unwrap();
    slot[..16].copy_from_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcde");
    server.handle_input(t, Input::Read { io: IoId::Conn(conn), n: 16 }).unwrap();
    drain(&mut server, &mut sd);
    assert!(sd.logs.iter().any(|l| l.contains("not a zferry endpoint")), "{:?}", sd.logs);
    // The goodbye is queued; once flushed the connection is closed.
    let mut slices = [IoSlice::new(&[]); 8];
    let n = server.io_slices(IoId::Conn(conn), &mut slices);
    let len: usize = slices[..n].iter().map(|s| s.len()).sum();
    server.handle_input(t, Input::Written { io: IoId::Conn(conn), n: len }).unwrap();
    drain(&mut server, &mut sd);
    assert_eq!(sd.closed, vec![conn]);
    assert_eq!(sd.exit, None, "the server keeps serving");
    assert!(server.accept(t, listener, "next".into()).is_some());
}

#[test]
fn unknown_handles_are_input_errors() {
    let t = now(0);
    let mut node = Node::new(
        Probe::new(ProbeMode::Serve {
            endpoint: Endpoint::Tcp("x:1".into()),
            once: false,
            command: None,
        }),
        SessionConfig::default(),
        t,
    );
    assert_eq!(
        node.handle_input(t, Input::Read { io: IoId::Conn(ConnId(99)), n: 1 }),
        Err(InputError::UnknownConn(ConnId(99)))
    );
    assert_eq!(
        node.handle_input(t, Input::Listening { listener: ListenerId(42), local: String::new() }),
        Err(InputError::UnknownListener(ListenerId(42)))
    );
    assert!(node.read_slot(IoId::Conn(ConnId(99))).is_none());
}

#[test]
fn timeouts_reach_sessions() {
    let t = now(0);
    let mut server = Node::new(
        Probe::new(ProbeMode::Serve {
            endpoint: Endpoint::Tcp("x:1".into()),
            once: false,
            command: None,
        }),
        SessionConfig::default(),
        t,
    );
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    server.accept(t, sd.listener.unwrap(), "silent".into()).unwrap();
    let deadline = loop {
        match server.poll_output() {
            Output::Timeout(t) => break t.expect("a deadline"),
            _ => continue,
        }
    };
    assert_eq!(deadline, t.mono + Duration::from_secs(10), "handshake timeout");
    let later = Now { mono: deadline, wall: WallTime(0) };
    server.handle_input(later, Input::Timeout).unwrap();
    drain(&mut server, &mut sd);
    assert!(sd.logs.iter().any(|l| l.contains("no handshake")), "{:?}", sd.logs);
}

/// A test app: the client sends one streamed request fed by a process's stdout;
/// the server pipes the stream into a process's stdin and answers at its exit.
#[derive(Default)]
struct PipeApp {
    serve: bool,
    conn: Option<ConnId>,
    proc: Option<ProcId>,
    done: Vec<ProcessResult>,
    answered: Option<Result<(), String>>,
}

struct Pipe;
impl crate::rpc::Method for Pipe {
    const NAME: &'static str = "test.pipe";
    type Request = ();
    type Response = u64;
}

impl App for PipeApp {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        if self.serve {
            ctx.listen(Endpoint::Tcp("x:1".into()));
        } else {
            self.conn = Some(ctx.connect(Endpoint::Tcp("x:1".into())));
        }
    }
    fn on_listen_failed(&mut self, _: &mut AppCtx<'_>, _: ListenerId, _: &str) {}
    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        let spec = |name: &str| ProcessSpec {
            argv: vec![name.into()],
            env: vec![],
            stdin: false,
            stdout: false,
        };
        match event {
            SessionEvent::Established { .. } if !self.serve => {
                ctx.session(conn).unwrap().request::<Pipe>(now, &(), true).unwrap();
                self.proc =
                    Some(ctx.spawn(spec("producer"), StdoutTo::Stream(conn), StdinFrom::Null));
            }
            SessionEvent::Request(_) => {
                self.conn = Some(conn);
                self.proc =
                    Some(ctx.spawn(spec("consumer"), StdoutTo::Null, StdinFrom::Stream(conn)));
            }
            SessionEvent::Response(r) => {
                self.answered = Some(r.decode::<Pipe>().map(|_| ()).map_err(|e| e.to_string()))
            }
            _ => {}
        }
    }
    fn on_conn_closed(&mut self, _: &mut AppCtx<'_>, _: ConnId, _: Option<String>) {}
    fn on_process_done(&mut self, ctx: &mut AppCtx<'_>, _proc: ProcId, result: ProcessResult) {
        if self.serve {
            let now = ctx.now().mono;
            let conn = self.conn.unwrap();
            let answer = if result.status.success() {
                Ok(&result.bytes)
            } else {
                Err(crate::rpc::RemoteError::new(
                    crate::rpc::RemoteErrorKind::Failed,
                    result.stderr.clone(),
                ))
            };
            ctx.session(conn).unwrap().respond::<Pipe>(now, answer, false).unwrap();
        }
        self.done.push(result);
    }
    fn on_shutdown(&mut self, _: &mut AppCtx<'_>) {}
    fn exit_code(&self) -> Option<i32> {
        None
    }
}

/// Runs the pipe scenario; the producer writes `total` bytes, then exits with
/// `producer_status`. Returns both apps and the bytes the consumer got.
fn run_pipe(total: usize, producer_status: ExitStatus) -> (PipeApp, PipeApp, Vec<u8>) {
    run_pipe_with(total, producer_status, Splice::Off)
}

/// How the client's driver moves the producer's stdout.
#[derive(Clone, Copy, PartialEq)]
enum Splice {
    Off,
    On,
    /// Splices until half the bytes are out, then the OS refuses.
    RefusedMidway,
}

/// [`run_pipe`], optionally with the client's driver splicing the producer's stdout:
/// a queue stands in for the transit pipe, drained in odd-sized pieces.
fn run_pipe_with(
    total: usize,
    producer_status: ExitStatus,
    splice: Splice,
) -> (PipeApp, PipeApp, Vec<u8>) {
    let t = now(0);
    let config = SessionConfig { stream_window: 64 * 1024, ..SessionConfig::default() };
    let mut server = Node::new(PipeApp { serve: true, ..PipeApp::default() }, config.clone(), t);
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    let listener = sd.listener.unwrap();
    server.handle_input(t, Input::Listening { listener, local: "x:1".into() }).unwrap();
    let mut client = Node::new(PipeApp::default(), config, t);
    let mut splicing = splice != Splice::Off;
    client.set_splice(splicing);
    let mut transit: VecDeque<u8> = VecDeque::new();
    let mut cd = FakeDriver::default();
    drain(&mut client, &mut cd);
    let cc = cd.connecting[0];
    let sc = server.accept(t, listener, "peer".into()).unwrap();
    client.handle_input(t, Input::Connected(cc)).unwrap();

    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let (mut produced, mut consumed) = (0, Vec::new());
    let mut producer_exited = false;
    let mut consumer_exited = false;
    let mut max_in_flight = 0;
    for _ in 0..100_000 {
        drain(&mut client, &mut cd);
        drain(&mut server, &mut sd);
        let mut progress = shuttle(&mut client, cc, &mut server, sc, t)
            | shuttle(&mut server, sc, &mut client, cc, t);
        // A spliced payload next: the driver moves it from the transit pipe.
        if let Some(len) = client.spliced_front(cc) {
            let k = len.min(7_001);
            assert!(transit.len() >= len, "the queue never counts bytes the pipe lacks");
            let wire: Vec<u8> = transit.drain(..k).collect();
            assert_eq!(deliver(&mut server, sc, &wire, t), k);
            client.handle_input(t, Input::Written { io: IoId::Conn(cc), n: k }).unwrap();
            progress = true;
        }
        // The producer writes whenever the node offers a slot.
        if splicing && splice == Splice::RefusedMidway && produced > total / 2 {
            splicing = false;
            client.handle_input(t, Input::SpliceRefused { error: "EINVAL".into() }).unwrap();
            drain(&mut client, &mut cd);
            assert!(cd.logs.iter().any(|l| l.contains("splice(2) refused (EINVAL)")));
        }
        if let Some(p) = client.app().proc.filter(|_| splicing) {
            let io = IoId::Stdout(p);
            assert!(client.read_slot(io).is_none(), "spliced stdout is never read");
            if let Some((conn, max)) = client.splice_slot(io) {
                assert_eq!(conn, cc);
                assert!(transit.is_empty(), "a slot is offered only once the pipe is empty");
                assert!(max <= crate::limits::PIPE_CAPACITY);
                let k = max.min(total - produced).min(100_000);
                transit.extend(&data[produced..produced + k]);
                client.handle_input(t, Input::Spliced { io, n: k }).unwrap();
                produced += k;
                progress = true;
                if k == 0 && !producer_exited {
                    producer_exited = true;
                    client.handle_input(t, Input::Read { io: IoId::Stderr(p), n: 0 }).unwrap();
                    client
                        .handle_input(t, Input::Exited { proc: p, status: producer_status })
                        .unwrap();
                }
            }
        } else if let Some(p) = client.app().proc {
            if produced < total {
                if let Some(slot) = client.read_slot(IoId::Stdout(p)) {
                    let k = slot.len().min(total - produced).min(10_000);
                    slot[..k].copy_from_slice(&data[produced..produced + k]);
                    client.handle_input(t, Input::Read { io: IoId::Stdout(p), n: k }).unwrap();
                    produced += k;
                    progress = true;
                }
            } else if !producer_exited {
                producer_exited = true;
                for io in [IoId::Stdout(p), IoId::Stderr(p)] {
                    client.handle_input(t, Input::Read { io, n: 0 }).unwrap();
                }
                client.handle_input(t, Input::Exited { proc: p, status: producer_status }).unwrap();
                progress = true;
            }
        }
        // The consumer reads slowly: at most 3000 bytes per turn.
        if let Some(p) = server.app().proc {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = server.io_slices(IoId::Stdin(p), &mut slices);
            let chunk: Vec<u8> =
                slices[..n].iter().flat_map(|s| s.iter().copied()).take(3000).collect();
            if !chunk.is_empty() {
                consumed.extend_from_slice(&chunk);
                server
                    .handle_input(t, Input::Written { io: IoId::Stdin(p), n: chunk.len() })
                    .unwrap();
                progress = true;
            }
            max_in_flight = max_in_flight.max(produced - consumed.len());
            let stdin_closed = server_stdin_closed(&sd);
            let killed = sd_killed(&sd);
            if (stdin_closed || killed) && !consumer_exited {
                consumer_exited = true;
                for io in [IoId::Stdout(p), IoId::Stderr(p)] {
                    server.handle_input(t, Input::Read { io, n: 0 }).unwrap();
                }
                let status = if killed { ExitStatus::Signal(9) } else { ExitStatus::Code(0) };
                server.handle_input(t, Input::Exited { proc: p, status }).unwrap();
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    assert!(
        max_in_flight <= 64 * 1024 + 300 * 1024,
        "credit bounds bytes in flight: {max_in_flight}"
    );
    let (c, s) = (std::mem::take(&mut client.app), std::mem::take(&mut server.app));
    (c, s, consumed)
}

fn server_stdin_closed(d: &FakeDriver) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::CloseStdin(_)))
}

fn sd_killed(d: &FakeDriver) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::Kill(_)))
}

#[test]
fn process_stdout_streams_into_a_remote_stdin() {
    let total = 1_000_003;
    let (client, server, consumed) = run_pipe(total, ExitStatus::Code(0));
    assert_eq!(consumed.len(), total);
    assert!(
        consumed.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "bytes arrive intact, in order"
    );
    assert_eq!(
        server.done[0].status,
        ExitStatus::Code(0),
        "stdin closed at stream end, not killed"
    );
    assert_eq!(server.done[0].bytes, total as u64);
    assert_eq!(client.answered, Some(Ok(())));
}

#[test]
fn spliced_stdout_streams_into_a_remote_stdin() {
    let total = 1_000_003;
    for mode in [Splice::On, Splice::RefusedMidway] {
        let (client, server, consumed) = run_pipe_with(total, ExitStatus::Code(0), mode);
        check_spliced_run(total, &client, &server, &consumed);
    }
}

fn check_spliced_run(total: usize, client: &PipeApp, server: &PipeApp, consumed: &[u8]) {
    assert_eq!(consumed.len(), total);
    assert!(
        consumed.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "bytes arrive intact, in order"
    );
    assert_eq!(server.done[0].status, ExitStatus::Code(0));
    assert_eq!(client.done[0].bytes, total as u64, "spliced bytes count as sent");
    assert_eq!(client.answered, Some(Ok(())));
}

#[test]
fn a_failing_sender_aborts_and_the_receiver_is_stopped() {
    let (client, server, consumed) = run_pipe(200_000, ExitStatus::Code(1));
    assert!(consumed.len() <= 200_000);
    assert_eq!(
        server.done[0].status,
        ExitStatus::Signal(9),
        "an aborted stream kills the consumer"
    );
    assert!(matches!(client.answered, Some(Err(_))), "{:?}", client.answered);
}

/// One app serving and calling itself over an in-process connection.
#[derive(Default)]
struct LoopbackApp {
    client: Option<ConnId>,
    accepted: Vec<ConnId>,
    answer: Option<u64>,
    closed: Vec<(ConnId, Option<String>)>,
    target: String,
}

impl App for LoopbackApp {
    fn start(&mut self, ctx: &mut AppCtx<'_>) {
        ctx.listen(Endpoint::Local("sink".into()));
        self.client = Some(ctx.connect(Endpoint::Local(self.target.clone())));
    }
    fn on_listen_failed(&mut self, _: &mut AppCtx<'_>, _: ListenerId, _: &str) {}
    fn on_accept(&mut self, _: &mut AppCtx<'_>, _: ListenerId, conn: ConnId, _: &str) {
        self.accepted.push(conn);
    }
    fn on_session_event(&mut self, ctx: &mut AppCtx<'_>, conn: ConnId, event: SessionEvent) {
        let now = ctx.now().mono;
        match event {
            SessionEvent::Established { .. } if Some(conn) == self.client => {
                ctx.session(conn).unwrap().request::<Pipe>(now, &(), false).unwrap();
            }
            SessionEvent::Request(_) => {
                ctx.session(conn).unwrap().respond::<Pipe>(now, Ok(&42), false).unwrap()
            }
            SessionEvent::Response(r) => {
                self.answer = r.decode::<Pipe>().ok();
                ctx.close(conn, "done");
            }
            _ => {}
        }
    }
    fn on_conn_closed(&mut self, _: &mut AppCtx<'_>, conn: ConnId, error: Option<String>) {
        self.closed.push((conn, error));
    }
    fn on_shutdown(&mut self, _: &mut AppCtx<'_>) {}
    fn exit_code(&self) -> Option<i32> {
        None
    }
}

#[test]
fn in_process_connections_need_no_driver() {
    let mut node = Node::new(
        LoopbackApp { target: "sink".into(), ..LoopbackApp::default() },
        SessionConfig::default(),
        now(0),
    );
    let mut d = FakeDriver::default();
    drain(&mut node, &mut d);
    assert_eq!(node.app().answer, Some(42));
    assert!(
        d.actions.is_empty()
            && d.listener.is_none()
            && d.connecting.is_empty()
            && d.closed.is_empty()
            && d.interest.is_empty(),
        "the driver saw nothing"
    );
    assert_eq!(node.app().accepted.len(), 1);
    let closed = &node.app().closed;
    assert_eq!(closed.len(), 2, "both ends closed: {closed:?}");
    assert!(closed.iter().all(|(_, e)| e.is_none()), "gracefully: {closed:?}");
    assert_eq!(node.connection_count(), 0);
}

#[test]
fn in_process_connect_without_listener_fails_clearly() {
    let mut node = Node::new(
        LoopbackApp { target: "nowhere".into(), ..LoopbackApp::default() },
        SessionConfig::default(),
        now(0),
    );
    let mut d = FakeDriver::default();
    drain(&mut node, &mut d);
    let closed = &node.app().closed;
    assert_eq!(closed.len(), 1);
    assert!(
        closed[0].1.as_deref().is_some_and(|e| e.contains("no local listener named local:nowhere")),
        "{closed:?}"
    );
}
