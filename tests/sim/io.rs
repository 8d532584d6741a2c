//! The node's driver in the simulated world: executes a program's actions,
//! moves bytes between it and its sockets and pipes, and reports what the
//! sockets and children do, the way `driver-mio` does: after draining the
//! outputs, write what is offered to every socket or pipe the node wants
//! written, read whatever arrived while the node offers a slot, and report a
//! child's exit once its pipes are read to their end.

use std::io::IoSlice;

use zferry_core::node::{
    Action, ConnId, Endpoint, Event, ExitStatus, Input, IoId, Level, Output, ProcId,
};

use crate::net::{Addr, Pid, Read, SockId, BROKEN_PIPE};
use crate::scenario::SECOND;
use crate::world::{Ev, Prog, ProgKind, Work, World, MEMORY_BOUND, MONO_BASE, PIPE, SYN_TIMEOUT};

impl World {
    pub(crate) fn input(&mut self, pid: Pid, input: Input) {
        let Some(host) = self.progs.get(&pid).map(|p| p.host) else { return };
        let now = self.host_now(host);
        let p = self.progs.get_mut(&pid).expect("checked");
        if let Err(e) = p.node.handle_input(now, input.clone()) {
            self.fail(format!(
                "program {pid} refused {input:?}: {e} (a driver bug, in the sim or the node)"
            ));
        }
    }

    /// Runs a program until it has nothing more to do now: executes its
    /// actions, writes what it offers, reads what arrived, reaps children.
    pub(crate) fn pump(&mut self, pid: Pid) {
        for _ in 0..100_000 {
            if !self.progs.contains_key(&pid) || self.failure.is_some() {
                return;
            }
            let mut progress = self.drain(pid);
            progress |= self.writes(pid);
            progress |= self.reads(pid);
            progress |= self.reap(pid);
            if !progress {
                self.check_memory(pid);
                if let Some(code) = self.progs.get(&pid).and_then(|p| p.exit) {
                    self.terminate(pid, format!("exits with code {code}"), false);
                }
                return;
            }
        }
        self.fail(format!("program {pid} never runs out of work (livelock)"));
    }

    pub(crate) fn drain(&mut self, pid: Pid) -> bool {
        let mut any = false;
        loop {
            let Some(p) = self.progs.get_mut(&pid) else { return any };
            match p.node.poll_output() {
                Output::Timeout(deadline) => {
                    let t = deadline.map(|d| d.as_nanos().saturating_sub(MONO_BASE));
                    if p.timer != t {
                        p.timer = t;
                        if let Some(t) = t {
                            self.at(t, Ev::Timer(pid, t));
                        }
                    }
                    return any;
                }
                Output::Event(e) => {
                    any = true;
                    self.on_event(pid, e);
                }
                Output::Action(a) => {
                    any = true;
                    self.execute(pid, a);
                }
            }
        }
    }

    pub(crate) fn on_event(&mut self, pid: Pid, e: Event) {
        let Some(p) = self.progs.get_mut(&pid) else { return };
        let (host, kind) = (p.host, p.kind);
        match e {
            Event::Log { level, message } => {
                if level <= Level::Info {
                    let name = self.host_name(host).to_owned();
                    self.log(format!("{name}[{pid}] {level:?}: {message}"));
                }
                if message.contains("cannot use the installed zfs") {
                    self.dialect_failed.insert(pid);
                }
                let Some(rest) = message.strip_prefix("job ") else { return };
                let Some((job, what)) = rest.split_once(": ") else { return };
                let quiet = self.quiet_since;
                let r = self.reports.entry((host, job.to_owned())).or_default();
                let busy = what.ends_with("Some(Err(Busy))")
                    || what.ends_with("a request is already in flight");
                if quiet.is_some() && busy {
                    r.busy = true;
                }
                if what == "replication cycle starts" {
                    r.started = self.now;
                    r.pending.clear();
                } else if what.starts_with("replication cycle done") {
                    r.last = std::mem::take(&mut r.pending);
                    r.last_started = r.started;
                    r.completed += 1;
                    self.report_generation += 1;
                    if quiet.is_some_and(|q| r.started >= q) {
                        r.quiet_cycles += 1;
                    }
                }
            }
            Event::Print(text) => {
                if kind == ProgKind::Daemon {
                    if let Some((job, line)) = text.split_once(": ") {
                        let r = self.reports.entry((host, job.to_owned())).or_default();
                        r.pending.push(line.to_owned());
                    }
                }
            }
            Event::Exit(code) => p.exit = Some(code),
        }
    }

    pub(crate) fn execute(&mut self, pid: Pid, action: Action) {
        let host = self.progs[&pid].host;
        match action {
            Action::Listen { listener, endpoint } => {
                let (addr, local) = match &endpoint {
                    Endpoint::Tcp(a) => {
                        let port = a.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                        (Addr::Tcp { host, port }, format!("0.0.0.0:{port}"))
                    }
                    Endpoint::Unix(path) => (Addr::Unix { host, path: path.clone() }, path.clone()),
                    Endpoint::Local(_) => {
                        return self.fail(format!("node asked the driver to listen on {endpoint}"))
                    }
                };
                if self.net.listeners.contains_key(&addr) {
                    let error = "Address already in use (os error 98)".to_owned();
                    return self.input(pid, Input::ListenFailed { listener, error });
                }
                self.net.listeners.insert(addr.clone(), (pid, listener));
                self.progs.get_mut(&pid).expect("alive").listeners.insert(listener, addr);
                self.input(pid, Input::Listening { listener, local });
            }
            Action::Unlisten(listener) => {
                if let Some(addr) =
                    self.progs.get_mut(&pid).and_then(|p| p.listeners.remove(&listener))
                {
                    self.net.listeners.remove(&addr);
                }
            }
            Action::Connect { conn, endpoint } => {
                let addr = match &endpoint {
                    Endpoint::Tcp(a) => {
                        let (ip, port) = a.rsplit_once(':').unwrap_or((a, "0"));
                        let target = self.scenario.hosts.iter().position(|h| h.ip == ip);
                        match (target, port.parse()) {
                            (Some(h), Ok(port)) => Addr::Tcp { host: h, port },
                            _ => {
                                let error = "failed to lookup address information: Name or service not known".into();
                                return self.input(pid, Input::ConnectFailed { conn, error });
                            }
                        }
                    }
                    Endpoint::Unix(path) => Addr::Unix { host, path: path.clone() },
                    Endpoint::Local(_) => {
                        return self.fail(format!("node asked the driver to connect to {endpoint}"))
                    }
                };
                self.progs.get_mut(&pid).expect("alive").connecting.insert(conn);
                let target = match addr {
                    Addr::Tcp { host, .. } | Addr::Unix { host, .. } => host,
                };
                let t = self.now + self.net.latency(host, target, &mut self.rng);
                let first = self.now;
                self.at(t, Ev::Syn { pid, conn, addr, first });
            }
            Action::Close(conn) => {
                let p = self.progs.get_mut(&pid).expect("alive");
                p.connecting.remove(&conn);
                p.writers.remove(&IoId::Conn(conn));
                if let Some(sock) = p.socks.remove(&conn) {
                    if let Some((peer, t)) = self.net.close(sock, self.now, &mut self.rng) {
                        self.wake(peer, t);
                    }
                }
            }
            Action::Spawn { proc, spec } => self.spawn(pid, proc, spec),
            Action::CloseStdin(proc) => {
                self.progs.get_mut(&pid).expect("alive").writers.remove(&IoId::Stdin(proc));
                if let Some(c) = self.children.get_mut(&(pid, proc)) {
                    c.stdin_eof = true;
                    self.schedule_child(pid, proc, 0);
                }
            }
            Action::Kill(proc) => self.kill_child(pid, proc),
            Action::Interest { io, write, .. } => {
                let p = self.progs.get_mut(&pid).expect("alive");
                if write {
                    p.writers.insert(io);
                } else {
                    p.writers.remove(&io);
                }
            }
        }
    }

    pub(crate) fn syn(&mut self, pid: Pid, conn: ConnId, addr: Addr, first: u64) {
        let Some(p) = self.progs.get(&pid) else { return };
        if !p.connecting.contains(&conn) {
            return;
        }
        let client_host = p.host;
        let (server_host, local) = match &addr {
            Addr::Tcp { host, .. } => (*host, false),
            Addr::Unix { host, .. } => (*host, true),
        };
        if !local && !self.net.reachable(client_host, server_host) {
            // The SYN is lost; the kernel retries with backoff, then gives up.
            let waited = self.now - first;
            if waited >= SYN_TIMEOUT {
                self.progs.get_mut(&pid).expect("alive").connecting.remove(&conn);
                self.input(
                    pid,
                    Input::ConnectFailed {
                        conn,
                        error: "Connection timed out (os error 110)".into(),
                    },
                );
                return self.pump(pid);
            }
            let retry = self.now + waited.max(SECOND);
            return self.at(retry, Ev::Syn { pid, conn, addr, first });
        }
        let back = self.net.latency(server_host, client_host, &mut self.rng);
        let Some((spid, listener)) = self.net.listeners.get(&addr).cloned() else {
            return self.at(self.now + back, Ev::Refused { pid, conn });
        };
        let (c, s) = self.net.pair((client_host, pid), (server_host, spid), local, &mut self.rng);
        let peer = if local {
            "unix client".to_owned()
        } else {
            format!("{}:{}", self.scenario.hosts[client_host].ip, self.net.ephemeral_port())
        };
        let now = self.host_now(server_host);
        let accepted = self.progs.get_mut(&spid).and_then(|sp| sp.node.accept(now, listener, peer));
        match accepted {
            Some(sconn) => {
                self.progs.get_mut(&spid).expect("listening").socks.insert(sconn, s);
                self.pump(spid);
            }
            None => {
                if let Some((peer, t)) = self.net.close(s, self.now, &mut self.rng) {
                    self.wake(peer, t);
                }
            }
        }
        self.at(self.now + back, Ev::Established { pid, conn, sock: c });
    }

    pub(crate) fn writes(&mut self, pid: Pid) -> bool {
        let Some(p) = self.progs.get(&pid) else { return false };
        let writers: Vec<IoId> = p.writers.iter().copied().collect();
        let mut progress = false;
        for io in writers {
            progress |= match io {
                IoId::Conn(conn) => self.write_sock(pid, conn),
                IoId::Stdin(proc) => self.write_stdin(pid, proc),
                _ => false,
            };
        }
        progress
    }

    /// Up to `limit` bytes of what the node offers for `io`.
    pub(crate) fn offered(p: &Prog, io: IoId, limit: usize) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = p.node.io_slices(io, &mut slices);
        let mut data = Vec::new();
        for s in &slices[..n] {
            let take = (limit - data.len()).min(s.len());
            data.extend_from_slice(&s[..take]);
            if data.len() == limit {
                break;
            }
        }
        data
    }

    pub(crate) fn write_sock(&mut self, pid: Pid, conn: ConnId) -> bool {
        let p = &self.progs[&pid];
        let Some(&sock) = p.socks.get(&conn) else { return false };
        let room = self.net.room(sock);
        // With no room, one byte still finds out whether the socket failed.
        let data = Self::offered(p, IoId::Conn(conn), room.max(1));
        if data.is_empty() {
            return false;
        }
        match self.net.write(sock, &data[..room.min(data.len())], self.now, &mut self.rng) {
            Ok((0, _)) => false,
            Ok((n, wake)) => {
                if let Some((peer, t)) = wake {
                    self.wake(peer, t);
                }
                self.input(pid, Input::Written { io: IoId::Conn(conn), n });
                true
            }
            Err(error) => {
                self.progs.get_mut(&pid).expect("alive").writers.remove(&IoId::Conn(conn));
                self.input(pid, Input::IoError { io: IoId::Conn(conn), error });
                true
            }
        }
    }

    pub(crate) fn write_stdin(&mut self, pid: Pid, proc: ProcId) -> bool {
        let io = IoId::Stdin(proc);
        let Some(c) = self.children.get(&(pid, proc)) else { return false };
        if c.stdin_gone {
            self.progs.get_mut(&pid).expect("alive").writers.remove(&io);
            self.input(pid, Input::IoError { io, error: BROKEN_PIPE.into() });
            return true;
        }
        let room = PIPE.saturating_sub(c.stdin.len());
        if room == 0 {
            return false;
        }
        let data = Self::offered(&self.progs[&pid], io, room);
        if data.is_empty() {
            return false;
        }
        let n = data.len();
        self.children.get_mut(&(pid, proc)).expect("checked").stdin.extend(data);
        self.input(pid, Input::Written { io, n });
        let delay = self.rng.below(2_000_000);
        self.schedule_child(pid, proc, delay);
        true
    }

    pub(crate) fn reads(&mut self, pid: Pid) -> bool {
        let Some(p) = self.progs.get(&pid) else { return false };
        let socks: Vec<(ConnId, SockId)> = p.socks.iter().map(|(c, s)| (*c, *s)).collect();
        let mut progress = false;
        for (conn, sock) in socks {
            for _ in 0..self.rng.range(1, 8) {
                if !self.net.readable(sock, self.now) {
                    break;
                }
                let io = IoId::Conn(conn);
                let World { progs, net, rng, now, .. } = self;
                let Some(p) = progs.get_mut(&pid) else { return progress };
                if p.socks.get(&conn) != Some(&sock) {
                    break;
                }
                let Some(slot) = p.node.read_slot(io) else { break };
                let input = match net.read(sock, slot.len(), *now, rng) {
                    Read::Data(d) => {
                        slot[..d.len()].copy_from_slice(&d);
                        Input::Read { io, n: d.len() }
                    }
                    Read::Eof => Input::Read { io, n: 0 },
                    Read::Error(error) => Input::IoError { io, error },
                    Read::WouldBlock => break,
                };
                progress = true;
                self.input(pid, input);
            }
            if let Some(t) = self.net.next_arrival(sock, self.now) {
                self.wake(pid, t);
            }
        }
        let procs: Vec<ProcId> = self
            .children
            .range((pid, ProcId(0))..=(pid, ProcId(u64::MAX)))
            .map(|(k, _)| k.1)
            .collect();
        for proc in procs {
            progress |= self.read_pipe(pid, proc, true);
            progress |= self.read_pipe(pid, proc, false);
        }
        progress
    }

    pub(crate) fn read_pipe(&mut self, pid: Pid, proc: ProcId, stdout: bool) -> bool {
        let io = if stdout { IoId::Stdout(proc) } else { IoId::Stderr(proc) };
        let World { progs, children, rng, .. } = self;
        let Some(c) = children.get_mut(&(pid, proc)) else { return false };
        let (buf, closed) = if stdout {
            if !c.stdout_piped {
                return false;
            }
            (&mut c.stdout, &mut c.stdout_closed)
        } else {
            (&mut c.stderr, &mut c.stderr_closed)
        };
        if *closed || (buf.is_empty() && c.status.is_none()) {
            return false;
        }
        let Some(p) = progs.get_mut(&pid) else { return false };
        let Some(slot) = p.node.read_slot(io) else { return false };
        let n = if buf.is_empty() {
            *closed = true;
            0
        } else {
            let want = if rng.chance(500) { slot.len() } else { rng.usize(1, slot.len()) };
            let n = want.min(buf.len());
            let (a, b) = buf.as_slices();
            let k = a.len().min(n);
            slot[..k].copy_from_slice(&a[..k]);
            slot[k..n].copy_from_slice(&b[..n - k]);
            buf.drain(..n);
            n
        };
        let sending = matches!(c.work, Work::Sending { .. });
        self.input(pid, Input::Read { io, n });
        if sending && n > 0 {
            let delay = self.rng.below(1_000_000);
            self.schedule_child(pid, proc, delay);
        }
        true
    }

    /// Reports children that exited and whose pipes are read to their end.
    pub(crate) fn reap(&mut self, pid: Pid) -> bool {
        let done: Vec<(ProcId, ExitStatus)> = self
            .children
            .range((pid, ProcId(0))..=(pid, ProcId(u64::MAX)))
            .filter_map(|(k, c)| {
                let status = c.status?;
                let read = (!c.stdout_piped || c.stdout_closed) && c.stderr_closed;
                read.then_some((k.1, status))
            })
            .collect();
        for (proc, status) in &done {
            self.children.remove(&(pid, *proc));
            if let Some(p) = self.progs.get_mut(&pid) {
                p.writers.remove(&IoId::Stdin(*proc));
            }
            self.input(pid, Input::Exited { proc: *proc, status: *status });
        }
        !done.is_empty()
    }

    pub(crate) fn check_memory(&mut self, pid: Pid) {
        let Some(p) = self.progs.get(&pid) else { return };
        let mut worst = (0, String::new());
        let ios = p.socks.keys().map(|c| IoId::Conn(*c)).chain(
            self.children
                .range((pid, ProcId(0))..=(pid, ProcId(u64::MAX)))
                .map(|(k, _)| IoId::Stdin(k.1)),
        );
        for io in ios {
            let mut slices = [IoSlice::new(&[]); 256];
            let n = p.node.io_slices(io, &mut slices);
            let bytes: usize = slices[..n].iter().map(|s| s.len()).sum();
            if bytes > worst.0 {
                worst = (bytes, format!("{io:?}"));
            }
        }
        self.stats.max_buffered = self.stats.max_buffered.max(worst.0);
        if worst.0 > MEMORY_BOUND {
            self.fail(format!(
                "program {pid} buffers {} bytes for {} (bound {MEMORY_BOUND})",
                worst.0, worst.1
            ));
        }
    }
}
