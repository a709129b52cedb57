//! The calling thread's saved user registers: at a syscall tracepoint they still hold the
//! syscall number and arguments as the user passed them.
use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_task_pt_regs},
};

/// The register block the kernel saved at syscall entry. `bpf_task_pt_regs` returns a pointer
/// the verifier knows the BTF type of, so each field is one fault-checked load: cheaper than
/// copying the whole 168-byte block with `bpf_probe_read_kernel` on every call.
pub struct SavedRegs(*const pt_regs);

impl SavedRegs {
    pub fn current() -> Self {
        // SAFETY: helpers valid in tracepoint programs on this kernel.
        SavedRegs(unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs)
    }

    /// x86_64 syscall arguments in order: rdi, rsi, rdx, r10, r8, r9.
    pub fn syscall_args(&self) -> [u64; 6] {
        let regs = self.0;
        // SAFETY: a BTF-typed kernel pointer; the verifier turns each load into a checked one.
        unsafe {
            [
                (*regs).rdi,
                (*regs).rsi,
                (*regs).rdx,
                (*regs).r10,
                (*regs).r8,
                (*regs).r9,
            ]
        }
    }

    /// The syscall number as the user passed it.
    pub fn syscall_nr(&self) -> u64 {
        // SAFETY: as in `syscall_args`.
        unsafe { (*self.0).orig_rax }
    }

    /// Instruction pointer, stack pointer and frame pointer, where an unwinder starts.
    pub fn user(&self) -> pmap_common::UserRegs {
        let regs = self.0;
        // SAFETY: as in `syscall_args`.
        unsafe {
            pmap_common::UserRegs {
                rip: (*regs).rip,
                rsp: (*regs).rsp,
                rbp: (*regs).rbp,
            }
        }
    }
}
