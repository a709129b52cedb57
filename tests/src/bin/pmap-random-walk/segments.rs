//! System V shared memory: the segments made at setup, shmat (with and without an address,
//! read-only or not) and shmdt, and the plans that split an attach and restore it. No merge may
//! remove an attach's VMA (`can_merge_remove_vma()` in the kernel), so these shapes take a rule
//! of their own in the table.

use crate::{
    change::Change,
    planned::Planned,
    ranges::{PAGE, Range},
    syscall::{ok, sys},
    walk::{ARENA_PAGES, ATTACH_CAPACITY, SEGMENTS, Walk},
};

const SHM_RDONLY: u64 = 0o10000;
pub const SHM_REMAP: u64 = 0o40000;

impl Walk {
    /// shmat of a segment in the arena (replacing what is there, or refused where something
    /// is), or where the kernel places it; or shmdt of an address it attached at.
    pub fn shm(&mut self) {
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
    pub fn attach(&mut self, segment: usize, addr: u64, flags: u64) -> i64 {
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
    pub fn plan_segment(&mut self) {
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
        let (change, undo) = Change::pair(&mut self.rng);
        self.push(Planned::Attach { segment: 0 });
        let middle = |change| Planned::Change {
            at: a,
            pages: h,
            change,
        };
        let (r, w) = (libc::PROT_READ as u64, libc::PROT_WRITE as u64);
        match shape {
            Shape::Protect => {
                for prot in [r, r | w] {
                    self.push(Planned::Protect {
                        at: a,
                        pages: h,
                        prot,
                    });
                }
            }
            Shape::Change => {
                self.push(middle(change));
                self.push(middle(undo));
            }
            Shape::Grow => {
                self.push(Planned::Unmap { at: a, pages: h });
                self.push(Planned::Grow { pages: a, by: h });
            }
            Shape::Move => {
                self.push(Planned::MoveAway {
                    at: a,
                    pages: h,
                    to: total,
                });
                self.push(Planned::MoveSource { to: a });
            }
        }
    }
}

/// The segments, made here at setup and attached once outside the arena, which keeps each
/// alive once it is marked for removal; the kernel destroys it when the last attach goes, at
/// exit at the latest, however the walk ends.
pub fn make_segments() -> [i32; SEGMENTS.len()] {
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
    segments
}
