//! Typed configuration, read from zrepl's YAML schema unchanged.
//!
//! The caller reads the file and hands its text to [`Config::from_yaml`]. Every
//! key zferry implements is parsed into the types below, with zrepl's defaults;
//! every key zrepl knows but zferry does not implement yet is an error that says
//! so (never silently ignored); every other key is an error naming the key and its
//! line. After parsing, the jobs are checked against each other (unique names,
//! `local` transports that meet, receiving roots that do not overlap).
//!
//! Durations are [`std::time::Duration`]. Two syntaxes exist, as in zrepl (see
//! [`duration`]): intervals (`10m`, `1d`, `2w`) and Go timeouts (`10s`, `1m30s`).
//! Filesystem filters and pruning regexes are kept as written: the filter and
//! pruning modules compile them.

mod clients;
mod cron;
mod de;
pub mod duration;
mod grid;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::zfs::path::DatasetPath;

pub use clients::{validate_identity, ClientEntry, ClientMap};
pub use cron::{parse_cron, CronSpec};
pub use grid::{parse_grid, GridInterval, GridKeep};

/// The default path of the control socket (zrepl's is /var/run/zrepl/control).
pub const DEFAULT_CONTROL_SOCKPATH: &str = "/var/run/zferry/control";
/// Default `dial_timeout` of a `tcp` connect.
pub const DEFAULT_TCP_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `dial_timeout` of a `local` connect.
pub const DEFAULT_LOCAL_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `timeout` of a command hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest job name accepted: the name goes into bookmark and hold names, which
/// ZFS limits to 255 bytes together with the dataset name.
pub const MAX_JOB_NAME_LEN: usize = 128;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub global: Global,
    pub jobs: Vec<Job>,
}

/// The `global` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Log outlets; zrepl's default is one stdout outlet at level `warn`.
    pub logging: Vec<LogOutlet>,
    pub control: Control,
}

/// `global.control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub sockpath: String,
}

/// One log outlet. Only `stdout` is implemented (`syslog` and `tcp` are rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutlet {
    Stdout(StdoutOutlet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutOutlet {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Print timestamps (default true).
    pub time: bool,
    /// Colour the output (default true).
    pub color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Logfmt,
    Json,
}

/// One entry of `jobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Unique; a valid dataset name component not starting with `_`.
    pub name: String,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    Push(PushJob),
    Sink(SinkJob),
    Pull(PullJob),
    Source(SourceJob),
    Snap(SnapJob),
}

impl JobKind {
    /// The `type` as written in the configuration.
    pub fn type_name(&self) -> &'static str {
        match self {
            JobKind::Push(_) => "push",
            JobKind::Sink(_) => "sink",
            JobKind::Pull(_) => "pull",
            JobKind::Source(_) => "source",
            JobKind::Snap(_) => "snap",
        }
    }
}

/// Filesystem filter: pattern → include. Validated by the filter module.
pub type FilesystemFilter = BTreeMap<String, bool>;

/// Active side that sends: snapshots locally and pushes to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    pub connect: Connect,
    pub filesystems: FilesystemFilter,
    pub send: SendOptions,
    pub replication: Replication,
    pub snapshotting: Snapshotting,
    pub pruning: PruningSenderReceiver,
    pub conflict_resolution: ConflictResolution,
}

/// Passive side that receives under `root_fs/CLIENT_IDENTITY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkJob {
    pub serve: Serve,
    pub root_fs: DatasetPath,
    pub recv: RecvOptions,
}

/// Active side that receives: pulls from a source into `root_fs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullJob {
    pub connect: Connect,
    pub root_fs: DatasetPath,
    pub interval: PullInterval,
    pub recv: RecvOptions,
    pub replication: Replication,
    pub pruning: PruningSenderReceiver,
    pub conflict_resolution: ConflictResolution,
}

/// Passive side that sends: serves its snapshots to pull jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceJob {
    pub serve: Serve,
    pub filesystems: FilesystemFilter,
    pub send: SendOptions,
    pub snapshotting: Snapshotting,
}

/// Local snapshotting and pruning only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapJob {
    pub filesystems: FilesystemFilter,
    pub snapshotting: Snapshotting,
    pub pruning: Vec<KeepRule>,
}

/// A pull job's `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullInterval {
    Every(Duration),
    /// `manual`: replicate only when woken up.
    Manual,
}

/// How an active job reaches its passive side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    Tcp {
        /// `host:port`, as written (the driver resolves it).
        address: String,
        /// Zero means no timeout, as in Go.
        dial_timeout: Duration,
    },
    Local {
        listener_name: String,
        client_identity: String,
        dial_timeout: Duration,
    },
}

/// How a passive job accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    Tcp {
        /// `host:port`; the host may be empty (all addresses).
        listen: String,
        listen_freebind: bool,
        clients: ClientMap,
    },
    Local {
        listener_name: String,
    },
}

/// `send` options (all default false).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    pub encrypted: bool,
    pub raw: bool,
    pub send_properties: bool,
    pub backup_properties: bool,
    pub large_blocks: bool,
    pub compressed: bool,
    pub embedded_data: bool,
    pub saved: bool,
}

/// `recv` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecvOptions {
    /// `properties.override`: property → value, passed as `zfs recv -o`.
    pub override_properties: BTreeMap<String, String>,
    /// `properties.inherit`: passed as `zfs recv -x`.
    pub inherit_properties: Vec<String>,
    pub placeholder_encryption: PlaceholderEncryption,
}

/// `recv.placeholder.encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaceholderEncryption {
    #[default]
    Unspecified,
    Off,
    Inherit,
}

/// `replication` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub protection_initial: Protection,
    pub protection_incremental: Protection,
    /// `concurrency.steps` (default 1).
    pub concurrency_steps: u32,
    /// `concurrency.size_estimates` (default 4).
    pub concurrency_size_estimates: u32,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            protection_initial: Protection::Resumability,
            protection_incremental: Protection::Resumability,
            concurrency_steps: 1,
            concurrency_size_estimates: 4,
        }
    }
}

/// `replication.protection.{initial,incremental}` (`guarantee_resumability`,
/// `guarantee_incremental` or its alias `guarantee_incremental_replication`,
/// `guarantee_nothing`) and `conflict_resolution.initial_replication` are the
/// planner's own policy types.
pub use crate::plan::policy::{InitialReplication, Protection};

/// `conflict_resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConflictResolution {
    pub initial_replication: InitialReplication,
}

/// `snapshotting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshotting {
    Periodic {
        prefix: String,
        interval: Duration,
        timestamp: TimestampFormatting,
        hooks: Vec<Hook>,
    },
    Cron {
        prefix: String,
        cron: CronSpec,
        timestamp: TimestampFormatting,
        hooks: Vec<Hook>,
    },
    Manual,
}

/// How the snapshot name's time suffix is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimestampFormatting {
    pub format: TimestampFormat,
    pub location: TimestampLocation,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// `20060102_150405_000`
    #[default]
    Dense,
    /// `2006-01-02_15:04:05`
    Human,
    /// `2006-01-02T15:04:05.000Z`
    Iso8601,
    /// `1136214245`
    UnixSeconds,
    /// Any other string: a Go `time.Format` layout, kept as written.
    GoLayout(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampLocation {
    #[default]
    Utc,
    Local,
}

/// A snapshotting hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Command(CommandHook),
}

/// `type: command` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandHook {
    /// Absolute path of the executable.
    pub path: String,
    pub timeout: Duration,
    pub err_is_fatal: bool,
    /// Default `{"<": true}`.
    pub filesystems: FilesystemFilter,
}

/// `pruning` of push and pull jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruningSenderReceiver {
    pub keep_sender: Vec<KeepRule>,
    pub keep_receiver: Vec<KeepRule>,
}

/// One keep rule. Regexes are kept as strings; the pruning module compiles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepRule {
    Grid { grid: Vec<GridInterval>, regex: String },
    LastN { count: u32, regex: Option<String> },
    Regex { regex: String, negate: bool },
    NotReplicated { keep_snapshot_at_cursor: bool },
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// The job the error is in, when known.
    pub job: Option<String>,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The full message (includes the YAML path and "at line N column M" when
    /// the position is known).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// Not YAML, or not zrepl's schema (unknown key, wrong type, bad value).
    Invalid,
    /// A zrepl feature that zferry does not implement yet.
    Unsupported,
    /// Jobs that do not fit together (duplicate names, dangling listeners, ...).
    Inconsistent,
}

/// The phrase every "known but not implemented" error carries.
pub const NOT_SUPPORTED: &str = "not supported yet by zferry";

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job {
            Some(job) => write!(f, "job {job:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn inconsistent(job: Option<&str>, message: String) -> ConfigError {
        ConfigError {
            kind: ConfigErrorKind::Inconsistent,
            job: job.map(str::to_owned),
            line: None,
            column: None,
            message,
        }
    }
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config = de::parse(text)?;
        validate_jobs(&config.jobs)?;
        Ok(config)
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// Checks that hold between jobs.
fn validate_jobs(jobs: &[Job]) -> Result<(), ConfigError> {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(first) = names.insert(&job.name, i) {
            return Err(ConfigError::inconsistent(
                Some(&job.name),
                format!(
                    "duplicate job name {:?}: jobs[{first}] and jobs[{i}] both use it",
                    job.name
                ),
            ));
        }
    }

    // Local listeners: name → (job, job kind).
    let mut listeners: BTreeMap<&str, &Job> = BTreeMap::new();
    let mut tcp_listens: BTreeMap<&str, &Job> = BTreeMap::new();
    for job in jobs {
        let serve = match &job.kind {
            JobKind::Sink(s) => &s.serve,
            JobKind::Source(s) => &s.serve,
            _ => continue,
        };
        match serve {
            Serve::Local { listener_name } => {
                if let Some(other) = listeners.insert(listener_name, job) {
                    return Err(ConfigError::inconsistent(
                        Some(&job.name),
                        format!(
                            "local listener_name {listener_name:?} is already served by job {:?}",
                            other.name
                        ),
                    ));
                }
            }
            Serve::Tcp { listen, .. } => {
                if let Some(other) = tcp_listens.insert(listen, job) {
                    return Err(ConfigError::inconsistent(
                        Some(&job.name),
                        format!(
                            "tcp listen address {listen:?} is already used by job {:?}",
                            other.name
                        ),
                    ));
                }
            }
        }
    }

    for job in jobs {
        let (connect, wanted) = match &job.kind {
            JobKind::Push(p) => (&p.connect, "sink"),
            JobKind::Pull(p) => (&p.connect, "source"),
            _ => continue,
        };
        let Connect::Local { listener_name, .. } = connect else { continue };
        match listeners.get(listener_name.as_str()) {
            None => {
                return Err(ConfigError::inconsistent(
                    Some(&job.name),
                    format!(
                        "connect: local listener_name {listener_name:?} is not served by any \
                         {wanted} job in this configuration (a {wanted} job needs \
                         `serve: {{type: local, listener_name: {listener_name}}}`)"
                    ),
                ))
            }
            Some(server) if server.kind.type_name() != wanted => {
                return Err(ConfigError::inconsistent(
                    Some(&job.name),
                    format!(
                        "connect: local listener_name {listener_name:?} is served by {} job {:?}, \
                         but a {} job must connect to a {wanted} job",
                        server.kind.type_name(),
                        server.name,
                        job.kind.type_name()
                    ),
                ))
            }
            Some(_) => {}
        }
    }

    // Receiving jobs must not receive into overlapping trees (as zrepl requires).
    let mut roots: Vec<(&DatasetPath, &Job)> = jobs
        .iter()
        .filter_map(|j| match &j.kind {
            JobKind::Sink(s) => Some((&s.root_fs, j)),
            JobKind::Pull(p) => Some((&p.root_fs, j)),
            _ => None,
        })
        .collect();
    roots.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (a, ja)) in roots.iter().enumerate() {
        for (b, jb) in &roots[i + 1..] {
            if b.has_prefix(a) || a.has_prefix(b) {
                return Err(ConfigError::inconsistent(
                    Some(&jb.name),
                    format!(
                        "root_fs {:?} overlaps root_fs {:?} of job {:?}: receiving jobs \
                         must not share a tree",
                        b.components().join("/"),
                        a.components().join("/"),
                        ja.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
