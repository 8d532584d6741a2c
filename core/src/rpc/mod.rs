//! RPC sessions on top of frames.
//!
//! One [`Session`] per connection, client or server. Both sides open with a
//! handshake (magic, protocol version, role, their receive limits). Then the client
//! sends one request at a time and the server answers it. A request or a response may
//! carry a byte stream after its body (a `zfs send` stream), sent as data frames under
//! credit the receiving side grants as it consumes them, and ended or aborted
//! explicitly. Heartbeats keep an idle connection observable, timeouts are computed
//! from the time the caller passes in, and close is a goodbye exchange with a bounded
//! wait.
//!
//! Driving a session: feed received bytes through [`Session::read_slot`] and
//! [`Session::handle_read`], write what [`Session::io_slices`] offers and report it
//! with [`Session::handle_written`], call [`Session::handle_timeout`] when
//! [`Session::poll_timeout`] passes, and after each of these drain
//! [`Session::poll_event`].
//!
//! A new call needs no change here: declare a type implementing [`Method`].

mod session;
mod wire;

pub use session::{
    IncomingRequest, IncomingResponse, Session, SessionConfig, SessionEvent, UsageError,
};
/// Valid wire bytes for fuzzing and tests, built by the real encoder.
#[doc(hidden)]
pub mod wire_for_fuzzing {
    use super::wire::{encode_handshake, Hello};
    use super::Role;
    use crate::frame::{FrameType, OutQueue};

    /// A handshake frame as a peer with `role` would send it.
    pub fn handshake(role: Role) -> Vec<u8> {
        let hello = Hello {
            role,
            max_data_payload: 4096,
            stream_window: 64 * 1024,
            software: "fuzz".into(),
        };
        let mut q = OutQueue::new();
        q.push_with(FrameType::Handshake, 0, |b| encode_handshake(&hello, b));
        q.drain_to_vec()
    }
}

pub use wire::{RemoteError, RemoteErrorKind, Role, MAGIC, PROTOCOL_VERSION};

use serde::{de::DeserializeOwned, Serialize};

/// One RPC call: its name on the wire and its request and response types.
pub trait Method {
    /// Unique among the calls a server answers; never reused with other types.
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned;
    type Response: Serialize + DeserializeOwned;
}

/// Why a session ended abnormally. Every malformed, truncated, oversized or
/// out-of-order input maps to one of these; none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("peer is not a zferry endpoint (its first bytes were {first_bytes}); check the address and port")]
    NotZferry { first_bytes: String },
    #[error("protocol version mismatch: the peer speaks zferry protocol v{theirs}, this zferry speaks v{ours}; run the same zferry release on both hosts")]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("both ends of the connection are {0:?}s; a client must talk to a server")]
    SameRole(Role),
    #[error("malformed frame from peer: {0}")]
    Frame(#[from] crate::frame::FrameError),
    #[error("malformed {what} from peer: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("peer sent {frame} while {state}")]
    OutOfOrder { frame: &'static str, state: &'static str },
    #[error("peer sent {got} stream bytes with only {allowed} granted")]
    CreditViolation { got: u64, allowed: u64 },
    #[error("peer sent a {len}-byte data frame, more than the {max} bytes we announced")]
    DataFrameTooLarge { len: usize, max: usize },
    #[error("no handshake from peer within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    #[error("peer silent for {0:?} (no data and no heartbeat); the connection is considered dead")]
    IdleTimeout(std::time::Duration),
    #[error("no response to {method} within {timeout:?}")]
    RequestTimeout { method: String, timeout: std::time::Duration },
    #[error("peer closed the connection in the middle of {0}")]
    UnexpectedEof(&'static str),
    #[error("peer said goodbye: {0}")]
    PeerGoodbye(String),
    #[error("peer did not answer our goodbye within {0:?}")]
    CloseTimeout(std::time::Duration),
    #[error("connection error: {0}")]
    Io(String),
}

/// Why a response could not be turned into the caller's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("response to {method} is not a {method} response: {detail}")]
    Decode { method: String, detail: String },
    #[error("got a response to {got}, expected one to {expected}")]
    WrongMethod { expected: &'static str, got: String },
}

#[cfg(test)]
mod tests;
