//! The command line.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "zferry", version, about = "ZFS replication: snapshots, send/receive, pruning")]
pub struct Cli {
    /// Log debug messages too.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a link end to end with zferry's own protocol, without ZFS.
    #[command(subcommand)]
    Probe(ProbeCommand),
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
