//! What every stage shares: a mapping as `/proc/PID/maps` lists it. The decoder produces the
//! pieces of one, the table keeps them, `/proc` readers parse them and renderers print them; and
//! the lines `/proc/PID/smaps` adds under one, which the smaps reader reads and `-x`, `-X` and
//! `-XX` print.
//! And how a launched process ended: the session learns it, event lines and JSON print it.

pub use pmap_common::linux::PAGE_SIZE;

/// What the kernel pads the fixed columns of a `/proc/PID/maps` line to before the path column
/// (`25 + sizeof(void *) * 6 - 1` in `show_vma_header_prefix`): where the readers find a name
/// and the renderers put it.
pub const MAPS_NAME_COLUMN: usize = 72;

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

/// Whether a syscall's raw return value is an error: the kernel returns -4095..=-1 for one
/// (`MAX_ERRNO` and `IS_ERR_VALUE()` in include/linux/err.h); any other value is a result,
/// an address included.
pub fn syscall_failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

/// `value` rounded up to a whole page, as the kernel rounds a call's length.
pub fn page_align_up(value: u64) -> u64 {
    value.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// The lines the kernel prints under one mapping of `/proc/PID/smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsEntry {
    pub start: u64,
    pub end: u64,
    /// Every line after the mapping's own, newlines included, as the kernel printed them.
    pub details: Vec<u8>,
}

/// The renderer reads the lines as pmap does; tests look values up by key.
#[cfg(test)]
impl SmapsEntry {
    /// The number on the `key:` line (in kB for most keys).
    pub fn value(&self, key: &str) -> Option<u64> {
        self.details.split(|&b| b == b'\n').find_map(|line| {
            let rest = line.strip_prefix(key.as_bytes())?.strip_prefix(b":")?;
            let digits = rest.trim_ascii_start();
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
        })
    }
}

/// The keys this kernel prints under each mapping, in order, with whether the value has a
/// ` kB` unit. Taken from any smaps file of the running kernel; [`SmapsLayout::default`] is
/// Linux 6.x's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsLayout {
    keys: Vec<(Vec<u8>, bool)>,
}

impl Default for SmapsLayout {
    fn default() -> SmapsLayout {
        let kb = [
            "Size",
            "KernelPageSize",
            "MMUPageSize",
            "Rss",
            "Pss",
            "Pss_Dirty",
            "Shared_Clean",
            "Shared_Dirty",
            "Private_Clean",
            "Private_Dirty",
            "Referenced",
            "Anonymous",
            "KSM",
            "LazyFree",
            "AnonHugePages",
            "ShmemPmdMapped",
            "FilePmdMapped",
            "Shared_Hugetlb",
            "Private_Hugetlb",
            "Swap",
            "SwapPss",
            "Locked",
        ];
        let mut keys: Vec<(Vec<u8>, bool)> =
            kb.iter().map(|k| (k.as_bytes().to_vec(), true)).collect();
        keys.push((b"THPeligible".to_vec(), false));
        SmapsLayout { keys }
    }
}

impl SmapsLayout {
    /// The layout of `details` (one mapping's lines from a smaps file of this kernel); the
    /// default when they hold no `Key: value` line.
    pub fn from_details(details: &[u8]) -> SmapsLayout {
        let keys: Vec<(Vec<u8>, bool)> = details
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let (key, rest) = (&line[..colon], &line[colon + 1..]);
                let value = rest.trim_ascii();
                let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
                (digits > 0 && key != b"VmFlags")
                    .then(|| (key.to_vec(), value[digits..].trim_ascii() == b"kB"))
            })
            .collect();
        if keys.is_empty() {
            SmapsLayout::default()
        } else {
            SmapsLayout { keys }
        }
    }

    /// Each key in order, with whether its value has a ` kB` unit.
    pub fn keys(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.keys.iter().map(|(key, kb)| (&key[..], *kb))
    }
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
