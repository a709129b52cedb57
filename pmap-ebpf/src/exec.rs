//! Exec: the record of a completed exec carries the address space exec made.
//!
//! At `sched_process_exec` the new image is in place (load_elf_binary() has mapped the
//! executable, the interpreter, the stack and the vDSO) and has not yet returned to user mode.
//! None of those mappings came from a syscall, so a process that ends before userspace reads
//! `/proc` would leave nothing to rebuild them from: the record carries them.
use aya_ebpf::{
    EbpfContext,
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
};
use pmap_common::{
    EXEC_CMDLINE_MAX, EXEC_RECORD_MAX, EXEC_VMA_SIZE, EXEC_VMAS_MAX, ExecHeader, ExecOffsets,
    ExecRecord, ExecVma, FILE_NAME_LEN, FileIdentity, record_kind, sched_layout,
};

use crate::{
    maps::{EVENTS, current_target},
    record::{Caller, Urgency, emit_lifecycle, file_identity, fill, kernel_u64, wake_flag},
};

/// The exec record is built here, then the part of it used is copied into the ring: it is too
/// large for the BPF stack, and a map value can be indexed by a count the verifier bounds. The
/// sched tracepoints run their programs with preemption off, so no other exec on this CPU
/// writes it meanwhile.
#[map(name = "EXEC_SCRATCH")]
static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// Set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
static EXEC_OFFSETS: ExecOffsets = ExecOffsets::UNKNOWN;

fn exec_offsets() -> ExecOffsets {
    // SAFETY: a read-only global userspace patches before load; volatile keeps the default
    // from being folded in.
    unsafe { core::ptr::read_volatile(&EXEC_OFFSETS) }
}

/// Maple node types (`enum maple_type`, include/linux/maple_tree.h) and the encoding of a node
/// pointer: the node is 256-byte aligned, its type in bits 3..7.
const MAPLE_LEAF_64: u64 = 1;
const MAPLE_RANGE_64: u64 = 2;
const MAPLE_ARANGE_64: u64 = 3;
const MAPLE_NODE_MASK: u64 = 0xff;
/// Slots of a range node (leaves too) and of an allocation-range node, on 64-bit.
const RANGE64_SLOTS: u64 = 16;
const ARANGE64_SLOTS: u64 = 10;

#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    if !emit_image(&ctx, caller) {
        // Userspace reads /proc instead, as it can while the process lives.
        emit_lifecycle(record_kind::EXEC, caller, 0);
    }
    0
}

/// Writes the exec record with the new image; false when it could not (no offsets, no mm, no
/// room in the ring), having written nothing.
#[inline(always)]
fn emit_image(ctx: &TracePointContext, caller: Caller) -> bool {
    let offsets = exec_offsets();
    if offsets.valid == 0 {
        return false;
    }
    let Some(record) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(mm) = kernel_u64(task, offsets.task_mm) else {
        return false;
    };
    let field = |offset: u64| kernel_u64(mm, offset).unwrap_or(0);
    // SAFETY: `record` is this CPU's scratch value, which nothing else writes meanwhile (see
    // EXEC_SCRATCH).
    unsafe {
        fill(
            &raw mut (*record).header.event,
            bpf_ktime_get_ns(),
            record_kind::EXEC_IMAGE,
            caller,
            0,
            [0; 6],
            0,
            0,
        );
        (*record).header.start_stack = field(offsets.mm_start_stack);
        (*record).header.start_brk = field(offsets.mm_start_brk);
        (*record).header.brk = field(offsets.mm_brk);
        (*record).header.map_count =
            bpf_probe_read_kernel((mm + offsets.mm_map_count) as *const u32).unwrap_or(0);
        (*record).header.vma_count = 0;
        (*record).header.truncated = 0;
        read_tree(record, mm, field(offsets.mm_tree_root));
        copy_filename(ctx, record);
        copy_cmdline(
            record,
            field(offsets.mm_arg_start),
            field(offsets.mm_arg_end),
        );
    }
    // SAFETY: as above.
    let (vmas, cmdline) = unsafe {
        (
            (*record).header.vma_count as usize,
            (*record).header.cmdline_len as usize,
        )
    };
    // Only the part used: the VMAs found, then the command line right after them.
    let len =
        ExecHeader::SIZE + vmas.min(EXEC_VMAS_MAX) * EXEC_VMA_SIZE + cmdline.min(EXEC_CMDLINE_MAX);
    if len > EXEC_RECORD_MAX {
        return false;
    }
    // SAFETY: the first `len` bytes of the scratch record, all written above.
    let used = unsafe { core::slice::from_raw_parts(record.cast::<u8>(), len) };
    EVENTS
        .output::<[u8]>(used, wake_flag(Urgency::Immediate, 0, 0, 0))
        .is_ok()
}

/// The node an encoded maple node pointer points at, and its type.
#[inline(always)]
fn maple_node(entry: u64) -> (u64, u64) {
    (entry & !MAPLE_NODE_MASK, (entry >> 3) & 0xf)
}

/// The tree walk's working set: the leaves to read, then the VMAs found in them. Counts live in
/// map memory rather than registers, so the verifier sees every loop turn alike.
#[repr(C)]
struct TreeWalk {
    leaf_count: u64,
    vma_count: u64,
    leaves: [u64; RANGE64_SLOTS as usize],
    vmas: [u64; EXEC_VMAS_MAX],
}

#[map(name = "EXEC_WALK")]
static EXEC_WALK: PerCpuArray<TreeWalk> = PerCpuArray::with_max_entries(1, 0);

/// Copies every VMA of the tree whose root is `root` into the record: a root that is a leaf,
/// or an internal node whose children are leaves. A deeper tree (hundreds of VMAs, which no
/// fresh image has) sets `truncated`.
///
/// # Safety
/// `record` must be this CPU's scratch record.
#[inline(always)]
unsafe fn read_tree(record: *mut ExecRecord, mm: u64, root: u64) {
    let Some(walk) = EXEC_WALK.get_ptr_mut(0) else {
        // SAFETY: per this function's contract.
        unsafe { (*record).header.truncated = 1 };
        return;
    };
    // SAFETY: this CPU's working set, as `record`.
    let complete = unsafe {
        (*walk).leaf_count = 0;
        (*walk).vma_count = 0;
        find_leaves(walk, root) && find_vmas(walk, mm)
    };
    if !complete {
        // SAFETY: per this function's contract.
        unsafe { (*record).header.truncated = 1 };
    }
    let offsets = exec_offsets();
    for i in 0..EXEC_VMAS_MAX {
        // SAFETY: as above.
        if i as u64 >= unsafe { (*walk).vma_count } {
            break;
        }
        // SAFETY: i < EXEC_VMAS_MAX.
        let vma = unsafe { (*walk).vmas[i] };
        let read = |offset: u64| kernel_u64(vma, offset).unwrap_or(0);
        // SAFETY: per this function's contract; i < EXEC_VMAS_MAX, so the slot lies inside
        // the body.
        let slot = unsafe { &mut *body_vma(record, i) };
        *slot = ExecVma {
            start: read(offsets.vma_start),
            end: read(offsets.vma_end),
            flags: read(offsets.vma_flags),
            pgoff: read(offsets.vma_pgoff),
            file: FileIdentity {
                dev: 0,
                _pad: 0,
                ino: 0,
                name: [0; FILE_NAME_LEN],
            },
        };
        let file = read(offsets.vma_file);
        if file != 0 {
            file_identity(file, &mut slot.file);
        }
        // SAFETY: per this function's contract.
        unsafe { (*record).header.vma_count = i as u32 + 1 };
    }
}

/// Puts the leaves of the tree in the working set; false when the tree is none the walk
/// reads whole.
///
/// # Safety
/// `walk` must be this CPU's working set.
#[inline(always)]
unsafe fn find_leaves(walk: *mut TreeWalk, root: u64) -> bool {
    // xa_is_node(): a node pointer has its low bits 0b10; anything else is no tree of nodes
    // (an empty mm, or a lone entry at address 0).
    if root & 3 != 2 || root < 4096 {
        return false;
    }
    let offsets = exec_offsets();
    let (node, kind) = maple_node(root);
    let (slots_at, slots) = match kind {
        MAPLE_LEAF_64 => {
            // SAFETY: per this function's contract.
            unsafe {
                (*walk).leaves[0] = node;
                (*walk).leaf_count = 1;
            }
            return true;
        }
        MAPLE_RANGE_64 => (offsets.range64_slots, RANGE64_SLOTS),
        MAPLE_ARANGE_64 => (offsets.arange64_slots, ARANGE64_SLOTS),
        _ => return false,
    };
    for i in 0..RANGE64_SLOTS {
        if i >= slots {
            break;
        }
        let Some(child) = kernel_u64(node, slots_at + i * 8) else {
            continue;
        };
        let (child, child_kind) = maple_node(child);
        if child_kind != MAPLE_LEAF_64 {
            return false;
        }
        // SAFETY: per this function's contract.
        let count = unsafe { (*walk).leaf_count };
        if count < RANGE64_SLOTS {
            // SAFETY: per this function's contract; count < the array's length.
            unsafe {
                (*walk).leaves[count as usize] = child;
                (*walk).leaf_count = count + 1;
            }
        }
    }
    true
}

/// Puts the VMAs in the slots of every leaf in the working set; false when there were more
/// than it holds. Slots past a leaf's last entry may hold stale pointers: only VMAs of this
/// mm are taken, and userspace checks the whole set against `map_count` (a stale one makes
/// it too large).
///
/// # Safety
/// As [`find_leaves`].
#[inline(always)]
unsafe fn find_vmas(walk: *mut TreeWalk, mm: u64) -> bool {
    let offsets = exec_offsets();
    for leaf in 0..RANGE64_SLOTS as usize {
        // SAFETY: per this function's contract.
        if leaf as u64 >= unsafe { (*walk).leaf_count } {
            break;
        }
        // SAFETY: leaf < the array's length.
        let node = unsafe { (*walk).leaves[leaf] };
        for slot in 0..RANGE64_SLOTS {
            let Some(vma) = kernel_u64(node, offsets.range64_slots + slot * 8) else {
                continue;
            };
            if kernel_u64(vma, offsets.vma_mm) != Some(mm) {
                continue;
            }
            // SAFETY: per this function's contract.
            let count = unsafe { (*walk).vma_count };
            if count >= EXEC_VMAS_MAX as u64 {
                return false;
            }
            // SAFETY: count < the array's length.
            unsafe {
                (*walk).vmas[count as usize] = vma;
                (*walk).vma_count = count + 1;
            }
        }
    }
    true
}

/// VMA slot `index` (below [`EXEC_VMAS_MAX`]) of the record's body.
///
/// # Safety
/// As [`read_tree`].
#[inline(always)]
unsafe fn body_vma(record: *mut ExecRecord, index: usize) -> *mut ExecVma {
    // SAFETY: per this function's contract; slots are 8-byte multiples from an 8-aligned body.
    unsafe {
        (&raw mut (*record).body)
            .cast::<u8>()
            .add(index * EXEC_VMA_SIZE)
            .cast()
    }
}

/// Copies the file name execve was given from the tracepoint record.
///
/// # Safety
/// As [`read_tree`].
#[inline(always)]
unsafe fn copy_filename(ctx: &TracePointContext, record: *mut ExecRecord) {
    // SAFETY: per this function's contract.
    let path = unsafe { &mut (*record).header.path };
    path[0] = 0;
    // SAFETY: offset checked against the tracepoint's format file by userspace.
    let Ok(location) = (unsafe { ctx.read_at::<u32>(sched_layout::EXEC_FILENAME_OFFSET) }) else {
        return;
    };
    let at = ctx.as_ptr() as u64 + u64::from(location & 0xffff);
    // SAFETY: checked string read into the record's own buffer; a name too long for it is
    // cut, and userspace then finds the file by other means.
    if unsafe { bpf_probe_read_kernel_str_bytes(at as *const u8, path) }.is_err() {
        path[0] = 0;
    }
}

/// Copies the command line from the new stack (`mm->arg_start..arg_end`, written by exec, so
/// present), at most [`EXEC_CMDLINE_MAX`] bytes, into the body after the VMAs.
///
/// # Safety
/// As [`read_tree`].
#[inline(always)]
unsafe fn copy_cmdline(record: *mut ExecRecord, start: u64, end: u64) {
    let len = end.saturating_sub(start);
    // SAFETY: per this function's contract.
    unsafe {
        (*record).header.arg_len = len;
        (*record).header.cmdline_len = 0;
    }
    let copy = if len > EXEC_CMDLINE_MAX as u64 {
        EXEC_CMDLINE_MAX as u64
    } else {
        len
    };
    // SAFETY: per this function's contract.
    let vmas = unsafe { (*record).header.vma_count } as usize;
    if copy == 0 || vmas > EXEC_VMAS_MAX {
        return;
    }
    // SAFETY: after the last VMA found: at most EXEC_VMAS_MAX slots in, with
    // EXEC_CMDLINE_MAX bytes of body left after them.
    let at = unsafe { body_vma(record, vmas) }.cast::<c_void>();
    // SAFETY: `copy` bytes fit at `at`, as above; a bad user address fails the helper.
    let failed = unsafe { bpf_probe_read_user(at, copy as u32, start as *const c_void) } != 0;
    if !failed {
        // SAFETY: per this function's contract.
        unsafe { (*record).header.cmdline_len = copy as u32 };
    }
}
