//! What the RPC layer puts inside frames: handshake, headers, credit, reasons.

use serde::{Deserialize, Serialize};

use super::SessionError;

/// First bytes of every handshake payload; anything else is not a zferry peer.
pub const MAGIC: [u8; 8] = *b"ZFERRY\r\n";
/// Bumped on any incompatible change of the wire format or of a call's types.
pub const PROTOCOL_VERSION: u32 = 1;

/// Flag on a stream abort frame sent by the stream's receiver: "stop sending".
pub const FLAG_CANCEL: u8 = 0x01;
/// Flag on a goodbye frame: the sender closes because of an error, in the reason.
pub const FLAG_ERROR: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Client,
    Server,
}

/// The postcard part of the handshake, after magic and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub role: Role,
    /// Largest data frame payload this side accepts.
    pub max_data_payload: u32,
    /// Stream bytes this side lets the peer send before it grants more.
    pub stream_window: u32,
    /// Free text for logs, e.g. "zferry 0.1.0".
    pub software: String,
}

pub fn encode_handshake(hello: &Hello, out: &mut bytes::BytesMut) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    // A Hello is a few small fields: serialising it into a Vec cannot fail.
    if let Ok(v) = postcard::to_stdvec(hello) {
        out.extend_from_slice(&v);
    }
}

/// Checks magic and version before looking at the rest, so that a peer of another
/// version always gets the version message, whatever its Hello looks like.
pub fn decode_handshake(payload: &[u8]) -> Result<Hello, SessionError> {
    if payload.len() < MAGIC.len() + 4 || payload[..MAGIC.len()] != MAGIC {
        return Err(SessionError::NotZferry { first_bytes: hex_prefix(payload) });
    }
    let v = &payload[MAGIC.len()..MAGIC.len() + 4];
    let theirs = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    if theirs != PROTOCOL_VERSION {
        return Err(SessionError::VersionMismatch { ours: PROTOCOL_VERSION, theirs });
    }
    decode_exact(&payload[MAGIC.len() + 4..], "handshake")
}

/// Up to 16 bytes as hex and, where printable, as text: enough for a human to
/// recognise an HTTP request or a TLS hello on the wrong port.
pub fn hex_prefix(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = head
        .iter()
        .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
        .collect();
    format!("{} {:?}", hex.join(" "), text)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHeader {
    pub method: String,
    /// A byte stream follows the body.
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHeader {
    /// `Ok` is followed by a body frame; an error is not.
    pub status: Result<(), RemoteError>,
    pub stream: bool,
}

/// An error the server reports for one request; the session stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError { kind, message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    /// The server does not answer this call (an older or newer peer).
    UnknownMethod,
    /// The request body did not decode as the call's request type.
    BadRequest,
    /// The server refuses: outside the client's subtree, not in its filter, ...
    Refused,
    /// The server tried and failed: a `zfs` command failed, a dataset vanished, ...
    Failed,
}

impl std::fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RemoteErrorKind::UnknownMethod => "unknown method",
            RemoteErrorKind::BadRequest => "bad request",
            RemoteErrorKind::Refused => "refused by peer",
            RemoteErrorKind::Failed => "failed on peer",
        })
    }
}

/// Decodes a postcard value that must fill the whole payload.
pub fn decode_exact<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    what: &'static str,
) -> Result<T, SessionError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => {
            Err(SessionError::Malformed { what, detail: format!("{} trailing bytes", rest.len()) })
        }
        Err(e) => Err(SessionError::Malformed { what, detail: e.to_string() }),
    }
}
