//! The `touch` mode: one function reserves a large anonymous region, another touches a known
//! part of it, so the virtual growth (the reservation) and the resident growth (first touches,
//! `--faults`) differ by a known factor.

unsafe extern "C" {
    fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> usize;
    fn madvise(addr: usize, len: usize, advice: i32) -> i32;
}

const PAGE: usize = 4096;
/// 64 MiB reserved, of which the first quarter is touched.
pub const RESERVED_PAGES: usize = 16384;
pub const TOUCHED_PAGES: usize = RESERVED_PAGES / 4;
const PROT_READ_WRITE: i32 = 3;
const MAP_PRIVATE_ANONYMOUS: i32 = 0x22;
/// One fault must be one page: no transparent huge pages here.
const MADV_NOHUGEPAGE: i32 = 15;

#[inline(never)]
fn reserve_large() -> usize {
    let len = RESERVED_PAGES * PAGE;
    // SAFETY: a new private anonymous mapping and advice on it.
    unsafe {
        let region = mmap(0, len, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0);
        assert_ne!(region, usize::MAX, "mmap");
        assert_eq!(madvise(region, len, MADV_NOHUGEPAGE), 0);
        region
    }
}

#[inline(never)]
fn touch_quarter(region: usize) {
    for page in 0..TOUCHED_PAGES {
        // SAFETY: inside the region just mapped, writable.
        unsafe { ((region + page * PAGE) as *mut u8).write_volatile(1) };
    }
}

pub fn run() {
    touch_quarter(reserve_large());
}
