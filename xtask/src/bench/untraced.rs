//! Part 4: a process that is not traced. Loops of a bystander process timed while a tracer
//! watches an idle `sleep`, against the same loops with no tracer running.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};

use super::{
    Plan,
    env::Env,
    in_rotation,
    processes::{Guarded, line_channel, median, wait_for_line},
    quiet::{check_interrupted, quietly},
    units::format_ns,
    workloads::{Tracer, WorkloadResults, run_workload},
};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Bystander {
    Alone,
    PmapTrace,
    Bpftrace,
}

impl Bystander {
    pub(super) fn label(self) -> &'static str {
        match self {
            Bystander::Alone => "no tracer running",
            Bystander::PmapTrace => "pmap-trace -p SLEEPER running",
            Bystander::Bpftrace => "bpftrace script on SLEEPER running",
        }
    }
}

/// What the process that is not traced does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum BystanderLoop {
    /// A syscall no tracer hooks: only the syscall slow path that any attached syscall
    /// tracepoint turns on for every task.
    Getppid,
    /// mmap + munmap, whose tracepoints run the tracer's program (which finds no target).
    Mmap,
    /// ioctl, whose tracepoint pmap-trace hooks for userfaultfd registrations.
    Ioctl,
}

impl BystanderLoop {
    pub(super) const ALL: [BystanderLoop; 3] = [
        BystanderLoop::Getppid,
        BystanderLoop::Mmap,
        BystanderLoop::Ioctl,
    ];

    pub(super) fn mode(self) -> &'static str {
        match self {
            BystanderLoop::Getppid => "getppid",
            BystanderLoop::Mmap => "mmap",
            BystanderLoop::Ioctl => "ioctl",
        }
    }
}

#[derive(Default)]
pub(super) struct BystanderResults {
    pub(super) samples: BTreeMap<(Bystander, BystanderLoop), Vec<f64>>,
}

impl BystanderResults {
    pub(super) fn median(&self, which: Bystander, load: BystanderLoop) -> Option<f64> {
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
    let out = line_channel(tracer.stdout());
    let err = line_channel(tracer.stderr());
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

/// Part 4: the bystander's loops with no tracer, pmap-trace and (if it runs) bpftrace watching
/// a `sleep`, alternating each round.
pub(super) fn bystander(
    env: &Env,
    plan: &Plan,
    workloads: &WorkloadResults,
) -> Result<BystanderResults> {
    let mut results = BystanderResults::default();
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
    if env.bpftrace.is_ok() && !workloads.failed.contains_key(&Tracer::Bpftrace) {
        configs.push(Bystander::Bpftrace);
    }
    for round in 0..plan.rounds {
        for which in in_rotation(&configs, round) {
            check_interrupted()?;
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
                        let ns =
                            result.with_context(|| format!("{} loop", load.mode()))?["ns_per_iter"];
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
                results.samples.entry((which, load)).or_default().push(ns);
            }
        }
    }
    Ok(results)
}
