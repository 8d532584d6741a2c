//! The model's send stream: records of a 4-byte tag, a big-endian u32 length and
//! a body, shaped like a real one. A substream is BEGN (what it is: from guid,
//! to guid and name, creation, content, payload size, resume offset), DATA
//! records (payload bytes derived from the snapshot, so a receiver can tell
//! them apart), END0 (checksum of the whole payload). `-I` makes a compound
//! stream: PKG0 (count), the substreams, PEND, as libzfs frames a package. A
//! receiver that sees less than all of it knows.

use std::collections::VecDeque;

use crate::rng::{fnv, mix, FNV_START};

pub const PACKAGE: &[u8; 4] = b"PKG0";
pub const BEGIN: &[u8; 4] = b"BEGN";
pub const DATA: &[u8; 4] = b"DATA";
pub const END: &[u8; 4] = b"END0";
pub const PACKAGE_END: &[u8; 4] = b"PEND";
/// Largest body of a non-DATA record; anything above is a bad stream.
const MAX_HEADER_BODY: u32 = 4096;
/// Payload bytes per DATA record, as ZFS writes records of one block.
const DATA_RECORD: u64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    pub resuming: bool,
    /// 0 for a full stream.
    pub from_guid: u64,
    pub to_guid: u64,
    /// The sender's `fs@snap`.
    pub to_name: String,
    pub creation: i64,
    pub content: u64,
    /// Payload bytes of the whole substream.
    pub total: u64,
    /// Where this (resumed) substream starts in the payload.
    pub offset: u64,
}

impl Begin {
    pub fn snapshot_name(&self) -> &str {
        self.to_name.rsplit_once('@').map_or("", |(_, s)| s)
    }
}

/// Payload size of the stream from `from` to `to`: fixed by the pair, so a
/// resumed or estimated stream agrees with the original. Mostly a few KiB;
/// now and then a few hundred, so credit and pipes fill up.
pub fn payload_size(from_guid: u64, to_guid: u64, content: u64) -> u64 {
    let h = mix(from_guid ^ mix(to_guid) ^ content.rotate_left(7));
    let big = h % 40 == 0;
    if big {
        64 * 1024 + (h >> 8) % (192 * 1024)
    } else if from_guid == 0 {
        400 + (h >> 8) % 8000
    } else {
        200 + (h >> 8) % 3000
    }
}

/// Payload bytes `from..to`: eight bytes per word of a hash of the position.
fn payload(seed: u64, from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((to - from) as usize);
    let mut i = from;
    while i < to {
        let word = mix(seed ^ (i / 8)).to_le_bytes();
        let start = (i % 8) as usize;
        let take = (8 - start).min((to - i) as usize);
        out.extend_from_slice(&word[start..start + take]);
        i += take as u64;
    }
    out
}

fn payload_seed(b: &Begin) -> u64 {
    b.to_guid ^ b.content.rotate_left(17) ^ b.from_guid.rotate_left(29)
}

/// Checksum of payload bytes `from..to` of `b`, continuing `hash`.
pub fn payload_hash(b: &Begin, hash: u64, from: u64, to: u64) -> u64 {
    fnv(hash, &payload(payload_seed(b), from, to))
}

fn record(out: &mut Vec<u8>, tag: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(tag);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

pub fn package_header(out: &mut Vec<u8>, count: u32) {
    record(out, PACKAGE, &count.to_be_bytes());
}

pub fn package_end(out: &mut Vec<u8>) {
    record(out, PACKAGE_END, &[]);
}

/// One substream from `b.offset` to its end.
pub fn substream(out: &mut Vec<u8>, b: &Begin) {
    let mut body = Vec::new();
    body.push(u8::from(b.resuming));
    for v in [b.from_guid, b.to_guid, b.creation as u64, b.content, b.total, b.offset] {
        body.extend_from_slice(&v.to_be_bytes());
    }
    body.extend_from_slice(b.to_name.as_bytes());
    record(out, BEGIN, &body);
    let seed = payload_seed(b);
    let mut i = b.offset;
    while i < b.total {
        let n = DATA_RECORD.min(b.total - i);
        let chunk = payload(seed, i, i + n);
        record(out, DATA, &chunk);
        i += n;
    }
    let checksum = payload_hash(b, FNV_START, 0, b.total);
    record(out, END, &checksum.to_be_bytes());
}

fn decode_begin(body: &[u8]) -> Option<Begin> {
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(body.get(1 + 8 * i..9 + 8 * i)?.try_into().ok()?))
    };
    let to_name = String::from_utf8(body.get(49..)?.to_vec()).ok()?;
    Some(Begin {
        resuming: *body.first()? != 0,
        from_guid: word(0)?,
        to_guid: word(1)?,
        creation: word(2)? as i64,
        content: word(3)?,
        total: word(4)?,
        offset: word(5)?,
        to_name,
    })
}

/// What a reader of a stream sees next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Package(u32),
    Begin(Begin),
    /// Payload bytes, as many as had arrived.
    Data(Vec<u8>),
    End(u64),
    PackageEnd,
}

/// Reads records off bytes as they arrive, without waiting for whole DATA
/// records (a receive writes blocks as they come).
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of payload left in the current DATA record.
    data_left: u64,
}

impl Parser {
    /// The next item from `buf` (consumed), `Ok(None)` if more bytes are needed.
    pub fn next(&mut self, buf: &mut VecDeque<u8>) -> Result<Option<Item>, String> {
        if self.data_left > 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            let n = (self.data_left as usize).min(buf.len());
            self.data_left -= n as u64;
            return Ok(Some(Item::Data(buf.drain(..n).collect())));
        }
        if buf.len() < 8 {
            return Ok(None);
        }
        let head: Vec<u8> = buf.iter().take(8).copied().collect();
        let tag: [u8; 4] = head[..4].try_into().expect("4 bytes");
        let len = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        if &tag == DATA {
            buf.drain(..8);
            self.data_left = u64::from(len);
            return self.next(buf);
        }
        if len > MAX_HEADER_BODY {
            return Err("invalid stream (bad magic number)".into());
        }
        if buf.len() < 8 + len as usize {
            return Ok(None);
        }
        buf.drain(..8);
        let body: Vec<u8> = buf.drain(..len as usize).collect();
        let bad = || "invalid stream (bad magic number)".to_owned();
        let item = match &tag {
            t if t == PACKAGE => {
                Item::Package(u32::from_be_bytes(body.try_into().map_err(|_| bad())?))
            }
            t if t == BEGIN => Item::Begin(decode_begin(&body).ok_or_else(bad)?),
            t if t == END => Item::End(u64::from_be_bytes(body.try_into().map_err(|_| bad())?)),
            t if t == PACKAGE_END => Item::PackageEnd,
            _ => return Err(bad()),
        };
        Ok(Some(item))
    }
}
