//! What the table's tests share: tables written by hand, calls made from pages, and oracles
//! standing in for the kernel's answers. Addresses are in pages from 0x10000; the expected
//! lines are `start-end perms offset inode name`, offsets and inodes in hex.

use crate::decode::Call;
use crate::model::{Device, Mapping, PAGE_SIZE, Perms};
use crate::table::vma::Vma;
use crate::table::{AddressSpace, NoOracle, VmaOracle};
use pmap_common::linux::{
    EFAULT, EINVAL, ENOMEM, EPERM, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};

pub(super) const P: u64 = PAGE_SIZE;
pub(super) const NONE: u64 = 0;
pub(super) const R: u64 = PROT_READ;
pub(super) const RW: u64 = PROT_READ | PROT_WRITE;
pub(super) const MAP_SHARED: u64 = 0x01;
pub(super) const MREMAP_MAYMOVE: u64 = 1;
pub(super) const PRIVATE_ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
pub(super) const SHARED_ANON: u64 = MAP_SHARED | MAP_ANONYMOUS;
pub(super) const OK: i64 = 0;
pub(super) const EINVAL_RET: i64 = -EINVAL;
pub(super) const ENOMEM_RET: i64 = -ENOMEM;
pub(super) const EPERM_RET: i64 = -EPERM;

/// Address of page `n`.
pub(super) fn at(n: u64) -> u64 {
    0x10000 + n * P
}

pub(super) fn perms(text: &str) -> Perms {
    Perms::parse(text.as_bytes()).expect("a maps permission word")
}

pub(super) fn mapping(pages: (u64, u64), p: &str, offset: u64, inode: u64, name: &str) -> Mapping {
    Mapping {
        start: at(pages.0),
        end: at(pages.1),
        perms: perms(p),
        offset,
        device: Device {
            major: if inode == 0 { 0 } else { 8 },
            minor: 0,
        },
        inode,
        name: name.as_bytes().to_vec(),
    }
}

/// The kernel as a test states it: its VMAs now. Asked only where the table must ask.
#[derive(Default)]
pub(super) struct Kernel(pub(super) Vec<Mapping>);

impl VmaOracle for Kernel {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
        self.0
            .iter()
            .find(|m| m.start <= addr && addr < m.end)
            .cloned()
    }
}

pub(super) fn lines(space: &AddressSpace) -> Vec<String> {
    space
        .mappings()
        .map(|m| {
            let p = m.perms;
            let flag = |on: bool, c: char| if on { c } else { '-' };
            format!(
                "{:x}-{:x} {}{}{}{} {:x} {:x} {}",
                m.start,
                m.end,
                flag(p.read, 'r'),
                flag(p.write, 'w'),
                flag(p.exec, 'x'),
                if p.shared { 's' } else { 'p' },
                m.offset,
                m.inode,
                String::from_utf8_lossy(&m.name)
            )
        })
        .collect()
}

/// Expected lines, from `(first page, end page, perms, offset, inode, name)`.
pub(super) fn table(rows: &[(u64, u64, &str, u64, u64, &str)]) -> Vec<String> {
    rows.iter()
        .map(|&(s, e, p, off, ino, name)| {
            format!("{:x}-{:x} {p} {off:x} {ino:x} {name}", at(s), at(e))
        })
        .collect()
}

pub(super) fn mmap(addr: u64, pages: u64, prot: u64, flags: u64, fd: i32, offset: u64) -> Call {
    Call::Mmap {
        addr,
        len: pages * P,
        prot,
        flags,
        fd,
        offset,
    }
}

pub(super) fn anon(addr: u64, pages: u64, prot: u64) -> Call {
    mmap(addr, pages, prot, PRIVATE_ANON | MAP_FIXED, -1, 0)
}

pub(super) fn mprotect(addr: u64, pages: u64, prot: u64) -> Call {
    Call::Mprotect {
        addr,
        len: pages * P,
        prot,
    }
}

pub(super) fn munmap(addr: u64, pages: u64) -> Call {
    Call::Munmap {
        addr,
        len: pages * P,
    }
}

pub(super) fn mremap(addr: u64, old: u64, new: u64, flags: u64, new_addr: u64) -> Call {
    Call::Mremap {
        old_addr: addr,
        old_len: old * P,
        new_len: new * P,
        flags,
        new_addr,
    }
}

pub(super) fn mlock2(addr: u64, pages: u64, flags: u64) -> Call {
    Call::Mlock2 {
        addr,
        len: pages * P,
        flags,
    }
}

/// An empty table: everything in it will have been made by traced calls.
pub(super) fn empty() -> AddressSpace {
    AddressSpace::from_mappings(Vec::new(), 0)
}

/// Applies calls that need no answer from the kernel, each with its result.
pub(super) fn run(space: &mut AddressSpace, calls: &[(Call, i64)]) {
    for (call, ret) in calls {
        space.apply(call, *ret, &mut NoOracle);
    }
}

pub(super) fn vma(space: &AddressSpace, page: u64) -> &Vma {
    space.vma_at(at(page)).expect("a VMA there")
}

// userfaultfd

/// A table holding one shared anonymous mapping of `pages` pages at page 0 (shared memory
/// never has an anon_vma, so its merges need no kernel answer).
pub(super) fn shared_zero_pages(pages: u64) -> AddressSpace {
    let mut s = empty();
    let mut kernel = Kernel(vec![mapping(
        (0, pages),
        "rw-s",
        0,
        0x9,
        "/dev/zero (deleted)",
    )]);
    s.apply(
        &mmap(0, pages, RW, SHARED_ANON, -1, 0),
        at(0) as i64,
        &mut kernel,
    );
    s
}

pub(super) fn uffd_register(page: u64, pages: u64, mode: u64) -> Call {
    Call::UffdRegister {
        fd: 3,
        start: at(page),
        len: pages * P,
        mode,
    }
}
pub(super) const UFFD_WP: u64 = 2;

pub(super) const EFAULT_RET: i64 = -EFAULT;
