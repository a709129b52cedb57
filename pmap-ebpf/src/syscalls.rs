//! Exit of every mapping-changing syscall: one program, attached to each `sys_exit_*` tracepoint.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::tracepoint,
    programs::TracePointContext,
};
use pmap_common::{PR_SET_VMA, record_kind, sys_exit_layout, syscall_nr};

use crate::{
    maps::current_target,
    record::{Caller, emit},
};

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
    let args = syscall_args()?;
    if nr as u32 == syscall_nr::PRCTL && args[0] != PR_SET_VMA {
        return Ok(());
    }
    emit(record_kind::SYSCALL, caller, nr as u32, args, ret, 0);
    Ok(())
}

/// The syscall arguments as the user passed them: x86_64 keeps them in the saved registers
/// (rdi, rsi, rdx, r10, r8, r9) until the return to user mode.
fn syscall_args() -> Result<[u64; 6], i64> {
    // SAFETY: helpers valid in tracepoint programs on this kernel; the register block is copied
    // with a checked kernel read.
    let regs: pt_regs = unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        bpf_probe_read_kernel(regs)?
    };
    Ok([regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9])
}
