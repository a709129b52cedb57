//! The reader's scheduling priority. The rings are sized for a reader that drains them within
//! milliseconds of a wake-up; on CPUs kept busy by other programs, or by the traced program's
//! own threads, a reader of ordinary priority waits its turn for tens of milliseconds while
//! the rings fill. Two threads mapping and unmapping as fast as they can, at load average 3–7
//! on this project's 2-CPU machine, made pmap-trace lose stack copies in 5 of 8 3-second runs
//! at nice 0 (500 to 59 000 a run) and in 1 of 6 at nice -10. So once its targets are
//! attached (or its command forked, which keeps the priority it was started with), pmap-trace
//! raises its own to nice [`READER_NICE`].

/// The nice value the reader runs at: ten steps above the default gives it about ten times
/// the CPU share of an ordinary task when both are runnable (`sched_prio_to_weight` in
/// kernel/sched/core.c), enough to be woken in time.
const READER_NICE: i32 = -10;

/// Raises the calling thread's priority (and that of the threads it starts later) to nice
/// -10, unless it was started at a higher one. Raising needs `CAP_SYS_NICE`, which
/// root has; without it the priority stays as it was.
pub fn raise_reader_priority() {
    // SAFETY: plain syscalls on the calling thread. getpriority can return -1 as a value: the
    // error is told by errno, cleared before the call.
    unsafe {
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if *libc::__errno_location() != 0 || current > READER_NICE {
            libc::setpriority(libc::PRIO_PROCESS, 0, READER_NICE);
        }
    }
}
