//! Stops itself (SIGSTOP) right before it exits, so that a test can take the real `pmap` of it
//! as it is at its exit, then continue it: `_exit` changes no mapping. With an argument N it
//! first uses N KiB of its stack, which the kernel grows on the faults, without a syscall.

/// Uses `kib` KiB of stack, 4 KiB a frame.
fn use_stack(kib: usize) {
    let mut frame = [0u8; 4096];
    std::hint::black_box(&mut frame);
    if kib > 4 {
        use_stack(kib - 4);
    }
    std::hint::black_box(&frame);
}

fn main() {
    if let Some(kib) = std::env::args().nth(1).and_then(|n| n.parse().ok()) {
        use_stack(kib);
    }
    // SAFETY: plain libc calls; nothing runs after `_exit`.
    unsafe {
        libc::raise(libc::SIGSTOP);
        libc::_exit(0);
    }
}
