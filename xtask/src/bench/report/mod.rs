//! The report: every part's results, rendered as the Markdown that `--write` puts in the results
//! section of BENCHMARKS.md (and the terminal shows). One function per results section
//! ([`sections`]), the targets table ([`targets`]) and the Markdown table they share ([`table`]).

mod sections;
mod table;
mod targets;
#[cfg(test)]
mod tests;

use std::{fmt::Write as _, fs, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::{
    Plan, dumps::DumpResults, env::Env, event_rate::RateResults, kernel_time::KernelTimeResults,
    processes::median, redis::RedisResults, residency::ResidencyResults,
    untraced::BystanderResults, workloads::WorkloadResults,
};
use crate::process::{probe, workspace_root};

const RESULTS_BEGIN: &str = "<!-- BEGIN RESULTS: written by `cargo xtask bench --write` -->";
const RESULTS_END: &str = "<!-- END RESULTS -->";

pub(super) struct Report {
    header: String,
    pub(super) activity: String,
    rate_ms: u64,
    bt_script: String,
    tool_notes: Vec<String>,
    pub(super) workloads: WorkloadResults,
    pub(super) rates: RateResults,
    pub(super) dumps: DumpResults,
    pub(super) bystander: BystanderResults,
    pub(super) redis: RedisResults,
    pub(super) residency: ResidencyResults,
    pub(super) kernel_time: KernelTimeResults,
}

impl Report {
    pub(super) fn new(command: &str, plan: &Plan, env: &Env) -> Report {
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
            rates: RateResults::default(),
            dumps: DumpResults::default(),
            residency: ResidencyResults::default(),
            bystander: BystanderResults::default(),
            redis: RedisResults::default(),
            kernel_time: KernelTimeResults::default(),
        }
    }

    /// The results section: the run's circumstances, each part's results, the targets and the
    /// bpftrace script compared against.
    pub(super) fn render(&self, elapsed: Duration) -> String {
        let mut out = String::new();
        self.write_circumstances(&mut out, elapsed);
        sections::overhead(&mut out, &self.workloads);
        sections::stack_capture(&mut out, &self.workloads);
        sections::event_rate(&mut out, self.rate_ms, &self.rates.rates, &self.rates.rings);
        sections::dumps(&mut out, &self.dumps);
        sections::untraced(&mut out, &self.bystander);
        sections::redis(&mut out, &self.redis);
        sections::residency(&mut out, &self.residency);
        sections::kernel_time(&mut out, &self.kernel_time, &self.workloads);
        targets::write(&mut out, self);
        let _ = writeln!(
            out,
            "\nThe bpftrace script (launch mode; `pid == $1` instead of `pid == cpid` for the \
             untraced-process test):\n\n```\n{}```",
            self.bt_script
        );
        out
    }

    /// Command, date, machine, plan and versions; how long it took, what else ran, and the
    /// tools that are missing from it.
    fn write_circumstances(&self, out: &mut String, elapsed: Duration) {
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
    }
}

fn median_u64(values: &[u64]) -> Option<u64> {
    let values: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    median(&values).map(|m| m as u64)
}

fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
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
pub(super) fn write_results(markdown: &str) -> Result<()> {
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
