//! Releasing the kernel side without making the user wait for it. Closing the last reference
//! to a tracepoint link detaches its program: `bpf_link_release` → `perf_event_release_kernel`
//! → `perf_trace_destroy`, which takes `event_mutex` and, in `perf_trace_event_unreg`, waits in
//! `tracepoint_synchronize_unregister` for an RCU tasks-trace grace period and an RCU grace
//! period (kernel/trace/trace_event_perf.c). With one link per traced syscall that is tens of
//! grace periods one after the other, most of a second on an idle machine and several on a
//! busy one; closing the links from several threads would not help, since `event_mutex`
//! serialises them, and attaching fewer links means hooking `raw_syscalls`, which runs a program
//! for every syscall of every process.
//!
//! So at exit pmap-trace forks a process that holds the only other references to the eBPF
//! objects, and exits at once: its own references go without waiting. The fork drops
//! everything else straight away (standard output included, so a pipe reading pmap-trace sees
//! its end when pmap-trace exits), leaves pmap-trace's session so that the terminal's signals
//! do not reach it, waits until pmap-trace has exited, closes the eBPF objects (the wait
//! happens here) and exits.
//!
//! Only the last reference to a file releases it (`fput` → `__fput`): whichever process closes
//! its copy of a link last waits. The fork therefore closes nothing before pmap-trace is gone,
//! told by the end of a pipe whose only writer is pmap-trace: `do_exit` drops every file of
//! the exiting process in `exit_files` before the deferred `__fput` of the pipe
//! (`exit_task_work`) wakes the reader, so by then pmap-trace holds no reference of its own.

use std::{ffi::CStr, fs, os::fd::RawFd};

/// The name the releasing process shows in `ps` (`comm`, at most 15 bytes).
pub const RELEASER_NAME: &CStr = c"pmap-trace-exit";

/// Forks the releasing process; returns whether it was forked (if not, the caller's own
/// drop releases everything, waiting for it).
pub fn hand_over() -> bool {
    let Some(held) = kernel_objects() else {
        return false;
    };
    let mut ends = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return false;
    }
    let [parent_gone, open_until_exit] = ends;
    let mut kept = held;
    kept.push(parent_gone);
    kept.sort_unstable();
    // SAFETY: the child calls only async-signal-safe functions (close_range, close, setsid,
    // prctl, read, _exit) on memory prepared before the fork.
    match unsafe { libc::fork() } {
        0 => unsafe { release_and_exit(&kept, parent_gone) },
        pid => {
            // SAFETY: closing our own descriptors. `open_until_exit` is left open on purpose
            // when the fork exists: this process's exit closes it, which the fork waits for.
            unsafe { libc::close(parent_gone) };
            if pid < 0 {
                unsafe { libc::close(open_until_exit) };
            }
            pid > 0
        }
    }
}

/// The descriptors of eBPF objects (programs, maps, links) and perf events this process
/// holds, in ascending order; `None` when they cannot be listed.
fn kernel_objects() -> Option<Vec<RawFd>> {
    let mut held: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            let target = target.to_str()?;
            (target.starts_with("anon_inode:bpf") || target == "anon_inode:[perf_event]")
                .then_some(fd)
        })
        .collect();
    held.sort_unstable();
    Some(held)
}

/// In the forked child: closes everything but `held` at once, leaves the session, waits until
/// `parent_gone` (the reading end of a pipe only the parent writes to) reaches its end, then
/// closes `held` (each link's release waits) and exits.
///
/// # Safety
/// Call only in the child of a fork, with `held` sorted and holding `parent_gone`.
unsafe fn release_and_exit(held: &[RawFd], parent_gone: RawFd) -> ! {
    // SAFETY: closing descriptors this process owns; the rest are plain syscalls.
    unsafe {
        let mut next: libc::c_uint = 0;
        for &fd in held {
            let fd = fd as libc::c_uint;
            if fd > next {
                close_range(next, fd - 1);
            }
            next = fd + 1;
        }
        close_range(next, libc::c_uint::MAX);
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, RELEASER_NAME.as_ptr());
        // Nothing is ever written: the read returns at the end, or early when interrupted.
        let mut byte = 0u8;
        while libc::read(parent_gone, (&raw mut byte).cast(), 1) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
        for &fd in held {
            libc::close(fd);
        }
        libc::_exit(0)
    }
}

/// Closes the descriptors `first..=last`.
///
/// # Safety
/// Only in a process that owns them.
unsafe fn close_range(first: libc::c_uint, last: libc::c_uint) {
    // SAFETY: see the function's contract.
    let failed = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0;
    if failed {
        // Before Linux 5.9: one by one, up to the highest descriptor possible.
        // SAFETY: as above.
        let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.max(0) as libc::c_uint;
        for fd in first..=last.min(limit) {
            // SAFETY: as above.
            unsafe { libc::close(fd as libc::c_int) };
        }
    }
}
