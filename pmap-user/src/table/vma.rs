//! One VMA as the table keeps it: what `/proc/PID/maps` prints plus the state that decides
//! merges (hidden `vm_flags`, `vm_pgoff`, the anon_vma), each part possibly unknown.

use crate::model::{Mapping, PAGE_SIZE, Perms};

/// `vm_flags` that `/proc/PID/maps` does not print but that decide whether the kernel merges
/// two neighbours (and so where a line of the dump ends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HiddenFlags(pub(super) u32);

impl HiddenFlags {
    pub const LOCKED: u32 = 1 << 0;
    pub const LOCKONFAULT: u32 = 1 << 1;
    pub const HUGEPAGE: u32 = 1 << 2;
    pub const NOHUGEPAGE: u32 = 1 << 3;
    pub const DONTFORK: u32 = 1 << 4;
    pub const WIPEONFORK: u32 = 1 << 5;
    pub const MERGEABLE: u32 = 1 << 6;
    pub const DONTDUMP: u32 = 1 << 7;
    pub const NORESERVE: u32 = 1 << 8;
    pub const GROWSDOWN: u32 = 1 << 9;
    pub const SEALED: u32 = 1 << 10;
    /// `VM_ACCOUNT`: the mapping is charged to the commit limit (private and writable at some
    /// point, and not MAP_NORESERVE).
    pub const ACCOUNT: u32 = 1 << 11;
    /// `VM_SEQ_READ` and `VM_RAND_READ`: MADV_SEQUENTIAL and MADV_RANDOM.
    pub const SEQ_READ: u32 = 1 << 12;
    pub const RAND_READ: u32 = 1 << 13;
    /// `VM_MAYWRITE`: the mapping may be made writable. Cleared for a shared mapping of a file
    /// opened read-only, which mprotect(PROT_WRITE) then refuses with EACCES.
    pub const MAYWRITE: u32 = 1 << 14;
    /// `VM_UFFD_MISSING`, `VM_UFFD_WP`, `VM_UFFD_MINOR`: registered with a userfaultfd in that
    /// mode (the UFFDIO_REGISTER_MODE_* bits, in the same order).
    pub const UFFD_MISSING: u32 = 1 << 15;
    pub const UFFD_WP: u32 = 1 << 16;
    pub const UFFD_MINOR: u32 = 1 << 17;
    pub const UFFD: u32 = Self::UFFD_MISSING | Self::UFFD_WP | Self::UFFD_MINOR;
    /// Every flag above.
    pub const ALL: u32 = (1 << 18) - 1;
    pub(super) const LOCKED_MASK: u32 = Self::LOCKED | Self::LOCKONFAULT;

    pub fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    pub fn with(self, set: u32, clear: u32) -> Self {
        HiddenFlags((self.0 & !clear) | set)
    }

    /// The hidden flags of a VMA with these `vm_flags`, as the exec record carries them.
    pub fn from_vm_flags(vm_flags: u64) -> HiddenFlags {
        use pmap_common::linux::vm_flags::*;
        let bits = [
            (VM_LOCKED, Self::LOCKED),
            (VM_LOCKONFAULT, Self::LOCKONFAULT),
            (VM_HUGEPAGE, Self::HUGEPAGE),
            (VM_NOHUGEPAGE, Self::NOHUGEPAGE),
            (VM_DONTCOPY, Self::DONTFORK),
            (VM_WIPEONFORK, Self::WIPEONFORK),
            (VM_MERGEABLE, Self::MERGEABLE),
            (VM_DONTDUMP, Self::DONTDUMP),
            (VM_NORESERVE, Self::NORESERVE),
            (VM_GROWSDOWN, Self::GROWSDOWN),
            (VM_SEALED, Self::SEALED),
            (VM_ACCOUNT, Self::ACCOUNT),
            (VM_SEQ_READ, Self::SEQ_READ),
            (VM_RAND_READ, Self::RAND_READ),
            (VM_MAYWRITE, Self::MAYWRITE),
            (VM_UFFD_MISSING, Self::UFFD_MISSING),
            (VM_UFFD_WP, Self::UFFD_WP),
            (VM_UFFD_MINOR, Self::UFFD_MINOR),
        ];
        bits.iter()
            .filter(|(vm, _)| vm_flags & vm != 0)
            .fold(HiddenFlags::default(), |flags, &(_, hidden)| {
                flags.with(hidden, 0)
            })
    }
}

/// Bits of [`Vma::unknown`] beyond the hidden flags.
pub(super) mod unknown {
    use super::HiddenFlags;

    /// The file behind the mapping (device, inode, name), or its full path: the kernel could
    /// not say when the mapping was made (it had moved or gone by the time it was asked).
    /// Resolved where the mapping is before a dump
    /// ([`super::AddressSpace::refresh_growing_mappings`]).
    pub const IDENTITY: u32 = 1 << 29;
    /// `vm_pgoff` of private anonymous memory: the kernel resets it to the new address when it
    /// moves a mapping that has no anon_vma yet, and keeps it otherwise.
    pub const PGOFF: u32 = 1 << 30;
    /// The VMA was read from `/proc` rather than made by a traced call: it may have been
    /// inherited at fork with copy-on-write pages, which the kernel refuses to merge even with a
    /// brand-new neighbour.
    pub const ORIGIN: u32 = 1 << 31;
    /// Everything, for a VMA the table knows only from `/proc/PID/maps`.
    pub const ALL: u32 = HiddenFlags::ALL | PGOFF | ORIGIN;
}

/// What the table knows of a VMA's anon_vma, the object its private copy-on-write pages hang
/// on. The kernel merges two private VMAs only if at most one has an anon_vma or both have the
/// same one, and a VMA gets one when a private page of it is first written — invisibly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnonVma {
    /// A shared mapping, which never gets one: any two such neighbours are compatible.
    Never,
    /// Made by the call being applied, so nothing has written to it yet.
    Fresh,
    /// It may have one, of unknown identity.
    Unknown,
}

/// The VMA's `vm_ops`, as far as the table's rules need them: can_merge_remove_vma() (Linux
/// 6.18 `mm/vma.c`) lets no merge remove a VMA whose `vm_ops` has a `close` hook, and
/// ksys_shmdt() (`ipc/shm.c`) unmaps only VMAs with `shm_vm_ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VmOps {
    /// No `close` hook the table knows of: anonymous memory, files, shmem. (A driver's
    /// mapping with one, such as a DRM buffer, is taken as this; most of those are
    /// `VM_SPECIAL` and merge with nothing anyway.)
    Plain,
    /// System V shared memory, attached by shmat(): `shm_vm_ops`, whose `close` is
    /// shm_close(). `segment_bytes` is the segment's size (its file's `i_size`), which
    /// shmdt() bounds its search by; None when the table did not see the attach.
    SysvShm { segment_bytes: Option<u64> },
}

impl VmOps {
    /// The `vm_ops` of a VMA read from `/proc`, told by its name: the kernel names a System V
    /// segment's file `SYSV` and its key in 8 hex digits (newseg()), on an internal mount, so
    /// `/proc` shows it as deleted.
    pub(super) fn of_listed(mapping: &Mapping) -> VmOps {
        let sysv = mapping.perms.shared
            && mapping.inode != 0
            && mapping
                .name
                .strip_prefix(b"/SYSV")
                .and_then(|rest| rest.strip_suffix(b" (deleted)"))
                .is_some_and(|key| key.len() == 8 && key.iter().all(u8::is_ascii_hexdigit));
        if sysv {
            VmOps::SysvShm {
                segment_bytes: None,
            }
        } else {
            VmOps::Plain
        }
    }

    /// can_merge_remove_vma(): whether a merge may remove a VMA with these operations.
    pub(super) fn can_merge_remove(self) -> bool {
        self == VmOps::Plain
    }
}

/// One VMA with the hidden state the table tracks beside what is printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Vma {
    pub(super) mapping: Mapping,
    pub(super) flags: HiddenFlags,
    /// Bits of `flags` whose value is not known (those bits of `flags` are a guess), plus the
    /// [`unknown`] bits.
    pub(super) unknown: u32,
    pub(super) anon: AnonVma,
    /// The call that created the mapping (an mmap, a brk, a seed). Pieces of one mapping share
    /// its `struct file`; mappings of the same file made by different calls may not (the file
    /// may have been opened twice), and the kernel merges only the same `struct file`.
    pub(super) origin: u64,
    /// `vm_pgoff` of `start` in pages: file offset for file mappings, creation address for
    /// anonymous ones. Neighbours merge only when it is contiguous.
    pub(super) pgoff: u64,
    /// The kernel may have merged this VMA with its left neighbour (it could, and only the
    /// anon_vma or other unknown state decides): the table keeps them apart until a dump asks,
    /// or a later call settles it.
    pub(super) pending_left: bool,
    /// Other access the VMA may have instead of `mapping.perms` (a [`PermsSet`]): mprotect
    /// calls that failed part-way may or may not have got this far, which only the kernel
    /// knows. Settled at the dump; empty when the access is known.
    pub(super) maybe_perms: PermsSet,
    pub(super) ops: VmOps,
}

/// A set of access values (`rwx` and shared: 16 values, one bit each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PermsSet(pub(super) u16);

impl PermsSet {
    pub(super) fn bit(p: Perms) -> u16 {
        1 << (p.read as u16 | (p.write as u16) << 1 | (p.exec as u16) << 2 | (p.shared as u16) << 3)
    }

    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn with(self, p: Perms) -> PermsSet {
        PermsSet(self.0 | Self::bit(p))
    }

    pub(super) fn contains(self, p: Perms) -> bool {
        self.0 & Self::bit(p) != 0
    }
}

impl Vma {
    /// Piece `[start, end)` of this VMA.
    pub(super) fn slice(&self, start: u64, end: u64) -> Vma {
        let delta = start - self.mapping.start;
        let mut piece = self.clone();
        piece.mapping.start = start;
        piece.mapping.end = end;
        if piece.has_file() {
            piece.mapping.offset += delta;
        }
        piece.pgoff += delta / PAGE_SIZE;
        piece
    }

    /// Whether the VMA has a `vm_file`: a file, or the shmem object behind shared anonymous
    /// memory. `/proc/PID/maps` then prints its `vm_pgoff` as the offset.
    pub(super) fn has_file(&self) -> bool {
        self.mapping.inode != 0
            || self.mapping.offset != 0
            || self.mapping.perms.shared
            || self.unknown & unknown::IDENTITY != 0
    }

    /// Private anonymous memory (`vma_is_anonymous`: no `vm_ops`).
    pub(super) fn is_private_anon(&self) -> bool {
        !self.has_file() && !self.is_special()
    }

    /// The kernel's own mappings (`VM_SPECIAL`): mlock and some madvise advice leave them be.
    pub(super) fn is_special(&self) -> bool {
        matches!(
            self.mapping.name.as_slice(),
            b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]" | b"[uprobes]"
        )
    }

    /// A flag's value, if known.
    pub(super) fn flag(&self, bit: u32) -> Option<bool> {
        (self.unknown & bit == 0).then(|| self.flags.contains(bit))
    }

    /// Sets or clears a flag, or records that its value is now unknown.
    pub(super) fn set_flag(&mut self, bit: u32, value: Option<bool>) {
        match value {
            Some(on) => {
                self.flags = if on {
                    self.flags.with(bit, 0)
                } else {
                    self.flags.with(0, bit)
                };
                self.unknown &= !bit;
            }
            None => self.unknown |= bit,
        }
    }

    /// Sets `set` and clears `clear`, which are known afterwards.
    pub(super) fn change_flags(&mut self, set: u32, clear: u32) {
        self.flags = self.flags.with(set, clear);
        self.unknown &= !(set | clear);
    }
}
