//! The simulated world: hosts whose programs are real `Node`s, a network,
//! `zfs` child processes answered by the model, one clock and one event queue.
//! This is the third driver of the node (after mio and smol): it executes the
//! node's actions the way `driver-mio` does, with readiness and timing that
//! the seed's random numbers decide.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::IoSlice;

use zferry_core::config::Config;
use zferry_core::control::{ControlClient, ControlRequest};
use zferry_core::job::{build_jobs, Daemon, DaemonMode};
use zferry_core::node::{
    App, ConnId, ExitStatus, Input, InputError, IoId, ListenerId, Node, Output, ProcId,
};
use zferry_core::time::{Instant, Now, WallTime};

use crate::check::History;
use crate::net::{Addr, Net, Pid, SockId};
use crate::rng::Rng;
use crate::scenario::{Scenario, SECOND};
use crate::trace::Trace;
use crate::zfs::command::{Outcome, SendArgs};
use crate::zfs::receive::Receive;
use crate::zfs::Zfs;

/// What the world needs of a node, whatever its app.
pub trait Program {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), InputError>;
    fn poll_output(&mut self) -> Output;
    fn read_slot(&mut self, io: IoId) -> Option<&mut [u8]>;
    fn io_slices<'a>(&'a self, io: IoId, out: &mut [IoSlice<'a>]) -> usize;
    fn accept(&mut self, now: Now, listener: ListenerId, peer: String) -> Option<ConnId>;
}

impl<A: App> Program for Node<A> {
    fn handle_input(&mut self, now: Now, input: Input) -> Result<(), InputError> {
        Node::handle_input(self, now, input)
    }
    fn poll_output(&mut self) -> Output {
        Node::poll_output(self)
    }
    fn read_slot(&mut self, io: IoId) -> Option<&mut [u8]> {
        Node::read_slot(self, io)
    }
    fn io_slices<'a>(&'a self, io: IoId, out: &mut [IoSlice<'a>]) -> usize {
        Node::io_slices(self, io, out)
    }
    fn accept(&mut self, now: Now, listener: ListenerId, peer: String) -> Option<ConnId> {
        Node::accept(self, now, listener, peer)
    }
}

/// Monotonic time of the sim's zero, so no node sees Instant 0.
pub(crate) const MONO_BASE: u64 = 1_000_000 * SECOND;
/// Wall clock of the sim's zero (2026-11-22), before each host's skew.
pub(crate) const WALL_BASE: i64 = 1_795_000_000;
/// A pipe's buffer, as on Linux.
pub(crate) const PIPE: usize = 64 * 1024;
/// Bytes a node may buffer for one connection or one child's stdin: the
/// stream window it grants or was granted (the sim announces the smallest),
/// plus frame headers and control messages. Above it, memory is not bounded
/// the way the design says (credit, DESIGN.md "The data path").
pub const MEMORY_BOUND: usize = zferry_core::limits::MIN_STREAM_WINDOW + 32 * 1024;
/// Linux gives up a connect after about this long without an answer.
pub(crate) const SYN_TIMEOUT: u64 = 127 * SECOND;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgKind {
    Daemon,
    Control,
}

pub(crate) struct Prog {
    pub(crate) host: usize,
    pub(crate) kind: ProgKind,
    pub(crate) node: Box<dyn Program>,
    pub(crate) socks: BTreeMap<ConnId, SockId>,
    pub(crate) connecting: BTreeSet<ConnId>,
    pub(crate) listeners: BTreeMap<ListenerId, Addr>,
    /// Sockets and pipes the node last asked to write.
    pub(crate) writers: BTreeSet<IoId>,
    pub(crate) timer: Option<u64>,
    pub(crate) exit: Option<i32>,
}

pub(crate) enum Work {
    Oneshot,
    /// Failed before it started (usage, spawn).
    Finished(Outcome),
    SendPending(SendArgs),
    Sending {
        bytes: Vec<u8>,
        pos: usize,
        fail_at: Option<usize>,
        holds: Vec<String>,
        name: String,
    },
    Receive {
        recv: Box<Receive>,
        fail_after: Option<u64>,
        fed: u64,
        /// Bytes per second this receive writes, and when it last ran.
        rate: u64,
        last: u64,
    },
    Done,
}

pub(crate) struct Child {
    pub(crate) host: usize,
    pub(crate) argv: Vec<String>,
    pub(crate) stdout_piped: bool,
    pub(crate) work: Work,
    pub(crate) stdout: VecDeque<u8>,
    pub(crate) stdout_closed: bool,
    pub(crate) stderr: VecDeque<u8>,
    pub(crate) stderr_closed: bool,
    pub(crate) stdin: VecDeque<u8>,
    pub(crate) stdin_eof: bool,
    /// The process no longer reads stdin: writes fail.
    pub(crate) stdin_gone: bool,
    pub(crate) status: Option<ExitStatus>,
    pub(crate) run_scheduled: bool,
}

#[derive(Debug)]
pub(crate) enum Ev {
    Pump(Pid),
    Timer(Pid, u64),
    Syn {
        pid: Pid,
        conn: ConnId,
        addr: Addr,
        first: u64,
    },
    Refused {
        pid: Pid,
        conn: ConnId,
    },
    Established {
        pid: Pid,
        conn: ConnId,
        sock: SockId,
    },
    ChildRun(Pid, ProcId),
    Restart(usize),
    Cron(usize),
    Workload,
    Fault,
    Heal,
    Quiet,
    /// A reset or a cut aimed at one connection while it is busy.
    Break {
        sock: SockId,
        cut: bool,
    },
}

/// What is left to do after a full receive made a new replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Followup {
    pub readonly: bool,
    pub unmark: bool,
    /// The daemon that should do it.
    pub owner: Pid,
    /// It will not happen: its command failed or its daemon died.
    pub lost: bool,
}

/// What an active job reported, from its log and its printed summary.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    pub(crate) pending: Vec<String>,
    pub(crate) started: u64,
    /// The summary lines of the last completed cycle, and when it started.
    pub last: Vec<String>,
    pub last_started: u64,
    pub completed: u32,
    /// Completed cycles that started after faults stopped.
    pub quiet_cycles: u32,
    /// A cycle after the faults failed on a session still busy with the last
    /// step's stream (`check::PULL_BUSY`).
    pub busy: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub events: u64,
    pub crashes: u32,
    pub resets: u32,
    pub partitions: u32,
    pub snapshots: u32,
    pub transfers_ok: u32,
    pub transfers_failed: u32,
    pub injected: u32,
    pub max_buffered: usize,
    /// Cycles, counted from the end of the faults, until replication settled
    /// (the most any job needed).
    pub cycles_to_converge: u32,
}

pub struct World {
    pub scenario: Scenario,
    pub now: u64,
    pub rng: Rng,
    pub(crate) queue: BTreeMap<(u64, u64), Ev>,
    pub(crate) seq: u64,
    pub trace: Trace,
    pub zfs: Vec<Zfs>,
    pub history: Vec<History>,
    pub(crate) net: Net,
    pub(crate) progs: BTreeMap<Pid, Prog>,
    pub(crate) daemons: Vec<Option<Pid>>,
    pub(crate) children: BTreeMap<(Pid, ProcId), Child>,
    pub(crate) next_pid: Pid,
    pub faults: bool,
    pub quiet_since: Option<u64>,
    pub reports: BTreeMap<(usize, String), JobReport>,
    pub(crate) pumps: BTreeSet<(u64, Pid)>,
    pub(crate) snap_counter: BTreeMap<(usize, String), u32>,
    pub stats: Stats,
    /// Replicas whose follow-up after their full receive (`set readonly=on`,
    /// `inherit zferry:placeholder` after `-F`) has not succeeded yet:
    /// (host, dataset) -> (readonly pending, placeholder mark pending).
    pub followups: BTreeMap<(usize, String), Followup>,
    /// Snapshots zferry destroyed (its pruning), by host and dataset: a gap they
    /// leave in a replica's history is no replication error.
    pub pruned: std::collections::BTreeSet<(usize, String, u64)>,
    /// Known issues tolerated (see `check::KNOWN_ISSUES`), by name.
    pub known: BTreeMap<&'static str, u32>,
    /// Per link: after how many of its job's cycles since the faults it
    /// converged, and whether one of them hit `check::PULL_BUSY`.
    pub(crate) converged_at: Vec<Option<(u32, bool)>>,
    /// Filesystems the receiver's admin made: (host, path) -> (guid, content).
    pub(crate) foreign: BTreeMap<(usize, String), (u64, u64)>,
    /// Daemons that could not learn the zfs dialect (see `check::DIALECT_STUCK`).
    pub dialect_failed: BTreeSet<Pid>,
    /// `ZFERRY_SIM_STRICT=1`: known issues fail the run too.
    pub strict: bool,
    pub failure: Option<String>,
    /// Bumped when a job completes a cycle or a host's ZFS changes: when the
    /// run may have converged.
    pub(crate) report_generation: u64,
    /// Timer events at one instant, to catch a node that never lets time pass.
    pub(crate) spin: (u64, u32),
}

impl World {
    pub fn new(seed: u64, keep_all_trace: bool) -> World {
        let mut rng = Rng::new(seed);
        let scenario = Scenario::generate(&mut rng);
        let n = scenario.hosts.len();
        let net = Net::new(n, &mut rng);
        let zfs = (0..n).map(|_| Zfs::new(scenario.flavor)).collect();
        World {
            scenario,
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            trace: Trace::new(400, keep_all_trace),
            zfs,
            history: (0..n).map(|_| History::default()).collect(),
            net,
            progs: BTreeMap::new(),
            daemons: vec![None; n],
            children: BTreeMap::new(),
            next_pid: 1,
            faults: true,
            quiet_since: None,
            reports: BTreeMap::new(),
            pumps: BTreeSet::new(),
            snap_counter: BTreeMap::new(),
            stats: Stats::default(),
            followups: BTreeMap::new(),
            pruned: Default::default(),
            known: BTreeMap::new(),
            dialect_failed: BTreeSet::new(),
            foreign: BTreeMap::new(),
            converged_at: Vec::new(),
            strict: std::env::var("ZFERRY_SIM_STRICT").is_ok_and(|v| v == "1"),
            failure: None,
            report_generation: 0,
            spin: (0, 0),
        }
    }

    pub fn log(&mut self, text: String) {
        self.trace.line(self.now, text);
    }

    pub fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.log(format!("FAILURE: {why}"));
            self.failure = Some(why);
        }
    }

    pub(crate) fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t.max(self.now), self.seq), ev);
    }

    pub(crate) fn wake(&mut self, pid: Pid, t: u64) {
        let t = t.max(self.now);
        if self.pumps.insert((t, pid)) {
            self.at(t, Ev::Pump(pid));
        }
    }

    pub fn host_now(&self, host: usize) -> Now {
        let skew = self.scenario.hosts[host].skew;
        Now {
            mono: Instant::from_nanos(MONO_BASE + self.now),
            wall: WallTime(WALL_BASE + skew + (self.now / SECOND) as i64),
        }
    }

    pub(crate) fn host_name(&self, host: usize) -> &str {
        &self.scenario.hosts[host].name
    }

    pub fn setup(&mut self) {
        self.converged_at = vec![None; self.scenario.links.len()];
        for h in 0..self.zfs.len() {
            self.zfs[h].clock = self.host_now(h).wall.0;
        }
        for host in 0..self.scenario.hosts.len() {
            let spec = self.scenario.hosts[host].clone();
            let rng = &mut self.rng;
            let zfs = &mut self.zfs[host];
            if spec.sender {
                zfs.create_pool("tank", rng);
                for path in ["tank/data".to_owned()]
                    .into_iter()
                    .chain(self.scenario.candidates.iter().map(|c| format!("tank/data/{c}")))
                {
                    let wanted = path == "tank/data" || rng.chance(600);
                    if wanted && zfs.create(&path, &[], rng).is_ok() {
                        let guid = zfs.datasets[&path].guid;
                        self.history[host].created(&path, guid);
                    }
                }
            } else {
                zfs.create_pool("backup", rng);
                for path in [
                    crate::scenario::SINK_ROOT,
                    crate::scenario::PULL_ROOT,
                    crate::scenario::BYSTANDER,
                ] {
                    zfs.create(path, &[], rng).expect("fresh pool");
                }
                zfs.snapshot(crate::scenario::BYSTANDER, "mine", WALL_BASE, rng).expect("fresh");
            }
        }
        for host in 0..self.scenario.hosts.len() {
            self.start_daemon(host);
        }
        let crons = self.scenario.crons.clone();
        for (i, c) in crons.iter().enumerate() {
            let first = self.rng.below(c.every);
            self.at(first, Ev::Cron(i));
        }
        let (w, f) = (self.scenario.work_every, self.scenario.fault_every);
        let first_work = self.rng.below(w);
        self.at(first_work, Ev::Workload);
        let first_fault = f + self.rng.below(f);
        self.at(first_fault, Ev::Fault);
        let faulty = self.scenario.faulty;
        self.at(faulty, Ev::Quiet);
        let s = &self.scenario;
        let summary = format!(
            "scenario: {:?}, {} host(s), links {:?}, data frames {} B, faults every {} s, work every {} s, {}‰ command failures, faulty for {} s",
            s.flavor,
            s.hosts.len(),
            s.links.iter().map(|l| format!("{:?} {}->{}", l.direction, l.sender, l.receiver)).collect::<Vec<_>>(),
            s.max_data_payload,
            s.fault_every / SECOND,
            s.work_every / SECOND,
            s.command_failures,
            s.faulty / SECOND
        );
        self.log(summary);
    }

    /// Runs until replication converged after the faults, a check failed, or
    /// the time to converge ran out.
    pub fn run(&mut self) {
        self.setup();
        let deadline = self.scenario.faulty + self.scenario.settle_time().as_nanos() as u64;
        let mut checked_generation: Vec<u64> = vec![u64::MAX; self.zfs.len()];
        let mut checked_reports = u64::MAX;
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > deadline {
                break;
            }
            self.now = t;
            self.stats.events += 1;
            for h in 0..self.zfs.len() {
                self.zfs[h].clock = self.host_now(h).wall.0;
            }
            self.handle(ev);
            if self.failure.is_some() {
                return;
            }
            let generations: Vec<u64> = self.zfs.iter().map(|z| z.generation).collect();
            if generations != checked_generation {
                checked_generation = generations;
                if let Err(e) = crate::check::invariants(self) {
                    return self.fail(e);
                }
                if self.quiet_since.is_some() {
                    crate::check::known_issue_workarounds(self);
                }
                self.report_generation += 1;
            }
            let reported = self.report_generation;
            if self.quiet_since.is_some() && reported != checked_reports {
                checked_reports = reported;
                if self.settle() {
                    return;
                }
            }
        }
        let why = crate::check::converged(self)
            .err()
            .unwrap_or_else(|| "no cycle ran after the faults stopped".into());
        self.fail(format!(
            "no convergence within {} s after the faults stopped: {why}",
            self.scenario.settle_time().as_secs()
        ));
    }

    /// Once faults stopped: notes each link's convergence (and after how many
    /// of its job's cycles); true when every link converged, checked against
    /// the bound on cycles.
    fn settle(&mut self) -> bool {
        let links = self.scenario.links.clone();
        for (i, link) in links.iter().enumerate() {
            if self.converged_at[i].is_none() && crate::check::converged_link(self, link).is_ok() {
                let r = &self.reports[&(link.active_host, link.job.clone())];
                self.converged_at[i] = Some((r.quiet_cycles, r.busy));
            }
        }
        if self.converged_at.iter().any(Option::is_none) || !crate::check::settled(self) {
            return false;
        }
        crate::check::count_known(self);
        for (i, link) in links.iter().enumerate() {
            let (cycles, busy) = self.converged_at[i].expect("all converged");
            self.stats.cycles_to_converge = self.stats.cycles_to_converge.max(cycles);
            if cycles <= crate::check::MAX_CYCLES {
                continue;
            }
            if busy && !self.strict {
                *self.known.entry(crate::check::PULL_BUSY).or_default() += 1;
                continue;
            }
            self.fail(format!(
                "job {} needed {cycles} cycles after the faults stopped to converge (bound {})",
                link.job,
                crate::check::MAX_CYCLES
            ));
            return true;
        }
        self.log("converged after the faults stopped".to_owned());
        true
    }

    pub(crate) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Pump(pid) => {
                self.pumps.remove(&(self.now, pid));
                self.pump(pid);
            }
            Ev::Timer(pid, t) => {
                let Some(p) = self.progs.get_mut(&pid) else { return };
                if p.timer != Some(t) {
                    return;
                }
                p.timer = None;
                if self.spin.0 == self.now {
                    self.spin.1 += 1;
                    if self.spin.1 > 10_000 {
                        return self.fail(format!(
                            "program {pid} asks for a timeout at the current time over and over"
                        ));
                    }
                } else {
                    self.spin = (self.now, 0);
                }
                self.input(pid, Input::Timeout);
                self.pump(pid);
            }
            Ev::Syn { pid, conn, addr, first } => self.syn(pid, conn, addr, first),
            Ev::Refused { pid, conn } => {
                if self.progs.get_mut(&pid).is_some_and(|p| p.connecting.remove(&conn)) {
                    self.input(
                        pid,
                        Input::ConnectFailed {
                            conn,
                            error: "Connection refused (os error 111)".into(),
                        },
                    );
                    self.pump(pid);
                }
            }
            Ev::Established { pid, conn, sock } => {
                let alive = self.progs.get_mut(&pid).is_some_and(|p| p.connecting.remove(&conn));
                if !alive {
                    if let Some((peer, t)) = self.net.close(sock, self.now, &mut self.rng) {
                        self.wake(peer, t);
                    }
                    return;
                }
                self.progs.get_mut(&pid).expect("alive").socks.insert(conn, sock);
                if self.faults
                    && !self.net.is_local(sock)
                    && self.rng.chance(self.scenario.conn_faults)
                {
                    let t = self.now + self.rng.below(2 * SECOND);
                    let cut = self.rng.chance(400);
                    self.at(t, Ev::Break { sock, cut });
                }
                self.input(pid, Input::Connected(conn));
                self.pump(pid);
            }
            Ev::Break { sock, cut } => {
                if self.faults && self.net.owner(sock).is_some() {
                    self.break_connection(sock, cut);
                }
            }
            Ev::ChildRun(pid, proc) => self.child_run(pid, proc),
            Ev::Restart(host) => {
                if self.daemons[host].is_none() {
                    self.start_daemon(host);
                }
            }
            Ev::Cron(i) => {
                let c = self.scenario.crons[i].clone();
                if self.faults || self.quiet_since.is_some() {
                    self.start_control(c.host, &c.job);
                }
                let next = self.now + c.every / 2 + self.rng.below(c.every);
                self.at(next, Ev::Cron(i));
            }
            Ev::Workload => {
                if self.faults {
                    self.workload();
                    let next = self.now + 1 + self.rng.below(2 * self.scenario.work_every);
                    self.at(next, Ev::Workload);
                }
            }
            Ev::Fault => {
                if self.faults {
                    self.fault();
                    let next = self.now + 1 + self.rng.below(2 * self.scenario.fault_every);
                    self.at(next, Ev::Fault);
                }
            }
            Ev::Heal => self.heal(),
            Ev::Quiet => {
                self.faults = false;
                self.quiet_since = Some(self.now);
                self.log("faults and workload stop; replication must converge now".into());
                self.heal();
                crate::check::known_issue_workarounds(self);
            }
        }
    }

    pub(crate) fn add_prog(&mut self, host: usize, kind: ProgKind, node: Box<dyn Program>) -> Pid {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.progs.insert(
            pid,
            Prog {
                host,
                kind,
                node,
                socks: BTreeMap::new(),
                connecting: BTreeSet::new(),
                listeners: BTreeMap::new(),
                writers: BTreeSet::new(),
                timer: None,
                exit: None,
            },
        );
        pid
    }

    pub(crate) fn start_daemon(&mut self, host: usize) {
        let spec = self.scenario.hosts[host].clone();
        let config = Config::from_yaml(&spec.yaml).unwrap_or_else(|e| {
            panic!("the scenario's config of {} is invalid: {e}\n{}", spec.name, spec.yaml)
        });
        let (jobs, _warnings) = build_jobs(&config)
            .unwrap_or_else(|e| panic!("the scenario's jobs of {} are refused: {e}", spec.name));
        let app =
            Daemon::new(DaemonMode::Daemon { control_socket: spec.control_socket.clone() }, jobs);
        let node = Node::new(app, self.scenario.session_config(), self.host_now(host));
        let pid = self.add_prog(host, ProgKind::Daemon, Box::new(node));
        self.daemons[host] = Some(pid);
        self.log(format!("{}: daemon starts as program {pid}", spec.name));
        self.pump(pid);
    }

    /// `zferry signal wakeup JOB`: a short-lived control client.
    pub(crate) fn start_control(&mut self, host: usize, job: &str) {
        let socket = self.scenario.hosts[host].control_socket.clone();
        let app = ControlClient::new(socket, ControlRequest::Wakeup(job.to_owned()));
        let node = Node::new(app, self.scenario.session_config(), self.host_now(host));
        let pid = self.add_prog(host, ProgKind::Control, Box::new(node));
        self.pump(pid);
    }

    /// A program ends: by its own exit, or killed (`crash`). Its sockets close
    /// as the kernel closes them, its children die, a daemon is restarted.
    pub(crate) fn terminate(&mut self, pid: Pid, how: String, crash: bool) {
        let Some(p) = self.progs.remove(&pid) else { return };
        let name = self.host_name(p.host).to_owned();
        if p.kind == ProgKind::Daemon || crash {
            self.log(format!("{name}[{pid}] {how}"));
        }
        for (_, sock) in p.socks {
            if let Some((peer, t)) = self.net.close(sock, self.now, &mut self.rng) {
                self.wake(peer, t);
            }
        }
        for addr in p.listeners.into_values() {
            self.net.listeners.remove(&addr);
        }
        let mine: Vec<ProcId> = self
            .children
            .range((pid, ProcId(0))..=(pid, ProcId(u64::MAX)))
            .map(|(k, _)| k.1)
            .collect();
        for proc in mine {
            self.kill_child(pid, proc);
            self.children.remove(&(pid, proc));
        }
        for f in self.followups.values_mut().filter(|f| f.owner == pid) {
            f.lost = true;
        }
        if p.kind == ProgKind::Daemon {
            self.daemons[p.host] = None;
            // systemd's Restart=always.
            let t = self.now + self.rng.range(1, 30) * SECOND;
            self.at(t, Ev::Restart(p.host));
        }
    }

    pub fn daemon_running(&self, host: usize) -> bool {
        self.daemons[host].is_some()
    }
}
