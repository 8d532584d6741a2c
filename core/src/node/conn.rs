//! Handles and addresses of connections.

use std::fmt;

/// A connection, allocated by the node; never reused within a node's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A listening socket, allocated by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u64);

/// One end of a byte channel the driver reads or writes: a connection's socket or
/// one of a child process's pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IoId {
    Conn(ConnId),
    Stdin(super::ProcId),
    Stdout(super::ProcId),
    Stderr(super::ProcId),
}

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `host:port`, resolved by the driver.
    Tcp(String),
    /// A unix socket path (the daemon's control socket).
    Unix(String),
    /// In-process, by listener name: both ends live in this node and no driver
    /// is involved (zrepl's `local` transport).
    Local(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{path}"),
            Endpoint::Local(name) => write!(f, "local:{name}"),
        }
    }
}
