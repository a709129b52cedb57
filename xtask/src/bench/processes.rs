//! Running the bench's children: a guard that ends them, their output read on threads (whole,
//! or line by line with the moment each line came), and what their output and /proc say.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Read},
    process::{Child, ChildStderr, ChildStdout, Command, ExitStatus},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::quiet::{check_interrupted, ours_reaped, ours_started};

/// A child killed (SIGKILL) and reaped if it is still running when this is dropped.
pub(super) struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
        ours_reaped(self.pid());
    }
}

impl Guarded {
    pub(super) fn spawn(cmd: &mut Command) -> Result<Guarded> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {program}"))?;
        ours_started(child.id() as i32);
        Ok(Guarded(child))
    }

    /// The child's stdout, which must have been piped.
    pub(super) fn stdout(&mut self) -> ChildStdout {
        self.0.stdout.take().expect("stdout is piped")
    }

    /// The child's stderr, which must have been piped.
    pub(super) fn stderr(&mut self) -> ChildStderr {
        self.0.stderr.take().expect("stderr is piped")
    }

    pub(super) fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    pub(super) fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits up to `timeout` for the child to exit; after that it is killed and this fails.
    pub(super) fn wait(&mut self, timeout: Duration, what: &str) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                bail!("{what} did not finish within {timeout:?}; killed it");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops a tracer with SIGINT (both pmap-trace and bpftrace detach and exit on it).
    pub(super) fn stop(mut self, what: &str) -> Result<()> {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(60), what)?;
        Ok(())
    }
}

/// Reads a pipe to its end on a thread.
pub(super) fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A child's output lines, each with the moment it was read.
pub(super) type Lines = Receiver<(Instant, String)>;

/// Forwards a pipe's lines, with the time each was read, to a channel.
pub(super) fn line_channel(pipe: impl Read + Send + 'static) -> Lines {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if tx.send((Instant::now(), line.clone())).is_err() {
                break;
            }
            line.clear();
        }
    });
    rx
}

/// The first line from `rx` that `wanted` accepts, within `timeout`.
pub(super) fn wait_for_line(
    rx: &Lines,
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    loop {
        check_interrupted()?;
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok((at, line)) if wanted(&line) => return Ok((at, line)),
            Ok((_, line)) => seen.push_str(&line),
            Err(RecvTimeoutError::Timeout) if !left.is_zero() => {}
            Err(RecvTimeoutError::Timeout) => bail!("timed out waiting for {what}; saw:\n{seen}"),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("the output ended before {what}; saw:\n{seen}")
            }
        }
    }
}

/// Waits until pmap-trace says on `stderr` that it attached; returns when that line came.
pub(super) fn wait_until_attached(stderr: &Lines) -> Result<Instant> {
    let (attached, _) = wait_for_line(
        stderr,
        Duration::from_secs(120),
        "pmap-trace to attach",
        |l| l.contains("attached to"),
    )?;
    Ok(attached)
}

/// The `key=value` fields of a workload's `RESULT` line.
pub(super) fn parse_result(stderr: &str) -> Option<BTreeMap<String, f64>> {
    let line = stderr
        .lines()
        .rev()
        .find(|line| line.starts_with("RESULT "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|field| {
                let (key, value) = field.split_once('=')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// stderr without bpftrace's harmless RLIMIT_MEMLOCK complaint (kernels account BPF memory to
/// the cgroup now), for error messages.
pub(super) fn trimmed(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| !line.contains("RLIMIT_MEMLOCK"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The middle value (the mean of the middle two for an even count); `None` for no values.
pub(super) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// A `kB` field of `/proc/PID/status` (VmRSS, VmHWM, ...).
pub(super) fn status_kb(pid: i32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines() {
        let stderr = "pmap-trace: attached to 1 (w)\nRESULT iters=10 ns=1000 ns_per_iter=100.00\n";
        let result = parse_result(stderr).unwrap();
        assert_eq!(result["iters"], 10.0);
        assert_eq!(result["ns_per_iter"], 100.0);
        assert!(parse_result("no result\n").is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
