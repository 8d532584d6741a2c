//! Listening on TCP and on a unix socket, and failing to where that is taken.

use zferry_core::node::{AppCtx, Endpoint};

use crate::script::{Ev, Step};
use crate::world::World;

/// The listeners the later steps connect to.
#[derive(Debug, Default)]
pub struct Listen {
    answers: usize,
}

impl Step for Listen {
    fn name(&self) -> &'static str {
        "listen"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let tcp = ctx.listen(Endpoint::Tcp("127.0.0.1:0".to_owned()));
        w.name(tcp.0, "tcp listener");
        w.tcp = Some(tcp);
        let path = w.dir.join("conformance.sock").display().to_string();
        let unix = ctx.listen(Endpoint::Unix(path));
        w.name(unix.0, "unix listener");
        w.unix = Some(unix);
    }

    fn on(&mut self, w: &mut World, _ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Listening(l, local) => {
                if Some(*l) == w.tcp {
                    w.tcp_addr = local.clone();
                } else if Some(*l) == w.unix {
                    w.unix_path = local.clone();
                }
                self.answers += 1;
            }
            Ev::ListenFailed(..) => self.answers += 1,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.answers == 2
    }
}

/// A second listener on each address already taken. Before it refuses a unix
/// socket, a driver connects to it to see whether anyone answers: that
/// connection reaches the first listener, and must have ended before the next
/// step.
#[derive(Debug, Default)]
pub struct ListenInUse {
    answers: usize,
    probed: bool,
    probe_closed: bool,
}

impl Step for ListenInUse {
    fn name(&self) -> &'static str {
        "listen in use"
    }

    fn start(&mut self, w: &mut World, ctx: &mut AppCtx<'_>) {
        let tcp = ctx.listen(Endpoint::Tcp(w.tcp_addr.clone()));
        w.name(tcp.0, "tcp listener, again");
        let unix = ctx.listen(Endpoint::Unix(w.unix_path.clone()));
        w.name(unix.0, "unix listener, again");
    }

    fn on(&mut self, w: &mut World, _ctx: &mut AppCtx<'_>, ev: &Ev) {
        match ev {
            Ev::Listening(..) | Ev::ListenFailed(..) => self.answers += 1,
            Ev::Accepted(_, conn, _) => {
                w.name(conn.0, "liveness probe");
                self.probed = true;
            }
            Ev::Closed(..) => self.probe_closed = true,
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.answers == 2 && self.probed && self.probe_closed
    }
}
