//! Moving a child's stdout into a socket with splice(2): the payload of a data frame
//! goes from `zfs send`'s pipe into a transit pipe (one per connection) and from
//! there into the socket, page references instead of copies through our memory.
//! The core decides what moves when (`Node::splice_slot`, `Node::spliced_front`);
//! a driver only runs these two calls. Linux only; elsewhere drivers read as usual.

use std::collections::btree_map::{BTreeMap, Entry};
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Whether a driver should splice: on Linux, unless `ZFERRY_NO_SPLICE` is set (to
/// compare, or to rule splicing out when troubleshooting).
pub fn wanted() -> bool {
    cfg!(target_os = "linux") && std::env::var_os("ZFERRY_NO_SPLICE").is_none()
}

/// True for the errors that mean this kernel or these descriptors cannot splice:
/// the driver then turns splicing off and reads and writes as usual.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported)
}

/// The transit pipe kept under `key` (a connection), made on first use. Failing to
/// make one counts as [`unsupported`]: the driver then reads instead.
pub fn transit<K: Ord>(transits: &mut BTreeMap<K, Transit>, key: K) -> io::Result<&Transit> {
    Ok(match transits.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(Transit::new().map_err(|e| {
            io::Error::new(io::ErrorKind::Unsupported, format!("no transit pipe: {e}"))
        })?),
    })
}

/// A pipe holding one frame's payload at most, between a child's stdout and a socket.
#[derive(Debug)]
pub struct Transit {
    read: OwnedFd,
    write: OwnedFd,
}

impl Transit {
    #[cfg(target_os = "linux")]
    pub fn new() -> io::Result<Transit> {
        use rustix::pipe::{fcntl_setpipe_size, pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A smaller pipe only makes splices shorter, never wrong.
        let _ = fcntl_setpipe_size(&write, zferry_core::limits::PIPE_CAPACITY);
        Ok(Transit { read, write })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn new() -> io::Result<Transit> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Moves up to `max` bytes from `stdout` into the pipe; 0 is end of stream.
    pub fn fill(&self, stdout: impl AsFd, max: usize) -> io::Result<usize> {
        splice(stdout, &self.write, max)
    }

    /// Moves up to `max` bytes from the pipe into `socket`.
    pub fn drain(&self, socket: impl AsFd, max: usize) -> io::Result<usize> {
        splice(&self.read, socket, max)
    }
}

#[cfg(target_os = "linux")]
fn splice(from: impl AsFd, to: impl AsFd, max: usize) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    Ok(rustix::pipe::splice(from, None, to, None, max, SpliceFlags::MOVE | SpliceFlags::NONBLOCK)?)
}

#[cfg(not(target_os = "linux"))]
fn splice(_: impl AsFd, _: impl AsFd, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}
