//! Part 7, kernel time: what pmap-trace's eBPF programs themselves take from the traced
//! program, with call sites and without (both `--no-events`), from the kernel's own account of
//! each program's run time (`BPF_ENABLE_STATS`). The programs run in the traced thread's
//! context, so their time is time the program loses; unlike a wall-clock ratio on a shared
//! 2-CPU machine, this account resolves a fraction of a percent.

use std::{
    collections::BTreeMap,
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{
    Plan,
    env::Env,
    in_rotation,
    processes::{Guarded, line_channel, median, wait_until_attached},
    quiet::{check_interrupted, quietly},
    units::format_ns,
    workloads::Workload,
};

/// The workloads measured: the worst case for call sites and the two real language runtimes.
pub(super) const WORKLOADS: [Workload; 3] = [Workload::Mmap, Workload::Python, Workload::Node];

/// How long each workload is asked to run: longer than the attach, the settling and the
/// window together; it is stopped once the window is read.
const WORKLOAD_MS: u64 = 60_000;
/// Time after the attach before the window opens (the first stack copies of a thread run
/// to `--stack-bytes` until its top is learned).
const SETTLE: Duration = Duration::from_millis(500);

/// With or without call sites, both without event lines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Sites {
    Off,
    On,
}

impl Sites {
    pub(super) const ALL: [Sites; 2] = [Sites::Off, Sites::On];

    pub(super) fn label(self) -> &'static str {
        match self {
            Sites::Off => "--no-events --no-sites",
            Sites::On => "--no-events (call sites on)",
        }
    }
}

/// The programs' run time over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ProgramTime {
    pub(super) run_ns: u64,
    pub(super) runs: u64,
    pub(super) wall_ns: u64,
}

impl ProgramTime {
    pub(super) fn ns_per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_ns as f64 / self.runs as f64)
    }

    /// The share of the (single-threaded) workload's time spent in the programs.
    pub(super) fn share(&self) -> Option<f64> {
        (self.wall_ns > 0).then(|| self.run_ns as f64 / self.wall_ns as f64)
    }
}

#[derive(Default)]
pub(super) struct KernelTimeResults {
    pub(super) samples: BTreeMap<(Workload, Sites), Vec<ProgramTime>>,
    pub(super) window_ms: u64,
}

impl KernelTimeResults {
    fn median_of(
        &self,
        workload: Workload,
        sites: Sites,
        f: fn(&ProgramTime) -> Option<f64>,
    ) -> Option<f64> {
        let values: Vec<f64> = self
            .samples
            .get(&(workload, sites))?
            .iter()
            .filter_map(f)
            .collect();
        median(&values)
    }

    pub(super) fn ns_per_run(&self, workload: Workload, sites: Sites) -> Option<f64> {
        self.median_of(workload, sites, ProgramTime::ns_per_run)
    }

    pub(super) fn share(&self, workload: Workload, sites: Sites) -> Option<f64> {
        self.median_of(workload, sites, ProgramTime::share)
    }

    /// What call sites add to the programs' share of the workload's time.
    pub(super) fn added_share(&self, workload: Workload) -> Option<f64> {
        Some(self.share(workload, Sites::On)? - self.share(workload, Sites::Off)?)
    }

    /// What call sites add per growth call, given the program runs (hooked calls) per growth
    /// call.
    pub(super) fn added_per_growth_call(
        &self,
        workload: Workload,
        runs_per_growth: f64,
    ) -> Option<f64> {
        let added =
            self.ns_per_run(workload, Sites::On)? - self.ns_per_run(workload, Sites::Off)?;
        Some(added * runs_per_growth)
    }
}

pub(super) fn kernel_time(env: &Env, plan: &Plan) -> Result<KernelTimeResults> {
    let _stats = RunTimeStats::enable()?;
    let mut results = KernelTimeResults {
        window_ms: plan.kernel_window_ms,
        ..KernelTimeResults::default()
    };
    println!(
        "\n==> kernel time: {} rounds x {} workloads x {} configurations, {} ms windows",
        plan.rounds,
        WORKLOADS.len(),
        Sites::ALL.len(),
        plan.kernel_window_ms
    );
    for round in 0..plan.rounds {
        for workload in WORKLOADS {
            let Some(argv) = workload.argv_for(env, WORKLOAD_MS) else {
                continue;
            };
            for sites in in_rotation(&Sites::ALL, round) {
                check_interrupted()?;
                let what = format!("{} under pmap-trace {}", workload.label(), sites.label());
                let time = quietly(&what, || {
                    measure(
                        env,
                        &argv,
                        sites,
                        Duration::from_millis(plan.kernel_window_ms),
                    )
                })
                .with_context(|| what.clone())?;
                println!(
                    "[round {}/{}] {:<30} {:<28} {} per run, {:.3} % of its time",
                    round + 1,
                    plan.rounds,
                    workload.label(),
                    sites.label(),
                    time.ns_per_run().map_or("n/a".into(), format_ns),
                    time.share().unwrap_or(0.0) * 100.0
                );
                results
                    .samples
                    .entry((workload, sites))
                    .or_default()
                    .push(time);
            }
        }
    }
    Ok(results)
}

/// Runs `argv`, attaches pmap-trace to it, and reads its programs' run time over `window`.
fn measure(env: &Env, argv: &[String], sites: Sites, window: Duration) -> Result<ProgramTime> {
    let workload = Guarded::spawn(
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let mut cmd = Command::new(&env.pmap_trace);
    cmd.arg("--no-events");
    if sites == Sites::Off {
        cmd.arg("--no-sites");
    }
    cmd.args(["-o", "/dev/null", "-p"])
        .arg(workload.pid().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tracer = Guarded::spawn(&mut cmd)?;
    let stderr = line_channel(tracer.stderr());
    wait_until_attached(&stderr)?;
    thread::sleep(SETTLE);
    let (run_ns, runs) = programs_run_time(tracer.pid())?;
    let opened = Instant::now();
    thread::sleep(window);
    let (run_ns_after, runs_after) = programs_run_time(tracer.pid())?;
    let wall_ns = opened.elapsed().as_nanos() as u64;
    tracer.stop("pmap-trace")?;
    drop(workload);
    if runs_after <= runs {
        bail!("pmap-trace's programs did not run in the window: is the workload running?");
    }
    Ok(ProgramTime {
        run_ns: run_ns_after - run_ns,
        runs: runs_after - runs,
        wall_ns,
    })
}

/// The summed run time and run count of the eBPF programs process `pid` holds, from the
/// `run_time_ns` and `run_cnt` lines of its descriptors' fdinfo (counted while run-time
/// statistics are on).
fn programs_run_time(pid: i32) -> Result<(u64, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut total = (0, 0);
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some((run_ns, runs)) = program_stats(&text) {
            total = (total.0 + run_ns, total.1 + runs);
        }
    }
    Ok(total)
}

/// `run_time_ns` and `run_cnt` of a program descriptor's fdinfo; `None` for other descriptors.
fn program_stats(fdinfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        fdinfo.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(':')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("run_time_ns")?, field("run_cnt")?))
}

/// The kernel's run-time statistics of eBPF programs, on while this lives
/// (`BPF_ENABLE_STATS` returns a descriptor; closing it, or the bench's exit, turns them off
/// again unless someone else asked for them too).
struct RunTimeStats(libc::c_int);

/// `enum bpf_cmd` and `enum bpf_stats_type` of `include/uapi/linux/bpf.h`.
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

impl RunTimeStats {
    fn enable() -> Result<RunTimeStats> {
        // The attr is `union bpf_attr`'s `enable_stats { __u32 type; }`, zero-padded.
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&BPF_STATS_RUN_TIME.to_ne_bytes());
        // SAFETY: the bpf syscall reads `attr.len()` bytes of the buffer, which lives across
        // the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_mut_ptr(),
                attr.len() as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(anyhow!(
                "turning on eBPF run-time statistics (BPF_ENABLE_STATS) failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(RunTimeStats(fd as libc::c_int))
    }
}

impl Drop for RunTimeStats {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this owns.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_programs_run_time_and_count_and_skips_other_descriptors() {
        let program = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2075\nprog_type:\t5\n\
                       prog_jited:\t1\nprog_tag:\t250958caedc2d461\nmemlock:\t16384\n\
                       prog_id:\t17490\nrun_time_ns:\t5534953\nrun_cnt:\t29991\n\
                       recursion_misses:\t0\nverified_insns:\t631265\n";
        assert_eq!(program_stats(program), Some((5_534_953, 29_991)));
        let link = "link_type:\tperf\nlink_id:\t38362\nprog_tag:\t250958caedc2d461\n\
                    prog_id:\t17490\ntp_name:\tsys_exit_mmap\n";
        assert_eq!(program_stats(link), None);
    }

    #[test]
    fn call_sites_cost_is_the_difference_of_medians() {
        let mut results = KernelTimeResults::default();
        let time = |run_ns, runs| ProgramTime {
            run_ns,
            runs,
            wall_ns: 1_000_000_000,
        };
        results.samples.insert(
            (Workload::Mmap, Sites::Off),
            vec![time(150_000_000, 1_000_000), time(160_000_000, 1_000_000)],
        );
        results.samples.insert(
            (Workload::Mmap, Sites::On),
            vec![time(250_000_000, 1_000_000), time(270_000_000, 1_000_000)],
        );
        // 155 and 260 ns per run: 105 ns more per run, 210 per growth call at one in two.
        assert_eq!(
            results.added_per_growth_call(Workload::Mmap, 2.0),
            Some(210.0)
        );
        let added = results.added_share(Workload::Mmap).unwrap();
        assert!((added - 0.105).abs() < 1e-9, "{added}");
        assert_eq!(results.added_share(Workload::Node), None);
    }
}
