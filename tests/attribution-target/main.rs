//! The subject of `tests/tests/attribution.rs`: grows anonymous memory through glibc's malloc
//! from three functions by known amounts, then stops. `tests/build.rs` compiles it several
//! ways: without frame pointers (only unwind tables can walk its stack, as for most distro
//! binaries) as a PIE and as a fixed-address executable, with frame pointers, and with the
//! medium blocks' grower in a shared library (`--cfg library_site`, library.rs).
//!
//! Protocol (as `pmap-workload`'s): waits for a line on stdin, grows (mode `grow`), runs the
//! ownership steps of ownership.rs (mode `ownership`) or touches part of a large region
//! (touch.rs, mode `touch`), prints `checkpoint`, stops itself with SIGSTOP, and exits when
//! continued.

use std::io::{BufRead, Write};

mod blocks;
mod ownership;
mod touch;

use blocks::{
    LARGE_BLOCK, LARGE_COUNT, MEDIUM_BLOCK, MEDIUM_COUNT, SMALL_BLOCK, SMALL_COUNT, allocate,
};

#[inline(never)]
fn grow_with_large_blocks() {
    allocate(LARGE_BLOCK, LARGE_COUNT);
}

#[inline(never)]
fn grow_with_small_blocks() {
    allocate(SMALL_BLOCK, SMALL_COUNT);
}

#[cfg(not(library_site))]
#[inline(never)]
fn grow_with_medium_blocks() {
    allocate(MEDIUM_BLOCK, MEDIUM_COUNT);
}

#[cfg(library_site)]
unsafe extern "C" {
    /// In `libattribution_grower.so` (library.rs).
    fn attribution_library_grow_medium();
}

/// The `library` build calls into its shared library for the medium blocks.
#[cfg(library_site)]
fn grow_with_medium_blocks() {
    // SAFETY: a plain function of the library, no arguments.
    unsafe { attribution_library_grow_medium() };
    // Keeps the program's own constants used in this build too.
    std::hint::black_box((MEDIUM_BLOCK, MEDIUM_COUNT));
}

fn main() {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("read go");
    match std::env::args().nth(1).as_deref() {
        Some("ownership") => ownership::run(),
        Some("touch") => touch::run(),
        _ => {
            grow_with_large_blocks();
            grow_with_small_blocks();
            grow_with_medium_blocks();
        }
    }
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
