//! Starting the node's child processes: the part both drivers do alike.

use std::process::{Child, Command, Stdio};

use zferry_core::limits::PIPE_CAPACITY;
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
    let child = cmd.spawn()?;
    if let Some(stdin) = &child.stdin {
        size_pipe(stdin);
    }
    if let Some(stdout) = &child.stdout {
        size_pipe(stdout);
    }
    Ok(child)
}

/// Asks for [`PIPE_CAPACITY`] on a pipe. Only a hint: where the OS refuses (another
/// system, the per-user pipe quota spent) the default capacity works, just slower.
pub fn size_pipe(pipe: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_CAPACITY);
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
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
