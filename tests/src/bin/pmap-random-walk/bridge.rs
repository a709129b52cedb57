//! Bridge plans: the shape the kernel merges three ways. Two written neighbours (or pieces of
//! one mapping) hold different anon_vmas, and a call bridging them decides whether the range
//! joins one side, both or neither (`vma_merge_new_range()`, `vma_merge_existing_range()`,
//! `vma_merge_extend()`, `vma_merge_copied_range()` in the kernel). Random calls rarely make
//! this shape, so the walk makes it on purpose.

use crate::{
    change::Change,
    mapping::{Kind, Place},
    planned::Planned,
    ranges::PAGE,
    walk::{ARENA_PAGES, FILE_PAGES, MAX_SEALS, Walk},
};

/// The call that bridges the neighbours.
#[derive(Clone, Copy)]
enum Bridge {
    /// A new mapping filling the hole: fixed, with it as a hint, or without a hint.
    FillFixed,
    FillHint,
    FillAnywhere,
    /// A fixed mapping in the middle of one mapping, equal to it.
    Punch,
    /// The range between made equal to both sides by mprotect.
    Protect,
    /// ... by undoing a change of hidden state (madvise, mlock, userfaultfd).
    Change,
    /// The same inside one mapping: split out, then restored.
    SplitRestore,
    /// mremap growing the left neighbour up to the right one.
    Grow,
    /// mremap moving a mapping into the hole.
    Move,
    /// mseal making the range equal to sealed neighbours.
    Seal,
}

/// A bridge plan's mappings: pages of the left neighbour, the hole (or middle) and the right
/// neighbour, and what all three are.
struct Layout {
    a: u64,
    h: u64,
    b: u64,
    kind: Kind,
    prot: u64,
    fd: u64,
    /// The file page at the plan's base: file pages are contiguous across the three.
    first_file_page: Option<u64>,
}

impl Layout {
    fn total(&self) -> u64 {
        self.a + self.h + self.b
    }

    fn offset(&self, at: u64) -> u64 {
        self.first_file_page.map_or(0, |first| (first + at) * PAGE)
    }

    /// An mmap of `pages` pages meant for page `at`.
    fn map(&self, at: u64, pages: u64, prot: u64, place: Place) -> Planned {
        Planned::Map {
            at,
            pages,
            prot,
            kind: self.kind,
            place,
            fd: self.fd,
            offset: self.offset(at),
        }
    }

    /// A change of hidden state over the middle.
    fn middle(&self, change: Change) -> Planned {
        Planned::Change {
            at: self.a,
            pages: self.h,
            change,
        }
    }
}

impl Walk {
    /// Plans a shape the kernel merges three ways: two written neighbours (or pieces of one
    /// mapping) and a call that bridges them, each step one call (see [`Planned`]). Its pages
    /// are a few, in the arena, or for a new mapping placed without a hint in a region the
    /// kernel places, whose hole is then likely the highest that fits.
    pub fn plan_bridge(&mut self) {
        let bridge = self.choose_bridge();
        let layout = self.bridge_layout();
        let changes = Change::pair(&mut self.rng);
        let in_arena = !matches!(bridge, Bridge::FillAnywhere);
        if in_arena {
            let room = ARENA_PAGES - layout.total() + 1;
            self.plan_base = self.arena.start + self.rng.below(room) * PAGE;
        }
        if let Bridge::Seal = bridge {
            self.seals += 3;
        }
        if !in_arena {
            self.push(Planned::Region {
                pages: layout.total(),
            });
        }
        let (a, h, b, prot) = (layout.a, layout.h, layout.b, layout.prot);
        match bridge {
            Bridge::Punch | Bridge::SplitRestore => {
                self.push(layout.map(0, layout.total(), prot, Place::Fixed))
            }
            _ => {
                self.push(layout.map(0, a, prot, Place::Fixed));
                self.push(layout.map(a + h, b, prot, Place::Fixed));
            }
        }
        self.push_bridging(bridge, &layout, changes);
    }

    fn choose_bridge(&mut self) -> Bridge {
        let bridge = self.rng.weighted(&[
            (16, Bridge::FillFixed),
            (8, Bridge::FillHint),
            (6, Bridge::FillAnywhere),
            (8, Bridge::Punch),
            (12, Bridge::Protect),
            (16, Bridge::Change),
            (8, Bridge::SplitRestore),
            (10, Bridge::Grow),
            (12, Bridge::Move),
            (4, Bridge::Seal),
        ]);
        match bridge {
            Bridge::Seal if self.seals + 3 > MAX_SEALS => Bridge::Change,
            other => other,
        }
    }

    fn bridge_layout(&mut self) -> Layout {
        let (a, h, b) = (
            1 + self.rng.below(3),
            1 + self.rng.below(2),
            1 + self.rng.below(3),
        );
        let kind = self.rng.weighted(&[
            (65, Kind::PrivateAnon),
            (20, Kind::PrivateFile),
            (15, Kind::SharedFile),
        ]);
        let (r, w, x) = (
            libc::PROT_READ as u64,
            libc::PROT_WRITE as u64,
            libc::PROT_EXEC as u64,
        );
        let prot = self
            .rng
            .weighted(&[(70, r | w), (15, r), (10, r | w | x), (5, 0)]);
        let fd = match kind {
            Kind::PrivateFile => self.files[self.rng.below(3) as usize],
            // Of the two files opened for writing, so that writable shared mappings succeed.
            Kind::SharedFile => self.files[self.rng.below(2) as usize],
            _ => u64::MAX,
        };
        let first_file_page = match kind {
            Kind::PrivateAnon => None,
            _ => Some(self.rng.below(FILE_PAGES - (a + h + b) + 1)),
        };
        Layout {
            a,
            h,
            b,
            kind,
            prot,
            fd,
            first_file_page,
        }
    }

    /// Queues the calls after the neighbours: the bridge itself, and what it needs first.
    fn push_bridging(&mut self, bridge: Bridge, layout: &Layout, (change, undo): (Change, Change)) {
        let (a, h, prot) = (layout.a, layout.h, layout.prot);
        match bridge {
            Bridge::FillFixed | Bridge::Punch => self.push(layout.map(a, h, prot, Place::Fixed)),
            Bridge::FillHint | Bridge::FillAnywhere => {
                self.push(Planned::Unmap { at: a, pages: h });
                let place = match bridge {
                    Bridge::FillHint => Place::Hint,
                    _ => Place::Anywhere,
                };
                self.push(layout.map(a, h, prot, place));
            }
            Bridge::Protect => {
                self.push(layout.map(a, h, other_prot(prot), Place::Fixed));
                self.push(Planned::Protect {
                    at: a,
                    pages: h,
                    prot,
                });
            }
            Bridge::Change => {
                self.push(layout.map(a, h, prot, Place::Fixed));
                self.push(layout.middle(change));
                self.push(layout.middle(undo));
            }
            Bridge::SplitRestore => {
                self.push(layout.middle(change));
                self.push(layout.middle(undo));
            }
            Bridge::Grow => {
                self.push(Planned::Unmap { at: a, pages: h });
                self.push(Planned::Grow { pages: a, by: h });
            }
            Bridge::Move => self.push_move(layout),
            Bridge::Seal => {
                for (at, pages) in [(0, a), (a + h, layout.b)] {
                    self.push(Planned::Change {
                        at,
                        pages,
                        change: Change::Seal,
                    });
                }
                self.push(layout.map(a, h, prot, Place::Fixed));
                self.push(layout.middle(Change::Seal));
            }
        }
    }

    /// A mapping made where the kernel places it, then moved into the hole.
    fn push_move(&mut self, layout: &Layout) {
        let (a, h, b, prot) = (layout.a, layout.h, layout.b, layout.prot);
        let r = libc::PROT_READ as u64;
        // Written neighbours made read-only keep their anon_vmas; a read-only source is never
        // written and has none, so it may join either.
        let moved_prot = if layout.kind.private() && prot & libc::PROT_WRITE as u64 != 0 {
            self.push(Planned::Protect {
                at: 0,
                pages: a,
                prot: r,
            });
            self.push(Planned::Protect {
                at: a + h,
                pages: b,
                prot: r,
            });
            r
        } else {
            prot
        };
        self.push(Planned::Unmap { at: a, pages: h });
        self.push(Planned::Source {
            pages: h,
            prot: moved_prot,
            kind: layout.kind,
            fd: layout.fd,
            offset: layout.offset(a),
        });
        self.push(Planned::MoveSource { to: a });
    }
}

/// A protection other than `prot` for the middle, which mprotect then makes equal to both
/// sides.
fn other_prot(prot: u64) -> u64 {
    let (r, w, x) = (
        libc::PROT_READ as u64,
        libc::PROT_WRITE as u64,
        libc::PROT_EXEC as u64,
    );
    match prot {
        p if p == r | w => r,
        p if p == r => r | w,
        p if p == r | w | x => r | w,
        _ => r,
    }
}
