//! Process lifecycle: fork (and `--follow`), exec, exit.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use aya_log_ebpf::debug;
use pmap_common::{
    linux::{CLONE_THREAD, SYS_CLONE, SYS_CLONE3, SYS_FORK, SYS_VFORK},
    record_kind, sched_layout, target_flags,
};

use crate::{
    maps::{TARGETS, current_target, debug_enabled},
    record::{Caller, emit_lifecycle},
    regs::SavedRegs,
};

/// Whether the task being created is a thread of the caller rather than a new process, from the
/// flags of the clone call in progress. Tasks the kernel creates outside these syscalls (io_uring
/// workers) are threads.
fn creates_thread() -> bool {
    let regs = SavedRegs::current();
    let first_arg = regs.syscall_args()[0];
    let flags = match regs.syscall_nr() {
        SYS_FORK | SYS_VFORK => 0,
        SYS_CLONE => first_arg,
        // SAFETY: checked read of the first field (flags) of the user's struct clone_args.
        SYS_CLONE3 => unsafe { bpf_probe_read_user(first_arg as *const u64) }.unwrap_or(0),
        _ => CLONE_THREAD,
    };
    flags & CLONE_THREAD != 0
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
    // A new thread shares the traced thread group: nothing to add, nothing to report.
    if creates_thread() {
        return 0;
    }
    if flags & target_flags::FOLLOW_FORKS != 0 {
        let _ = TARGETS.insert(&child, &flags, 0);
        if debug_enabled() {
            debug!(
                &ctx,
                "pmap-ebpf: {} forked {}, now traced", parent.tgid, child
            );
        }
    }
    emit_lifecycle(record_kind::FORK, parent, child as u64);
    0
}

#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_some() {
        emit_lifecycle(record_kind::EXEC, caller, 0);
    }
    0
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    // SAFETY: offset checked against the tracepoint's format file by userspace.
    let group_dead =
        unsafe { ctx.read_at::<u8>(sched_layout::EXIT_GROUP_DEAD_OFFSET) }.unwrap_or(0);
    if group_dead != 0 {
        let _ = TARGETS.remove(&caller.tgid);
        emit_lifecycle(record_kind::EXIT, caller, 0);
        if debug_enabled() {
            debug!(&ctx, "pmap-ebpf: {} exited", caller.tgid);
        }
    }
    0
}
