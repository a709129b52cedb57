//! The subject of `tests/tests/attribution.rs`: grows anonymous memory through glibc's malloc
//! from three functions by known amounts, then stops. `tests/build.rs` compiles it with
//! `-C force-frame-pointers=no`, so only unwind tables can walk its stack, as for most distro
//! binaries.
//!
//! Protocol (as `pmap-workload`'s): waits for a line on stdin, grows, prints `checkpoint`,
//! stops itself with SIGSTOP, and exits when continued.

use std::io::{BufRead, Write};

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
}

/// Above glibc's mmap threshold (128 KiB): each block is its own anonymous mmap.
pub const LARGE_BLOCK: usize = 1 << 20;
pub const LARGE_COUNT: usize = 24;
/// Well below the threshold: carved from the heap, which grows by brk. With malloc's 8-byte
/// header this makes 2 KiB chunks, so the heap grows by about the bytes asked for.
pub const SMALL_BLOCK: usize = 2040;
pub const SMALL_COUNT: usize = 4096;
/// Below the threshold too: the heap again, from another function.
pub const MEDIUM_BLOCK: usize = (64 << 10) - 8;
pub const MEDIUM_COUNT: usize = 96;

/// Allocates `count` blocks of `size` and writes to each, so that neither the compiler nor
/// the allocator can skip them. Inlined into each caller: the caller is the call site.
#[inline(always)]
fn allocate(size: usize, count: usize) {
    for _ in 0..count {
        // SAFETY: malloc has no preconditions; the block is written within its size and kept.
        unsafe {
            let block = malloc(size);
            assert!(!block.is_null(), "out of memory");
            block.write_volatile(1);
            std::hint::black_box(block);
        }
    }
}

#[inline(never)]
fn grow_with_large_blocks() {
    allocate(LARGE_BLOCK, LARGE_COUNT);
}

#[inline(never)]
fn grow_with_small_blocks() {
    allocate(SMALL_BLOCK, SMALL_COUNT);
}

#[inline(never)]
fn grow_with_medium_blocks() {
    allocate(MEDIUM_BLOCK, MEDIUM_COUNT);
}

fn main() {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("read go");
    grow_with_large_blocks();
    grow_with_small_blocks();
    grow_with_medium_blocks();
    let mut out = std::io::stdout().lock();
    writeln!(out, "checkpoint").unwrap();
    out.flush().unwrap();
    drop(out);
    // SAFETY: stopping ourselves; the test continues us with SIGCONT.
    unsafe { libc_raise(19) };
}

unsafe extern "C" {
    #[link_name = "raise"]
    fn libc_raise(signal: i32) -> i32;
}
