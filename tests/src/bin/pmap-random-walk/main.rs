//! Seeded random walk over the address-space calls, for the differential test
//! (`tests/tests/random_walk.rs`): every step is exactly one traced syscall, chosen and aimed by a
//! SplitMix64 stream from the seed, so the test can replay the same walk and name the call that
//! made the table diverge.
//!
//! `pmap-random-walk SEED CALLS EVERY STOP` sets up (files, an arena, the break), prints `ready`,
//! waits for a `go` line, then makes CALLS calls. It stops itself with SIGSTOP after every call
//! when STOP is `each`, or after every EVERY-th call when STOP is `checkpoint` or `paced`, and
//! always after the last one; it exits 0 when continued after that. `paced` also sleeps
//! [`PACE`] after each call, so a tracer applying events as they come keeps up with it a few
//! calls behind, as pmap-trace does with a real program.
//!
//! The walk stays inside memory it owns: an arena window reserved at setup, the mappings the
//! kernel placed for it outside the window (non-fixed mmap and mremap results, tracked as
//! "loose" ranges), and the heap above the break it found. It allocates nothing after `go`: a
//! malloc could move the break under the walk's own `brk` calls.
//!
//! As a program does, it writes the first page of every writable private mapping right after
//! making it (mmap, and brk growing the heap), which gives the VMA an anon_vma: two mappings
//! written apart hold different ones, which decides whether a range later bridging them joins
//! both. It also makes that shape on purpose ([`Walk::plan_bridge`]): written neighbours, then
//! a call that bridges them (a new mapping filling the hole with or without a hint or fixed,
//! mremap growing up to one or moving between them, a change making the range between equal
//! to both), one call per step like any other.
//!
//! It attaches System V shared memory too (shmat with and without an address, read-only or
//! not; shmdt), whose VMAs no merge may remove (`can_merge_remove_vma()` in the kernel), and
//! makes that shape on purpose: a segment split and restored by mprotect or a change of hidden
//! state, a piece unmapped and its left neighbour grown back up to the next, a piece moved
//! away and back. Its [`SEGMENTS`](walk::SEGMENTS) are made at setup, each attached once there
//! and marked for removal (IPC_RMID), so the kernel destroys them when the walk ends however it
//! ends.

mod bridge;
mod calls;
mod change;
mod hidden;
mod mapping;
mod plan;
mod planned;
mod ranges;
mod rng;
mod segments;
mod syscall;
mod walk;

use std::{
    fs::File,
    io::{BufRead, Write},
    os::fd::AsRawFd,
    path::PathBuf,
};

use crate::{
    ranges::{PAGE, Range},
    segments::make_segments,
    syscall::sys,
    walk::{ARENA_PAGES, FILE_PAGES, Walk},
};

/// The pause after each call in `paced` mode.
const PACE: std::time::Duration = std::time::Duration::from_micros(100);

/// When the walk stops itself (besides after the last call).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// After every call.
    Each,
    /// After every EVERY-th call.
    Checkpoint,
    /// After every EVERY-th call, pausing [`PACE`] after each.
    Paced,
}

struct Args {
    seed: u64,
    calls: u64,
    every: u64,
    stop: Stop,
}

fn main() {
    let args = parse_args();
    let (files, keep) = make_files();
    let arena = reserve_arena();
    let segments = make_segments();
    let mut walk = Walk::new(args.seed, arena, files, segments);
    wait_for_go();

    for i in 1..=args.calls {
        walk.step();
        if args.stop == Stop::Paced {
            std::thread::sleep(PACE);
        }
        if args.stop == Stop::Each || i.is_multiple_of(args.every) || i == args.calls {
            stop();
        }
    }
    sys(libc::SYS_brk, [walk.brk_floor, 0, 0, 0, 0, 0]);
    for (path, file) in keep {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
}

fn usage() -> ! {
    eprintln!("usage: pmap-random-walk SEED CALLS EVERY each|checkpoint|paced");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        usage();
    }
    let (Ok(seed), Ok(calls), Ok(every)) = (
        args[0].parse::<u64>(),
        args[1].parse::<u64>(),
        args[2].parse::<u64>(),
    ) else {
        usage()
    };
    let stop = match args[3].as_str() {
        "each" => Stop::Each,
        "checkpoint" => Stop::Checkpoint,
        "paced" => Stop::Paced,
        _ => usage(),
    };
    if every == 0 {
        usage();
    }
    Args {
        seed,
        calls,
        every,
        stop,
    }
}

/// Files to map: two read-write, one opened read-only so that writable shared mappings of it
/// fail; their descriptors, and the files with their paths. They stay until exit, so the
/// mappings keep their names.
fn make_files() -> ([u64; 3], Vec<(PathBuf, File)>) {
    let dir = std::env::temp_dir();
    let mut keep = Vec::new();
    let mut files = [0u64; 3];
    for (i, slot) in files.iter_mut().enumerate() {
        let path = dir.join(format!("pmap-random-walk-{}-{i}", std::process::id()));
        std::fs::write(&path, vec![0u8; (FILE_PAGES * PAGE) as usize]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(i < 2)
            .open(&path)
            .unwrap();
        *slot = file.as_raw_fd() as u64;
        keep.push((path, file));
    }
    (files, keep)
}

/// The arena window, reserved where the kernel places it.
fn reserve_arena() -> Range {
    // SAFETY: reserving address space nothing else uses; the walk carves it up.
    let arena = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (ARENA_PAGES * PAGE) as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(arena, libc::MAP_FAILED);
    Range {
        start: arena as u64,
        len: ARENA_PAGES * PAGE,
    }
}

/// Says `ready`, then waits for the `go` line.
fn wait_for_go() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    let mut line = String::with_capacity(16);
    std::io::stdin().lock().read_line(&mut line).unwrap();
}

fn stop() {
    // SAFETY: stopping ourselves; the test continues us with SIGCONT.
    unsafe { libc::raise(libc::SIGSTOP) };
}
