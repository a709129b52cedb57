//! The calls that change a VMA's hidden state and nothing else: madvise, page touches
//! (MADV_POPULATE_WRITE), mlock and its kin, mlockall, anon names, userfaultfd registration and
//! mseal. None moves a page, but each may split or merge VMAs, so the table must follow them.

use crate::{
    change::{Change, SYS_MSEAL},
    ranges::PAGE,
    syscall::sys,
    walk::{ARENA_PAGES, Walk},
};

const PR_SET_VMA: u64 = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: u64 = 0;
const MADV_POPULATE_WRITE: u64 = 23;

impl Walk {
    pub fn madvise(&mut self) {
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

    /// Writing a private page gives its VMA an anon_vma, which decides later merges;
    /// MADV_POPULATE_WRITE writes without risking SIGSEGV or SIGBUS.
    pub fn touch(&mut self) {
        let r = self.target();
        sys(
            libc::SYS_madvise,
            [r.start, r.len, MADV_POPULATE_WRITE, 0, 0, 0],
        );
    }

    pub fn mlock(&mut self) {
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

    pub fn mlockall(&mut self) {
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

    /// prctl(PR_SET_VMA_ANON_NAME): named, renamed or unnamed.
    pub fn name(&mut self) {
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

    pub fn userfaultfd(&mut self) {
        let r = self.target();
        let change = if self.rng.chance(60) {
            Change::Register
        } else {
            Change::Unregister
        };
        change.apply(r, self.uffd);
    }

    /// mseal of a few arena pages, counted: past [`MAX_SEALS`](crate::walk::MAX_SEALS) the
    /// step chooses madvise instead.
    pub fn mseal(&mut self) {
        self.seals += 1;
        let first = self.rng.below(ARENA_PAGES);
        let len = (1 + self.rng.below(3)).min(ARENA_PAGES - first);
        sys(
            SYS_MSEAL,
            [self.arena.start + first * PAGE, len * PAGE, 0, 0, 0, 0],
        );
    }
}
