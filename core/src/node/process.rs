//! Child processes (`zfs` commands, hooks) as the node sees them: a command to
//! spawn, pipes to move bytes through, and an exit status.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::conn::ConnId;
use crate::limits;

/// A child process, allocated by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u64);

/// What the driver needs to start a process. The program and its arguments are a
/// vector, never a shell string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    /// Added to the driver's own environment.
    pub env: Vec<(String, String)>,
    /// Pipe stdin (else it reads /dev/null).
    pub stdin: bool,
    /// Pipe stdout (else it goes to /dev/null). Stderr is always piped.
    pub stdout: bool,
}

impl fmt::Display for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.argv.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                write!(f, "{a:?}")?;
            } else {
                f.write_str(a)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Where a process's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutTo {
    /// Not piped.
    Null,
    /// Kept in memory (up to a limit) and handed to the app at exit: `zfs list`.
    Collect,
    /// Sent as the outgoing stream of this connection's session: `zfs send`.
    Stream(ConnId),
}

/// Where a process's stdin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinFrom {
    Null,
    /// The incoming stream of this connection's session: `zfs receive`.
    Stream(ConnId),
}

/// What the app learns when a process is done: its status and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessResult {
    pub status: ExitStatus,
    /// Collected stdout (empty unless [`StdoutTo::Collect`]).
    pub stdout: Bytes,
    /// The last bytes of stderr, for error messages.
    pub stderr: String,
    /// Stdout exceeded the collection limit; `stdout` is truncated.
    pub stdout_truncated: bool,
    /// Bytes that went through stdout or stdin.
    pub bytes: u64,
}

/// Largest stdout kept for [`StdoutTo::Collect`].
pub const MAX_COLLECTED_STDOUT: usize = 512 * 1024 * 1024;
/// How much of stderr is kept: the end is where the reason usually is.
pub const STDERR_TAIL: usize = 16 * 1024;

#[derive(Debug)]
pub(super) struct Proc {
    pub spec_text: String,
    pub stdout_to: StdoutTo,
    pub stdin_from: StdinFrom,
    pub stdout_buf: BytesMut,
    pub collected: BytesMut,
    pub truncated: bool,
    pub stdout_open: bool,
    pub stderr_open: bool,
    pub stderr_tail: VecDeque<u8>,
    pub stderr_buf: Vec<u8>,
    /// Bytes waiting to be written to stdin.
    pub stdin_queue: VecDeque<Bytes>,
    pub stdin_queued: usize,
    /// No more stdin will come; close it once the queue is empty.
    pub stdin_ending: bool,
    pub stdin_open: bool,
    pub status: Option<ExitStatus>,
    pub bytes: u64,
    pub killed: bool,
    pub interest: [(bool, bool); 3],
}

impl Proc {
    pub fn new(spec: &ProcessSpec, stdout_to: StdoutTo, stdin_from: StdinFrom) -> Proc {
        Proc {
            spec_text: spec.to_string(),
            stdout_to,
            stdin_from,
            stdout_buf: BytesMut::new(),
            collected: BytesMut::new(),
            truncated: false,
            stdout_open: spec.stdout,
            stderr_open: true,
            stderr_tail: VecDeque::new(),
            stderr_buf: Vec::new(),
            stdin_queue: VecDeque::new(),
            stdin_queued: 0,
            stdin_ending: false,
            stdin_open: spec.stdin,
            status: None,
            bytes: 0,
            killed: false,
            interest: [(false, false); 3],
        }
    }

    /// Exited and every output read to its end.
    pub fn is_done(&self) -> bool {
        self.status.is_some() && !self.stdout_open && !self.stderr_open
    }

    pub fn stderr_slot(&mut self) -> &mut [u8] {
        self.stderr_buf.resize(4096, 0);
        &mut self.stderr_buf
    }

    pub fn commit_stderr(&mut self, n: usize) {
        let n = n.min(self.stderr_buf.len());
        self.stderr_tail.extend(&self.stderr_buf[..n]);
        while self.stderr_tail.len() > STDERR_TAIL {
            self.stderr_tail.pop_front();
        }
    }

    /// A slot of at most `max` bytes for stdout, reusing initialised room.
    pub fn stdout_slot(&mut self, max: usize) -> &mut [u8] {
        let want = max.min(limits::DEFAULT_DATA_PAYLOAD);
        if self.stdout_buf.len() < want {
            if self.stdout_buf.capacity() < want {
                self.stdout_buf.clear();
                self.stdout_buf.reserve(want * 8);
            }
            self.stdout_buf.resize(want, 0);
        }
        &mut self.stdout_buf[..want]
    }

    /// Takes the first `n` bytes of the stdout slot as a shared chunk.
    pub fn take_stdout(&mut self, n: usize) -> Bytes {
        let n = n.min(self.stdout_buf.len());
        self.bytes += n as u64;
        self.stdout_buf.split_to(n).freeze()
    }

    pub fn collect(&mut self, chunk: &[u8]) {
        let room = MAX_COLLECTED_STDOUT.saturating_sub(self.collected.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.collected.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub fn queue_stdin(&mut self, data: Bytes) {
        self.stdin_queued += data.len();
        self.stdin_queue.push_back(data);
    }

    /// Drops `n` written bytes from the stdin queue.
    pub fn advance_stdin(&mut self, mut n: usize) {
        n = n.min(self.stdin_queued);
        self.stdin_queued -= n;
        self.bytes += n as u64;
        while n > 0 {
            let Some(front) = self.stdin_queue.front_mut() else { break };
            if front.len() > n {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.stdin_queue.pop_front();
        }
    }

    pub fn stderr_text(&self) -> String {
        let (a, b) = self.stderr_tail.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_owned()
    }

    pub fn result(&mut self) -> Option<ProcessResult> {
        let status = self.status?;
        Some(ProcessResult {
            status,
            stdout: std::mem::take(&mut self.collected).freeze(),
            stderr: self.stderr_text(),
            stdout_truncated: self.truncated,
            bytes: self.bytes,
        })
    }
}
