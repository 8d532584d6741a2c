//! The script's steps, in the order they run.

mod exchange;
mod faults;
mod listen;
mod procs;

use zferry_core::node::ProcessSpec;

use crate::script::Step;
use exchange::{Exchange, Kind, Via};

pub use exchange::PIECE;

pub fn all() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(listen::Listen::default()),
        Box::new(listen::ListenInUse::default()),
        Box::new(Exchange::new("tcp rpc", Via::Tcp, Kind::Echo)),
        Box::new(Exchange::new("unix rpc", Via::Unix, Kind::Echo)),
        Box::new(Exchange::new("app stream", Via::Tcp, Kind::AppStream)),
        Box::new(Exchange::new("piped stream", Via::Tcp, Kind::Pipe)),
        Box::new(Exchange::new("early answer", Via::Unix, Kind::EarlyAnswer)),
        Box::new(Exchange::new("aborted stream", Via::Tcp, Kind::Abort)),
        Box::new(Exchange::new("cancelled stream", Via::Tcp, Kind::Cancel)),
        Box::new(faults::Garbage::default()),
        Box::new(faults::ConnectFailures::default()),
        Box::new(procs::Processes::default()),
        Box::new(procs::Kill::default()),
        Box::new(procs::Timers::default()),
        Box::new(procs::Shutdown::default()),
    ]
}

pub fn command(argv: &[&str]) -> ProcessSpec {
    ProcessSpec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
        // Set by `AppCtx::spawn` from where stdin and stdout go.
        stdin: false,
        stdout: false,
    }
}

pub fn sh(script: &str) -> ProcessSpec {
    command(&["sh", "-c", script])
}
