//! Which pages of a range hold memory now: the `PAGEMAP_SCAN` ioctl on `/proc/PID/pagemap`
//! (Linux 6.7+), which walks the page tables in the kernel and returns runs of pages by
//! category, or on an older kernel the file's 8-byte entry per page.
//!
//! The file is opened once per address space: it stays bound to the `mm` it was opened on
//! (`proc_mem_open` in fs/proc/base.c), so a PID reused by another process is never read, and
//! once the process has exited (or exec'd) every read fails rather than describing other
//! memory.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd, unix::fs::FileExt},
};

use crate::model::PAGE_SIZE;
use pmap_common::linux::pagemap_scan::{
    PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGEMAP_SCAN, Region, ScanArg,
};

/// What backs a run of pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// In memory: counted in the process's RSS. The shared zero page a read of untouched
    /// memory maps is not (smaps leaves it out of `Rss` too: `vm_normal_page` is null for it).
    Resident,
    /// Swapped out (or a swap-cache entry): memory, but not in RAM.
    Swapped,
}

/// Pages `[start, end)` are all in `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    pub start: u64,
    pub end: u64,
    pub state: PageState,
}

/// How the pages are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `PAGEMAP_SCAN`: runs of pages, the zero page told apart.
    Scan,
    /// `pread` of the 8-byte entries (kernels before 6.7): the zero page reads as present.
    Read,
}

/// Regions one ioctl returns at most; a range with more takes several.
const REGIONS: usize = 1024;
/// Address space one ioctl walks at most. The walk holds the process's mmap lock for reading
/// (`do_pagemap_scan` in fs/proc/task_mmu.c), which its `mmap`, `munmap` and `brk` wait for:
/// 256 MiB of 4 KiB pages is a few milliseconds (6 GiB took 100 ms in one walk, see
/// BENCHMARKS.md).
const SCAN_STEP: u64 = 256 << 20;
/// Entries one `pread` of the file reads (512 KiB, 256 MiB of address space).
const ENTRIES: usize = 64 * 1024;
/// Entry bits (Documentation/admin-guide/mm/pagemap.rst).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;

/// An open `/proc/PID/pagemap`.
pub struct Pagemap {
    file: File,
    method: Method,
    regions: Vec<Region>,
}

impl Pagemap {
    /// Opens `pid`'s pagemap, to be read with `PAGEMAP_SCAN` while the kernel has it.
    pub fn open(pid: i32) -> io::Result<Pagemap> {
        Ok(Pagemap {
            file: File::open(format!("/proc/{pid}/pagemap"))?,
            method: Method::Scan,
            regions: vec![Region::default(); REGIONS],
        })
    }

    /// The same file, read with `method` (the bench and the tests compare them).
    pub fn with_method(mut self, method: Method) -> Pagemap {
        self.method = method;
        self
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// Appends to `out` the runs of resident and of swapped pages in `[start, end)` (page
    /// aligned), in address order; pages holding no memory (never touched, given back, the
    /// zero page) are in no run.
    pub fn runs(&mut self, start: u64, end: u64, out: &mut Vec<PageRun>) -> io::Result<()> {
        if self.method == Method::Scan {
            match self.scan(start, end, out) {
                // A kernel without the ioctl: the file's entries say the same, slower.
                Err(err) if matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) => {
                    self.method = Method::Read;
                }
                done => return done,
            }
        }
        self.read(start, end, out)
    }

    fn scan(&mut self, start: u64, end: u64, out: &mut Vec<PageRun>) -> io::Result<()> {
        let mut from = start;
        while from < end {
            let to = end.min(from.saturating_add(SCAN_STEP));
            let mut arg = ScanArg {
                size: std::mem::size_of::<ScanArg>() as u64,
                start: from,
                end: to,
                vec: self.regions.as_mut_ptr() as u64,
                vec_len: self.regions.len() as u64,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO,
                ..ScanArg::default()
            };
            // SAFETY: a pm_scan_arg of the size it gives, whose output array of vec_len
            // regions outlives the call.
            let found = unsafe { libc::ioctl(self.file.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
            if found < 0 {
                return Err(io::Error::last_os_error());
            }
            for region in &self.regions[..found as usize] {
                let state = if region.categories & PAGE_IS_SWAPPED != 0 {
                    PageState::Swapped
                } else if region.categories & PAGE_IS_PFNZERO != 0 {
                    continue;
                } else {
                    PageState::Resident
                };
                // Clipped to the range asked: a huge page may be reported whole, and the next
                // range would count its pages again.
                let (start, end) = (region.start.max(from), region.end.min(to));
                if start < end {
                    push_run(out, start, end, state);
                }
            }
            // The walk stops early when the regions are all used (walk_end says where).
            if arg.walk_end <= from {
                break;
            }
            from = arg.walk_end.min(to);
        }
        Ok(())
    }

    fn read(&mut self, start: u64, end: u64, out: &mut Vec<PageRun>) -> io::Result<()> {
        let mut entries = vec![0u8; ENTRIES * 8];
        let mut page = start / PAGE_SIZE;
        let last = end.div_ceil(PAGE_SIZE);
        while page < last {
            let count = ((last - page) as usize).min(ENTRIES);
            let bytes = &mut entries[..count * 8];
            self.file.read_exact_at(bytes, page * 8)?;
            for (i, entry) in bytes.chunks_exact(8).enumerate() {
                let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
                let state = if entry & PM_PRESENT != 0 {
                    PageState::Resident
                } else if entry & PM_SWAP != 0 {
                    PageState::Swapped
                } else {
                    continue;
                };
                let at = (page + i as u64) * PAGE_SIZE;
                push_run(out, at, at + PAGE_SIZE, state);
            }
            page += count as u64;
        }
        Ok(())
    }
}

/// Appends a run, joined to the previous one when it continues it.
fn push_run(out: &mut Vec<PageRun>, start: u64, end: u64, state: PageState) {
    match out.last_mut() {
        Some(last) if last.end == start && last.state == state => last.end = end,
        _ => out.push(PageRun { start, end, state }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::fixtures::Anon;

    fn runs(method: Method, start: u64, end: u64) -> Vec<(u64, u64)> {
        let pid = std::process::id() as i32;
        let mut pagemap = Pagemap::open(pid).unwrap().with_method(method);
        let mut out = Vec::new();
        pagemap.runs(start, end, &mut out).unwrap();
        assert_eq!(pagemap.method(), method, "this kernel has PAGEMAP_SCAN");
        out.iter()
            .map(|run| {
                assert_eq!(run.state, PageState::Resident);
                (run.start, run.end)
            })
            .collect()
    }

    #[test]
    fn both_methods_find_the_pages_written_and_only_those() {
        let anon = Anon::new(16, libc::PROT_READ | libc::PROT_WRITE);
        for n in [0, 1, 2, 7, 15] {
            anon.write(n);
        }
        let want = vec![
            (anon.page(0), anon.page(3)),
            (anon.page(7), anon.page(8)),
            (anon.page(15), anon.page(16)),
        ];
        for method in [Method::Scan, Method::Read] {
            assert_eq!(
                runs(method, anon.page(0), anon.page(16)),
                want,
                "{method:?}"
            );
        }
        // A range inside the mapping is clipped to it.
        assert_eq!(
            runs(Method::Scan, anon.page(1), anon.page(8)),
            [(anon.page(1), anon.page(3)), (anon.page(7), anon.page(8))]
        );
        // Given back, a page holds nothing.
        // SAFETY: inside the mapping.
        unsafe {
            libc::madvise(
                anon.page(0) as *mut _,
                PAGE_SIZE as usize,
                libc::MADV_DONTNEED,
            )
        };
        assert_eq!(
            runs(Method::Scan, anon.page(0), anon.page(4))[0],
            (anon.page(1), anon.page(3))
        );
    }

    #[test]
    fn the_scan_leaves_out_the_zero_page_a_read_maps() {
        let anon = Anon::new(4, libc::PROT_READ | libc::PROT_WRITE);
        assert_eq!(anon.read(1), 0);
        anon.write(2);
        assert_eq!(
            runs(Method::Scan, anon.page(0), anon.page(4)),
            [(anon.page(2), anon.page(3))]
        );
        // The file's entries cannot tell the zero page from memory.
        assert_eq!(
            runs(Method::Read, anon.page(0), anon.page(4)),
            [(anon.page(1), anon.page(3))]
        );
    }

    #[test]
    fn a_range_longer_than_one_walk_is_read_in_steps_and_joined() {
        let pages = (SCAN_STEP / PAGE_SIZE) as usize + 8;
        let anon = Anon::new(pages, libc::PROT_READ | libc::PROT_WRITE);
        for n in 0..pages {
            anon.write(n);
        }
        assert_eq!(
            runs(Method::Scan, anon.page(0), anon.end()),
            [(anon.page(0), anon.end())]
        );
    }

    #[test]
    fn a_range_with_more_runs_than_one_call_returns_is_read_whole() {
        let pages = 3 * REGIONS;
        let anon = Anon::new(pages, libc::PROT_READ | libc::PROT_WRITE);
        // Every other page: one run per written page.
        for n in (0..pages).step_by(2) {
            anon.write(n);
        }
        let found = runs(Method::Scan, anon.page(0), anon.page(pages));
        assert_eq!(found.len(), pages / 2);
        assert_eq!(found, runs(Method::Read, anon.page(0), anon.page(pages)));
    }
}
