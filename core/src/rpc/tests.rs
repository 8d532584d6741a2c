use std::io::IoSlice;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::wire::{Hello, FLAG_CANCEL};
use super::*;
use crate::frame::{FrameType, OutQueue};
use crate::time::Instant;

struct Echo;
impl Method for Echo {
    const NAME: &'static str = "Echo";
    type Request = String;
    type Response = String;
}

/// Upload: the request carries a stream; the response sums it up.
struct Upload;
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Summary {
    bytes: u64,
    checksum: u64,
}
impl Method for Upload {
    const NAME: &'static str = "Upload";
    type Request = String;
    type Response = Summary;
}

/// Download: the response carries a stream of the requested length.
struct Download;
impl Method for Download {
    const NAME: &'static str = "Download";
    type Request = u64;
    type Response = ();
}

fn checksum(acc: u64, data: &[u8]) -> u64 {
    data.iter().fold(acc, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)))
}

fn t(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

/// Two sessions joined by an in-memory wire; `pump` moves bytes until quiet.
struct Pair {
    client: Session,
    server: Session,
    now: Instant,
    client_events: Vec<SessionEvent>,
    server_events: Vec<SessionEvent>,
}

fn transfer(from: &mut Session, to: &mut Session, now: Instant) -> bool {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = from.io_slices(&mut slices);
    let mut wire = Vec::new();
    for s in &slices[..n] {
        wire.extend_from_slice(s);
    }
    if wire.is_empty() {
        return false;
    }
    from.handle_written(now, wire.len());
    // Deliver through the read-slot path in uneven pieces, as a socket would.
    let mut pos = 0;
    while pos < wire.len() {
        let Some(slot) = to.read_slot() else { break };
        let k = slot.len().min(wire.len() - pos).min(10_007);
        slot[..k].copy_from_slice(&wire[pos..pos + k]);
        to.handle_read(now, k);
        pos += k;
    }
    true
}

impl Pair {
    fn new() -> Pair {
        Pair::with_config(SessionConfig::default())
    }

    fn with_config(config: SessionConfig) -> Pair {
        let now = t(0);
        let mut p = Pair {
            client: Session::new(Role::Client, config.clone(), now),
            server: Session::new(Role::Server, config, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        p.pump();
        assert!(matches!(p.client_events.remove(0), SessionEvent::Established { .. }));
        assert!(matches!(p.server_events.remove(0), SessionEvent::Established { .. }));
        p
    }

    fn pump(&mut self) {
        loop {
            let a = transfer(&mut self.client, &mut self.server, self.now);
            let b = transfer(&mut self.server, &mut self.client, self.now);
            self.drain();
            if !a && !b {
                break;
            }
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drain();
    }
}

fn take_request(events: &mut Vec<SessionEvent>) -> IncomingRequest {
    let i = events.iter().position(|e| matches!(e, SessionEvent::Request(_))).expect("a request");
    match events.remove(i) {
        SessionEvent::Request(r) => r,
        _ => unreachable!(),
    }
}

fn take_response(events: &mut Vec<SessionEvent>) -> IncomingResponse {
    let i = events.iter().position(|e| matches!(e, SessionEvent::Response(_))).expect("a response");
    match events.remove(i) {
        SessionEvent::Response(r) => r,
        _ => unreachable!(),
    }
}

fn closed_error(events: &[SessionEvent]) -> Option<SessionError> {
    events.iter().find_map(|e| match e {
        SessionEvent::Closed(err) => Some(err.clone()),
        _ => None,
    })?
}

fn is_closed_gracefully(events: &[SessionEvent]) -> bool {
    events.iter().any(|e| matches!(e, SessionEvent::Closed(None)))
}

#[test]
fn request_response_round_trip() {
    let mut p = Pair::new();
    p.client.request::<Echo>(p.now, &"hello".to_owned(), false).unwrap();
    assert!(p.client.is_busy());
    p.pump();
    let req = take_request(&mut p.server_events);
    assert!(req.is::<Echo>() && !req.stream);
    let text = req.decode::<Echo>().unwrap();
    p.server.respond::<Echo>(p.now, Ok(&text.to_uppercase()), false).unwrap();
    p.pump();
    let resp = take_response(&mut p.client_events);
    assert_eq!(resp.decode::<Echo>().unwrap(), "HELLO");
    assert!(!p.client.is_busy() && !p.server.is_busy());
    // The session is reusable.
    p.client.request::<Echo>(p.now, &"again".to_owned(), false).unwrap();
    p.pump();
    assert_eq!(take_request(&mut p.server_events).decode::<Echo>().unwrap(), "again");
}

/// Sends `total` bytes as the client's request stream, obeying capacity, with the
/// server consuming everything it receives; returns what the server saw.
fn upload(p: &mut Pair, total: usize) -> (u64, u64) {
    p.client.request::<Upload>(p.now, &"dataset".to_owned(), true).unwrap();
    p.pump();
    let req = take_request(&mut p.server_events);
    assert!(req.stream);
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
    let (mut sent, mut got, mut sum) = (0, 0u64, 0u64);
    let mut ended = false;
    let mut rounds = 0;
    while !ended {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        let cap = p.client.stream_send_capacity();
        if sent < total && cap > 0 {
            let k = cap.min(total - sent).min(100_000);
            p.client
                .send_stream_data(p.now, Bytes::copy_from_slice(&data[sent..sent + k]))
                .unwrap();
            sent += k;
            if sent == total {
                p.client.end_stream(p.now).unwrap();
            }
        }
        p.pump();
        for e in std::mem::take(&mut p.server_events) {
            match e {
                SessionEvent::StreamData(d) => {
                    got += d.len() as u64;
                    sum = checksum(sum, &d);
                    p.server.stream_consumed(d.len());
                }
                SessionEvent::StreamEnd => ended = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(sum, checksum(0, &data));
    (got, sum)
}

#[test]
fn request_with_streamed_body_under_credit() {
    let config = SessionConfig { stream_window: 256 * 1024, ..SessionConfig::default() };
    let mut p = Pair::with_config(config);
    let total = 3 * 1024 * 1024 + 17;
    let (bytes, sum) = upload(&mut p, total);
    assert_eq!(bytes, total as u64);
    p.server.respond::<Upload>(p.now, Ok(&Summary { bytes, checksum: sum }), false).unwrap();
    p.pump();
    let resp = take_response(&mut p.client_events).decode::<Upload>().unwrap();
    assert_eq!(resp, Summary { bytes, checksum: sum });
    assert!(!p.client.is_busy() && !p.server.is_busy());
}

#[test]
fn sender_never_exceeds_credit() {
    let config = SessionConfig { stream_window: 64 * 1024, ..SessionConfig::default() };
    let mut p = Pair::with_config(config);
    p.client.request::<Upload>(p.now, &"x".to_owned(), true).unwrap();
    p.pump();
    take_request(&mut p.server_events);
    assert_eq!(p.client.stream_send_capacity(), 64 * 1024);
    p.client.send_stream_data(p.now, Bytes::from(vec![1; 64 * 1024])).unwrap();
    assert_eq!(p.client.stream_send_capacity(), 0);
    assert_eq!(
        p.client.send_stream_data(p.now, Bytes::from_static(b"x")),
        Err(UsageError::OverCapacity { len: 1, capacity: 0 })
    );
    p.pump();
    // Not consumed yet: no credit comes back.
    assert_eq!(p.client.stream_send_capacity(), 0);
    p.server.stream_consumed(64 * 1024);
    p.pump();
    assert_eq!(p.client.stream_send_capacity(), 64 * 1024);
}

#[test]
fn response_with_stream() {
    let mut p = Pair::new();
    p.client.request::<Download>(p.now, &500_000, false).unwrap();
    p.pump();
    let n = take_request(&mut p.server_events).decode::<Download>().unwrap() as usize;
    p.server.respond::<Download>(p.now, Ok(&()), true).unwrap();
    let mut sent = 0;
    let mut got = 0;
    let mut ended = false;
    while !ended {
        let cap = p.server.stream_send_capacity();
        if sent < n && cap > 0 {
            let k = cap.min(n - sent);
            p.server.send_stream_data(p.now, Bytes::from(vec![3; k])).unwrap();
            sent += k;
            if sent == n {
                p.server.end_stream(p.now).unwrap();
            }
        }
        p.pump();
        for e in std::mem::take(&mut p.client_events) {
            match e {
                SessionEvent::Response(r) => assert!(r.stream && r.decode::<Download>().is_ok()),
                SessionEvent::StreamData(d) => {
                    got += d.len();
                    p.client.stream_consumed(d.len());
                }
                SessionEvent::StreamEnd => ended = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, n);
    assert!(!p.client.is_busy() && !p.server.is_busy());
}

#[test]
fn receiver_cancels_a_stream() {
    let mut p = Pair::new();
    p.client.request::<Download>(p.now, &10_000_000, false).unwrap();
    p.pump();
    take_request(&mut p.server_events);
    p.server.respond::<Download>(p.now, Ok(&()), true).unwrap();
    p.server.send_stream_data(p.now, Bytes::from(vec![0; 1000])).unwrap();
    p.pump();
    p.client.cancel_inbound(p.now, "zfs receive failed").unwrap();
    p.pump();
    assert!(p.server_events.contains(&SessionEvent::StreamCancelled("zfs receive failed".into())));
    assert!(!p.server.has_outbound_stream());
    assert_eq!(
        p.server.send_stream_data(p.now, Bytes::from_static(b"more")),
        Err(UsageError::NotOpen).or(Err(UsageError::NoOutboundStream))
    );
    assert!(p.client_events.iter().any(|e| matches!(e, SessionEvent::StreamAborted(_))));
    assert!(!p.client.is_busy() && !p.server.is_busy(), "the session is usable again");
    p.client.request::<Echo>(p.now, &"next".to_owned(), false).unwrap();
    p.pump();
    assert_eq!(take_request(&mut p.server_events).decode::<Echo>().unwrap(), "next");
}

#[test]
fn early_error_response_ends_the_request_stream() {
    let mut p = Pair::new();
    p.client.request::<Upload>(p.now, &"other/client".to_owned(), true).unwrap();
    p.client.send_stream_data(p.now, Bytes::from(vec![9; 5000])).unwrap();
    p.pump();
    take_request(&mut p.server_events);
    let refusal = RemoteError::new(RemoteErrorKind::Refused, "outside your subtree");
    p.server.respond::<Upload>(p.now, Err(refusal.clone()), true).unwrap();
    p.pump();
    let resp = take_response(&mut p.client_events);
    assert!(!resp.stream, "an error response never carries a stream");
    assert_eq!(resp.decode::<Upload>(), Err(CallError::Remote(refusal)));
    assert_eq!(
        p.client.send_stream_data(p.now, Bytes::from_static(b"x")),
        Err(UsageError::NoOutboundStream)
    );
    assert!(!p.client.is_busy() && !p.server.is_busy());
    assert!(p.server_events.iter().any(|e| matches!(e, SessionEvent::StreamAborted(_))));
}

#[test]
fn unknown_method_gets_an_error_response() {
    let mut p = Pair::new();
    p.client.request::<Echo>(p.now, &"x".to_owned(), false).unwrap();
    p.pump();
    let req = take_request(&mut p.server_events);
    assert!(!req.is::<Upload>());
    p.server
        .respond_error(p.now, RemoteError::new(RemoteErrorKind::UnknownMethod, req.method.clone()))
        .unwrap();
    p.pump();
    let err = take_response(&mut p.client_events).decode::<Echo>().unwrap_err();
    assert!(matches!(
        err,
        CallError::Remote(RemoteError { kind: RemoteErrorKind::UnknownMethod, .. })
    ));
}

#[test]
fn bad_request_body_is_a_typed_error() {
    let mut p = Pair::new();
    p.client.request::<Download>(p.now, &5, false).unwrap();
    p.pump();
    let mut req = take_request(&mut p.server_events);
    req.body =
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let err = req.decode::<Download>().unwrap_err();
    assert_eq!(err.kind, RemoteErrorKind::BadRequest);
}

#[test]
fn graceful_close() {
    let mut p = Pair::new();
    p.client.close(p.now, "done");
    p.pump();
    assert!(is_closed_gracefully(&p.client_events), "{:?}", p.client_events);
    assert!(is_closed_gracefully(&p.server_events), "{:?}", p.server_events);
    assert!(p.client.should_drop() && p.server.should_drop());
}

#[test]
fn close_waits_a_bounded_time() {
    let mut p = Pair::new();
    p.client.close(p.now, "done");
    // The peer never answers.
    p.advance(Duration::from_secs(4));
    assert!(!p.client.is_closed());
    p.advance(Duration::from_secs(2));
    assert_eq!(
        closed_error(&p.client_events),
        Some(SessionError::CloseTimeout(Duration::from_secs(5)))
    );
    // The goodbye is still queued: the driver may flush it until the linger ends.
    assert!(!p.client.should_drop());
    p.advance(Duration::from_secs(6));
    assert!(p.client.should_drop());
}

#[test]
fn heartbeats_keep_an_idle_session_alive() {
    let mut p = Pair::new();
    for _ in 0..20 {
        p.advance(Duration::from_secs(5));
        p.pump();
    }
    assert!(p.client.is_open() && p.server.is_open(), "100 s idle but heartbeating");
    assert!(p.client_events.is_empty() && p.server_events.is_empty());
}

#[test]
fn silent_peer_times_out() {
    let mut p = Pair::new();
    let wake = p.client.poll_timeout().unwrap();
    assert_eq!(wake, t(5_000), "first wakeup is the heartbeat");
    // The server's heartbeats never arrive.
    for _ in 0..6 {
        p.advance(Duration::from_secs(5));
        transfer(&mut p.client, &mut p.server, p.now);
    }
    p.drain();
    assert_eq!(
        closed_error(&p.client_events),
        Some(SessionError::IdleTimeout(Duration::from_secs(30)))
    );
}

#[test]
fn spurious_timeout_does_nothing() {
    let mut p = Pair::new();
    p.client.handle_timeout(t(1));
    p.server.handle_timeout(t(0));
    p.drain();
    assert!(p.client_events.is_empty() && p.server_events.is_empty());
    assert!(!p.client.wants_write());
}

#[test]
fn handshake_timeout() {
    let mut c = Session::new(Role::Client, SessionConfig::default(), t(0));
    c.handle_timeout(t(9_999));
    assert!(c.poll_event().is_none());
    c.handle_timeout(t(10_000));
    assert_eq!(
        c.poll_event(),
        Some(SessionEvent::Closed(Some(SessionError::HandshakeTimeout(Duration::from_secs(10)))))
    );
}

#[test]
fn request_timeout() {
    let mut p = Pair::new();
    p.client.request::<Echo>(p.now, &"x".to_owned(), false).unwrap();
    p.pump();
    take_request(&mut p.server_events);
    for _ in 0..12 {
        p.advance(Duration::from_secs(5));
        p.pump();
    }
    assert!(matches!(
        closed_error(&p.client_events),
        Some(SessionError::RequestTimeout { ref method, .. }) if method == "Echo"
    ));
    // The server learns why through the goodbye.
    assert!(
        matches!(closed_error(&p.server_events), Some(SessionError::PeerGoodbye(m)) if m.contains("Echo"))
    );
}

fn handshake_bytes(role: Role, version: u32, magic: &[u8; 8]) -> Vec<u8> {
    let hello = Hello {
        role,
        max_data_payload: 256 * 1024,
        stream_window: 1 << 20,
        software: "test".into(),
    };
    let mut q = OutQueue::new();
    q.push_with(FrameType::Handshake, 0, |b| {
        b.extend_from_slice(magic);
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&postcard::to_stdvec(&hello).unwrap());
    });
    q.drain_to_vec()
}

fn server_fed(bytes: &[u8]) -> (Session, Vec<SessionEvent>) {
    let mut s = Session::new(Role::Server, SessionConfig::default(), t(0));
    s.handle_bytes(t(1), bytes);
    let mut ev = Vec::new();
    while let Some(e) = s.poll_event() {
        ev.push(e);
    }
    (s, ev)
}

#[test]
fn version_mismatch_is_explained_to_both_sides() {
    let (mut server, ev) = server_fed(&handshake_bytes(Role::Client, 2, &MAGIC));
    let err = closed_error(&ev).unwrap();
    assert_eq!(err, SessionError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: 2 });
    let text = err.to_string();
    assert!(text.contains("v2") && text.contains("same zferry release"), "{text}");
    // The server tells the client in its goodbye.
    let mut client = Session::new(Role::Client, SessionConfig::default(), t(0));
    transfer(&mut server, &mut client, t(1));
    let mut cev = Vec::new();
    while let Some(e) = client.poll_event() {
        cev.push(e);
    }
    assert!(
        matches!(closed_error(&cev), Some(SessionError::PeerGoodbye(m)) if m.contains("protocol version mismatch")),
        "{cev:?}"
    );
}

#[test]
fn wrong_magic_and_garbage_are_not_zferry() {
    let (_, ev) = server_fed(&handshake_bytes(Role::Client, 1, b"NOTZFERY"));
    assert!(matches!(closed_error(&ev), Some(SessionError::NotZferry { .. })));
    let (_, ev) = server_fed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let err = closed_error(&ev).unwrap();
    assert!(matches!(err, SessionError::NotZferry { .. }));
    assert!(err.to_string().contains("GET / HTTP"), "{err}");
    // A valid frame that is not a handshake.
    let mut q = OutQueue::new();
    q.push(FrameType::Heartbeat, 0, Bytes::new());
    let (_, ev) = server_fed(&q.drain_to_vec());
    assert!(matches!(closed_error(&ev), Some(SessionError::NotZferry { .. })));
}

#[test]
fn same_role_is_refused() {
    let (_, ev) = server_fed(&handshake_bytes(Role::Server, 1, &MAGIC));
    assert_eq!(closed_error(&ev), Some(SessionError::SameRole(Role::Server)));
}

/// Feeds an established server the given frames after a valid client handshake.
type RawFrame = (FrameType, u8, Vec<u8>);

fn server_after_handshake(frames: &[RawFrame]) -> Vec<SessionEvent> {
    let mut wire = handshake_bytes(Role::Client, 1, &MAGIC);
    let mut q = OutQueue::new();
    for (k, f, p) in frames {
        q.push(*k, *f, Bytes::from(p.clone()));
    }
    wire.extend(q.drain_to_vec());
    server_fed(&wire).1
}

fn request_frames(method: &str, stream: bool, body: &[u8]) -> Vec<RawFrame> {
    let header =
        postcard::to_stdvec(&wire::RequestHeader { method: method.into(), stream }).unwrap();
    vec![(FrameType::RpcHeader, 0, header), (FrameType::RpcBody, 0, body.to_vec())]
}

#[test]
fn out_of_order_frames_end_the_session() {
    let cases: Vec<(&str, Vec<RawFrame>)> = vec![
        ("body without header", vec![(FrameType::RpcBody, 0, vec![])]),
        ("data without stream", vec![(FrameType::StreamData, 0, vec![1])]),
        ("end without stream", vec![(FrameType::StreamEnd, 0, vec![])]),
        ("abort without stream", vec![(FrameType::StreamAbort, 0, b"x".to_vec())]),
        (
            "second handshake",
            vec![(FrameType::Handshake, 0, handshake_bytes(Role::Client, 1, &MAGIC)[8..].to_vec())],
        ),
        ("unknown flags", vec![(FrameType::Heartbeat, 0x40, vec![])]),
        ("credit of 3 bytes", vec![(FrameType::StreamCredit, 0, vec![1, 2, 3])]),
        ("garbage header", vec![(FrameType::RpcHeader, 0, vec![0xff; 20])]),
        ("header while handling", {
            let mut v = request_frames("Echo", false, &[1, b'x']);
            v.extend(request_frames("Echo", false, &[1, b'y']));
            v
        }),
        ("data beyond credit", {
            let mut v = request_frames("Upload", true, &[1, b'x']);
            // The default window is 8 MiB; send 9 frames of 1 MiB.
            for _ in 0..9 {
                v.push((FrameType::StreamData, 0, vec![0; 1 << 20]));
            }
            v
        }),
    ];
    for (name, frames) in cases {
        let ev = server_after_handshake(&frames);
        let err = closed_error(&ev);
        assert!(err.is_some(), "{name}: expected an error, got {ev:?}");
    }
}

#[test]
fn credit_violation_and_oversized_data_are_named() {
    let config = SessionConfig { max_data_payload: 1024, ..SessionConfig::default() };
    let mut s = Session::new(Role::Server, config, t(0));
    let mut wire = handshake_bytes(Role::Client, 1, &MAGIC);
    let mut q = OutQueue::new();
    for (k, f, p) in request_frames("Upload", true, &[1, b'x']) {
        q.push(k, f, Bytes::from(p));
    }
    q.push(FrameType::StreamData, 0, Bytes::from(vec![0; 2000]));
    wire.extend(q.drain_to_vec());
    s.handle_bytes(t(1), &wire);
    let mut ev = Vec::new();
    while let Some(e) = s.poll_event() {
        ev.push(e);
    }
    assert!(
        matches!(
            closed_error(&ev),
            Some(SessionError::Frame(crate::frame::FrameError::TooLong { .. }))
        ),
        "{ev:?}"
    );
}

#[test]
fn eof_mid_stream_is_an_error_and_between_requests_is_not() {
    let mut p = Pair::new();
    p.client.request::<Upload>(p.now, &"x".to_owned(), true).unwrap();
    p.client.send_stream_data(p.now, Bytes::from_static(b"abc")).unwrap();
    p.pump();
    p.server.handle_read(p.now, 0);
    p.drain();
    assert_eq!(closed_error(&p.server_events), Some(SessionError::UnexpectedEof("a stream")));

    let mut p = Pair::new();
    p.server.handle_read(p.now, 0);
    p.drain();
    assert!(is_closed_gracefully(&p.server_events));
}

#[test]
fn cancel_flag_only_on_aborts() {
    let ev = server_after_handshake(&[(FrameType::StreamEnd, FLAG_CANCEL, vec![])]);
    assert!(matches!(closed_error(&ev), Some(SessionError::Malformed { what: "frame flags", .. })));
}

#[test]
fn usage_errors_leave_the_session_intact() {
    let mut c = Session::new(Role::Client, SessionConfig::default(), t(0));
    assert_eq!(c.request::<Echo>(t(0), &"x".into(), false), Err(UsageError::NotOpen));
    let mut p = Pair::new();
    assert_eq!(
        p.server.request::<Echo>(p.now, &"x".into(), false),
        Err(UsageError::WrongRole(Role::Client))
    );
    assert_eq!(
        p.client.respond::<Echo>(p.now, Ok(&"x".into()), false),
        Err(UsageError::WrongRole(Role::Server))
    );
    assert_eq!(
        p.server.respond::<Echo>(p.now, Ok(&"x".into()), false),
        Err(UsageError::NoPendingRequest)
    );
    assert_eq!(p.client.end_stream(p.now), Err(UsageError::NoOutboundStream));
    assert_eq!(p.client.cancel_inbound(p.now, "x"), Err(UsageError::NoInboundStream));
    p.client.request::<Echo>(p.now, &"x".into(), false).unwrap();
    assert_eq!(p.client.request::<Echo>(p.now, &"y".into(), false), Err(UsageError::Busy));
    p.pump();
    assert!(p.client.is_open() && p.server.is_open());
}

#[test]
fn peer_goodbye_mid_request_is_reported() {
    let mut p = Pair::new();
    p.client.request::<Echo>(p.now, &"x".into(), false).unwrap();
    p.pump();
    p.server.close(p.now, "shutting down");
    p.pump();
    assert_eq!(
        closed_error(&p.client_events),
        Some(SessionError::PeerGoodbye("shutting down".into()))
    );
}

#[test]
fn reset_while_closing_is_not_a_failure() {
    let mut p = Pair::new();
    p.client.close(p.now, "done");
    p.client.handle_io_error(p.now, "Connection reset by peer".into());
    p.drain();
    assert!(is_closed_gracefully(&p.client_events), "{:?}", p.client_events);
    // Outside a close, the same error is one.
    p.server.handle_io_error(p.now, "Connection reset by peer".into());
    p.drain();
    assert_eq!(
        closed_error(&p.server_events),
        Some(SessionError::Io("Connection reset by peer".into()))
    );
}
