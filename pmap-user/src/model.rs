//! What every stage shares: a mapping as `/proc/PID/maps` lists it. The decoder produces the
//! pieces of one, the table keeps them, `/proc` readers parse them and renderers print them.
//! And how a launched process ended: the session learns it, event lines and JSON print it.

pub use pmap_common::linux::PAGE_SIZE;

/// Access bits of a mapping, as the `rwxp`/`rwxs` column of `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

impl Perms {
    /// Parses the permission column of `/proc/PID/maps` (`r-xp`, `rw-s`, ...).
    pub fn parse(word: &[u8]) -> Option<Perms> {
        let flag = |got: u8, set: u8| match got {
            b'-' => Some(false),
            _ if got == set => Some(true),
            _ => None,
        };
        let [r, w, x, s] = word.try_into().ok()?;
        Some(Perms {
            read: flag(r, b'r')?,
            write: flag(w, b'w')?,
            exec: flag(x, b'x')?,
            shared: match s {
                b's' => true,
                b'p' => false,
                _ => return None,
            },
        })
    }
}

/// A device number as `/proc/PID/maps` prints it (`fe:00`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

/// One VMA: one line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    /// File offset of `start` in bytes (0 for anonymous memory).
    pub offset: u64,
    pub device: Device,
    pub inode: u64,
    /// The path column exactly as the kernel prints it in `/proc/PID/maps`: empty for anonymous
    /// memory, `[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]`, or a file path with the kernel's
    /// escapes (`\012` for a newline) and ` (deleted)` suffix.
    pub name: Vec<u8>,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// `value` rounded up to a whole page, as the kernel rounds a call's length.
pub fn page_align_up(value: u64) -> u64 {
    value.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// How a process pmap-trace started ended, as wait(2) tells its parent: its exit is reported
/// so, and becomes pmap-trace's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Killed {
        signal: i32,
        core_dumped: bool,
    },
    /// It could not be waited for.
    Unknown,
}

impl ExitStatus {
    /// The exit code a shell reports: 128 + the signal when killed.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Killed { signal, .. } => 128 + signal,
            ExitStatus::Unknown => 1,
        }
    }
}

/// `SIGINT`, as strace names a signal (`SIGRT_3` for a real-time one).
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(signal) {
        Ok(n) if (1..NAMES.len()).contains(&n) => NAMES[n].to_string(),
        _ if signal >= libc::SIGRTMIN() => format!("SIGRT_{}", signal - libc::SIGRTMIN()),
        _ => format!("signal {signal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_strace_names_them() {
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGSYS), "SIGSYS");
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRT_2");
    }
}
