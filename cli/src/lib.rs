//! What the `zferry` (mio) and `zferry-smol` binaries share, so that they parse the
//! same command line, log the same way and exit with the same codes. A driver
//! contributes only the loop that executes the node's actions ([`Driver`]).

mod args;
mod clock;
pub mod net;
pub mod process;
mod report;
mod signals;

pub use args::{Cli, Command, ProbeCommand};
pub use clock::Clock;
pub use report::Report;
pub use signals::shutdown_signals;

use std::process::ExitCode;

use clap::Parser;
use zferry_core::node::{App, Endpoint, Node};
use zferry_core::probe::{Probe, ProbeMode};
use zferry_core::rpc::SessionConfig;

/// Exit code for a failure of the run itself (not of the work it did).
pub const EXIT_SETUP_FAILED: u8 = 2;

/// An executor of a node's actions over real sockets.
pub trait Driver {
    /// Runs the node until it asks to exit; returns its exit code.
    fn run<A: App + 'static>(node: Node<A>, clock: Clock, report: Report) -> std::io::Result<i32>;
}

/// The whole program, for one driver.
pub fn main<D: Driver>() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let result = match cli.command {
        Command::Probe(ProbeCommand::Serve { listen, once, command }) => {
            let command = (!command.is_empty()).then_some(command);
            let mode = ProbeMode::Serve { endpoint: Endpoint::Tcp(listen), once, command };
            run::<D>(Probe::new(mode), verbose)
        }
        Command::Probe(ProbeCommand::Send { connect, bytes, command }) => {
            let command = (!command.is_empty()).then_some(command);
            let mode = ProbeMode::Send { endpoint: Endpoint::Tcp(connect), bytes, command };
            run::<D>(Probe::new(mode), verbose)
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            Report::new(verbose).error(&format!("{e}"));
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn run<D: Driver>(app: impl App + 'static, verbose: bool) -> std::io::Result<i32> {
    let clock = Clock::new();
    let node = Node::new(app, SessionConfig::default(), clock.now());
    D::run(node, clock, Report::new(verbose))
}
