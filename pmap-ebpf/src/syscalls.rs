//! Exit of every mapping-changing syscall: one program, attached to each `sys_exit_*` tracepoint.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use pmap_common::{PR_SET_VMA, record_kind, sys_exit_layout, syscall_nr};

use crate::{
    maps::current_target,
    record::{Caller, Urgency, emit},
    regs::{saved_user_regs, syscall_args},
};

const MAP_ANONYMOUS: u64 = 0x20;

#[tracepoint]
pub fn mm_syscall_exit(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    let _ = record_exit(&ctx, caller);
    0
}

fn record_exit(ctx: &TracePointContext, caller: Caller) -> Result<(), i64> {
    // SAFETY: offsets checked against the tracepoint's format file by userspace before attach.
    let nr: i32 = unsafe { ctx.read_at(sys_exit_layout::SYSCALL_NR_OFFSET) }.map_err(i64::from)?;
    // SAFETY: as above.
    let ret: i64 = unsafe { ctx.read_at(sys_exit_layout::RET_OFFSET) }.map_err(i64::from)?;
    let args = syscall_args(&saved_user_regs()?);
    if nr as u32 == syscall_nr::PRCTL && args[0] != PR_SET_VMA {
        return Ok(());
    }
    // A file mapping's identity is read now, while its descriptor is certainly open.
    let mapped_fd = if nr as u32 == syscall_nr::MMAP
        && !(-4095..0).contains(&ret)
        && args[3] & MAP_ANONYMOUS == 0
    {
        args[4] as i32
    } else {
        -1
    };
    emit(
        Urgency::Batched,
        record_kind::SYSCALL,
        caller,
        nr as u32,
        args,
        ret,
        0,
        mapped_fd,
    );
    Ok(())
}
