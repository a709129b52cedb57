//! `cargo xtask bench`: what tracing with pmap-trace costs, measured against the tools users would
//! pick instead (a bpftrace script, strace), plus event throughput, dump latency, pmap-trace's own
//! memory and its effect on processes it does not trace.
//!
//! The workloads are small C programs and a Python script under `xtask/bench/`, compiled with gcc
//! into `target/bench/` at bench time (C, so each loop makes exactly the calls it names, with no
//! runtime of ours in between). Each times its own loop with CLOCK_MONOTONIC and prints ns per
//! iteration, so start-up and attach costs are not in the figures. Configurations alternate within
//! every round and ratios are taken against the untraced run of the same invocation. Nothing is
//! written into the repository except, with `--write`, the results section of BENCHMARKS.md.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::ValueEnum as _;

use crate::process::{cargo, find_in_path, is_root, probe, run_cmd, run_cmd_ok, workspace_root};

const RESULTS_BEGIN: &str = "<!-- BEGIN RESULTS: written by `cargo xtask bench --write` -->";
const RESULTS_END: &str = "<!-- END RESULTS -->";

/// The calls/s the event-rate target names.
const TARGET_RATE: u64 = 300_000;
const DEFAULT_RING: &str = "4M";

pub struct Options {
    pub quick: bool,
    pub write: bool,
    pub rounds: Option<usize>,
    /// Measure pmap-trace as committed at this revision rather than the working tree.
    pub rev: Option<String>,
    /// Parts to run; empty: all of them.
    pub only: Vec<Part>,
}

/// The bench's parts, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Workloads,
    EventRate,
    Dumps,
    Untraced,
}

/// How long and how often everything runs.
struct Plan {
    rounds: usize,
    loop_ms: u64,
    python_ms: u64,
    rate_ms: u64,
    /// Paced rates for the throughput test at the default ring; 0 is "as fast as it can".
    rates: Vec<u64>,
    /// Ring sizes tried at [`TARGET_RATE`], largest first.
    rings: Vec<&'static str>,
    dump_reps: usize,
    mappings: u64,
    /// Distinct call stacks of the `--sites` memory test.
    stacks: u64,
    bystander_ms: u64,
    /// Longest the bench waits, in all, for other programs to finish.
    max_wait: Duration,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                rounds: 3,
                loop_ms: 300,
                python_ms: 600,
                rate_ms: 2000,
                rates: vec![TARGET_RATE, 0],
                rings: vec![DEFAULT_RING, "256K", "16K"],
                dump_reps: 3,
                mappings: 100_000,
                stacks: 10_000,
                bystander_ms: 300,
                max_wait: Duration::from_secs(45),
            }
        } else {
            Plan {
                rounds: 7,
                loop_ms: 1000,
                python_ms: 1500,
                rate_ms: 5000,
                rates: vec![100_000, 200_000, TARGET_RATE, 0],
                rings: vec![DEFAULT_RING, "1M", "256K", "64K", "16K", "4K"],
                dump_reps: 7,
                mappings: 100_000,
                stacks: 10_000,
                bystander_ms: 1000,
                max_wait: Duration::from_secs(240),
            }
        };
        if let Some(rounds) = options.rounds {
            plan.rounds = rounds.max(1);
        }
        plan
    }
}

// --- entry point ----------------------------------------------------------------------------------

pub fn run(options: Options) -> Result<ExitCode> {
    if !is_root() {
        bail!(
            "the bench loads eBPF programs, installs bpftrace/strace with apt-get and raises \
             vm.max_map_count: run `cargo xtask bench` as root"
        );
    }
    let command = {
        let mut command = String::from("cargo xtask bench");
        if options.quick {
            command.push_str(" --quick");
        }
        if let Some(rounds) = options.rounds {
            let _ = write!(command, " --rounds {rounds}");
        }
        if let Some(rev) = &options.rev {
            let _ = write!(command, " --rev {rev}");
        }
        for part in options.only.iter().filter_map(|p| p.to_possible_value()) {
            let _ = write!(command, " --only {}", part.get_name());
        }
        if options.write {
            command.push_str(" --write");
        }
        command
    };
    let plan = Plan::new(&options);
    MAX_WAIT_MS.store(plan.max_wait.as_millis() as u64, Ordering::SeqCst);
    catch_interrupts();
    let started = Instant::now();

    crate::setup::run()?;
    let (pmap_trace, revision) = build_pmap_trace(options.rev.as_deref())?;
    let env = Env::prepare(pmap_trace, revision)?;
    warn_about_other_tracers();

    let mut report = Report::new(&command, &plan, &env);
    let activity = Activity::start();
    let sections: [(&str, Part, Section); 4] = [
        ("workloads", Part::Workloads, workloads),
        ("event rate", Part::EventRate, event_rate),
        ("dumps", Part::Dumps, dumps),
        ("untraced process", Part::Untraced, bystander),
    ];
    for (name, part, section) in sections {
        if !options.only.is_empty() && !options.only.contains(&part) {
            continue;
        }
        let start = Instant::now();
        section(&env, &plan, &mut report)?;
        println!("bench: {name} took {:.0} s", start.elapsed().as_secs_f64());
    }
    report.activity = activity.finish();

    let markdown = report.render(started.elapsed());
    println!("\n{markdown}");
    if options.write {
        write_results(&markdown)?;
        println!("bench: results written to BENCHMARKS.md");
    }
    Ok(ExitCode::SUCCESS)
}

// --- environment: tools, workloads, scripts -------------------------------------------------------

/// A tool the bench compares against: its path, or why it is not there.
type Tool = std::result::Result<PathBuf, String>;

struct Env {
    bench_dir: PathBuf,
    pmap_trace: PathBuf,
    workloads: PathBuf,
    python: PathBuf,
    churn_py: PathBuf,
    pmap: PathBuf,
    bpftrace: Tool,
    strace: Tool,
    /// bpftrace script for launch mode (filters on `cpid`) and for a running PID (`$1`).
    bt_launch: PathBuf,
    bt_pid: PathBuf,
    /// bpftrace programs on the same tracepoints that do nothing but compare the PID.
    bt_floor: PathBuf,
    bt_script: String,
    versions: Vec<(String, String)>,
}

impl Env {
    fn prepare(pmap_trace: PathBuf, revision: String) -> Result<Env> {
        let root = workspace_root();
        let bench_dir = root.join("target/bench");
        fs::create_dir_all(&bench_dir)
            .with_context(|| format!("creating {}", bench_dir.display()))?;

        let gcc = ensure_tool("gcc", "gcc").map_err(|why| anyhow!("gcc is needed: {why}"))?;
        let workloads = bench_dir.join("workloads");
        run_cmd_ok(
            Command::new(&gcc)
                .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&workloads)
                .arg(root.join("xtask/bench/workloads.c")),
        )?;

        let python = python3()?;
        let pmap = find_in_path("pmap").context("pmap is not installed (cargo xtask setup)")?;
        let bpftrace = ensure_tool("bpftrace", "bpftrace");
        let strace = ensure_tool("strace", "strace");

        // The same tracepoints as pmap-trace, where this kernel has them.
        let probes: Vec<String> = pmap_common::TRACED_SYSCALLS
            .iter()
            .map(|&(name, _)| name)
            .filter(|name| {
                Path::new(&format!(
                    "/sys/kernel/tracing/events/syscalls/sys_exit_{name}"
                ))
                .exists()
            })
            .map(|name| format!("tracepoint:syscalls:sys_exit_{name}"))
            .collect();
        if probes.is_empty() {
            bail!("no sys_exit_* tracepoints under /sys/kernel/tracing (is tracefs mounted?)");
        }
        let bt = |filter: &str| {
            format!(
                "BEGIN {{ printf(\"READY\\n\"); }}\n{}\n/{filter}/\n{{\n  @calls[probe, ustack] = count();\n}}\n",
                probes.join(",\n")
            )
        };
        let bt_launch = bench_dir.join("launch.bt");
        let bt_pid = bench_dir.join("pid.bt");
        let bt_floor = bench_dir.join("floor.bt");
        fs::write(&bt_launch, bt("pid == cpid"))?;
        fs::write(&bt_pid, bt("pid == $1"))?;
        // Programs that only compare the PID: what attaching to these tracepoints costs before
        // any work is done, the floor under every design that hooks them.
        fs::write(
            &bt_floor,
            format!(
                "{}
/pid == cpid/
{{
}}
",
                probes.join(
                    ",
"
                )
            ),
        )?;

        let first_line = |cmd: &mut Command| {
            probe(cmd)
                .and_then(|out| out.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "?".into())
        };
        let mut versions = vec![
            ("pmap-trace".into(), revision),
            (
                "gcc".into(),
                first_line(Command::new(&gcc).arg("--version")),
            ),
            (
                "python".into(),
                format!(
                    "{} ({})",
                    first_line(Command::new(&python).arg("--version")),
                    python.display()
                ),
            ),
            ("pmap".into(), first_line(Command::new(&pmap).arg("-V"))),
        ];
        for (name, tool, flag) in [
            ("bpftrace", &bpftrace, "--version"),
            ("strace", &strace, "-V"),
        ] {
            let version = match tool {
                Ok(path) => first_line(Command::new(path).arg(flag)),
                Err(why) => format!("not available: {why}"),
            };
            versions.push((name.into(), version));
        }

        Ok(Env {
            pmap_trace,
            churn_py: root.join("xtask/bench/churn.py"),
            bench_dir,
            workloads,
            python,
            pmap,
            bpftrace,
            strace,
            bt_launch,
            bt_pid,
            bt_floor,
            bt_script: bt("pid == cpid"),
            versions,
        })
    }
}

/// `name` on PATH, installed from Debian `package` with apt-get when missing. An error is the
/// reason it is not available, for the report.
fn ensure_tool(name: &str, package: &str) -> Tool {
    if let Some(path) = find_in_path(name) {
        println!("bench: {name}: already installed");
        return Ok(path);
    }
    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_cmd(&mut cmd)
            .map(|status| status.success())
            .unwrap_or(false)
    };
    let install = ["install", "-y", "--no-install-recommends", package];
    // A stale package list is the usual reason an install fails; refreshing it costs a network
    // round trip, so it happens only after a failed attempt.
    let installed = apt_get(&install) || (apt_get(&["update"]) && apt_get(&install));
    if !installed {
        let why = format!("`apt-get install {package}` failed");
        println!("bench: {name}: NOT AVAILABLE ({why}); its columns are left out");
        return Err(why);
    }
    match find_in_path(name) {
        Some(path) => {
            println!("bench: {name}: installed");
            Ok(path)
        }
        None => {
            let why = format!("installed {package}, but `{name}` is not on PATH");
            println!("bench: {name}: NOT AVAILABLE ({why}); its columns are left out");
            Err(why)
        }
    }
}

/// Debian's python3 (a program nobody here wrote), else whatever python3 PATH finds, resolved
/// through shims such as pyenv's to the real interpreter.
fn python3() -> Result<PathBuf> {
    let candidate = if Path::new("/usr/bin/python3").exists() {
        PathBuf::from("/usr/bin/python3")
    } else {
        find_in_path("python3").context("python3 is not installed")?
    };
    let real = probe(Command::new(&candidate).args(["-c", "import sys; print(sys.executable)"]))
        .context("python3 does not run")?;
    Ok(PathBuf::from(real.trim()))
}

/// Builds pmap-trace in release mode: the working tree, or with `rev` that commit, exported
/// (`git archive`) into target/bench/src and built there, so work in progress in the tree is not
/// what gets measured. Returns the binary and a description of what it was built from.
fn build_pmap_trace(rev: Option<&str>) -> Result<(PathBuf, String)> {
    let root = workspace_root();
    let Some(rev) = rev else {
        run_cmd_ok(cargo().args(["build", "--release", "-p", "pmap-user"]))?;
        return Ok((
            root.join("target/release/pmap-trace"),
            working_tree_revision(),
        ));
    };
    let commit = probe(Command::new("git").current_dir(root).args([
        "rev-parse",
        "--short",
        "--verify",
        &format!("{rev}^{{commit}}"),
    ]))
    .map(|out| out.trim().to_owned())
    .with_context(|| format!("`{rev}` is not a commit of this repository"))?;
    let src = root.join("target/bench/src");
    if src.exists() {
        fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
    }
    fs::create_dir_all(&src)?;
    let archive = root.join("target/bench/src.tar");
    run_cmd_ok(
        Command::new("git")
            .current_dir(root)
            .args(["archive", "--format=tar", "-o"])
            .arg(&archive)
            .arg(&commit),
    )?;
    run_cmd_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&src),
    )?;
    let _ = fs::remove_file(&archive);
    // A target directory of its own that outlives the export, so a second run rebuilds little.
    let target = root.join("target/bench/target");
    run_cmd_ok(
        cargo()
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "-p", "pmap-user"]),
    )?;
    Ok((
        target.join("release/pmap-trace"),
        format!("commit {commit} (built from `git archive`)"),
    ))
}

/// The commit the working tree is at, and whether pmap-trace's sources had uncommitted changes.
fn working_tree_revision() -> String {
    let root = workspace_root();
    let head = probe(
        Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .map(|out| out.trim().to_owned())
    .unwrap_or_else(|| "unknown".into());
    let dirty = probe(Command::new("git").current_dir(root).args([
        "status",
        "--porcelain",
        "--",
        "pmap-common",
        "pmap-ebpf",
        "pmap-user",
    ]))
    .is_some_and(|out| !out.trim().is_empty());
    if dirty {
        format!("working tree at {head} + uncommitted changes in its sources")
    } else {
        format!("working tree at {head}")
    }
}

/// Other tracers running now would disturb every figure (an attached syscall tracepoint slows
/// every process): say so before measuring.
fn warn_about_other_tracers() {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(comm) = fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim();
            if ["pmap-trace", "bpftrace", "strace", "perf"].contains(&comm) {
                found.push(format!("{comm} ({pid})"));
            }
        }
    }
    if !found.is_empty() {
        println!(
            "bench: WARNING: other tracers are running ({}); they slow every process and \
             distort the figures",
            found.join(", ")
        );
    }
}

type Section = fn(&Env, &Plan, &mut Report) -> Result<()>;

// --- other activity on the machine -----------------------------------------------------------------

/// Processes this bench started and has not yet reaped: they are allowed to hold eBPF programs.
static OURS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Processes seen holding eBPF programs that are not the bench's, over the whole run.
static FOREIGN_BPF: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Measurements redone because something else ran, kept although disturbed, and the time spent
/// waiting for the machine to be quiet.
static REDONE: AtomicUsize = AtomicUsize::new(0);
static KEPT_DISTURBED: AtomicUsize = AtomicUsize::new(0);
static WAITED_MS: AtomicU64 = AtomicU64::new(0);

/// CPU time used outside the bench's processes, per second of a measurement, above which the
/// measurement is redone. Kernel threads count as outside, so it is not zero on a quiet machine.
const MAX_FOREIGN_CPU: f64 = 0.15;
const MAX_TRIES: usize = 3;
/// Longest the whole bench waits for others to finish before it measures regardless (set from
/// the plan, so a busy machine cannot stretch the bench far beyond its stated duration).
static MAX_WAIT_MS: AtomicU64 = AtomicU64::new(0);

fn max_wait() -> Duration {
    Duration::from_millis(MAX_WAIT_MS.load(Ordering::SeqCst))
}

/// Processes the bench did not start that hold eBPF programs now. An attached syscall
/// tracepoint slows every process, and another tracer competes for the 2 CPUs: someone's
/// integration tests running alongside would distort the figures.
fn foreign_bpf_holders() -> Vec<String> {
    let ours = OURS.lock().map(|set| set.clone()).unwrap_or_default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if ours.contains(&pid) || pid == std::process::id() as i32 {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds_prog = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog")
        });
        if holds_prog {
            let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("{} ({pid})", comm.trim()));
        }
    }
    if let Ok(mut seen) = FOREIGN_BPF.lock() {
        seen.extend(found.iter().cloned());
    }
    found
}

/// Machine-wide busy CPU time and the bench's own, at one instant.
struct CpuSnapshot {
    at: Instant,
    busy: f64,
    ours: f64,
}

impl CpuSnapshot {
    fn now() -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            busy: machine_busy_seconds(),
            ours: our_cpu_seconds(),
        }
    }

    /// CPU-seconds per second used since then by everything that is not the bench.
    fn foreign_share(&self) -> f64 {
        let foreign = (machine_busy_seconds() - self.busy) - (our_cpu_seconds() - self.ours);
        foreign.max(0.0) / self.at.elapsed().as_secs_f64().max(1e-3)
    }
}

/// Runs one measurement, and runs it again (up to [`MAX_TRIES`] times, after waiting for the
/// machine to be quiet) when another program used the CPUs or held eBPF programs meanwhile.
fn quietly<T>(what: &str, mut measure: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        wait_for_quiet(false)?;
        let snapshot = CpuSnapshot::now();
        let value = measure()?;
        let share = snapshot.foreign_share();
        let holders = foreign_bpf_holders();
        if share <= MAX_FOREIGN_CPU && holders.is_empty() {
            return Ok(value);
        }
        let why = if holders.is_empty() {
            format!("other programs used {:.0} % of a CPU", share * 100.0)
        } else {
            format!("eBPF programs held by {}", holders.join(", "))
        };
        let out_of_time = Duration::from_millis(WAITED_MS.load(Ordering::SeqCst)) >= max_wait();
        if attempt == MAX_TRIES || out_of_time {
            KEPT_DISTURBED.fetch_add(1, Ordering::SeqCst);
            println!("bench: {what}: disturbed ({why}); kept after {attempt} tries");
            return Ok(value);
        }
        REDONE.fetch_add(1, Ordering::SeqCst);
        println!("bench: {what}: disturbed ({why}); measuring again once the machine is quiet");
        wait_for_quiet(true)?;
        attempt += 1;
    }
}

/// Waits until no other process holds eBPF programs and, with `sample_cpu`, other programs use
/// less than [`MAX_FOREIGN_CPU`] over a second; gives up when the bench has waited
/// [`max_wait`] in all.
fn wait_for_quiet(sample_cpu: bool) -> Result<()> {
    let start = Instant::now();
    let mut told = false;
    let result = loop {
        check_interrupted()?;
        let waited = Duration::from_millis(WAITED_MS.load(Ordering::SeqCst)) + start.elapsed();
        if waited >= max_wait() {
            break Ok(());
        }
        let holders = foreign_bpf_holders();
        let busy = if holders.is_empty() && sample_cpu {
            let snapshot = CpuSnapshot::now();
            thread::sleep(Duration::from_secs(1));
            let share = snapshot.foreign_share();
            (share > MAX_FOREIGN_CPU)
                .then(|| format!("other programs use {:.0} % of a CPU", share * 100.0))
        } else if holders.is_empty() {
            None
        } else {
            Some(format!("eBPF programs held by {}", holders.join(", ")))
        };
        let Some(busy) = busy else {
            break Ok(());
        };
        if !told {
            println!("bench: waiting for the machine to be quiet ({busy})");
            told = true;
        }
        thread::sleep(Duration::from_secs(1));
    };
    WAITED_MS.fetch_add(start.elapsed().as_millis() as u64, Ordering::SeqCst);
    result
}

/// What else used the machine over the whole bench.
struct Activity(CpuSnapshot);

impl Activity {
    fn start() -> Activity {
        Activity(CpuSnapshot::now())
    }

    fn finish(self) -> String {
        let wall = self.0.at.elapsed().as_secs_f64();
        let share = self.0.foreign_share();
        let bpf = FOREIGN_BPF
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default();
        format!(
            "other programs and kernel threads (including the bench's own deferred kernel \
             work) used {:.1} CPU-seconds in {wall:.0} s ({:.0} % of a CPU); measurements redone \
             because something else ran: {}; kept although disturbed: {}; waited {:.0} s for \
             quiet; other processes seen holding eBPF programs: {}",
            share * wall,
            share * 100.0,
            REDONE.load(Ordering::SeqCst),
            KEPT_DISTURBED.load(Ordering::SeqCst),
            WAITED_MS.load(Ordering::SeqCst) as f64 / 1000.0,
            if bpf.is_empty() {
                "none".into()
            } else {
                // "pmap-trace (123)" entries grouped by name: "pmap-trace ×18".
                let mut by_name = BTreeMap::<String, usize>::new();
                for holder in &bpf {
                    let name = holder
                        .rsplit_once(" (")
                        .map_or(holder.as_str(), |(name, _)| name);
                    *by_name.entry(name.to_owned()).or_default() += 1;
                }
                by_name
                    .iter()
                    .map(|(name, count)| format!("{name} ×{count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

/// Busy (non-idle, non-iowait, non-steal) CPU time of the whole machine, from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / ticks
}

/// CPU time of this process and every descendant it has reaped.
fn our_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        for tv in [usage.ru_utime, usage.ru_stime] {
            total += tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        }
    }
    total
}

// --- interrupts -----------------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C reaches the children too (pmap-trace exits cleanly on it); the bench stops at the next
/// check, so its guards put vm.max_map_count back and end the processes it started.
fn catch_interrupts() {
    extern "C" fn on_signal(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; a caught signal's
    // handler is reset to the default in exec'd children.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

// --- running processes ----------------------------------------------------------------------------

/// A child killed (SIGKILL) and reaped if it is still running when this is dropped.
struct Guarded(Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
        if let Ok(mut ours) = OURS.lock() {
            ours.remove(&self.pid());
        }
    }
}

impl Guarded {
    fn spawn(cmd: &mut Command) -> Result<Guarded> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {program}"))?;
        if let Ok(mut ours) = OURS.lock() {
            ours.insert(child.id() as i32);
        }
        Ok(Guarded(child))
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits up to `timeout` for the child to exit; after that it is killed and this fails.
    fn wait(&mut self, timeout: Duration, what: &str) -> Result<ExitStatus> {
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
    fn stop(mut self, what: &str) -> Result<()> {
        self.signal(libc::SIGINT);
        self.wait(Duration::from_secs(60), what)?;
        Ok(())
    }
}

/// Reads a pipe to its end on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A child's output lines, each with the moment it was read.
type Lines = Receiver<(Instant, String)>;

/// Forwards a pipe's lines, with the time each was read, to a channel.
fn line_channel(pipe: impl Read + Send + 'static) -> Lines {
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
fn wait_for_line(
    rx: &Receiver<(Instant, String)>,
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

/// The `key=value` fields of a workload's `RESULT` line.
fn parse_result(stderr: &str) -> Option<BTreeMap<String, f64>> {
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
fn trimmed(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|line| !line.contains("RLIMIT_MEMLOCK"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn median(values: &[f64]) -> Option<f64> {
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

fn status_kb(pid: i32, field: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// --- 1. workloads: untraced vs traced ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Workload {
    Mmap,
    Brk,
    Malloc,
    Python,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Mmap,
        Workload::Brk,
        Workload::Malloc,
        Workload::Python,
    ];

    fn label(self) -> &'static str {
        match self {
            Workload::Mmap => "mmap 64K + touch + munmap",
            Workload::Brk => "brk +64K / touch / -64K",
            Workload::Malloc => "malloc/free churn (C)",
            Workload::Python => "python3 build/free structures",
        }
    }

    fn argv(self, env: &Env, plan: &Plan) -> Vec<String> {
        let c = |mode: &str| {
            vec![
                env.workloads.display().to_string(),
                mode.to_owned(),
                plan.loop_ms.to_string(),
            ]
        };
        match self {
            Workload::Mmap => c("mmap"),
            Workload::Brk => c("brk"),
            Workload::Malloc => c("malloc"),
            Workload::Python => vec![
                env.python.display().to_string(),
                env.churn_py.display().to_string(),
                plan.python_ms.to_string(),
            ],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tracer {
    None,
    PmapNoEvents,
    PmapEvents,
    /// `--no-events --sites 10`: every growth call carries its registers and stack, unwound and
    /// attributed by pmap-trace.
    PmapSites,
    /// Empty programs (a PID compare) on the same tracepoints: the cost of the hook alone.
    Floor,
    Bpftrace,
    Strace,
}

impl Tracer {
    const ALL: [Tracer; 7] = [
        Tracer::None,
        Tracer::PmapNoEvents,
        Tracer::PmapEvents,
        Tracer::PmapSites,
        Tracer::Floor,
        Tracer::Bpftrace,
        Tracer::Strace,
    ];

    fn label(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::PmapNoEvents => "pmap-trace --no-events",
            Tracer::PmapEvents => "pmap-trace, events to /dev/null",
            Tracer::PmapSites => "pmap-trace --sites (stacks on)",
            Tracer::Floor => "empty programs, same tracepoints (floor)",
            Tracer::Bpftrace => "bpftrace (ustack)",
            Tracer::Strace => "strace -f -e trace=%memory",
        }
    }

    fn tool(self, env: &Env) -> Option<&Tool> {
        match self {
            Tracer::Bpftrace | Tracer::Floor => Some(&env.bpftrace),
            Tracer::Strace => Some(&env.strace),
            _ => None,
        }
    }

    fn command(self, env: &Env, argv: &[String]) -> Result<Command> {
        let mut cmd = match self {
            Tracer::None => Command::new(&argv[0]),
            Tracer::PmapNoEvents | Tracer::PmapEvents | Tracer::PmapSites => {
                let mut cmd = Command::new(&env.pmap_trace);
                if self != Tracer::PmapEvents {
                    cmd.arg("--no-events");
                }
                if self == Tracer::PmapSites {
                    cmd.args(["--sites", "10"]);
                }
                cmd.args(["-o", "/dev/null", "--"]).arg(&argv[0]);
                cmd
            }
            Tracer::Bpftrace | Tracer::Floor => {
                // bpftrace -c splits its argument on spaces, with no quoting.
                if argv.iter().any(|arg| arg.contains(char::is_whitespace)) {
                    bail!("bpftrace -c cannot run a command whose paths contain spaces");
                }
                let mut cmd = Command::new(env.bpftrace.as_ref().map_err(|e| anyhow!("{e}"))?);
                cmd.args(["-o", "/dev/null", "-c"]).arg(argv.join(" ")).arg(
                    if self == Tracer::Floor {
                        &env.bt_floor
                    } else {
                        &env.bt_launch
                    },
                );
                return Ok(cmd);
            }
            Tracer::Strace => {
                let mut cmd = Command::new(env.strace.as_ref().map_err(|e| anyhow!("{e}"))?);
                cmd.args(["-f", "-e", "trace=%memory", "-o"])
                    .arg(env.bench_dir.join("strace.out"))
                    .arg(&argv[0]);
                cmd
            }
        };
        cmd.args(&argv[1..]);
        Ok(cmd)
    }
}

/// Runs one workload under one tracer; returns the workload's RESULT fields and stderr.
fn run_workload(cmd: &mut Command) -> Result<(BTreeMap<String, f64>, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(cmd)?;
    let stderr = collect(child.0.stderr.take().expect("stderr is piped"));
    let status = child.wait(Duration::from_secs(300), "the workload")?;
    let stderr = stderr.join().unwrap_or_default();
    match parse_result(&stderr) {
        Some(result) if status.success() => Ok((result, stderr)),
        _ => bail!("{status}; stderr:\n{}", trimmed(&stderr)),
    }
}

/// Traced calls per iteration, from strace's output: the lines between the workload's two
/// madvise(NULL, 0, MADV_NORMAL) markers, over the iterations it reported.
fn calls_per_iteration(strace_out: &Path, iterations: f64) -> Option<f64> {
    let text = fs::read_to_string(strace_out).ok()?;
    let mut inside = false;
    let mut calls = 0u64;
    for line in text.lines() {
        if line.contains("madvise(NULL, 0, MADV_NORMAL)") {
            if inside {
                return Some(calls as f64 / iterations);
            }
            inside = true;
        } else if inside && !line.contains("resumed>") && !line.starts_with("+++") {
            calls += 1;
        }
    }
    None
}

/// Calls per iteration that may grow anonymous memory, as pmap-trace's kernel side picks the
/// calls that carry a stack: a successful private anonymous `mmap`, a `brk` that raised the
/// break, an `mremap` that grew. Counted from strace's output between the two markers.
fn growth_calls_per_iteration(strace_out: &Path, iterations: f64) -> Option<f64> {
    let text = fs::read_to_string(strace_out).ok()?;
    let mut inside = false;
    let mut growth = 0u64;
    let mut brk: Option<u64> = None;
    for line in text.lines() {
        // strace -f prefixes each line with the thread id.
        let call = line
            .split_once(' ')
            .filter(|(tid, _)| tid.bytes().all(|b| b.is_ascii_digit()))
            .map_or(line, |(_, rest)| rest.trim_start());
        if call.starts_with("madvise(NULL, 0, MADV_NORMAL)") {
            if inside {
                return Some(growth as f64 / iterations);
            }
            inside = true;
            continue;
        }
        let Some((head, ret)) = call.rsplit_once(" = ") else {
            continue;
        };
        let ret = ret.split_whitespace().next().unwrap_or("");
        let hex = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok();
        let grew = if head.starts_with("mmap(") {
            head.contains("MAP_PRIVATE") && head.contains("MAP_ANONYMOUS") && ret.starts_with("0x")
        } else if head.starts_with("brk(") {
            let top = hex(ret);
            let raised = matches!((brk, top), (Some(before), Some(now)) if now > before);
            brk = top.or(brk);
            raised
        } else if let Some(args) = head.strip_prefix("mremap(") {
            let sizes: Vec<u64> = args
                .split(", ")
                .skip(1)
                .take(2)
                .filter_map(|n| n.parse().ok())
                .collect();
            ret.starts_with("0x") && matches!(sizes[..], [old, new] if new > old)
        } else {
            false
        };
        if inside && grew {
            growth += 1;
        }
    }
    None
}

#[derive(Default)]
struct WorkloadResults {
    /// ns per iteration, every round.
    samples: BTreeMap<(Workload, Tracer), Vec<f64>>,
    calls_per_iter: BTreeMap<Workload, Vec<f64>>,
    /// Calls per iteration that carry a stack under `--sites`.
    growth_per_iter: BTreeMap<Workload, Vec<f64>>,
    /// Tools dropped after they failed to run, with the reason.
    failed: BTreeMap<Tracer, String>,
}

fn workloads(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    println!(
        "\n==> workloads: {} rounds x {} workloads x {} configurations, alternating",
        plan.rounds,
        Workload::ALL.len(),
        Tracer::ALL.len()
    );
    let results = &mut report.workloads;
    for round in 0..plan.rounds {
        for workload in Workload::ALL {
            let argv = workload.argv(env, plan);
            // Each round starts the rotation one configuration later, so none always runs first.
            for i in 0..Tracer::ALL.len() {
                check_interrupted()?;
                let tracer = Tracer::ALL[(i + round) % Tracer::ALL.len()];
                if tracer.tool(env).is_some_and(|tool| tool.is_err())
                    || results.failed.contains_key(&tracer)
                {
                    continue;
                }
                let mut cmd = tracer.command(env, &argv)?;
                let what = format!("{} under {}", workload.label(), tracer.label());
                match quietly(&what, || Ok(run_workload(&mut cmd)))? {
                    Ok((result, _)) => {
                        let ns = result["ns_per_iter"];
                        println!(
                            "[round {}/{}] {:<31} {:<32} {}/iter",
                            round + 1,
                            plan.rounds,
                            workload.label(),
                            tracer.label(),
                            format_ns(ns)
                        );
                        results
                            .samples
                            .entry((workload, tracer))
                            .or_default()
                            .push(ns);
                        let strace_out = env.bench_dir.join("strace.out");
                        if tracer == Tracer::Strace
                            && let Some(calls) = calls_per_iteration(&strace_out, result["iters"])
                        {
                            results
                                .calls_per_iter
                                .entry(workload)
                                .or_default()
                                .push(calls);
                        }
                        if tracer == Tracer::Strace
                            && let Some(growth) =
                                growth_calls_per_iteration(&strace_out, result["iters"])
                        {
                            results
                                .growth_per_iter
                                .entry(workload)
                                .or_default()
                                .push(growth);
                        }
                    }
                    Err(err) if tracer.tool(env).is_some() => {
                        let why = format!("{} failed: {err:#}", tracer.label());
                        println!("bench: {why}; leaving it out of the rest of the run");
                        results.failed.insert(tracer, why);
                    }
                    Err(err) => {
                        return Err(err).with_context(|| {
                            format!("{} under {}", workload.label(), tracer.label())
                        });
                    }
                }
            }
        }
    }
    let _ = fs::remove_file(env.bench_dir.join("strace.out"));
    Ok(())
}

// --- 2. event rate: lost records and ring size ---------------------------------------------------

struct RateRun {
    ring: &'static str,
    events: bool,
    target: u64,
    achieved: f64,
    calls: u64,
    /// Event lines for mmap/munmap calls (events mode only).
    map_lines: u64,
    lost: u64,
    /// pmap-trace's own CPU time (user + system) per traced call while the loop ran.
    cpu_ns_per_call: Option<f64>,
}

#[derive(Default)]
struct OutputScan {
    map_lines: u64,
    lost: u64,
}

/// Counts pmap-trace's event lines for mmap/munmap and the records its notices say were lost.
fn scan_output(pipe: impl Read + Send + 'static) -> JoinHandle<OutputScan> {
    thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, pipe);
        let mut scan = OutputScan::default();
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line);
            if let Some(notice) = text.strip_prefix("pmap-trace: ")
                && notice.contains("records lost")
            {
                scan.lost += notice
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(1);
            } else if text.contains(" mmap(") || text.contains(" munmap(") {
                scan.map_lines += 1;
            }
            line.clear();
        }
        scan
    })
}

fn rate_run(
    env: &Env,
    plan: &Plan,
    ring: &'static str,
    events: bool,
    target: u64,
) -> Result<RateRun> {
    let mut cmd = Command::new(&env.pmap_trace);
    if !events {
        cmd.arg("--no-events");
    }
    cmd.args(["--ring-size", ring, "--"])
        .arg(&env.workloads)
        .args(["rate", &target.to_string(), &plan.rate_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(&mut cmd)?;
    let scan = scan_output(child.0.stdout.take().expect("stdout is piped"));
    let stderr = line_channel(child.0.stderr.take().expect("stderr is piped"));
    let (attached, _) = wait_for_line(
        &stderr,
        Duration::from_secs(120),
        "pmap-trace to attach",
        |l| l.contains("attached to"),
    )?;
    let cpu = cpu_while_looping(child.pid(), attached, plan.rate_ms);
    let status = child.wait(Duration::from_secs(120), "pmap-trace (event rate)")?;
    let stderr: String = stderr.iter().map(|(_, line)| line).collect();
    let scan = scan.join().unwrap_or_default();
    let Some(result) = parse_result(&stderr).filter(|_| status.success()) else {
        bail!("event-rate run failed: {status}; stderr:\n{stderr}");
    };
    let run = RateRun {
        ring,
        events,
        target,
        achieved: result["calls_per_sec"],
        calls: result["calls"] as u64,
        map_lines: scan.map_lines,
        lost: scan.lost,
        cpu_ns_per_call: cpu
            .map(|(cpu_s, wall_s)| cpu_s / (result["calls_per_sec"] * wall_s) * 1e9),
    };
    println!(
        "event rate: ring {ring:>4}, {:<9} asked {:>9}, made {:>7.0} calls/s, {} lost, \
         pmap-trace CPU {}/call{}",
        if events { "events" } else { "no-events" },
        if target == 0 {
            "flat out".into()
        } else {
            target.to_string()
        },
        run.achieved,
        run.lost,
        run.cpu_ns_per_call.map_or("n/a".into(), format_ns),
        if events {
            format!(
                ", {} mmap/munmap lines for {} calls",
                run.map_lines, run.calls
            )
        } else {
            String::new()
        }
    );
    Ok(run)
}

/// CPU time (user + system, all threads) of `pid` so far, in seconds.
fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime are fields 14 and 15; field 3 is the first after the command name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// pmap-trace's CPU seconds and the wall seconds they were measured over, from 0.3 s after it
/// attached (the workload's 50 ms warm-up is over, its paced loop runs) to 0.2 s before the
/// loop's end: start-up, loading and detaching are left out.
fn cpu_while_looping(pid: i32, attached: Instant, loop_ms: u64) -> Option<(f64, f64)> {
    let from = attached + Duration::from_millis(300);
    let to = attached + Duration::from_millis(loop_ms.checked_sub(200)?);
    thread::sleep(from.saturating_duration_since(Instant::now()));
    let (start, cpu_start) = (Instant::now(), cpu_seconds(pid)?);
    thread::sleep(to.saturating_duration_since(Instant::now()));
    let (end, cpu_end) = (Instant::now(), cpu_seconds(pid)?);
    let wall = end.duration_since(start).as_secs_f64();
    (wall > 0.0).then_some((cpu_end - cpu_start, wall))
}

fn event_rate(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    println!(
        "\n==> event rate: paced mmap(4K)+munmap pairs for {} ms; events go to a pipe the bench \
         reads",
        plan.rate_ms
    );
    for &target in &plan.rates {
        for events in [true, false] {
            check_interrupted()?;
            report.rates.push(quietly("event-rate run", || {
                rate_run(env, plan, DEFAULT_RING, events, target)
            })?);
        }
    }
    // Smaller and smaller rings at the target rate, until one loses records.
    for &ring in &plan.rings {
        check_interrupted()?;
        let run = if ring == DEFAULT_RING {
            None
        } else {
            Some(quietly("event-rate run", || {
                rate_run(env, plan, ring, true, TARGET_RATE)
            })?)
        };
        let lost = run.as_ref().map_or_else(
            || {
                report
                    .rates
                    .iter()
                    .find(|r| r.ring == DEFAULT_RING && r.events && r.target == TARGET_RATE)
                    .is_some_and(|r| r.lost > 0)
            },
            |r| r.lost > 0,
        );
        report.rings.extend(run);
        if lost {
            break;
        }
    }
    Ok(())
}

// --- 3. dumps of 100k mappings, and pmap-trace's own memory --------------------------------------

/// Raises vm.max_map_count for the many-mappings process and puts it back when dropped.
struct MapCountGuard(Option<String>);

const MAX_MAP_COUNT: &str = "/proc/sys/vm/max_map_count";

impl MapCountGuard {
    fn raise_to(needed: u64) -> Result<MapCountGuard> {
        let old = fs::read_to_string(MAX_MAP_COUNT)?.trim().to_owned();
        if old.parse::<u64>().is_ok_and(|old| old >= needed) {
            return Ok(MapCountGuard(None));
        }
        fs::write(MAX_MAP_COUNT, needed.to_string())
            .with_context(|| format!("raising {MAX_MAP_COUNT} to {needed}"))?;
        println!("bench: vm.max_map_count raised from {old} to {needed} for this test");
        Ok(MapCountGuard(Some(old)))
    }
}

impl Drop for MapCountGuard {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            match fs::write(MAX_MAP_COUNT, old) {
                Ok(()) => println!("bench: vm.max_map_count restored to {old}"),
                Err(err) => eprintln!("bench: could not restore vm.max_map_count to {old}: {err}"),
            }
        }
    }
}

#[derive(Default)]
struct DumpResults {
    mappings: u64,
    /// First dump of the pmap-trace that launched the process and saw its mappings made.
    launch_first: Option<f64>,
    launch_rss_kb: Option<u64>,
    launch_hwm_kb: Option<u64>,
    /// First dump of a pmap-trace attached to the running process, each run.
    attach: Vec<f64>,
    attach_rss_kb: Vec<u64>,
    attach_hwm_kb: Vec<u64>,
    pmap: Vec<f64>,
    /// Whether every dump's total line was the same as pmap's.
    totals_agree: bool,
    stacks: StacksMemory,
}

/// pmap-trace `--sites` tracing a process that grew memory from many distinct call stacks.
#[derive(Default)]
struct StacksMemory {
    stacks: u64,
    /// The call sites its report counted.
    sites: Option<u64>,
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
    /// Notices of lost records or stack copies on its output.
    lost_notices: usize,
}

/// How long after a dump's last line its memory is read: the dump returns its freed memory to
/// the kernel after writing.
const DUMP_SETTLE: Duration = Duration::from_millis(300);

fn is_total(line: &str) -> bool {
    line.starts_with(" total")
}

/// Sends SIGUSR1 and times the arrival of the dump's " total" line.
fn time_dump(tracer: &Guarded, lines: &Receiver<(Instant, String)>) -> Result<(f64, String)> {
    let start = Instant::now();
    tracer.signal(libc::SIGUSR1);
    let (at, line) = wait_for_line(
        lines,
        Duration::from_secs(120),
        "the dump's total",
        is_total,
    )?;
    Ok((at.duration_since(start).as_secs_f64() * 1e9, line))
}

/// Runs `pmap PID` and times its " total" line from the moment it is started.
fn time_pmap(env: &Env, pid: i32) -> Result<(f64, String)> {
    let start = Instant::now();
    let mut child = Guarded::spawn(
        Command::new(&env.pmap)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let lines = line_channel(child.0.stdout.take().expect("stdout is piped"));
    let (at, line) = wait_for_line(&lines, Duration::from_secs(120), "pmap's total", is_total)?;
    child.wait(Duration::from_secs(60), "pmap")?;
    Ok((at.duration_since(start).as_secs_f64() * 1e9, line))
}

fn dumps(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    let n = plan.mappings;
    println!("\n==> dumps: a process with {n} mappings, pmap-trace's dump vs pmap");
    let _map_count = MapCountGuard::raise_to((n + 1000).max(2 * n))?;
    let results = &mut report.dumps;
    results.mappings = n;
    results.totals_agree = true;

    // pmap-trace launches the process and sees its mappings made (n/2 mprotect calls). Its first
    // dump happens once, so it is measured after a wait for quiet but cannot be redone.
    wait_for_quiet(true)?;
    let (mut launcher, launch_out, pid) = launch_until_ready(
        env,
        &["--no-events"],
        &["maps", &n.to_string()],
        "the mappings process",
    )?;
    thread::sleep(Duration::from_secs(1));
    let (ns, total) = time_dump(&launcher, &launch_out)?;
    let (pmap_ns, pmap_total) = time_pmap(env, pid)?;
    results.totals_agree &= total == pmap_total;
    println!(
        "dump: launch-mode pmap-trace first dump {} ({}), pmap {} ({})",
        format_ns(ns),
        total.trim(),
        format_ns(pmap_ns),
        pmap_total.trim()
    );
    results.launch_first = Some(ns);
    results.pmap.push(pmap_ns);
    // pmap ran meanwhile, which took longer than DUMP_SETTLE.
    results.launch_rss_kb = status_kb(launcher.pid(), "VmRSS");
    results.launch_hwm_kb = status_kb(launcher.pid(), "VmHWM");

    // Fresh pmap-traces attached to the same process, each timed on its first dump, alternating
    // with pmap.
    for rep in 0..plan.dump_reps {
        check_interrupted()?;
        let pmap_first = rep % 2 == 1;
        let (attach_ns, pmap_ns) = quietly("dump", || {
            let mut pmap_ns = None;
            if pmap_first {
                let (ns, total) = time_pmap(env, pid)?;
                results.totals_agree &= total == pmap_total;
                pmap_ns = Some(ns);
            }
            let (attach_ns, rss, hwm) = attached_first_dump(env, pid, &pmap_total, results)?;
            if !pmap_first {
                let (ns, total) = time_pmap(env, pid)?;
                results.totals_agree &= total == pmap_total;
                pmap_ns = Some(ns);
            }
            Ok(((attach_ns, rss, hwm), pmap_ns.expect("pmap ran")))
        })?;
        let (attach_ns, rss, hwm) = attach_ns;
        results.attach.push(attach_ns);
        results.attach_rss_kb.extend(rss);
        results.attach_hwm_kb.extend(hwm);
        results.pmap.push(pmap_ns);
        println!(
            "dump {}/{}: attached pmap-trace first dump {}, pmap {}",
            rep + 1,
            plan.dump_reps,
            format_ns(attach_ns),
            format_ns(pmap_ns)
        );
    }

    // SIGTERM ends the mappings process; its pmap-trace then exits after a final dump.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    launcher.wait(Duration::from_secs(60), "launch-mode pmap-trace")?;

    // Memory is not disturbed by other programs' CPU use: measured once.
    results.stacks = stacks_memory(env, plan)?;
    Ok(())
}

/// `pmap-trace FLAGS -- workloads MODE...` started, and run until the workload says
/// `READY pid=N` on stderr: the tracer, its stdout lines and the workload's PID.
fn launch_until_ready(
    env: &Env,
    flags: &[&str],
    workload: &[&str],
    what: &str,
) -> Result<(Guarded, Lines, i32)> {
    let mut tracer = Guarded::spawn(
        Command::new(&env.pmap_trace)
            .args(flags)
            .arg("--")
            .arg(&env.workloads)
            .args(workload)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let out = line_channel(tracer.0.stdout.take().expect("stdout is piped"));
    let err = line_channel(tracer.0.stderr.take().expect("stderr is piped"));
    let (_, ready) = wait_for_line(&err, Duration::from_secs(120), what, |line| {
        line.starts_with("READY pid=")
    })?;
    let pid = ready
        .trim()
        .trim_start_matches("READY pid=")
        .parse()
        .context("READY line")?;
    Ok((tracer, out, pid))
}

/// pmap-trace's memory with `--sites` after the first dump of a process that mapped a page
/// from each of `plan.stacks` distinct call stacks (traced from its start, default ring).
fn stacks_memory(env: &Env, plan: &Plan) -> Result<StacksMemory> {
    let n = plan.stacks;
    println!("\n==> memory: pmap-trace --sites 10 on {n} distinct call stacks");
    let (mut tracer, out, pid) = launch_until_ready(
        env,
        &["--no-events", "--sites", "10"],
        &["stacks", &n.to_string()],
        "the stacks process",
    )?;
    // Its last growth calls are through the ring and unwound.
    thread::sleep(Duration::from_secs(1));
    tracer.signal(libc::SIGUSR1);
    let mut result = StacksMemory {
        stacks: n,
        ..StacksMemory::default()
    };
    let sites_line = |line: &str| line.starts_with("sites ") && line.contains(" call sites;");
    let (_, header) = wait_for_line(
        &out,
        Duration::from_secs(120),
        "the sites report",
        sites_line,
    )?;
    result.sites = header
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok());
    wait_for_line(&out, Duration::from_secs(120), "the growth list", |line| {
        line.starts_with("sites ") && line.contains(" by growth ")
    })?;
    thread::sleep(DUMP_SETTLE);
    result.rss_kb = status_kb(tracer.pid(), "VmRSS");
    result.hwm_kb = status_kb(tracer.pid(), "VmHWM");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    tracer.wait(Duration::from_secs(60), "pmap-trace --sites")?;
    result.lost_notices = out
        .iter()
        .filter(|(_, line)| line.starts_with("pmap-trace: ") && line.contains(" lost "))
        .count();
    println!(
        "memory: --sites with {n} stacks: {} call sites, VmRSS {} (peak VmHWM {}), {} loss notices",
        result.sites.map_or("?".into(), |s| s.to_string()),
        format_kb(result.rss_kb),
        format_kb(result.hwm_kb),
        result.lost_notices
    );
    Ok(result)
}

/// Attaches a fresh pmap-trace to `pid` and times its first dump; returns that and the
/// tracer's VmRSS and VmHWM after it.
fn attached_first_dump(
    env: &Env,
    pid: i32,
    pmap_total: &str,
    results: &mut DumpResults,
) -> Result<(f64, Option<u64>, Option<u64>)> {
    let mut attached = Guarded::spawn(
        Command::new(&env.pmap_trace)
            .args(["--no-events", "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let out = line_channel(attached.0.stdout.take().expect("stdout is piped"));
    let err = line_channel(attached.0.stderr.take().expect("stderr is piped"));
    wait_for_line(
        &err,
        Duration::from_secs(120),
        "pmap-trace to attach",
        |l| l.contains("attached to"),
    )?;
    let (ns, total) = time_dump(&attached, &out)?;
    results.totals_agree &= total == pmap_total;
    thread::sleep(DUMP_SETTLE);
    let rss = status_kb(attached.pid(), "VmRSS");
    let hwm = status_kb(attached.pid(), "VmHWM");
    attached.stop("attached pmap-trace")?;
    Ok((ns, rss, hwm))
}

// --- 4. a process that is not traced -------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Bystander {
    Alone,
    PmapTrace,
    Bpftrace,
}

impl Bystander {
    fn label(self) -> &'static str {
        match self {
            Bystander::Alone => "no tracer running",
            Bystander::PmapTrace => "pmap-trace -p SLEEPER running",
            Bystander::Bpftrace => "bpftrace script on SLEEPER running",
        }
    }
}

/// What the process that is not traced does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum BystanderLoop {
    /// A syscall no tracer hooks: only the syscall slow path that any attached syscall
    /// tracepoint turns on for every task.
    Getppid,
    /// mmap + munmap, whose tracepoints run the tracer's program (which finds no target).
    Mmap,
    /// ioctl, whose tracepoint pmap-trace hooks for userfaultfd registrations.
    Ioctl,
}

impl BystanderLoop {
    const ALL: [BystanderLoop; 3] = [
        BystanderLoop::Getppid,
        BystanderLoop::Mmap,
        BystanderLoop::Ioctl,
    ];

    fn mode(self) -> &'static str {
        match self {
            BystanderLoop::Getppid => "getppid",
            BystanderLoop::Mmap => "mmap",
            BystanderLoop::Ioctl => "ioctl",
        }
    }
}

#[derive(Default)]
struct BystanderResults {
    samples: BTreeMap<(Bystander, BystanderLoop), Vec<f64>>,
}

impl BystanderResults {
    fn median(&self, which: Bystander, load: BystanderLoop) -> Option<f64> {
        self.samples.get(&(which, load)).and_then(|v| median(v))
    }
}

/// Starts a tracer on `sleeper` and waits until it is live.
fn start_tracer(env: &Env, which: Bystander, sleeper: i32) -> Result<Option<Guarded>> {
    let (mut cmd, ready_on_stderr): (Command, bool) = match which {
        Bystander::Alone => return Ok(None),
        Bystander::PmapTrace => {
            let mut cmd = Command::new(&env.pmap_trace);
            cmd.args(["--no-events", "-o", "/dev/null", "-p", &sleeper.to_string()]);
            (cmd, true)
        }
        Bystander::Bpftrace => {
            let mut cmd = Command::new(env.bpftrace.as_ref().map_err(|e| anyhow!("{e}"))?);
            cmd.arg(&env.bt_pid).arg(sleeper.to_string());
            (cmd, false)
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tracer = Guarded::spawn(&mut cmd)?;
    let out = line_channel(tracer.0.stdout.take().expect("stdout is piped"));
    let err = line_channel(tracer.0.stderr.take().expect("stderr is piped"));
    let (lines, marker) = if ready_on_stderr {
        (&err, "attached to")
    } else {
        (&out, "READY")
    };
    wait_for_line(lines, Duration::from_secs(60), which.label(), |line| {
        line.contains(marker)
    })?;
    Ok(Some(tracer))
}

fn bystander(env: &Env, plan: &Plan, report: &mut Report) -> Result<()> {
    println!(
        "\n==> a process that is not traced: getppid, mmap and ioctl loops while a tracer watches \
         an idle process"
    );
    let sleeper = Guarded::spawn(
        Command::new("sleep")
            .arg("100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )?;
    let mut configs = vec![Bystander::Alone, Bystander::PmapTrace];
    if env.bpftrace.is_ok() && !report.workloads.failed.contains_key(&Tracer::Bpftrace) {
        configs.push(Bystander::Bpftrace);
    }
    for round in 0..plan.rounds {
        for i in 0..configs.len() {
            check_interrupted()?;
            let which = configs[(i + round) % configs.len()];
            let per_loop = quietly("bystander loops", || {
                let tracer = start_tracer(env, which, sleeper.pid())?;
                let mut per_loop = Vec::new();
                for load in BystanderLoop::ALL {
                    let result = run_workload(
                        Command::new(&env.workloads)
                            .args([load.mode(), &plan.bystander_ms.to_string()]),
                    );
                    per_loop.push((load, result));
                }
                if let Some(tracer) = tracer {
                    tracer.stop(which.label())?;
                }
                per_loop
                    .into_iter()
                    .map(|(load, result)| {
                        let ns = result.with_context(|| format!("{} loop", load.mode()))?.0
                            ["ns_per_iter"];
                        Ok((load, ns))
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            for (load, ns) in per_loop {
                println!(
                    "[round {}/{}] {:<8} {:<36} {}/iteration",
                    round + 1,
                    plan.rounds,
                    load.mode(),
                    which.label(),
                    format_ns(ns)
                );
                report
                    .bystander
                    .samples
                    .entry((which, load))
                    .or_default()
                    .push(ns);
            }
        }
    }
    Ok(())
}

// --- the report ----------------------------------------------------------------------------------

struct Report {
    header: String,
    activity: String,
    rate_ms: u64,
    bt_script: String,
    tool_notes: Vec<String>,
    workloads: WorkloadResults,
    rates: Vec<RateRun>,
    rings: Vec<RateRun>,
    dumps: DumpResults,
    bystander: BystanderResults,
}

impl Report {
    fn new(command: &str, plan: &Plan, env: &Env) -> Report {
        let mut header = String::new();
        let _ = writeln!(header, "- Command: `{command}` (as root)");
        let _ = writeln!(header, "- Date: {}", date());
        let _ = writeln!(header, "- Machine: {}", machine());
        let _ = writeln!(
            header,
            "- Plan: {} alternating rounds; timed loops of {} ms (python: {} ms); event-rate runs \
             of {} ms",
            plan.rounds, plan.loop_ms, plan.python_ms, plan.rate_ms
        );
        let versions: Vec<String> = env
            .versions
            .iter()
            .map(|(name, version)| format!("{name}: {version}"))
            .collect();
        let _ = writeln!(header, "- Versions: {}", versions.join("; "));
        let tool_notes = [("bpftrace", &env.bpftrace), ("strace", &env.strace)]
            .iter()
            .filter_map(|(name, tool)| {
                tool.as_ref().err().map(|why| {
                    format!("{name} could not be installed ({why}); its column is empty")
                })
            })
            .collect();
        Report {
            header,
            activity: String::new(),
            rate_ms: plan.rate_ms,
            bt_script: env.bt_script.clone(),
            tool_notes,
            workloads: WorkloadResults::default(),
            rates: Vec::new(),
            rings: Vec::new(),
            dumps: DumpResults::default(),
            bystander: BystanderResults::default(),
        }
    }

    fn median(&self, workload: Workload, tracer: Tracer) -> Option<f64> {
        median(self.workloads.samples.get(&(workload, tracer))?)
    }

    fn ratio(&self, workload: Workload, tracer: Tracer) -> Option<f64> {
        Some(self.median(workload, tracer)? / self.median(workload, Tracer::None)?)
    }

    fn render(&self, elapsed: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.header.trim_end());
        let _ = writeln!(
            out,
            "- Wall time of the whole bench: {:.0} s",
            elapsed.as_secs_f64()
        );
        let _ = writeln!(out, "- Other activity: {}", self.activity);
        for note in self.tool_notes.iter().chain(self.workloads.failed.values()) {
            let _ = writeln!(out, "- **Note**: {note}");
        }

        // Workloads.
        let _ = writeln!(
            out,
            "\n### Overhead on the traced program\n\nMedian time per iteration of each \
             workload's own timed loop; in brackets the ratio to the untraced median of the \
             same run. Calls/iter: traced calls per iteration, counted from strace's output.\n"
        );
        let mut table = Table::new(
            std::iter::once("workload")
                .chain(std::iter::once("calls/iter"))
                .chain(Tracer::ALL.iter().map(|t| t.label())),
        );
        for workload in Workload::ALL {
            let mut row = vec![
                workload.label().to_owned(),
                self.workloads
                    .calls_per_iter
                    .get(&workload)
                    .and_then(|v| median(v))
                    .map_or("n/a".into(), |c| {
                        if c >= 10.0 {
                            format!("{c:.0}")
                        } else if c >= 0.01 {
                            format!("{c:.2}")
                        } else {
                            format!("{c:.5}")
                        }
                    }),
            ];
            for tracer in Tracer::ALL {
                row.push(match (self.median(workload, tracer), tracer) {
                    (None, _) => "n/a".into(),
                    (Some(ns), Tracer::None) => format_ns(ns),
                    (Some(ns), _) => format!(
                        "{} ({})",
                        format_ns(ns),
                        self.ratio(workload, tracer)
                            .map_or("?".into(), format_ratio)
                    ),
                });
            }
            table.row(row);
        }
        out.push_str(&table.render());

        // Stack capture.
        let _ = writeln!(
            out,
            "\n### Cost of stack capture (`--sites`)\n\nWhat `--sites` adds per call that \
             carries a stack: (median with `--sites 10` − median with `--no-events`) / growth \
             calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that \
             raised the break, `mremap` that grew, counted from strace's output. Each copies \
             the caller's stack up to the main thread's stack top, 16 KiB at most (the \
             default).\n"
        );
        let mut table = Table::new([
            "workload",
            "growth calls/iter",
            "pmap-trace --no-events",
            "pmap-trace --sites",
            "added per growth call",
        ]);
        for workload in Workload::ALL {
            let growth = self
                .workloads
                .growth_per_iter
                .get(&workload)
                .and_then(|v| median(v));
            let plain = self.median(workload, Tracer::PmapNoEvents);
            let sites = self.median(workload, Tracer::PmapSites);
            let per_call = match (growth, plain, sites) {
                (Some(growth), Some(plain), Some(sites)) if growth > 0.0 => {
                    let added = (sites - plain) / growth;
                    format!(
                        "{}{}",
                        if added < 0.0 { "-" } else { "" },
                        format_ns(added.abs())
                    )
                }
                _ => "n/a".into(),
            };
            table.row(vec![
                workload.label().to_owned(),
                growth.map_or("n/a".into(), |g| format!("{g:.3}")),
                plain.map_or("n/a".into(), format_ns),
                sites.map_or("n/a".into(), format_ns),
                per_call,
            ]);
        }
        out.push_str(&table.render());

        // Event rate.
        let _ = writeln!(
            out,
            "\n### Event rate and lost records\n\nA paced loop of `mmap(4 KiB)` + `munmap` \
             under `pmap-trace [--no-events] --ring-size R -- …`, {} per run; with events, \
             pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines \
             and the \"records lost\" notices). \"asked\" is the paced rate (flat out: no \
             pacing); \"made\" is what the traced loop achieved.\n",
            format_ns(self.rate_ms as f64 * 1e6)
        );
        let mut table = Table::new([
            "ring",
            "output",
            "asked calls/s",
            "made calls/s",
            "lost records",
            "mmap/munmap lines / calls",
            "pmap-trace CPU / call",
        ]);
        for run in self.rates.iter().chain(&self.rings) {
            table.row(vec![
                run.ring.to_owned(),
                if run.events { "events" } else { "--no-events" }.to_owned(),
                if run.target == 0 {
                    "flat out".into()
                } else {
                    format!("{}k", run.target / 1000)
                },
                format!("{:.0}k", run.achieved / 1000.0),
                run.lost.to_string(),
                if run.events {
                    format!("{} / {}", run.map_lines, run.calls)
                } else {
                    "–".into()
                },
                run.cpu_ns_per_call.map_or("n/a".into(), format_ns),
            ]);
        }
        out.push_str(&table.render());
        if let Some(ring) = self.smallest_lossless_ring() {
            let _ = writeln!(
                out,
                "\nSmallest ring with no lost records at {}k calls/s asked (events on): {ring}.",
                TARGET_RATE / 1000
            );
        }

        // Dumps.
        let d = &self.dumps;
        let _ = writeln!(
            out,
            "\n### Dump of a process with {} mappings, and pmap-trace's memory\n\nTime from \
             SIGUSR1 to the dump's ` total` line on pmap-trace's output (a pipe), against \
             `pmap PID` from its start to its ` total` line. The launch-mode pmap-trace saw \
             the mappings made ({} mprotect calls through the ring); the attached ones were \
             each started fresh and timed on their first dump.\n",
            d.mappings,
            d.mappings / 2
        );
        let mut table = Table::new(["", "median", "runs", "vs pmap"]);
        let pmap = median(&d.pmap);
        let vs_pmap = |ns: Option<f64>| match (ns, pmap) {
            (Some(ns), Some(pmap)) => format_ratio(ns / pmap),
            _ => "n/a".into(),
        };
        if let Some(ns) = d.launch_first {
            table.row(vec![
                "pmap-trace (launch mode), first dump".into(),
                format_ns(ns),
                "1".into(),
                vs_pmap(Some(ns)),
            ]);
        }
        table.row(vec![
            "pmap-trace -p PID, first dump".into(),
            median(&d.attach).map_or("n/a".into(), format_ns),
            d.attach.len().to_string(),
            vs_pmap(median(&d.attach)),
        ]);
        table.row(vec![
            "pmap PID".into(),
            pmap.map_or("n/a".into(), format_ns),
            d.pmap.len().to_string(),
            "1.00×".into(),
        ]);
        out.push_str(&table.render());
        let _ = writeln!(
            out,
            "\nTotals of every dump equal to pmap's: {}.",
            if d.totals_agree { "yes" } else { "NO" }
        );
        let attach_rss = median_u64(&d.attach_rss_kb);
        let attach_hwm = median_u64(&d.attach_hwm_kb);
        let _ = writeln!(
            out,
            "\npmap-trace's own memory with {} mappings traced, after the dump: launch mode \
             VmRSS {} (peak VmHWM {}); attached (median) VmRSS {} (peak VmHWM {}).",
            d.mappings,
            format_kb(d.launch_rss_kb),
            format_kb(d.launch_hwm_kb),
            format_kb(attach_rss),
            format_kb(attach_hwm)
        );
        let st = &d.stacks;
        let _ = writeln!(
            out,
            "\npmap-trace `--sites 10` on a process that mapped a page from each of {} distinct \
             call stacks, after its first dump and sites report: VmRSS {} (peak VmHWM {}); the \
             report counted {} call sites; notices of lost records or stack copies: {}.",
            st.stacks,
            format_kb(st.rss_kb),
            format_kb(st.hwm_kb),
            st.sites.map_or("?".into(), |n| n.to_string()),
            st.lost_notices
        );

        // Bystander.
        let _ = writeln!(
            out,
            "\n### A process that is not traced\n\nLoops of a process that is not traced, while a \
             tracer watches an idle `sleep`; median ns per iteration: `getppid` (a syscall no \
             tracer hooks), the `mmap 64K + touch + munmap` loop (hooked calls of another \
             process), `ioctl(FIONREAD)` on a pipe (an ioctl pmap-trace's program filters \
             out).\n"
        );
        let mut table = Table::new([
            "",
            "getppid",
            "ratio",
            "mmap loop",
            "ratio",
            "ioctl",
            "ratio",
        ]);
        let tracers: std::collections::BTreeSet<Bystander> = self
            .bystander
            .samples
            .keys()
            .map(|&(which, _)| which)
            .collect();
        for which in tracers {
            let mut row = vec![which.label().to_string()];
            for load in BystanderLoop::ALL {
                let ns = self.bystander.median(which, load);
                let alone = self.bystander.median(Bystander::Alone, load);
                row.push(ns.map_or("n/a".into(), format_ns));
                row.push(match (ns, alone) {
                    (Some(ns), Some(alone)) => format_ratio(ns / alone),
                    _ => "n/a".into(),
                });
            }
            table.row(row);
        }
        out.push_str(&table.render());

        // Targets.
        let _ = writeln!(out, "\n### Targets\n");
        let mut table = Table::new(["target", "measured", "met?"]);
        for (target, measured, met) in self.targets() {
            table.row(vec![
                target,
                measured,
                match met {
                    Some(true) => "met".into(),
                    Some(false) => "**missed**".into(),
                    None => "not measured".into(),
                },
            ]);
        }
        out.push_str(&table.render());

        let _ = writeln!(
            out,
            "\nThe bpftrace script (launch mode; `pid == $1` instead of `pid == cpid` for the \
             untraced-process test):\n\n```\n{}```",
            self.bt_script
        );
        out
    }

    fn smallest_lossless_ring(&self) -> Option<&'static str> {
        let default = self
            .rates
            .iter()
            .find(|r| r.ring == DEFAULT_RING && r.events && r.target == TARGET_RATE)?;
        let mut best = (default.lost == 0).then_some(DEFAULT_RING);
        for run in &self.rings {
            if run.lost == 0 {
                best = Some(run.ring);
            }
        }
        best
    }

    /// (target, what was measured, met) for each target of the issue.
    fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let mut targets = Vec::new();
        let overhead = |r: f64| (r - 1.0) * 100.0;
        // What the hook costs with programs that do nothing: no design on these tracepoints
        // can go below it.
        let floor = self.ratio(Workload::Mmap, Tracer::Floor);
        let floor_text = floor.map_or(String::new(), |f| {
            format!(
                "; empty programs on the same tracepoints: {:+.1} %",
                overhead(f)
            )
        });
        for tracer in [Tracer::PmapEvents, Tracer::PmapNoEvents, Tracer::PmapSites] {
            let ratio = self.ratio(Workload::Mmap, tracer);
            targets.push((
                format!("mmap loop ≤ +10 % ({})", tracer.label()),
                ratio.map_or("n/a".into(), |r| {
                    format!("{:+.1} %{floor_text}", overhead(r))
                }),
                ratio.map(|r| r <= 1.10),
            ));
        }
        let bpftrace = self.ratio(Workload::Mmap, Tracer::Bpftrace);
        for tracer in [Tracer::PmapEvents, Tracer::PmapNoEvents, Tracer::PmapSites] {
            let ours = self.ratio(Workload::Mmap, tracer);
            let (measured, met) = match (ours, bpftrace) {
                (Some(ours), Some(bt)) if bt > 1.0 => (
                    format!(
                        "{:+.1} % vs bpftrace's {:+.1} %: {:.2} of it",
                        overhead(ours),
                        overhead(bt),
                        (ours - 1.0) / (bt - 1.0)
                    ),
                    Some((ours - 1.0) <= (bt - 1.0) / 4.0),
                ),
                _ => ("n/a (bpftrace not measured)".into(), None),
            };
            targets.push((
                format!("mmap loop overhead ≤ ¼ of bpftrace's ({})", tracer.label()),
                measured,
                met,
            ));
        }
        let at_target = self
            .rates
            .iter()
            .find(|r| r.ring == DEFAULT_RING && r.events && r.target == TARGET_RATE);
        targets.push((
            format!(
                "0 lost records at {}k calls/s (default ring {DEFAULT_RING}, events on)",
                TARGET_RATE / 1000
            ),
            at_target.map_or("n/a".into(), |r| {
                format!(
                    "{} lost at {:.0}k calls/s made",
                    r.lost,
                    r.achieved / 1000.0
                )
            }),
            // The rate counts only if the traced loop really made it (within 2 %).
            at_target.map(|r| r.lost == 0 && r.achieved >= 0.98 * TARGET_RATE as f64),
        ));
        for load in BystanderLoop::ALL {
            let alone = self.bystander.median(Bystander::Alone, load);
            let with = self.bystander.median(Bystander::PmapTrace, load);
            let ratio = alone.zip(with).map(|(a, w)| w / a);
            targets.push((
                format!("untraced process slowed < 2 % ({} loop)", load.mode()),
                ratio.map_or("n/a".into(), |r| format!("{:+.1} %", overhead(r))),
                ratio.map(|r| r < 1.02),
            ));
        }
        let d = &self.dumps;
        let attach = median(&d.attach);
        let pmap = median(&d.pmap);
        targets.push((
            format!("dump of {} mappings faster than pmap", d.mappings),
            match (attach, pmap) {
                (Some(a), Some(p)) => format!(
                    "{} vs pmap {} (launch mode: {})",
                    format_ns(a),
                    format_ns(p),
                    d.launch_first.map_or("n/a".into(), format_ns)
                ),
                _ => "n/a".into(),
            },
            attach
                .zip(pmap)
                .map(|(a, p)| a < p && d.launch_first.is_none_or(|l| l < p)),
        ));
        let rss = [d.launch_rss_kb, median_u64(&d.attach_rss_kb)]
            .into_iter()
            .flatten()
            .max();
        let hwm = [d.launch_hwm_kb, median_u64(&d.attach_hwm_kb)]
            .into_iter()
            .flatten()
            .max();
        // MB as in the issue: 10^6 bytes.
        targets.push((
            format!(
                "own RSS < 50 MB at {} mappings (VmRSS after the dump)",
                d.mappings
            ),
            format!("{} (worst of launch and attach mode)", format_kb(rss)),
            rss.map(|kb| kb * 1024 < 50_000_000),
        ));
        targets.push((
            format!("own RSS < 50 MB at {} mappings, peak (VmHWM)", d.mappings),
            format!("{} (worst of launch and attach mode)", format_kb(hwm)),
            hwm.map(|kb| kb * 1024 < 50_000_000),
        ));
        let st = &d.stacks;
        for (what, kb) in [
            ("VmRSS after the dump", st.rss_kb),
            ("peak (VmHWM)", st.hwm_kb),
        ] {
            targets.push((
                format!(
                    "own RSS < 50 MB at {} distinct stacks (--sites), {what}",
                    st.stacks
                ),
                format_kb(kb),
                kb.map(|kb| kb * 1024 < 50_000_000),
            ));
        }
        targets
    }
}

fn median_u64(values: &[u64]) -> Option<u64> {
    let values: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    median(&values).map(|m| m as u64)
}

fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

fn format_kb(kb: Option<u64>) -> String {
    kb.map_or("n/a".into(), |kb| {
        format!("{:.1} MB", kb as f64 * 1024.0 / 1e6)
    })
}

/// A Markdown table with padded columns, readable as plain text too.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<'a>(header: impl IntoIterator<Item = &'a str>) -> Table {
        Table {
            rows: vec![header.into_iter().map(str::to_owned).collect()],
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let columns = self.rows[0].len();
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|row| row.get(i).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |row: &[String]| {
            let cells: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = row.get(i).map_or("", String::as_str);
                    format!("{cell}{}", " ".repeat(widths[i] - cell.chars().count()))
                })
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.rows[0]);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        for row in &self.rows[1..] {
            out.push_str(&line(row));
        }
        out
    }
}

fn date() -> String {
    probe(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|out| out.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// nproc, memory, kernel and CPU model.
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU".into(), |(_, model)| model.trim().to_owned());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".into(), |k| k.trim().to_owned());
    format!(
        "{nproc} CPUs ({cpu}), {} memory, kernel {kernel}",
        mem_kb.map_or("unknown".into(), |kb| format!(
            "{:.1} GiB",
            kb as f64 / (1024.0 * 1024.0)
        ))
    )
}

/// Replaces the results section of BENCHMARKS.md.
fn write_results(markdown: &str) -> Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(RESULTS_BEGIN), text.find(RESULTS_END)) else {
        bail!(
            "{} lacks the results markers `{RESULTS_BEGIN}` … `{RESULTS_END}`",
            path.display()
        );
    };
    let mut new = String::with_capacity(text.len() + markdown.len());
    new.push_str(&text[..begin + RESULTS_BEGIN.len()]);
    new.push_str("\n\n");
    new.push_str(markdown.trim_end());
    new.push_str("\n\n");
    new.push_str(&text[end..]);
    fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
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

    #[test]
    fn counts_calls_between_markers() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("strace.out");
        fs::write(
            &path,
            "1 mmap(NULL, 8192) = 0x1\n\
             1 madvise(NULL, 0, MADV_NORMAL) = 0\n\
             1 mmap(NULL, 65536) = 0x2\n1 munmap(0x2, 65536) = 0\n\
             1 mmap(NULL, 65536) = 0x2\n1 munmap(0x2, 65536) = 0\n\
             1 madvise(NULL, 0, MADV_NORMAL) = 0\n1 munmap(0x9, 4096) = 0\n",
        )
        .unwrap();
        assert_eq!(calls_per_iteration(&path, 2.0), Some(2.0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_growth_calls_as_the_kernel_side_picks_them() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-growth-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("strace.out");
        fs::write(
            &path,
            "7 brk(NULL) = 0x5000\n\
             7 madvise(NULL, 0, MADV_NORMAL) = 0\n\
             7 mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f00\n\
             7 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f10\n\
             7 mmap(NULL, 1, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)\n\
             7 brk(0x15000) = 0x15000\n\
             7 brk(0x5000) = 0x5000\n\
             7 mremap(0x7f00, 65536, 131072, MREMAP_MAYMOVE) = 0x7e00\n\
             7 mremap(0x7e00, 131072, 4096, 0) = 0x7e00\n\
             7 madvise(NULL, 0, MADV_NORMAL) = 0\n",
        )
        .unwrap();
        // The anonymous mmap, the brk that raised the break and the growing mremap.
        assert_eq!(growth_calls_per_iteration(&path, 1.0), Some(3.0));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The report of a run that measured every part: each section filled, and the formatting
    /// branches the measurements reach (ratios of 10× and more, a negative stack cost, lost
    /// records, rings smaller than the default, a missed target, an even number of samples).
    fn full_report() -> Report {
        let mut report = report_shell(Vec::new());
        report.workloads = full_workloads();
        (report.rates, report.rings) = full_rates();
        report.dumps = full_dumps();
        report.bystander = full_bystander();
        report
    }

    fn full_workloads() -> WorkloadResults {
        let mut w = WorkloadResults::default();
        let untraced = [
            (Workload::Mmap, 1_850.0),
            (Workload::Brk, 940.0),
            (Workload::Malloc, 38.4),
            (Workload::Python, 2_412_000.0),
        ];
        for (workload, ns) in untraced {
            for (tracer, factor) in [
                (Tracer::None, 1.0),
                (Tracer::PmapNoEvents, 1.043),
                (Tracer::PmapEvents, 1.118),
                (Tracer::PmapSites, 1.307),
                (Tracer::Floor, 1.021),
                (Tracer::Bpftrace, 1.92),
                (Tracer::Strace, 41.5),
            ] {
                let factor = if workload == Workload::Python && tracer == Tracer::PmapSites {
                    1.02 // below --no-events: a negative cost per growth call
                } else {
                    factor
                };
                let ns = ns * factor;
                w.samples
                    .insert((workload, tracer), vec![ns * 1.01, ns, ns * 0.97]);
            }
        }
        // An even number of samples: the median is the mean of the middle two.
        w.samples.insert(
            (Workload::Brk, Tracer::None),
            vec![950.0, 930.0, 944.0, 936.0],
        );
        w.calls_per_iter.insert(Workload::Mmap, vec![3.0, 3.0, 3.0]);
        w.calls_per_iter
            .insert(Workload::Brk, vec![12.0, 12.0, 12.0]);
        w.calls_per_iter
            .insert(Workload::Malloc, vec![0.00195, 0.00201, 0.00187]);
        w.growth_per_iter
            .insert(Workload::Mmap, vec![1.0, 1.0, 1.0]);
        w.growth_per_iter.insert(Workload::Brk, vec![1.0, 1.0, 1.0]);
        w.growth_per_iter
            .insert(Workload::Malloc, vec![0.0, 0.0, 0.0]);
        w.growth_per_iter
            .insert(Workload::Python, vec![0.041, 0.043, 0.042]);
        w
    }

    /// The paced rates at the default ring, and the smaller rings down to one that loses records.
    fn full_rates() -> (Vec<RateRun>, Vec<RateRun>) {
        let rate = |ring, events, target, achieved: f64, lost, cpu_ns_per_call| RateRun {
            ring,
            events,
            target,
            achieved,
            calls: (achieved * 2.0) as u64,
            map_lines: if events {
                (achieved * 2.0) as u64 - lost
            } else {
                0
            },
            lost,
            cpu_ns_per_call,
        };
        let rates = vec![
            rate(DEFAULT_RING, true, 100_000, 99_870.0, 0, Some(412.0)),
            rate(DEFAULT_RING, false, 100_000, 99_912.0, 0, Some(96.5)),
            rate(DEFAULT_RING, true, TARGET_RATE, 296_480.0, 0, Some(388.0)),
            rate(DEFAULT_RING, false, TARGET_RATE, 297_010.0, 0, Some(91.0)),
            rate(DEFAULT_RING, true, 0, 1_204_330.0, 48_211, None),
            rate(DEFAULT_RING, false, 0, 1_530_020.0, 0, Some(1_250.0)),
        ];
        let rings = vec![
            rate("256K", true, TARGET_RATE, 296_700.0, 0, Some(392.0)),
            rate("16K", true, TARGET_RATE, 295_100.0, 1_530, Some(401.0)),
        ];
        (rates, rings)
    }

    fn full_dumps() -> DumpResults {
        DumpResults {
            mappings: 100_000,
            launch_first: Some(38_210_000.0),
            launch_rss_kb: Some(14_336),
            launch_hwm_kb: Some(21_504),
            attach: vec![41_020_000.0, 39_540_000.0, 40_230_000.0],
            attach_rss_kb: vec![12_288, 12_400, 12_300],
            attach_hwm_kb: vec![20_000, 20_480, 20_100],
            pmap: vec![61_000_000.0, 60_300_000.0, 62_800_000.0, 59_900_000.0],
            totals_agree: true,
            stacks: StacksMemory {
                stacks: 10_000,
                sites: Some(10_000),
                rss_kb: Some(30_720),
                hwm_kb: Some(52_000),
                lost_notices: 0,
            },
        }
    }

    fn full_bystander() -> BystanderResults {
        let mut bystander = BystanderResults::default();
        for (which, factor) in [
            (Bystander::Alone, 1.0),
            (Bystander::PmapTrace, 1.012),
            (Bystander::Bpftrace, 1.35),
        ] {
            for (load, ns) in [
                (BystanderLoop::Getppid, 62.0),
                (BystanderLoop::Mmap, 1_850.0),
                (BystanderLoop::Ioctl, 211.0),
            ] {
                let ns = ns * factor;
                bystander
                    .samples
                    .insert((which, load), vec![ns, ns * 1.02, ns * 0.99]);
            }
        }
        bystander
    }

    /// The report of a run where bpftrace and strace could not be installed, bpftrace failed,
    /// and only part of the bench ran (`--only`): most sections are empty.
    fn sparse_report() -> Report {
        let mut report = report_shell(vec![
            "bpftrace could not be installed (`apt-get install bpftrace` failed); its column is \
             empty"
                .into(),
            "strace could not be installed (installed strace, but `strace` is not on PATH); its \
             column is empty"
                .into(),
        ]);
        report.workloads.failed.insert(
            Tracer::Bpftrace,
            "bpftrace (ustack) failed: exit status: 1; stderr:\nERROR: no BTF".into(),
        );
        for (tracer, ns) in [
            (Tracer::None, 1_850.0),
            (Tracer::PmapNoEvents, 1_920.0),
            (Tracer::PmapEvents, 2_950.0),
        ] {
            report
                .workloads
                .samples
                .insert((Workload::Mmap, tracer), vec![ns]);
        }
        report.rates = vec![rate_at_target_losing()];
        for load in BystanderLoop::ALL {
            report
                .bystander
                .samples
                .insert((Bystander::Alone, load), vec![100.0]);
        }
        report
    }

    /// The default ring at the target rate losing records, and short of the rate.
    fn rate_at_target_losing() -> RateRun {
        RateRun {
            ring: DEFAULT_RING,
            events: true,
            target: TARGET_RATE,
            achieved: 281_000.0,
            calls: 562_000,
            map_lines: 561_000,
            lost: 1_000,
            cpu_ns_per_call: Some(5_300.0),
        }
    }

    fn report_shell(tool_notes: Vec<String>) -> Report {
        Report {
            header: "- Command: `cargo xtask bench --quick` (as root)\n\
                     - Date: 2025-06-01 12:00 UTC\n\
                     - Machine: 2 CPUs (Test CPU @ 2.00GHz), 23.4 GiB memory, kernel 6.18.0\n\
                     - Plan: 3 alternating rounds; timed loops of 300 ms (python: 600 ms); \
                     event-rate runs of 2000 ms\n\
                     - Versions: pmap-trace: working tree at abc1234; gcc: gcc 14.2.0\n"
                .into(),
            activity: "other programs and kernel threads used 1.2 CPU-seconds in 150 s".into(),
            rate_ms: 2000,
            bt_script: "BEGIN { printf(\"READY\\n\"); }\ntracepoint:syscalls:sys_exit_mmap,\n\
                        tracepoint:syscalls:sys_exit_munmap\n/pid == cpid/\n{\n  \
                        @calls[probe, ustack] = count();\n}\n"
                .into(),
            tool_notes,
            workloads: WorkloadResults::default(),
            rates: Vec::new(),
            rings: Vec::new(),
            dumps: DumpResults::default(),
            bystander: BystanderResults::default(),
        }
    }

    #[test]
    fn renders_a_full_report() {
        let markdown = full_report().render(Duration::from_secs(612));
        assert_eq!(markdown, FULL_REPORT);
    }

    #[test]
    fn renders_a_sparse_report() {
        let markdown = sparse_report().render(Duration::from_secs(41));
        assert_eq!(markdown, SPARSE_REPORT);
    }

    #[test]
    fn table_pads_columns() {
        let mut table = Table::new(["a", "long header"]);
        table.row(vec!["µs cell".into(), "x".into()]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "| a       | long header |");
        assert_eq!(lines[2], "| µs cell | x           |");
    }

    // The Markdown below was rendered by `Report::render` as it was before `bench.rs` was split
    // into modules: the same measurements must keep giving the same results section.

    /// What [`full_report`] renders to.
    const FULL_REPORT: &str = r#"- Command: `cargo xtask bench --quick` (as root)
- Date: 2025-06-01 12:00 UTC
- Machine: 2 CPUs (Test CPU @ 2.00GHz), 23.4 GiB memory, kernel 6.18.0
- Plan: 3 alternating rounds; timed loops of 300 ms (python: 600 ms); event-rate runs of 2000 ms
- Versions: pmap-trace: working tree at abc1234; gcc: gcc 14.2.0
- Wall time of the whole bench: 612 s
- Other activity: other programs and kernel threads used 1.2 CPU-seconds in 150 s

### Overhead on the traced program

Median time per iteration of each workload's own timed loop; in brackets the ratio to the untraced median of the same run. Calls/iter: traced calls per iteration, counted from strace's output.

| workload                      | calls/iter | untraced | pmap-trace --no-events | pmap-trace, events to /dev/null | pmap-trace --sites (stacks on) | empty programs, same tracepoints (floor) | bpftrace (ustack) | strace -f -e trace=%memory |
|-------------------------------|------------|----------|------------------------|---------------------------------|--------------------------------|------------------------------------------|-------------------|----------------------------|
| mmap 64K + touch + munmap     | 3.00       | 1.85 µs  | 1.93 µs (1.04×)        | 2.07 µs (1.12×)                 | 2.42 µs (1.31×)                | 1.89 µs (1.02×)                          | 3.55 µs (1.92×)   | 76.78 µs (41.5×)           |
| brk +64K / touch / -64K       | 12         | 940 ns   | 980 ns (1.04×)         | 1.05 µs (1.12×)                 | 1.23 µs (1.31×)                | 960 ns (1.02×)                           | 1.80 µs (1.92×)   | 39.01 µs (41.5×)           |
| malloc/free churn (C)         | 0.00195    | 38 ns    | 40 ns (1.04×)          | 43 ns (1.12×)                   | 50 ns (1.31×)                  | 39 ns (1.02×)                            | 74 ns (1.92×)     | 1.59 µs (41.5×)            |
| python3 build/free structures | n/a        | 2.4 ms   | 2.5 ms (1.04×)         | 2.7 ms (1.12×)                  | 2.5 ms (1.02×)                 | 2.5 ms (1.02×)                           | 4.6 ms (1.92×)    | 100.1 ms (41.5×)           |

### Cost of stack capture (`--sites`)

What `--sites` adds per call that carries a stack: (median with `--sites 10` − median with `--no-events`) / growth calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that raised the break, `mremap` that grew, counted from strace's output. Each copies the caller's stack up to the main thread's stack top, 16 KiB at most (the default).

| workload                      | growth calls/iter | pmap-trace --no-events | pmap-trace --sites | added per growth call |
|-------------------------------|-------------------|------------------------|--------------------|-----------------------|
| mmap 64K + touch + munmap     | 1.000             | 1.93 µs                | 2.42 µs            | 488 ns                |
| brk +64K / touch / -64K       | 1.000             | 980 ns                 | 1.23 µs            | 248 ns                |
| malloc/free churn (C)         | 0.000             | 40 ns                  | 50 ns              | n/a                   |
| python3 build/free structures | 0.042             | 2.5 ms                 | 2.5 ms             | -1.3 ms               |

### Event rate and lost records

A paced loop of `mmap(4 KiB)` + `munmap` under `pmap-trace [--no-events] --ring-size R -- …`, 2.00 s per run; with events, pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines and the "records lost" notices). "asked" is the paced rate (flat out: no pacing); "made" is what the traced loop achieved.

| ring | output      | asked calls/s | made calls/s | lost records | mmap/munmap lines / calls | pmap-trace CPU / call |
|------|-------------|---------------|--------------|--------------|---------------------------|-----------------------|
| 4M   | events      | 100k          | 100k         | 0            | 199740 / 199740           | 412 ns                |
| 4M   | --no-events | 100k          | 100k         | 0            | –                         | 96 ns                 |
| 4M   | events      | 300k          | 296k         | 0            | 592960 / 592960           | 388 ns                |
| 4M   | --no-events | 300k          | 297k         | 0            | –                         | 91 ns                 |
| 4M   | events      | flat out      | 1204k        | 48211        | 2360449 / 2408660         | n/a                   |
| 4M   | --no-events | flat out      | 1530k        | 0            | –                         | 1.25 µs               |
| 256K | events      | 300k          | 297k         | 0            | 593400 / 593400           | 392 ns                |
| 16K  | events      | 300k          | 295k         | 1530         | 588670 / 590200           | 401 ns                |

Smallest ring with no lost records at 300k calls/s asked (events on): 256K.

### Dump of a process with 100000 mappings, and pmap-trace's memory

Time from SIGUSR1 to the dump's ` total` line on pmap-trace's output (a pipe), against `pmap PID` from its start to its ` total` line. The launch-mode pmap-trace saw the mappings made (50000 mprotect calls through the ring); the attached ones were each started fresh and timed on their first dump.

|                                      | median  | runs | vs pmap |
|--------------------------------------|---------|------|---------|
| pmap-trace (launch mode), first dump | 38.2 ms | 1    | 0.63×   |
| pmap-trace -p PID, first dump        | 40.2 ms | 3    | 0.66×   |
| pmap PID                             | 60.6 ms | 4    | 1.00×   |

Totals of every dump equal to pmap's: yes.

pmap-trace's own memory with 100000 mappings traced, after the dump: launch mode VmRSS 14.7 MB (peak VmHWM 22.0 MB); attached (median) VmRSS 12.6 MB (peak VmHWM 20.6 MB).

pmap-trace `--sites 10` on a process that mapped a page from each of 10000 distinct call stacks, after its first dump and sites report: VmRSS 31.5 MB (peak VmHWM 53.2 MB); the report counted 10000 call sites; notices of lost records or stack copies: 0.

### A process that is not traced

Loops of a process that is not traced, while a tracer watches an idle `sleep`; median ns per iteration: `getppid` (a syscall no tracer hooks), the `mmap 64K + touch + munmap` loop (hooked calls of another process), `ioctl(FIONREAD)` on a pipe (an ioctl pmap-trace's program filters out).

|                                    | getppid | ratio | mmap loop | ratio | ioctl  | ratio |
|------------------------------------|---------|-------|-----------|-------|--------|-------|
| no tracer running                  | 62 ns   | 1.00× | 1.85 µs   | 1.00× | 211 ns | 1.00× |
| pmap-trace -p SLEEPER running      | 63 ns   | 1.01× | 1.87 µs   | 1.01× | 214 ns | 1.01× |
| bpftrace script on SLEEPER running | 84 ns   | 1.35× | 2.50 µs   | 1.35× | 285 ns | 1.35× |

### Targets

| target                                                                   | measured                                                | met?       |
|--------------------------------------------------------------------------|---------------------------------------------------------|------------|
| mmap loop ≤ +10 % (pmap-trace, events to /dev/null)                      | +11.8 %; empty programs on the same tracepoints: +2.1 % | **missed** |
| mmap loop ≤ +10 % (pmap-trace --no-events)                               | +4.3 %; empty programs on the same tracepoints: +2.1 %  | met        |
| mmap loop ≤ +10 % (pmap-trace --sites (stacks on))                       | +30.7 %; empty programs on the same tracepoints: +2.1 % | **missed** |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace, events to /dev/null)   | +11.8 % vs bpftrace's +92.0 %: 0.13 of it               | met        |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-events)            | +4.3 % vs bpftrace's +92.0 %: 0.05 of it                | met        |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --sites (stacks on))    | +30.7 % vs bpftrace's +92.0 %: 0.33 of it               | **missed** |
| 0 lost records at 300k calls/s (default ring 4M, events on)              | 0 lost at 296k calls/s made                             | met        |
| untraced process slowed < 2 % (getppid loop)                             | +1.2 %                                                  | met        |
| untraced process slowed < 2 % (mmap loop)                                | +1.2 %                                                  | met        |
| untraced process slowed < 2 % (ioctl loop)                               | +1.2 %                                                  | met        |
| dump of 100000 mappings faster than pmap                                 | 40.2 ms vs pmap 60.6 ms (launch mode: 38.2 ms)          | met        |
| own RSS < 50 MB at 100000 mappings (VmRSS after the dump)                | 14.7 MB (worst of launch and attach mode)               | met        |
| own RSS < 50 MB at 100000 mappings, peak (VmHWM)                         | 22.0 MB (worst of launch and attach mode)               | met        |
| own RSS < 50 MB at 10000 distinct stacks (--sites), VmRSS after the dump | 31.5 MB                                                 | met        |
| own RSS < 50 MB at 10000 distinct stacks (--sites), peak (VmHWM)         | 53.2 MB                                                 | **missed** |

The bpftrace script (launch mode; `pid == $1` instead of `pid == cpid` for the untraced-process test):

```
BEGIN { printf("READY\n"); }
tracepoint:syscalls:sys_exit_mmap,
tracepoint:syscalls:sys_exit_munmap
/pid == cpid/
{
  @calls[probe, ustack] = count();
}
```
"#;

    /// What [`sparse_report`] renders to.
    const SPARSE_REPORT: &str = r#"- Command: `cargo xtask bench --quick` (as root)
- Date: 2025-06-01 12:00 UTC
- Machine: 2 CPUs (Test CPU @ 2.00GHz), 23.4 GiB memory, kernel 6.18.0
- Plan: 3 alternating rounds; timed loops of 300 ms (python: 600 ms); event-rate runs of 2000 ms
- Versions: pmap-trace: working tree at abc1234; gcc: gcc 14.2.0
- Wall time of the whole bench: 41 s
- Other activity: other programs and kernel threads used 1.2 CPU-seconds in 150 s
- **Note**: bpftrace could not be installed (`apt-get install bpftrace` failed); its column is empty
- **Note**: strace could not be installed (installed strace, but `strace` is not on PATH); its column is empty
- **Note**: bpftrace (ustack) failed: exit status: 1; stderr:
ERROR: no BTF

### Overhead on the traced program

Median time per iteration of each workload's own timed loop; in brackets the ratio to the untraced median of the same run. Calls/iter: traced calls per iteration, counted from strace's output.

| workload                      | calls/iter | untraced | pmap-trace --no-events | pmap-trace, events to /dev/null | pmap-trace --sites (stacks on) | empty programs, same tracepoints (floor) | bpftrace (ustack) | strace -f -e trace=%memory |
|-------------------------------|------------|----------|------------------------|---------------------------------|--------------------------------|------------------------------------------|-------------------|----------------------------|
| mmap 64K + touch + munmap     | n/a        | 1.85 µs  | 1.92 µs (1.04×)        | 2.95 µs (1.59×)                 | n/a                            | n/a                                      | n/a               | n/a                        |
| brk +64K / touch / -64K       | n/a        | n/a      | n/a                    | n/a                             | n/a                            | n/a                                      | n/a               | n/a                        |
| malloc/free churn (C)         | n/a        | n/a      | n/a                    | n/a                             | n/a                            | n/a                                      | n/a               | n/a                        |
| python3 build/free structures | n/a        | n/a      | n/a                    | n/a                             | n/a                            | n/a                                      | n/a               | n/a                        |

### Cost of stack capture (`--sites`)

What `--sites` adds per call that carries a stack: (median with `--sites 10` − median with `--no-events`) / growth calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that raised the break, `mremap` that grew, counted from strace's output. Each copies the caller's stack up to the main thread's stack top, 16 KiB at most (the default).

| workload                      | growth calls/iter | pmap-trace --no-events | pmap-trace --sites | added per growth call |
|-------------------------------|-------------------|------------------------|--------------------|-----------------------|
| mmap 64K + touch + munmap     | n/a               | 1.92 µs                | n/a                | n/a                   |
| brk +64K / touch / -64K       | n/a               | n/a                    | n/a                | n/a                   |
| malloc/free churn (C)         | n/a               | n/a                    | n/a                | n/a                   |
| python3 build/free structures | n/a               | n/a                    | n/a                | n/a                   |

### Event rate and lost records

A paced loop of `mmap(4 KiB)` + `munmap` under `pmap-trace [--no-events] --ring-size R -- …`, 2.00 s per run; with events, pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines and the "records lost" notices). "asked" is the paced rate (flat out: no pacing); "made" is what the traced loop achieved.

| ring | output | asked calls/s | made calls/s | lost records | mmap/munmap lines / calls | pmap-trace CPU / call |
|------|--------|---------------|--------------|--------------|---------------------------|-----------------------|
| 4M   | events | 300k          | 281k         | 1000         | 561000 / 562000           | 5.30 µs               |

### Dump of a process with 0 mappings, and pmap-trace's memory

Time from SIGUSR1 to the dump's ` total` line on pmap-trace's output (a pipe), against `pmap PID` from its start to its ` total` line. The launch-mode pmap-trace saw the mappings made (0 mprotect calls through the ring); the attached ones were each started fresh and timed on their first dump.

|                               | median | runs | vs pmap |
|-------------------------------|--------|------|---------|
| pmap-trace -p PID, first dump | n/a    | 0    | n/a     |
| pmap PID                      | n/a    | 0    | 1.00×   |

Totals of every dump equal to pmap's: NO.

pmap-trace's own memory with 0 mappings traced, after the dump: launch mode VmRSS n/a (peak VmHWM n/a); attached (median) VmRSS n/a (peak VmHWM n/a).

pmap-trace `--sites 10` on a process that mapped a page from each of 0 distinct call stacks, after its first dump and sites report: VmRSS n/a (peak VmHWM n/a); the report counted ? call sites; notices of lost records or stack copies: 0.

### A process that is not traced

Loops of a process that is not traced, while a tracer watches an idle `sleep`; median ns per iteration: `getppid` (a syscall no tracer hooks), the `mmap 64K + touch + munmap` loop (hooked calls of another process), `ioctl(FIONREAD)` on a pipe (an ioctl pmap-trace's program filters out).

|                   | getppid | ratio | mmap loop | ratio | ioctl  | ratio |
|-------------------|---------|-------|-----------|-------|--------|-------|
| no tracer running | 100 ns  | 1.00× | 100 ns    | 1.00× | 100 ns | 1.00× |

### Targets

| target                                                                 | measured                              | met?         |
|------------------------------------------------------------------------|---------------------------------------|--------------|
| mmap loop ≤ +10 % (pmap-trace, events to /dev/null)                    | +59.5 %                               | **missed**   |
| mmap loop ≤ +10 % (pmap-trace --no-events)                             | +3.8 %                                | met          |
| mmap loop ≤ +10 % (pmap-trace --sites (stacks on))                     | n/a                                   | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace, events to /dev/null) | n/a (bpftrace not measured)           | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-events)          | n/a (bpftrace not measured)           | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --sites (stacks on))  | n/a (bpftrace not measured)           | not measured |
| 0 lost records at 300k calls/s (default ring 4M, events on)            | 1000 lost at 281k calls/s made        | **missed**   |
| untraced process slowed < 2 % (getppid loop)                           | n/a                                   | not measured |
| untraced process slowed < 2 % (mmap loop)                              | n/a                                   | not measured |
| untraced process slowed < 2 % (ioctl loop)                             | n/a                                   | not measured |
| dump of 0 mappings faster than pmap                                    | n/a                                   | not measured |
| own RSS < 50 MB at 0 mappings (VmRSS after the dump)                   | n/a (worst of launch and attach mode) | not measured |
| own RSS < 50 MB at 0 mappings, peak (VmHWM)                            | n/a (worst of launch and attach mode) | not measured |
| own RSS < 50 MB at 0 distinct stacks (--sites), VmRSS after the dump   | n/a                                   | not measured |
| own RSS < 50 MB at 0 distinct stacks (--sites), peak (VmHWM)           | n/a                                   | not measured |

The bpftrace script (launch mode; `pid == $1` instead of `pid == cpid` for the untraced-process test):

```
BEGIN { printf("READY\n"); }
tracepoint:syscalls:sys_exit_mmap,
tracepoint:syscalls:sys_exit_munmap
/pid == cpid/
{
  @calls[probe, ustack] = count();
}
```
"#;
}
