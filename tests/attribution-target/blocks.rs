//! What each grower asks malloc for, shared by the program and its shared library.

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
}

/// Above glibc's mmap threshold (128 KiB): each block is its own anonymous mmap.
pub const LARGE_BLOCK: usize = 1 << 20;
pub const LARGE_COUNT: usize = 24;
/// Well below the threshold: carved from the heap, which grows by brk. With malloc's 8-byte
/// header this makes 2 KiB chunks, so the heap grows by about the bytes asked for.
pub const SMALL_BLOCK: usize = 2040;
pub const SMALL_COUNT: usize = 4096;
/// Below the threshold too: the heap again, from another function.
pub const MEDIUM_BLOCK: usize = (64 << 10) - 8;
pub const MEDIUM_COUNT: usize = 96;

/// Allocates `count` blocks of `size` and writes to each, so that neither the compiler nor
/// the allocator can skip them. Inlined into each caller: the caller is the call site.
#[inline(always)]
pub fn allocate(size: usize, count: usize) {
    for _ in 0..count {
        // SAFETY: malloc has no preconditions; the block is written within its size and kept.
        unsafe {
            let block = malloc(size);
            assert!(!block.is_null(), "out of memory");
            block.write_volatile(1);
            std::hint::black_box(block);
        }
    }
}
