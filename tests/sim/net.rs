//! The simulated network: listeners, and connections as two byte queues with
//! TCP's guarantees and nothing more. Bytes arrive in order, in segments of
//! random size after random delays; a writer can have only so many bytes in
//! flight (the socket buffers) and is blocked beyond; a partition holds bytes
//! (as retransmission would) until it heals; a reset, a cut (a prefix, then end
//! of stream) or a peer's close is seen where a socket would show it.

use std::collections::{BTreeMap, VecDeque};

use crate::rng::Rng;

pub type SockId = u64;
pub type Pid = u64;

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addr {
    Tcp { host: usize, port: u16 },
    Unix { host: usize, path: String },
}

#[derive(Debug)]
struct Segment {
    data: Vec<u8>,
    /// Earliest time it can be read.
    at: u64,
}

/// One end of a connection.
#[derive(Debug)]
pub struct Sock {
    pub host: usize,
    pub owner: Pid,
    /// The other end, while it is open.
    peer: Option<SockId>,
    /// The host the bytes come from (the peer's).
    src_host: usize,
    /// Bytes on their way here, then waiting to be read.
    inbox: VecDeque<Segment>,
    inbox_bytes: usize,
    /// Bytes the peer may have in flight towards us.
    cap: usize,
    /// The peer closed: end of stream once the inbox is read, not before `at`.
    eof_at: Option<u64>,
    /// Reads and writes fail with this (reset).
    error: Option<String>,
    /// Writes fail with this (the peer is gone).
    write_error: Option<String>,
    /// End of stream or error reported already.
    pub finished: bool,
    /// A unix socket: on one host, never partitioned.
    local: bool,
}

#[derive(Debug)]
pub enum Read {
    Data(Vec<u8>),
    WouldBlock,
    Eof,
    Error(String),
}

#[derive(Debug, Default)]
pub struct Net {
    socks: BTreeMap<SockId, Sock>,
    pub listeners: BTreeMap<Addr, (Pid, zferry_core::node::ListenerId)>,
    next_sock: SockId,
    next_port: u16,
    /// Hosts in different groups cannot reach each other.
    groups: Vec<u32>,
    /// One-way latency per host pair, nanoseconds.
    latency: BTreeMap<(usize, usize), u64>,
}

pub const RESET: &str = "Connection reset by peer (os error 104)";
pub const BROKEN_PIPE: &str = "Broken pipe (os error 32)";

impl Net {
    pub fn new(hosts: usize, rng: &mut Rng) -> Net {
        let mut latency = BTreeMap::new();
        for a in 0..hosts {
            for b in 0..hosts {
                // 50 µs on one host, 0.2 to 30 ms between hosts.
                let l = if a == b { 50_000 } else { rng.range(200_000, 30_000_000) };
                latency.insert((a, b), l);
            }
        }
        Net {
            socks: BTreeMap::new(),
            listeners: BTreeMap::new(),
            next_sock: 1,
            next_port: 40000,
            groups: vec![0; hosts],
            latency,
        }
    }

    pub fn latency(&self, a: usize, b: usize, rng: &mut Rng) -> u64 {
        let base = self.latency.get(&(a, b)).copied().unwrap_or(1_000_000);
        base + rng.below(base / 2 + 1)
    }

    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups.get(a) == self.groups.get(b)
    }

    pub fn partition(&mut self, host: usize, group: u32) {
        if let Some(g) = self.groups.get_mut(host) {
            *g = group;
        }
    }

    pub fn partitioned(&self) -> bool {
        self.groups.iter().any(|g| *g != 0)
    }

    /// Everyone reachable again; held bytes go on their way.
    pub fn heal(&mut self, now: u64, rng: &mut Rng) -> Vec<(Pid, u64)> {
        let n = self.groups.len();
        let was: Vec<u32> = std::mem::replace(&mut self.groups, vec![0; n]);
        let mut wake = Vec::new();
        let ids: Vec<SockId> = self.socks.keys().copied().collect();
        for id in ids {
            let (host, src, local) = {
                let s = &self.socks[&id];
                (s.host, s.src_host, s.local)
            };
            if local || was.get(host) == was.get(src) {
                continue;
            }
            let delay = self.latency(src, host, rng);
            let s = self.socks.get_mut(&id).expect("listed");
            let mut t = now + delay;
            for seg in s.inbox.iter_mut() {
                seg.at = seg.at.max(t);
                t = seg.at;
            }
            if let Some(e) = &mut s.eof_at {
                *e = (*e).max(t);
            }
            wake.push((s.owner, t));
        }
        wake
    }

    pub fn ephemeral_port(&mut self) -> u16 {
        self.next_port = if self.next_port >= 60999 { 40000 } else { self.next_port + 1 };
        self.next_port
    }

    /// A connection between two programs; returns (client end, server end).
    #[allow(clippy::too_many_arguments)]
    pub fn pair(
        &mut self,
        client: (usize, Pid),
        server: (usize, Pid),
        local: bool,
        rng: &mut Rng,
    ) -> (SockId, SockId) {
        let (c, s) = (self.next_sock, self.next_sock + 1);
        self.next_sock += 2;
        let mut make = |host: usize, owner: Pid, peer: SockId, src_host: usize| Sock {
            host,
            owner,
            peer: Some(peer),
            src_host,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            // Socket buffers: 4 KiB to 256 KiB in flight.
            cap: 1 << rng.range(12, 18),
            eof_at: None,
            error: None,
            write_error: None,
            finished: false,
            local,
        };
        let cs = make(client.0, client.1, s, server.0);
        let ss = make(server.0, server.1, c, client.0);
        self.socks.insert(c, cs);
        self.socks.insert(s, ss);
        (c, s)
    }

    /// How many bytes a write to `id` would take now.
    pub fn room(&self, id: SockId) -> usize {
        let Some(s) = self.socks.get(&id) else { return 0 };
        match s.peer.and_then(|p| self.socks.get(&p)) {
            Some(p) => p.cap.saturating_sub(p.inbox_bytes),
            None => 0,
        }
    }

    /// Writes bytes towards the peer. `Ok(0)` is "would block". Returns the
    /// peer's owner and when the last segment can be read, to wake it then.
    pub fn write(
        &mut self,
        id: SockId,
        data: &[u8],
        now: u64,
        rng: &mut Rng,
    ) -> Result<(usize, Option<(Pid, u64)>), String> {
        let Some(s) = self.socks.get(&id) else { return Err(BROKEN_PIPE.into()) };
        if let Some(e) = s.error.clone().or_else(|| s.write_error.clone()) {
            return Err(e);
        }
        let Some(peer_id) = s.peer else { return Err(BROKEN_PIPE.into()) };
        let (src, dst) = (s.host, self.socks.get(&peer_id).map_or(s.host, |p| p.host));
        let n = data.len().min(self.room(id));
        if n == 0 {
            return Ok((0, None));
        }
        let mut t = now + self.latency(src, dst, rng);
        let p = self.socks.get_mut(&peer_id).expect("room checked");
        if let Some(last) = p.inbox.back() {
            t = t.max(last.at);
        }
        let mut pos = 0;
        while pos < n {
            // Mostly MSS-sized segments, sometimes tiny ones.
            let size = if rng.chance(200) { rng.usize(1, 64) } else { rng.usize(1, 1448) };
            let end = (pos + size).min(n);
            p.inbox.push_back(Segment { data: data[pos..end].to_vec(), at: t });
            t += rng.below(200_000);
            pos = end;
        }
        p.inbox_bytes += n;
        let last = p.inbox.back().map_or(t, |s| s.at);
        Ok((n, Some((p.owner, last))))
    }

    /// Whether a read of `id` would return something now.
    pub fn readable(&self, id: SockId, now: u64) -> bool {
        let Some(s) = self.socks.get(&id) else { return false };
        if s.finished {
            return false;
        }
        if s.error.is_some() {
            return true;
        }
        let open = s.local || self.reachable(s.src_host, s.host);
        match s.inbox.front() {
            Some(seg) => open && seg.at <= now,
            None => s.eof_at.is_some_and(|t| t <= now && open),
        }
    }

    /// Reads at most `max` bytes that have arrived.
    pub fn read(&mut self, id: SockId, max: usize, now: u64, rng: &mut Rng) -> Read {
        if !self.readable(id, now) {
            return Read::WouldBlock;
        }
        let s = self.socks.get_mut(&id).expect("readable");
        if let Some(e) = &s.error {
            s.finished = true;
            return Read::Error(e.clone());
        }
        if s.inbox.is_empty() {
            s.finished = true;
            return Read::Eof;
        }
        let want = if rng.chance(500) { max } else { rng.usize(1, max.max(1)) };
        let mut out = Vec::new();
        while out.len() < want {
            let Some(seg) = s.inbox.front_mut() else { break };
            if seg.at > now {
                break;
            }
            let take = (want - out.len()).min(seg.data.len());
            out.extend(seg.data.drain(..take));
            if seg.data.is_empty() {
                s.inbox.pop_front();
            }
        }
        s.inbox_bytes -= out.len();
        Read::Data(out)
    }

    /// The next time bytes become readable on `id`, if any are on their way.
    pub fn next_arrival(&self, id: SockId, now: u64) -> Option<u64> {
        let s = self.socks.get(&id)?;
        let t = s.inbox.front().map(|seg| seg.at).or(s.eof_at)?;
        (t > now).then_some(t)
    }

    /// The owner closes its end. Unread bytes make it a reset (as a kernel
    /// does); otherwise the peer reads what is in flight, then end of stream.
    /// Returns the peer's owner and when it should look.
    pub fn close(&mut self, id: SockId, now: u64, rng: &mut Rng) -> Option<(Pid, u64)> {
        let s = self.socks.remove(&id)?;
        let peer_id = s.peer?;
        let unread = s.inbox_bytes > 0;
        let delay = self.latency(s.host, s.src_host, rng);
        let p = self.socks.get_mut(&peer_id)?;
        p.peer = None;
        p.write_error = Some(if unread { RESET.into() } else { BROKEN_PIPE.into() });
        if unread {
            p.error = Some(RESET.into());
            p.inbox.clear();
            p.inbox_bytes = 0;
            return Some((p.owner, now + delay));
        }
        let at = p.inbox.back().map_or(now + delay, |seg| seg.at.max(now + delay));
        p.eof_at = Some(at);
        Some((p.owner, at))
    }

    /// A reset on the wire: both ends fail, whatever was in flight is lost.
    pub fn reset(&mut self, id: SockId, now: u64) -> Vec<(Pid, u64)> {
        let mut wake = Vec::new();
        let peer = self.socks.get(&id).and_then(|s| s.peer);
        for end in [Some(id), peer].into_iter().flatten() {
            if let Some(s) = self.socks.get_mut(&end) {
                s.error = Some(RESET.into());
                s.inbox.clear();
                s.inbox_bytes = 0;
                wake.push((s.owner, now));
            }
        }
        wake
    }

    /// The stream towards `id` ends early: it reads part of what is in flight,
    /// then end of stream; its peer's later writes fail.
    pub fn cut(&mut self, id: SockId, now: u64, rng: &mut Rng) -> Vec<(Pid, u64)> {
        let mut wake = Vec::new();
        let Some(s) = self.socks.get_mut(&id) else { return wake };
        let keep = rng.usize(0, s.inbox.len());
        s.inbox.truncate(keep);
        s.inbox_bytes = s.inbox.iter().map(|seg| seg.data.len()).sum();
        let at = s.inbox.back().map_or(now, |seg| seg.at);
        s.eof_at = Some(at);
        let peer = s.peer.take();
        wake.push((s.owner, at));
        if let Some(p) = peer.and_then(|p| self.socks.get_mut(&p)) {
            p.write_error = Some(BROKEN_PIPE.into());
            wake.push((p.owner, now));
        }
        wake
    }

    pub fn open_socks(&self) -> Vec<SockId> {
        self.socks.keys().copied().collect()
    }

    pub fn owner(&self, id: SockId) -> Option<Pid> {
        self.socks.get(&id).map(|s| s.owner)
    }

    pub fn is_local(&self, id: SockId) -> bool {
        self.socks.get(&id).is_some_and(|s| s.local)
    }
}
