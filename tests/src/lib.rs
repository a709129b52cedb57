//! Helpers shared by the integration tests: running the workload, waiting for checkpoints, and
//! comparing dumps with the real `pmap`.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

/// Start and end markers the workload brackets its scripted calls with: `munmap` of these
/// addresses with length 0 fails with EINVAL and changes nothing, so they are easy to find.
pub const START_MARKER: u64 = 0xdead_0000;
pub const END_MARKER: u64 = 0xbeef_0000;

/// Fails the test when not root, unless the caller explicitly asked to skip.
pub fn require_root() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("PMAP_TRACE_SKIP_PRIVILEGED").is_some() {
        eprintln!("skipping: not root and PMAP_TRACE_SKIP_PRIVILEGED is set");
        return false;
    }
    panic!("this test loads eBPF and must run as root (or set PMAP_TRACE_SKIP_PRIVILEGED=1)");
}

/// A running `pmap-workload`, driven through its stdin/stdout.
pub struct Workload {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    /// Starts `pmap-workload MODE ARGS...`; it waits for [`Workload::go`] before acting.
    /// `exe` is `env!("CARGO_BIN_EXE_pmap-workload")`, which only test targets can name.
    pub fn start(exe: &str, mode: &str, args: &[&str]) -> Workload {
        let mut child = Command::new(exe)
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pmap-workload");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Workload {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Reads one line the workload prints.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Reads the workload's report lines up to (not including) the line `checkpoint`, which it
    /// prints right before stopping itself with SIGSTOP.
    pub fn read_until_checkpoint(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "workload ended before its checkpoint; lines so far: {lines:#?}"
            );
            let line = line.trim_end().to_string();
            if line == "checkpoint" {
                return lines;
            }
            lines.push(line);
        }
    }

    /// Whether the workload is in the stopped state (`T` in /proc/PID/stat).
    pub fn is_stopped(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].starts_with('T')
    }

    /// Waits until the workload has stopped itself at its checkpoint.
    pub fn wait_stopped(&self) {
        self.wait_stopped_within(Duration::from_secs(10));
    }

    pub fn wait_stopped_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.is_stopped() {
            assert!(Instant::now() < deadline, "workload did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    pub fn finish(mut self) -> i32 {
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

/// The output of the real `pmap` with `args` for `pid`.
pub fn real_pmap(args: &[&str], pid: i32) -> String {
    let out = Command::new("pmap")
        .args(args)
        .arg(pid.to_string())
        .output()
        .expect("run pmap");
    assert!(
        out.status.success(),
        "pmap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pmap output is UTF-8")
}

/// Panics with a line-by-line difference when `got` differs from `expected`.
pub fn assert_same_text(what: &str, expected: &str, got: &str) {
    if expected == got {
        return;
    }
    let mut report = format!("{what}: output differs from the reference (- reference, + ours)\n");
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    for i in 0..e.len().max(g.len()) {
        match (e.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => report.push_str(&format!("  {a}\n")),
            (a, b) => {
                if let Some(a) = a {
                    report.push_str(&format!("- {a}\n"));
                }
                if let Some(b) = b {
                    report.push_str(&format!("+ {b}\n"));
                }
            }
        }
    }
    panic!("{report}");
}

/// The `pmap-trace` binary next to the test executables (`cargo xtask test` builds it first).
pub fn pmap_trace_exe() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join("pmap-trace");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p pmap-user` (cargo xtask test does)",
        path.display()
    );
    path
}

/// A running `pmap-trace` with its output and diagnostics piped to the test.
pub struct Tracer {
    pub child: Child,
    /// The `pmap-trace: attached to …` line it printed.
    pub attached: String,
    pub stdout: BufReader<ChildStdout>,
    pub stderr: BufReader<std::process::ChildStderr>,
}

impl Tracer {
    /// Starts `pmap-trace ARGS...` and waits for its `attached` line on stderr.
    pub fn attach(args: &[&str]) -> Tracer {
        let mut child = Command::new(pmap_trace_exe())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pmap-trace");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("pmap-trace: attached to "),
            "unexpected first line: {line:?}"
        );
        Tracer {
            child,
            attached: line,
            stdout,
            stderr,
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Reads output lines up to and including the next pmap ` total` line: one text dump
    /// (with any event lines before it).
    pub fn read_dump(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "pmap-trace ended before a dump; output so far:\n{text}"
            );
            text.push_str(&line);
            if line.starts_with(" total ") {
                return text;
            }
        }
    }

    /// Waits for the exit and returns the exit code, the rest of stdout and of stderr.
    pub fn finish(mut self) -> (i32, String, String) {
        use std::io::Read;
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        let mut err = String::new();
        self.stderr.read_to_string(&mut err).unwrap();
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), out, err)
    }
}
