//! `cargo xtask bench`: what tracing with pmap-trace costs, measured against the tools users would
//! pick instead (a bpftrace script, strace), plus event throughput, dump latency, pmap-trace's own
//! memory and its effect on processes it does not trace.
//!
//! The workloads are small C programs, compiled with gcc into `target/bench/` at bench time (C,
//! so each loop makes exactly the calls it names, with no runtime of ours in between), and a
//! Python and a JavaScript script, all under `xtask/bench/`. Each times its own loop with CLOCK_MONOTONIC and prints ns per
//! iteration, so start-up and attach costs are not in the figures. Configurations alternate within
//! every round and ratios are taken against the untraced run of the same invocation. Nothing is
//! written into the repository except, with `--write`, the results section of BENCHMARKS.md.
//!
//! The modules follow a run: [`env`](mod@env) prepares the tools and workloads, [`quiet`] keeps other
//! programs' activity out of the figures, [`processes`] runs and reads the children; each measured
//! part has its module ([`workloads`], [`event_rate`], [`dumps`], [`untraced`], [`redis`],
//! [`residency`], [`kernel_time`]), and [`report`] turns their results into the Markdown of BENCHMARKS.md.

mod dumps;
mod env;
mod event_rate;
mod kernel_time;
mod processes;
mod quiet;
mod redis;
mod report;
mod residency;
mod units;
mod untraced;
mod workloads;

use std::{
    fmt::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::ValueEnum as _;

use self::{
    env::{Env, build_pmap_trace, warn_about_other_tracers},
    quiet::{Activity, catch_interrupts, set_max_wait},
    report::{Report, write_results},
};
use crate::process::is_root;

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
    Redis,
    Residency,
    KernelTime,
}

impl Part {
    /// How the progress lines name it.
    fn title(self) -> &'static str {
        match self {
            Part::Workloads => "workloads",
            Part::EventRate => "event rate",
            Part::Dumps => "dumps",
            Part::Untraced => "untraced process",
            Part::Redis => "redis-server under redis-benchmark",
            Part::Residency => "resident bytes",
            Part::KernelTime => "kernel time of the programs",
        }
    }
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
    /// Requests of each redis-benchmark test per run.
    redis_requests: u64,
    /// Longest the bench waits, in all, for other programs to finish.
    max_wait: Duration,
    /// How long the programs' run time is read for, per run of the kernel-time part.
    kernel_window_ms: u64,
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
                redis_requests: 20_000,
                max_wait: Duration::from_secs(45),
                kernel_window_ms: 500,
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
                redis_requests: 100_000,
                max_wait: Duration::from_secs(240),
                kernel_window_ms: 1500,
            }
        };
        if let Some(rounds) = options.rounds {
            plan.rounds = rounds.max(1);
        }
        plan
    }
}

/// The configurations of one round in the order they run: each round starts the rotation one
/// configuration later, so none always runs first.
fn in_rotation<T: Copy>(configs: &[T], round: usize) -> impl Iterator<Item = T> + '_ {
    (0..configs.len()).map(move |i| configs[(i + round) % configs.len()])
}

// --- entry point ----------------------------------------------------------------------------------

pub fn run(options: Options) -> Result<ExitCode> {
    if !is_root() {
        bail!(
            "the bench loads eBPF programs, installs bpftrace/strace with apt-get and raises \
             vm.max_map_count: run `cargo xtask bench` as root"
        );
    }
    let command = command_line(&options);
    let plan = Plan::new(&options);
    set_max_wait(plan.max_wait);
    catch_interrupts();
    let started = Instant::now();

    crate::setup::run()?;
    let (pmap_trace, revision) = build_pmap_trace(options.rev.as_deref())?;
    let env = Env::prepare(pmap_trace, revision)?;
    warn_about_other_tracers();

    let mut report = Report::new(&command, &plan, &env);
    let activity = Activity::start();
    // Each part returns its results; the untraced process leaves out a tracer the workloads
    // found failing.
    for part in [
        Part::Workloads,
        Part::EventRate,
        Part::Dumps,
        Part::Untraced,
        Part::Redis,
        Part::Residency,
        Part::KernelTime,
    ] {
        if !options.only.is_empty() && !options.only.contains(&part) {
            continue;
        }
        let start = Instant::now();
        match part {
            Part::Workloads => report.workloads = workloads::workloads(&env, &plan)?,
            Part::EventRate => report.rates = event_rate::event_rate(&env, &plan)?,
            Part::Dumps => report.dumps = dumps::dumps(&env, &plan)?,
            Part::Untraced => {
                report.bystander = untraced::bystander(&env, &plan, &report.workloads)?;
            }
            Part::Redis => report.redis = redis::redis(&env, &plan)?,
            Part::Residency => report.residency = residency::residency(&env, &plan)?,
            Part::KernelTime => report.kernel_time = kernel_time::kernel_time(&env, &plan)?,
        }
        println!(
            "bench: {} took {:.0} s",
            part.title(),
            start.elapsed().as_secs_f64()
        );
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

/// The command as the user would type it again, for the report.
fn command_line(options: &Options) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_starts_one_later_each_round() {
        let configs = ['a', 'b', 'c'];
        let order = |round| in_rotation(&configs, round).collect::<String>();
        assert_eq!(order(0), "abc");
        assert_eq!(order(1), "bca");
        assert_eq!(order(4), "bca");
    }
}
