//! Test workload: makes mapping-changing syscalls directly (no libc wrappers, no allocator in
//! between) so the tests know exactly which calls the tracer must report.
//!
//! Modes (each waits for a `go` line on stdin first):
//! - `scripted`: a fixed sequence covering every kind of change; reports each call as
//!   `name arg... = ret`, prints `checkpoint`, stops itself with SIGSTOP, and exits when continued.
//! - `churn ITERATIONS`: maps, re-protects and unmaps in a loop while the test attaches, then
//!   reports `checkpoint` and stops.
//! - `thread-churn SECONDS`: two threads map and unmap 64 KiB of anonymous memory as fast as
//!   they can for SECONDS, each keeping one mapping in 256; reports `kept BYTES`, then
//!   `checkpoint`, and stops.

use std::{
    fs::File,
    io::{BufRead, Write},
    os::fd::AsRawFd,
};

use pmap_integration_tests::{END_MARKER, START_MARKER};

const PAGE: u64 = 4096;

struct Script {
    log: Vec<String>,
}

impl Script {
    fn call(&mut self, name: &str, nr: libc::c_long, args: &[u64]) -> i64 {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        // SAFETY: every call in the script is a memory-management syscall on ranges this
        // process owns or deliberately invalid ones the kernel rejects.
        let ret = unsafe { libc::syscall(nr, a(0), a(1), a(2), a(3), a(4), a(5)) };
        let ret = if ret == -1 {
            // SAFETY: reading errno right after the failing call.
            -(unsafe { *libc::__errno_location() }) as i64
        } else {
            ret
        };
        let args: Vec<String> = args.iter().map(|a| (*a as i64).to_string()).collect();
        self.log.push(format!("{name} {} = {ret}", args.join(" ")));
        ret
    }
}

fn wait_for_go() {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .expect("read go");
}

fn checkpoint() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "checkpoint").unwrap();
    out.flush().unwrap();
    drop(out);
    // SAFETY: stopping ourselves; the test continues us with SIGCONT.
    unsafe { libc::raise(libc::SIGSTOP) };
}

fn scripted() {
    let file_path = std::env::temp_dir().join(format!("pmap-workload-{}.bin", std::process::id()));
    let file = File::create(&file_path).unwrap();
    file.set_len(4 * PAGE).unwrap();
    let fd = file.as_raw_fd() as u64;
    let mut s = Script {
        log: Vec::with_capacity(64),
    };
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let private_anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    wait_for_go();

    s.call("munmap", libc::SYS_munmap, &[START_MARKER, 0]);
    // An anonymous region, split three ways by mprotect, then trimmed at its tail.
    let a = s.call(
        "mmap",
        libc::SYS_mmap,
        &[0, 16 * PAGE, rw, private_anon, u64::MAX, 0],
    ) as u64;
    s.call(
        "mprotect",
        libc::SYS_mprotect,
        &[a + 4 * PAGE, 4 * PAGE, libc::PROT_READ as u64],
    );
    s.call("munmap", libc::SYS_munmap, &[a + 12 * PAGE, 4 * PAGE]);
    // A file mapping whose descriptor is closed before the dump.
    let f = s.call(
        "mmap",
        libc::SYS_mmap,
        &[
            0,
            3 * PAGE,
            libc::PROT_READ as u64,
            libc::MAP_PRIVATE as u64,
            fd,
            PAGE,
        ],
    ) as u64;
    // The heap: query, grow, shrink.
    let brk = s.call("brk", libc::SYS_brk, &[0]) as u64;
    s.call("brk", libc::SYS_brk, &[brk + 64 * PAGE]);
    s.call("brk", libc::SYS_brk, &[brk + 32 * PAGE]);
    // mremap growing a fresh region so it must move elsewhere.
    let b = s.call(
        "mmap",
        libc::SYS_mmap,
        &[0, 2 * PAGE, rw, private_anon, u64::MAX, 0],
    ) as u64;
    let guard = s.call(
        "mmap",
        libc::SYS_mmap,
        &[
            b + 2 * PAGE,
            PAGE,
            libc::PROT_NONE as u64,
            private_anon | libc::MAP_FIXED_NOREPLACE as u64,
            u64::MAX,
            0,
        ],
    );
    s.call(
        "mremap",
        libc::SYS_mremap,
        &[b, 2 * PAGE, 8 * PAGE, libc::MREMAP_MAYMOVE as u64, 0],
    );
    // Flags that split a mapping without changing its permissions.
    s.call(
        "madvise",
        libc::SYS_madvise,
        &[a, PAGE, libc::MADV_DONTFORK as u64],
    );
    s.call("mlock", libc::SYS_mlock, &[a + 8 * PAGE, PAGE]);
    // A MAP_FIXED overlay replacing the middle of an existing mapping.
    s.call(
        "mmap",
        libc::SYS_mmap,
        &[
            a + 9 * PAGE,
            2 * PAGE,
            libc::PROT_READ as u64,
            private_anon | libc::MAP_FIXED as u64,
            u64::MAX,
            0,
        ],
    );
    // Calls that fail and change nothing.
    s.call("munmap", libc::SYS_munmap, &[a + 1, PAGE]);
    s.call(
        "mmap",
        libc::SYS_mmap,
        &[
            0,
            PAGE,
            libc::PROT_READ as u64,
            libc::MAP_PRIVATE as u64,
            999,
            0,
        ],
    );
    s.call("munmap", libc::SYS_munmap, &[END_MARKER, 0]);

    drop(file);
    std::fs::remove_file(&file_path).unwrap();
    let mut out = std::io::stdout().lock();
    for line in &s.log {
        writeln!(out, "{line}").unwrap();
    }
    drop(out);
    let _ = (f, guard);
    checkpoint();
}

/// Churns one region in place while the test attaches: every iteration maps, splits and unmaps,
/// leaving the region mapped in a state that depends on the iteration's parity.
/// When a churn loop stops.
enum Until {
    Iterations(u64),
    Elapsed(std::time::Duration),
}

/// Bytes of each mapping `thread-churn` makes.
const CHURN_BYTES: usize = 64 << 10;

/// Two threads churning anonymous mappings (see the module's documentation).
fn thread_churn(duration: std::time::Duration) {
    wait_for_go();
    let threads: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || churn_mappings(duration)))
        .collect();
    let kept: usize = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    println!("kept {}", kept * CHURN_BYTES);
    checkpoint();
}

/// Maps and unmaps until `duration` has passed, keeping one mapping in 256; returns how many
/// it kept.
#[inline(never)]
fn churn_mappings(duration: std::time::Duration) -> usize {
    let started = std::time::Instant::now();
    let mut kept = 0;
    for i in 0u64.. {
        if i % 1024 == 0 && started.elapsed() >= duration {
            break;
        }
        // SAFETY: a fresh anonymous mapping, unmapped below unless kept.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHURN_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        if i % 256 == 255 {
            kept += 1;
        } else {
            // SAFETY: the mapping made just above.
            unsafe { libc::munmap(p, CHURN_BYTES) };
        }
    }
    kept
}

fn churn(until: Until) {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let private_anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let mut s = Script { log: Vec::new() };
    // SAFETY: reserving address space that only this loop uses.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            64 * PAGE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    } as u64;
    println!("ready");
    std::io::stdout().flush().unwrap();
    wait_for_go();
    let started = std::time::Instant::now();
    for i in 0.. {
        let done = match until {
            Until::Iterations(n) => i >= n,
            // Checking the clock every 1024 iterations keeps it out of the syscall rate.
            Until::Elapsed(limit) => i % 1024 == 0 && started.elapsed() >= limit,
        };
        if done {
            break;
        }
        let slot = base + (i % 8) * 8 * PAGE;
        s.call(
            "mmap",
            libc::SYS_mmap,
            &[
                slot,
                8 * PAGE,
                rw,
                private_anon | libc::MAP_FIXED as u64,
                u64::MAX,
                0,
            ],
        );
        s.call(
            "mprotect",
            libc::SYS_mprotect,
            &[slot + (i % 3) * PAGE, PAGE, libc::PROT_READ as u64],
        );
        if i % 2 == 0 {
            s.call("munmap", libc::SYS_munmap, &[slot + 6 * PAGE, 2 * PAGE]);
        }
        s.log.clear();
    }
    checkpoint();
}

/// `threads` threads, all started before any maps, each mapping, re-protecting and unmapping
/// its own regions; the process stops at a checkpoint once all have finished.
fn threads_mapping(threads: usize) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
                    let private_anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
                    let mut s = Script { log: Vec::new() };
                    for round in 0..20u64 {
                        let len = (1 + (t as u64 + round) % 4) * PAGE;
                        let addr = s.call(
                            "mmap",
                            libc::SYS_mmap,
                            &[0, len, rw, private_anon, u64::MAX, 0],
                        ) as u64;
                        s.call(
                            "mprotect",
                            libc::SYS_mprotect,
                            &[addr, PAGE, libc::PROT_READ as u64],
                        );
                        // Every thread keeps its last region, so the final table has work in it.
                        if round < 19 {
                            s.call("munmap", libc::SYS_munmap, &[addr, len]);
                        }
                        s.log.clear();
                    }
                })
                .expect("spawn thread")
        })
        .collect();
    println!("ready");
    std::io::stdout().flush().unwrap();
    wait_for_go();
    barrier.wait();
    for handle in handles {
        handle.join().unwrap();
    }
    checkpoint();
}

const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_AA01;
const UFFD_API: u64 = 0xAA;
const REGISTER_MODE_MISSING: u64 = 1;
const REGISTER_MODE_MINOR: u64 = 4;
const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
const UFFD_EVENT_UNMAP: u8 = 0x16;

/// A fresh anonymous mapping of `pages` pages and a userfaultfd, handshaken.
fn mapping_and_userfaultfd(pages: u64) -> (u64, libc::c_int) {
    mapping_and_userfaultfd_with(pages, 0, 0)
}

/// A mapping of `pages` and a userfaultfd opened with `flags` besides O_CLOEXEC, asking for
/// `features`.
fn mapping_and_userfaultfd_with(
    pages: u64,
    flags: libc::c_int,
    features: u64,
) -> (u64, libc::c_int) {
    // SAFETY: plain syscalls; the struct is the kernel's uffdio_api.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            (pages * PAGE) as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        let uffd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | flags) as libc::c_int;
        assert!(
            uffd >= 0,
            "userfaultfd: {}",
            std::io::Error::last_os_error()
        );
        let mut api = [UFFD_API, features, 0];
        assert_eq!(libc::ioctl(uffd, UFFDIO_API, api.as_mut_ptr()), 0);
        (base as u64, uffd)
    }
}

/// UFFDIO_REGISTER of `[start, start + len)`; the ioctl's result (0 or -1).
fn uffd_register(uffd: libc::c_int, start: u64, len: u64, mode: u64) -> libc::c_int {
    let mut register = [start, len, mode, 0];
    // SAFETY: the struct is the kernel's uffdio_register.
    unsafe { libc::ioctl(uffd, UFFDIO_REGISTER, register.as_mut_ptr()) }
}

fn uffd_unregister(uffd: libc::c_int, start: u64, len: u64) {
    let mut range = [start, len];
    // SAFETY: the struct is the kernel's uffdio_range.
    assert_eq!(
        unsafe { libc::ioctl(uffd, UFFDIO_UNREGISTER, range.as_mut_ptr()) },
        0
    );
}

/// Userfaultfd registrations, which split and merge VMAs as flag changes do, with a checkpoint
/// after each step: a middle registered; a refused mode (MINOR on private anonymous memory);
/// part unregistered; all unregistered.
fn userfaultfd() {
    wait_for_go();
    let (base, uffd) = mapping_and_userfaultfd(4);
    assert_eq!(
        uffd_register(uffd, base + PAGE, 2 * PAGE, REGISTER_MODE_MISSING),
        0
    );
    checkpoint();
    assert_eq!(uffd_register(uffd, base, 4 * PAGE, REGISTER_MODE_MINOR), -1);
    uffd_unregister(uffd, base + 2 * PAGE, PAGE);
    checkpoint();
    uffd_unregister(uffd, base, 4 * PAGE);
    checkpoint();
}

/// An unmap whose record reaches the ring after the mapping that reused its range, made
/// certain: a thread unmaps a range registered with a userfaultfd that asked for unmap events,
/// and the kernel, the range free and the mmap lock dropped, holds that thread in
/// `userfaultfd_unmap_complete()` until the event is read. Meanwhile the main thread maps the
/// same range again (its address as a hint: placed there because it is free) and only then
/// reads the event. Stops at a checkpoint holding the new mapping; exits when continued.
fn late_unmap() {
    let pages = 4;
    // (poll() reports an error on a userfaultfd that may block: userfaultfd_poll().)
    let (base, uffd) =
        mapping_and_userfaultfd_with(pages, libc::O_NONBLOCK, UFFD_FEATURE_EVENT_UNMAP);
    assert_eq!(
        uffd_register(uffd, base, pages * PAGE, REGISTER_MODE_MISSING),
        0
    );
    println!("ready");
    std::io::stdout().flush().unwrap();
    wait_for_go();
    // SAFETY: unmapping the range this function mapped and nothing else uses.
    let unmapper = std::thread::spawn(move || unsafe {
        libc::munmap(base as *mut libc::c_void, (pages * PAGE) as usize)
    });
    let mut ready = libc::pollfd {
        fd: uffd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling our own descriptor; the mapping is a fresh one at a hint; the read
    // fills a buffer of the size of the kernel's uffd_msg.
    unsafe {
        assert_eq!(libc::poll(&mut ready, 1, 10_000), 1, "no unmap event");
        assert_eq!(ready.revents, libc::POLLIN);
        let again = libc::mmap(
            base as *mut libc::c_void,
            (pages * PAGE) as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_eq!(again as u64, base, "the freed range was not given again");
        let mut message = [0u8; 32];
        assert_eq!(libc::read(uffd, message.as_mut_ptr().cast(), 32), 32);
        assert_eq!(message[0], UFFD_EVENT_UNMAP);
    }
    assert_eq!(unmapper.join().unwrap(), 0);
    checkpoint();
}

/// Changes the mappings in a way pmap-trace does not see: a userfaultfd registered on the
/// middle of a mapping (traced: the middle becomes a mapping of its own) is closed, and the
/// kernel, releasing it, merges the three again. Stops, and exits when continued.
fn untraced_merge() {
    wait_for_go();
    let (base, uffd) = mapping_and_userfaultfd(3);
    assert_eq!(
        uffd_register(uffd, base + PAGE, PAGE, REGISTER_MODE_MISSING),
        0
    );
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(uffd) };
    checkpoint();
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("scripted") => scripted(),
        Some("churn") => {
            let iterations = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
            churn(Until::Iterations(iterations))
        }
        Some("churn-seconds") => {
            let seconds = args.next().and_then(|n| n.parse().ok()).unwrap_or(10.0);
            churn(Until::Elapsed(std::time::Duration::from_secs_f64(seconds)))
        }
        Some("thread-churn") => {
            let seconds = args.next().and_then(|n| n.parse().ok()).unwrap_or(3.0);
            thread_churn(std::time::Duration::from_secs_f64(seconds))
        }
        Some("untraced-merge") => untraced_merge(),
        Some("late-unmap") => late_unmap(),
        Some("userfaultfd") => userfaultfd(),
        Some("threads") => {
            let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
            threads_mapping(threads)
        }
        other => {
            eprintln!(
                "pmap-workload: unknown mode {other:?}; use scripted, churn N, churn-seconds S, \
                 thread-churn S, threads N, userfaultfd, untraced-merge or late-unmap"
            );
            std::process::exit(2);
        }
    }
}
