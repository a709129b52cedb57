//! Helpers shared by the integration tests: running the workload, waiting for checkpoints, and
//! comparing dumps with the real `pmap`.

mod program;
mod sites;

pub use program::{Program, TempDir};
pub use sites::{functions, sites_after_dump};

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
    /// Closed by [`Workload::finish`], which lets the workload end.
    stdin: Option<ChildStdin>,
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
            stdin: Some(stdin),
            stdout,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("the workload is not finished");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
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
        self.stdin = None;
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

/// A test that fails part-way must not leave the workload behind, stopped at a checkpoint.
impl Drop for Workload {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// The optimised `pmap-trace` (`target/release`), for tests of whether its reader keeps up
/// with a program making calls as fast as it can: the unoptimised one does not, by far
/// (`cargo xtask test` builds both).
pub fn pmap_trace_release_exe() -> std::path::PathBuf {
    let debug = pmap_trace_exe();
    let path = debug
        .parent()
        .and_then(|dir| dir.parent())
        .expect("target directory")
        .join("release/pmap-trace");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p pmap-user` (cargo xtask test does)",
        path.display()
    );
    path
}

/// `text` without the call-site summaries that follow each dump of the plain run (a
/// `sites PID: …` heading and its indented lines, one a site: `  LIVE  +GROWTH  SITE`), so the
/// dumps and event lines can be compared as they were before call sites were on by default.
pub fn without_site_summaries(text: &str) -> String {
    let mut kept = String::new();
    let mut in_summary = false;
    for line in text.split_inclusive('\n') {
        let is_heading = line.starts_with("sites ")
            && line
                .split_once(':')
                .is_some_and(|(head, _)| head["sites ".len()..].parse::<u32>().is_ok());
        let is_site_line = in_summary
            && line.starts_with("  ")
            && line
                .split_whitespace()
                .nth(1)
                .is_some_and(|growth| growth.starts_with(['+', '-']));
        in_summary = is_heading || is_site_line;
        if !in_summary {
            kept.push_str(line);
        }
    }
    kept
}

/// The PID of a `pmap-trace: attached to PID (COMM)` line: the target's, or the launched
/// command's.
pub fn attached_pid(line: &str) -> i32 {
    line.trim_start_matches("pmap-trace: attached to ")
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no PID in {line:?}"))
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
        let mut command = Command::new(pmap_trace_exe());
        command.args(args);
        Tracer::attach_command(command)
    }

    /// The PID its `attached` line names.
    pub fn attached_pid(&self) -> i32 {
        attached_pid(&self.attached)
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

/// A test that fails part-way must not leave its tracer running: it would hold the test
/// harness's output pipe open (a CI log reader waiting for its end would wait forever) and keep
/// its programs loaded.
impl Drop for Tracer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Private copies of the dynamic loader, the shared libraries and the locale that programs run
/// with, so that running them does not change what the target's `/proc/PID/smaps` says. `Pss`
/// divides each page among the processes that map it: a `pmap` mapping the same `libc.so.6` pages
/// as the target lowers the target's Pss while it runs, and `pmap` and `pmap-trace` map different
/// pages, so their dumps would differ by it. Run from copies, neither shares a page with the
/// target (the copies are other files), and both read the same smaps.
pub struct Isolated {
    dir: std::path::PathBuf,
}

impl Isolated {
    /// Copies what `programs` load (as `ldd` lists it) and the `C.utf8` locale.
    pub fn new(programs: &[&std::path::Path]) -> Isolated {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pmap-trace-isolated-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let lib = dir.join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(dir.join("gconv")).unwrap();
        for program in programs {
            let out = Command::new("ldd").arg(program).output().expect("run ldd");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux….so.2 (0x…)".
                let path = line
                    .split("=>")
                    .last()
                    .and_then(|rest| rest.split_whitespace().next())
                    .filter(|p| p.starts_with('/'));
                if let Some(path) = path {
                    let name = std::path::Path::new(path).file_name().unwrap();
                    std::fs::copy(path, lib.join(name)).unwrap();
                }
            }
        }
        let locale = std::path::Path::new("/usr/lib/locale/C.utf8");
        if locale.is_dir() {
            let copy = dir.join("locale/C.utf8");
            copy_dir(locale, &copy);
        }
        Isolated { dir }
    }

    /// `program` started by the copied loader on the copied libraries and locale. GCONV_PATH
    /// keeps glibc from mapping the shared gconv-modules.cache.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let lib = self.dir.join("lib");
        let loader = std::fs::read_dir(&lib)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("/ld-linux"))
            .expect("ldd lists the dynamic loader");
        let mut command = Command::new(loader);
        command
            .arg("--library-path")
            .arg(&lib)
            .arg(program)
            .env("LOCPATH", self.dir.join("locale"))
            .env("GCONV_PATH", self.dir.join("gconv"));
        command
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Standard output of `command`, which must succeed.
pub fn output_of(mut command: Command) -> Vec<u8> {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Panics with a line-by-line difference when the bytes `got` differ from `expected`.
pub fn assert_same_output(what: &str, expected: &[u8], got: &[u8]) {
    if expected != got {
        assert_same_text(
            what,
            &String::from_utf8_lossy(expected),
            &String::from_utf8_lossy(got),
        );
        panic!("{what}: the outputs differ in bytes that are not UTF-8");
    }
}

impl Tracer {
    /// Starts `command` (a `pmap-trace` invocation) and waits for its `attached` line.
    pub fn attach_command(mut command: Command) -> Tracer {
        let mut child = command
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

    /// Waits for the exit; returns the exit code and the rest of stdout as bytes.
    pub fn finish_bytes(mut self) -> (i32, Vec<u8>) {
        use std::io::Read;
        let mut out = Vec::new();
        self.stdout.read_to_end(&mut out).unwrap();
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), out)
    }
}

/// A `sleep 30` to trace, ended and reaped at the latest when dropped.
pub struct Sleeper(Child);

impl Sleeper {
    pub fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("start sleep"),
        )
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Ends it now (a traced target's exit also ends the trace).
    pub fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.end();
    }
}
