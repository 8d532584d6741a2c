//! Turns a validated configuration into the jobs the daemon runs.

use super::active::{ActiveJob, ActiveSpec, Direction};
use super::prune::PruneSpec;
use super::sink::{SinkJob, SinkSpec};
use super::snap::{SnapJob, SnapJobSpec};
use super::snapper::{Schedule, SnapHook, SnapperSpec};
use super::source::{SourceJob, SourceSpec};
use super::Job;
use crate::config::{self, Config, Connect, JobKind, Serve};
use crate::node::Endpoint;
use crate::plan::filter::FilesystemFilter;
use crate::plan::steps::{ReplicationPolicy, StepMode};
use crate::prune::{self, CandidateFilter, RuleSide};
use crate::snap::{self, CronSchedule};
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
    ReplicationPolicy {
        initial: conflict.initial_replication,
        mode: StepMode::for_protection(replication.protection_incremental),
        ..ReplicationPolicy::default()
    }
}

/// The snapshotting of a push, source or snap job: `None` for manual.
fn snapper_spec(
    job: &str,
    snapshotting: &config::Snapshotting,
    filter: &FilesystemFilter,
    list_roots: &[DatasetPath],
) -> Result<Option<SnapperSpec>, String> {
    let (prefix, schedule, timestamp, hooks) = match snapshotting {
        config::Snapshotting::Manual => return Ok(None),
        config::Snapshotting::Periodic { prefix, interval, timestamp, hooks } => {
            (prefix, Schedule::Periodic(*interval), timestamp, hooks)
        }
        config::Snapshotting::Cron { prefix, cron, timestamp, hooks } => {
            let cron = CronSchedule::new(cron)
                .map_err(|e| format!("job {job:?}: snapshotting.cron: {e}"))?;
            (prefix, Schedule::Cron(cron), timestamp, hooks)
        }
    };
    snap::check_formatting(prefix, timestamp)
        .map_err(|e| format!("job {job:?}: snapshotting: {e}"))?;
    let hooks = hooks
        .iter()
        .map(|config::Hook::Command(h)| {
            let filter = FilesystemFilter::new(h.filesystems.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(|e| {
                    format!("job {job:?}: snapshotting hook {}: filesystems: {e}", h.path)
                })?;
            Ok(SnapHook {
                path: h.path.clone(),
                timeout: h.timeout,
                err_is_fatal: h.err_is_fatal,
                filter,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Some(SnapperSpec {
        job: job.to_owned(),
        prefix: prefix.clone(),
        schedule,
        format: timestamp.format.clone(),
        hooks,
        filter: filter.clone(),
        list_roots: list_roots.to_vec(),
    }))
}

/// `send` flags change what a stream carries; none is implemented yet, so a job
/// that asks for one must not run as if it had it.
fn send_options(job: &str, send: &config::SendOptions) -> Result<(), String> {
    let asked: Vec<&str> = [
        ("encrypted", send.encrypted),
        ("raw", send.raw),
        ("send_properties", send.send_properties),
        ("backup_properties", send.backup_properties),
        ("large_blocks", send.large_blocks),
        ("compressed", send.compressed),
        ("embedded_data", send.embedded_data),
        ("saved", send.saved),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if asked.is_empty() {
        return Ok(());
    }
    Err(format!("job {job:?}: send options {} are {}", asked.join(", "), config::NOT_SUPPORTED))
}

/// Property overrides on receive are not implemented yet either.
fn recv_options(job: &str, recv: &config::RecvOptions) -> Result<(), String> {
    if recv.override_properties.is_empty() && recv.inherit_properties.is_empty() {
        return Ok(());
    }
    Err(format!("job {job:?}: recv.properties override/inherit is {}", config::NOT_SUPPORTED))
}

/// The compiled keep rules of a push or pull job. Only snapshots named with
/// the job's own snapshot prefix may be destroyed; a job that takes no
/// snapshots itself (manual snapshotting, pull) has no prefix, and its rules
/// decide over every snapshot, as in zrepl.
fn prune_spec(
    job: &str,
    pruning: &config::PruningSenderReceiver,
    snapshotting: Option<&config::Snapshotting>,
) -> Result<PruneSpec, String> {
    let compile = |rules: &[config::KeepRule], side| {
        prune::compile(rules, side).map_err(|e| format!("job {job:?}: pruning: {e}"))
    };
    let candidates = match snapshotting {
        Some(config::Snapshotting::Periodic { prefix, .. })
        | Some(config::Snapshotting::Cron { prefix, .. }) => {
            CandidateFilter::Prefix(prefix.clone())
        }
        Some(config::Snapshotting::Manual) | None => CandidateFilter::All,
    };
    Ok(PruneSpec {
        sender: compile(&pruning.keep_sender, RuleSide::Sender)?,
        receiver: compile(&pruning.keep_receiver, RuleSide::Receiver)?,
        candidates,
    })
}

/// Jobs that send the same filesystems (a push and a source, two pushes):
/// each prunes the sender by its own receiver's state, so one's rules can
/// destroy the other's incremental base. Cursor bookmarks (OpenZFS) cover most
/// of it, not all (a cycle cut between a receive and its cursor), and zfs-fuse
/// has none: such configs are allowed, with a warning.
fn overlap_warnings(config: &Config) -> Vec<String> {
    let senders: Vec<(&str, Vec<&str>)> = config
        .jobs
        .iter()
        .filter_map(|j| {
            let rules = match &j.kind {
                JobKind::Push(p) => &p.filesystems,
                JobKind::Source(s) => &s.filesystems,
                _ => return None,
            };
            let roots = rules.iter().filter(|(_, inc)| **inc).map(|(p, _)| p.trim_end_matches('<'));
            Some((j.name.as_str(), roots.collect()))
        })
        .collect();
    let nested = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
    };
    let mut out = Vec::new();
    for (i, (a, ra)) in senders.iter().enumerate() {
        for (b, rb) in &senders[i + 1..] {
            if let Some(fs) = ra.iter().find(|x| rb.iter().any(|y| nested(x, y))) {
                out.push(format!(
                    "jobs {a:?} and {b:?} both send filesystems at or around {fs}: each prunes the \
                     sender by its own receiver, and can destroy the snapshot the other needs for \
                     its next incremental; keep keep_sender loose on both (or give the \
                     filesystems to one job)"
                ));
            }
        }
    }
    out
}

/// One step at a time: more concurrency is accepted, and said to be unused.
fn concurrency_warning(job: &str, replication: &config::Replication) -> Option<String> {
    (replication.concurrency_steps > 1).then(|| {
        format!("job {job:?}: replication.concurrency.steps > 1 is not implemented yet: steps run one at a time")
    })
}

/// The filter of a push or source job, and the pools to list under, for
/// `zferry test filesystems`.
pub fn job_filter(
    config: &Config,
    job: &str,
) -> Result<(FilesystemFilter, Vec<DatasetPath>), String> {
    let j = config.job(job).ok_or_else(|| format!("no job named {job:?} in the config"))?;
    match &j.kind {
        JobKind::Push(push) => filter(job, &push.filesystems),
        JobKind::Source(source) => filter(job, &source.filesystems),
        JobKind::Snap(snap) => filter(job, &snap.filesystems),
        other => Err(format!(
            "job {job:?} is a {}: it has no filesystems filter of its own (the sending side's filter decides)",
            other.type_name()
        )),
    }
}

/// Jobs ready to run, and warnings for the person starting them.
pub type Built = (Vec<Box<dyn Job>>, Vec<String>);

/// The jobs of `config`, and warnings for the person starting them.
pub fn build_jobs(config: &Config) -> Result<Built, String> {
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut warnings = Vec::new();
    for job in &config.jobs {
        let name = job.name.clone();
        match &job.kind {
            JobKind::Push(push) => {
                send_options(&name, &push.send)?;
                let prune = prune_spec(&name, &push.pruning, Some(&push.snapshotting))?;
                warnings.extend(concurrency_warning(&name, &push.replication));
                let (connect, client_identity) = connect_endpoint(&push.connect);
                let (filter, list_roots) = filter(&name, &push.filesystems)?;
                let snapshotting = snapper_spec(&name, &push.snapshotting, &filter, &list_roots)?;
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
                    prune: Some(prune),
                    snapshotting,
                })));
            }
            JobKind::Pull(pull) => {
                recv_options(&name, &pull.recv)?;
                let prune = prune_spec(&name, &pull.pruning, None)?;
                warnings.extend(concurrency_warning(&name, &pull.replication));
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
                    prune: Some(prune),
                    snapshotting: None,
                })));
            }
            JobKind::Sink(sink) => {
                recv_options(&name, &sink.recv)?;
                let (serve, clients) = serve_endpoint(&sink.serve);
                jobs.push(Box::new(SinkJob::new(SinkSpec {
                    name,
                    serve,
                    clients,
                    root_fs: sink.root_fs.clone(),
                })));
            }
            JobKind::Source(source) => {
                send_options(&name, &source.send)?;
                let (serve, clients) = serve_endpoint(&source.serve);
                let (filter, list_roots) = filter(&name, &source.filesystems)?;
                let snapshotting = snapper_spec(&name, &source.snapshotting, &filter, &list_roots)?;
                jobs.push(Box::new(SourceJob::new(SourceSpec {
                    name,
                    serve,
                    clients,
                    filter,
                    list_roots,
                    snapshotting,
                })));
            }
            JobKind::Snap(snap) => {
                let (filter, list_roots) = filter(&name, &snap.filesystems)?;
                let snapshotting = snapper_spec(&name, &snap.snapshotting, &filter, &list_roots)?;
                let keep = prune::compile(&snap.pruning, RuleSide::SnapJob)
                    .map_err(|e| format!("job {name:?}: pruning: {e}"))?;
                let candidates = match &snapshotting {
                    Some(s) => CandidateFilter::Prefix(s.prefix.clone()),
                    None => CandidateFilter::All,
                };
                jobs.push(Box::new(SnapJob::new(SnapJobSpec {
                    name,
                    filter,
                    list_roots,
                    snapshotting,
                    keep,
                    candidates,
                })));
            }
        }
    }
    warnings.extend(overlap_warnings(config));
    Ok((jobs, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<Built, String> {
        build_jobs(&Config::from_yaml(yaml).map_err(|e| e.to_string())?)
    }

    const PUSH: &str = "jobs:\n  - name: p\n    type: push\n    connect:\n      type: tcp\n      address: \"h:1\"\n    filesystems:\n      \"tank/a<\": true\n    snapshotting:\n      type: manual\n    pruning:\n      keep_sender: []\n      keep_receiver: []\n";

    #[test]
    fn two_jobs_sending_the_same_filesystems_are_warned_about() {
        let source = "  - name: s\n    type: source\n    serve:\n      type: tcp\n      listen: \":1\"\n      clients: {}\n    filesystems:\n      \"tank/a/b\": true\n    snapshotting:\n      type: manual\n";
        let (_, warnings) = build(&format!("{PUSH}{source}")).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("jobs \"p\" and \"s\" both send")),
            "{warnings:?}"
        );
        let elsewhere = source.replace("tank/a/b", "tank/c");
        let (_, warnings) = build(&format!("{PUSH}{elsewhere}")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn what_runs_and_what_is_refused() {
        let (jobs, warnings) = build(PUSH).unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(warnings.is_empty(), "{warnings:?}");

        let bad_regex = PUSH.replace(
            "keep_sender: []",
            "keep_sender:\n        - type: regex\n          regex: \"(unclosed\"",
        );
        let err = build(&bad_regex).err().unwrap();
        assert!(err.contains("job \"p\": pruning: keep_sender[0]"), "{err}");

        let periodic = PUSH
            .replace("type: manual", "type: periodic\n      prefix: zferry_\n      interval: 10m");
        let (jobs, _) = build(&periodic).unwrap();
        assert_eq!(jobs[0].kind(), "push");

        let local_time =
            periodic.replace("interval: 10m", "interval: 10m\n      timestamp_location: Local");
        let err = build(&local_time).err().unwrap();
        assert!(err.contains("Local") && err.contains("not supported yet"), "{err}");

        let never = PUSH.replace(
            "type: manual",
            "type: cron\n      prefix: zferry_\n      cron: \"0 0 30 2 *\"",
        );
        let err = build(&never).err().unwrap();
        assert!(err.contains("job \"p\": snapshotting.cron"), "{err}");

        let raw =
            PUSH.replace("    snapshotting:", "    send:\n      raw: true\n    snapshotting:");
        let err = build(&raw).err().unwrap();
        assert!(err.contains("raw") && err.contains(config::NOT_SUPPORTED), "{err}");

        let everything = PUSH.replace("\"tank/a<\": true", "\"<\": true");
        let err = build(&everything).err().unwrap();
        assert!(err.contains("every pool"), "{err}");
    }
}
