//! SIGINT, SIGTERM, SIGHUP and SIGQUIT as pmap-trace receives them: each with where it came
//! from, which decides whether a launched command has it already (see
//! [`Received::reached_group_of`]).
//! They are read from a signalfd rather than caught by a handler, because a handler is not
//! told who sent the signal.

use std::{
    io,
    mem::MaybeUninit,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::OnceLock,
};

use tokio::io::unix::AsyncFd;

use crate::capture::fd_watch::watch_readable;

/// The signals that stop a trace: those whose default action ends a process, that a terminal
/// or a supervisor sends to ask for an end (Ctrl-C, Ctrl-\, a hangup, `kill`).
const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The signal mask pmap-trace started with: what a command it launches must run with, since a
/// blocked signal stays blocked across exec.
static ORIGINAL_MASK: OnceLock<libc::sigset_t> = OnceLock::new();

/// One stop signal, with its sender as `siginfo` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub signal: i32,
    /// `si_code`: `SI_USER` for kill(2), `SI_KERNEL` for a signal the kernel sent itself.
    pub code: i32,
    /// `si_pid`: the process that called kill(2) (0 for the kernel).
    pub sender: u32,
}

impl Received {
    /// Whether the signal reached `pid` too, without pmap-trace: the terminal sends SIGINT (^C),
    /// SIGQUIT and SIGTSTP to its whole foreground process group, and SIGHUP on hangup, as
    /// the kernel (`isig` in drivers/tty/n_tty.c and `__tty_hangup` call `kill_pgrp` with a
    /// privileged siginfo: `si_code` is `SI_KERNEL`). A launched command stays in pmap-trace's
    /// group unless it leaves it. A kill(2) says `SI_USER` whether it named pmap-trace or its
    /// group: nothing tells the two apart.
    pub fn reached_group_of(&self, pid: i32) -> bool {
        // SAFETY: no preconditions.
        let (ours, theirs) = unsafe { (libc::getpgrp(), libc::getpgid(pid)) };
        self.code == libc::SI_KERNEL && theirs == ours
    }
}

/// The stop signals, read as they come.
pub struct StopSignals {
    fd: AsyncFd<OwnedFd>,
}

impl StopSignals {
    /// Blocks the stop signals in the calling thread, so that they wait for the signalfd
    /// instead of ending the process. Call it before any other thread starts: threads inherit
    /// the mask, and one that did not block them would take the default action.
    pub fn install() -> io::Result<StopSignals> {
        let mut stops = MaybeUninit::<libc::sigset_t>::uninit();
        let mut original = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset/sigaddset initialise `stops`; pthread_sigmask writes the
        // previous mask into `original`; signalfd takes the initialised set.
        let fd = unsafe {
            libc::sigemptyset(stops.as_mut_ptr());
            for signal in STOP_SIGNALS {
                libc::sigaddset(stops.as_mut_ptr(), signal);
            }
            let failed =
                libc::pthread_sigmask(libc::SIG_BLOCK, stops.as_ptr(), original.as_mut_ptr());
            if failed != 0 {
                return Err(io::Error::from_raw_os_error(failed));
            }
            let _ = ORIGINAL_MASK.set(original.assume_init());
            libc::signalfd(-1, stops.as_ptr(), libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just created and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(StopSignals {
            fd: watch_readable(fd)?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most one siginfo into memory of its size.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n as usize == size {
                // SAFETY: the kernel filled the whole struct.
                let info = unsafe { info.assume_init() };
                return Ok(Received {
                    signal: info.ssi_signo as i32,
                    code: info.ssi_code,
                    sender: info.ssi_pid,
                });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            guard.clear_ready();
        }
    }
}

/// Gives a freshly forked child the signal mask pmap-trace started with. Only calls
/// async-signal-safe functions on memory prepared before the fork.
///
/// # Safety
/// Call only in the child of a fork, before exec.
pub unsafe fn restore_original_mask_in_child() {
    if let Some(mask) = ORIGINAL_MASK.get() {
        // SAFETY: a valid, initialised set (see the function's contract for the context).
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: no memory is passed.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kernel_signal_to_the_same_group_reached_it() {
        let own = std::process::id() as i32;
        let from = |code| Received {
            signal: libc::SIGINT,
            code,
            sender: 0,
        };
        assert!(from(libc::SI_KERNEL).reached_group_of(own));
        assert!(!from(libc::SI_USER).reached_group_of(own));
        // A process outside pmap-trace's group (PID 1 leads its own).
        assert!(!from(libc::SI_KERNEL).reached_group_of(1));
    }
}
