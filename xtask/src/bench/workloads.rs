//! Part 1, workloads: untraced vs traced. Each workload's loop timed untraced, under
//! pmap-trace in three modes, under empty programs on the same tracepoints, under a bpftrace
//! script and under strace; strace's output also says how many calls an iteration makes.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{
    Plan,
    env::{Env, Tool},
    in_rotation,
    processes::{Guarded, collect, median, parse_result, trimmed},
    quiet::{check_interrupted, quietly},
    units::format_ns,
};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Workload {
    Mmap,
    Brk,
    Malloc,
    Python,
    Node,
}

impl Workload {
    pub(super) const ALL: [Workload; 5] = [
        Workload::Mmap,
        Workload::Brk,
        Workload::Malloc,
        Workload::Python,
        Workload::Node,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Workload::Mmap => "mmap 64K + touch + munmap",
            Workload::Brk => "brk +64K / touch / -64K",
            Workload::Malloc => "malloc/free churn (C)",
            Workload::Python => "python3 build/free structures",
            Workload::Node => "node objects + ArrayBuffers",
        }
    }

    /// The command line, or `None` when its program is not installed (node).
    fn argv(self, env: &Env, plan: &Plan) -> Option<Vec<String>> {
        let ms = match self {
            Workload::Python | Workload::Node => plan.python_ms,
            _ => plan.loop_ms,
        };
        self.argv_for(env, ms)
    }

    /// The command line of a timed loop of `ms` milliseconds, or `None` when its program is not
    /// installed (node).
    pub(super) fn argv_for(self, env: &Env, ms: u64) -> Option<Vec<String>> {
        let c = |mode: &str| {
            vec![
                env.workloads.display().to_string(),
                mode.to_owned(),
                ms.to_string(),
            ]
        };
        Some(match self {
            Workload::Mmap => c("mmap"),
            Workload::Brk => c("brk"),
            Workload::Malloc => c("malloc"),
            Workload::Python => vec![
                env.python.display().to_string(),
                env.churn_py.display().to_string(),
                ms.to_string(),
            ],
            Workload::Node => vec![
                env.node.as_ref().ok()?.display().to_string(),
                env.churn_js.display().to_string(),
                ms.to_string(),
            ],
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Tracer {
    None,
    /// `--no-events --no-sites`.
    PmapNoEvents,
    /// `--no-sites`, events to /dev/null: the plain run before call sites were on by default.
    PmapEvents,
    /// The plain run, events to /dev/null: call sites on (every growth call's stack copied,
    /// unwound, its line naming its site, a summary after each dump).
    PmapPlain,
    /// `--no-events --sites 10`: every growth call carries its registers and stack, unwound and
    /// attributed by pmap-trace.
    PmapSites,
    /// Empty programs (a PID compare) on the same tracepoints: the cost of the hook alone.
    Floor,
    Bpftrace,
    Strace,
}

impl Tracer {
    pub(super) const ALL: [Tracer; 8] = [
        Tracer::None,
        Tracer::PmapNoEvents,
        Tracer::PmapEvents,
        Tracer::PmapPlain,
        Tracer::PmapSites,
        Tracer::Floor,
        Tracer::Bpftrace,
        Tracer::Strace,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Tracer::None => "untraced",
            Tracer::PmapNoEvents => "pmap-trace --no-events --no-sites",
            Tracer::PmapEvents => "pmap-trace --no-sites, events to /dev/null",
            Tracer::PmapPlain => "pmap-trace (plain run: call sites on), events to /dev/null",
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
            Tracer::PmapNoEvents | Tracer::PmapEvents | Tracer::PmapPlain | Tracer::PmapSites => {
                let mut cmd = Command::new(&env.pmap_trace);
                if matches!(self, Tracer::PmapNoEvents | Tracer::PmapSites) {
                    cmd.arg("--no-events");
                }
                match self {
                    Tracer::PmapSites => cmd.args(["--sites", "10"]),
                    Tracer::PmapNoEvents | Tracer::PmapEvents => cmd.arg("--no-sites"),
                    _ => &mut cmd,
                };
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
                    .arg(strace_out(env))
                    .arg(&argv[0]);
                cmd
            }
        };
        cmd.args(&argv[1..]);
        Ok(cmd)
    }
}

/// Runs one workload under one tracer; returns the fields of the workload's RESULT line.
pub(super) fn run_workload(cmd: &mut Command) -> Result<BTreeMap<String, f64>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn(cmd)?;
    let stderr = collect(child.stderr());
    let status = child.wait(Duration::from_secs(300), "the workload")?;
    let stderr = stderr.join().unwrap_or_default();
    match parse_result(&stderr) {
        Some(result) if status.success() => Ok(result),
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
pub(super) struct WorkloadResults {
    /// ns per iteration, every round.
    pub(super) samples: BTreeMap<(Workload, Tracer), Vec<f64>>,
    pub(super) calls_per_iter: BTreeMap<Workload, Vec<f64>>,
    /// Calls per iteration that carry a stack under `--sites`.
    pub(super) growth_per_iter: BTreeMap<Workload, Vec<f64>>,
    /// Tools dropped after they failed to run, with the reason.
    pub(super) failed: BTreeMap<Tracer, String>,
}

impl WorkloadResults {
    /// Files one run's time per iteration and, under strace, the calls it counted.
    fn record(
        &mut self,
        workload: Workload,
        tracer: Tracer,
        result: &BTreeMap<String, f64>,
        strace_out: &Path,
    ) {
        self.samples
            .entry((workload, tracer))
            .or_default()
            .push(result["ns_per_iter"]);
        if tracer != Tracer::Strace {
            return;
        }
        if let Some(calls) = calls_per_iteration(strace_out, result["iters"]) {
            self.calls_per_iter.entry(workload).or_default().push(calls);
        }
        if let Some(growth) = growth_calls_per_iteration(strace_out, result["iters"]) {
            self.growth_per_iter
                .entry(workload)
                .or_default()
                .push(growth);
        }
    }

    /// Median ns per iteration of `workload` under `tracer`.
    pub(super) fn median(&self, workload: Workload, tracer: Tracer) -> Option<f64> {
        median(self.samples.get(&(workload, tracer))?)
    }

    /// [`median`](Self::median) over the untraced median.
    pub(super) fn ratio(&self, workload: Workload, tracer: Tracer) -> Option<f64> {
        Some(self.median(workload, tracer)? / self.median(workload, Tracer::None)?)
    }
}

/// Part 1: every workload under every configuration, [`Plan::rounds`] alternating rounds.
pub(super) fn workloads(env: &Env, plan: &Plan) -> Result<WorkloadResults> {
    println!(
        "\n==> workloads: {} rounds x {} workloads x {} configurations, alternating",
        plan.rounds,
        Workload::ALL.len(),
        Tracer::ALL.len()
    );
    let mut results = WorkloadResults::default();
    for round in 0..plan.rounds {
        for workload in Workload::ALL {
            let Some(argv) = workload.argv(env, plan) else {
                continue;
            };
            for tracer in in_rotation(&Tracer::ALL, round) {
                check_interrupted()?;
                if tracer.tool(env).is_some_and(|tool| tool.is_err())
                    || results.failed.contains_key(&tracer)
                {
                    continue;
                }
                let mut cmd = tracer.command(env, &argv)?;
                let what = format!("{} under {}", workload.label(), tracer.label());
                match quietly(&what, || Ok(run_workload(&mut cmd)))? {
                    Ok(result) => {
                        println!(
                            "[round {}/{}] {:<31} {:<32} {}/iter",
                            round + 1,
                            plan.rounds,
                            workload.label(),
                            tracer.label(),
                            format_ns(result["ns_per_iter"])
                        );
                        results.record(workload, tracer, &result, &strace_out(env));
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
    let _ = fs::remove_file(strace_out(env));
    Ok(results)
}

/// Where strace writes the calls it traced.
fn strace_out(env: &Env) -> PathBuf {
    env.bench_dir.join("strace.out")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
