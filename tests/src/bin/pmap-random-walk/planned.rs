//! One call of a plan, as data: a plan ([`plan_bridge`](crate::walk::Walk::plan_bridge),
//! [`plan_segment`](crate::walk::Walk::plan_segment)) is chosen whole in one step and queued,
//! then made one call per step like any other, so each step is still exactly one traced
//! syscall.

use crate::{
    change::Change,
    mapping::{Kind, Place},
};

/// One call of a plan; pages count from the plan's base.
#[derive(Clone, Copy)]
pub enum Planned {
    /// mmap of `pages` inaccessible pages placed by the kernel: the plan's base.
    Region {
        pages: u64,
    },
    /// mmap of `pages` pages meant for page `at` (placed as `place` says).
    Map {
        at: u64,
        pages: u64,
        prot: u64,
        kind: Kind,
        place: Place,
        fd: u64,
        offset: u64,
    },
    /// mmap placed by the kernel of the mapping the plan then moves.
    Source {
        pages: u64,
        prot: u64,
        kind: Kind,
        fd: u64,
        offset: u64,
    },
    Unmap {
        at: u64,
        pages: u64,
    },
    Protect {
        at: u64,
        pages: u64,
        prot: u64,
    },
    Change {
        at: u64,
        pages: u64,
        change: Change,
    },
    /// mremap growing the mapping of `pages` pages at the base by `by` pages, in place.
    Grow {
        pages: u64,
        by: u64,
    },
    /// mremap moving the plan's source to page `to`.
    MoveSource {
        to: u64,
    },
    /// shmat of segment `segment` at the plan's base, replacing what is there.
    Attach {
        segment: usize,
    },
    /// mremap moving `pages` pages at page `at` to page `to`: the plan's source.
    MoveAway {
        at: u64,
        pages: u64,
        to: u64,
    },
}
