//! The `ownership` mode: anonymous memory created by some functions and then cut, overlaid,
//! moved and shrunk by others, through the raw C library calls (no allocator in between), so
//! that what each function must own at the end is known to the page.
//!
//! | function | call | owns at the end |
//! |---|---|---|
//! | `map_region` | `mmap` 64 pages | 64 − 16 (munmap) − 8 (anon overlay) − 4 (file overlay) = 36 |
//! | `overlay_anonymous` | `mmap(MAP_FIXED)` anonymous, 8 pages inside the region | 8 |
//! | `map_movable` | `mmap` 16 pages | 16, moved by the mremap |
//! | `grow_by_moving` | `mremap` 16 → 24 pages to a new place | the 8 new pages |
//! | `raise_break` | `sbrk` +32 pages | 32 − 16 (`lower_break`) = 16 |
//!
//! `unmap_middle` (munmap), `overlay_file` (a file `MAP_FIXED` over anonymous pages) and
//! `lower_break` only release.

use std::{fs::File, os::fd::AsRawFd as _};

unsafe extern "C" {
    fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> usize;
    fn munmap(addr: usize, len: usize) -> i32;
    fn mremap(old: usize, old_len: usize, new_len: usize, flags: i32, new: usize) -> usize;
    fn sbrk(increment: isize) -> usize;
}

pub const PAGE: usize = 4096;
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_PRIVATE: i32 = 2;
const MAP_FIXED: i32 = 0x10;
const MAP_ANONYMOUS: i32 = 0x20;
const MREMAP_MAYMOVE: i32 = 1;
const MREMAP_FIXED: i32 = 2;
const FAILED: usize = usize::MAX;

#[inline(always)]
fn checked(what: &str, address: usize) -> usize {
    assert_ne!(address, FAILED, "{what}: {}", std::io::Error::last_os_error());
    address
}

/// Inlined into each caller, so that the call is made from the function named in the table
/// (and not tail-called away from it).
#[inline(always)]
fn anonymous(addr: usize, pages: usize, flags: i32) -> usize {
    // SAFETY: a new private anonymous mapping; a MAP_FIXED one lands on pages this program
    // mapped itself and no longer uses.
    let address = unsafe {
        mmap(
            addr,
            pages * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    checked("mmap", address)
}

#[inline(never)]
fn map_region() -> usize {
    anonymous(0, 64, 0)
}

#[inline(never)]
fn unmap_middle(region: usize) {
    // SAFETY: pages 8..24 of the region, unused.
    assert_eq!(unsafe { munmap(region + 8 * PAGE, 16 * PAGE) }, 0);
}

#[inline(never)]
fn overlay_anonymous(region: usize) {
    anonymous(region + 32 * PAGE, 8, MAP_FIXED);
}

#[inline(never)]
fn overlay_file(region: usize) {
    let file = File::open(std::env::current_exe().expect("own path")).expect("open own file");
    // SAFETY: pages 48..52 of the region, unused, replaced by the file's first pages.
    let address = unsafe {
        mmap(
            region + 48 * PAGE,
            4 * PAGE,
            PROT_READ,
            MAP_PRIVATE | MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    checked("mmap file", address);
}

#[inline(never)]
fn map_movable() -> usize {
    anonymous(0, 16, 0)
}

#[inline(never)]
fn grow_by_moving(movable: usize, to: usize) {
    // SAFETY: moves the program's own unused mapping onto a range it reserved for it.
    let address = unsafe {
        mremap(
            movable,
            16 * PAGE,
            24 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            to,
        )
    };
    assert_eq!(checked("mremap", address), to);
}

#[inline(never)]
fn raise_break() {
    // SAFETY: the pages above the break are this program's; nothing allocates before the
    // break is lowered again.
    checked("sbrk up", unsafe { sbrk((32 * PAGE) as isize) });
}

#[inline(never)]
fn lower_break() {
    // SAFETY: returns half of what raise_break took.
    checked("sbrk down", unsafe { sbrk(-((16 * PAGE) as isize)) });
}

/// Runs every step of the table above.
pub fn run() {
    raise_break();
    lower_break();
    let region = map_region();
    unmap_middle(region);
    overlay_anonymous(region);
    overlay_file(region);
    let movable = map_movable();
    // A place for the move that nothing else uses: reserved, then released just before.
    let destination = anonymous(0, 24, 0);
    // SAFETY: the reservation just made.
    assert_eq!(unsafe { munmap(destination, 24 * PAGE) }, 0);
    grow_by_moving(movable, destination);
}
