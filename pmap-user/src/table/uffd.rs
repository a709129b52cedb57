//! userfaultfd registration and unregistration (`userfaultfd_register()`,
//! `userfaultfd_unregister()`, `fs/userfaultfd.c`): a flag change over a range, whose context
//! only the kernel can tell apart.

use super::AddressSpace;
use super::vma::HiddenFlags;

/// The VMA flags of a UFFDIO_REGISTER mode (MISSING 1, WP 2, MINOR 4).
pub(super) fn uffd_flags(mode: u64) -> u32 {
    ((mode & 7) as u32) << HiddenFlags::UFFD_MISSING.trailing_zeros()
}

impl AddressSpace {
    /// UFFDIO_REGISTER (`bits`: the mode's flags) and UFFDIO_UNREGISTER (0) over
    /// `[start, start + len)`, both page-aligned once the call succeeded. Both check every VMA
    /// before changing any, so a failed call changed nothing.
    pub(super) fn apply_uffd(&mut self, start: u64, len: u64, bits: u32) {
        self.update_range(start, start.saturating_add(len), |v| {
            if bits == 0 {
                // userfaultfd_unregister() skips VMAs no userfaultfd holds.
                if (v.flags.0 | v.unknown) & HiddenFlags::UFFD != 0 {
                    v.change_flags(0, HiddenFlags::UFFD);
                }
            } else if v.flag(bits) != Some(true) {
                // userfaultfd_register_range() skips a VMA this userfaultfd holds with every
                // bit asked for already (another userfaultfd's would have made the call fail).
                v.change_flags(bits, HiddenFlags::UFFD & !bits);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::model::Mapping;
    use crate::table::test_support::{
        EFAULT_RET, EINVAL_RET, Kernel, MREMAP_MAYMOVE, NONE, OK, P, R, RW, UFFD_WP, anon, at,
        empty, lines, mapping, mremap, run, shared_zero_pages, table, uffd_register, vma,
    };
    use crate::table::vma::HiddenFlags;
    use crate::table::{AddressSpace, VmaOracle};
    use pmap_common::linux::{MREMAP_DONTUNMAP, MREMAP_FIXED};

    fn uffd_unregister(page: u64, pages: u64) -> Call {
        Call::UffdUnregister {
            fd: 3,
            start: at(page),
            len: pages * P,
        }
    }

    const UFFD_MISSING: u64 = 1;

    /// An oracle for calls the table must apply without asking.
    struct NoQuestions;

    impl VmaOracle for NoQuestions {
        fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
            panic!("asked the kernel about {addr:#x}")
        }
    }

    /// Pages 0 and 1 (rw-p, r--p) with page 1 registered with a userfaultfd, and a ---p
    /// mapping at 10-12 where a fixed move of both is bound.
    fn registered_second_source() -> AddressSpace {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 1, RW), at(0) as i64),
                (anon(at(1), 1, R), at(1) as i64),
                (anon(at(10), 2, NONE), at(10) as i64),
                (uffd_register(1, 1, UFFD_WP), OK),
            ],
        );
        s
    }

    #[test]
    fn a_fixed_move_stops_with_efault_at_a_vma_registered_with_userfaultfd() {
        // Seen in the random walk (seed 6, every call): vma_multi_allowed() refuses to move a
        // userfaultfd-registered VMA in a batch. Refused after the first VMA, the call fails
        // with EFAULT keeping the move before, and the refused VMA's destination is not
        // unmapped (the check comes before mremap_to()).
        for flags in [
            MREMAP_MAYMOVE | MREMAP_FIXED,
            MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
        ] {
            let mut s = registered_second_source();
            s.apply(
                &mremap(at(0), 2, 2, flags, at(10)),
                EFAULT_RET,
                &mut NoQuestions,
            );
            let source_kept = flags & MREMAP_DONTUNMAP != 0;
            let expected: Vec<_> = [
                (0, 1, "rw-p", 0, 0, ""),
                (1, 2, "r--p", 0, 0, ""),
                (10, 11, "rw-p", 0, 0, ""),
                (11, 12, "---p", 0, 0, ""),
            ]
            .into_iter()
            .filter(|row| row.0 != 0 || source_kept)
            .collect();
            assert_eq!(lines(&s), table(&expected), "flags {flags:#x}");
        }
    }

    #[test]
    fn a_fixed_move_whose_first_vma_is_registered_with_userfaultfd_and_not_all_fails_whole() {
        let mut s = registered_second_source();
        run(&mut s, &[(uffd_register(0, 1, UFFD_WP), OK)]);
        let before = lines(&s);
        let call = mremap(at(0), 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, at(10));
        s.apply(&call, EFAULT_RET, &mut NoQuestions);
        assert_eq!(lines(&s), before);
    }

    #[test]
    fn a_fixed_move_failing_with_efault_asks_whether_a_vma_of_unknown_registration_moved() {
        // Seeded VMAs: whether a userfaultfd holds them is not known.
        let seeded = || {
            AddressSpace::from_mappings(
                vec![
                    mapping((0, 1), "rw-p", 0, 0, ""),
                    mapping((1, 2), "r--p", 0, 0, ""),
                    mapping((10, 12), "---p", 0, 0, ""),
                ],
                0,
            )
        };
        let call = mremap(at(0), 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, at(10));
        // The kernel still has page 0: the first VMA was refused, and nothing moved.
        let mut s = seeded();
        let mut kernel = Kernel(vec![
            mapping((0, 1), "rw-p", 0, 0, ""),
            mapping((1, 2), "r--p", 0, 0, ""),
            mapping((10, 12), "---p", 0, 0, ""),
        ]);
        s.apply(&call, EFAULT_RET, &mut kernel);
        assert_eq!(lines(&s), lines(&seeded()));
        // Page 0 is gone: it moved, and page 1 was refused.
        let mut s = seeded();
        let mut kernel = Kernel(vec![
            mapping((1, 2), "r--p", 0, 0, ""),
            mapping((10, 11), "rw-p", 0, 0, ""),
            mapping((11, 12), "---p", 0, 0, ""),
        ]);
        s.apply(&call, EFAULT_RET, &mut kernel);
        assert_eq!(
            lines(&s),
            table(&[
                (1, 2, "r--p", 0, 0, ""),
                (10, 11, "rw-p", 0, 0, ""),
                (11, 12, "---p", 0, 0, ""),
            ])
        );
    }

    #[test]
    fn a_move_bordering_its_source_vma_may_drop_the_registration_of_what_stays() {
        // Seen in the random walk (seed 98, every call): mremap moved the head of a registered
        // VMA to just below it; copy_vma() merged the copy with the source VMA itself, and
        // mremap_userfaultfd_prep() cleared the registration of that merged VMA, so the part
        // that stayed lost it too (the userfaultfd had no UFFD_FEATURE_EVENT_REMAP).
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(4), 4, RW), at(4) as i64),
                (uffd_register(4, 4, UFFD_WP), OK),
                (
                    mremap(at(4), 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, at(3)),
                    at(3) as i64,
                ),
            ],
        );
        assert_eq!(vma(&s, 5).flag(HiddenFlags::UFFD_WP), None);
        // A destination apart from the source VMA leaves what stays registered; the table,
        // which may hold pieces of one kernel VMA apart, only forgets it.
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(4), 4, RW), at(4) as i64),
                (uffd_register(4, 4, UFFD_WP), OK),
                (
                    mremap(at(4), 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, at(1)),
                    at(1) as i64,
                ),
            ],
        );
        assert_ne!(vma(&s, 5).flag(HiddenFlags::UFFD_WP), Some(false));
    }

    #[test]
    fn userfaultfd_registration_splits_and_unregistration_merges_back() {
        let mut s = shared_zero_pages(4);
        let split = table(&[
            (0, 1, "rw-s", 0, 0x9, "/dev/zero (deleted)"),
            (1, 3, "rw-s", 0x1000, 0x9, "/dev/zero (deleted)"),
            (3, 4, "rw-s", 0x3000, 0x9, "/dev/zero (deleted)"),
        ]);
        run(&mut s, &[(uffd_register(1, 2, UFFD_MISSING), OK)]);
        assert_eq!(lines(&s), split);
        run(
            &mut s,
            &[
                // Registered already with that mode: skipped, no split.
                (uffd_register(2, 1, UFFD_MISSING), OK),
                // Refused before any VMA changed.
                (uffd_register(0, 4, UFFD_WP), EINVAL_RET),
            ],
        );
        assert_eq!(lines(&s), split);
        // Another mode replaces the flags of the part it covers.
        run(&mut s, &[(uffd_register(2, 1, UFFD_WP), OK)]);
        assert_eq!(lines(&s).len(), 4);
        run(&mut s, &[(uffd_unregister(0, 4), OK)]);
        assert_eq!(
            lines(&s),
            table(&[(0, 4, "rw-s", 0, 0x9, "/dev/zero (deleted)")])
        );
    }

    #[test]
    fn equal_userfaultfd_registrations_merge_only_when_the_kernel_says_so() {
        let mut s = shared_zero_pages(4);
        run(
            &mut s,
            &[
                (uffd_register(1, 1, UFFD_MISSING), OK),
                (uffd_register(2, 1, UFFD_MISSING), OK),
            ],
        );
        // Two descriptors of one userfaultfd, or two userfaultfds: only the kernel knows.
        assert_eq!(lines(&s).len(), 4);
        let mut kernel = Kernel(vec![
            mapping((0, 1), "rw-s", 0, 0x9, "/dev/zero (deleted)"),
            mapping((1, 3), "rw-s", 0x1000, 0x9, "/dev/zero (deleted)"),
            mapping((3, 4), "rw-s", 0x3000, 0x9, "/dev/zero (deleted)"),
        ]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(lines(&s).len(), 3);
    }

    #[test]
    fn a_move_of_several_vmas_stops_at_one_a_userfaultfd_arms() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(2), 2, R), at(2) as i64),
                (uffd_register(2, 2, UFFD_WP), OK),
            ],
        );
        // The first moves; the armed second ends the call with EFAULT and stays.
        let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
        run(&mut s, &[(mremap(at(0), 4, 4, fixed, at(10)), EFAULT_RET)]);
        assert_eq!(
            lines(&s),
            table(&[(2, 4, "r--p", 0, 0, ""), (10, 12, "rw-p", 0, 0, "")])
        );
        // Armed and first with more to move: nothing moves.
        run(
            &mut s,
            &[
                (anon(at(4), 1, RW), at(4) as i64),
                (mremap(at(2), 3, 3, fixed, at(20)), EFAULT_RET),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (2, 4, "r--p", 0, 0, ""),
                (4, 5, "rw-p", 0, 0, ""),
                (10, 12, "rw-p", 0, 0, "")
            ])
        );
    }

    #[test]
    fn a_registered_copy_merged_into_its_neighbour_unregisters_it_whole() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(10), 2, RW), at(10) as i64),
                (uffd_register(0, 2, UFFD_WP), OK),
                (uffd_register(10, 2, UFFD_WP), OK),
                // The copy lands next to [10, 12), registered alike: copy_vma() may merge the
                // two, and mremap_userfaultfd_prep() then unregisters the merged VMA whole.
                (
                    mremap(at(0), 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, at(8)),
                    at(8) as i64,
                ),
            ],
        );
        assert_eq!(vma(&s, 8).flag(HiddenFlags::UFFD_WP), None);
        assert_eq!(vma(&s, 10).flag(HiddenFlags::UFFD_WP), None);
    }

    #[test]
    fn a_moved_userfaultfd_registration_is_no_longer_known() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (uffd_register(0, 2, UFFD_MISSING), OK),
                (
                    mremap(at(0), 2, 2, MREMAP_MAYMOVE | MREMAP_FIXED, at(8)),
                    at(8) as i64,
                ),
            ],
        );
        assert_eq!(vma(&s, 8).flag(HiddenFlags::UFFD_MISSING), None);
    }

    #[test]
    fn a_registered_neighbour_reached_by_a_grown_copy_is_no_longer_known() {
        // move_vma() makes the copy at its new length, which reaches the registered VMA at
        // page 8: merged with it (same userfaultfd), the whole is unregistered (walk seed 301).
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(8), 2, RW), at(8) as i64),
                (uffd_register(0, 2, UFFD_WP), OK),
                (uffd_register(8, 2, UFFD_WP), OK),
                (
                    mremap(at(0), 2, 3, MREMAP_MAYMOVE | MREMAP_FIXED, at(5)),
                    at(5) as i64,
                ),
            ],
        );
        assert_eq!(vma(&s, 8).flag(HiddenFlags::UFFD_WP), None);
    }
}
