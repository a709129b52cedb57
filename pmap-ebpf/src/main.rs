//! Kernel side of pmap-trace.
//!
//! Design (see `docs/design.md` for the measurements behind it): one program
//! attached to the `sys_exit_*` tracepoint of every mapping-changing syscall. At syscall exit the
//! saved user registers still hold the six arguments on x86_64, so no entry probe and no in-flight
//! map are needed, which halves the per-call cost of an enter/exit pair. Scheduler tracepoints
//! follow the process lifecycle and, with `--follow`, add children to the filter at fork time.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod exec;
#[cfg(target_arch = "bpf")]
mod faults;
#[cfg(target_arch = "bpf")]
mod lifecycle;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod record;
#[cfg(target_arch = "bpf")]
mod regs;
#[cfg(target_arch = "bpf")]
mod stacks;
#[cfg(target_arch = "bpf")]
mod syscalls;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

// The host build of this crate (e.g. `cargo clippy --workspace`) has nothing to run.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
