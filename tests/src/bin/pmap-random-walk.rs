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
/// would slowly freeze the arena.
const MAX_SEALS: u32 = 2;
const LOOSE_CAPACITY: usize = 48;
const RECENT_CAPACITY: usize = 16;

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
    /// Descriptors of the files it maps.
    files: [u64; 3],
    loose: Loose,
    /// Recent mmap/mremap results: good mremap sources, likely still one VMA each.
    recent: [Range; RECENT_CAPACITY],
    recent_next: usize,
    seals: u32,
    /// A userfaultfd whose registrations split and merge VMAs like flag changes.
    uffd: u64,
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
        ]);
        let op = match op {
            Op::Mseal if self.seals >= MAX_SEALS => Op::Madvise,
            op => op,
        };
        match op {
            Op::Mmap => self.mmap(),
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
                // Write-protect mode only: missing-page (and, on shared memory, minor) mode
                // would make the walk's own page touches wait for a handler that is not there.
                // Without UFFDIO_WRITEPROTECT nothing is protected, so nothing waits.
                let r = self.target();
                if self.rng.chance(60) {
                    let mut register = [r.start, r.len, UFFDIO_REGISTER_MODE_WP, 0];
                    sys(
                        libc::SYS_ioctl,
                        [
                            self.uffd,
                            UFFDIO_REGISTER,
                            register.as_mut_ptr() as u64,
                            0,
                            0,
                            0,
                        ],
                    );
                } else {
                    let mut range = [r.start, r.len];
                    sys(
                        libc::SYS_ioctl,
                        [
                            self.uffd,
                            UFFDIO_UNREGISTER,
                            range.as_mut_ptr() as u64,
                            0,
                            0,
                            0,
                        ],
                    );
                }
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
        #[derive(Clone, Copy)]
        enum Kind {
            PrivateAnon,
            SharedAnon,
            PrivateFile,
            SharedFile,
        }
        #[derive(Clone, Copy)]
        enum Place {
            Fixed,
            NoReplace,
            Hint,
            Anywhere,
        }
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
        let mut flags = match kind {
            Kind::PrivateAnon => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            Kind::SharedAnon => libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            Kind::PrivateFile => libc::MAP_PRIVATE,
            Kind::SharedFile => libc::MAP_SHARED,
        } as u64;
        let (fd, offset) = match kind {
            Kind::PrivateFile | Kind::SharedFile => {
                let fd = self.files[self.rng.below(3) as usize];
                (fd, self.rng.below(FILE_PAGES + 8) * PAGE)
            }
            _ => (u64::MAX, 0),
        };
        let addr = match place {
            Place::Fixed => {
                flags |= libc::MAP_FIXED as u64;
                r.start
            }
            Place::NoReplace => {
                flags |= libc::MAP_FIXED_NOREPLACE as u64;
                r.start
            }
            Place::Hint => r.start,
            Place::Anywhere => 0,
        };
        for (percent, flag) in [
            (10, libc::MAP_NORESERVE),
            (10, libc::MAP_POPULATE),
            (3, libc::MAP_LOCKED),
            (5, libc::MAP_STACK),
        ] {
            if self.rng.chance(percent) {
                flags |= flag as u64;
            }
        }
        let ret = sys(libc::SYS_mmap, [addr, r.len, prot, flags, fd, offset]);
        if ok(ret) {
            self.gained(Range {
                start: ret as u64,
                len: r.len,
            });
        }
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
        sys(libc::SYS_brk, [arg, 0, 0, 0, 0, 0]);
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
    let mut walk = Walk {
        rng: Rng(seed),
        arena: Range {
            start: arena as u64,
            len: ARENA_PAGES * PAGE,
        },
        brk_floor: sys(libc::SYS_brk, [0; 6]) as u64,
        files,
        loose: Loose(Vec::with_capacity(LOOSE_CAPACITY)),
        recent: [Range { start: 0, len: 0 }; RECENT_CAPACITY],
        recent_next: 0,
        seals: 0,
        uffd: open_userfaultfd(),
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
