//! Exact VMA look-up by address through the `PROCMAP_QUERY` ioctl on `/proc/PID/maps`
//! (Linux 6.11+). The table asks it only what events cannot tell: a new file mapping's identity,
//! and whether the kernel merged two neighbours whose hidden state (anon_vma) is unknown.

use std::{fs::File, io, os::fd::AsRawFd};

use crate::{
    model::{Device, Mapping, Perms},
    table::VmaOracle,
};

#[repr(C)]
#[derive(Default)]
struct RawQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

const PROCMAP_QUERY: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<RawQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;
const VMA_READABLE: u64 = 0x01;
const VMA_WRITABLE: u64 = 0x02;
const VMA_EXECUTABLE: u64 = 0x04;
const VMA_SHARED: u64 = 0x08;
const COVERING_OR_NEXT_VMA: u64 = 0x10;
/// Longest name the kernel returns: a path (`PATH_MAX`) plus " (deleted)".
const NAME_CAPACITY: usize = 4096 + 16;

/// An open `/proc/PID/maps` to query. Opened once per traced process: the ioctl then works
/// without re-reading the file.
pub struct VmaQuery {
    maps: File,
    name: Vec<u8>,
    /// The process sees the System V IPC objects this one sees (one IPC namespace), so a
    /// segment id means the same segment to both.
    same_ipc: bool,
}

impl VmaQuery {
    pub fn open(pid: i32) -> io::Result<Self> {
        let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok();
        let theirs = namespace(&pid.to_string());
        Ok(VmaQuery {
            maps: File::open(format!("/proc/{pid}/maps"))?,
            name: vec![0; NAME_CAPACITY],
            same_ipc: theirs.is_some() && theirs == namespace("self"),
        })
    }

    /// The VMA containing `addr` now, if any.
    pub fn covering(&mut self, addr: u64) -> io::Result<Option<Mapping>> {
        self.query(addr, 0)
    }

    /// The VMA containing `addr`, or else the first one above it.
    pub fn covering_or_next(&mut self, addr: u64) -> io::Result<Option<Mapping>> {
        self.query(addr, COVERING_OR_NEXT_VMA)
    }

    fn query(&mut self, addr: u64, flags: u64) -> io::Result<Option<Mapping>> {
        let mut raw = RawQuery {
            size: std::mem::size_of::<RawQuery>() as u64,
            query_flags: flags,
            query_addr: addr,
            vma_name_size: self.name.len() as u32,
            vma_name_addr: self.name.as_mut_ptr() as u64,
            ..RawQuery::default()
        };
        // SAFETY: `raw` is a correctly sized procmap_query whose name buffer outlives the call.
        let rc = unsafe { libc::ioctl(self.maps.as_raw_fd(), PROCMAP_QUERY, &mut raw) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                // The process has exited or execed away from this mm.
                Some(libc::ESRCH) => Ok(None),
                _ => Err(err),
            };
        }
        // The size includes the terminating NUL when a name was returned.
        let name_len = (raw.vma_name_size as usize).saturating_sub(1);
        Ok(Some(Mapping {
            start: raw.vma_start,
            end: raw.vma_end,
            perms: Perms {
                read: raw.vma_flags & VMA_READABLE != 0,
                write: raw.vma_flags & VMA_WRITABLE != 0,
                exec: raw.vma_flags & VMA_EXECUTABLE != 0,
                shared: raw.vma_flags & VMA_SHARED != 0,
            },
            offset: raw.vma_offset,
            device: Device {
                major: raw.dev_major,
                minor: raw.dev_minor,
            },
            inode: raw.inode,
            name: escape_like_proc_maps(&self.name[..name_len]),
        }))
    }
}

impl VmaOracle for VmaQuery {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
        // A failed query (the process is gone) leaves the decision to the table's defaults.
        self.covering(addr).ok().flatten()
    }

    /// `shmctl(IPC_STAT)`, in the process's IPC namespace only (an id names another
    /// segment, or none, elsewhere). A segment removed (IPC_RMID) stays readable while
    /// attached; one gone since the call is no answer.
    fn shm_size(&mut self, shmid: i32) -> Option<u64> {
        if !self.same_ipc {
            return None;
        }
        // SAFETY: an all-zero shmid_ds is valid, and IPC_STAT only writes into it.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: `ds` is a shmid_ds the call may fill.
        let rc = unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) };
        (rc == 0).then_some(ds.shm_segsz as u64)
    }
}

/// `/proc/PID/maps` prints a newline in a path as `\012`; the ioctl returns the raw bytes.
fn escape_like_proc_maps(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b == b'\n' {
            out.extend_from_slice(b"\\012");
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_stack_and_a_fresh_anonymous_mapping() {
        let mut query = VmaQuery::open(std::process::id() as i32).unwrap();
        let local = 0u64;
        let stack_vma = query
            .covering(&local as *const u64 as u64)
            .unwrap()
            .unwrap();
        assert!(stack_vma.start <= &local as *const u64 as u64);
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * 4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let vma = query.covering(addr as u64).unwrap().unwrap();
        assert!(vma.start <= addr as u64 && vma.end >= addr as u64 + 3 * 4096);
        assert_eq!(
            vma.perms,
            Perms {
                read: true,
                write: false,
                exec: false,
                shared: false
            }
        );
        assert_eq!(vma.inode, 0);
        // SAFETY: unmaps exactly what was mapped above.
        unsafe { libc::munmap(addr, 3 * 4096) };
        let after = query.covering(addr as u64).unwrap();
        assert!(after.is_none_or(|m| m.start > addr as u64 || m.end <= addr as u64));
    }

    #[test]
    fn reports_file_identity_of_own_executable() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mut query = VmaQuery::open(std::process::id() as i32).unwrap();
        let code = finds_own_stack_and_a_fresh_anonymous_mapping as *const () as u64;
        let vma = query.covering(code).unwrap().unwrap();
        assert_eq!(vma.name, exe.as_os_str().as_encoded_bytes());
        assert!(vma.perms.exec);
        assert_ne!(vma.inode, 0);
    }

    #[test]
    fn escapes_newlines_as_proc_does() {
        assert_eq!(escape_like_proc_maps(b"/tmp/a\nb"), b"/tmp/a\\012b");
    }
}
