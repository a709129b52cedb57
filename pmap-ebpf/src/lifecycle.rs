//! Process lifecycle: fork (and `--follow`), exec, exit.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use aya_log_ebpf::debug;
use pmap_common::{record_kind, sched_layout, target_flags};

use crate::{
    maps::{TARGETS, current_target, debug_enabled},
    record::{Caller, emit},
};

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
    if flags & target_flags::FOLLOW_FORKS != 0 {
        // A new thread also passes here; its key is a thread id that no event is looked up by,
        // and `process_exit` removes it when the thread ends.
        let _ = TARGETS.insert(&child, &flags, 0);
        if debug_enabled() {
            debug!(
                &ctx,
                "pmap-ebpf: {} forked {}, now traced", parent.tgid, child
            );
        }
    }
    emit(record_kind::FORK, parent, 0, [0; 6], 0, child as u64);
    0
}

#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_some() {
        emit(record_kind::EXEC, caller, 0, [0; 6], 0, 0);
    }
    0
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    if caller.tid != caller.tgid {
        let _ = TARGETS.remove(&caller.tid);
    }
    // SAFETY: offset checked against the tracepoint's format file by userspace.
    let group_dead =
        unsafe { ctx.read_at::<u8>(sched_layout::EXIT_GROUP_DEAD_OFFSET) }.unwrap_or(0);
    if group_dead != 0 {
        let _ = TARGETS.remove(&caller.tgid);
        emit(record_kind::EXIT, caller, 0, [0; 6], 0, 0);
        if debug_enabled() {
            debug!(&ctx, "pmap-ebpf: {} exited", caller.tgid);
        }
    }
    0
}
