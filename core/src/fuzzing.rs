//! Entry points for the fuzz targets in `fuzz/`, public so that an ordinary
//! `cargo test` can replay every corpus file through the very same code on stable.
//! Each one panics only if an invariant is broken, never on bad input.

use bytes::Bytes;

use crate::frame::{Decoder, FrameLimits, OutQueue};
use crate::limits::{FRAME_HEADER_LEN, MAX_RPC_BODY_PAYLOAD, READ_CHUNK};
use crate::rpc::{
    wire_for_fuzzing, RemoteError, RemoteErrorKind, Role, Session, SessionConfig, SessionEvent,
};
use crate::time::Instant;

/// Splits `data` into chunks whose sizes are drawn from `data` itself, so the
/// fuzzer explores chunk boundaries as well as contents.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (step, mut rest) = match data.split_first() {
        Some((s, r)) => (usize::from(*s % 32) + 1, r),
        None => (1, data),
    };
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = step.min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// Frame decoder: arbitrary bytes in arbitrary chunks. Every frame it returns must
/// re-encode to the bytes it came from, and the buffer must stay bounded.
pub fn frame_decoder(data: &[u8]) {
    let mut dec = Decoder::new(FrameLimits { max_data_payload: 4096 });
    let mut consumed = Vec::new();
    let mut reencoded = OutQueue::new();
    for chunk in chunks(data) {
        dec.feed(chunk);
        consumed.extend_from_slice(chunk);
        loop {
            match dec.decode() {
                Ok(Some(f)) => reencoded.push(f.kind, f.flags, f.payload),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(dec.buffered() <= FRAME_HEADER_LEN + MAX_RPC_BODY_PAYLOAD + READ_CHUNK);
    }
    let out = reencoded.drain_to_vec();
    assert_eq!(&consumed[..out.len()], &out[..], "decode then encode is the identity");
}

/// An RPC session fed arbitrary bytes, with time moving on between chunks. With the
/// low bit of the first byte set, a valid peer handshake comes first so the fuzzer
/// reaches requests and streams. The session must never panic, must answer every
/// request it accepts, and must keep its queues bounded.
pub fn rpc_session(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let role = if mode & 2 == 0 { Role::Server } else { Role::Client };
    let config = SessionConfig { stream_window: 64 * 1024, ..SessionConfig::default() };
    let mut now = Instant::ZERO;
    let mut s = Session::new(role, config, now);
    if mode & 1 == 1 {
        let peer = if role == Role::Server { Role::Client } else { Role::Server };
        s.handle_bytes(now, &wire_for_fuzzing::handshake(peer));
    }
    for chunk in chunks(rest) {
        now = now + std::time::Duration::from_millis(u64::from(chunk[0]) * 20);
        s.handle_timeout(now);
        s.handle_bytes(now, chunk);
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::Established { .. } if role == Role::Client => {
                    let _ = s.request::<Ping>(now, &(), mode & 4 != 0);
                }
                SessionEvent::Request(req) if s.is_open() => {
                    let err = RemoteError::new(RemoteErrorKind::UnknownMethod, req.method);
                    s.respond_error(now, err).expect("an open session can answer its request");
                }
                SessionEvent::StreamData(d) => s.stream_consumed(d.len()),
                _ => {}
            }
        }
        if s.stream_send_capacity() > 0 {
            let _ = s.send_stream_data(now, Bytes::from_static(b"payload"));
        }
        assert!(s.queued() <= 64 * 1024 * 1024, "write queue bounded");
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = s.io_slices(&mut slices);
        let len: usize = slices[..n].iter().map(|x| x.len()).sum();
        s.handle_written(now, len);
    }
}

struct Ping;
impl crate::rpc::Method for Ping {
    const NAME: &'static str = "fuzz.ping";
    type Request = ();
    type Response = ();
}
