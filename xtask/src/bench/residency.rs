//! Part 5: what reading the resident bytes of each call site costs, on a process holding
//! 6 GiB written page by page (no huge pages: one page-table entry per 4 KiB, the most a page
//! walk reads). First the two kernel interfaces pmap-trace could read them with, timed on the
//! whole range from here: the `PAGEMAP_SCAN` ioctl (runs of pages) and `pread` of
//! `/proc/PID/pagemap`'s 8-byte entries (pmap-trace's `procfs/pagemap.rs` uses the first, the
//! second on kernels without it). Then pmap-trace itself, attached twice: its dump and sites
//! report timed with the pages read (the default `--rank resident`) and without
//! (`--rank live`), alternating.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::fs::FileExt},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use pmap_common::linux::pagemap_scan::{
    PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGEMAP_SCAN, Region, ScanArg,
};

use super::{
    Plan,
    env::Env,
    processes::{Guarded, Lines, line_channel, median, wait_for_line, wait_until_attached},
    quiet::{check_interrupted, quietly},
    units::format_ns,
};

/// The process's size.
pub(super) const MIB: u64 = 6 << 10;

#[derive(Default)]
pub(super) struct ResidencyResults {
    pub(super) mib: u64,
    /// ns per read of the whole range, each run.
    pub(super) scan: Vec<f64>,
    pub(super) pread: Vec<f64>,
    /// Whether both found every page resident.
    pub(super) agree: bool,
    /// From SIGUSR1 to the sites report's first line, each dump.
    pub(super) resident_dump: Vec<f64>,
    pub(super) live_dump: Vec<f64>,
}

pub(super) fn residency(env: &Env, plan: &Plan) -> Result<ResidencyResults> {
    println!("\n==> resident bytes: a process holding {MIB} MiB, written page by page");
    let mut workload = Guarded::spawn(
        Command::new(&env.workloads)
            .args(["resident", &MIB.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let err = line_channel(workload.stderr());
    let (_, ready) = wait_for_line(&err, Duration::from_secs(300), "the 6 GiB process", |l| {
        l.starts_with("READY pid=")
    })?;
    let (pid, start, len) = parse_ready(&ready).context("its READY line")?;
    let mut results = ResidencyResults {
        mib: MIB,
        agree: true,
        ..ResidencyResults::default()
    };
    let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
    for rep in 0..plan.dump_reps {
        check_interrupted()?;
        let (scan, pread) = quietly("pagemap", || {
            let began = Instant::now();
            let scanned = scan_resident(&pagemap, start, start + len)?;
            let scan = began.elapsed().as_secs_f64() * 1e9;
            let began = Instant::now();
            let read = pread_resident(&pagemap, start, start + len)?;
            let pread = began.elapsed().as_secs_f64() * 1e9;
            results.agree &= scanned == len && read == len;
            Ok((scan, pread))
        })?;
        println!(
            "pagemap {}/{}: PAGEMAP_SCAN {}, pread {}",
            rep + 1,
            plan.dump_reps,
            format_ns(scan),
            format_ns(pread)
        );
        results.scan.push(scan);
        results.pread.push(pread);
    }
    let (resident, resident_out) = attach(env, pid, &["--rank", "resident"])?;
    let (live, live_out) = attach(env, pid, &["--rank", "live"])?;
    for rep in 0..plan.dump_reps {
        check_interrupted()?;
        let (with_pages, without) = quietly("sites dump", || {
            let with_pages = time_sites(&resident, &resident_out)?;
            let without = time_sites(&live, &live_out)?;
            Ok((with_pages, without))
        })?;
        println!(
            "sites dump {}/{}: resident ranking {}, live ranking {}",
            rep + 1,
            plan.dump_reps,
            format_ns(with_pages),
            format_ns(without)
        );
        results.resident_dump.push(with_pages);
        results.live_dump.push(without);
    }
    resident.stop("pmap-trace --rank resident")?;
    live.stop("pmap-trace --rank live")?;
    workload.signal(libc::SIGTERM);
    workload.wait(Duration::from_secs(60), "the 6 GiB process")?;
    if let (Some(scan), Some(pread)) = (median(&results.scan), median(&results.pread)) {
        println!(
            "resident bytes: PAGEMAP_SCAN {}, pread {}",
            format_ns(scan),
            format_ns(pread)
        );
    }
    Ok(results)
}

/// `READY pid=N at=0xADDR len=BYTES`.
fn parse_ready(line: &str) -> Option<(i32, u64, u64)> {
    let mut fields = line.split_whitespace().skip(1);
    let pid = fields.next()?.strip_prefix("pid=")?.parse().ok()?;
    let at = fields.next()?.strip_prefix("at=0x")?;
    let len = fields.next()?.strip_prefix("len=")?.parse().ok()?;
    Some((pid, u64::from_str_radix(at, 16).ok()?, len))
}

/// A pmap-trace `--sites 5 RANK` attached to `pid`, and its stdout lines.
fn attach(env: &Env, pid: i32, rank: &[&str]) -> Result<(Guarded, Lines)> {
    let mut tracer = Guarded::spawn(
        Command::new(&env.pmap_trace)
            .args(["--no-events", "--sites", "5"])
            .args(rank)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let out = line_channel(tracer.stdout());
    let err = line_channel(tracer.stderr());
    wait_until_attached(&err)?;
    Ok((tracer, out))
}

/// Sends SIGUSR1 and times the arrival of the sites report's last ranking heading (the first
/// ranking's lines come before it, read with the pages).
fn time_sites(tracer: &Guarded, lines: &Lines) -> Result<f64> {
    let start = Instant::now();
    tracer.signal(libc::SIGUSR1);
    let (at, _) = wait_for_line(lines, Duration::from_secs(120), "the sites report", |l| {
        l.starts_with("sites ") && l.contains(" since the previous dump")
    })?;
    Ok(at.duration_since(start).as_secs_f64() * 1e9)
}

/// Resident bytes of `[start, end)` by `PAGEMAP_SCAN`, as pmap-trace asks it: 256 MiB per
/// walk, 1024 regions per call.
fn scan_resident(pagemap: &File, start: u64, end: u64) -> Result<u64> {
    const STEP: u64 = 256 << 20;
    let mut regions = vec![Region::default(); 1024];
    let (mut from, mut resident) = (start, 0);
    while from < end {
        let to = end.min(from + STEP);
        let mut arg = ScanArg {
            size: std::mem::size_of::<ScanArg>() as u64,
            start: from,
            end: to,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO,
            ..ScanArg::default()
        };
        // SAFETY: a pm_scan_arg of its own size whose output array outlives the call.
        let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if found < 0 {
            bail!("PAGEMAP_SCAN: {}", std::io::Error::last_os_error());
        }
        for region in &regions[..found as usize] {
            if region.categories & (PAGE_IS_SWAPPED | PAGE_IS_PFNZERO) == 0 {
                resident += region.end - region.start;
            }
        }
        if arg.walk_end <= from {
            break;
        }
        from = arg.walk_end.min(to);
    }
    Ok(resident)
}

/// Resident bytes of `[start, end)` from the file's entries, 64 Ki entries per `pread`.
fn pread_resident(pagemap: &File, start: u64, end: u64) -> Result<u64> {
    const PAGE: u64 = 4096;
    const PRESENT: u64 = 1 << 63;
    let mut entries = vec![0u8; 64 * 1024 * 8];
    let (mut page, last, mut resident) = (start / PAGE, end / PAGE, 0);
    while page < last {
        let count = ((last - page) as usize).min(64 * 1024);
        pagemap.read_exact_at(&mut entries[..count * 8], page * 8)?;
        for entry in entries[..count * 8].chunks_exact(8) {
            if u64::from_ne_bytes(entry.try_into().expect("8 bytes")) & PRESENT != 0 {
                resident += PAGE;
            }
        }
        page += count as u64;
    }
    Ok(resident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_pid_and_the_range() {
        assert_eq!(
            parse_ready("READY pid=42 at=0x7f0000000000 len=4096\n"),
            Some((42, 0x7f00_0000_0000, 4096))
        );
        assert_eq!(parse_ready("READY pid=42"), None);
    }
}
