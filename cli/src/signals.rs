//! SIGTERM and SIGINT as readable bytes, so that both event loops learn of them
//! the same way they learn of anything else: a socket became readable.

use std::io;
use std::os::unix::net::UnixStream;

/// A non-blocking socket that receives a byte for every SIGTERM or SIGINT. The
/// driver polls it and turns each wakeup into `Input::Shutdown`.
pub fn shutdown_signals() -> io::Result<UnixStream> {
    let (rx, tx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    tx.set_nonblocking(true)?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(signal, tx.try_clone()?)?;
    }
    Ok(rx)
}
