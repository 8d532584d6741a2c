//! The wire's frame codec.
//!
//! A frame is an 8-byte header followed by its payload:
//!
//! ```text
//! 0      1       2          4                8
//! | type | flags | reserved | payload length | payload ...
//!   u8     u8      2 x 0x00   u32 big-endian
//! ```
//!
//! The length is checked against the limit for the frame's type as soon as the
//! header is complete, before any memory is set aside for the payload. Decoded
//! payloads are `Bytes` slices of the decoder's buffer (no copy); encoded frames are
//! queued as a header chunk plus the payload chunk so a driver writes both with one
//! vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::{
    FRAME_HEADER_LEN, MAX_DATA_PAYLOAD, MAX_HANDSHAKE_PAYLOAD, MAX_REASON_PAYLOAD,
    MAX_RPC_BODY_PAYLOAD, MAX_RPC_HEADER_PAYLOAD, READ_CHUNK,
};

/// The kinds of frame. The numbers are the wire's and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FrameType {
    Handshake = 1,
    RpcHeader = 2,
    RpcBody = 3,
    StreamData = 4,
    StreamEnd = 5,
    StreamAbort = 6,
    StreamCredit = 7,
    Heartbeat = 8,
    Goodbye = 9,
}

impl FrameType {
    pub const ALL: [FrameType; 9] = [
        FrameType::Handshake,
        FrameType::RpcHeader,
        FrameType::RpcBody,
        FrameType::StreamData,
        FrameType::StreamEnd,
        FrameType::StreamAbort,
        FrameType::StreamCredit,
        FrameType::Heartbeat,
        FrameType::Goodbye,
    ];

    pub fn from_u8(byte: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| *t as u8 == byte)
    }

    /// The largest payload this type may carry. Data frames are further bounded by
    /// the size the receiver announced in its handshake.
    pub fn max_payload(self) -> usize {
        match self {
            FrameType::Handshake => MAX_HANDSHAKE_PAYLOAD,
            FrameType::RpcHeader => MAX_RPC_HEADER_PAYLOAD,
            FrameType::RpcBody => MAX_RPC_BODY_PAYLOAD,
            FrameType::StreamData => MAX_DATA_PAYLOAD,
            FrameType::StreamEnd | FrameType::Heartbeat => 0,
            FrameType::StreamAbort | FrameType::Goodbye => MAX_REASON_PAYLOAD,
            FrameType::StreamCredit => 8,
        }
    }
}

/// A frame header as it sits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: FrameType,
    pub flags: u8,
    pub len: u32,
}

impl Header {
    pub fn encode(self) -> [u8; FRAME_HEADER_LEN] {
        let len = self.len.to_be_bytes();
        [self.kind as u8, self.flags, 0, 0, len[0], len[1], len[2], len[3]]
    }

    /// Parses a header and checks its length against `limits`. Never allocates.
    pub fn decode(
        raw: &[u8; FRAME_HEADER_LEN],
        limits: &FrameLimits,
    ) -> Result<Header, FrameError> {
        let kind = FrameType::from_u8(raw[0]).ok_or(FrameError::UnknownType(raw[0]))?;
        if raw[2] != 0 || raw[3] != 0 {
            return Err(FrameError::ReservedBits([raw[2], raw[3]]));
        }
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let max = limits.max_payload(kind);
        if len as usize > max {
            return Err(FrameError::TooLong { kind, len, max });
        }
        Ok(Header { kind, flags: raw[1], len })
    }
}

/// Payload bounds in force on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest stream data payload accepted (at most [`MAX_DATA_PAYLOAD`]).
    pub max_data_payload: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_data_payload: MAX_DATA_PAYLOAD }
    }
}

impl FrameLimits {
    pub fn max_payload(&self, kind: FrameType) -> usize {
        match kind {
            FrameType::StreamData => self.max_data_payload.min(MAX_DATA_PAYLOAD),
            other => other.max_payload(),
        }
    }
}

/// One decoded frame. The payload shares the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub flags: u8,
    pub payload: Bytes,
}

/// Why a byte sequence is not a valid frame stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("reserved header bytes are {0:02x?}, expected zero")]
    ReservedBits([u8; 2]),
    #[error("{kind:?} frame declares {len} payload bytes, more than the limit of {max}")]
    TooLong { kind: FrameType, len: u32, max: usize },
}

/// Most room the decoder sets aside beyond what one read needs.
const DECODER_BLOCK: usize = 4 * 1024 * 1024;

/// Incremental frame decoder.
///
/// Bytes come in either by [`Decoder::feed`] (a copy, for tests and fuzzing) or, in
/// the drivers, by reading straight into [`Decoder::read_slot`] and then calling
/// [`Decoder::commit`]. Frames come out of [`Decoder::decode`]. Memory is bounded:
/// the buffer never holds more than one maximal frame plus one read chunk.
#[derive(Debug)]
pub struct Decoder {
    /// `[..filled]` holds received bytes; `[filled..]` is spare room that was
    /// initialised by an earlier read, so lending it again costs no zeroing.
    buf: BytesMut,
    filled: usize,
    limits: FrameLimits,
    /// Header of the frame whose payload is still arriving.
    pending: Option<Header>,
    /// Set once a decode error occurred; the stream cannot be resynchronised.
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new(limits: FrameLimits) -> Decoder {
        Decoder { buf: BytesMut::new(), filled: 0, limits, pending: None, failed: None }
    }

    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// The bytes received and not yet decoded, e.g. to show a human what a peer
    /// that fails to decode actually sent.
    pub fn peek(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Appends bytes, copying them. Call [`Decoder::decode`] until it returns
    /// `Ok(None)` before feeding more, or the buffer grows with the input.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.ensure_spare(bytes.len());
        self.buf[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }

    /// A region to read into; its size covers the rest of a large pending frame so
    /// that it arrives in one read where the OS allows.
    pub fn read_slot(&mut self) -> &mut [u8] {
        let missing = match self.pending {
            Some(h) => (FRAME_HEADER_LEN + h.len as usize).saturating_sub(self.filled),
            None => 0,
        };
        self.ensure_spare(missing.max(READ_CHUNK));
        &mut self.buf[self.filled..]
    }

    /// Records that the first `n` bytes of the last [`Decoder::read_slot`] were
    /// filled.
    pub fn commit(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
    }

    /// Makes at least `want` bytes of initialised spare room after the data.
    fn ensure_spare(&mut self, want: usize) {
        if self.buf.len() - self.filled >= want {
            return;
        }
        if self.buf.capacity() < self.filled + want {
            // Growing may move the data; spare bytes need not move with it. Room
            // for several reads at once makes that move (of a partial frame) rare.
            self.buf.truncate(self.filled);
            self.buf.reserve(want.max((want * 8).min(DECODER_BLOCK)));
        }
        self.buf.resize(self.filled + want, 0);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an error
    /// every later call returns the same error.
    pub fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                if self.filled < FRAME_HEADER_LEN {
                    return Ok(None);
                }
                let mut raw = [0u8; FRAME_HEADER_LEN];
                raw.copy_from_slice(&self.buf[..FRAME_HEADER_LEN]);
                match Header::decode(&raw, &self.limits) {
                    Ok(h) => {
                        self.pending = Some(h);
                        h
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let total = FRAME_HEADER_LEN + header.len as usize;
        if self.filled < total {
            return Ok(None);
        }
        self.pending = None;
        self.buf.advance(FRAME_HEADER_LEN);
        let payload = self.buf.split_to(header.len as usize).freeze();
        self.filled -= total;
        Ok(Some(Frame { kind: header.kind, flags: header.flags, payload }))
    }
}

/// Outgoing bytes of one connection: a queue of chunks ready for a vectored write.
///
/// Headers are written into a small reusable arena, so queuing a data frame costs no
/// allocation in the steady state and never copies the payload. A payload may also
/// stay outside the process altogether ([`OutQueue::push_spliced`]): the queue then
/// holds only its length, and the driver moves the bytes from a pipe with splice(2).
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// Spliced payloads queued and not completely written.
    spliced: usize,
    arena: BytesMut,
}

#[derive(Debug)]
enum Chunk {
    Bytes(Bytes),
    /// This many bytes wait in the driver's transit pipe of this connection.
    Spliced(usize),
}

/// Payloads up to this size are copied next to their header: one chunk instead of
/// two is worth a small copy.
const COALESCE_MAX: usize = 512;
const ARENA_CAPACITY: usize = 16 * 1024;

impl OutQueue {
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one frame. The caller has checked the payload against the limits.
    pub fn push(&mut self, kind: FrameType, flags: u8, payload: Bytes) {
        debug_assert!(payload.len() <= kind.max_payload());
        let header = Header { kind, flags, len: payload.len() as u32 }.encode();
        if self.arena.capacity() - self.arena.len() < FRAME_HEADER_LEN + COALESCE_MAX {
            self.arena.reserve(ARENA_CAPACITY);
        }
        self.arena.extend_from_slice(&header);
        if payload.len() <= COALESCE_MAX {
            self.arena.extend_from_slice(&payload);
            let frame = self.arena.split().freeze();
            self.push_chunk(frame);
        } else {
            let header = self.arena.split().freeze();
            self.push_chunk(header);
            self.push_chunk(payload);
        }
    }

    /// Queues a frame whose payload is written by `fill` straight into the arena,
    /// for small control payloads that would otherwise be built in a temporary.
    pub fn push_with(&mut self, kind: FrameType, flags: u8, fill: impl FnOnce(&mut BytesMut)) {
        let start = self.arena.len();
        self.arena.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        fill(&mut self.arena);
        let len = self.arena.len() - start - FRAME_HEADER_LEN;
        let header = Header { kind, flags, len: len as u32 }.encode();
        self.arena[start..start + FRAME_HEADER_LEN].copy_from_slice(&header);
        let frame = self.arena.split().freeze();
        self.push_chunk(frame);
    }

    /// Queues a frame whose `len` payload bytes the driver has put into its transit
    /// pipe for this connection: the header goes out from here, the payload from
    /// there ([`OutQueue::spliced_front`]). The caller has checked `len`.
    pub fn push_spliced(&mut self, kind: FrameType, flags: u8, len: usize) {
        debug_assert!(len > 0 && len <= kind.max_payload());
        let header = Header { kind, flags, len: len as u32 }.encode();
        if self.arena.capacity() - self.arena.len() < FRAME_HEADER_LEN {
            self.arena.reserve(ARENA_CAPACITY);
        }
        self.arena.extend_from_slice(&header);
        let header = self.arena.split().freeze();
        self.push_chunk(header);
        self.len += len;
        self.spliced += 1;
        self.chunks.push_back(Chunk::Spliced(len));
    }

    /// True while a spliced payload is queued: its bytes are still in the pipe.
    pub fn has_spliced(&self) -> bool {
        self.spliced > 0
    }

    fn push_chunk(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(Chunk::Bytes(chunk));
        }
    }

    /// Fills `out` with the queued chunks, in order, up to the first spliced
    /// payload; returns how many it filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, chunk) in out.iter_mut().zip(self.chunks.iter()) {
            let Chunk::Bytes(bytes) = chunk else { break };
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// When a spliced payload is next: how many of its bytes are still to be moved
    /// from the transit pipe. Report them with [`OutQueue::advance`] as usual.
    pub fn spliced_front(&self) -> Option<usize> {
        match self.chunks.front() {
            Some(Chunk::Spliced(n)) => Some(*n),
            _ => None,
        }
    }

    /// The first queued chunk, for writers that take one buffer at a time; `None`
    /// before a spliced payload.
    pub fn front(&self) -> Option<&[u8]> {
        match self.chunks.front() {
            Some(Chunk::Bytes(b)) => Some(&b[..]),
            _ => None,
        }
    }

    /// Drops the first `n` queued bytes, which the driver has written.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            let left = match front {
                Chunk::Bytes(b) => b.len(),
                Chunk::Spliced(m) => *m,
            };
            if left > n {
                match front {
                    Chunk::Bytes(b) => b.advance(n),
                    Chunk::Spliced(m) => *m -= n,
                }
                break;
            }
            n -= left;
            if let Some(Chunk::Spliced(_)) = self.chunks.pop_front() {
                self.spliced -= 1;
            }
        }
    }

    /// Moves every queued byte into one contiguous buffer (tests, fuzzing, benches).
    /// Spliced payloads are not in the queue; they would come out missing.
    pub fn drain_to_vec(&mut self) -> Vec<u8> {
        debug_assert!(self.spliced == 0, "spliced payloads cannot be drained");
        let mut out = Vec::with_capacity(self.len);
        for chunk in self.chunks.drain(..) {
            if let Chunk::Bytes(b) = chunk {
                out.extend_from_slice(&b);
            }
        }
        self.len = 0;
        self.spliced = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(frames: &[(FrameType, u8, Vec<u8>)]) -> Vec<u8> {
        let mut q = OutQueue::new();
        for (kind, flags, payload) in frames {
            q.push(*kind, *flags, Bytes::from(payload.clone()));
        }
        q.drain_to_vec()
    }

    fn decode_all(dec: &mut Decoder) -> Result<Vec<Frame>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = dec.decode()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn spliced_payloads_hold_their_place_in_the_queue() {
        // What a vectored write would take now: chunk lengths, the second's bytes.
        fn offered(q: &OutQueue) -> (Vec<usize>, Vec<u8>) {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = q.io_slices(&mut slices);
            let second = slices.get(1).filter(|_| n > 1).map(|s| s.to_vec()).unwrap_or_default();
            (slices[..n].iter().map(|s| s.len()).collect(), second)
        }
        let mut q = OutQueue::new();
        q.push(FrameType::Heartbeat, 0, Bytes::new());
        q.push_spliced(FrameType::StreamData, 0, 1000);
        q.push(FrameType::StreamEnd, 0, Bytes::new());
        assert_eq!(q.len(), 3 * FRAME_HEADER_LEN + 1000);
        assert!(q.has_spliced());
        // The heartbeat and the data header go out by vectored write...
        let (lens, header) = offered(&q);
        assert_eq!(lens, [FRAME_HEADER_LEN, FRAME_HEADER_LEN]);
        assert_eq!(header, [4, 0, 0, 0, 0, 0, 0x03, 0xE8]);
        assert_eq!(q.spliced_front(), None);
        q.advance(FRAME_HEADER_LEN + 3);
        assert_eq!(q.spliced_front(), None, "not before the header is out");
        q.advance(FRAME_HEADER_LEN - 3);
        // ...then the payload from the pipe, in as many pieces as it takes...
        assert!(offered(&q).0.is_empty());
        assert_eq!(q.spliced_front(), Some(1000));
        q.advance(999);
        assert_eq!(q.spliced_front(), Some(1));
        assert!(q.has_spliced());
        // ...and the rest, even within the same write.
        q.advance(1 + 4);
        assert!(!q.has_spliced());
        assert_eq!(offered(&q).0, [FRAME_HEADER_LEN - 4]);
        q.advance(4);
        assert!(q.is_empty());
    }

    #[test]
    fn header_layout_is_fixed() {
        let h = Header { kind: FrameType::StreamData, flags: 0x80, len: 0x0102_0304 };
        assert_eq!(h.encode(), [4, 0x80, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn round_trip_every_type() {
        let frames: Vec<_> = FrameType::ALL
            .iter()
            .map(|&k| {
                let len = k.max_payload().min(1000);
                (k, 7u8, vec![0xAB; len])
            })
            .collect();
        let wire = encode_all(&frames);
        let mut dec = Decoder::new(FrameLimits::default());
        dec.feed(&wire);
        let got = decode_all(&mut dec).unwrap();
        assert_eq!(got.len(), frames.len());
        for (g, (k, f, p)) in got.iter().zip(&frames) {
            assert_eq!((g.kind, g.flags, &g.payload[..]), (*k, *f, &p[..]));
        }
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn one_byte_at_a_time() {
        let frames = vec![
            (FrameType::RpcHeader, 1, b"hello".to_vec()),
            (FrameType::StreamData, 0, vec![9; 3000]),
            (FrameType::StreamEnd, 0, vec![]),
        ];
        let wire = encode_all(&frames);
        let mut dec = Decoder::new(FrameLimits::default());
        let mut got = Vec::new();
        for b in &wire {
            dec.feed(&[*b]);
            got.extend(decode_all(&mut dec).unwrap());
        }
        assert_eq!(got.len(), 3);
        assert_eq!(&got[1].payload[..], &[9; 3000][..]);
    }

    #[test]
    fn read_slot_path_matches_feed() {
        let frames = vec![
            (FrameType::StreamData, 0, (0..200_000u32).map(|i| i as u8).collect::<Vec<_>>()),
            (FrameType::Heartbeat, 0, vec![]),
        ];
        let wire = encode_all(&frames);
        let mut dec = Decoder::new(FrameLimits::default());
        let mut pos = 0;
        let mut got = Vec::new();
        while pos < wire.len() {
            let slot = dec.read_slot();
            let n = slot.len().min(wire.len() - pos).min(777);
            slot[..n].copy_from_slice(&wire[pos..pos + n]);
            dec.commit(n);
            pos += n;
            got.extend(decode_all(&mut dec).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].payload[..], &frames[0].2[..]);
    }

    #[test]
    fn slot_covers_a_pending_large_frame() {
        let mut dec = Decoder::new(FrameLimits::default());
        dec.feed(&Header { kind: FrameType::StreamData, flags: 0, len: 500_000 }.encode());
        assert_eq!(dec.decode(), Ok(None));
        assert!(dec.read_slot().len() >= 500_000 - FRAME_HEADER_LEN);
        dec.commit(0);
        assert_eq!(dec.buffered(), FRAME_HEADER_LEN);
    }

    #[test]
    fn oversized_length_is_rejected_before_allocation() {
        let mut dec = Decoder::new(FrameLimits::default());
        dec.feed(&Header { kind: FrameType::RpcBody, flags: 0, len: u32::MAX }.encode());
        let err = dec.decode().unwrap_err();
        assert!(matches!(err, FrameError::TooLong { kind: FrameType::RpcBody, .. }), "{err}");
        assert!(dec.buf.capacity() < 1024, "no allocation for the declared length");
        // The error sticks: the stream cannot be resynchronised.
        dec.feed(&Header { kind: FrameType::Heartbeat, flags: 0, len: 0 }.encode());
        assert_eq!(dec.decode().unwrap_err(), err);
    }

    #[test]
    fn data_limit_follows_negotiation() {
        let mut dec = Decoder::new(FrameLimits { max_data_payload: 1024 });
        dec.feed(&Header { kind: FrameType::StreamData, flags: 0, len: 1025 }.encode());
        assert_eq!(
            dec.decode(),
            Err(FrameError::TooLong { kind: FrameType::StreamData, len: 1025, max: 1024 })
        );
    }

    #[test]
    fn every_header_error() {
        let limits = FrameLimits::default();
        assert_eq!(
            Header::decode(&[0, 0, 0, 0, 0, 0, 0, 0], &limits),
            Err(FrameError::UnknownType(0))
        );
        assert_eq!(
            Header::decode(&[10, 0, 0, 0, 0, 0, 0, 0], &limits),
            Err(FrameError::UnknownType(10))
        );
        assert_eq!(
            Header::decode(&[8, 0, 0, 1, 0, 0, 0, 0], &limits),
            Err(FrameError::ReservedBits([0, 1]))
        );
        assert!(matches!(
            Header::decode(&[8, 0, 0, 0, 0, 0, 0, 1], &limits),
            Err(FrameError::TooLong { kind: FrameType::Heartbeat, len: 1, max: 0 })
        ));
    }

    #[test]
    fn truncated_input_waits_for_more() {
        let wire = encode_all(&[(FrameType::RpcBody, 0, vec![1; 100])]);
        let mut dec = Decoder::new(FrameLimits::default());
        dec.feed(&wire[..50]);
        assert_eq!(dec.decode(), Ok(None));
        assert_eq!(dec.buffered(), 50);
    }

    #[test]
    fn out_queue_partial_writes_and_vectored_slices() {
        let mut q = OutQueue::new();
        let big = Bytes::from(vec![5u8; 4096]);
        q.push(FrameType::StreamData, 0, big.clone());
        q.push(FrameType::Heartbeat, 0, Bytes::new());
        assert_eq!(q.len(), 8 + 4096 + 8);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = q.io_slices(&mut slices);
        assert_eq!(n, 3, "header, payload (not copied), coalesced heartbeat");
        assert_eq!(slices[1].as_ptr(), big.as_ptr(), "payload chunk is the caller's buffer");
        let mut written = Vec::new();
        while !q.is_empty() {
            let front = q.front().unwrap();
            let k = front.len().min(1000);
            written.extend_from_slice(&front[..k]);
            q.advance(k);
        }
        let mut dec = Decoder::new(FrameLimits::default());
        dec.feed(&written);
        let frames = decode_all(&mut dec).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].payload, big);
    }

    #[test]
    fn push_with_writes_in_place() {
        let mut q = OutQueue::new();
        q.push_with(FrameType::Goodbye, 3, |b| b.extend_from_slice(b"bye"));
        let wire = q.drain_to_vec();
        assert_eq!(wire, [9, 3, 0, 0, 0, 0, 0, 3, b'b', b'y', b'e']);
    }

    proptest! {
        /// Any split of a valid byte stream decodes to the same frames.
        #[test]
        fn any_split_gives_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
            cuts in proptest::collection::vec(0usize..20_000, 0..16),
        ) {
            let frames: Vec<_> = payloads.into_iter().map(|p| (FrameType::StreamData, 0u8, p)).collect();
            let wire = encode_all(&frames);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(0);
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut dec = Decoder::new(FrameLimits::default());
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                dec.feed(&wire[w[0]..w[1]]);
                got.extend(decode_all(&mut dec).unwrap());
            }
            prop_assert_eq!(got.len(), frames.len());
            for (g, f) in got.iter().zip(&frames) {
                prop_assert_eq!(&g.payload[..], &f.2[..]);
            }
        }

        /// Arbitrary bytes never panic, and the buffer stays bounded.
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..20)) {
            let mut dec = Decoder::new(FrameLimits::default());
            for c in chunks {
                dec.feed(&c);
                while let Ok(Some(_)) = dec.decode() {}
                prop_assert!(dec.buffered() <= FRAME_HEADER_LEN + MAX_RPC_BODY_PAYLOAD + 600);
            }
        }
    }
}
