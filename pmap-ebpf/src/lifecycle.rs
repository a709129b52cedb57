//! Process lifecycle: fork (and `--follow`), exec, exit.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;
use pmap_common::{
    EXIT_STACK_PAGES, EXIT_TOTAL_PAGES, ExitOffsets, FORK_CHILD_VMAS, FORK_SHARES_MM, ForkOffsets,
    linux::{CLONE_THREAD, SYS_CLONE, SYS_CLONE3, SYS_FORK, SYS_VFORK},
    record_kind, sched_layout, target_flags,
};

use crate::{
    maps::{GO_RUNTIMES, TARGETS, THREAD_TOPS, current_target, debug_enabled, stack_bytes},
    record::{Caller, Urgency, emit, kernel_u64},
    regs::SavedRegs,
};

/// Set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
static FORK_OFFSETS: ForkOffsets = ForkOffsets::UNKNOWN;

/// Set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
static EXIT_OFFSETS: ExitOffsets = ExitOffsets::UNKNOWN;

/// The exiting process's `mm->total_vm` and `mm->stack_vm` (0, 0 when unknown).
#[inline(always)]
fn exit_memory() -> (u64, u64) {
    // SAFETY: a read-only global userspace patches before load.
    let offsets = unsafe { core::ptr::read_volatile(&EXIT_OFFSETS) };
    if offsets.valid == 0 {
        return (0, 0);
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(mm) = kernel_u64(task, offsets.task_mm) else {
        return (0, 0);
    };
    (
        kernel_u64(mm, offsets.mm_total_vm).unwrap_or(0),
        kernel_u64(mm, offsets.mm_stack_vm).unwrap_or(0),
    )
}

/// What the fork record says of the child's memory: its `map_count` plus one (0: unknown) and
/// whether it shares the parent's mm. The child is the last entry of the parent's `children`
/// list, where copy_process() just put it (unless CLONE_PARENT put it in the grandparent's,
/// which the PID check catches).
#[inline(always)]
fn child_memory(child: u32) -> (u64, u64) {
    // SAFETY: a read-only global userspace patches before load.
    let offsets = unsafe { core::ptr::read_volatile(&FORK_OFFSETS) };
    if offsets.valid == 0 {
        return (0, 0);
    }
    // SAFETY: helper without preconditions.
    let parent = unsafe { bpf_get_current_task() };
    // `list_head.prev`: the entry added last.
    let Some(sibling) = kernel_u64(parent, offsets.task_children + 8) else {
        return (0, 0);
    };
    let task = sibling.wrapping_sub(offsets.task_sibling);
    // SAFETY: checked kernel read.
    let pid = unsafe { bpf_probe_read_kernel((task + offsets.task_pid) as *const u32) };
    if pid != Ok(child) {
        return (0, 0);
    }
    let (Some(mm), Some(parent_mm)) = (
        kernel_u64(task, offsets.task_mm),
        kernel_u64(parent, offsets.task_mm),
    ) else {
        return (0, 0);
    };
    // SAFETY: checked kernel read.
    let count = unsafe { bpf_probe_read_kernel((mm + offsets.mm_map_count) as *const u32) };
    (
        count.map_or(0, |count| u64::from(count) + 1),
        u64::from(mm == parent_mm),
    )
}

/// The clone call in progress: whether the task being created is a thread of the caller
/// rather than a new process, and the top of the stack it starts on when the call gave it one
/// (clone's `newsp`; clone3's `stack + stack_size`, where `clone3_stack_valid` in
/// kernel/fork.c starts it: stacks grow down). Tasks the kernel creates outside these syscalls
/// (io_uring workers) are threads, on no user stack.
fn clone_call() -> (bool, Option<u64>) {
    let regs = SavedRegs::current();
    let args = regs.syscall_args();
    let (flags, top) = match regs.syscall_nr() {
        SYS_FORK | SYS_VFORK => (0, 0),
        SYS_CLONE => (args[0], args[1]),
        SYS_CLONE3 => {
            // SAFETY: checked read of the user's struct clone_args (include/uapi/linux/sched.h):
            // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls.
            let clone_args = unsafe { bpf_probe_read_user(args[0] as *const [u64; 8]) };
            clone_args.map_or((0, 0), |a| {
                let top = if a[5] == 0 {
                    0
                } else {
                    a[5].wrapping_add(a[6])
                };
                (a[0], top)
            })
        }
        _ => (CLONE_THREAD, 0),
    };
    (flags & CLONE_THREAD != 0, (top != 0).then_some(top))
}

#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    let parent = Caller::current();
    let Some(flags) = current_target(parent.tgid) else {
        return 0;
    };
    // SAFETY: offset checked against the tracepoint's format file by userspace.
    let Ok(child) = (unsafe { ctx.read_at::<i32>(sched_layout::FORK_CHILD_PID_OFFSET) }) else {
        return 0;
    };
    let child = child as u32;
    // A new thread shares the traced thread group: nothing to add, nothing to report; with
    // stacks on, its copies stop at the top of the stack it starts on from its first call
    // (the top an unwind finds later is lower and replaces it). Without it the copies of its
    // first calls, until the reader has unwound one, are of the full size: two threads
    // starting to churn filled the stack ring with those before the reader's first unwind.
    // The child has not run yet: the tracepoint fires before `wake_up_new_task`.
    let (thread, top) = clone_call();
    if thread {
        if let Some(top) = top.filter(|_| stack_bytes() != 0) {
            let _ = THREAD_TOPS.insert(&child, &top, 0);
        }
        return 0;
    }
    if flags & target_flags::FOLLOW_FORKS != 0 {
        let _ = TARGETS.insert(&child, &flags, 0);
        // The child runs the parent's program until it execs: the same Go runtime layout.
        if flags & target_flags::GO_RUNTIME != 0 {
            // SAFETY: the value is plain data copied out immediately.
            if let Some(go) = unsafe { GO_RUNTIMES.get(&parent.tgid).copied() } {
                let _ = GO_RUNTIMES.insert(&child, &go, 0);
            }
        }
        if debug_enabled() {
            debug!(
                &ctx,
                "pmap-ebpf: {} forked {}, now traced", parent.tgid, child
            );
        }
    }
    let (vmas, shares) = child_memory(child);
    let mut args = [0; 6];
    args[FORK_CHILD_VMAS] = vmas;
    args[FORK_SHARES_MM] = shares;
    emit(
        Urgency::Immediate,
        // SAFETY: helper without preconditions.
        unsafe { bpf_ktime_get_ns() },
        record_kind::FORK,
        parent,
        0,
        args,
        0,
        child as u64,
    );
    0
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    // Its id may be used again by a thread with another stack.
    let _ = THREAD_TOPS.remove(&caller.tid);
    // SAFETY: offset checked against the tracepoint's format file by userspace.
    let group_dead =
        unsafe { ctx.read_at::<u8>(sched_layout::EXIT_GROUP_DEAD_OFFSET) }.unwrap_or(0);
    if group_dead != 0 {
        let _ = TARGETS.remove(&caller.tgid);
        let _ = GO_RUNTIMES.remove(&caller.tgid);
        let (total, stack) = exit_memory();
        let mut args = [0; 6];
        args[EXIT_TOTAL_PAGES] = total;
        args[EXIT_STACK_PAGES] = stack;
        emit(
            Urgency::Immediate,
            // SAFETY: helper without preconditions.
            unsafe { bpf_ktime_get_ns() },
            record_kind::EXIT,
            caller,
            0,
            args,
            0,
            0,
        );
        if debug_enabled() {
            debug!(&ctx, "pmap-ebpf: {} exited", caller.tgid);
        }
    }
    0
}
