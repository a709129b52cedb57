//! The built-in demo target (`pmap-trace demo`): a child that grows and shrinks its address
//! space along a few distinct paths, asks its tracer for a dump half-way, and exits.

use std::{fs::File, hint::black_box, os::fd::AsRawFd, thread, time::Duration};

/// Large block through the allocator: glibc serves it with its own anonymous mmap.
fn load_dataset() -> Vec<u8> {
    let mut data = vec![0u8; 8 << 20];
    for page in data.chunks_mut(4096) {
        page[0] = 1;
    }
    data
}

/// Many small allocations: glibc grows the heap with brk.
fn build_index() -> Vec<Vec<u64>> {
    (0..20_000).map(|i| vec![i as u64; 16]).collect()
}

/// A read-only file mapping of the demo's own executable, as a loader would make.
fn map_own_binary() -> Option<(*mut libc::c_void, usize)> {
    let file = File::open("/proc/self/exe").ok()?;
    let len = file.metadata().ok()?.len().min(1 << 20) as usize;
    // SAFETY: a fresh read-only private mapping of an open file; unmapped by the caller.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    (addr != libc::MAP_FAILED).then_some((addr, len))
}

/// An anonymous arena grown by mremap, then given a guard page made inaccessible by mprotect.
fn arena_with_guard() -> Option<(*mut libc::c_void, usize)> {
    let len = 16 * 4096;
    // SAFETY: fresh anonymous mapping; every later call stays inside it.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if addr == libc::MAP_FAILED {
            return None;
        }
        let (addr, len) = match libc::mremap(addr, len, 2 * len, libc::MREMAP_MAYMOVE) {
            libc::MAP_FAILED => (addr, len),
            grown => (grown, 2 * len),
        };
        libc::mprotect(addr, 4096, libc::PROT_NONE);
        Some((addr, len))
    }
}

pub fn run_target() -> i32 {
    // The executable is pmap-trace itself; a name of its own makes the demo's events stand out.
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"pmap-demo".as_ptr()) };
    let dataset = black_box(load_dataset());
    let index = black_box(build_index());
    let file_map = map_own_binary();
    let arena = arena_with_guard();

    // Ask the tracer (our parent) for a dump while everything is mapped, and hold still so
    // the dump shows this state.
    // SAFETY: plain signal to our parent, which handles SIGUSR1.
    unsafe { libc::kill(libc::getppid(), libc::SIGUSR1) };
    thread::sleep(Duration::from_millis(500));

    drop(index);
    drop(dataset);
    // SAFETY: unmapping exactly what the helpers mapped.
    unsafe {
        if let Some((addr, len)) = file_map {
            libc::munmap(addr, len);
        }
        if let Some((addr, len)) = arena {
            libc::munmap(addr, len);
        }
    }
    0
}
