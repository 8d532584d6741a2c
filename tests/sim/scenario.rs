//! What one seed simulates: the hosts, their daemons' zrepl configurations (as
//! YAML, parsed by the real config parser), which filesystems replicate where,
//! and how often things happen.

use std::time::Duration;

use crate::rng::Rng;
use crate::zfs::Flavor;

pub const SECOND: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Pull,
}

#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub ip: String,
    pub yaml: String,
    pub control_socket: String,
    /// Seconds this host's wall clock is off.
    pub skew: i64,
    pub sender: bool,
}

/// One replication: which sender's filesystems land where on which receiver.
#[derive(Debug, Clone)]
pub struct Link {
    pub direction: Direction,
    pub sender: usize,
    pub receiver: usize,
    /// The host and job whose cycles replicate it (push: sender; pull: receiver).
    pub active_host: usize,
    pub job: String,
    pub filter: Vec<(String, bool)>,
    /// The receiver dataset a sender path is appended to.
    pub receiver_prefix: String,
}

/// `zferry signal wakeup JOB` from cron.
#[derive(Debug, Clone)]
pub struct Cron {
    pub host: usize,
    pub job: String,
    pub every: u64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub flavor: Flavor,
    pub hosts: Vec<HostSpec>,
    pub links: Vec<Link>,
    pub crons: Vec<Cron>,
    /// Paths (under `tank/data`) the workload creates and destroys.
    pub candidates: Vec<&'static str>,
    pub max_data_payload: usize,
    /// Length of the phase with faults and workload.
    pub faulty: u64,
    /// Per-mille chances that drive the fault and workload mix.
    pub fault_every: u64,
    pub work_every: u64,
    pub command_failures: u64,
    /// Per-mille chance that a new connection is reset or cut while it works.
    pub conn_faults: u64,
    /// zrepl-style snapshot names from the (skewed) clock, else s1, s2, ...
    pub dated_names: bool,
}

pub const SINK_ROOT: &str = "backup/sink";
pub const PULL_ROOT: &str = "backup/pull";
/// A filesystem outside every receive root: zferry must never touch it.
pub const BYSTANDER: &str = "backup/other";

/// Keep rules drawn per job: mostly tight ones, so pruning runs often and the
/// protection of the incremental base is exercised.
///
/// `shared`: two jobs send the same filesystems (a push and a source). Each
/// prunes the sender by its own receiver's state, so tight sender rules could
/// destroy the other's incremental base (zferry warns about such configs);
/// their sender rules stay loose.
fn pruning(rng: &mut Rng, shared: bool) -> String {
    let last_n = |n: u32| format!("        - type: last_n\n          count: {n}\n");
    let sender = match rng.below(4) {
        _ if shared => last_n(100),
        0 => last_n(100),
        1 => last_n(1),
        2 => last_n(3),
        _ => format!("        - type: not_replicated\n{}", last_n(1)),
    };
    let receiver = match rng.below(3) {
        0 => last_n(100),
        1 => last_n(1),
        _ => last_n(2),
    };
    format!("    pruning:\n      keep_sender:\n{sender}      keep_receiver:\n{receiver}")
}

fn filters(rules: &[(String, bool)]) -> String {
    rules.iter().map(|(p, b)| format!("      \"{p}\": {b}\n")).collect()
}

fn policy(rng: &mut Rng) -> String {
    let initial = *rng.pick(&["most_recent", "most_recent", "all"]).expect("non-empty");
    let incremental =
        *rng.pick(&["guarantee_resumability", "guarantee_incremental"]).expect("non-empty");
    format!(
        "    conflict_resolution:\n      initial_replication: {initial}\n    replication:\n      protection:\n        initial: guarantee_resumability\n        incremental: {incremental}\n"
    )
}

fn global(sock: &str) -> String {
    format!("global:\n  control:\n    sockpath: {sock}\njobs:\n")
}

fn push_job(address: &str, rules: &[(String, bool)], shared: bool, rng: &mut Rng) -> String {
    format!(
        "  - name: push\n    type: push\n    connect:\n      type: tcp\n      address: \"{address}\"\n    filesystems:\n{}    snapshotting:\n      type: {}\n{}{}",
        filters(rules),
        snapshotting(rng),
        policy(rng),
        pruning(rng, shared),
    )
}

/// A third of the pushers take their own snapshots on a schedule (zferry's
/// snapshotter, one round then a cycle); the rest rely on the workload's.
fn snapshotting(rng: &mut Rng) -> String {
    if rng.chance(333) {
        let every = rng.range(30, 90);
        format!("periodic\n      prefix: zf_\n      interval: {every}s")
    } else {
        "manual".to_owned()
    }
}

fn sink_job() -> String {
    format!("  - name: sink\n    type: sink\n    serve:\n      type: tcp\n      listen: \":8888\"\n      clients:\n        \"10.0.0.0/24\": \"client-*\"\n    root_fs: {SINK_ROOT}\n")
}

fn source_job(rules: &[(String, bool)]) -> String {
    format!(
        "  - name: source\n    type: source\n    serve:\n      type: tcp\n      listen: \"0.0.0.0:8889\"\n      clients:\n        \"10.0.0.1\": \"backup\"\n    filesystems:\n{}    snapshotting:\n      type: manual\n",
        filters(rules)
    )
}

fn pull_job(address: &str, interval: u64, shared: bool, rng: &mut Rng) -> String {
    format!(
        "  - name: pull\n    type: pull\n    connect:\n      type: tcp\n      address: \"{address}\"\n    root_fs: {PULL_ROOT}\n    interval: {interval}s\n{}{}",
        policy(rng),
        pruning(rng, shared),
    )
}

impl Scenario {
    pub fn generate(rng: &mut Rng) -> Scenario {
        let flavor = if rng.chance(150) { Flavor::ZfsFuse } else { Flavor::OpenZfs };
        let mut rules = vec![("tank/data<".to_owned(), true)];
        if rng.chance(500) {
            rules.push(("tank/data/skip<".to_owned(), false));
            if rng.chance(500) {
                rules.push(("tank/data/skip/keep<".to_owned(), true));
            }
        }
        // 0: push clients to a sink; 1: a pull from a source; 2: both at once,
        // replicating the same filesystems twice.
        let topology = rng.below(5);
        let (pushers, pull) = match topology {
            0 | 1 => (1, false),
            2 => (rng.usize(2, 3), false),
            3 => (0, true),
            _ => (1, true),
        };
        let senders = pushers.max(usize::from(pull));
        let mut hosts = Vec::new();
        let mut links = Vec::new();
        let mut crons = Vec::new();
        let sock = "/run/zferry/backup.sock".to_owned();
        let mut receiver_yaml = global(&sock);
        if pushers > 0 {
            receiver_yaml.push_str(&sink_job());
        }
        let interval = rng.range(20, 120);
        if pull {
            receiver_yaml.push_str(&pull_job("10.0.0.2:8889", interval, pushers > 0, rng));
        }
        hosts.push(HostSpec {
            name: "backup".into(),
            ip: "10.0.0.1".into(),
            yaml: receiver_yaml,
            control_socket: sock,
            skew: 0,
            sender: false,
        });
        for i in 0..senders {
            let name = format!("src{}", i + 1);
            let ip = format!("10.0.0.{}", i + 2);
            let sock = format!("/run/zferry/{name}.sock");
            let mut yaml = global(&sock);
            let host = hosts.len();
            if i < pushers {
                yaml.push_str(&push_job("10.0.0.1:8888", &rules, pull, rng));
                links.push(Link {
                    direction: Direction::Push,
                    sender: host,
                    receiver: 0,
                    active_host: host,
                    job: "push".into(),
                    filter: rules.clone(),
                    receiver_prefix: format!("{SINK_ROOT}/client-{ip}"),
                });
                crons.push(Cron { host, job: "push".into(), every: rng.range(20, 120) * SECOND });
            }
            if pull && i == 0 {
                yaml.push_str(&source_job(&rules));
                links.push(Link {
                    direction: Direction::Pull,
                    sender: host,
                    receiver: 0,
                    active_host: 0,
                    job: "pull".into(),
                    filter: rules.clone(),
                    receiver_prefix: PULL_ROOT.to_owned(),
                });
            }
            hosts.push(HostSpec {
                name,
                ip,
                yaml,
                control_socket: sock,
                // Clocks off by up to a day either way.
                skew: rng.range(0, 2 * 86400) as i64 - 86400,
                sender: true,
            });
        }
        Scenario {
            flavor,
            hosts,
            links,
            crons,
            candidates: vec!["a", "b", "c", "a/x", "a/x/y", "b/y", "skip", "skip/keep", "skip/z"],
            max_data_payload: *rng.pick(&[1024, 1024, 2048, 4096]).expect("non-empty"),
            faulty: rng.range(5 * 60, 30 * 60) * SECOND,
            fault_every: rng.range(5, 60) * SECOND,
            work_every: rng.range(3, 30) * SECOND,
            command_failures: rng.range(0, 40),
            conn_faults: rng.range(0, 300),
            dated_names: rng.chance(300),
        }
    }

    pub fn session_config(&self) -> zferry_core::rpc::SessionConfig {
        zferry_core::rpc::SessionConfig {
            max_data_payload: self.max_data_payload,
            stream_window: zferry_core::limits::MIN_STREAM_WINDOW,
            ..Default::default()
        }
    }

    /// How long, after faults stop, replication has to converge.
    pub fn settle_time(&self) -> Duration {
        Duration::from_secs(40 * 60)
    }
}

/// Whether `rules` (zferry's filter syntax: `a<` subtree, `a` exact, the most
/// specific rule wins) select `path`: an independent reading for the checks.
pub fn selects(rules: &[(String, bool)], path: &str) -> bool {
    let mut best: Option<(usize, bool, bool)> = None;
    for (pattern, include) in rules {
        let (base, subtree) = match pattern.strip_suffix('<') {
            Some(b) => (b, true),
            None => (pattern.as_str(), false),
        };
        let hit = path == base || (subtree && path.starts_with(&format!("{base}/")));
        if !hit {
            continue;
        }
        // Longer is more specific; an exact rule beats a subtree rule of the same path.
        let key = (base.len(), !subtree, *include);
        if best.map_or(true, |b| (key.0, key.1) > (b.0, b.1)) {
            best = Some(key);
        }
    }
    best.is_some_and(|b| b.2)
}
