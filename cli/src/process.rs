//! Starting the node's child processes: the part both drivers do alike.

use std::process::{Child, Command, Stdio};

use zferry_core::node::{ExitStatus, ProcessSpec};

/// Starts `spec` with stdin and stdout piped as it asks and stderr always piped.
/// The caller makes the pipes non-blocking the way its event loop needs.
pub fn spawn(spec: &ProcessSpec) -> std::io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if spec.stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped());
    cmd.spawn()
}

/// The core's view of how a process ended.
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}
