//! One function per results section: its heading, what it measured, and its table.

use std::fmt::Write as _;

use super::{format_ratio, median_u64, table::Table};
use crate::bench::units::{format_kb, format_ns};
use crate::bench::{
    DEFAULT_RING, TARGET_RATE,
    dumps::DumpResults,
    event_rate::{RateRun, at_target, rate_config_label},
    kernel_time::{KernelTimeResults, Sites, WORKLOADS as KT_WORKLOADS},
    processes::median,
    redis::{self, RedisResults},
    residency::ResidencyResults,
    untraced::{Bystander, BystanderLoop, BystanderResults},
    workloads::{Tracer, Workload, WorkloadResults},
};

/// Time per iteration of each workload under each tracer, with the ratio to untraced.
pub(super) fn overhead(out: &mut String, workloads: &WorkloadResults) {
    // A part that did not run (`--only`) has no section: an empty one would read as a result.
    if workloads.samples.is_empty() {
        return;
    }
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
            workloads
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
            row.push(match (workloads.median(workload, tracer), tracer) {
                (None, _) => "n/a".into(),
                (Some(ns), Tracer::None) => format_ns(ns),
                (Some(ns), _) => format!(
                    "{} ({})",
                    format_ns(ns),
                    workloads
                        .ratio(workload, tracer)
                        .map_or("?".into(), format_ratio)
                ),
            });
        }
        table.row(row);
    }
    out.push_str(&table.render());
}

/// What `--sites` adds per call that carries a stack, from the workloads' medians.
pub(super) fn stack_capture(out: &mut String, workloads: &WorkloadResults) {
    // Not run: no section (see `overhead`).
    if workloads.samples.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Cost of stack capture (`--sites`)\n\nWhat `--sites` adds per call that \
         carries a stack: (median with `--sites 10` − median with `--no-events`) / growth \
         calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that \
         raised the break, `mremap` that grew, counted from strace's output. Each copies \
         the caller's stack up to its thread's stack top, 16 KiB at most (the \
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
        let growth = workloads
            .growth_per_iter
            .get(&workload)
            .and_then(|v| median(v));
        let plain = workloads.median(workload, Tracer::PmapNoEvents);
        let sites = workloads.median(workload, Tracer::PmapSites);
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
}

/// Every event-rate run (the paced rates at the default ring, then the smaller rings) and the
/// smallest ring that lost nothing at the target rate.
pub(super) fn event_rate(out: &mut String, rate_ms: u64, rates: &[RateRun], rings: &[RateRun]) {
    // Not run: no section (see `overhead`).
    if rates.is_empty() && rings.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Event rate and lost records\n\nA paced loop of `mmap(4 KiB)` + `munmap` \
         under `pmap-trace [--no-events] [--no-sites] --ring-size R -- …`, {} per run \
         (the plain run copies, unwinds and names the stack of every `mmap`); with events, \
         pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines \
         and the \"records lost\" notices). \"asked\" is the paced rate (flat out: no \
         pacing); \"made\" is what the traced loop achieved.\n",
        format_ns(rate_ms as f64 * 1e6)
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
    for run in rates.iter().chain(rings) {
        table.row(vec![
            run.ring.to_owned(),
            rate_config_label(run.events, run.sites).to_owned(),
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
    if let Some(ring) = smallest_lossless_ring(rates, rings) {
        let _ = writeln!(
            out,
            "\nSmallest ring with no lost records at {}k calls/s asked (the plain run): {ring}.",
            TARGET_RATE / 1000
        );
    }
}

/// The last ring, from the default down, that lost no records at the target rate.
fn smallest_lossless_ring(rates: &[RateRun], rings: &[RateRun]) -> Option<&'static str> {
    let default = at_target(rates)?;
    let mut best = (default.lost == 0).then_some(DEFAULT_RING);
    for run in rings {
        if run.lost == 0 {
            best = Some(run.ring);
        }
    }
    best
}

/// Dump times of pmap-trace (launched, attached) against pmap, whether their totals agree,
/// and pmap-trace's own memory.
pub(super) fn dumps(out: &mut String, d: &DumpResults) {
    // Not run: no section (see `overhead`); its "totals equal" line would say NO.
    if d.mappings == 0 {
        return;
    }
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
    own_memory(out, d);
}

/// pmap-trace's VmRSS and VmHWM with many mappings traced, and with `--sites` on many stacks.
fn own_memory(out: &mut String, d: &DumpResults) {
    let _ = writeln!(
        out,
        "\npmap-trace's own memory with {} mappings traced, after the dump: launch mode \
         VmRSS {} (peak VmHWM {}); attached (median) VmRSS {} (peak VmHWM {}).",
        d.mappings,
        format_kb(d.launch_rss_kb),
        format_kb(d.launch_hwm_kb),
        format_kb(median_u64(&d.attach_rss_kb)),
        format_kb(median_u64(&d.attach_hwm_kb))
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
}

/// The bystander's loops under each tracer that ran, with the ratio to no tracer.
pub(super) fn untraced(out: &mut String, bystander: &BystanderResults) {
    // Not run: no section (see `overhead`).
    if bystander.samples.is_empty() {
        return;
    }
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
    let tracers: std::collections::BTreeSet<Bystander> =
        bystander.samples.keys().map(|&(which, _)| which).collect();
    for which in tracers {
        let mut row = vec![which.label().to_string()];
        for load in BystanderLoop::ALL {
            let ns = bystander.median(which, load);
            let alone = bystander.median(Bystander::Alone, load);
            row.push(ns.map_or("n/a".into(), format_ns));
            row.push(match (ns, alone) {
                (Some(ns), Some(alone)) => format_ratio(ns / alone),
                _ => "n/a".into(),
            });
        }
        table.row(row);
    }
    out.push_str(&table.render());
}

/// redis-server's requests per second under each configuration, with the ratio to untraced and
/// the plain run's to `--no-sites`.
pub(super) fn redis(out: &mut String, results: &RedisResults) {
    // Not run: no section (see `overhead`); skipped, the section says why.
    if results.skipped.is_none() && results.rps.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### A real server: redis-server under redis-benchmark\n"
    );
    if let Some(why) = &results.skipped {
        let _ = writeln!(out, "Not measured: {why}.");
        return;
    }
    let _ = writeln!(
        out,
        "redis-server (no \
         persistence, a unix socket) launched untraced, by `pmap-trace --no-sites -o /dev/null \
         --` and by the plain run `pmap-trace -o /dev/null --`, alternating; \
         `redis-benchmark -n {} -r 1000000 -d 1024 -t set,get` against it (50 clients). Median \
         requests per second; in brackets the ratio to untraced, and last the plain run's to \
         `--no-sites`.\n",
        results.requests
    );
    let mut table = Table::new(
        std::iter::once("test")
            .chain(redis::CONFIGS.iter().map(|t| t.label()))
            .chain(std::iter::once("plain run / --no-sites")),
    );
    for test in redis::TESTS {
        let untraced = results.median(test, Tracer::None);
        let mut row = vec![test.to_owned()];
        for tracer in redis::CONFIGS {
            let rps = results.median(test, tracer);
            row.push(match (rps, untraced) {
                (None, _) => "n/a".into(),
                (Some(rps), Some(untraced)) if tracer != Tracer::None => {
                    format!("{rps:.0}/s ({})", format_ratio(rps / untraced))
                }
                (Some(rps), _) => format!("{rps:.0}/s"),
            });
        }
        row.push(
            results
                .median(test, Tracer::PmapPlain)
                .zip(results.median(test, Tracer::PmapEvents))
                .map_or("n/a".into(), |(plain, without)| {
                    format_ratio(plain / without)
                }),
        );
        table.row(row);
    }
    out.push_str(&table.render());
}

/// What reading each call site's resident bytes costs on a 6 GiB process.
pub(super) fn residency(out: &mut String, r: &ResidencyResults) {
    if r.scan.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Resident bytes per site\n\nA process holding {} MiB of private anonymous memory, \
         written page by page without huge pages ({} page-table entries). The whole range read \
         from here with each kernel interface (median of {} reads; every page found resident by \
         both: {}), and the dump of a `pmap-trace --sites 5` attached to it timed from SIGUSR1 \
         to its sites report, reading the pages (`--rank resident`, the default) or not \
         (`--rank live`), the two alternating.\n",
        r.mib,
        r.mib * 256,
        r.scan.len(),
        if r.agree { "yes" } else { "NO" }
    );
    let mut table = Table::new(["", "median", "runs"]);
    for (what, runs) in [
        ("`PAGEMAP_SCAN` ioctl (what pmap-trace uses)", &r.scan),
        ("`pread` of /proc/PID/pagemap's entries", &r.pread),
        (
            "pmap-trace dump + sites, `--rank resident`",
            &r.resident_dump,
        ),
        ("pmap-trace dump + sites, `--rank live`", &r.live_dump),
    ] {
        table.row(vec![
            what.into(),
            median(runs).map_or("n/a".into(), format_ns),
            runs.len().to_string(),
        ]);
    }
    out.push_str(&table.render());
}

/// What the programs themselves take from the traced program, with call sites and without.
pub(super) fn kernel_time(out: &mut String, k: &KernelTimeResults, workloads: &WorkloadResults) {
    if k.samples.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Kernel time of the programs: what call sites add\n\nThe run time the kernel \
         accounts to pmap-trace's eBPF programs (`BPF_ENABLE_STATS`, read from the fdinfo of \
         their descriptors) over {} ms of each workload's loop, pmap-trace attached with \
         `--no-events`, with and without call sites (alternating; medians). The programs run in \
         the traced thread, so their share of its time is what it loses to them; pmap-trace's \
         own unwinding runs in pmap-trace, on another CPU when one is free. Per growth call: \
         the added time per program run × hooked calls per growth call (strace's counts of \
         the workloads part; the mmap loop makes one growth call in two by construction).\n",
        k.window_ms
    );
    let mut table = Table::new([
        "workload",
        "ns per run, --no-sites",
        "ns per run, call sites",
        "share of its time, --no-sites",
        "share of its time, call sites",
        "added share",
        "added per growth call",
    ]);
    let percent =
        |share: Option<f64>| share.map_or("n/a".into(), |s| format!("{:.3} %", s * 100.0));
    for workload in KT_WORKLOADS {
        let per_growth = runs_per_growth(workload, workloads)
            .and_then(|runs| k.added_per_growth_call(workload, runs));
        table.row(vec![
            workload.label().to_owned(),
            k.ns_per_run(workload, Sites::Off)
                .map_or("n/a".into(), format_ns),
            k.ns_per_run(workload, Sites::On)
                .map_or("n/a".into(), format_ns),
            percent(k.share(workload, Sites::Off)),
            percent(k.share(workload, Sites::On)),
            percent(k.added_share(workload)),
            per_growth.map_or("n/a".into(), |ns| {
                format!("{}{}", if ns < 0.0 { "-" } else { "" }, format_ns(ns.abs()))
            }),
        ]);
    }
    out.push_str(&table.render());
}

/// Hooked calls (program runs) per growth call of `workload`: from strace's counts when the
/// workloads part ran; the mmap loop's `mmap` and `munmap` otherwise.
pub(super) fn runs_per_growth(workload: Workload, workloads: &WorkloadResults) -> Option<f64> {
    let calls = workloads
        .calls_per_iter
        .get(&workload)
        .and_then(|v| median(v));
    let growth = workloads
        .growth_per_iter
        .get(&workload)
        .and_then(|v| median(v));
    match (calls, growth) {
        (Some(calls), Some(growth)) if growth > 0.0 => Some(calls / growth),
        _ if workload == Workload::Mmap => Some(2.0),
        _ => None,
    }
}
