//! Changes of hidden VMA state (advice, locks, userfaultfd registration, seals): they split
//! and merge VMAs as a protection change does without showing in `/proc/PID/maps`. Both a
//! random call and a plan make them, a plan often as a change and the call that undoes it.

use crate::{
    ranges::Range,
    rng::Rng,
    syscall::{ok, sys},
};

pub const SYS_MSEAL: libc::c_long = 462;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
const UFFDIO_REGISTER_MODE_WP: u64 = 2;

/// A change of hidden VMA state.
#[derive(Clone, Copy)]
pub enum Change {
    Advise(u64),
    Lock,
    LockOnFault,
    Unlock,
    /// userfaultfd registration (write-protect mode) and unregistration.
    Register,
    Unregister,
    Seal,
}

impl Change {
    /// A change of hidden VMA state and the call that undoes it.
    pub fn pair(rng: &mut Rng) -> (Change, Change) {
        let advise = |a: i32, b: i32| (Change::Advise(a as u64), Change::Advise(b as u64));
        rng.weighted(&[
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

    /// Makes the change over `r`; `uffd` is the walk's userfaultfd ([`open_userfaultfd`]).
    pub fn apply(self, r: Range, uffd: u64) {
        match self {
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
                sys(libc::SYS_ioctl, [uffd, UFFDIO_REGISTER, arg, 0, 0, 0])
            }
            Change::Unregister => {
                let mut range = [r.start, r.len];
                let arg = range.as_mut_ptr() as u64;
                sys(libc::SYS_ioctl, [uffd, UFFDIO_UNREGISTER, arg, 0, 0, 0])
            }
            Change::Seal => sys(SYS_MSEAL, [r.start, r.len, 0, 0, 0, 0]),
        };
    }
}

/// A userfaultfd, handshaken; its descriptor. Its registrations split and merge VMAs like
/// flag changes.
pub fn open_userfaultfd() -> u64 {
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
