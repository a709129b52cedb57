//! The window both models work in, and what backs its pages.

use pmap_common::linux::{PROT_EXEC, PROT_READ, PROT_WRITE};
use pmap_trace::model::{Device, PAGE_SIZE, Perms};

pub const BASE: u64 = 0x7f00_0000_0000;

pub fn addr(page: u64) -> u64 {
    BASE + page * PAGE_SIZE
}

/// What backs a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Anon,
    /// A shmem object (shared anonymous memory), by number.
    Shm(u64),
    /// A file, by inode.
    File(u64),
    /// An attach of System V shared memory segment `segment` (by number): each attach is a
    /// file of its own.
    SysV {
        segment: u64,
        attach: u64,
    },
}

/// The id of System V segment `segment`, which /proc prints as its inode.
pub fn shmid(segment: u64) -> u64 {
    0x40 + segment
}

impl Object {
    pub fn name(self) -> Vec<u8> {
        match self {
            Object::Anon => Vec::new(),
            Object::Shm(_) => b"/dev/zero (deleted)".to_vec(),
            Object::File(inode) => format!("/f{inode}").into_bytes(),
            Object::SysV { .. } => b"/SYSV00000000 (deleted)".to_vec(),
        }
    }

    pub fn inode(self) -> u64 {
        match self {
            Object::Anon => 0,
            Object::Shm(n) => 0x1000 + n,
            Object::File(inode) => inode,
            Object::SysV { segment, .. } => shmid(segment),
        }
    }

    pub fn device(self) -> Device {
        match self {
            Object::Anon => Device::default(),
            Object::Shm(_) | Object::SysV { .. } => Device { major: 0, minor: 1 },
            Object::File(_) => Device { major: 8, minor: 1 },
        }
    }
}

pub fn perms(prot: u64, shared: bool) -> Perms {
    Perms {
        read: prot & PROT_READ != 0,
        write: prot & PROT_WRITE != 0,
        exec: prot & PROT_EXEC != 0,
        shared,
    }
}
