//! What a new mapping is ([`Kind`]) and how it is placed ([`Place`]): the choices both a
//! random mmap and a planned one make, turned into mmap's flags and address.

/// Shared or private, anonymous or of a file.
#[derive(Clone, Copy)]
pub enum Kind {
    PrivateAnon,
    SharedAnon,
    PrivateFile,
    SharedFile,
}

impl Kind {
    pub fn flags(self) -> u64 {
        (match self {
            Kind::PrivateAnon => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            Kind::SharedAnon => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            Kind::PrivateFile => libc::MAP_PRIVATE,
            Kind::SharedFile => libc::MAP_SHARED,
        }) as u64
    }

    pub fn private(self) -> bool {
        matches!(self, Kind::PrivateAnon | Kind::PrivateFile)
    }
}

/// Where a mapping meant for an address goes: there (replacing, or refused where something
/// is), near it as a hint, or wherever the kernel places it.
#[derive(Clone, Copy)]
pub enum Place {
    Fixed,
    NoReplace,
    Hint,
    Anywhere,
}

impl Place {
    pub fn flags(self) -> u64 {
        (match self {
            Place::Fixed => libc::MAP_FIXED,
            Place::NoReplace => libc::MAP_FIXED_NOREPLACE,
            Place::Hint | Place::Anywhere => 0,
        }) as u64
    }

    /// The address argument for a mapping meant for `at`.
    pub fn addr(self, at: u64) -> u64 {
        match self {
            Place::Anywhere => 0,
            _ => at,
        }
    }
}
