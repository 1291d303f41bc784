//! Child processes (broker, proxy) that never outlive their test.
//!
//! A [`ManagedChild`] writes the child's stdout and stderr to a log file in the test's temp
//! dir, is killed and reaped when dropped, and, when it is dropped because the test is
//! panicking, prints the tail of that log so the failure output shows what the broker or
//! the proxy said.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// How much of a log is printed when a test fails.
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// A spawned child process that is killed on drop.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ManagedChild {
    /// Spawns `command` with stdin closed and stdout+stderr appended to `log_path`.
    /// `name` labels the process in messages ("tansu", "portcullis").
    pub fn spawn(name: &str, command: &mut Command, log_path: &Path) -> Self {
        let log = File::create(log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log2 = log.try_clone().expect("clone log file handle");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the child's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The child's whole output so far (lossily decoded).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last few KiB of the child's output.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        if log.len() <= LOG_TAIL_BYTES {
            return log;
        }
        let mut start = log.len() - LOG_TAIL_BYTES;
        while !log.is_char_boundary(start) {
            start += 1;
        }
        format!("[...]{}", &log[start..])
    }

    /// `Some(status)` if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with the child's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited unexpectedly ({status}); its output:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// Sends SIGTERM (a clean shutdown) and waits for the child to exit; panics with its
    /// output if it is still running after `within`.
    pub fn terminate(&mut self, within: std::time::Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop on SIGTERM:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills the child and waits for it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} (pid {}) output, {} -----\n{}\n----- end of {} output -----",
                self.name,
                self.child.id(),
                self.log_path.display(),
                self.log_tail(),
                self.name
            );
        }
    }
}

/// Output of a short-lived command run by [`run_with_timeout`].
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs `command` to completion with stdin closed, killing it (and panicking) if it takes
/// longer than `timeout`. Output goes through files in `scratch` so a chatty child can never
/// block on a full pipe.
pub fn run_with_timeout(
    command: &mut Command,
    timeout: std::time::Duration,
    scratch: &Path,
) -> Finished {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("cmd-{n}.stdout"));
    let err_path = scratch.join(format!("cmd-{n}.stderr"));
    let out = File::create(&out_path).expect("create stdout file");
    let err = File::create(&err_path).expect("create stderr file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                read_lossy(&out_path),
                read_lossy(&err_path)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A `kB` field of `/proc/<pid>/status` (`"VmRSS:"`, `"VmHWM:"`, ...), in bytes; 0 if it
/// cannot be read.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}
