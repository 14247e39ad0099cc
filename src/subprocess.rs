//! Running a helper tool (helm, kubectl) to its end with a deadline and capped output, so
//! a stuck or runaway tool fed untrusted input never hangs the command.
//!
//! Each tool runs in its own process group, and the whole group is killed when the tool
//! ends, times out or the command is interrupted: a process it left behind (a helm plugin's
//! child, say) would otherwise keep our pipes open and the command waiting.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Process groups of the tools running now, killed by [`kill_running`] on SIGINT/SIGTERM
/// (in their own groups, they do not get the terminal's signal).
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kills every tool still running and what it started: the command is being interrupted.
pub(crate) fn kill_running() {
    let groups = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in groups.iter() {
        kill_group(pgid);
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg only sends a signal; pgid is a group this process created and whose
    // leader it has not reaped yet, so the id cannot have been reused.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Whether `child` has ended, leaving it unreaped (a zombie) so that its pid, which is also
/// its group's id, stays reserved until the group has been killed.
fn has_ended(child: &Child) -> std::io::Result<bool> {
    // SAFETY: waitid writes only into `info`, which lives for the call.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: with WNOHANG, si_pid is 0 while the child runs and its pid once it has ended.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Runs `cmd` (with piped stdout and stderr) to its end, killing it after `timeout` or once
/// stdout passes `max_stdout` bytes.
pub(crate) fn run(
    mut cmd: Command,
    timeout: Duration,
    max_stdout: u64,
) -> Result<RunOutput, RunError> {
    cmd.process_group(0);
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pgid = child.id() as i32;
    running.push(pgid);
    drop(running);
    let collected = collect(&mut child, timeout, max_stdout, pgid);
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&g| g != pgid);
    // Reaped only now, after `collect` killed the group and the group left `RUNNING`: the
    // leader's pid, which names the group, stays reserved until then.
    let status = child.wait().map_err(RunError::Spawn);
    let (stdout, stderr) = collected?;
    Ok(RunOutput {
        status: status?,
        stdout,
        stderr,
    })
}

/// Waits for the tool to end (or kills it), then for its stdout and the start of its stderr.
fn collect(
    child: &mut Child,
    timeout: Duration,
    max_stdout: u64,
    pgid: i32,
) -> Result<(Vec<u8>, String), RunError> {
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
    let ended = loop {
        match has_ended(child) {
            Ok(true) => break Ok(()),
            Ok(false) => {}
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
    // Whatever it left behind dies with its group, so the pipes close and the readers end.
    kill_group(pgid);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    ended?;
    if too_large.load(Ordering::SeqCst) {
        return Err(RunError::TooLarge);
    }
    Ok((stdout.map_err(RunError::Spawn)?, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Whether `pid` still runs 5 s after being killed (SIGKILL takes effect as the process
    /// is next scheduled; its pipes close before it is gone from `/proc`).
    fn alive(pid: &str) -> bool {
        let gone = || {
            // Reparented to init, a killed process is reaped; a zombie shows as `Z`.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
        };
        let until = Instant::now() + Duration::from_secs(5);
        while !gone() {
            if Instant::now() >= until {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// A tool that exits leaving a child holding its stdout (as a helm plugin might) must
    /// not keep us waiting for that child: the whole group is killed when the tool ends.
    #[test]
    fn a_process_left_behind_is_killed_and_not_waited_for() {
        let started = Instant::now();
        let out = run(sh("sleep 120 & echo $!"), Duration::from_secs(60), 1 << 20)
            .ok()
            .expect("runs");
        assert!(out.status.success());
        let pid = out.stdout_lossy().trim().to_string();
        assert!(!pid.is_empty());
        assert!(!alive(&pid), "the left-behind sleep {pid} still runs");
        // Not a speed goal: without the group kill this waits for the 120 s sleep.
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn a_timeout_kills_the_tool_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 120 & echo $! > {}; wait", pidfile.display());
        let r = run(sh(&script), Duration::from_millis(500), 1 << 20);
        assert!(matches!(r, Err(RunError::Timeout)));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(!alive(pid.trim()), "the tool's child {pid} still runs");
        assert!(RUNNING.lock().unwrap().is_empty());
    }

    #[test]
    fn output_and_status_of_a_normal_tool_are_kept() {
        let out = run(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(60),
            1 << 20,
        )
        .ok()
        .expect("runs");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn output_past_the_cap_is_refused() {
        let r = run(sh("yes | head -c 100000"), Duration::from_secs(60), 1000);
        assert!(matches!(r, Err(RunError::TooLarge)));
    }
}
