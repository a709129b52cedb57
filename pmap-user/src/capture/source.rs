//! Loading the eBPF object and reading its ring: the real [`RecordSource`].

use std::{sync::Arc, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use pmap_common::{
    DEBUG_GLOBAL, DROPPED_FAULTS_SLOT, DROPPED_MAP, DROPPED_RECORDS_SLOT, DROPPED_STACKS_SLOT,
    EVENTS_MAP, EXEC_OFFSETS_GLOBAL, EXIT_OFFSETS_GLOBAL, ExecOffsets, ExitOffsets,
    FAULT_PERIOD_GLOBAL, FAULT_ROOM_GLOBAL, FILE_OFFSETS_GLOBAL, FORK_OFFSETS_GLOBAL, FileOffsets,
    ForkOffsets, GO_RUNTIMES_MAP, STACK_BYTES_GLOBAL, STACK_OFFSETS_GLOBAL, STACK_SCRATCH_MAP,
    STACK_SIZES, STACK_WAKEUP_BYTES_GLOBAL, STACKS_MAP, StackOffsets, TARGETS_MAP,
    TASK_OFFSETS_GLOBAL, THREAD_TOPS_MAP, TaskOffsets, WAKEUP_BYTES_GLOBAL, target_flags,
};
use tokio::io::unix::AsyncFd;

use super::{
    btf::KernelTypes,
    error::CaptureError,
    fd_watch::watch_readable,
    go_runtime::GoRuntimes,
    record_source::{Loss, RecordSource, Wait},
    stack_join::StackJoin,
    thread_tops::ThreadTops,
};
use crate::decode::{Event, EventKind, Record, StackTops, awaited_stack, decode_ring_record};

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
    /// With stacks on: their ring and what joins them to their calls.
    stacks: Option<Stacks>,
    targets: HashMap<MapData, u32, u32>,
    dropped: PerCpuArray<MapData, u64>,
    logger: Option<AsyncFd<aya_log::EbpfLogger<StderrLog>>>,
    /// Whether dropping it hands the release to a detached process (see `release.rs`).
    release_in_background: bool,
    // Owns the programs and their links; kept last so maps above are closed first.
    _ebpf: Ebpf,
}

/// The stack side of the capture: growth calls' stack copies, the tops learned from unwinding
/// them, and the Go programs whose stack switches are followed.
struct Stacks {
    ring: AsyncFd<RingBuf<MapData>>,
    join: StackJoin,
    tops: Arc<ThreadTops>,
    go: GoRuntimes,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.release_in_background {
            // The fields drop next, after the releasing process has taken its references.
            super::release::hand_over();
        }
    }
}

/// The kernel structure offsets the programs follow, from the running kernel's BTF. Without
/// one (no usable BTF) the kernel side does without what it serves: file identities (the
/// table asks /proc instead, as it must anyway for a process that is still running), the main
/// thread's stack bound (every growth call copies the full --stack-bytes), exec images
/// (userspace reads /proc), a forked child's map count (its copied table is checked against
/// /proc), the size at exit (a final dump's stack is as large as the last dump saw it), a
/// Go thread's `g` (its stacks stop at the switch to the system stack).
struct KernelOffsets {
    file: FileOffsets,
    stack: StackOffsets,
    exec: ExecOffsets,
    fork: ForkOffsets,
    exit: ExitOffsets,
    task: TaskOffsets,
}

impl KernelOffsets {
    fn of_running_kernel() -> KernelOffsets {
        let types = KernelTypes::from_running_kernel().ok();
        let types = types.as_ref();
        KernelOffsets {
            file: found(types, KernelTypes::file_offsets, FileOffsets::UNKNOWN),
            stack: found(types, KernelTypes::stack_offsets, StackOffsets::UNKNOWN),
            exec: found(types, KernelTypes::exec_offsets, ExecOffsets::UNKNOWN),
            fork: found(types, KernelTypes::fork_offsets, ForkOffsets::UNKNOWN),
            exit: found(types, KernelTypes::exit_offsets, ExitOffsets::UNKNOWN),
            task: found(types, KernelTypes::task_offsets, TaskOffsets::UNKNOWN),
        }
    }
}

/// The offsets `read` finds in `types`, or `unknown` (which turns their use off).
fn found<T>(
    types: Option<&KernelTypes>,
    read: impl Fn(&KernelTypes) -> Result<T, super::btf::BtfError>,
    unknown: T,
) -> T {
    types.and_then(|types| read(types).ok()).unwrap_or(unknown)
}

/// `BPF_EXIST` (include/uapi/linux/bpf.h): an update that fails when the key is gone.
const BPF_EXIST: u64 = 2;

/// The smallest ring the kernel takes: one page. The stack ring is this small when no stacks
/// are copied.
const SMALLEST_RING: u32 = 4096;

impl Capture {
    /// Loads the embedded object and attaches every program. Call [`super::check_machine`]
    /// first for clear errors about the machine.
    pub fn load(options: CaptureOptions) -> Result<Self, CaptureError> {
        Capture::load_with_stacks(options, 0)
    }

    /// As [`Capture::load`], and every call that may grow anonymous memory also carries the
    /// caller's registers and up to `stack_bytes` of its stack (0: none; else one of
    /// [`STACK_SIZES`]), read by [`Capture::drain_records`]. The stacks come through a ring
    /// of their own, as large as the call records' ring.
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
        let stacks = if stack_bytes == 0 {
            None
        } else {
            Some(Stacks::take(&mut ebpf)?)
        };
        Ok(Capture {
            ring: watch_readable(typed_map::<RingBuf<_>>(&mut ebpf, EVENTS_MAP)?)?,
            stacks,
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
    /// With stacks on, a Go program's layout goes to the kernel first.
    pub fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError> {
        let mut flags = if follow {
            target_flags::FOLLOW_FORKS
        } else {
            0
        };
        if self
            .stacks
            .as_mut()
            .is_some_and(|stacks| stacks.go.examine(tgid))
        {
            flags |= target_flags::GO_RUNTIME;
        }
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

    /// A traced process execed: whether the new program is Go decides how its stacks are
    /// copied. Its entry is only updated, never made again: the process may be gone already.
    fn examine_new_program(&mut self, tgid: u32) {
        let Some(stacks) = &mut self.stacks else {
            return;
        };
        let Ok(flags) = self.targets.get(&tgid, 0) else {
            return;
        };
        let go = if stacks.go.examine(tgid) {
            target_flags::GO_RUNTIME
        } else {
            0
        };
        let flags = (flags & !target_flags::GO_RUNTIME) | go;
        let _ = self.targets.insert(tgid, flags, BPF_EXIST);
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

    /// As [`Capture::drain`], with the stack copied for each growth call and the fault
    /// samples, in ring order.
    pub fn drain_records(&mut self, out: &mut Vec<Record>) -> Result<(), CaptureError> {
        self.flush_logs();
        let mut execs = Vec::new();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            let mut record = decode_ring_record(&item)?;
            if let (Some(stacks), Some(key)) = (&mut self.stacks, awaited_stack(&item)) {
                let mut stack = stacks.join.take(key, stacks.ring.get_mut())?.map(Box::new);
                if let Some(stack) = &mut stack {
                    stack.tops = Some(stacks.tops.clone() as Arc<dyn StackTops>);
                }
                match &mut record {
                    Record::Captured(captured) => captured.stack = stack,
                    Record::FirstTouch(touch) => touch.stack = stack,
                }
            }
            if let Record::Captured(captured) = &record
                && captured.event.kind == EventKind::Exec
            {
                execs.push(captured.event.tgid);
            }
            out.push(record);
        }
        for tgid in execs {
            self.examine_new_program(tgid);
        }
        Ok(())
    }

    /// Waits until either ring is a quarter full (or one of its later marks is passed, see
    /// `wake_flag` in the kernel side), a lifecycle record or kernel-side log arrives, or
    /// [`POLL_INTERVAL`](crate::capture::POLL_INTERVAL) has passed: calls' records do not wake
    /// the reader one by one.
    pub async fn readable(&mut self) -> Result<(), CaptureError> {
        let stacks = async {
            match &self.stacks {
                Some(stacks) => stacks.ring.readable().await.map(|mut g| g.clear_ready()),
                None => std::future::pending().await,
            }
        };
        let logs = async {
            match &self.logger {
                Some(logger) => logger.readable().await.map(|mut g| g.clear_ready()),
                None => std::future::pending().await,
            }
        };
        let woken = async {
            tokio::select! {
                guard = self.ring.readable() => guard?.clear_ready(),
                ready = stacks => ready?,
                ready = logs => ready?,
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

impl Stacks {
    fn take(ebpf: &mut Ebpf) -> Result<Stacks, CaptureError> {
        Ok(Stacks {
            ring: watch_readable(typed_map::<RingBuf<_>>(ebpf, STACKS_MAP)?)?,
            join: StackJoin::default(),
            tops: Arc::new(ThreadTops::new(typed_map(ebpf, THREAD_TOPS_MAP)?)),
            go: GoRuntimes::new(typed_map(ebpf, GO_RUNTIMES_MAP)?),
        })
    }
}

/// The embedded object loaded with this run's settings (ring sizes, `--stack-bytes`,
/// `--faults`) and this kernel's offsets, its programs not yet attached.
fn load_object(options: &CaptureOptions, stack_bytes: u32) -> Result<Ebpf, CaptureError> {
    let debug = u8::from(options.debug_bpf);
    // A quarter full wakes the reader early enough that a burst cannot fill the ring between
    // two polls.
    let wakeup_bytes = u64::from(options.ring_size / 4);
    let stack_ring = if stack_bytes == 0 {
        SMALLEST_RING
    } else {
        options.ring_size
    };
    // The stack ring wakes the reader sooner: a stack copy is several times a call record's
    // size, so that ring fills first, and its stacks are taken only as their records are read.
    // At a quarter, two threads churning mappings on a busy 2-CPU machine overran it before
    // the woken reader ran; at a sixteenth they did not in most runs.
    let stack_wakeup_bytes = u64::from(stack_ring / 16);
    // One scratch entry per CPU that may run a program.
    let scratch_entries = if stack_bytes == 0 {
        1
    } else {
        aya::util::nr_cpus().map_err(|(_, err)| CaptureError::Poll(err))? as u32
    };
    // Fault samples stop at half full: the other half is the calls' room.
    let fault_room = u64::from(options.ring_size / 2);
    let fault_period = options.fault_period.unwrap_or(1).max(1);
    let offsets = KernelOffsets::of_running_kernel();
    Ok(EbpfLoader::new()
        .map_max_entries(EVENTS_MAP, options.ring_size)
        .map_max_entries(STACKS_MAP, stack_ring)
        .map_max_entries(STACK_SCRATCH_MAP, scratch_entries)
        .override_global(DEBUG_GLOBAL, &debug, true)
        .override_global(WAKEUP_BYTES_GLOBAL, &wakeup_bytes, true)
        .override_global(STACK_WAKEUP_BYTES_GLOBAL, &stack_wakeup_bytes, true)
        .override_global(FILE_OFFSETS_GLOBAL, &offsets.file, true)
        .override_global(STACK_BYTES_GLOBAL, &stack_bytes, true)
        .override_global(STACK_OFFSETS_GLOBAL, &offsets.stack, true)
        .override_global(EXEC_OFFSETS_GLOBAL, &offsets.exec, true)
        .override_global(FORK_OFFSETS_GLOBAL, &offsets.fork, true)
        .override_global(EXIT_OFFSETS_GLOBAL, &offsets.exit, true)
        .override_global(TASK_OFFSETS_GLOBAL, &offsets.task, true)
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
