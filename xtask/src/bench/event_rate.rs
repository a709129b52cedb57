//! Part 2, event rate: how many calls per second pmap-trace keeps up with, what it costs in CPU
//! per call, and the smallest ring that loses no records at the target rate.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read},
    process::{Command, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{
    DEFAULT_RING, Plan, TARGET_RATE,
    env::Env,
    processes::{Guarded, line_channel, parse_result, wait_until_attached},
    quiet::{check_interrupted, quietly},
    units::format_ns,
};

/// One run of the paced loop under pmap-trace: what it asked for, made and lost.
pub(super) struct RateRun {
    pub(super) ring: &'static str,
    pub(super) events: bool,
    /// Call sites on (the plain run): every mmap's stack is copied, unwound, and its line
    /// names its site; off with `--no-sites`.
    pub(super) sites: bool,
    pub(super) target: u64,
    pub(super) achieved: f64,
    pub(super) calls: u64,
    /// Event lines for mmap/munmap calls (events mode only).
    pub(super) map_lines: u64,
    pub(super) lost: u64,
    /// pmap-trace's own CPU time (user + system) per traced call while the loop ran.
    pub(super) cpu_ns_per_call: Option<f64>,
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

/// What one run traces with: events on or off, call sites on or off.
#[derive(Clone, Copy)]
struct RateConfig {
    events: bool,
    sites: bool,
}

impl RateConfig {
    /// The plain run (events and call sites), then without call sites (what the plain run
    /// was before they were on by default), then without either.
    const ALL: [RateConfig; 3] = [
        RateConfig {
            events: true,
            sites: true,
        },
        RateConfig {
            events: true,
            sites: false,
        },
        RateConfig {
            events: false,
            sites: false,
        },
    ];
    const PLAIN: RateConfig = RateConfig::ALL[0];
}

/// How a run's output and call sites are set, as its flags read.
pub(super) fn rate_config_label(events: bool, sites: bool) -> &'static str {
    match (events, sites) {
        (true, true) => "events (plain run)",
        (true, false) => "events, --no-sites",
        (false, true) => "--no-events",
        (false, false) => "--no-events --no-sites",
    }
}

fn rate_run(
    env: &Env,
    plan: &Plan,
    ring: &'static str,
    RateConfig { events, sites }: RateConfig,
    target: u64,
) -> Result<RateRun> {
    let mut cmd = Command::new(&env.pmap_trace);
    if !events {
        cmd.arg("--no-events");
    }
    if !sites {
        cmd.arg("--no-sites");
    }
    cmd.args(["--ring-size", ring, "--"])
        .arg(&env.workloads)
        .args(["rate", &target.to_string(), &plan.rate_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(&mut cmd)?;
    let scan = scan_output(child.stdout());
    let stderr = line_channel(child.stderr());
    let attached = wait_until_attached(&stderr)?;
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
        sites,
        target,
        achieved: result["calls_per_sec"],
        calls: result["calls"] as u64,
        map_lines: scan.map_lines,
        lost: scan.lost,
        cpu_ns_per_call: cpu
            .map(|(cpu_s, wall_s)| cpu_s / (result["calls_per_sec"] * wall_s) * 1e9),
    };
    println!(
        "event rate: ring {ring:>4}, {:<22} asked {:>9}, made {:>7.0} calls/s, {} lost, \
         pmap-trace CPU {}/call{}",
        rate_config_label(events, sites),
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

/// The event-rate part's runs.
#[derive(Default)]
pub(super) struct RateResults {
    /// At the default ring: each target rate in each [`RateConfig`].
    pub(super) rates: Vec<RateRun>,
    /// Smaller rings at the target rate, down to the first that lost records.
    pub(super) rings: Vec<RateRun>,
}

/// Part 2: the paced rates at the default ring, then smaller rings at the target rate until
/// one loses records.
pub(super) fn event_rate(env: &Env, plan: &Plan) -> Result<RateResults> {
    let mut results = RateResults::default();
    println!(
        "\n==> event rate: paced mmap(4K)+munmap pairs for {} ms; events go to a pipe the bench \
         reads",
        plan.rate_ms
    );
    for &target in &plan.rates {
        for config in RateConfig::ALL {
            check_interrupted()?;
            results.rates.push(quietly("event-rate run", || {
                rate_run(env, plan, DEFAULT_RING, config, target)
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
                rate_run(env, plan, ring, RateConfig::PLAIN, TARGET_RATE)
            })?)
        };
        let lost = run.as_ref().map_or_else(
            || at_target(&results.rates).is_some_and(|r| r.lost > 0),
            |r| r.lost > 0,
        );
        results.rings.extend(run);
        if lost {
            break;
        }
    }
    Ok(results)
}

/// The plain run (events and call sites on) at the target rate and the default ring, the one
/// the target is about.
pub(super) fn at_target(rates: &[RateRun]) -> Option<&RateRun> {
    rates
        .iter()
        .find(|r| r.ring == DEFAULT_RING && r.events && r.sites && r.target == TARGET_RATE)
}
