//! The calls that make, move, resize and unmap memory, or change its protection: mmap, munmap,
//! mprotect (and pkey_mprotect), mremap and brk. Each records what it gained or gave back, so
//! the walk aims only at memory it owns, and writes the first page of what a program would
//! write (see [`write_page`]).

use crate::{
    mapping::{Kind, Place},
    ranges::{PAGE, Range},
    syscall::{ok, sys},
    walk::{ARENA_PAGES, FILE_PAGES, HEAP_PAGES, RECENT_CAPACITY, Walk},
};

impl Walk {
    pub fn mmap(&mut self) {
        let kind = self.rng.weighted(&[
            (50, Kind::PrivateAnon),
            (10, Kind::SharedAnon),
            (25, Kind::PrivateFile),
            (15, Kind::SharedFile),
        ]);
        let place = self.rng.weighted(&[
            (45, Place::Fixed),
            (15, Place::NoReplace),
            (20, Place::Hint),
            (20, Place::Anywhere),
        ]);
        let r = self.target();
        let prot = self.prot();
        let (fd, offset) = match kind {
            Kind::PrivateFile | Kind::SharedFile => {
                let fd = self.files[self.rng.below(3) as usize];
                (fd, self.rng.below(FILE_PAGES + 8) * PAGE)
            }
            _ => (u64::MAX, 0),
        };
        let mut flags = kind.flags() | place.flags();
        for (percent, flag) in [
            (10, libc::MAP_NORESERVE),
            (10, libc::MAP_POPULATE),
            (3, libc::MAP_LOCKED),
            (5, libc::MAP_STACK),
            // Private anonymous memory only; EINVAL otherwise.
            (2, libc::MAP_GROWSDOWN),
        ] {
            if self.rng.chance(percent) {
                flags |= flag as u64;
            }
        }
        self.map(place.addr(r.start), r.len, prot, flags, fd, offset);
    }

    /// mmap, recording what it gained and writing the first page of a writable private
    /// mapping right after, as a program does.
    pub fn map(&mut self, addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> i64 {
        let ret = sys(libc::SYS_mmap, [addr, len, prot, flags, fd, offset]);
        if !ok(ret) {
            return ret;
        }
        self.gained(Range {
            start: ret as u64,
            len,
        });
        let private = flags & libc::MAP_TYPE as u64 == libc::MAP_PRIVATE as u64;
        let anonymous = flags & libc::MAP_ANONYMOUS as u64 != 0;
        // A file page past the end of the file would be SIGBUS: the files never change size.
        let backed = anonymous || offset < FILE_PAGES * PAGE;
        if private && prot & libc::PROT_WRITE as u64 != 0 && backed {
            write_page(ret as u64);
        }
        ret
    }

    pub fn munmap(&mut self) {
        let r = self.target();
        self.unmap(r);
    }

    /// munmap of `r`, forgotten once it is gone.
    pub fn unmap(&mut self, r: Range) {
        if ok(sys(libc::SYS_munmap, [r.start, r.len, 0, 0, 0, 0])) {
            self.loose.remove(r);
        }
    }

    pub fn mprotect(&mut self) {
        let r = self.target();
        let prot = self.prot();
        // pkey_mprotect with pkey -1 is mprotect; the table must treat both alike.
        if self.rng.chance(20) {
            sys(
                libc::SYS_pkey_mprotect,
                [r.start, r.len, prot, u64::MAX, 0, 0],
            );
        } else {
            sys(libc::SYS_mprotect, [r.start, r.len, prot, 0, 0, 0]);
        }
    }

    pub fn mremap(&mut self) {
        let source = if self.rng.chance(60) {
            self.recent[self.rng.below(RECENT_CAPACITY as u64) as usize]
        } else {
            self.target()
        };
        if source.len == 0 {
            // An empty recent slot: still one call, which the kernel rejects.
            sys(libc::SYS_mremap, [source.start, 0, PAGE, 0, 0, 0]);
            return;
        }
        let old_pages = source.len / PAGE;
        let new_len = match self.rng.below(3) {
            0 => (1 + self.rng.below(old_pages)) * PAGE,
            1 => source.len,
            _ => source.len + (1 + self.rng.below(8)) * PAGE,
        };
        let (maymove, fixed, dontunmap) = (
            libc::MREMAP_MAYMOVE as u64,
            libc::MREMAP_FIXED as u64,
            libc::MREMAP_DONTUNMAP as u64,
        );
        let flags = self.rng.weighted(&[
            (30, 0),
            (35, maymove),
            (25, maymove | fixed),
            (5, maymove | dontunmap),
            (5, maymove | dontunmap | fixed),
        ]);
        // DONTUNMAP moves without resizing.
        let new_len = if flags & dontunmap != 0 {
            source.len
        } else {
            new_len
        };
        // A fixed destination lies wholly inside the arena; a move too long for it lets the
        // kernel choose.
        let pages = new_len / PAGE;
        let flags = if pages > ARENA_PAGES {
            flags & !fixed
        } else {
            flags
        };
        let dest = if flags & fixed != 0 {
            self.arena.start + self.rng.below(ARENA_PAGES - pages + 1) * PAGE
        } else {
            0
        };
        let ret = sys(
            libc::SYS_mremap,
            [source.start, source.len, new_len, flags, dest, 0],
        );
        if !ok(ret) {
            return;
        }
        let new_addr = ret as u64;
        if new_addr == source.start {
            if new_len < source.len {
                self.loose.remove(Range {
                    start: source.start + new_len,
                    len: source.len - new_len,
                });
            }
        } else if flags & dontunmap == 0 {
            self.loose.remove(source);
        }
        self.gained(Range {
            start: new_addr,
            len: new_len,
        });
    }

    pub fn brk(&mut self) {
        let arg = match self.rng.below(10) {
            // A query, and a request below the heap's start that the kernel refuses.
            0 => 0,
            1 => 1,
            _ => self.brk_floor + self.rng.below(HEAP_PAGES * PAGE + 1),
        };
        let ret = sys(libc::SYS_brk, [arg, 0, 0, 0, 0, 0]) as u64;
        // The heap's new pages are a writable private mapping too: write the first.
        let (old_end, new_end) = (page_up(self.brk_now), page_up(ret));
        if new_end > old_end {
            write_page(old_end);
        }
        self.brk_now = ret;
    }
}

fn page_up(addr: u64) -> u64 {
    addr.div_ceil(PAGE) * PAGE
}

/// Writes a byte at `addr`: a private page gets its own copy, and its VMA an anon_vma, which
/// decides whether a range later bridging two mappings joins both.
fn write_page(addr: u64) {
    // SAFETY: `addr` is the first page of a writable mapping the walk just made (or of the
    // heap pages it just added), backed by memory or by its own file within the file's size;
    // nothing else uses it.
    unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
}
