//! Address handling both drivers share: resolving TCP endpoints and preparing
//! unix sockets (the daemon's control socket).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use zferry_core::node::Endpoint;

/// Where a driver binds or connects.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(std::path::PathBuf),
}

pub fn resolve(endpoint: &Endpoint) -> io::Result<Target> {
    match endpoint {
        Endpoint::Tcp(addr) => addr.to_socket_addrs()?.next().map(Target::Tcp).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to nothing"))
        }),
        Endpoint::Unix(path) => Ok(Target::Unix(path.into())),
        Endpoint::Local(_) => {
            Err(io::Error::other(format!("{endpoint} is in-process; the node handles it")))
        }
    }
}

/// The target of `endpoint` if it can be known without a DNS lookup (an IP
/// address, a unix path), else `None`: the driver then resolves it off its
/// event loop with [`resolve`], so a slow name server stalls no other job.
pub fn resolve_without_lookup(endpoint: &Endpoint) -> io::Result<Option<Target>> {
    match endpoint {
        Endpoint::Tcp(addr) => Ok(addr.parse::<SocketAddr>().ok().map(Target::Tcp)),
        _ => resolve(endpoint).map(Some),
    }
}

/// Binds a unix socket for the daemon, owner-only. A socket file left by a
/// daemon that died is replaced; one that a running daemon answers on is not.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another process listens on {}; is a zferry daemon running?",
                        path.display()
                    ),
                ))
            }
            Err(_) => std::fs::remove_file(path)?,
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Connects to a unix socket; immediate, so a blocking connect is fine.
pub fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path).map_err(|e| {
        io::Error::new(e.kind(), format!("{}: {e} (is the zferry daemon running?)", path.display()))
    })?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}
