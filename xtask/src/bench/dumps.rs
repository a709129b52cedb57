//! Part 3: dumps of a process with 100k mappings, pmap-trace's (launched, or attached fresh)
//! against `pmap`'s, and pmap-trace's own memory there and with `--sites` on many call stacks.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    Plan,
    env::Env,
    processes::{Guarded, Lines, line_channel, status_kb, wait_for_line, wait_until_attached},
    quiet::{check_interrupted, quietly, wait_for_quiet},
    units::{format_kb, format_ns},
};

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
pub(super) struct DumpResults {
    pub(super) mappings: u64,
    /// First dump of the pmap-trace that launched the process and saw its mappings made.
    pub(super) launch_first: Option<f64>,
    pub(super) launch_rss_kb: Option<u64>,
    pub(super) launch_hwm_kb: Option<u64>,
    /// First dump of a pmap-trace attached to the running process, each run.
    pub(super) attach: Vec<f64>,
    pub(super) attach_rss_kb: Vec<u64>,
    pub(super) attach_hwm_kb: Vec<u64>,
    pub(super) pmap: Vec<f64>,
    /// Whether every dump's total line was the same as pmap's.
    pub(super) totals_agree: bool,
    pub(super) stacks: StacksMemory,
}

/// pmap-trace `--sites` tracing a process that grew memory from many distinct call stacks.
#[derive(Default)]
pub(super) struct StacksMemory {
    pub(super) stacks: u64,
    /// The call sites its report counted.
    pub(super) sites: Option<u64>,
    pub(super) rss_kb: Option<u64>,
    pub(super) hwm_kb: Option<u64>,
    /// Notices of lost records or stack copies on its output.
    pub(super) lost_notices: usize,
}

/// How long after a dump's last line its memory is read: the dump returns its freed memory to
/// the kernel after writing.
const DUMP_SETTLE: Duration = Duration::from_millis(300);

fn is_total(line: &str) -> bool {
    line.starts_with(" total")
}

/// Sends SIGUSR1 and times the arrival of the dump's " total" line.
fn time_dump(tracer: &Guarded, lines: &Lines) -> Result<(f64, String)> {
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
    let lines = line_channel(child.stdout());
    let (at, line) = wait_for_line(&lines, Duration::from_secs(120), "pmap's total", is_total)?;
    child.wait(Duration::from_secs(60), "pmap")?;
    Ok((at.duration_since(start).as_secs_f64() * 1e9, line))
}

/// Part 3: the launch-mode first dump, then fresh attached pmap-traces alternating with pmap,
/// then the `--sites` memory test.
pub(super) fn dumps(env: &Env, plan: &Plan) -> Result<DumpResults> {
    let n = plan.mappings;
    println!("\n==> dumps: a process with {n} mappings, pmap-trace's dump vs pmap");
    let _map_count = MapCountGuard::raise_to((n + 1000).max(2 * n))?;
    let mut results = DumpResults {
        mappings: n,
        ..DumpResults::default()
    };
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
            let (attach_ns, rss, hwm) = attached_first_dump(env, pid, &pmap_total, &mut results)?;
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
    terminate(pid);
    launcher.wait(Duration::from_secs(60), "launch-mode pmap-trace")?;

    // Memory is not disturbed by other programs' CPU use: measured once.
    results.stacks = stacks_memory(env, plan)?;
    Ok(results)
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
    let out = line_channel(tracer.stdout());
    let err = line_channel(tracer.stderr());
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
    terminate(pid);
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
    let out = line_channel(attached.stdout());
    let err = line_channel(attached.stderr());
    wait_until_attached(&err)?;
    let (ns, total) = time_dump(&attached, &out)?;
    results.totals_agree &= total == pmap_total;
    thread::sleep(DUMP_SETTLE);
    let rss = status_kb(attached.pid(), "VmRSS");
    let hwm = status_kb(attached.pid(), "VmHWM");
    attached.stop("attached pmap-trace")?;
    Ok((ns, rss, hwm))
}

/// Sends SIGTERM to a workload (a grandchild, started by the pmap-trace that traces it).
fn terminate(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
