//! What the in-process kernel tests share: the event loop they need and the loaded capture.

use pmap_trace::capture::{Capture, CaptureOptions, check_machine};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The real kernel side with a ring large enough that the tests lose no records.
pub fn load() -> Capture {
    load_with_stacks(0)
}

/// As [`load`], growth calls carrying up to `stack_bytes` of their stack (as `--stack-bytes`).
pub fn load_with_stacks(stack_bytes: u32) -> Capture {
    let syscalls = check_machine().expect("machine can run pmap-trace");
    Capture::load_with_stacks(
        CaptureOptions {
            syscalls,
            ring_size: 16 << 20,
            debug_bpf: false,
            fault_period: None,
            // The random walk makes userfaultfd registrations.
            userfaultfd: true,
        },
        stack_bytes,
    )
    .expect("load eBPF")
}
