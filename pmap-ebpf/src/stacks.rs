//! The stack copy of a call that may have grown anonymous memory: the user registers an
//! unwinder starts from and the stack above them, as far as the frames reach and no further,
//! into the `STACKS` ring (see `pmap_common::StackHeader`).
//!
//! How far the frames reach: the main thread's stack ends at `mm->start_stack`; another
//! thread's where userspace found its outermost frame when it unwound an earlier copy
//! (`THREAD_TOPS`); a Go stack at its `g.stack.hi`. Without a known top the copy runs to
//! `--stack-bytes` or to the end of the stack's mapping. A Go program's call on its system
//! stack also copies the stack of the goroutine that switched to it (`go_switch`).
use aya_ebpf::{
    bindings::BPF_RB_AVAIL_DATA,
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_get_smp_processor_id, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user,
    },
};
use pmap_common::{STACK_MAX, StackHeader, UserRegs, record_kind, stack_flags, target_flags};

use crate::{
    maps::{
        GO_RUNTIMES, STACK_SCRATCH, STACKS, THREAD_TOPS, stack_offsets, stack_wakeup_bytes,
        task_offsets,
    },
    record::{Caller, Urgency, kernel_u64, ring_bytes, wake_flag},
};

/// The margin a copy keeps above a top that is not aligned, so that the last frame's return
/// address is in.
const STACK_GRAIN: usize = 64;
/// The user page size: a stack's mapping ends on a page boundary.
const PAGE: u64 = 4096;

/// Writes the stack record of a growth call of `caller` (registers `regs`, at most
/// `stack_bytes` of stack, `target` its `TARGETS` flags) into the stack ring. False when the
/// ring had no room for it.
#[inline(always)]
pub fn emit_stack(
    caller: Caller,
    timestamp_ns: u64,
    regs: UserRegs,
    target: u32,
    stack_bytes: u32,
) -> bool {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(cpu) else {
        return false;
    };
    let limit = (stack_bytes as usize).min(STACK_MAX);
    let mut header = StackHeader {
        kind: record_kind::STACK,
        tid: caller.tid,
        timestamp_ns,
        regs,
        ..StackHeader::default()
    };
    let go = if target & target_flags::GO_RUNTIME != 0 {
        go_stacks(caller.tgid, regs.rsp)
    } else {
        None
    };
    let top = match go {
        Some(go) => Some(go.top),
        None => stack_top(caller, regs.rsp, limit, &mut header),
    };
    // SAFETY: `scratch` is this CPU's entry, which nothing else writes meanwhile (see
    // STACK_SCRATCH); both copies stay inside its byte buffer (see `copy_user`), and the
    // header's length fields are written again below.
    let total = unsafe {
        let bytes = (&raw mut (*scratch).bytes).cast::<u8>();
        let len_slot = &raw mut (*scratch).header.len;
        let copied = copy_user(bytes, len_slot, 0, regs.rsp, wanted(top, regs.rsp, limit));
        header.len = copied as u32;
        let mut total = copied;
        if let Some(switched) = go.and_then(|go| go.switched) {
            let room = limit.saturating_sub(copied);
            let more = copy_user(
                bytes,
                len_slot,
                copied,
                switched.regs.rsp,
                wanted(Some(switched.top), switched.regs.rsp, room),
            );
            header.flags |= stack_flags::SWITCHED;
            header.switched = switched.regs;
            header.switched_len = more as u32;
            total += more;
        }
        (&raw mut (*scratch).header).write(header);
        total
    };
    // The mask shows the verifier what the copies made sure of: each below STACK_MAX.
    let len = StackHeader::SIZE + (total & (2 * STACK_MAX - 1));
    // SAFETY: the header and the bytes copied after it, all written above.
    let record = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>(), len) };
    let before = STACKS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = wake_flag(
        Urgency::Batched,
        before,
        before + ring_bytes(len),
        stack_wakeup_bytes(),
    );
    STACKS.output::<[u8]>(record, flags).is_ok()
}

/// Bytes to copy from `rsp` up to `top` (and a grain past it, so the last frame's return
/// address is in when the top is not aligned), at most `limit`; `limit` without a top below
/// `rsp`'s reach.
#[inline(always)]
fn wanted(top: Option<u64>, rsp: u64, limit: usize) -> usize {
    match top {
        Some(top) if top > rsp => ((top - rsp) as usize)
            .saturating_add(STACK_GRAIN)
            .min(limit),
        _ => limit,
    }
}

/// The top of the calling thread's stack, when one is known: the main thread's
/// `mm->start_stack` (where exec put `argc`; no frame lies above it), another thread's top as
/// userspace learned it. A learned top is noted in `header` when it bounds the copy, so that
/// userspace can tell a copy it cut short.
#[inline(always)]
fn stack_top(caller: Caller, rsp: u64, limit: usize, header: &mut StackHeader) -> Option<u64> {
    if caller.tid == caller.tgid {
        return main_stack_top();
    }
    // SAFETY: the value is a plain u64 copied out immediately.
    let top = unsafe { THREAD_TOPS.get(&caller.tid).copied() }?;
    // A top below the stack pointer is another stack's (the thread switched stacks, or its
    // id was used again): no bound.
    if top > rsp && ((top - rsp) as usize) < limit {
        header.flags |= stack_flags::LEARNED_TOP;
        header.learned_top = top;
        return Some(top);
    }
    None
}

/// `mm->start_stack` of the current process: the top of its main thread's stack.
#[inline(always)]
fn main_stack_top() -> Option<u64> {
    let offsets = stack_offsets();
    if offsets.valid == 0 {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    kernel_u64(task, offsets.task_mm).and_then(|mm| kernel_u64(mm, offsets.mm_start_stack))
}

/// Copies user memory from `src` up into `bytes[at..]`, `wanted` bytes at most, and returns
/// the bytes copied: in one read when the whole range is readable (the common case: the range
/// ends at the stack's top); else up to the first page that does not read (the end of the
/// stack's mapping: a read that runs past it fails whole).
///
/// The fallback keeps the verifier's work linear: the page probe has one exit per page, and the
/// length it found goes through the scratch entry, which the verifier does not follow, so
/// every exit continues as one state instead of one each.
///
/// # Safety
/// `bytes` must point at `2 * STACK_MAX` writable bytes, and `len_slot` at a writable `u32`
/// of the scratch entry; `at` and `wanted` are each taken below `STACK_MAX`, so every write
/// ends inside `bytes`.
#[inline(always)]
unsafe fn copy_user(
    bytes: *mut u8,
    len_slot: *mut u32,
    at: usize,
    src: u64,
    wanted: usize,
) -> usize {
    let at = at & (STACK_MAX - 1);
    let wanted = wanted.min(STACK_MAX);
    if wanted == 0 {
        return 0;
    }
    // SAFETY: at < STACK_MAX and wanted <= STACK_MAX, per this function's contract; a bad
    // user address fails the helper instead of faulting.
    let whole =
        unsafe { probe_read_user(bytes.add(at).cast(), wanted as u32, src as *const c_void) };
    if whole == 0 {
        return wanted;
    }
    // The first page holds `src` (a stack pointer, readable); each later one is tried by its
    // first byte.
    let mut readable = PAGE - (src & (PAGE - 1));
    for _ in 0..STACK_MAX as u64 / PAGE {
        if readable >= wanted as u64 || user_byte_unreadable(src + readable) {
            break;
        }
        readable += PAGE;
    }
    // SAFETY: per this function's contract.
    let len = unsafe {
        core::ptr::write_volatile(len_slot, readable.min(wanted as u64) as u32);
        core::ptr::read_volatile(len_slot) as usize
    };
    if len > STACK_MAX {
        return 0;
    }
    // SAFETY: at < STACK_MAX and len <= STACK_MAX, checked above.
    let read = unsafe { probe_read_user(bytes.add(at).cast(), len as u32, src as *const c_void) };
    if read == 0 { len } else { 0 }
}

/// Whether the user byte at `addr` cannot be read.
#[inline(always)]
fn user_byte_unreadable(addr: u64) -> bool {
    // SAFETY: checked user read into a local.
    unsafe { bpf_probe_read_user(addr as *const u8) }.is_err()
}

/// Where a Go thread's stack ends, and the goroutine it runs for when it is on its system
/// stack.
#[derive(Clone, Copy)]
struct GoStacks {
    /// `g.stack.hi` of the current `g`.
    top: u64,
    switched: Option<SwitchedStack>,
}

/// The goroutine that switched to the system stack: where it stopped, and its stack's top.
#[derive(Clone, Copy)]
struct SwitchedStack {
    regs: UserRegs,
    top: u64,
}

/// The current `g` of a traced Go program's thread, found from the thread pointer
/// (`task->thread.fsbase`, where `runtime.settls` or the C library put it) with the program's
/// [`pmap_common::GoOffsets`], and the stack it runs on. On the system stack (`g == g.m.g0`:
/// `runtime.systemstack`, `mcall`, `morestack` and `asmcgocall` switch there) the goroutine
/// that asked, `g.m.curg`, saved where it stopped in `curg.sched` before the switch. None when
/// `rsp` is not on the current `g`'s stack (a signal stack, a thread the runtime does not
/// know) or a read fails: the copy is then bounded as any other thread's.
#[inline(always)]
fn go_stacks(tgid: u32, rsp: u64) -> Option<GoStacks> {
    // SAFETY: the value is plain data copied out immediately.
    let go = unsafe { GO_RUNTIMES.get(&tgid).copied() }?;
    let task_offsets = task_offsets();
    if task_offsets.valid == 0 {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let fsbase = kernel_u64(task, task_offsets.task_fsbase)?;
    let g = user_u64(fsbase.wrapping_add(go.tls_g as u64))?;
    let (lo, hi) = (user_u64(g + go.g_stack_lo)?, user_u64(g + go.g_stack_hi)?);
    if !(lo..hi).contains(&rsp) {
        return None;
    }
    let m = user_u64(g + go.g_m)?;
    let (g0, curg) = (user_u64(m + go.m_g0)?, user_u64(m + go.m_curg));
    let switched = match curg {
        Some(curg) if g == g0 && curg != g => {
            let sched = curg + go.g_sched;
            Some(SwitchedStack {
                regs: UserRegs {
                    rip: user_u64(sched + go.gobuf_pc)?,
                    rsp: user_u64(sched + go.gobuf_sp)?,
                    rbp: user_u64(sched + go.gobuf_bp).unwrap_or(0),
                },
                top: user_u64(curg + go.g_stack_hi)?,
            })
        }
        _ => None,
    };
    Some(GoStacks { top: hi, switched })
}

/// A non-zero pointer-sized word of user memory.
#[inline(always)]
fn user_u64(addr: u64) -> Option<u64> {
    // SAFETY: checked user read; a bad address fails instead of faulting.
    unsafe { bpf_probe_read_user(addr as *const u64) }
        .ok()
        .filter(|&v| v != 0)
}
