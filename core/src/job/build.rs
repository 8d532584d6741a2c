//! Turns a validated configuration into the jobs the daemon runs.

use super::active::{ActiveJob, ActiveSpec, Direction};
use super::sink::{SinkJob, SinkSpec};
use super::source::{SourceJob, SourceSpec};
use super::Job;
use crate::config::{self, Config, Connect, JobKind, Serve};
use crate::node::Endpoint;
use crate::plan::filter::FilesystemFilter;
use crate::plan::policy::{InitialReplication, Protection};
use crate::plan::steps::{ReplicationPolicy, StepMode};
use crate::zfs::DatasetPath;

fn connect_endpoint(connect: &Connect) -> (Endpoint, String) {
    match connect {
        Connect::Tcp { address, .. } => (Endpoint::Tcp(address.clone()), String::new()),
        Connect::Local { listener_name, client_identity, .. } => {
            (Endpoint::Local(listener_name.clone()), client_identity.clone())
        }
    }
}

fn serve_endpoint(serve: &Serve) -> (Endpoint, config::ClientMap) {
    match serve {
        Serve::Tcp { listen, clients, .. } => (Endpoint::Tcp(listen.clone()), clients.clone()),
        Serve::Local { listener_name } => {
            (Endpoint::Local(listener_name.clone()), config::ClientMap::default())
        }
    }
}

/// The filter, and the pools it names (to list filesystems under); an
/// everything-rule (`<`) is not supported for listing yet.
fn filter(
    job: &str,
    rules: &config::FilesystemFilter,
) -> Result<(FilesystemFilter, Vec<DatasetPath>), String> {
    let filter = FilesystemFilter::new(rules.iter().map(|(k, v)| (k.as_str(), *v)))
        .map_err(|e| format!("job {job:?}: filesystems: {e}"))?;
    let mut pools: Vec<DatasetPath> = Vec::new();
    for (pattern, include) in rules {
        if !include {
            continue;
        }
        let path = pattern.trim_end_matches('<');
        if path.is_empty() {
            return Err(format!(
                "job {job:?}: filesystems: the rule \"<\" (every pool) is {}; name the pools",
                config::NOT_SUPPORTED
            ));
        }
        let pool = path.split('/').next().unwrap_or(path);
        let pool =
            DatasetPath::parse(pool).map_err(|e| format!("job {job:?}: filesystems: {e}"))?;
        if !pools.contains(&pool) {
            pools.push(pool);
        }
    }
    Ok((filter, pools))
}

fn policy(
    replication: &config::Replication,
    conflict: &config::ConflictResolution,
) -> ReplicationPolicy {
    let protection = match replication.protection_incremental {
        config::Protection::GuaranteeResumability => Protection::Resumability,
        config::Protection::GuaranteeIncrementalReplication => Protection::IncrementalReplication,
        config::Protection::GuaranteeNothing => Protection::Nothing,
    };
    let initial = match conflict.initial_replication {
        config::InitialReplication::MostRecent => InitialReplication::MostRecent,
        config::InitialReplication::All => InitialReplication::All,
        config::InitialReplication::Fail => InitialReplication::Fail,
    };
    ReplicationPolicy {
        initial,
        mode: StepMode::for_protection(protection),
        ..ReplicationPolicy::default()
    }
}

/// Snapshotting is not implemented yet: a job that asks for it must not run as
/// if it had it, taking no snapshots without saying so.
fn snapshotting(job: &str, s: &config::Snapshotting) -> Result<(), String> {
    match s {
        config::Snapshotting::Manual => Ok(()),
        config::Snapshotting::Periodic { .. } | config::Snapshotting::Cron { .. } => Err(format!(
            "job {job:?}: snapshotting of type periodic or cron is {}; use `type: manual` \
             and take snapshots yourself for now",
            config::NOT_SUPPORTED
        )),
    }
}

/// Jobs ready to run, and warnings for the person starting them.
pub type Built = (Vec<Box<dyn Job>>, Vec<String>);

/// The jobs of `config`, and warnings for the person starting them.
///
/// Pruning is not implemented yet either, but zrepl requires its keys in every
/// push and pull job. Ignoring the rules can only keep more snapshots than asked,
/// never destroy one, so such a job runs, with a warning that says so.
pub fn build_jobs(config: &Config) -> Result<Built, String> {
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut warnings = Vec::new();
    let prune_warning = |name: &str| {
        format!("job {name:?}: pruning is not implemented yet: keep_sender and keep_receiver are ignored and no snapshot is destroyed")
    };
    for job in &config.jobs {
        let name = job.name.clone();
        match &job.kind {
            JobKind::Push(push) => {
                snapshotting(&name, &push.snapshotting)?;
                warnings.push(prune_warning(&name));
                let (connect, client_identity) = connect_endpoint(&push.connect);
                let (filter, list_roots) = filter(&name, &push.filesystems)?;
                jobs.push(Box::new(ActiveJob::new(ActiveSpec {
                    name,
                    direction: Direction::Push,
                    connect,
                    client_identity,
                    filter,
                    list_roots,
                    root_fs: None,
                    policy: policy(&push.replication, &push.conflict_resolution),
                    // With manual snapshotting, a push runs when woken (signal, run).
                    interval: None,
                })));
            }
            JobKind::Pull(pull) => {
                warnings.push(prune_warning(&name));
                let (connect, client_identity) = connect_endpoint(&pull.connect);
                jobs.push(Box::new(ActiveJob::new(ActiveSpec {
                    name,
                    direction: Direction::Pull,
                    connect,
                    client_identity,
                    filter: FilesystemFilter::default(),
                    list_roots: Vec::new(),
                    root_fs: Some(pull.root_fs.clone()),
                    policy: policy(&pull.replication, &pull.conflict_resolution),
                    interval: match pull.interval {
                        config::PullInterval::Every(d) => Some(d),
                        config::PullInterval::Manual => None,
                    },
                })));
            }
            JobKind::Sink(sink) => {
                let (serve, clients) = serve_endpoint(&sink.serve);
                jobs.push(Box::new(SinkJob::new(SinkSpec {
                    name,
                    serve,
                    clients,
                    root_fs: sink.root_fs.clone(),
                })));
            }
            JobKind::Source(source) => {
                snapshotting(&name, &source.snapshotting)?;
                let (serve, clients) = serve_endpoint(&source.serve);
                let (filter, list_roots) = filter(&name, &source.filesystems)?;
                jobs.push(Box::new(SourceJob::new(SourceSpec {
                    name,
                    serve,
                    clients,
                    filter,
                    list_roots,
                })));
            }
            JobKind::Snap(_) => {
                return Err(format!("job {name:?}: snap jobs are {}", config::NOT_SUPPORTED));
            }
        }
    }
    Ok((jobs, warnings))
}
