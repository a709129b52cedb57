//! Seeded random walk over the address-space calls, for the differential test
//! (`tests/tests/random_walk.rs`): every step is exactly one traced syscall, chosen and aimed by a
//! SplitMix64 stream from the seed, so the test can replay the same walk and name the call that
//! made the table diverge.
//!
//! `pmap-random-walk SEED CALLS EVERY STOP` sets up (files, an arena, the break), prints `ready`,
//! waits for a `go` line, then makes CALLS calls. It stops itself with SIGSTOP after every call
//! when STOP is `each`, or after every EVERY-th call when STOP is `checkpoint` or `paced`, and
//! always after the last one; it exits 0 when continued after that. `paced` also sleeps
//! [`PACE`] after each call, so a tracer applying events as they come keeps up with it a few
//! calls behind, as pmap-trace does with a real program.
//!
//! The walk stays inside memory it owns: an arena window reserved at setup, the mappings the
//! kernel placed for it outside the window (non-fixed mmap and mremap results, tracked as
//! "loose" ranges), and the heap above the break it found. It allocates nothing after `go`: a
//! malloc could move the break under the walk's own `brk` calls.
//!
//! As a program does, it writes the first page of every writable private mapping right after
//! making it (mmap, and brk growing the heap), which gives the VMA an anon_vma: two mappings
//! written apart hold different ones, which decides whether a range later bridging them joins
//! both. It also makes that shape on purpose ([`Walk::plan_bridge`]): written neighbours, then
//! a call that bridges them (a new mapping filling the hole with or without a hint or fixed,
//! mremap growing up to one or moving between them, a change making the range between equal
//! to both), one call per step like any other.
//!
//! It attaches System V shared memory too (shmat with and without an address, read-only or
//! not; shmdt), whose VMAs no merge may remove (`can_merge_remove_vma()` in the kernel), and
//! makes that shape on purpose: a segment split and restored by mprotect or a change of hidden
//! state, a piece unmapped and its left neighbour grown back up to the next, a piece moved
//! away and back. Its [`SEGMENTS`] are made at setup, each attached once there and marked for
//! removal (IPC_RMID), so the kernel destroys them when the walk ends however it ends.

use std::{
    io::{BufRead, Write},
    os::fd::AsRawFd,
};

const PAGE: u64 = 4096;
/// Pages of the arena window. Small enough that calls keep landing on each other's mappings, so
/// splits, overlays and merges are frequent.
const ARENA_PAGES: u64 = 160;
/// Pages of each file the walk maps; offsets go past the end, which mmap allows.
const FILE_PAGES: u64 = 24;
/// Most pages the walk moves the break above where it found it.
const HEAP_PAGES: u64 = 48;
/// At most this many mseal calls per walk: sealed memory can never be unmapped again, so more
/// would slowly freeze the arena. (A bridge plan through sealing takes three.)
const MAX_SEALS: u32 = 5;
const LOOSE_CAPACITY: usize = 48;
const RECENT_CAPACITY: usize = 16;
/// Most calls a bridge plan makes.
const PLAN_CAPACITY: usize = 8;

/// Pages of the System V segments the walk attaches: the first is what a bridge plan splits;
/// the second's size is not whole pages (an attach maps it rounded up).
const SEGMENTS: [u64; 2] = [6 * PAGE, 3 * PAGE + 100];
/// Attach addresses the walk remembers for shmdt.
const ATTACH_CAPACITY: usize = 8;
const SHM_RDONLY: u64 = 0o10000;
const SHM_REMAP: u64 = 0o40000;

const SYS_MSEAL: libc::c_long = 462;
/// The pause after each call in `paced` mode.
const PACE: std::time::Duration = std::time::Duration::from_micros(100);
const PR_SET_VMA: u64 = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: u64 = 0;
const MADV_POPULATE_WRITE: u64 = 23;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
const UFFDIO_REGISTER_MODE_WP: u64 = 2;

/// SplitMix64: tiny, seedable and good enough to spread choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Picks an item with probability proportional to its weight.
    fn weighted<T: Copy>(&mut self, table: &[(u64, T)]) -> T {
        let total: u64 = table.iter().map(|(w, _)| w).sum();
        let mut pick = self.below(total);
        for &(weight, item) in table {
            if pick < weight {
                return item;
            }
            pick -= weight;
        }
        unreachable!("pick is below the total weight")
    }
}

/// A range of pages, `[start, start + len)`.
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    len: u64,
}

impl Range {
    fn end(self) -> u64 {
        self.start + self.len
    }
}

/// Ranges the kernel placed for the walk outside the arena, kept sorted and disjoint in a
/// fixed-capacity vector (allocated before `go`, never grown after).
struct Loose(Vec<Range>);

impl Loose {
    fn add(&mut self, r: Range) {
        if r.len == 0 {
            return;
        }
        self.remove(r);
        let at = self.0.partition_point(|x| x.start < r.start);
        self.0.insert(at, r);
        assert!(self.0.len() < LOOSE_CAPACITY, "loose list full");
    }

    /// Forgets `r` (unmapped, or moved away), splitting ranges it cuts.
    fn remove(&mut self, r: Range) {
        let mut i = 0;
        while i < self.0.len() {
            let x = self.0[i];
            if x.end() <= r.start || x.start >= r.end() {
                i += 1;
                continue;
            }
            self.0.remove(i);
            if x.start < r.start {
                self.0.insert(
                    i,
                    Range {
                        start: x.start,
                        len: r.start - x.start,
                    },
                );
                i += 1;
            }
            if x.end() > r.end() {
                self.0.insert(
                    i,
                    Range {
                        start: r.end(),
                        len: x.end() - r.end(),
                    },
                );
                i += 1;
            }
        }
    }
}

struct Walk {
    rng: Rng,
    arena: Range,
    /// The break when the walk started; it moves the break only within `HEAP_PAGES` above.
    brk_floor: u64,
    /// The break now: what the last brk returned.
    brk_now: u64,
    /// Descriptors of the files it maps.
    files: [u64; 3],
    loose: Loose,
    /// Recent mmap/mremap results: good mremap sources, likely still one VMA each.
    recent: [Range; RECENT_CAPACITY],
    recent_next: usize,
    seals: u32,
    /// A userfaultfd whose registrations split and merge VMAs like flag changes.
    uffd: u64,
    /// The calls left of the bridge plan under way, made one per step.
    plan: std::collections::VecDeque<Planned>,
    /// Where the plan under way works: its pages are counted from here.
    plan_base: u64,
    /// The mapping a plan made to move between its neighbours.
    plan_source: Range,
    /// The System V segments' ids, made at setup.
    segments: [i32; SEGMENTS.len()],
    /// Recent attach addresses, for shmdt.
    attaches: [u64; ATTACH_CAPACITY],
    attach_next: usize,
}

/// The raw syscall; returns the result or `-errno`, as the tracepoint reports it.
fn sys(nr: libc::c_long, args: [u64; 6]) -> i64 {
    // SAFETY: every call targets memory the walk owns (the arena, its loose ranges, its heap) or
    // is rejected by the kernel; nothing the walk reads or runs lives there.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if ret == -1 {
        // SAFETY: reading errno right after the failing call.
        -(unsafe { *libc::__errno_location() }) as i64
    } else {
        ret
    }
}

fn ok(ret: i64) -> bool {
    !(-4095..0).contains(&ret)
}

impl Walk {
    /// A page range inside the arena, mostly short, sometimes most of it.
    fn arena_range(&mut self) -> Range {
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
    fn target(&mut self) -> Range {
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

    fn prot(&mut self) -> u64 {
        let (r, w, x) = (
            libc::PROT_READ as u64,
            libc::PROT_WRITE as u64,
            libc::PROT_EXEC as u64,
        );
        self.rng
            .weighted(&[(12, 0), (30, r), (40, r | w), (10, r | x), (8, r | w | x)])
    }

    /// Records memory the kernel gave the walk: outside the arena it is a loose range.
    fn gained(&mut self, r: Range) {
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

    fn step(&mut self) {
        if let Some(planned) = self.plan.pop_front() {
            return self.make(planned);
        }
        if self.loose.0.len() + 4 >= LOOSE_CAPACITY {
            // Room for what one call can add: give back a whole loose range first.
            let r = self.loose.0[self.rng.below(self.loose.0.len() as u64) as usize];
            if ok(sys(libc::SYS_munmap, [r.start, r.len, 0, 0, 0, 0])) {
                self.loose.remove(r);
            }
            return;
        }
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
        let op = match op {
            Op::Mseal if self.seals >= MAX_SEALS => Op::Madvise,
            op => op,
        };
        match op {
            Op::Bridge => {
                if self.rng.chance(25) {
                    self.plan_segment();
                } else {
                    self.plan_bridge();
                }
                let first = self.plan.pop_front().expect("a plan makes calls");
                self.make(first);
            }
            Op::Mmap => self.mmap(),
            Op::Shm => self.shm(),
            Op::Munmap => {
                let r = self.target();
                if ok(sys(libc::SYS_munmap, [r.start, r.len, 0, 0, 0, 0])) {
                    self.loose.remove(r);
                }
            }
            Op::Mprotect => {
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
            Op::Mremap => self.mremap(),
            Op::Brk => self.brk(),
            Op::Madvise => {
                let r = self.target();
                let advice = self.rng.weighted(&[
                    (3, libc::MADV_HUGEPAGE),
                    (3, libc::MADV_NOHUGEPAGE),
                    (3, libc::MADV_DONTFORK),
                    (3, libc::MADV_DOFORK),
                    (3, libc::MADV_WIPEONFORK),
                    (3, libc::MADV_KEEPONFORK),
                    (3, libc::MADV_MERGEABLE),
                    (2, libc::MADV_UNMERGEABLE),
                    (3, libc::MADV_DONTDUMP),
                    (2, libc::MADV_DODUMP),
                    (2, libc::MADV_SEQUENTIAL),
                    (2, libc::MADV_RANDOM),
                    (2, libc::MADV_NORMAL),
                    (2, libc::MADV_DONTNEED),
                ]) as u64;
                sys(libc::SYS_madvise, [r.start, r.len, advice, 0, 0, 0]);
            }
            Op::Touch => {
                // Writing a private page gives its VMA an anon_vma, which decides later merges;
                // MADV_POPULATE_WRITE writes without risking SIGSEGV or SIGBUS.
                let r = self.target();
                sys(
                    libc::SYS_madvise,
                    [r.start, r.len, MADV_POPULATE_WRITE, 0, 0, 0],
                );
            }
            Op::Mlock => {
                let r = self.target();
                match self.rng.below(4) {
                    0 => sys(libc::SYS_mlock, [r.start, r.len, 0, 0, 0, 0]),
                    1 => sys(libc::SYS_munlock, [r.start, r.len, 0, 0, 0, 0]),
                    2 => sys(
                        libc::SYS_mlock2,
                        [r.start, r.len, libc::MLOCK_ONFAULT as u64, 0, 0, 0],
                    ),
                    _ => sys(libc::SYS_mlock2, [r.start, r.len, 0, 0, 0, 0]),
                };
            }
            Op::Mlockall => {
                let (current, future, onfault) = (
                    libc::MCL_CURRENT as u64,
                    libc::MCL_FUTURE as u64,
                    libc::MCL_ONFAULT as u64,
                );
                let flags = self.rng.weighted(&[
                    (2, current),
                    (2, future),
                    (1, current | future),
                    (2, current | onfault),
                    (1, future | onfault),
                    (1, current | future | onfault),
                ]);
                if self.rng.chance(50) {
                    sys(libc::SYS_munlockall, [0; 6]);
                } else {
                    sys(libc::SYS_mlockall, [flags, 0, 0, 0, 0, 0]);
                }
            }
            Op::Name => {
                let r = self.target();
                let names: [&'static [u8]; 3] = [b"walk\0", b"other\0", b"\0"];
                let name = names[self.rng.below(3) as usize];
                // A null name pointer removes the name.
                let pointer = if name.len() == 1 {
                    0
                } else {
                    name.as_ptr() as u64
                };
                sys(
                    libc::SYS_prctl,
                    [PR_SET_VMA, PR_SET_VMA_ANON_NAME, r.start, r.len, pointer, 0],
                );
            }
            Op::Userfaultfd => {
                let r = self.target();
                let change = if self.rng.chance(60) {
                    Change::Register
                } else {
                    Change::Unregister
                };
                self.change(r, change);
            }
            Op::Mseal => {
                self.seals += 1;
                let first = self.rng.below(ARENA_PAGES);
                let len = (1 + self.rng.below(3)).min(ARENA_PAGES - first);
                sys(
                    SYS_MSEAL,
                    [self.arena.start + first * PAGE, len * PAGE, 0, 0, 0, 0],
                );
            }
        }
    }

    fn mmap(&mut self) {
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

    /// shmat of a segment in the arena (replacing what is there, or refused where something
    /// is), or where the kernel places it; or shmdt of an address it attached at.
    fn shm(&mut self) {
        let segment = self.rng.below(SEGMENTS.len() as u64) as usize;
        let pages = SEGMENTS[segment].div_ceil(PAGE);
        let flags = if self.rng.chance(20) { SHM_RDONLY } else { 0 };
        let in_arena = self.arena.start + self.rng.below(ARENA_PAGES - pages + 1) * PAGE;
        match self.rng.below(100) {
            0..35 => {
                self.attach(segment, in_arena, flags | SHM_REMAP);
            }
            35..50 => {
                self.attach(segment, 0, flags);
            }
            // Without SHM_REMAP, refused (EINVAL) unless the range is free.
            50..60 => {
                self.attach(segment, in_arena, flags);
            }
            _ => {
                let addr = self.attaches[self.rng.below(ATTACH_CAPACITY as u64) as usize];
                let addr = if addr == 0 { in_arena } else { addr };
                sys(libc::SYS_shmdt, [addr, 0, 0, 0, 0, 0]);
            }
        }
    }

    /// shmat of segment `segment` at `addr` (0: where the kernel places it).
    fn attach(&mut self, segment: usize, addr: u64, flags: u64) -> i64 {
        let ret = sys(
            libc::SYS_shmat,
            [self.segments[segment] as u64, addr, flags, 0, 0, 0],
        );
        if ok(ret) {
            self.gained(Range {
                start: ret as u64,
                len: SEGMENTS[segment].div_ceil(PAGE) * PAGE,
            });
            self.attaches[self.attach_next] = ret as u64;
            self.attach_next = (self.attach_next + 1) % ATTACH_CAPACITY;
        }
        ret
    }

    /// Plans the shapes that meet can_merge_remove_vma(): segment 0 attached over the arena
    /// as a left piece, a middle and a right piece, the middle split out and restored (by
    /// mprotect or a change of hidden state), or unmapped and the left piece grown back up
    /// to the right one, or moved past the right piece and back.
    fn plan_segment(&mut self) {
        #[derive(Clone, Copy)]
        enum Shape {
            Protect,
            Change,
            Grow,
            Move,
        }
        let shape = self.rng.weighted(&[
            (3, Shape::Protect),
            (3, Shape::Change),
            (2, Shape::Grow),
            (2, Shape::Move),
        ]);
        let total = SEGMENTS[0].div_ceil(PAGE);
        let (a, h) = (1 + self.rng.below(3), 1 + self.rng.below(2));
        // The move's destination lies past the segment, in the arena too.
        self.plan_base = self.arena.start + self.rng.below(ARENA_PAGES - total - h + 1) * PAGE;
        let (change, undo) = self.change_pair();
        let plan = &mut self.plan;
        let mut push = |p: Planned| {
            assert!(plan.len() < PLAN_CAPACITY, "plan too long");
            plan.push_back(p)
        };
        push(Planned::Attach { segment: 0 });
        let middle = |change| Planned::Change {
            at: a,
            pages: h,
            change,
        };
        let (r, w) = (libc::PROT_READ as u64, libc::PROT_WRITE as u64);
        match shape {
            Shape::Protect => {
                for prot in [r, r | w] {
                    push(Planned::Protect {
                        at: a,
                        pages: h,
                        prot,
                    });
                }
            }
            Shape::Change => {
                push(middle(change));
                push(middle(undo));
            }
            Shape::Grow => {
                push(Planned::Unmap { at: a, pages: h });
                push(Planned::Grow { pages: a, by: h });
            }
            Shape::Move => {
                push(Planned::MoveAway {
                    at: a,
                    pages: h,
                    to: total,
                });
                push(Planned::MoveSource { to: a });
            }
        }
    }

    /// mmap, recording what it gained and writing the first page of a writable private
    /// mapping right after, as a program does.
    fn map(&mut self, addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> i64 {
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
    /// Plans a shape the kernel merges three ways: two written neighbours (or pieces of one
    /// mapping) and a call that bridges them, each step one call (see [`Planned`]). Its pages
    /// are a few, in the arena, or for a new mapping placed without a hint in a region the
    /// kernel places, whose hole is then likely the highest that fits.
    fn plan_bridge(&mut self) {
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
        let bridge = match bridge {
            Bridge::Seal if self.seals + 3 > MAX_SEALS => Bridge::Change,
            other => other,
        };
        // Pages of the left neighbour, the hole (or middle), the right neighbour.
        let (a, h, b) = (
            1 + self.rng.below(3),
            1 + self.rng.below(2),
            1 + self.rng.below(3),
        );
        let total = a + h + b;
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
        // File pages contiguous across the three, within the file.
        let first_file_page = match kind {
            Kind::PrivateAnon => None,
            _ => Some(self.rng.below(FILE_PAGES - total + 1)),
        };
        let offset = |at: u64| first_file_page.map_or(0, |first| (first + at) * PAGE);
        let map = |at: u64, pages: u64, prot: u64, place: Place| Planned::Map {
            at,
            pages,
            prot,
            kind,
            place,
            fd,
            offset: offset(at),
        };
        let (change, undo) = self.change_pair();
        let in_arena = !matches!(bridge, Bridge::FillAnywhere);
        if in_arena {
            self.plan_base = self.arena.start + self.rng.below(ARENA_PAGES - total + 1) * PAGE;
        }
        if let Bridge::Seal = bridge {
            self.seals += 3;
        }
        // Into the queue allocated at setup: the walk allocates nothing after `go`.
        let plan = &mut self.plan;
        let mut push = |p: Planned| {
            assert!(plan.len() < PLAN_CAPACITY, "plan too long");
            plan.push_back(p)
        };
        if !in_arena {
            push(Planned::Region { pages: total });
        }
        match bridge {
            Bridge::Punch | Bridge::SplitRestore => push(map(0, total, prot, Place::Fixed)),
            _ => {
                push(map(0, a, prot, Place::Fixed));
                push(map(a + h, b, prot, Place::Fixed));
            }
        }
        let middle = |change| Planned::Change {
            at: a,
            pages: h,
            change,
        };
        match bridge {
            Bridge::FillFixed | Bridge::Punch => push(map(a, h, prot, Place::Fixed)),
            Bridge::FillHint | Bridge::FillAnywhere => {
                push(Planned::Unmap { at: a, pages: h });
                let place = match bridge {
                    Bridge::FillHint => Place::Hint,
                    _ => Place::Anywhere,
                };
                push(map(a, h, prot, place));
            }
            Bridge::Protect => {
                let other = match prot {
                    p if p == r | w => r,
                    p if p == r => r | w,
                    p if p == r | w | x => r | w,
                    _ => r,
                };
                push(map(a, h, other, Place::Fixed));
                push(Planned::Protect {
                    at: a,
                    pages: h,
                    prot,
                });
            }
            Bridge::Change => {
                push(map(a, h, prot, Place::Fixed));
                push(middle(change));
                push(middle(undo));
            }
            Bridge::SplitRestore => {
                push(middle(change));
                push(middle(undo));
            }
            Bridge::Grow => {
                push(Planned::Unmap { at: a, pages: h });
                push(Planned::Grow { pages: a, by: h });
            }
            Bridge::Move => {
                // Written neighbours made read-only keep their anon_vmas; a read-only source
                // is never written and has none, so it may join either.
                let moved_prot = if kind.private() && prot & w != 0 {
                    push(Planned::Protect {
                        at: 0,
                        pages: a,
                        prot: r,
                    });
                    push(Planned::Protect {
                        at: a + h,
                        pages: b,
                        prot: r,
                    });
                    r
                } else {
                    prot
                };
                push(Planned::Unmap { at: a, pages: h });
                push(Planned::Source {
                    pages: h,
                    prot: moved_prot,
                    kind,
                    fd,
                    offset: offset(a),
                });
                push(Planned::MoveSource { to: a });
            }
            Bridge::Seal => {
                for (at, pages) in [(0, a), (a + h, b)] {
                    push(Planned::Change {
                        at,
                        pages,
                        change: Change::Seal,
                    });
                }
                push(map(a, h, prot, Place::Fixed));
                push(middle(Change::Seal));
            }
        }
    }

    /// A change of hidden VMA state and the call that undoes it.
    fn change_pair(&mut self) -> (Change, Change) {
        let advise = |a: i32, b: i32| (Change::Advise(a as u64), Change::Advise(b as u64));
        self.rng.weighted(&[
            (2, advise(libc::MADV_DONTDUMP, libc::MADV_DODUMP)),
            (2, advise(libc::MADV_DONTFORK, libc::MADV_DOFORK)),
            (1, advise(libc::MADV_RANDOM, libc::MADV_NORMAL)),
            (1, advise(libc::MADV_SEQUENTIAL, libc::MADV_NORMAL)),
            (1, advise(libc::MADV_MERGEABLE, libc::MADV_UNMERGEABLE)),
            (1, advise(libc::MADV_WIPEONFORK, libc::MADV_KEEPONFORK)),
            (2, (Change::Lock, Change::Unlock)),
            (1, (Change::LockOnFault, Change::Unlock)),
            (2, (Change::Register, Change::Unregister)),
        ])
    }

    /// Makes one planned call.
    fn make(&mut self, planned: Planned) {
        let range = |at: u64, pages: u64| Range {
            start: self.plan_base + at * PAGE,
            len: pages * PAGE,
        };
        let private_anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        match planned {
            Planned::Region { pages } => {
                let ret = self.map(0, pages * PAGE, 0, private_anon, u64::MAX, 0);
                if ok(ret) {
                    self.plan_base = ret as u64;
                } else {
                    self.plan.clear();
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
                let r = range(at, pages);
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
                let ret = self.map(0, len, prot, kind.flags(), fd, offset);
                if ok(ret) {
                    self.plan_source = Range {
                        start: ret as u64,
                        len,
                    };
                } else {
                    self.plan.clear();
                }
            }
            Planned::Attach { segment } => {
                let base = self.plan_base;
                if !ok(self.attach(segment, base, SHM_REMAP)) {
                    self.plan.clear();
                }
            }
            Planned::MoveAway { at, pages, to } => {
                let (source, dest) = (range(at, pages), range(to, 0).start);
                let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                let args = [source.start, source.len, source.len, flags, dest, 0];
                if ok(sys(libc::SYS_mremap, args)) {
                    self.plan_source = Range {
                        start: dest,
                        len: source.len,
                    };
                } else {
                    self.plan.clear();
                }
            }
            Planned::Unmap { at, pages } => {
                let r = range(at, pages);
                if ok(sys(libc::SYS_munmap, [r.start, r.len, 0, 0, 0, 0])) {
                    self.loose.remove(r);
                }
            }
            Planned::Protect { at, pages, prot } => {
                let r = range(at, pages);
                sys(libc::SYS_mprotect, [r.start, r.len, prot, 0, 0, 0]);
            }
            Planned::Change { at, pages, change } => self.change(range(at, pages), change),
            Planned::Grow { pages, by } => {
                let r = range(0, pages);
                let new_len = (pages + by) * PAGE;
                if ok(sys(libc::SYS_mremap, [r.start, r.len, new_len, 0, 0, 0])) {
                    self.gained(Range {
                        start: r.start,
                        len: new_len,
                    });
                }
            }
            Planned::MoveSource { to } => {
                let source = self.plan_source;
                let dest = range(to, 0).start;
                let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                let args = [source.start, source.len, source.len, flags, dest, 0];
                if ok(sys(libc::SYS_mremap, args)) {
                    self.loose.remove(source);
                    self.gained(Range {
                        start: dest,
                        len: source.len,
                    });
                }
            }
        }
    }

    /// Changes hidden VMA state over `r`.
    fn change(&mut self, r: Range, change: Change) {
        match change {
            Change::Advise(advice) => sys(libc::SYS_madvise, [r.start, r.len, advice, 0, 0, 0]),
            Change::Lock => sys(libc::SYS_mlock, [r.start, r.len, 0, 0, 0, 0]),
            Change::LockOnFault => sys(
                libc::SYS_mlock2,
                [r.start, r.len, libc::MLOCK_ONFAULT as u64, 0, 0, 0],
            ),
            Change::Unlock => sys(libc::SYS_munlock, [r.start, r.len, 0, 0, 0, 0]),
            // Write-protect mode only: missing-page (and, on shared memory, minor) mode would
            // make the walk's own page touches wait for a handler that is not there. Without
            // UFFDIO_WRITEPROTECT nothing is protected, so nothing waits.
            Change::Register => {
                let mut register = [r.start, r.len, UFFDIO_REGISTER_MODE_WP, 0];
                let arg = register.as_mut_ptr() as u64;
                sys(libc::SYS_ioctl, [self.uffd, UFFDIO_REGISTER, arg, 0, 0, 0])
            }
            Change::Unregister => {
                let mut range = [r.start, r.len];
                let arg = range.as_mut_ptr() as u64;
                sys(
                    libc::SYS_ioctl,
                    [self.uffd, UFFDIO_UNREGISTER, arg, 0, 0, 0],
                )
            }
            Change::Seal => sys(SYS_MSEAL, [r.start, r.len, 0, 0, 0, 0]),
        };
    }

    fn mremap(&mut self) {
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

    fn brk(&mut self) {
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

/// Writes a byte at `addr`: a private page gets its own copy, and its VMA an anon_vma.
fn write_page(addr: u64) {
    // SAFETY: `addr` is the first page of a writable mapping the walk just made (or of the
    // heap pages it just added), backed by memory or by its own file within the file's size;
    // nothing else uses it.
    unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
}

/// One call of a bridge plan ([`Walk::plan_bridge`]); pages count from the plan's base.
#[derive(Clone, Copy)]
enum Planned {
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

/// A change of hidden VMA state.
#[derive(Clone, Copy)]
enum Change {
    Advise(u64),
    Lock,
    LockOnFault,
    Unlock,
    /// userfaultfd registration (write-protect mode) and unregistration.
    Register,
    Unregister,
    Seal,
}

#[derive(Clone, Copy)]
enum Kind {
    PrivateAnon,
    SharedAnon,
    PrivateFile,
    SharedFile,
}

impl Kind {
    fn flags(self) -> u64 {
        (match self {
            Kind::PrivateAnon => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            Kind::SharedAnon => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            Kind::PrivateFile => libc::MAP_PRIVATE,
            Kind::SharedFile => libc::MAP_SHARED,
        }) as u64
    }

    fn private(self) -> bool {
        matches!(self, Kind::PrivateAnon | Kind::PrivateFile)
    }
}

#[derive(Clone, Copy)]
enum Place {
    Fixed,
    NoReplace,
    Hint,
    Anywhere,
}

impl Place {
    fn flags(self) -> u64 {
        (match self {
            Place::Fixed => libc::MAP_FIXED,
            Place::NoReplace => libc::MAP_FIXED_NOREPLACE,
            Place::Hint | Place::Anywhere => 0,
        }) as u64
    }

    /// The address argument for a mapping meant for `at`.
    fn addr(self, at: u64) -> u64 {
        match self {
            Place::Anywhere => 0,
            _ => at,
        }
    }
}

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

/// A userfaultfd, handshaken; its descriptor.
fn open_userfaultfd() -> u64 {
    let uffd = sys(
        libc::SYS_userfaultfd,
        [libc::O_CLOEXEC as u64, 0, 0, 0, 0, 0],
    );
    assert!(ok(uffd), "userfaultfd: {}", -uffd);
    let mut api = [UFFD_API, 0, 0];
    assert_eq!(
        sys(
            libc::SYS_ioctl,
            [uffd as u64, UFFDIO_API, api.as_mut_ptr() as u64, 0, 0, 0]
        ),
        0
    );
    uffd as u64
}

fn stop() {
    // SAFETY: stopping ourselves; the test continues us with SIGCONT.
    unsafe { libc::raise(libc::SIGSTOP) };
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: pmap-random-walk SEED CALLS EVERY each|checkpoint|paced");
        std::process::exit(2)
    };
    if args.len() != 4 {
        usage();
    }
    let (Ok(seed), Ok(calls), Ok(every)) = (
        args[0].parse::<u64>(),
        args[1].parse::<u64>(),
        args[2].parse::<u64>(),
    ) else {
        usage()
    };
    let (each, paced) = match args[3].as_str() {
        "each" => (true, false),
        "checkpoint" => (false, false),
        "paced" => (false, true),
        _ => usage(),
    };
    if every == 0 {
        usage();
    }

    // Files to map: two read-write, one opened read-only so that writable shared mappings of it
    // fail. They stay until exit, so the mappings keep their names.
    let dir = std::env::temp_dir();
    let mut keep = Vec::new();
    let mut files = [0u64; 3];
    for (i, slot) in files.iter_mut().enumerate() {
        let path = dir.join(format!("pmap-random-walk-{}-{i}", std::process::id()));
        std::fs::write(&path, vec![0u8; (FILE_PAGES * PAGE) as usize]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(i < 2)
            .open(&path)
            .unwrap();
        *slot = file.as_raw_fd() as u64;
        keep.push((path, file));
    }
    // SAFETY: reserving address space nothing else uses; the walk carves it up.
    let arena = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (ARENA_PAGES * PAGE) as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(arena, libc::MAP_FAILED);
    // The segments: attached once here, outside the arena, which keeps each alive once it is
    // marked for removal; the kernel destroys it when the last attach goes, at exit at the
    // latest.
    let mut segments = [0i32; SEGMENTS.len()];
    for (id, &bytes) in segments.iter_mut().zip(&SEGMENTS) {
        // SAFETY: plain System V calls on a private segment of our own.
        unsafe {
            *id = libc::shmget(libc::IPC_PRIVATE, bytes as usize, libc::IPC_CREAT | 0o600);
            assert!(*id >= 0, "shmget: {}", std::io::Error::last_os_error());
            assert_ne!(
                libc::shmat(*id, std::ptr::null(), 0),
                usize::MAX as *mut libc::c_void,
                "shmat"
            );
            assert_eq!(libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut()), 0);
        }
    }
    let brk_floor = sys(libc::SYS_brk, [0; 6]) as u64;
    let mut walk = Walk {
        rng: Rng(seed),
        arena: Range {
            start: arena as u64,
            len: ARENA_PAGES * PAGE,
        },
        brk_floor,
        brk_now: brk_floor,
        files,
        loose: Loose(Vec::with_capacity(LOOSE_CAPACITY)),
        recent: [Range { start: 0, len: 0 }; RECENT_CAPACITY],
        recent_next: 0,
        seals: 0,
        uffd: open_userfaultfd(),
        plan: std::collections::VecDeque::with_capacity(PLAN_CAPACITY),
        plan_base: 0,
        plan_source: Range { start: 0, len: 0 },
        segments,
        attaches: [0; ATTACH_CAPACITY],
        attach_next: 0,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    drop(out);
    let mut line = String::with_capacity(16);
    std::io::stdin().lock().read_line(&mut line).unwrap();

    for i in 1..=calls {
        walk.step();
        if paced {
            std::thread::sleep(PACE);
        }
        if each || i.is_multiple_of(every) || i == calls {
            stop();
        }
    }
    sys(libc::SYS_brk, [walk.brk_floor, 0, 0, 0, 0, 0]);
    for (path, file) in keep {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
}
