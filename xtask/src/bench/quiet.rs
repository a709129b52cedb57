//! Other activity on the machine: each measurement is redone while other programs use the CPUs
//! or hold eBPF programs, and what else ran is summed up for the report. Also the interrupts
//! that stop the bench.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

/// Processes this bench started and has not yet reaped: they are allowed to hold eBPF programs.
static OURS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Processes seen holding eBPF programs that are not the bench's, over the whole run.
static FOREIGN_BPF: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Measurements redone because something else ran, kept although disturbed, and the time spent
/// waiting for the machine to be quiet.
static REDONE: AtomicUsize = AtomicUsize::new(0);
static KEPT_DISTURBED: AtomicUsize = AtomicUsize::new(0);
static WAITED_MS: AtomicU64 = AtomicU64::new(0);

/// CPU time used outside the bench's processes, per second of a measurement, above which the
/// measurement is redone. Kernel threads count as outside, so it is not zero on a quiet machine.
const MAX_FOREIGN_CPU: f64 = 0.15;
const MAX_TRIES: usize = 3;
/// Longest the whole bench waits for others to finish before it measures regardless (set from
/// the plan, so a busy machine cannot stretch the bench far beyond its stated duration).
static MAX_WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// Counts `pid`, a child the bench started, as the bench's own until [`ours_reaped`].
pub(super) fn ours_started(pid: i32) {
    if let Ok(mut ours) = OURS.lock() {
        ours.insert(pid);
    }
}

/// `pid` was reaped: a process that takes its PID later is not the bench's.
pub(super) fn ours_reaped(pid: i32) {
    if let Ok(mut ours) = OURS.lock() {
        ours.remove(&pid);
    }
}

pub(super) fn set_max_wait(max_wait: Duration) {
    MAX_WAIT_MS.store(max_wait.as_millis() as u64, Ordering::SeqCst);
}

fn max_wait() -> Duration {
    Duration::from_millis(MAX_WAIT_MS.load(Ordering::SeqCst))
}

/// The name of the process an exiting pmap-trace leaves to release its programs.
const RELEASER: &str = "pmap-trace-exit";

/// Processes the bench did not start that hold eBPF programs now. An attached syscall
/// tracepoint slows every process, and another tracer competes for the 2 CPUs: someone's
/// integration tests running alongside would distort the figures. With `releasers` false,
/// the processes exiting pmap-traces leave to release their programs are not counted: the
/// one a measurement's own pmap-trace left is no disturbance of that measurement (the next
/// one waits for it to finish).
fn foreign_bpf_holders(releasers: bool) -> Vec<String> {
    let ours = OURS.lock().map(|set| set.clone()).unwrap_or_default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if ours.contains(&pid) || pid == std::process::id() as i32 {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds_prog = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog")
        });
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if holds_prog && (releasers || comm.trim() != RELEASER) {
            found.push(format!("{} ({pid})", comm.trim()));
        }
    }
    if let Ok(mut seen) = FOREIGN_BPF.lock() {
        seen.extend(found.iter().cloned());
    }
    found
}

/// Machine-wide busy CPU time and the bench's own, at one instant.
struct CpuSnapshot {
    at: Instant,
    busy: f64,
    ours: f64,
}

impl CpuSnapshot {
    fn now() -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            busy: machine_busy_seconds(),
            ours: our_cpu_seconds(),
        }
    }

    /// CPU-seconds per second used since then by everything that is not the bench.
    fn foreign_share(&self) -> f64 {
        let foreign = (machine_busy_seconds() - self.busy) - (our_cpu_seconds() - self.ours);
        foreign.max(0.0) / self.at.elapsed().as_secs_f64().max(1e-3)
    }
}

/// Runs one measurement, and runs it again (up to [`MAX_TRIES`] times, after waiting for the
/// machine to be quiet) when another program used the CPUs or held eBPF programs meanwhile.
pub(super) fn quietly<T>(what: &str, mut measure: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        wait_for_quiet(false)?;
        let snapshot = CpuSnapshot::now();
        let value = measure()?;
        let share = snapshot.foreign_share();
        let holders = foreign_bpf_holders(false);
        if share <= MAX_FOREIGN_CPU && holders.is_empty() {
            return Ok(value);
        }
        let why = if holders.is_empty() {
            format!("other programs used {:.0} % of a CPU", share * 100.0)
        } else {
            format!("eBPF programs held by {}", holders.join(", "))
        };
        let out_of_time = Duration::from_millis(WAITED_MS.load(Ordering::SeqCst)) >= max_wait();
        if attempt == MAX_TRIES || out_of_time {
            KEPT_DISTURBED.fetch_add(1, Ordering::SeqCst);
            println!("bench: {what}: disturbed ({why}); kept after {attempt} tries");
            return Ok(value);
        }
        REDONE.fetch_add(1, Ordering::SeqCst);
        println!("bench: {what}: disturbed ({why}); measuring again once the machine is quiet");
        wait_for_quiet(true)?;
        attempt += 1;
    }
}

/// Waits until no other process holds eBPF programs and, with `sample_cpu`, other programs use
/// less than [`MAX_FOREIGN_CPU`] over a second; gives up when the bench has waited
/// [`max_wait`] in all.
pub(super) fn wait_for_quiet(sample_cpu: bool) -> Result<()> {
    let start = Instant::now();
    let mut told = false;
    let result = loop {
        check_interrupted()?;
        let waited = Duration::from_millis(WAITED_MS.load(Ordering::SeqCst)) + start.elapsed();
        if waited >= max_wait() {
            break Ok(());
        }
        let holders = foreign_bpf_holders(true);
        let busy = if holders.is_empty() && sample_cpu {
            let snapshot = CpuSnapshot::now();
            thread::sleep(Duration::from_secs(1));
            let share = snapshot.foreign_share();
            (share > MAX_FOREIGN_CPU)
                .then(|| format!("other programs use {:.0} % of a CPU", share * 100.0))
        } else if holders.is_empty() {
            None
        } else {
            Some(format!("eBPF programs held by {}", holders.join(", ")))
        };
        let Some(busy) = busy else {
            break Ok(());
        };
        if !told {
            println!("bench: waiting for the machine to be quiet ({busy})");
            told = true;
        }
        thread::sleep(Duration::from_secs(1));
    };
    WAITED_MS.fetch_add(start.elapsed().as_millis() as u64, Ordering::SeqCst);
    result
}

/// What else used the machine over the whole bench.
pub(super) struct Activity(CpuSnapshot);

impl Activity {
    pub(super) fn start() -> Activity {
        Activity(CpuSnapshot::now())
    }

    pub(super) fn finish(self) -> String {
        let wall = self.0.at.elapsed().as_secs_f64();
        let share = self.0.foreign_share();
        let bpf = FOREIGN_BPF
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default();
        format!(
            "other programs and kernel threads (including the bench's own deferred kernel \
             work) used {:.1} CPU-seconds in {wall:.0} s ({:.0} % of a CPU); measurements redone \
             because something else ran: {}; kept although disturbed: {}; waited {:.0} s for \
             quiet; other processes seen holding eBPF programs: {}",
            share * wall,
            share * 100.0,
            REDONE.load(Ordering::SeqCst),
            KEPT_DISTURBED.load(Ordering::SeqCst),
            WAITED_MS.load(Ordering::SeqCst) as f64 / 1000.0,
            if bpf.is_empty() {
                "none".into()
            } else {
                // "pmap-trace (123)" entries grouped by name: "pmap-trace ×18".
                let mut by_name = BTreeMap::<String, usize>::new();
                for holder in &bpf {
                    let name = holder
                        .rsplit_once(" (")
                        .map_or(holder.as_str(), |(name, _)| name);
                    *by_name.entry(name.to_owned()).or_default() += 1;
                }
                by_name
                    .iter()
                    .map(|(name, count)| format!("{name} ×{count}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    }
}

/// Busy (non-idle, non-iowait, non-steal) CPU time of the whole machine, from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy / ticks
}

/// CPU time of this process and every descendant it has reaped.
fn our_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        for tv in [usage.ru_utime, usage.ru_stime] {
            total += tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        }
    }
    total
}

// --- interrupts -----------------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C reaches the children too (pmap-trace exits cleanly on it); the bench stops at the next
/// check, so its guards put vm.max_map_count back and end the processes it started.
pub(super) fn catch_interrupts() {
    extern "C" fn on_signal(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; a caught signal's
    // handler is reset to the default in exec'd children.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub(super) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
