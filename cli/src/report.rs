//! Log output: one line per event on stderr, with the time and level.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use zferry_core::node::{Event, Level};

#[derive(Debug)]
pub struct Report {
    verbose: bool,
    exit: Option<i32>,
}

impl Report {
    pub fn new(verbose: bool) -> Report {
        Report { verbose, exit: None }
    }

    /// Handles an event from the node; remembers an exit request.
    pub fn event(&mut self, event: Event) {
        match event {
            Event::Log { level, message } => self.log(level, &message),
            Event::Print(text) => {
                let _ = writeln!(std::io::stdout().lock(), "{text}");
            }
            Event::Exit(code) => self.exit = Some(code),
        }
    }

    /// The exit code the node asked for, if it did.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit
    }

    pub fn error(&mut self, message: &str) {
        self.log(Level::Error, message);
    }

    pub fn log(&mut self, level: Level, message: &str) {
        if level == Level::Debug && !self.verbose {
            return;
        }
        let name = match level {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let (secs, millis) = (now.as_secs(), now.subsec_millis());
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        // A closed stderr must not take the daemon down; nothing else to do.
        let _ =
            writeln!(std::io::stderr().lock(), "{h:02}:{m:02}:{s:02}.{millis:03} {name} {message}");
    }
}
