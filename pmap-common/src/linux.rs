//! The Linux x86_64 ABI values pmap-trace reads in the calls it traces, defined once for the
//! kernel side, the decoder, the table and the renderers (`include/uapi/asm-generic/mman*.h`,
//! `include/uapi/linux/mman.h`, `include/uapi/asm-generic/errno-base.h`, and the x86_64 syscall
//! table).

/// Page size of x86_64; every mapping bound is a multiple of it.
pub const PAGE_SIZE: u64 = 4096;

pub const PROT_NONE: u64 = 0x0;
pub const PROT_READ: u64 = 0x1;
pub const PROT_WRITE: u64 = 0x2;
pub const PROT_EXEC: u64 = 0x4;
pub const PROT_GROWSDOWN: u64 = 0x0100_0000;
pub const PROT_GROWSUP: u64 = 0x0200_0000;

/// The bits of mmap's flags that hold the mapping type.
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_32BIT: u64 = 0x40;
pub const MAP_GROWSDOWN: u64 = 0x0100;
pub const MAP_DENYWRITE: u64 = 0x0800;
pub const MAP_EXECUTABLE: u64 = 0x1000;
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_NONBLOCK: u64 = 0x1_0000;
pub const MAP_STACK: u64 = 0x2_0000;
pub const MAP_HUGETLB: u64 = 0x4_0000;
pub const MAP_SYNC: u64 = 0x8_0000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
pub const MAP_UNINITIALIZED: u64 = 0x400_0000;
/// mmap's flags hold log2 of a huge page size in the 6 bits from here.
pub const MAP_HUGE_SHIFT: u32 = 26;
pub const MAP_HUGE_MASK: u64 = 0x3f;
/// Huge page sizes as mmap's flags encode them (`include/uapi/asm-generic/hugetlb_encode.h`).
pub const MAP_HUGE_64KB: u64 = 16 << MAP_HUGE_SHIFT;
pub const MAP_HUGE_2MB: u64 = 21 << MAP_HUGE_SHIFT;
pub const MAP_HUGE_1GB: u64 = 30 << MAP_HUGE_SHIFT;

pub const MREMAP_MAYMOVE: u64 = 1;
pub const MREMAP_FIXED: u64 = 2;
pub const MREMAP_DONTUNMAP: u64 = 4;

pub const MLOCK_ONFAULT: u64 = 1;
pub const MCL_CURRENT: u64 = 1;
pub const MCL_FUTURE: u64 = 2;
pub const MCL_ONFAULT: u64 = 4;

pub const MADV_NORMAL: u64 = 0;
pub const MADV_RANDOM: u64 = 1;
pub const MADV_SEQUENTIAL: u64 = 2;
pub const MADV_WILLNEED: u64 = 3;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;
pub const MADV_REMOVE: u64 = 9;
pub const MADV_DONTFORK: u64 = 10;
pub const MADV_DOFORK: u64 = 11;
pub const MADV_MERGEABLE: u64 = 12;
pub const MADV_UNMERGEABLE: u64 = 13;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_DONTDUMP: u64 = 16;
pub const MADV_DODUMP: u64 = 17;
pub const MADV_WIPEONFORK: u64 = 18;
pub const MADV_KEEPONFORK: u64 = 19;
pub const MADV_COLD: u64 = 20;
pub const MADV_PAGEOUT: u64 = 21;
pub const MADV_POPULATE_READ: u64 = 22;
pub const MADV_POPULATE_WRITE: u64 = 23;
pub const MADV_DONTNEED_LOCKED: u64 = 24;
pub const MADV_COLLAPSE: u64 = 25;
pub const MADV_HWPOISON: u64 = 100;
pub const MADV_SOFT_OFFLINE: u64 = 101;
pub const MADV_GUARD_INSTALL: u64 = 102;
pub const MADV_GUARD_REMOVE: u64 = 103;

pub const SHM_RDONLY: u64 = 0o10000;
pub const SHM_RND: u64 = 0o20000;
pub const SHM_REMAP: u64 = 0o40000;
pub const SHM_EXEC: u64 = 0o100000;

/// The `ioctl` requests that change mappings: userfaultfd registration sets (and unregistration
/// clears) VMA flags, splitting and merging VMAs as mprotect does. Other ioctls are not
/// recorded. For these two the kernel side replaces the record's unused argument slots 3..6
/// with the `struct uffdio_range` (start, len) and, for UFFDIO_REGISTER, the mode, read from
/// the caller's memory.
pub const UFFDIO_REGISTER: u32 = 0xC020_AA00;
pub const UFFDIO_UNREGISTER: u32 = 0x8010_AA01;
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 2;
pub const UFFDIO_REGISTER_MODE_MINOR: u64 = 4;

/// The errno values the table's rules tell apart (a syscall returns their negation).
pub const EPERM: i64 = 1;
pub const ENOMEM: i64 = 12;
pub const EACCES: i64 = 13;
pub const EFAULT: i64 = 14;
pub const EINVAL: i64 = 22;

/// `prctl` option that names anonymous mappings; other prctl calls are not recorded.
pub const PR_SET_VMA: u64 = 0x53564d41;
/// The `PR_SET_VMA` attribute that names anonymous mappings (`include/uapi/linux/prctl.h`).
pub const PR_SET_VMA_ANON_NAME: u64 = 0;

/// x86_64 numbers of the calls that create tasks, which the fork hook tells apart.
pub const SYS_CLONE: u64 = 56;
pub const SYS_FORK: u64 = 57;
pub const SYS_VFORK: u64 = 58;
pub const SYS_CLONE3: u64 = 435;
/// The clone flag of a new thread (it shares the caller's thread group).
pub const CLONE_THREAD: u64 = 0x0001_0000;

/// `vm_flags` bits (include/linux/mm.h, 6.18): kernel-internal, not ABI, but what the exec record
/// carries of each VMA of a new image, and what the table's hidden flags stand for.
pub mod vm_flags {
    pub const VM_READ: u64 = 0x1;
    pub const VM_WRITE: u64 = 0x2;
    pub const VM_EXEC: u64 = 0x4;
    pub const VM_MAYWRITE: u64 = 0x20;
    /// `/proc/PID/maps` prints `s` for it (show_map_vma()).
    pub const VM_MAYSHARE: u64 = 0x80;
    pub const VM_GROWSDOWN: u64 = 0x100;
    pub const VM_UFFD_MISSING: u64 = 0x200;
    pub const VM_UFFD_WP: u64 = 0x1000;
    pub const VM_LOCKED: u64 = 0x2000;
    pub const VM_SEQ_READ: u64 = 0x8000;
    pub const VM_RAND_READ: u64 = 0x1_0000;
    pub const VM_DONTCOPY: u64 = 0x2_0000;
    /// Set on the kernel's special mappings (vDSO, vvar), never on the stack or `.bss`.
    pub const VM_DONTEXPAND: u64 = 0x4_0000;
    pub const VM_LOCKONFAULT: u64 = 0x8_0000;
    pub const VM_ACCOUNT: u64 = 0x10_0000;
    pub const VM_NORESERVE: u64 = 0x20_0000;
    pub const VM_WIPEONFORK: u64 = 0x200_0000;
    pub const VM_DONTDUMP: u64 = 0x400_0000;
    pub const VM_HUGEPAGE: u64 = 0x2000_0000;
    pub const VM_NOHUGEPAGE: u64 = 0x4000_0000;
    pub const VM_MERGEABLE: u64 = 0x8000_0000;
    pub const VM_UFFD_MINOR: u64 = 1 << 41;
    pub const VM_SEALED: u64 = 1 << 42;
}

/// The `PAGEMAP_SCAN` ioctl on `/proc/PID/pagemap` (Linux 6.7+, include/uapi/linux/fs.h): its
/// argument, the regions it returns and the page categories pmap-trace and its bench ask about.
pub mod pagemap_scan {
    pub const PAGE_IS_PRESENT: u64 = 1 << 3;
    pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
    pub const PAGE_IS_PFNZERO: u64 = 1 << 5;

    /// `struct pm_scan_arg`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct ScanArg {
        pub size: u64,
        pub flags: u64,
        pub start: u64,
        pub end: u64,
        pub walk_end: u64,
        pub vec: u64,
        pub vec_len: u64,
        pub max_pages: u64,
        pub category_inverted: u64,
        pub category_mask: u64,
        pub category_anyof_mask: u64,
        pub return_mask: u64,
    }

    /// `struct page_region`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Region {
        pub start: u64,
        pub end: u64,
        pub categories: u64,
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`.
    pub const PAGEMAP_SCAN: u64 =
        (3 << 30) | ((core::mem::size_of::<ScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;
}
