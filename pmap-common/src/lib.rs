//! Records exchanged between the kernel side (`pmap-ebpf`) and userspace (`pmap-user`).
//!
//! Everything here is `#[repr(C)]` and plain data: the eBPF program writes these bytes into the
//! ring buffer and the userspace decoder reads them back, so both sides must agree on layout.
#![no_std]

pub mod linux;

/// Name of the ring buffer map that carries [`EventRecord`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the ring buffer map that carries the stack copies of growth calls
/// ([`StackHeader`]s and their bytes). A ring of its own, so that stack data, many times the
/// size of a call's record, can never take the room the calls the tables depend on need.
pub const STACKS_MAP: &str = "STACKS";
/// Name of the array map, one entry per CPU, where a stack copy is assembled before it goes
/// into [`STACKS_MAP`] at its exact length ([`StackScratch`]).
pub const STACK_SCRATCH_MAP: &str = "STACK_SCRATCH";
/// Name of the LRU hash map from thread id to the top of that thread's stack (exclusive): the
/// kernel side writes the top of the stack a traced thread is created on (from its clone
/// call), userspace a lower one, as far up as an unwind of one of its copies read, once it has
/// unwound a whole stack of the thread; later copies stop there. A thread's outermost frames
/// never move, so every later stack of the thread ends there too.
pub const THREAD_TOPS_MAP: &str = "THREAD_TOPS";
/// Name of the hash map from TGID to the [`GoOffsets`] of a traced Go program, written by
/// userspace from the program's DWARF.
pub const GO_RUNTIMES_MAP: &str = "GO_RUNTIMES";
/// Name of the hash map of traced thread-group ids (key: TGID, value: [`target_flags`] bits).
pub const TARGETS_MAP: &str = "TARGETS";
/// Name of the per-CPU array counting what the ring had no room for: slot
/// [`DROPPED_RECORDS_SLOT`] counts records lost, slot [`DROPPED_STACKS_SLOT`] growth calls whose
/// record went without its stack copy, slot [`DROPPED_FAULTS_SLOT`] sampled first-touch faults
/// left out because the ring was too full to spare room for them.
pub const DROPPED_MAP: &str = "DROPPED";
pub const DROPPED_RECORDS_SLOT: u32 = 0;
pub const DROPPED_STACKS_SLOT: u32 = 1;
pub const DROPPED_FAULTS_SLOT: u32 = 2;
pub const DROPPED_SLOTS: u32 = 3;
/// Name of the global holding `N` of `--faults=N`: one first-touch fault in N is recorded.
pub const FAULT_PERIOD_GLOBAL: &str = "FAULT_PERIOD";
/// Name of the global holding how many unread bytes in the ring stop fault records: faults are
/// only an estimate, and must never take the room the records the tables depend on need.
pub const FAULT_ROOM_GLOBAL: &str = "FAULT_ROOM";
/// Name of the LRU hash map from TGID to the program break the last `brk` returned, which tells
/// a `brk` that grew the heap from one that shrank or only asked.
pub const BRK_TOPS_MAP: &str = "BRK_TOPS";
/// Name of the global holding how many bytes of user stack a growth call's record copies: 0 (no
/// copy) or one of [`STACK_SIZES`].
pub const STACK_BYTES_GLOBAL: &str = "STACK_BYTES";
/// Name of the global holding how many unread bytes in [`STACKS_MAP`] wake the reader (as
/// [`WAKEUP_BYTES_GLOBAL`] for the call records).
pub const STACK_WAKEUP_BYTES_GLOBAL: &str = "STACK_WAKEUP_BYTES";
/// Name of the global that turns kernel-side aya-log output on (non-zero) or off.
pub const DEBUG_GLOBAL: &str = "DEBUG_BPF";
/// Name of the global holding how many unread bytes in the ring wake the reader. Below it a
/// call's record waits for the reader's next periodic poll: waking the reader for every call
/// would cost the traced process a context switch per call on a small machine.
pub const WAKEUP_BYTES_GLOBAL: &str = "WAKEUP_BYTES";

/// Capacity of the target map: processes traced at once, counting followed children.
pub const MAX_TARGETS: u32 = 16_384;

pub const TASK_COMM_LEN: usize = 16;

/// Bits stored as the value of a [`TARGETS_MAP`] entry.
pub mod target_flags {
    /// Children forked by this process are traced too, from their first instruction.
    pub const FOLLOW_FORKS: u32 = 1;
    /// The process runs a Go program whose [`super::GoOffsets`] are in
    /// [`super::GO_RUNTIMES_MAP`]: its stack copies follow a switch to the system stack back
    /// to the goroutine.
    pub const GO_RUNTIME: u32 = 2;
}

/// What an [`EventRecord`] describes.
pub mod record_kind {
    /// A traced memory-management syscall completed; `syscall_nr`, `args` and `ret` are valid.
    pub const SYSCALL: u32 = 1;
    /// The process completed an exec: its address space was replaced.
    pub const EXEC: u32 = 2;
    /// The last thread of the process exited (`aux` holds nothing; the arguments the size of
    /// its address space: [`super::EXIT_TOTAL_PAGES`], [`super::EXIT_STACK_PAGES`]).
    pub const EXIT: u32 = 3;
    /// The process forked a new process (not a thread); `aux` is its PID, the arguments what
    /// is known of its memory ([`super::FORK_CHILD_VMAS`], [`super::FORK_SHARES_MM`]).
    pub const FORK: u32 = 4;
    /// As [`SYSCALL`] for a call that may have grown anonymous memory and whose stack copy is in
    /// the [`STACKS_MAP`](crate::STACKS_MAP) ring, in a [`StackHeader`](crate::StackHeader) with
    /// the same thread id and timestamp. The stack record is written first: once this record
    /// is read, its stack is in the stack ring.
    pub const SYSCALL_WITH_STACK: u32 = 5;
    /// As [`SYSCALL`] for a successful file-backed mmap, in a [`FileMmapRecord`](crate::FileMmapRecord) that also
    /// names the file; only the part of the path that was written is sent.
    pub const FILE_MMAP: u32 = 6;
    /// A sampled first touch of a page (`--faults`), in a [`FaultRecord`](crate::FaultRecord).
    pub const FIRST_TOUCH: u32 = 7;
    /// As [`EXEC`], in an [`super::ExecHeader`] that also carries the new address space as exec left
    /// it: its VMAs, the stack, the break and the command line.
    pub const EXEC_IMAGE: u32 = 8;
    /// A growth call's stack copy, in the [`STACKS_MAP`](crate::STACKS_MAP) ring: a
    /// [`StackHeader`](crate::StackHeader) and its bytes.
    pub const STACK: u32 = 9;
    /// As [`FIRST_TOUCH`] with the stack of the code that touched the page in the
    /// [`STACKS_MAP`](crate::STACKS_MAP) ring (same thread id and timestamp), written first as
    /// a growth call's.
    pub const FIRST_TOUCH_WITH_STACK: u32 = 10;
}

/// Byte offsets inside the `exceptions:page_fault_user` tracepoint record that the kernel side
/// reads (`--faults`). Userspace checks them against the tracepoint's `format` file.
pub mod fault_layout {
    pub const ADDRESS_OFFSET: usize = 8;
    pub const ERROR_CODE_OFFSET: usize = 24;
    /// x86 page-fault error code bit: set when the page was present (a protection fault),
    /// clear when the access found no page, a first touch.
    pub const PF_PROTECTION: u64 = 1;
}

/// A sampled user page fault on a page that was not present (kind
/// [`record_kind::FIRST_TOUCH`], or [`record_kind::FIRST_TOUCH_WITH_STACK`] when the stack of
/// the code that touched it was copied). Small, because a program touching memory faults far
/// more often than it makes calls.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    pub kind: u32,
    pub tgid: u32,
    /// The faulting address.
    pub address: u64,
    /// The thread that faulted and when: what joins the record to its stack copy.
    pub tid: u32,
    pub _pad: u32,
    pub timestamp_ns: u64,
}

impl FaultRecord {
    pub const SIZE: usize = core::mem::size_of::<FaultRecord>();
}

/// x86_64 numbers of the syscalls that change a process's mappings.
pub mod syscall_nr {
    pub const MMAP: u32 = 9;
    pub const IOCTL: u32 = 16;
    pub const MPROTECT: u32 = 10;
    pub const MUNMAP: u32 = 11;
    pub const BRK: u32 = 12;
    pub const MREMAP: u32 = 25;
    pub const MADVISE: u32 = 28;
    pub const SHMAT: u32 = 30;
    pub const SHMDT: u32 = 67;
    pub const MLOCK: u32 = 149;
    pub const MUNLOCK: u32 = 150;
    pub const MLOCKALL: u32 = 151;
    pub const MUNLOCKALL: u32 = 152;
    pub const PRCTL: u32 = 157;
    pub const REMAP_FILE_PAGES: u32 = 216;
    pub const MBIND: u32 = 237;
    pub const MLOCK2: u32 = 325;
    pub const PKEY_MPROTECT: u32 = 329;
    pub const MAP_SHADOW_STACK: u32 = 453;
    pub const MSEAL: u32 = 462;
}

/// The syscall tracepoints (`syscalls:sys_exit_<name>`) the kernel side attaches to.
pub const TRACED_SYSCALLS: &[(&str, u32)] = &[
    ("mmap", syscall_nr::MMAP),
    ("mprotect", syscall_nr::MPROTECT),
    ("munmap", syscall_nr::MUNMAP),
    ("brk", syscall_nr::BRK),
    ("mremap", syscall_nr::MREMAP),
    ("madvise", syscall_nr::MADVISE),
    ("shmat", syscall_nr::SHMAT),
    ("shmdt", syscall_nr::SHMDT),
    ("mlock", syscall_nr::MLOCK),
    ("munlock", syscall_nr::MUNLOCK),
    ("mlockall", syscall_nr::MLOCKALL),
    ("munlockall", syscall_nr::MUNLOCKALL),
    ("prctl", syscall_nr::PRCTL),
    ("remap_file_pages", syscall_nr::REMAP_FILE_PAGES),
    ("mbind", syscall_nr::MBIND),
    ("mlock2", syscall_nr::MLOCK2),
    ("pkey_mprotect", syscall_nr::PKEY_MPROTECT),
    ("map_shadow_stack", syscall_nr::MAP_SHADOW_STACK),
    ("mseal", syscall_nr::MSEAL),
    ("ioctl", syscall_nr::IOCTL),
];

/// Byte offsets inside a `syscalls:sys_exit_*` tracepoint record that the kernel side reads.
/// Userspace checks them against the tracepoint's `format` file before loading.
pub mod sys_exit_layout {
    pub const SYSCALL_NR_OFFSET: usize = 8;
    pub const RET_OFFSET: usize = 16;
}

/// Byte offsets inside the `sched:*` tracepoint records that the kernel side reads.
pub mod sched_layout {
    /// `sched_process_fork`: `pid_t child_pid`.
    pub const FORK_CHILD_PID_OFFSET: usize = 20;
    /// `sched_process_exec`: `__data_loc char[] filename` (the offset of the string from the
    /// record's start in the low 16 bits, its length in the high 16).
    pub const EXEC_FILENAME_OFFSET: usize = 8;
    /// `sched_process_exit`: `bool group_dead`.
    pub const EXIT_GROUP_DEAD_OFFSET: usize = 32;
}

/// Name of the global holding the [`FileOffsets`] userspace found in the kernel's BTF.
pub const FILE_OFFSETS_GLOBAL: &str = "FILE_OFFSETS";
/// Bytes kept of a mapped file's name (its last path component) in a [`FileIdentity`], NUL
/// included.
pub const FILE_NAME_LEN: usize = 64;
/// Bytes of a [`FilePath`]'s path buffer.
pub const FILE_PATH_LEN: usize = 768;
/// A component is copied only while the components before it fill less than this (a power of
/// two): each copy may take up to `FILE_PATH_LEN - FILE_PATH_ROOM` bytes (a name's 255 and its
/// NUL), and the verifier must see every copy end inside the buffer. Longer paths are rare
/// (`PATH_MAX` is 4096): their walk stops short.
pub const FILE_PATH_ROOM: usize = 512;
/// Most steps of the walk from a file's dentry up to the root of its mount namespace: a step
/// copies one component, or crosses from a mount's root to where it is mounted.
pub const FILE_PATH_STEPS: usize = 32;

const _: () = assert!(FILE_PATH_ROOM.is_power_of_two() && FILE_PATH_LEN >= FILE_PATH_ROOM + 256);

/// What the walk of a [`FilePath`]'s path found.
pub mod file_path {
    /// The walk reached the root of the mount tree: the components are the whole path.
    pub const COMPLETE: u32 = 1;
    /// The file's dentry was unlinked (`d_unlinked`): `/proc/PID/maps` adds ` (deleted)`.
    pub const DELETED: u32 = 2;
}

/// Byte offsets of the kernel struct fields followed to identify the file behind a new
/// mapping: task → files → fdtable → file → inode / dentry, and from the dentry and its mount
/// up to the root, as `d_path` walks it (fs/d_path.c `prepend_path`). Found in the running
/// kernel's BTF by userspace; `valid == 0` turns the look-up off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOffsets {
    pub valid: u64,
    pub task_files: u64,
    pub files_fdt: u64,
    pub fdtable_max_fds: u64,
    pub fdtable_fd: u64,
    pub file_inode: u64,
    /// `file.f_path.dentry`.
    pub file_dentry: u64,
    pub inode_ino: u64,
    pub inode_sb: u64,
    pub sb_dev: u64,
    /// `dentry.d_name.name`.
    pub dentry_name: u64,
    /// `dentry.d_parent`.
    pub dentry_parent: u64,
    /// `dentry.d_hash.pprev`: null once the dentry is unhashed (unlinked).
    pub dentry_hash_pprev: u64,
    /// `file.f_path.mnt`.
    pub file_mnt: u64,
    /// `vfsmount.mnt_root`.
    pub vfsmount_root: u64,
    /// `mount.mnt`: the `vfsmount` inside its `struct mount` (fs/mount.h).
    pub mount_vfsmount: u64,
    /// `mount.mnt_parent`.
    pub mount_parent: u64,
    /// `mount.mnt_mountpoint`.
    pub mount_mountpoint: u64,
}

impl FileOffsets {
    pub const UNKNOWN: FileOffsets = FileOffsets {
        valid: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_max_fds: 0,
        fdtable_fd: 0,
        file_inode: 0,
        file_dentry: 0,
        inode_ino: 0,
        inode_sb: 0,
        sb_dev: 0,
        dentry_name: 0,
        dentry_parent: 0,
        dentry_hash_pprev: 0,
        file_mnt: 0,
        vfsmount_root: 0,
        mount_vfsmount: 0,
        mount_parent: 0,
        mount_mountpoint: 0,
    };
}

/// Name of the global holding the [`StackOffsets`] userspace found in the kernel's BTF.
pub const STACK_OFFSETS_GLOBAL: &str = "STACK_OFFSETS";

/// Byte offsets of the kernel struct fields followed to find the top of the main thread's
/// stack: task → mm → `start_stack` (where the kernel put `argc` at exec; no frame lies above
/// it). A growth call on the main thread copies its stack only up to there, so a shallow stack
/// costs a small copy; other threads' stacks have no such field and copy the full size.
/// `valid == 0` turns the bound off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackOffsets {
    pub valid: u64,
    pub task_mm: u64,
    pub mm_start_stack: u64,
}

impl StackOffsets {
    pub const UNKNOWN: StackOffsets = StackOffsets {
        valid: 0,
        task_mm: 0,
        mm_start_stack: 0,
    };
}

/// Name of the global holding the [`ForkOffsets`] userspace found in the kernel's BTF.
pub const FORK_OFFSETS_GLOBAL: &str = "FORK_OFFSETS";

/// Byte offsets of the kernel struct fields the fork record follows to the new child: the
/// parent's `children` list, whose last entry is the child copy_process() just added, and the
/// child's mm. The record tells userspace how many VMAs the child got (dup_mmap() leaves out
/// the VM_DONTCOPY ones) and whether it shares its parent's mm (CLONE_VM, as vfork does).
/// `valid == 0` turns this off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkOffsets {
    pub valid: u64,
    pub task_children: u64,
    pub task_sibling: u64,
    pub task_pid: u64,
    pub task_mm: u64,
    pub mm_map_count: u64,
}

impl ForkOffsets {
    pub const UNKNOWN: ForkOffsets = ForkOffsets {
        valid: 0,
        task_children: 0,
        task_sibling: 0,
        task_pid: 0,
        task_mm: 0,
        mm_map_count: 0,
    };
}

/// The fork record's arguments: `args[FORK_CHILD_VMAS]` is the child's `mm->map_count` plus
/// one (0: unknown), `args[FORK_SHARES_MM]` is 1 when the child shares its parent's mm.
pub const FORK_CHILD_VMAS: usize = 0;
pub const FORK_SHARES_MM: usize = 1;

/// Name of the global holding the [`ExitOffsets`] userspace found in the kernel's BTF.
pub const EXIT_OFFSETS_GLOBAL: &str = "EXIT_OFFSETS";

/// Byte offsets of the `mm_struct` counters the exit record carries: read at
/// `sched_process_exit`, which runs before exit_mm() lets the address space go, they tell the
/// size the process had at its exit (its stack grows without a syscall). `valid == 0` turns
/// this off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitOffsets {
    pub valid: u64,
    pub task_mm: u64,
    pub mm_total_vm: u64,
    pub mm_stack_vm: u64,
}

impl ExitOffsets {
    pub const UNKNOWN: ExitOffsets = ExitOffsets {
        valid: 0,
        task_mm: 0,
        mm_total_vm: 0,
        mm_stack_vm: 0,
    };
}

/// The exit record's arguments: `args[EXIT_TOTAL_PAGES]` is `mm->total_vm`,
/// `args[EXIT_STACK_PAGES]` is `mm->stack_vm` (pages of VM_GROWSDOWN mappings); both 0 when
/// unknown.
pub const EXIT_TOTAL_PAGES: usize = 0;
pub const EXIT_STACK_PAGES: usize = 1;

/// Name of the global holding the [`ExecOffsets`] userspace found in the kernel's BTF.
pub const EXEC_OFFSETS_GLOBAL: &str = "EXEC_OFFSETS";

/// Byte offsets of the kernel struct fields the exec record reads: the new `mm_struct`'s
/// layout fields, the maple tree that holds its VMAs, and each `vm_area_struct`. `valid == 0`
/// turns the image off (exec records are then plain [`EventRecord`]s and userspace reads
/// `/proc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecOffsets {
    pub valid: u64,
    pub task_mm: u64,
    pub mm_map_count: u64,
    pub mm_start_brk: u64,
    pub mm_brk: u64,
    pub mm_start_stack: u64,
    pub mm_arg_start: u64,
    pub mm_arg_end: u64,
    /// `mm->mm_mt.ma_root`.
    pub mm_tree_root: u64,
    /// `maple_range_64.slot` (leaves and range nodes) and `maple_arange_64.slot` (the
    /// internal nodes of an allocation-range tree such as `mm_mt`).
    pub range64_slots: u64,
    pub arange64_slots: u64,
    pub vma_start: u64,
    pub vma_end: u64,
    pub vma_mm: u64,
    pub vma_flags: u64,
    pub vma_pgoff: u64,
    pub vma_file: u64,
}

impl ExecOffsets {
    pub const UNKNOWN: ExecOffsets = ExecOffsets {
        valid: 0,
        task_mm: 0,
        mm_map_count: 0,
        mm_start_brk: 0,
        mm_brk: 0,
        mm_start_stack: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        mm_tree_root: 0,
        range64_slots: 0,
        arange64_slots: 0,
        vma_start: 0,
        vma_end: 0,
        vma_mm: 0,
        vma_flags: 0,
        vma_pgoff: 0,
        vma_file: 0,
    };
}

/// VMAs an [`ExecRecord`] holds. A fresh image has the executable's segments, the
/// interpreter's, the stack and the vDSO's: 15 to 20 for a dynamic program.
pub const EXEC_VMAS_MAX: usize = 48;
/// Bytes of the executed file's name (as given to execve, NUL included) an [`ExecRecord`] holds.
pub const EXEC_PATH_MAX: usize = 256;
/// Bytes of the command line an [`ExecRecord`] holds.
pub const EXEC_CMDLINE_MAX: usize = 4096;

/// One VMA of a fresh image, as the kernel holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecVma {
    pub start: u64,
    pub end: u64,
    /// `vm_flags`.
    pub flags: u64,
    /// `vm_pgoff`, in pages.
    pub pgoff: u64,
    /// The file it maps; all zero for anonymous and special mappings.
    pub file: FileIdentity,
}

impl ExecVma {
    pub const EMPTY: ExecVma = ExecVma {
        start: 0,
        end: 0,
        flags: 0,
        pgoff: 0,
        file: FileIdentity {
            dev: 0,
            _pad: 0,
            ino: 0,
            name: [0; FILE_NAME_LEN],
        },
    };
}

/// A completed exec (kind [`record_kind::EXEC_IMAGE`]) with the address space exec made, read
/// in the new image before it returns to user mode: everything exec maps without a syscall
/// (executable, interpreter, stack, vDSO), so a process that ends before userspace reads
/// `/proc` still has its table. The VMAs are read from the leaves of the mm's maple tree (a
/// fresh image's tree is two levels deep at most); userspace trusts the set only when it is
/// whole: `vma_count == map_count`, nothing `truncated`, no two VMAs overlapping.
///
/// In the ring the header is followed by `vma_count` [`ExecVma`]s and then `cmdline_len`
/// bytes of the command line: the record is as long as they are (a dynamic program's is about
/// 3 KiB), at most [`EXEC_RECORD_MAX`] bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecHeader {
    pub event: EventRecord,
    /// `mm->start_stack`, `mm->start_brk`, `mm->brk`.
    pub start_stack: u64,
    pub start_brk: u64,
    pub brk: u64,
    /// `mm->arg_end - mm->arg_start`: the command line's full length.
    pub arg_len: u64,
    /// `mm->map_count`: how many VMAs the image has.
    pub map_count: u32,
    /// How many [`ExecVma`]s follow.
    pub vma_count: u32,
    /// How many bytes of the command line follow them (0 when the read failed).
    pub cmdline_len: u32,
    /// Non-zero when the tree was deeper than the walk goes, or held more than
    /// [`EXEC_VMAS_MAX`] VMAs: the set is short.
    pub truncated: u32,
    /// The file name execve was given (`bprm->filename`), NUL-terminated; empty when it did not
    /// fit.
    pub path: [u8; EXEC_PATH_MAX],
}

impl ExecHeader {
    pub const SIZE: usize = core::mem::size_of::<ExecHeader>();
}

pub const EXEC_VMA_SIZE: usize = core::mem::size_of::<ExecVma>();
/// Bytes after the header at most: every VMA slot and the whole command line.
pub const EXEC_BODY_MAX: usize = EXEC_VMAS_MAX * EXEC_VMA_SIZE + EXEC_CMDLINE_MAX;
pub const EXEC_RECORD_MAX: usize = ExecHeader::SIZE + EXEC_BODY_MAX;

/// The largest exec record, as the kernel side builds it before sending its used part.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: ExecHeader,
    pub body: [u8; EXEC_BODY_MAX],
}

/// A file a fresh image maps, as an [`ExecVma`] names it. All zero when it could not be read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    /// The kernel's `dev_t`: major in the high 12 bits, minor in the low 20.
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
    /// Last path component, NUL-terminated (truncated to fit).
    pub name: [u8; FILE_NAME_LEN],
}

/// The file a successful file-backed `mmap` mapped, read in the kernel while the descriptor is
/// still open, with its whole path. All zero when it could not be read. In the ring only the
/// first `path_len` bytes of `path` follow the header: most paths are far shorter than the
/// buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePath {
    /// The kernel's `dev_t`: major in the high 12 bits, minor in the low 20.
    pub dev: u32,
    /// [`file_path`] bits.
    pub path_flags: u32,
    pub ino: u64,
    /// Bytes of `path` written and sent.
    pub path_len: u32,
    pub _pad: u32,
    /// The path's components, last first, each NUL-terminated, packed from the start: the
    /// file's name, its directory's, and so on up to the root (all of them when
    /// [`file_path::COMPLETE`] is set).
    pub path: [u8; FILE_PATH_LEN],
}

/// One record in the ring buffer. Fixed size so the kernel can reserve it in one step.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// One of [`record_kind`].
    pub kind: u32,
    /// For [`record_kind::SYSCALL`], one of [`syscall_nr`].
    pub syscall_nr: u32,
    /// `CLOCK_MONOTONIC` nanoseconds at the end of the call (`bpf_ktime_get_ns`).
    pub timestamp_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// The six syscall arguments, read from the saved user registers at syscall exit.
    pub args: [u64; 6],
    /// The syscall's return value (negative errno on failure).
    pub ret: i64,
    /// Kind-specific extra value (see [`record_kind`]).
    pub aux: u64,
    /// The calling thread's `comm`, NUL-padded.
    pub comm: [u8; TASK_COMM_LEN],
}

impl EventRecord {
    pub const SIZE: usize = core::mem::size_of::<EventRecord>();
}

/// A successful file-backed `mmap` (kind [`record_kind::FILE_MMAP`]): the call's record and the
/// file it mapped. Only these calls carry the identity, so the records of all others stay small
/// (every byte of a record is a store the traced thread pays for).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMmapRecord {
    pub event: EventRecord,
    pub file: FilePath,
}

impl FileMmapRecord {
    /// The largest record: a whole path buffer.
    pub const SIZE: usize = core::mem::size_of::<FileMmapRecord>();
    /// The smallest: the call and the file's identity, no path.
    pub const HEADER_SIZE: usize = FileMmapRecord::SIZE - FILE_PATH_LEN;
}

/// The user registers an unwinder starts from, as saved at syscall entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserRegs {
    /// The instruction after the `syscall` instruction.
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
}

/// The sizes a stack copy can have (`--stack-bytes`): how many bytes of user stack one growth
/// call may copy at most, both segments of a [`StackHeader`] together.
pub const STACK_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];
/// The largest of [`STACK_SIZES`].
pub const STACK_MAX: usize = 65536;

/// What a [`StackHeader`]'s copy was bounded by, and what it holds.
pub mod stack_flags {
    /// The copy stopped at the thread's top from [`super::THREAD_TOPS_MAP`], `learned_top`.
    pub const LEARNED_TOP: u32 = 1;
    /// The call was made on a Go program's system stack (g0) while a goroutine had switched
    /// to it: `switched` is the goroutine's saved context (`g.sched`) and a copy of the
    /// goroutine's stack follows the first segment.
    pub const SWITCHED: u32 = 2;
}

/// A growth call's stack copy (kind [`record_kind::STACK`]) in the [`STACKS_MAP`] ring: the
/// registers an unwinder starts from, then `len` bytes of user memory from `regs.rsp` up and,
/// with [`stack_flags::SWITCHED`], `switched_len` bytes from `switched.rsp` up. The record is
/// as long as they are. The call's own record (kind [`record_kind::SYSCALL_WITH_STACK`], in
/// [`EVENTS_MAP`]) has the same `tid` and `timestamp_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackHeader {
    pub kind: u32,
    pub tid: u32,
    pub timestamp_ns: u64,
    pub regs: UserRegs,
    /// Bytes copied from `regs.rsp` up: to the stack's top when it is known (the main
    /// thread's `mm->start_stack`, a learned top, a goroutine's `g.stack.hi`), else as far as
    /// `--stack-bytes` or the stack's mapping reach.
    pub len: u32,
    /// [`stack_flags`] bits.
    pub flags: u32,
    /// The top the copy was bounded by, with [`stack_flags::LEARNED_TOP`].
    pub learned_top: u64,
    /// With [`stack_flags::SWITCHED`]: where the goroutine stopped (`g.sched`: pc, sp, bp).
    pub switched: UserRegs,
    pub switched_len: u32,
    pub _pad: u32,
}

impl StackHeader {
    pub const SIZE: usize = core::mem::size_of::<StackHeader>();
}

/// One CPU's [`STACK_SCRATCH_MAP`] entry: a stack record assembled in full before it is sent
/// at its used length. Twice [`STACK_MAX`] of room, so that the verifier sees the second
/// segment, which starts where the first ended (below [`STACK_MAX`]), end inside it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackScratch {
    pub header: StackHeader,
    pub bytes: [u8; 2 * STACK_MAX],
}

/// Byte offsets inside a Go program's runtime structures (`runtime.g`, `runtime.m`,
/// `runtime.gobuf`, from the program's DWARF) and of the current `g` from the thread pointer,
/// which the kernel side follows from a call on the system stack back to the goroutine that
/// switched to it: `g` (TLS) → `g.m` → `m.curg` → `curg.sched`, and each stack's bounds from
/// `g.stack`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoOffsets {
    /// Where the current `g` is, from the thread pointer (`fs` base): -8 for a program the Go
    /// linker linked alone; a cgo program's from its TLS segment.
    pub tls_g: i64,
    /// `g.stack.lo`, `g.stack.hi`, `g.m`, `g.sched`.
    pub g_stack_lo: u64,
    pub g_stack_hi: u64,
    pub g_m: u64,
    pub g_sched: u64,
    /// `m.g0`, `m.curg`.
    pub m_g0: u64,
    pub m_curg: u64,
    /// `gobuf.sp`, `gobuf.pc`, `gobuf.bp`.
    pub gobuf_sp: u64,
    pub gobuf_pc: u64,
    pub gobuf_bp: u64,
}

/// Name of the global holding the [`TaskOffsets`] userspace found in the kernel's BTF.
pub const TASK_OFFSETS_GLOBAL: &str = "TASK_OFFSETS";

/// Byte offset of the saved `fs` base in a task (`task_struct.thread.fsbase`): the thread
/// pointer of a user thread, where a Go program keeps its current `g`. `valid == 0` turns the
/// Go stack switch off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    pub valid: u64,
    pub task_fsbase: u64,
}

impl TaskOffsets {
    pub const UNKNOWN: TaskOffsets = TaskOffsets {
        valid: 0,
        task_fsbase: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` integers and byte arrays, every bit pattern is valid.
unsafe impl aya::Pod for EventRecord {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for FileOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for StackOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for TaskOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` integer fields, every bit pattern is valid.
unsafe impl aya::Pod for GoOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for ExecOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for ForkOffsets {}

#[cfg(feature = "user")]
// SAFETY: plain `repr(C)` u64 fields, every bit pattern is valid.
unsafe impl aya::Pod for ExitOffsets {}

const _: () = assert!(ExecHeader::SIZE.is_multiple_of(8) && EXEC_VMA_SIZE.is_multiple_of(8));
const _: () = assert!(StackHeader::SIZE.is_multiple_of(8) && STACK_MAX.is_power_of_two());
const _: () = assert!(STACK_SIZES[STACK_SIZES.len() - 1] as usize == STACK_MAX);
