//! Running the zferry binaries as real child processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// One of the two binaries; every end-to-end scenario runs against each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Mio,
    Smol,
}

impl Binary {
    pub fn name(self) -> &'static str {
        match self {
            Binary::Mio => "zferry",
            Binary::Smol => "zferry-smol",
        }
    }

    /// The built binary: `$ZFERRY_BIN_DIR`, else the target directory this test
    /// runs from. Cargo does not build other packages' binaries for a test, hence
    /// the README's `cargo build --workspace --bins` before the tests.
    pub fn path(self) -> PathBuf {
        let dir = match std::env::var_os("ZFERRY_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let exe = std::env::current_exe().expect("test executable path");
                exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
            }
        };
        let path = dir.join(self.name());
        assert!(
            path.is_file(),
            "{} not found: run `cargo build --workspace --bins` first, or set ZFERRY_BIN_DIR",
            path.display()
        );
        path
    }

    pub fn command(self) -> Command {
        Command::new(self.path())
    }
}

/// Both binaries, for parameterised tests.
pub fn binaries() -> [Binary; 2] {
    [Binary::Mio, Binary::Smol]
}

/// A running child whose stderr lines are collected as they come.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    label: String,
}

impl Child {
    pub fn spawn(label: &str, mut cmd: Command) -> Child {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut inner = cmd.spawn().unwrap_or_else(|e| panic!("{label}: cannot spawn: {e}"));
        let stderr = inner.stderr.take().expect("piped stderr");
        let (tx, rx) = channel();
        let tag = label.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child { inner, lines: rx, seen: Vec::new(), label: label.to_owned() }
    }

    /// Waits for a log line containing `needle`; returns that line.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no line with {needle:?} within {timeout:?}; saw {:#?}",
                        self.label, self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before logging {needle:?}; saw {:#?}", self.label, self.seen)
                }
            }
        }
    }

    /// Waits until `count` log lines (seen before or now) contain `needle`.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.seen.iter().filter(|l| l.contains(needle)).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{}: fewer than {count} lines with {needle:?} within {timeout:?}; saw {:#?}",
                    self.label, self.seen
                ),
            }
        }
    }

    /// Waits for the exit, collecting the remaining log lines.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.inner.try_wait().expect("wait") {
                self.collect();
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.inner.kill();
                panic!("{}: still running after {timeout:?}; saw {:#?}", self.label, self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn collect(&mut self) {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
    }

    /// Every log line seen so far.
    pub fn log(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// The peak resident memory of the process so far (Linux's VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.inner.id()))
            .unwrap_or_else(|e| panic!("{}: no /proc status: {e}", self.label));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no VmHWM in {status}", self.label))
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([format!("-{name}"), self.inner.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{}: could not send SIG{name}", self.label);
    }

    pub fn kill(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
