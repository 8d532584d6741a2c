//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Where the configuration is read from unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/zferry/zferry.yml";

#[derive(Debug, Parser)]
#[command(name = "zferry", version, about = "ZFS replication: snapshots, send/receive, pruning")]
pub struct Cli {
    /// Log debug messages too.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file (zrepl's YAML schema).
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every job of the configuration until SIGTERM or SIGINT.
    Daemon(ConfigArg),
    /// Run one replication cycle of an active (push or pull) job, then exit:
    /// 0 if every filesystem replicated, 1 otherwise.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The job's name.
        job: String,
    },
    /// Prune an active job's snapshots on both sides by its keep rules, without
    /// replicating; exit 0 if every filesystem was pruned.
    Prune {
        #[command(flatten)]
        config: ConfigArg,
        /// Destroy nothing: list, per filesystem, what each side would destroy
        /// and which rule keeps the rest.
        #[arg(long)]
        dry_run: bool,
        /// The job's name.
        job: String,
    },
    /// Show what the running daemon's jobs are doing.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Send a signal to a job of the running daemon.
    #[command(subcommand)]
    Signal(SignalCommand),
    /// Check the configuration and exit: 0 if it is valid.
    Configcheck(ConfigArg),
    /// Try parts of a configuration against this host.
    #[command(subcommand)]
    Test(TestCommand),
    /// Check a link end to end with zferry's own protocol, without ZFS.
    #[command(subcommand)]
    Probe(ProbeCommand),
}

#[derive(Debug, Subcommand)]
pub enum TestCommand {
    /// Which local filesystems a push or source job's filter selects.
    Filesystems {
        #[command(flatten)]
        config: ConfigArg,
        job: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SignalCommand {
    /// Start a replication cycle of an active job now.
    Wakeup {
        #[command(flatten)]
        config: ConfigArg,
        job: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Answer probes on a TCP address.
    Serve {
        /// host:port to listen on (port 0 picks a free one; the log says which).
        #[arg(long)]
        listen: String,
        /// Exit after answering one probe.
        #[arg(long)]
        once: bool,
        /// Pipe each probe's stream into this command instead of checking it.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Stream bytes to a probe server and verify what it received.
    Send {
        /// host:port of the probe server.
        #[arg(long)]
        connect: String,
        /// How many bytes to stream.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        bytes: u64,
        /// Stream this command's output instead of a test pattern.
        #[arg(last = true)]
        command: Vec<String>,
    },
}
