//! Every bound the core enforces, named once.
//!
//! A length read off the wire is checked against these before anything is allocated
//! for it, and every queue the core owns stays under one of them.

use std::time::Duration;

/// Bytes in a frame header: type, flags, two reserved bytes, u32 payload length.
pub const FRAME_HEADER_LEN: usize = 8;

/// Largest handshake payload (magic, version, a few small fields).
pub const MAX_HANDSHAKE_PAYLOAD: usize = 1024;
/// Largest RPC header payload (method name, status, small error message).
pub const MAX_RPC_HEADER_PAYLOAD: usize = 64 * 1024;
/// Largest RPC body: one request or response, postcard-encoded. Version lists of a
/// filesystem with many thousands of snapshots fit comfortably.
pub const MAX_RPC_BODY_PAYLOAD: usize = 16 * 1024 * 1024;
/// Largest stream abort or goodbye reason.
pub const MAX_REASON_PAYLOAD: usize = 64 * 1024;
/// Largest stream data payload either side may ever announce.
pub const MAX_DATA_PAYLOAD: usize = 1024 * 1024;
/// Stream data payload size a sender uses unless the peer asks for less.
pub const DEFAULT_DATA_PAYLOAD: usize = 256 * 1024;

/// Bytes of stream data a receiver lets the sender have in flight (credit window).
/// It bounds the memory a stream costs the receiver.
pub const DEFAULT_STREAM_WINDOW: usize = 8 * 1024 * 1024;
/// Smallest and largest window a peer may announce.
pub const MIN_STREAM_WINDOW: usize = 64 * 1024;
pub const MAX_STREAM_WINDOW: usize = 256 * 1024 * 1024;

/// Capacity a driver asks the OS for on the pipes to and from a child (Linux's default
/// is 64 KiB): one data frame fits, so `zfs send` fills a frame in one read and
/// `zfs receive` takes one in one write, with a quarter of the wakeups.
pub const PIPE_CAPACITY: usize = DEFAULT_DATA_PAYLOAD;
/// How much a driver reads from a socket at once when no large frame is pending.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads a driver makes from one socket or pipe before the others get a turn.
pub const READS_PER_TURN: usize = 16;
/// Slices a driver hands to one vectored write.
pub const MAX_IOVECS: usize = 64;
/// How often a driver checks whether a child whose pipes are all closed has exited;
/// SIGCHLD normally reaps it first, this is the safety net.
pub const REAP_INTERVAL: Duration = Duration::from_millis(2);
/// Bytes of control frames (not stream data) a session queues for writing before it
/// refuses new requests: control traffic is small, so this only trips on a stuck peer.
pub const MAX_QUEUED_CONTROL: usize = 2 * MAX_RPC_BODY_PAYLOAD;

/// Session timing defaults.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections one node keeps open at once; further accepts are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
