//! What goes wrong on the network: a peer that is not zferry, and connections
//! that cannot be made.

use zferry_core::node::{AppCtx, ConnId, Endpoint, ListenerId, StdinFrom, StdoutTo};

use super::command;
use crate::script::{Ev, Step};
use crate::world::World;

/// A process connects to the TCP listener and sends an HTTP request; the node
/// must drop that connection with the reason, and the process sees it hang up.
#[derive(Debug, Default)]
pub struct Garbage {
    server: Option<ConnId>,
    server_closed: bool,
    sender_done: bool,
}

impl Step for Garbage {
    fn name(&self) -> &'static str {
        "garbage peer"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let port = w.tcp_addr.rsplit(':').next().unwrap_or_default().to_owned();
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 \
             && cat <&3 >/dev/null; echo hung up"
        );
        let proc = ctx.spawn(command(&["bash", "-c", &script]), StdoutTo::Collect, StdinFrom::Null);
        w.name(proc.0, "garbage sender");
    }

    fn on(&mut self, w: &mut World, _ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Accepted(_, conn, _) => {
                self.server = Some(*conn);
                w.name(conn.0, "server");
            }
            Ev::Closed(conn, _) if Some(*conn) == self.server => self.server_closed = true,
            Ev::ProcessDone(..) => self.sender_done = true,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.sender_done && (self.server.is_none() || self.server_closed)
    }
}

/// Connecting to a port nobody listens on any more, to an address that is not
/// one, and to a unix socket that does not exist.
#[derive(Debug, Default)]
pub struct ConnectFailures {
    doomed: Option<ListenerId>,
    listened: bool,
    open: usize,
}

impl Step for ConnectFailures {
    fn name(&self) -> &'static str {
        "connect failures"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let doomed = ctx.listen(Endpoint::Tcp("127.0.0.1:0".to_owned()));
        w.name(doomed.0, "listener to close");
        self.doomed = Some(doomed);
        let malformed = ctx.connect(Endpoint::Tcp("no port here".to_owned()));
        w.name(malformed.0, "malformed address");
        let path = w.dir.join("absent.sock").display().to_string();
        let absent = ctx.connect(Endpoint::Unix(path));
        w.name(absent.0, "absent unix socket");
        self.open = 2;
    }

    fn on(&mut self, w: &mut World, ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Listening(l, local) if Some(*l) == self.doomed => {
                self.listened = true;
                // Closed and connected to in one go: the driver must have
                // closed the socket by the time it connects.
                ctx.unlisten(*l);
                let conn = ctx.connect(Endpoint::Tcp(local.clone()));
                w.name(conn.0, "closed port");
                self.open += 1;
            }
            Ev::ListenFailed(..) => self.listened = true,
            Ev::Closed(..) => self.open = self.open.saturating_sub(1),
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.listened && self.open == 0
    }
}
