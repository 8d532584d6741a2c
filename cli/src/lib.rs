//! What the `zferry` (mio) and `zferry-smol` binaries share, so that they parse the
//! same command line, read the same configuration, log the same way and exit with
//! the same codes. A driver contributes only the loop that executes the node's
//! actions ([`Driver`]).

mod args;
mod clock;
pub mod net;
pub mod process;
mod report;
mod signals;
pub mod splice;

pub use args::{Cli, Command, ProbeCommand, SignalCommand, TestCommand};
pub use clock::Clock;
pub use report::Report;
pub use signals::{child_exits, shutdown_signals};

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use zferry_core::config::Config;
use zferry_core::control::{ControlClient, ControlRequest};
use zferry_core::job::{build_jobs, job_filter, Daemon, DaemonMode, TestFilesystems};
use zferry_core::node::{App, Endpoint, Level, Node};
use zferry_core::probe::{Probe, ProbeMode};
use zferry_core::rpc::SessionConfig;

/// Exit code for a failure of the run itself (bad configuration, no socket),
/// as opposed to work that failed (1).
pub const EXIT_SETUP_FAILED: u8 = 2;

/// An executor of a node's actions over real sockets and processes.
pub trait Driver {
    /// Runs the node until it asks to exit; returns its exit code.
    fn run<A: App + 'static>(node: Node<A>, clock: Clock, report: Report) -> std::io::Result<i32>;
}

/// Reads and checks a configuration file, with errors that name the file.
fn load_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Config::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The whole program, for one driver.
pub fn main<D: Driver>() -> ExitCode {
    let cli = Cli::parse();
    let mut report = Report::new(cli.verbose);
    match run_command::<D>(cli.command, &mut report, cli.verbose) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            report.error(&e);
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn run_command<D: Driver>(
    command: Command,
    report: &mut Report,
    verbose: bool,
) -> Result<i32, String> {
    match command {
        Command::Daemon(c) => {
            let config = load_config(&c.config)?;
            let mode =
                DaemonMode::Daemon { control_socket: config.global.control.sockpath.clone() };
            run_jobs::<D>(&config, mode, report, verbose)
        }
        Command::Run { config: c, job } => {
            let config = load_config(&c.config)?;
            run_jobs::<D>(&config, DaemonMode::RunOnce { job }, report, verbose)
        }
        Command::Prune { config: c, dry_run, job } => {
            let config = load_config(&c.config)?;
            run_jobs::<D>(&config, DaemonMode::Prune { job, dry_run }, report, verbose)
        }
        Command::Status { config: c, json } => {
            let config = load_config(&c.config)?;
            let client =
                ControlClient::new(config.global.control.sockpath, ControlRequest::Status { json });
            run::<D>(client, verbose)
        }
        Command::Signal(SignalCommand::Wakeup { config: c, job }) => {
            let config = load_config(&c.config)?;
            let client =
                ControlClient::new(config.global.control.sockpath, ControlRequest::Wakeup(job));
            run::<D>(client, verbose)
        }
        Command::Configcheck(c) => {
            let config = load_config(&c.config)?;
            let (jobs, warnings) = build_jobs(&config)?;
            for w in &warnings {
                report.log(Level::Warn, w);
            }
            println!("{}: ok, {} job(s)", c.config.display(), jobs.len());
            Ok(0)
        }
        Command::Test(TestCommand::Filesystems { config: c, job }) => {
            let config = load_config(&c.config)?;
            let (filter, roots) = job_filter(&config, &job)?;
            run::<D>(TestFilesystems::new(filter, roots), verbose)
        }
        Command::Probe(ProbeCommand::Serve { listen, once, command }) => {
            let command = (!command.is_empty()).then_some(command);
            run::<D>(
                Probe::new(ProbeMode::Serve { endpoint: Endpoint::Tcp(listen), once, command }),
                verbose,
            )
        }
        Command::Probe(ProbeCommand::Send { connect, bytes, command }) => {
            let command = (!command.is_empty()).then_some(command);
            run::<D>(
                Probe::new(ProbeMode::Send { endpoint: Endpoint::Tcp(connect), bytes, command }),
                verbose,
            )
        }
    }
}

fn run_jobs<D: Driver>(
    config: &Config,
    mode: DaemonMode,
    report: &mut Report,
    verbose: bool,
) -> Result<i32, String> {
    let (jobs, warnings) = build_jobs(config)?;
    for w in &warnings {
        report.log(Level::Warn, w);
    }
    run::<D>(Daemon::new(mode, jobs), verbose)
}

fn run<D: Driver>(app: impl App + 'static, verbose: bool) -> Result<i32, String> {
    let clock = Clock::new();
    let node = Node::new(app, SessionConfig::default(), clock.now());
    D::run(node, clock, Report::new(verbose)).map_err(|e| e.to_string())
}
