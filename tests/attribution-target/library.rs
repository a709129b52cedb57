//! The shared library of the `library` build of the attribution target
//! (`libattribution_grower.so`): one of the three growers lives here, so its call site is
//! inside a shared object loaded by the dynamic loader at start, as in most programs.

// The program's other block sizes are not used here.
#[allow(dead_code)]
#[path = "blocks.rs"]
mod blocks;

/// Grows the heap as the program's `grow_with_medium_blocks` does.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn attribution_library_grow_medium() {
    blocks::allocate(blocks::MEDIUM_BLOCK, blocks::MEDIUM_COUNT);
}
