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
    interest: BTreeMap<ConnId, (bool, bool)>,
}

fn drain<A: App>(node: &mut Node<A>, d: &mut FakeDriver) {
    loop {
        match node.poll_output() {
            Output::Timeout(_) => break,
            Output::Action(Action::Listen { listener, .. }) => d.listener = Some(listener),
            Output::Action(Action::Connect { conn, .. }) => d.connecting.push(conn),
            Output::Action(Action::Close(c)) => d.closed.push(c),
            Output::Action(Action::Interest { conn, read, write }) => {
                d.interest.insert(conn, (read, write));
            }
            Output::Action(Action::Unlisten(_)) => {}
            Output::Event(Event::Log { message, .. }) => d.logs.push(message),
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
    let n = a.io_slices(ac, &mut slices);
    let wire: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    if wire.is_empty() {
        return false;
    }
    let mut pos = 0;
    while pos < wire.len() {
        let Some(slot) = b.read_slot(bc) else { break };
        let k = slot.len().min(wire.len() - pos);
        slot[..k].copy_from_slice(&wire[pos..pos + k]);
        b.handle_input(t, Input::Read { conn: bc, n: k }).unwrap();
        pos += k;
    }
    a.handle_input(t, Input::Written { conn: ac, n: pos }).unwrap();
    true
}

#[test]
fn probe_over_an_in_memory_wire() {
    let t = now(0);
    let endpoint = Endpoint::Tcp("127.0.0.1:0".into());
    let mut server = Node::new(
        Probe::new(ProbeMode::Serve { endpoint: endpoint.clone(), once: true }),
        SessionConfig::default(),
        t,
    );
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    let listener = sd.listener.expect("server listens");
    server.handle_input(t, Input::Listening { listener, local: "127.0.0.1:4000".into() }).unwrap();

    let total = 20 * 1024 * 1024 + 3;
    let mut client = Node::new(
        Probe::new(ProbeMode::Send { endpoint, bytes: total }),
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
        Probe::new(ProbeMode::Send { endpoint: Endpoint::Tcp("127.0.0.1:9".into()), bytes: 1 }),
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
        Probe::new(ProbeMode::Serve { endpoint: Endpoint::Tcp("x:1".into()), once: false }),
        SessionConfig::default(),
        t,
    );
    let mut sd = FakeDriver::default();
    drain(&mut server, &mut sd);
    let listener = sd.listener.unwrap();
    let conn = server.accept(t, listener, "evil".into()).unwrap();
    let slot = server.read_slot(conn).unwrap();
    slot[..16].copy_from_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcde");
    server.handle_input(t, Input::Read { conn, n: 16 }).unwrap();
    drain(&mut server, &mut sd);
    assert!(sd.logs.iter().any(|l| l.contains("not a zferry endpoint")), "{:?}", sd.logs);
    // The goodbye is queued; once flushed the connection is closed.
    let mut slices = [IoSlice::new(&[]); 8];
    let n = server.io_slices(conn, &mut slices);
    let len: usize = slices[..n].iter().map(|s| s.len()).sum();
    server.handle_input(t, Input::Written { conn, n: len }).unwrap();
    drain(&mut server, &mut sd);
    assert_eq!(sd.closed, vec![conn]);
    assert_eq!(sd.exit, None, "the server keeps serving");
    assert!(server.accept(t, listener, "next".into()).is_some());
}

#[test]
fn unknown_handles_are_input_errors() {
    let t = now(0);
    let mut node = Node::new(
        Probe::new(ProbeMode::Serve { endpoint: Endpoint::Tcp("x:1".into()), once: false }),
        SessionConfig::default(),
        t,
    );
    assert_eq!(
        node.handle_input(t, Input::Read { conn: ConnId(99), n: 1 }),
        Err(InputError::UnknownConn(ConnId(99)))
    );
    assert_eq!(
        node.handle_input(t, Input::Listening { listener: ListenerId(42), local: String::new() }),
        Err(InputError::UnknownListener(ListenerId(42)))
    );
    assert!(node.read_slot(ConnId(99)).is_none());
}

#[test]
fn timeouts_reach_sessions() {
    let t = now(0);
    let mut server = Node::new(
        Probe::new(ProbeMode::Serve { endpoint: Endpoint::Tcp("x:1".into()), once: false }),
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
