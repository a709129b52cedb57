//! Property tests of the table against a page-granular model of the kernel: after any sequence
//! of calls (each with the result the model gives it), the table's VMAs are sorted,
//! non-overlapping, page-aligned and non-empty, and every page has the access, file and offset
//! the model has — before and after the dump settles what the table left to the kernel.
//!
//! The model keeps one record per page of a small window and no VMAs: the kernel's VMA structure
//! is what the table has to work out, so the model cannot lean on the same reasoning. Where the
//! table asks the kernel, the model answers with the longest run of pages that look alike, the
//! most merged the kernel could be.
//!
//! A second model keeps the kernel's VMAs for what decides where they end: splits and merges,
//! each VMA's anon_vma (a write gives one), `vm_pgoff`, and the flags its calls change. Its
//! calls are few (fixed mmap, munmap, mprotect, madvise, mremap growing or moving) and often
//! make the shape three-way merges decide: two written neighbours and a call bridging them. The
//! table must end with exactly its VMAs, answering the table's questions from them.
//!
//! The page model is `pages.rs`, the VMA model `vmas.rs`; `window.rs` holds what both share: the
//! window and what backs its pages.

mod pages;
mod vmas;
mod window;
