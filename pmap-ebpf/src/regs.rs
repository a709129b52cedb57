//! The calling thread's saved user registers: at a syscall tracepoint they still hold the
//! syscall number and arguments as the user passed them.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
};

pub fn saved_user_regs() -> Result<pt_regs, i64> {
    // SAFETY: helpers valid in tracepoint programs on this kernel; the register block is copied
    // with a checked kernel read.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        bpf_probe_read_kernel(regs).map_err(i64::from)
    }
}

/// x86_64 syscall arguments in order: rdi, rsi, rdx, r10, r8, r9.
pub fn syscall_args(regs: &pt_regs) -> [u64; 6] {
    [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9]
}
