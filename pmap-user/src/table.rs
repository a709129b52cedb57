//! The live mapping table of one traced process: the process's VMAs as `/proc/PID/maps` lists
//! them, kept current by applying decoded events.

/// Page size of the traced machine (x86_64); every mapping bound is a multiple of it.
pub const PAGE_SIZE: u64 = 4096;

/// Access bits of a mapping, as the `rwxp`/`rwxs` column of `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p` (private, copy-on-write).
    pub shared: bool,
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
