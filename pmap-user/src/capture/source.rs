//! Loading the eBPF object and reading its ring: the real [`RecordSource`].

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use pmap_common::{
    DEBUG_GLOBAL, DROPPED_FAULTS_SLOT, DROPPED_MAP, DROPPED_RECORDS_SLOT, DROPPED_STACKS_SLOT,
    EVENTS_MAP, EXEC_OFFSETS_GLOBAL, EXIT_OFFSETS_GLOBAL, ExecOffsets, ExitOffsets,
    FAULT_PERIOD_GLOBAL, FAULT_ROOM_GLOBAL, FILE_OFFSETS_GLOBAL, FORK_OFFSETS_GLOBAL, FileOffsets,
    ForkOffsets, STACK_BYTES_GLOBAL, STACK_OFFSETS_GLOBAL, STACK_SIZES, StackOffsets, TARGETS_MAP,
    WAKEUP_BYTES_GLOBAL, target_flags,
};
use tokio::io::unix::AsyncFd;

use super::{
    btf::KernelTypes,
    error::CaptureError,
    fd_watch::watch_readable,
    record_source::{Loss, RecordSource, Wait},
};
use crate::decode::{Event, Record, decode_ring_record};

/// Longest a call's record waits in the ring before the reader looks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Settings of the kernel side.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Syscalls to trace, as [`super::check_machine`] found them on this kernel.
    pub syscalls: Vec<&'static str>,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_size: u32,
    /// Turn on and forward the eBPF programs' aya-log output.
    pub debug_bpf: bool,
    /// `--faults=N`: record one in N first-touch page faults of the targets (see
    /// [`super::check_fault_tracepoint`]); `None` leaves the fault tracepoint alone.
    pub fault_period: Option<u32>,
    /// `--userfaultfd`: attach to `ioctl` too, for userfaultfd (un)registrations. Off, `ioctl`
    /// is left out of `syscalls`: its tracepoint would run the program for every ioctl of
    /// every process.
    pub userfaultfd: bool,
}

/// The loaded, attached kernel side. Dropping it detaches every program and frees every map.
pub struct Capture {
    ring: AsyncFd<RingBuf<MapData>>,
    targets: HashMap<MapData, u32, u32>,
    dropped: PerCpuArray<MapData, u64>,
    logger: Option<AsyncFd<aya_log::EbpfLogger<StderrLog>>>,
    /// Whether dropping it hands the release to a detached process (see `release.rs`).
    release_in_background: bool,
    // Owns the programs and their links; kept last so maps above are closed first.
    _ebpf: Ebpf,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.release_in_background {
            // The fields drop next, after the releasing process has taken its references.
            super::release::hand_over();
        }
    }
}

impl Capture {
    /// Loads the embedded object and attaches every program. Call [`super::check_machine`]
    /// first for clear errors about the machine.
    pub fn load(options: CaptureOptions) -> Result<Self, CaptureError> {
        Capture::load_with_stacks(options, 0)
    }

    /// As [`Capture::load`], and every call that may grow anonymous memory also carries the
    /// caller's registers and `stack_bytes` of its stack (0: none; else one of
    /// [`STACK_SIZES`]), read by [`Capture::drain_records`].
    pub fn load_with_stacks(
        options: CaptureOptions,
        stack_bytes: u32,
    ) -> Result<Self, CaptureError> {
        if stack_bytes != 0 && !STACK_SIZES.contains(&stack_bytes) {
            return Err(CaptureError::StackBytes(stack_bytes));
        }
        let mut ebpf = load_object(&options, stack_bytes)?;
        let logger = if options.debug_bpf {
            let logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, StderrLog)?;
            Some(watch_readable(logger)?)
        } else {
            None
        };
        attach_programs(&mut ebpf, &options)?;
        Ok(Capture {
            ring: watch_readable(typed_map::<RingBuf<_>>(&mut ebpf, EVENTS_MAP)?)?,
            targets: typed_map(&mut ebpf, TARGETS_MAP)?,
            dropped: typed_map(&mut ebpf, DROPPED_MAP)?,
            logger,
            release_in_background: false,
            _ebpf: ebpf,
        })
    }

    /// Dropping it will not wait for the kernel to detach the programs: a detached process
    /// named [`super::RELEASER_NAME`] holds them meanwhile and exits once they are released
    /// (see `release.rs`). For a process about to exit; the programs stay loaded, and still
    /// run for the traced processes, until that process is done.
    pub fn release_in_background_when_dropped(&mut self) {
        self.release_in_background = true;
    }

    /// Starts tracing process `tgid` in the kernel (and, with `follow`, its future children).
    pub fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError> {
        let flags = if follow {
            target_flags::FOLLOW_FORKS
        } else {
            0
        };
        self.targets
            .insert(tgid, flags, 0)
            .map_err(|source| CaptureError::Map {
                name: TARGETS_MAP,
                source,
            })
    }

    pub fn remove_target(&mut self, tgid: u32) {
        // Already gone when the kernel removed it at exit.
        let _ = self.targets.remove(&tgid);
    }

    /// Records lost so far because the ring was full, summed over CPUs.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_sum(DROPPED_RECORDS_SLOT)
    }

    fn dropped_sum(&self, slot: u32) -> u64 {
        self.dropped
            .get(&slot, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Appends every event already in the ring to `out`, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> Result<(), CaptureError> {
        let mut records = Vec::new();
        self.drain_records(&mut records)?;
        out.extend(records.into_iter().filter_map(|record| match record {
            Record::Captured(captured) => Some(captured.event),
            Record::FirstTouch(_) => None,
        }));
        Ok(())
    }

    /// As [`Capture::drain`], keeping the stacks that growth records carry and the fault
    /// samples, in ring order.
    pub fn drain_records(&mut self, out: &mut Vec<Record>) -> Result<(), CaptureError> {
        self.flush_logs();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            out.push(decode_ring_record(&item)?);
        }
        Ok(())
    }

    /// Waits until the ring (or the kernel-side log) has something to read.
    /// Waits until the ring is a quarter full, a lifecycle record or kernel-side log arrives,
    /// or [`POLL_INTERVAL`](crate::capture::POLL_INTERVAL) has passed: calls' records do not wake the reader one by one.
    pub async fn readable(&mut self) -> Result<(), CaptureError> {
        let woken = async {
            match &self.logger {
                Some(logger) => {
                    tokio::select! {
                        guard = self.ring.readable() => guard?.clear_ready(),
                        guard = logger.readable() => guard?.clear_ready(),
                    }
                }
                None => self.ring.readable().await?.clear_ready(),
            }
            Ok::<(), CaptureError>(())
        };
        match tokio::time::timeout(POLL_INTERVAL, woken).await {
            Ok(result) => result,
            Err(_elapsed) => Ok(()),
        }
    }

    fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.get_mut().flush();
        }
    }
}

impl RecordSource for Capture {
    fn readable(&mut self) -> Wait<'_, Result<(), CaptureError>> {
        Box::pin(Capture::readable(self))
    }

    fn drain_records(&mut self, out: &mut Vec<Record>) -> Result<(), CaptureError> {
        Capture::drain_records(self, out)
    }

    fn dropped(&self, loss: Loss) -> u64 {
        self.dropped_sum(match loss {
            Loss::Records => DROPPED_RECORDS_SLOT,
            Loss::Stacks => DROPPED_STACKS_SLOT,
            Loss::Faults => DROPPED_FAULTS_SLOT,
        })
    }

    fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError> {
        Capture::add_target(self, tgid, follow)
    }

    fn remove_target(&mut self, tgid: u32) {
        Capture::remove_target(self, tgid)
    }
}

/// The embedded object loaded with this run's settings and this kernel's offsets, its
/// programs not yet attached.
fn load_object(options: &CaptureOptions, stack_bytes: u32) -> Result<Ebpf, CaptureError> {
    let debug = u8::from(options.debug_bpf);
    // A quarter full wakes the reader early enough that a burst cannot fill the ring
    // between two polls.
    let wakeup_bytes = u64::from(options.ring_size / 4);
    // Fault samples stop at half full: the other half is the calls' room.
    let fault_room = u64::from(options.ring_size / 2);
    let fault_period = options.fault_period.unwrap_or(1).max(1);
    // Without usable BTF offsets the kernel side leaves file identities out and the table
    // asks /proc instead, as it must anyway for a process that is still running.
    let types = KernelTypes::from_running_kernel().ok();
    let file_offsets = types
        .as_ref()
        .and_then(|types| types.file_offsets().ok())
        .unwrap_or(FileOffsets::UNKNOWN);
    // Without them every growth call copies the full --stack-bytes.
    let stack_offsets = types
        .as_ref()
        .and_then(|types| types.stack_offsets().ok())
        .unwrap_or(StackOffsets::UNKNOWN);
    // Without them exec records carry no image and userspace reads /proc.
    let exec_offsets = types
        .as_ref()
        .and_then(|types| types.exec_offsets().ok())
        .unwrap_or(ExecOffsets::UNKNOWN);
    // Without them a forked child's copied table is checked against /proc instead.
    let fork_offsets = types
        .as_ref()
        .and_then(|types| types.fork_offsets().ok())
        .unwrap_or(ForkOffsets::UNKNOWN);
    // Without them a final dump's stack is as large as the last dump saw it.
    let exit_offsets = types
        .as_ref()
        .and_then(|types| types.exit_offsets().ok())
        .unwrap_or(ExitOffsets::UNKNOWN);
    Ok(EbpfLoader::new()
        .map_max_entries(EVENTS_MAP, options.ring_size)
        .override_global(DEBUG_GLOBAL, &debug, true)
        .override_global(WAKEUP_BYTES_GLOBAL, &wakeup_bytes, true)
        .override_global(FILE_OFFSETS_GLOBAL, &file_offsets, true)
        .override_global(STACK_BYTES_GLOBAL, &stack_bytes, true)
        .override_global(STACK_OFFSETS_GLOBAL, &stack_offsets, true)
        .override_global(EXEC_OFFSETS_GLOBAL, &exec_offsets, true)
        .override_global(FORK_OFFSETS_GLOBAL, &fork_offsets, true)
        .override_global(EXIT_OFFSETS_GLOBAL, &exit_offsets, true)
        .override_global(FAULT_PERIOD_GLOBAL, &fault_period, true)
        .override_global(FAULT_ROOM_GLOBAL, &fault_room, true)
        .load(crate::EBPF_OBJECT)?)
}

/// Attaches every program to its tracepoints: the exit of each traced syscall, the process
/// lifecycle, and with `--faults` the user page faults.
fn attach_programs(ebpf: &mut Ebpf, options: &CaptureOptions) -> Result<(), CaptureError> {
    let exits: Vec<(&str, String)> = options
        .syscalls
        .iter()
        .filter(|&&name| options.userfaultfd || name != "ioctl")
        .map(|name| ("syscalls", format!("sys_exit_{name}")))
        .collect();
    attach(ebpf, "mm_syscall_exit", &exits)?;
    for (program, tracepoint) in [
        ("process_fork", "sched_process_fork"),
        ("process_exec", "sched_process_exec"),
        ("process_exit", "sched_process_exit"),
    ] {
        attach(ebpf, program, &[("sched", tracepoint.to_string())])?;
    }
    if options.fault_period.is_some() {
        attach(
            ebpf,
            "page_fault_user",
            &[("exceptions", "page_fault_user".to_string())],
        )?;
    }
    Ok(())
}

/// Takes map `name` out of the object, as the map type the kernel side declares it.
fn typed_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, CaptureError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))?;
    M::try_from(map).map_err(|source| CaptureError::Map { name, source })
}

fn attach(
    ebpf: &mut Ebpf,
    program: &str,
    tracepoints: &[(&str, String)],
) -> Result<(), CaptureError> {
    let error = |source| CaptureError::Program {
        program: program.to_string(),
        source,
    };
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| error(aya::programs::ProgramError::NotLoaded))?
        .try_into()
        .map_err(error)?;
    prog.load().map_err(error)?;
    for (category, name) in tracepoints {
        prog.attach(category, name)
            .map_err(|source| CaptureError::Program {
                program: format!("{program} ({category}:{name})"),
                source,
            })?;
    }
    Ok(())
}

/// Writes aya-log records from the eBPF programs to standard error.
pub struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        eprintln!("{} {}", record.level(), record.args());
    }

    fn flush(&self) {}
}
