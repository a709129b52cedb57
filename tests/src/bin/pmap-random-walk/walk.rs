//! The walk's state (the memory it owns, what it remembers of it, the plan under way), the
//! helpers every kind of call shares to aim and record, and the step: which call comes next.
//! The calls themselves are in the modules of their concern (`calls`, `hidden`, `segments`,
//! `plan`, `bridge`), each an `impl Walk` of its own.

use std::collections::VecDeque;

use crate::{
    change::open_userfaultfd,
    planned::Planned,
    ranges::{LOOSE_CAPACITY, Loose, PAGE, Range},
    rng::Rng,
    syscall::sys,
};

/// Pages of the arena window. Small enough that calls keep landing on each other's mappings, so
/// splits, overlays and merges are frequent.
pub const ARENA_PAGES: u64 = 160;
/// Pages of each file the walk maps; offsets go past the end, which mmap allows.
pub const FILE_PAGES: u64 = 24;
/// Most pages the walk moves the break above where it found it.
pub const HEAP_PAGES: u64 = 48;
/// At most this many mseal calls per walk: sealed memory can never be unmapped again, so more
/// would slowly freeze the arena. (A bridge plan through sealing takes three.)
pub const MAX_SEALS: u32 = 5;
/// Recent mmap/mremap results the walk remembers as mremap sources.
pub const RECENT_CAPACITY: usize = 16;
/// Most calls a plan makes.
pub const PLAN_CAPACITY: usize = 8;
/// Pages of the System V segments the walk attaches: the first is what a segment plan
/// ([`Walk::plan_segment`]) splits; the second's size is not whole pages (an attach maps it
/// rounded up).
pub const SEGMENTS: [u64; 2] = [6 * PAGE, 3 * PAGE + 100];
/// Attach addresses the walk remembers for shmdt.
pub const ATTACH_CAPACITY: usize = 8;

/// The walk: the memory it owns and what it remembers of it, all of it sized at setup.
pub struct Walk {
    pub rng: Rng,
    pub arena: Range,
    /// The break when the walk started; it moves the break only within `HEAP_PAGES` above.
    pub brk_floor: u64,
    /// The break now: what the last brk returned.
    pub brk_now: u64,
    /// Descriptors of the files it maps.
    pub files: [u64; 3],
    pub loose: Loose,
    /// Recent mmap/mremap results: good mremap sources, likely still one VMA each.
    pub recent: [Range; RECENT_CAPACITY],
    pub recent_next: usize,
    pub seals: u32,
    /// A userfaultfd whose registrations split and merge VMAs like flag changes.
    pub uffd: u64,
    /// The calls left of the plan under way, made one per step.
    pub plan: VecDeque<Planned>,
    /// Where the plan under way works: its pages are counted from here.
    pub plan_base: u64,
    /// The mapping a plan made to move between its neighbours.
    pub plan_source: Range,
    /// The System V segments' ids, made at setup.
    pub segments: [i32; SEGMENTS.len()],
    /// Recent attach addresses, for shmdt.
    pub attaches: [u64; ATTACH_CAPACITY],
    pub attach_next: usize,
}

/// What a step may do (besides the next call of a plan under way).
#[derive(Clone, Copy)]
enum Op {
    Mmap,
    Munmap,
    Mprotect,
    Mremap,
    Brk,
    Madvise,
    Touch,
    Mlock,
    Mlockall,
    Name,
    Mseal,
    Userfaultfd,
    Bridge,
    Shm,
}

impl Walk {
    /// The walk over `arena`, mapping `files` and attaching `segments`, from where the break is
    /// now. Everything it will hold is allocated here: it allocates nothing after `go`.
    pub fn new(seed: u64, arena: Range, files: [u64; 3], segments: [i32; SEGMENTS.len()]) -> Walk {
        let brk_floor = sys(libc::SYS_brk, [0; 6]) as u64;
        Walk {
            rng: Rng::new(seed),
            arena,
            brk_floor,
            brk_now: brk_floor,
            files,
            loose: Loose(Vec::with_capacity(LOOSE_CAPACITY)),
            recent: [Range { start: 0, len: 0 }; RECENT_CAPACITY],
            recent_next: 0,
            seals: 0,
            uffd: open_userfaultfd(),
            plan: VecDeque::with_capacity(PLAN_CAPACITY),
            plan_base: 0,
            plan_source: Range { start: 0, len: 0 },
            segments,
            attaches: [0; ATTACH_CAPACITY],
            attach_next: 0,
        }
    }

    /// A page range inside the arena, mostly short, sometimes most of it.
    pub fn arena_range(&mut self) -> Range {
        let first = self.rng.below(ARENA_PAGES);
        let len = match self.rng.below(100) {
            0..50 => 1 + self.rng.below(4),
            50..85 => 5 + self.rng.below(12),
            _ => 17 + self.rng.below(ARENA_PAGES),
        }
        .min(ARENA_PAGES - first);
        Range {
            start: self.arena.start + first * PAGE,
            len: len * PAGE,
        }
    }

    /// A range the walk owns: usually in the arena, sometimes within a loose range.
    pub fn target(&mut self) -> Range {
        if !self.loose.0.is_empty() && self.rng.chance(25) {
            let r = self.loose.0[self.rng.below(self.loose.0.len() as u64) as usize];
            let pages = r.len / PAGE;
            let first = self.rng.below(pages);
            let len = 1 + self.rng.below(pages - first);
            return Range {
                start: r.start + first * PAGE,
                len: len * PAGE,
            };
        }
        self.arena_range()
    }

    pub fn prot(&mut self) -> u64 {
        let (r, w, x) = (
            libc::PROT_READ as u64,
            libc::PROT_WRITE as u64,
            libc::PROT_EXEC as u64,
        );
        self.rng
            .weighted(&[(12, 0), (30, r), (40, r | w), (10, r | x), (8, r | w | x)])
    }

    /// Records memory the kernel gave the walk: outside the arena it is a loose range.
    pub fn gained(&mut self, r: Range) {
        let (a, b) = (self.arena.start, self.arena.end());
        if r.start < a {
            self.loose.add(Range {
                start: r.start,
                len: r.end().min(a) - r.start,
            });
        }
        if r.end() > b {
            let start = r.start.max(b);
            self.loose.add(Range {
                start,
                len: r.end() - start,
            });
        }
        self.recent[self.recent_next] = r;
        self.recent_next = (self.recent_next + 1) % RECENT_CAPACITY;
    }

    /// Makes one call: the next of the plan under way, else one the seed chooses.
    pub fn step(&mut self) {
        if let Some(planned) = self.plan.pop_front() {
            return self.make(planned);
        }
        if self.loose.0.len() + 4 >= LOOSE_CAPACITY {
            // Room for what one call can add: give back a whole loose range first.
            let r = self.loose.0[self.rng.below(self.loose.0.len() as u64) as usize];
            return self.unmap(r);
        }
        match self.choose_op() {
            Op::Bridge => self.start_plan(),
            Op::Mmap => self.mmap(),
            Op::Shm => self.shm(),
            Op::Munmap => self.munmap(),
            Op::Mprotect => self.mprotect(),
            Op::Mremap => self.mremap(),
            Op::Brk => self.brk(),
            Op::Madvise => self.madvise(),
            Op::Touch => self.touch(),
            Op::Mlock => self.mlock(),
            Op::Mlockall => self.mlockall(),
            Op::Name => self.name(),
            Op::Userfaultfd => self.userfaultfd(),
            Op::Mseal => self.mseal(),
        }
    }

    /// The kind of call a step makes, by weight.
    fn choose_op(&mut self) -> Op {
        let op = self.rng.weighted(&[
            (22, Op::Mmap),
            (12, Op::Munmap),
            (14, Op::Mprotect),
            (13, Op::Mremap),
            (6, Op::Brk),
            (14, Op::Madvise),
            (8, Op::Touch),
            (8, Op::Mlock),
            (1, Op::Mlockall),
            (1, Op::Name),
            (1, Op::Mseal),
            (4, Op::Userfaultfd),
            (4, Op::Bridge),
            (3, Op::Shm),
        ]);
        match op {
            // Sealed memory can never be unmapped again (see MAX_SEALS).
            Op::Mseal if self.seals >= MAX_SEALS => Op::Madvise,
            op => op,
        }
    }
}
