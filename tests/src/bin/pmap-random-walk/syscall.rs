//! How the walk makes every call: the raw syscall, whose result reads as the tracepoint
//! reports it (`-errno` on failure), and which reaches calls libc has no wrapper for (mseal).

/// The raw syscall; returns the result or `-errno`, as the tracepoint reports it.
pub fn sys(nr: libc::c_long, args: [u64; 6]) -> i64 {
    // SAFETY: every call targets memory the walk owns (the arena, its loose ranges, its heap) or
    // is rejected by the kernel; nothing the walk reads or runs lives there.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret == -1 {
        // SAFETY: reading errno right after the failing call.
        -(unsafe { *libc::__errno_location() }) as i64
    } else {
        ret
    }
}

/// Whether a result of [`sys`] is a success rather than `-errno`.
pub fn ok(ret: i64) -> bool {
    !(-4095..0).contains(&ret)
}
