//! Frame codec throughput: 256 KiB data frames encoded, carried through a simulated
//! socket read (one copy into the decoder's read slot, as a real read makes) and
//! decoded, beside a plain memcpy of the same bytes measured in the same run.
//!
//! Both read their frames from the same 64 MiB source ring, and the baseline writes
//! into a 64 MiB destination ring: a replication stream's bytes are never hot in
//! cache, and a baseline that copies one cached 256 KiB block over and over
//! measures the cache rather than the data path.
//!
//! Run: cargo bench -p zferry-core --bench frame

use std::hint::black_box;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;
use zferry_core::frame::{Decoder, FrameLimits, FrameType, OutQueue};

const FRAME: usize = 256 * 1024;
const TOTAL: usize = 2 << 30; // bytes per measurement
const ROUNDS: usize = 5;
const RING: usize = 64 << 20;

fn best_of(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn gib_per_s(d: Duration) -> f64 {
    TOTAL as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

fn main() {
    let source = Bytes::from((0..RING).map(|i| (i * 31 + i / 4093) as u8).collect::<Vec<u8>>());
    let frames = TOTAL / FRAME;
    let ring_frames = RING / FRAME;
    let frame_at =
        |i: usize| source.slice((i % ring_frames) * FRAME..(i % ring_frames + 1) * FRAME);

    // Baseline: each byte copied once, in frame-sized pieces.
    let mut dest = vec![0u8; RING];
    let memcpy = best_of(|| {
        let start = Instant::now();
        for i in 0..frames {
            let at = (i % ring_frames) * FRAME;
            dest[at..at + FRAME].copy_from_slice(black_box(&frame_at(i)));
            black_box(&mut dest);
        }
        start.elapsed()
    });

    // Codec: encode (no copy), one copy through the "socket" into the read slot,
    // decode (no copy).
    let mut out = OutQueue::new();
    let mut dec = Decoder::new(FrameLimits::default());
    let codec = best_of(|| {
        let start = Instant::now();
        let mut decoded = 0usize;
        for i in 0..frames {
            out.push(FrameType::StreamData, 0, frame_at(i));
            let mut slices = [IoSlice::new(&[]); 8];
            let n = out.io_slices(&mut slices);
            let mut written = 0;
            for s in &slices[..n] {
                let mut pos = 0;
                while pos < s.len() {
                    let slot = dec.read_slot();
                    let k = slot.len().min(s.len() - pos);
                    slot[..k].copy_from_slice(&s[pos..pos + k]);
                    dec.commit(k);
                    pos += k;
                }
                written += s.len();
            }
            out.advance(written);
            while let Ok(Some(frame)) = dec.decode() {
                decoded += frame.payload.len();
                black_box(frame);
            }
        }
        assert_eq!(decoded, frames * FRAME);
        start.elapsed()
    });

    let ratio = memcpy.as_secs_f64() / codec.as_secs_f64();
    println!(
        "frame codec, {} KiB data frames, {} GiB per run, best of {ROUNDS}:",
        FRAME / 1024,
        TOTAL >> 30
    );
    println!("  memcpy baseline          {:>7.2} GiB/s", gib_per_s(memcpy));
    println!(
        "  encode + read + decode   {:>7.2} GiB/s   {:.0}% of memcpy",
        gib_per_s(codec),
        ratio * 100.0
    );
    println!("  per frame                {:>7.0} ns", codec.as_nanos() as f64 / frames as f64);
}
