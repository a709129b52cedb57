//! The results section rendered from fixed measurements, compared with the Markdown the bench
//! wrote before it was split into modules: the same measurements give the same section.

use std::time::Duration;

use super::Report;
use crate::bench::{
    DEFAULT_RING, TARGET_RATE,
    dumps::{DumpResults, StacksMemory},
    event_rate::RateRun,
    redis::RedisResults,
    untraced::{Bystander, BystanderLoop, BystanderResults},
    workloads::{Tracer, Workload, WorkloadResults},
};

/// The report of a run that measured every part: each section filled, and the formatting
/// branches the measurements reach (ratios of 10× and more, a negative stack cost, lost
/// records, rings smaller than the default, a missed target, an even number of samples).
fn full_report() -> Report {
    let mut report = report_shell(Vec::new());
    report.workloads = full_workloads();
    (report.rates.rates, report.rates.rings) = full_rates();
    report.dumps = full_dumps();
    report.bystander = full_bystander();
    report.redis = full_redis();
    report
}

/// redis-benchmark's requests per second, the plain run 0.4 % below --no-sites on SET.
fn full_redis() -> RedisResults {
    let mut redis = RedisResults {
        requests: 100_000,
        ..Default::default()
    };
    for (test, rps) in [("SET", 52_000.0), ("GET", 61_000.0)] {
        for (tracer, factor) in [
            (Tracer::None, 1.0),
            (Tracer::PmapEvents, 0.97),
            (Tracer::PmapPlain, if test == "SET" { 0.966 } else { 0.95 }),
        ] {
            let rps = rps * factor;
            redis
                .rps
                .insert((test, tracer), vec![rps * 0.99, rps, rps * 1.02]);
        }
    }
    redis
}

fn full_workloads() -> WorkloadResults {
    let mut w = WorkloadResults::default();
    let untraced = [
        (Workload::Mmap, 1_850.0),
        (Workload::Brk, 940.0),
        (Workload::Malloc, 38.4),
        (Workload::Python, 2_412_000.0),
        (Workload::Node, 22_555_000.0),
    ];
    for (workload, ns) in untraced {
        for (tracer, factor) in [
            (Tracer::None, 1.0),
            (Tracer::PmapNoEvents, 1.043),
            (Tracer::PmapEvents, 1.118),
            (Tracer::PmapPlain, 1.126),
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
    // Events on is the plain run (call sites on); off, --no-events --no-sites.
    let rate = |ring, events, target, achieved: f64, lost, cpu_ns_per_call| RateRun {
        ring,
        events,
        sites: events,
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
/// and only part of the bench ran (`--only`): the parts that did not run have no section.
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
    report.rates.rates = vec![rate_at_target_losing()];
    report.redis.skipped =
        Some("`redis-server` is not on PATH (cargo xtask setup installs it)".into());
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
        sites: true,
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
        rates: Default::default(),
        dumps: DumpResults::default(),
        residency: Default::default(),
        bystander: BystanderResults::default(),
        redis: RedisResults::default(),
        kernel_time: Default::default(),
    }
}

#[test]
fn kernel_time_gives_its_section_and_targets() {
    use crate::bench::kernel_time::{ProgramTime, Sites};
    let mut report = report_shell(Vec::new());
    report.kernel_time.window_ms = 1500;
    let time = |run_ns, runs| ProgramTime {
        run_ns,
        runs,
        wall_ns: 1_500_000_000,
    };
    for (workload, off, on) in [
        (
            Workload::Mmap,
            time(150_000_000, 600_000),
            time(240_000_000, 600_000),
        ),
        (
            Workload::Python,
            time(3_000_000, 2_000),
            time(3_600_000, 2_000),
        ),
    ] {
        report
            .kernel_time
            .samples
            .insert((workload, Sites::Off), vec![off]);
        report
            .kernel_time
            .samples
            .insert((workload, Sites::On), vec![on]);
    }
    let rendered = report.render(Duration::from_secs(1));
    // The table cells without their padding.
    let markdown = rendered
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // 250 ns and 400 ns per run; one growth call in two runs: 300 ns per growth call.
    assert!(
        markdown.contains("| mmap 64K + touch + munmap | 250 ns | 400 ns | 10.000 % | 16.000 % | 6.000 % | 300 ns |"),
        "{rendered}"
    );
    assert!(
        markdown.contains("| mmap loop: stack capture ≤ 300 ns per growth call (the programs' kernel time, with − without call sites) | 300 ns | met |"),
        "{rendered}"
    );
    // python3: 0.2 % of its time without call sites, 0.24 % with them.
    assert!(
        markdown.contains("| python3 build/free structures: call sites' kernel time ≤ 1 % of its time | +0.040 % | met |"),
        "{rendered}"
    );
    assert!(
        markdown.contains("| node objects + ArrayBuffers: call sites' kernel time ≤ 1 % of its time | n/a | not measured |"),
        "{rendered}"
    );
}

#[test]
fn renders_a_full_report() {
    let markdown = full_report().render(Duration::from_secs(612));
    assert_eq!(markdown, FULL_REPORT);
}

#[test]
fn a_part_that_did_not_run_has_no_section() {
    let markdown = report_shell(Vec::new()).render(Duration::from_secs(1));
    for heading in [
        "### Overhead on the traced program",
        "### Cost of stack capture",
        "### Event rate and lost records",
        "### Dump of a process",
        "### A process that is not traced",
        "### A real server",
        "### Resident bytes per site",
        "### Kernel time of the programs",
    ] {
        assert!(!markdown.contains(heading), "{heading} in:\n{markdown}");
    }
    assert!(markdown.contains("### Targets"), "{markdown}");
    assert!(!markdown.contains(" 0 mappings"), "{markdown}");
}

#[test]
fn renders_a_sparse_report() {
    let markdown = sparse_report().render(Duration::from_secs(41));
    assert_eq!(markdown, SPARSE_REPORT);
}

// The Markdown below was rendered by `Report::render` before `bench.rs` was split into modules,
// then with the plain run (call sites on) beside `--no-sites` (issue #14), then with node's loop,
// redis-server and the stack-capture target: the same measurements must keep giving the same
// results section.

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

| workload                      | calls/iter | untraced | pmap-trace --no-events --no-sites | pmap-trace --no-sites, events to /dev/null | pmap-trace (plain run: call sites on), events to /dev/null | pmap-trace --sites (stacks on) | empty programs, same tracepoints (floor) | bpftrace (ustack) | strace -f -e trace=%memory |
|-------------------------------|------------|----------|-----------------------------------|--------------------------------------------|------------------------------------------------------------|--------------------------------|------------------------------------------|-------------------|----------------------------|
| mmap 64K + touch + munmap     | 3.00       | 1.85 µs  | 1.93 µs (1.04×)                   | 2.07 µs (1.12×)                            | 2.08 µs (1.13×)                                            | 2.42 µs (1.31×)                | 1.89 µs (1.02×)                          | 3.55 µs (1.92×)   | 76.78 µs (41.5×)           |
| brk +64K / touch / -64K       | 12         | 940 ns   | 980 ns (1.04×)                    | 1.05 µs (1.12×)                            | 1.06 µs (1.13×)                                            | 1.23 µs (1.31×)                | 960 ns (1.02×)                           | 1.80 µs (1.92×)   | 39.01 µs (41.5×)           |
| malloc/free churn (C)         | 0.00195    | 38 ns    | 40 ns (1.04×)                     | 43 ns (1.12×)                              | 43 ns (1.13×)                                              | 50 ns (1.31×)                  | 39 ns (1.02×)                            | 74 ns (1.92×)     | 1.59 µs (41.5×)            |
| python3 build/free structures | n/a        | 2.4 ms   | 2.5 ms (1.04×)                    | 2.7 ms (1.12×)                             | 2.7 ms (1.13×)                                             | 2.5 ms (1.02×)                 | 2.5 ms (1.02×)                           | 4.6 ms (1.92×)    | 100.1 ms (41.5×)           |
| node objects + ArrayBuffers   | n/a        | 22.6 ms  | 23.5 ms (1.04×)                   | 25.2 ms (1.12×)                            | 25.4 ms (1.13×)                                            | 29.5 ms (1.31×)                | 23.0 ms (1.02×)                          | 43.3 ms (1.92×)   | 936.0 ms (41.5×)           |

### Cost of stack capture (`--sites`)

What `--sites` adds per call that carries a stack: (median with `--sites 10` − median with `--no-events`) / growth calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that raised the break, `mremap` that grew, counted from strace's output. Each copies the caller's stack up to its thread's stack top, 16 KiB at most (the default).

| workload                      | growth calls/iter | pmap-trace --no-events | pmap-trace --sites | added per growth call |
|-------------------------------|-------------------|------------------------|--------------------|-----------------------|
| mmap 64K + touch + munmap     | 1.000             | 1.93 µs                | 2.42 µs            | 488 ns                |
| brk +64K / touch / -64K       | 1.000             | 980 ns                 | 1.23 µs            | 248 ns                |
| malloc/free churn (C)         | 0.000             | 40 ns                  | 50 ns              | n/a                   |
| python3 build/free structures | 0.042             | 2.5 ms                 | 2.5 ms             | -1.3 ms               |
| node objects + ArrayBuffers   | n/a               | 23.5 ms                | 29.5 ms            | n/a                   |

### Event rate and lost records

A paced loop of `mmap(4 KiB)` + `munmap` under `pmap-trace [--no-events] [--no-sites] --ring-size R -- …`, 2.00 s per run (the plain run copies, unwinds and names the stack of every `mmap`); with events, pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines and the "records lost" notices). "asked" is the paced rate (flat out: no pacing); "made" is what the traced loop achieved.

| ring | output                 | asked calls/s | made calls/s | lost records | mmap/munmap lines / calls | pmap-trace CPU / call |
|------|------------------------|---------------|--------------|--------------|---------------------------|-----------------------|
| 4M   | events (plain run)     | 100k          | 100k         | 0            | 199740 / 199740           | 412 ns                |
| 4M   | --no-events --no-sites | 100k          | 100k         | 0            | –                         | 96 ns                 |
| 4M   | events (plain run)     | 300k          | 296k         | 0            | 592960 / 592960           | 388 ns                |
| 4M   | --no-events --no-sites | 300k          | 297k         | 0            | –                         | 91 ns                 |
| 4M   | events (plain run)     | flat out      | 1204k        | 48211        | 2360449 / 2408660         | n/a                   |
| 4M   | --no-events --no-sites | flat out      | 1530k        | 0            | –                         | 1.25 µs               |
| 256K | events (plain run)     | 300k          | 297k         | 0            | 593400 / 593400           | 392 ns                |
| 16K  | events (plain run)     | 300k          | 295k         | 1530         | 588670 / 590200           | 401 ns                |

Smallest ring with no lost records at 300k calls/s asked (the plain run): 256K.

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

### A real server: redis-server under redis-benchmark

redis-server (no persistence, a unix socket) launched untraced, by `pmap-trace --no-sites -o /dev/null --` and by the plain run `pmap-trace -o /dev/null --`, alternating; `redis-benchmark -n 100000 -r 1000000 -d 1024 -t set,get` against it (50 clients). Median requests per second; in brackets the ratio to untraced, and last the plain run's to `--no-sites`.

| test | untraced | pmap-trace --no-sites, events to /dev/null | pmap-trace (plain run: call sites on), events to /dev/null | plain run / --no-sites |
|------|----------|--------------------------------------------|------------------------------------------------------------|------------------------|
| SET  | 52000/s  | 50440/s (0.97×)                            | 50232/s (0.97×)                                            | 1.00×                  |
| GET  | 61000/s  | 59170/s (0.97×)                            | 57950/s (0.95×)                                            | 0.98×                  |

### Targets

| target                                                                                            | measured                                                | met?       |
|---------------------------------------------------------------------------------------------------|---------------------------------------------------------|------------|
| mmap loop ≤ +10 % (pmap-trace (plain run: call sites on), events to /dev/null)                    | +12.6 %; empty programs on the same tracepoints: +2.1 % | **missed** |
| mmap loop ≤ +10 % (pmap-trace --no-sites, events to /dev/null)                                    | +11.8 %; empty programs on the same tracepoints: +2.1 % | **missed** |
| mmap loop ≤ +10 % (pmap-trace --no-events --no-sites)                                             | +4.3 %; empty programs on the same tracepoints: +2.1 %  | met        |
| mmap loop ≤ +10 % (pmap-trace --sites (stacks on))                                                | +30.7 %; empty programs on the same tracepoints: +2.1 % | **missed** |
| python3 build/free structures: plain run ≤ +1 % of --no-sites                                     | +0.7 %                                                  | met        |
| node objects + ArrayBuffers: plain run ≤ +1 % of --no-sites                                       | +0.7 %                                                  | met        |
| redis-server under redis-benchmark (SET, requests/s): plain run ≤ +1 % of --no-sites              | +0.4 % time per request                                 | met        |
| redis-server under redis-benchmark (GET, requests/s): plain run ≤ +1 % of --no-sites              | +2.1 % time per request                                 | **missed** |
| mmap loop: stack capture ≤ 300 ns per growth call (--sites − --no-events --no-sites)              | 488 ns                                                  | **missed** |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace (plain run: call sites on), events to /dev/null) | +12.6 % vs bpftrace's +92.0 %: 0.14 of it               | met        |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-sites, events to /dev/null)                 | +11.8 % vs bpftrace's +92.0 %: 0.13 of it               | met        |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-events --no-sites)                          | +4.3 % vs bpftrace's +92.0 %: 0.05 of it                | met        |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --sites (stacks on))                             | +30.7 % vs bpftrace's +92.0 %: 0.33 of it               | **missed** |
| 0 lost records at 300k calls/s (default ring 4M, events on)                                       | 0 lost at 296k calls/s made                             | met        |
| untraced process slowed < 2 % (getppid loop)                                                      | +1.2 %                                                  | met        |
| untraced process slowed < 2 % (mmap loop)                                                         | +1.2 %                                                  | met        |
| untraced process slowed < 2 % (ioctl loop)                                                        | +1.2 %                                                  | met        |
| dump of 100000 mappings faster than pmap                                                          | 40.2 ms vs pmap 60.6 ms (launch mode: 38.2 ms)          | met        |
| own RSS < 50 MB at 100000 mappings (VmRSS after the dump)                                         | 14.7 MB (worst of launch and attach mode)               | met        |
| own RSS < 50 MB at 100000 mappings, peak (VmHWM)                                                  | 22.0 MB (worst of launch and attach mode)               | met        |
| own RSS < 50 MB at 10000 distinct stacks (--sites), VmRSS after the dump                          | 31.5 MB                                                 | met        |
| own RSS < 50 MB at 10000 distinct stacks (--sites), peak (VmHWM)                                  | 53.2 MB                                                 | **missed** |

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

| workload                      | calls/iter | untraced | pmap-trace --no-events --no-sites | pmap-trace --no-sites, events to /dev/null | pmap-trace (plain run: call sites on), events to /dev/null | pmap-trace --sites (stacks on) | empty programs, same tracepoints (floor) | bpftrace (ustack) | strace -f -e trace=%memory |
|-------------------------------|------------|----------|-----------------------------------|--------------------------------------------|------------------------------------------------------------|--------------------------------|------------------------------------------|-------------------|----------------------------|
| mmap 64K + touch + munmap     | n/a        | 1.85 µs  | 1.92 µs (1.04×)                   | 2.95 µs (1.59×)                            | n/a                                                        | n/a                            | n/a                                      | n/a               | n/a                        |
| brk +64K / touch / -64K       | n/a        | n/a      | n/a                               | n/a                                        | n/a                                                        | n/a                            | n/a                                      | n/a               | n/a                        |
| malloc/free churn (C)         | n/a        | n/a      | n/a                               | n/a                                        | n/a                                                        | n/a                            | n/a                                      | n/a               | n/a                        |
| python3 build/free structures | n/a        | n/a      | n/a                               | n/a                                        | n/a                                                        | n/a                            | n/a                                      | n/a               | n/a                        |
| node objects + ArrayBuffers   | n/a        | n/a      | n/a                               | n/a                                        | n/a                                                        | n/a                            | n/a                                      | n/a               | n/a                        |

### Cost of stack capture (`--sites`)

What `--sites` adds per call that carries a stack: (median with `--sites 10` − median with `--no-events`) / growth calls per iteration. Growth calls: successful private anonymous `mmap`, `brk` that raised the break, `mremap` that grew, counted from strace's output. Each copies the caller's stack up to its thread's stack top, 16 KiB at most (the default).

| workload                      | growth calls/iter | pmap-trace --no-events | pmap-trace --sites | added per growth call |
|-------------------------------|-------------------|------------------------|--------------------|-----------------------|
| mmap 64K + touch + munmap     | n/a               | 1.92 µs                | n/a                | n/a                   |
| brk +64K / touch / -64K       | n/a               | n/a                    | n/a                | n/a                   |
| malloc/free churn (C)         | n/a               | n/a                    | n/a                | n/a                   |
| python3 build/free structures | n/a               | n/a                    | n/a                | n/a                   |
| node objects + ArrayBuffers   | n/a               | n/a                    | n/a                | n/a                   |

### Event rate and lost records

A paced loop of `mmap(4 KiB)` + `munmap` under `pmap-trace [--no-events] [--no-sites] --ring-size R -- …`, 2.00 s per run (the plain run copies, unwinds and names the stack of every `mmap`); with events, pmap-trace's output goes to a pipe the bench reads (it counts the mmap/munmap lines and the "records lost" notices). "asked" is the paced rate (flat out: no pacing); "made" is what the traced loop achieved.

| ring | output             | asked calls/s | made calls/s | lost records | mmap/munmap lines / calls | pmap-trace CPU / call |
|------|--------------------|---------------|--------------|--------------|---------------------------|-----------------------|
| 4M   | events (plain run) | 300k          | 281k         | 1000         | 561000 / 562000           | 5.30 µs               |

### A process that is not traced

Loops of a process that is not traced, while a tracer watches an idle `sleep`; median ns per iteration: `getppid` (a syscall no tracer hooks), the `mmap 64K + touch + munmap` loop (hooked calls of another process), `ioctl(FIONREAD)` on a pipe (an ioctl pmap-trace's program filters out).

|                   | getppid | ratio | mmap loop | ratio | ioctl  | ratio |
|-------------------|---------|-------|-----------|-------|--------|-------|
| no tracer running | 100 ns  | 1.00× | 100 ns    | 1.00× | 100 ns | 1.00× |

### A real server: redis-server under redis-benchmark

Not measured: `redis-server` is not on PATH (cargo xtask setup installs it).

### Targets

| target                                                                                            | measured                              | met?         |
|---------------------------------------------------------------------------------------------------|---------------------------------------|--------------|
| mmap loop ≤ +10 % (pmap-trace (plain run: call sites on), events to /dev/null)                    | n/a                                   | not measured |
| mmap loop ≤ +10 % (pmap-trace --no-sites, events to /dev/null)                                    | +59.5 %                               | **missed**   |
| mmap loop ≤ +10 % (pmap-trace --no-events --no-sites)                                             | +3.8 %                                | met          |
| mmap loop ≤ +10 % (pmap-trace --sites (stacks on))                                                | n/a                                   | not measured |
| python3 build/free structures: plain run ≤ +1 % of --no-sites                                     | n/a                                   | not measured |
| node objects + ArrayBuffers: plain run ≤ +1 % of --no-sites                                       | n/a                                   | not measured |
| redis-server under redis-benchmark (SET, requests/s): plain run ≤ +1 % of --no-sites              | n/a                                   | not measured |
| redis-server under redis-benchmark (GET, requests/s): plain run ≤ +1 % of --no-sites              | n/a                                   | not measured |
| mmap loop: stack capture ≤ 300 ns per growth call (--sites − --no-events --no-sites)              | n/a                                   | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace (plain run: call sites on), events to /dev/null) | n/a (bpftrace not measured)           | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-sites, events to /dev/null)                 | n/a (bpftrace not measured)           | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --no-events --no-sites)                          | n/a (bpftrace not measured)           | not measured |
| mmap loop overhead ≤ ¼ of bpftrace's (pmap-trace --sites (stacks on))                             | n/a (bpftrace not measured)           | not measured |
| 0 lost records at 300k calls/s (default ring 4M, events on)                                       | 1000 lost at 281k calls/s made        | **missed**   |
| untraced process slowed < 2 % (getppid loop)                                                      | n/a                                   | not measured |
| untraced process slowed < 2 % (mmap loop)                                                         | n/a                                   | not measured |
| untraced process slowed < 2 % (ioctl loop)                                                        | n/a                                   | not measured |
| dump of many mappings faster than pmap                                                            | n/a                                   | not measured |
| own RSS < 50 MB at many mappings (VmRSS after the dump)                                           | n/a (worst of launch and attach mode) | not measured |
| own RSS < 50 MB at many mappings, peak (VmHWM)                                                    | n/a (worst of launch and attach mode) | not measured |
| own RSS < 50 MB at many distinct stacks (--sites), VmRSS after the dump                           | n/a                                   | not measured |
| own RSS < 50 MB at many distinct stacks (--sites), peak (VmHWM)                                   | n/a                                   | not measured |

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

#[test]
fn the_resident_bytes_section_gives_each_reading_and_is_left_out_when_not_run() {
    use super::sections;
    use crate::bench::{residency::ResidencyResults, units::format_ns};

    let mut out = String::new();
    sections::residency(&mut out, &ResidencyResults::default());
    assert!(out.is_empty());
    let results = ResidencyResults {
        mib: 6 << 10,
        scan: vec![4.0e6, 5.0e6, 6.0e6],
        pread: vec![9.0e6, 10.0e6, 11.0e6],
        agree: true,
        resident_dump: vec![20.0e6, 21.0e6, 22.0e6],
        live_dump: vec![15.0e6, 16.0e6, 17.0e6],
    };
    sections::residency(&mut out, &results);
    assert!(out.contains("6144 MiB"), "{out}");
    assert!(out.contains("1572864 page-table entries"), "{out}");
    assert!(out.contains("both: yes"), "{out}");
    for (row, median) in [
        ("`PAGEMAP_SCAN` ioctl", format_ns(5.0e6)),
        ("`pread` of", format_ns(10.0e6)),
        ("`--rank resident`", format_ns(21.0e6)),
        ("`--rank live`", format_ns(16.0e6)),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with('|') && l.contains(row))
            .unwrap();
        assert!(line.contains(&median), "{line}");
    }
}
