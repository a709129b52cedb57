//! Plans under way: starting one (a bridge, or a System V segment's shape), queueing its calls,
//! and making them one per step. A call a later one depends on (the region, the source, the
//! attach, the move away) ends the plan when it fails, since what follows would aim at
//! nothing.

use crate::{
    planned::Planned,
    ranges::{PAGE, Range},
    segments::SHM_REMAP,
    syscall::{ok, sys},
    walk::{PLAN_CAPACITY, Walk},
};

impl Walk {
    /// Plans a shape the kernel merges (a segment's, or a bridge) and makes its first call.
    pub fn start_plan(&mut self) {
        if self.rng.chance(25) {
            self.plan_segment();
        } else {
            self.plan_bridge();
        }
        let first = self.plan.pop_front().expect("a plan makes calls");
        self.make(first);
    }

    /// Queues a planned call, into the queue allocated at setup: the walk allocates nothing
    /// after `go`.
    pub fn push(&mut self, planned: Planned) {
        assert!(self.plan.len() < PLAN_CAPACITY, "plan too long");
        self.plan.push_back(planned);
    }

    /// Makes one planned call.
    pub fn make(&mut self, planned: Planned) {
        let private_anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        match planned {
            Planned::Region { pages } => {
                if let Some(base) = self.map_for_plan(pages * PAGE, 0, private_anon, u64::MAX, 0) {
                    self.plan_base = base;
                }
            }
            Planned::Map {
                at,
                pages,
                prot,
                kind,
                place,
                fd,
                offset,
            } => {
                let r = self.planned_range(at, pages);
                let flags = kind.flags() | place.flags();
                self.map(place.addr(r.start), r.len, prot, flags, fd, offset);
            }
            Planned::Source {
                pages,
                prot,
                kind,
                fd,
                offset,
            } => {
                let len = pages * PAGE;
                if let Some(start) = self.map_for_plan(len, prot, kind.flags(), fd, offset) {
                    self.plan_source = Range { start, len };
                }
            }
            Planned::Attach { segment } => {
                let base = self.plan_base;
                if !ok(self.attach(segment, base, SHM_REMAP)) {
                    self.plan.clear();
                }
            }
            Planned::MoveAway { at, pages, to } => {
                let source = self.planned_range(at, pages);
                let dest = self.planned_range(to, 0).start;
                if move_fixed(source, dest) {
                    self.plan_source = Range {
                        start: dest,
                        len: source.len,
                    };
                } else {
                    self.plan.clear();
                }
            }
            Planned::Unmap { at, pages } => self.unmap(self.planned_range(at, pages)),
            Planned::Protect { at, pages, prot } => {
                let r = self.planned_range(at, pages);
                sys(libc::SYS_mprotect, [r.start, r.len, prot, 0, 0, 0]);
            }
            Planned::Change { at, pages, change } => {
                change.apply(self.planned_range(at, pages), self.uffd)
            }
            Planned::Grow { pages, by } => self.grow(pages, by),
            Planned::MoveSource { to } => {
                let source = self.plan_source;
                let dest = self.planned_range(to, 0).start;
                if move_fixed(source, dest) {
                    self.loose.remove(source);
                    self.gained(Range {
                        start: dest,
                        len: source.len,
                    });
                }
            }
        }
    }

    /// `pages` pages at page `at` of the plan.
    fn planned_range(&self, at: u64, pages: u64) -> Range {
        Range {
            start: self.plan_base + at * PAGE,
            len: pages * PAGE,
        }
    }

    /// mmap placed by the kernel; its address, or `None` and the plan ends.
    fn map_for_plan(
        &mut self,
        len: u64,
        prot: u64,
        flags: u64,
        fd: u64,
        offset: u64,
    ) -> Option<u64> {
        let ret = self.map(0, len, prot, flags, fd, offset);
        if ok(ret) {
            Some(ret as u64)
        } else {
            self.plan.clear();
            None
        }
    }

    /// mremap growing the mapping of `pages` pages at the plan's base by `by` pages, in place.
    fn grow(&mut self, pages: u64, by: u64) {
        let r = self.planned_range(0, pages);
        let new_len = (pages + by) * PAGE;
        if ok(sys(libc::SYS_mremap, [r.start, r.len, new_len, 0, 0, 0])) {
            self.gained(Range {
                start: r.start,
                len: new_len,
            });
        }
    }
}

/// mremap moving `source` whole to `dest`; whether it moved.
fn move_fixed(source: Range, dest: u64) -> bool {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    ok(sys(
        libc::SYS_mremap,
        [source.start, source.len, source.len, flags, dest, 0],
    ))
}
