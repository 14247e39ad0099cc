//! Running a helper tool (helm, kubectl) to its end with a deadline and capped output, so
//! a stuck or runaway tool fed untrusted input never hangs the command.

use std::io::Read;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What is kept of a tool's stderr for an error message.
pub(crate) const MAX_STDERR: usize = 16 * 1024;

pub(crate) struct RunOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The start of stderr, lossily decoded, at most [`MAX_STDERR`] bytes.
    pub stderr: String,
}

impl RunOutput {
    pub(crate) fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

pub(crate) enum RunError {
    Spawn(std::io::Error),
    Timeout,
    TooLarge,
}

/// Runs `cmd` (with piped stdout and stderr) to its end, killing it after `timeout` or once
/// stdout passes `max_stdout` bytes.
pub(crate) fn run(
    mut cmd: Command,
    timeout: Duration,
    max_stdout: u64,
) -> Result<RunOutput, RunError> {
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let too_large = Arc::new(AtomicBool::new(false));
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let flag = too_large.clone();
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let read = (&mut stdout_pipe)
            .take(max_stdout + 1)
            .read_to_end(&mut buf);
        if buf.len() as u64 > max_stdout {
            flag.store(true, Ordering::SeqCst);
        }
        read.map(|_| buf)
    });
    let stderr = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr_pipe)
            .take(MAX_STDERR as u64)
            .read_to_end(&mut kept);
        // Drained to the end, so a chatty tool never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr_pipe, &mut std::io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(RunError::Spawn(e)),
        }
        if too_large.load(Ordering::SeqCst) {
            break Err(RunError::TooLarge);
        }
        if Instant::now() >= deadline {
            break Err(RunError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let status = status?;
    if too_large.load(Ordering::SeqCst) {
        return Err(RunError::TooLarge);
    }
    let stdout = stdout.map_err(RunError::Spawn)?;
    Ok(RunOutput {
        status,
        stdout,
        stderr,
    })
}
