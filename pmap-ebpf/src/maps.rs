use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use pmap_common::{
    DROPPED_SLOTS, EventRecord, FileMmapRecord, FileOffsets, GoOffsets, MAX_TARGETS, StackOffsets,
    StackScratch, TaskOffsets,
};

/// Completed calls and lifecycle records, in the order they happened on each CPU.
/// Userspace sets the real size (`--ring-size`) before loading.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Growth calls' stack copies (see `pmap_common::STACKS_MAP`). Userspace sets the real size
/// before loading: the smallest ring when no stacks are copied.
#[map(name = "STACKS")]
pub static STACKS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// One entry per CPU (userspace sets the count): where a stack record is assembled before it
/// is sent at its exact length. An array rather than a per-CPU array, whose values are limited
/// to 32 KiB. A tracepoint program is not entered again on its CPU while it runs
/// (`trace_call_bpf` counts `bpf_prog_active`), so a CPU's entry has one writer at a time.
#[map(name = "STACK_SCRATCH")]
pub static STACK_SCRATCH: Array<StackScratch> = Array::with_max_entries(1, 0);

/// Where a file-backed mmap's record is assembled before it is sent with only the part of its
/// path buffer the walk filled.
#[map(name = "FILE_SCRATCH")]
pub static FILE_SCRATCH: PerCpuArray<FileMmapRecord> = PerCpuArray::with_max_entries(1, 0);

/// Each thread's stack top as userspace learned it (see `pmap_common::THREAD_TOPS_MAP`). LRU,
/// and emptied as threads exit, so thread ids used again start over.
#[map(name = "THREAD_TOPS")]
pub static THREAD_TOPS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// The Go runtime layout of traced Go programs, by TGID (see `pmap_common::GO_RUNTIMES_MAP`).
#[map(name = "GO_RUNTIMES")]
pub static GO_RUNTIMES: HashMap<u32, GoOffsets> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Traced processes by TGID; the value holds `target_flags` bits.
#[map(name = "TARGETS")]
pub static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// What the ring had no room for, per CPU: records (slot 0), stack copies (slot 1) and fault
/// samples (slot 2).
#[map(name = "DROPPED")]
pub static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROPPED_SLOTS, 0);

/// First-touch faults seen since the last one sampled, per CPU (`--faults=N`).
#[map(name = "FAULT_TICKS")]
pub static FAULT_TICKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The program break the last `brk` of each traced process returned. LRU, so processes that
/// are gone make room without userspace having to remove them.
#[map(name = "BRK_TOPS")]
pub static BRK_TOPS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// Set to non-zero by userspace (`--debug-bpf`) to emit aya-log diagnostics.
#[unsafe(no_mangle)]
static DEBUG_BPF: u8 = 0;

/// Set by userspace: unread bytes at which a record wakes the reader (see `WAKEUP_BYTES_GLOBAL`).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

pub fn wakeup_bytes() -> u64 {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) }
}

/// Set by userspace: unread bytes of the stack ring at which a stack record wakes the reader.
#[unsafe(no_mangle)]
static STACK_WAKEUP_BYTES: u64 = 0;

pub fn stack_wakeup_bytes() -> u64 {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&STACK_WAKEUP_BYTES) }
}

/// Set by userspace (`--stack-bytes`): bytes of user stack a growth call's record copies, 0 or
/// one of `pmap_common::STACK_SIZES`.
#[unsafe(no_mangle)]
static STACK_BYTES: u32 = 0;

pub fn stack_bytes() -> u32 {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&STACK_BYTES) }
}

/// Set by userspace from the kernel's BTF: where to find a mapped file's identity.
#[unsafe(no_mangle)]
static FILE_OFFSETS: FileOffsets = FileOffsets::UNKNOWN;

pub fn file_offsets() -> FileOffsets {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&FILE_OFFSETS) }
}

/// Set by userspace (`--faults=N`): one first-touch fault in N is recorded.
#[unsafe(no_mangle)]
static FAULT_PERIOD: u32 = 1;

pub fn fault_period() -> u32 {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&FAULT_PERIOD) }
}

/// Set by userspace: unread bytes in the ring at which fault samples stop (half the ring).
#[unsafe(no_mangle)]
static FAULT_ROOM: u64 = 0;

pub fn fault_room() -> u64 {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&FAULT_ROOM) }
}

/// Set by userspace from the kernel's BTF: where to find the main thread's stack top.
#[unsafe(no_mangle)]
static STACK_OFFSETS: StackOffsets = StackOffsets::UNKNOWN;

pub fn stack_offsets() -> StackOffsets {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&STACK_OFFSETS) }
}

/// Set by userspace from the kernel's BTF: where a task keeps its thread pointer.
#[unsafe(no_mangle)]
static TASK_OFFSETS: TaskOffsets = TaskOffsets::UNKNOWN;

pub fn task_offsets() -> TaskOffsets {
    // SAFETY: as for DEBUG_BPF below.
    unsafe { core::ptr::read_volatile(&TASK_OFFSETS) }
}

pub fn debug_enabled() -> bool {
    // SAFETY: a read-only global that userspace may patch before load; the volatile read keeps
    // the compiler from folding the default value in.
    unsafe { core::ptr::read_volatile(&DEBUG_BPF) != 0 }
}

/// Counts one record (`DROPPED_RECORDS_SLOT`) or stack copy (`DROPPED_STACKS_SLOT`) the ring
/// had no room for.
pub fn count_drop(slot: u32) {
    if let Some(counter) = DROPPED.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *counter += 1 };
    }
}

/// The target flags of the current process, if it is traced.
pub fn current_target(tgid: u32) -> Option<u32> {
    // SAFETY: the value is a plain u32 copied out immediately.
    unsafe { TARGETS.get(&tgid).copied() }
}

const _: () = assert!(EventRecord::SIZE % 8 == 0);
