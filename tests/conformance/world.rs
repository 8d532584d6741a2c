//! What the script observed, normalized so that two runs can be compared: one lane
//! of lines per handle, and what the steps share (addresses, the timer).
//!
//! Within a lane lines keep the order the node delivered them in, which the wire or
//! a process guarantees; across lanes the order depends on scheduling, so a step's
//! lanes are written out sorted by name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use zferry_core::node::{ListenerId, ProcessResult};
use zferry_core::probe::StreamDigest;
use zferry_core::rpc::SessionEvent;
use zferry_core::time::Instant;

use crate::script::Ev;

#[derive(Debug)]
struct Lane {
    name: String,
    /// Whether to record how many bytes went through a process's pipes: only
    /// where the scenario fixes that number.
    count_bytes: bool,
    /// Whether to record the stream bytes a connection received: not where some
    /// of them arrive or not depending on timing.
    count_data: bool,
}

#[derive(Debug)]
pub struct World {
    trace: Rc<RefCell<Vec<String>>>,
    lines: BTreeMap<String, Vec<String>>,
    lanes: BTreeMap<u64, Lane>,
    /// Stream bytes received on a connection and not yet written to its lane:
    /// how they were split into reads differs from run to run, their sum does not.
    data: BTreeMap<u64, StreamDigest>,
    /// The script's timer, armed by steps; `None` when disarmed.
    pub timer: Option<Instant>,
    /// Where unix sockets go; unique to the run.
    pub dir: PathBuf,
    pub tcp: Option<ListenerId>,
    pub tcp_addr: String,
    pub unix: Option<ListenerId>,
    pub unix_path: String,
}

impl World {
    pub fn new(trace: Rc<RefCell<Vec<String>>>, dir: PathBuf) -> World {
        World {
            trace,
            lines: BTreeMap::new(),
            lanes: BTreeMap::new(),
            data: BTreeMap::new(),
            timer: None,
            dir,
            tcp: None,
            tcp_addr: String::new(),
            unix: None,
            unix_path: String::new(),
        }
    }

    /// Names the lane of a handle (the `.0` of a listener, connection or process).
    pub fn name(&mut self, id: u64, name: &str) {
        self.lanes.insert(id, Lane { name: name.to_owned(), count_bytes: false, count_data: true });
    }

    /// Names a process's lane and records its byte count when it is done.
    pub fn name_counted(&mut self, id: u64, name: &str) {
        self.lanes.insert(id, Lane { name: name.to_owned(), count_bytes: true, count_data: true });
    }

    /// Names a connection's lane without recording the stream bytes it receives.
    pub fn name_data_varies(&mut self, id: u64, name: &str) {
        self.lanes
            .insert(id, Lane { name: name.to_owned(), count_bytes: false, count_data: false });
    }

    /// Adds a line to the lane of `id`, after the stream bytes it received so far.
    pub fn note(&mut self, id: u64, line: impl Into<String>) {
        self.flush_data(id);
        let lane = self.lane_name(id);
        self.lines.entry(lane).or_default().push(line.into());
    }

    /// Adds a line to a lane that belongs to no handle (the timer, the node).
    pub fn note_in(&mut self, lane: &str, line: impl Into<String>) {
        self.lines.entry(lane.to_owned()).or_default().push(line.into());
    }

    fn lane_name(&self, id: u64) -> String {
        self.lanes.get(&id).map_or_else(|| format!("unnamed handle {id}"), |l| l.name.clone())
    }

    fn flush_data(&mut self, id: u64) {
        if let Some(d) = self.data.remove(&id) {
            let s = d.finish();
            let line = format!("stream data: {} bytes, digest {:016x}", s.bytes, s.digest);
            self.lines.entry(self.lane_name(id)).or_default().push(line);
        }
    }

    /// Appends the step's lanes to the trace.
    pub fn end_step(&mut self, step: &str) {
        let ids: Vec<u64> = self.data.keys().copied().collect();
        for id in ids {
            self.flush_data(id);
        }
        // Where a run that hangs got to; shown when the test fails.
        eprintln!("step done: {step}");
        let mut trace = self.trace.borrow_mut();
        for (lane, lines) in std::mem::take(&mut self.lines) {
            for line in lines {
                trace.push(format!("{step} | {lane} | {line}"));
            }
        }
    }

    /// The generic part of recording: every event the node delivers, normalized.
    pub fn record(&mut self, ev: &Ev) {
        match ev {
            Ev::Listening(l, local) => {
                let at = self.address(local);
                self.note(l.0, format!("listening on {at}"));
            }
            Ev::ListenFailed(l, error) => self.note(l.0, format!("listen failed: {}", kind(error))),
            Ev::Accepted(l, _, peer) => {
                let from = self.address(peer);
                self.note(l.0, format!("accepted from {from}"));
            }
            Ev::Session(conn, event) => self.record_session(conn.0, event),
            Ev::Closed(conn, None) => self.note(conn.0, "closed"),
            Ev::Closed(conn, Some(e)) => self.note(conn.0, format!("closed: {}", kind(e))),
            Ev::ProcessDone(proc, r) => {
                let line = self.process_line(proc.0, r);
                self.note(proc.0, line);
            }
            Ev::Shutdown => self.note_in("node", "shutdown"),
            Ev::Timeout | Ev::Poll => {}
        }
    }

    fn record_session(&mut self, id: u64, event: &SessionEvent) {
        let line = match event {
            SessionEvent::StreamData(data) => {
                if !matches!(self.lanes.get(&id), Some(l) if !l.count_data) {
                    self.data.entry(id).or_default().update(data);
                }
                return;
            }
            SessionEvent::Established { .. } => "established".to_owned(),
            SessionEvent::Request(r) => {
                let stream = if r.stream { " with a stream" } else { "" };
                format!("request {} {}{stream}", r.method, text(&r.body))
            }
            SessionEvent::Response(r) => match &r.result {
                Ok(body) => format!("response {} {}", r.method, text(body)),
                Err(e) => format!("response {} error {:?}: {}", r.method, e.kind, e.message),
            },
            SessionEvent::StreamEnd => "stream end".to_owned(),
            SessionEvent::StreamAborted(reason) => format!("stream aborted: {reason}"),
            SessionEvent::StreamCancelled(reason) => format!("stream cancelled: {reason}"),
            SessionEvent::Closed(_) => "closed (as a session event)".to_owned(),
        };
        self.note(id, line);
    }

    fn process_line(&self, id: u64, r: &ProcessResult) -> String {
        let mut line = r.status.to_string();
        if !r.stdout.is_empty() {
            match std::str::from_utf8(&r.stdout) {
                Ok(s) if s.len() <= 64 => line += &format!(", stdout {s:?}"),
                _ => line += &format!(", stdout {} bytes", r.stdout.len()),
            }
        }
        if let Some(why) = r.stderr.strip_prefix("cannot start: ") {
            line += &format!(", cannot start: {}", kind(why));
        } else if !r.stderr.is_empty() {
            line += &format!(", stderr {:?}", r.stderr);
        }
        if self.lanes.get(&id).is_some_and(|l| l.count_bytes) {
            line += &format!(", {} bytes through its pipes", r.bytes);
        }
        line
    }

    /// An address without what changes from run to run: ports and the run's directory.
    fn address(&self, addr: &str) -> String {
        let dir = self.dir.display().to_string();
        if let Some(rest) = addr.strip_prefix(&dir) {
            return format!("$DIR{rest}");
        }
        match addr.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => format!("{host}:$PORT"),
            _ => addr.to_owned(),
        }
    }
}

/// A response or request body as text: every call of the script carries a string.
fn text(body: &[u8]) -> String {
    match postcard::from_bytes::<String>(body) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("({} bytes)", body.len()),
    }
}

/// The kind of an error message: its wording comes from the OS and may carry
/// addresses, but which of these it is must be the same under both drivers.
pub fn kind(error: &str) -> String {
    const KINDS: &[(&str, &str)] = &[
        ("Address already in use", "address in use"),
        ("another process listens", "address in use"),
        ("Connection refused", "connection refused"),
        ("(os error 2)", "no such file"),
        ("invalid socket address", "invalid address"),
        ("not a zferry endpoint", "not a zferry peer"),
        ("closed the connection in the middle of", "peer hung up early"),
        ("empty command", "empty command"),
    ];
    match KINDS.iter().find(|(needle, _)| error.contains(needle)) {
        Some((_, kind)) => (*kind).to_owned(),
        None => format!("unclassified: {error}"),
    }
}
