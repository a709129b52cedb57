//! Changes to existing ranges: mprotect/pkey_mprotect (`mprotect_fixup()`, `mm/mprotect.c`),
//! madvise flag changes (`madvise_update_vma()`, `mm/madvise.c`) and mlock/munlock/mlockall
//! (`mlock_fixup()`, `mm/mlock.c`): each VMA of the range changed in turn, split and merged as
//! `vma_modify_flags()` does, stopping where the kernel stops.

use super::AddressSpace;
use super::vma::{HiddenFlags, Vma};
use crate::model::{PAGE_SIZE, Perms, page_align_up};
use pmap_common::linux::{
    EACCES, EINVAL, ENOMEM, EPERM, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK,
    MADV_HUGEPAGE, MADV_KEEPONFORK, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_RANDOM,
    MADV_SEQUENTIAL, MADV_UNMERGEABLE, MADV_WIPEONFORK, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT,
    PROT_EXEC, PROT_READ, PROT_WRITE,
};

/// mprotect_fixup() on one VMA: new access bits, and the accounting that follows them.
pub(super) fn mprotect_vma(vma: &mut Vma, wanted: Perms) {
    let old = vma.mapping.perms;
    let new = Perms {
        shared: old.shared,
        ..wanted
    };
    if !std::mem::take(&mut vma.maybe_perms).is_empty() {
        // The access before this call is uncertain, and so is what it changes.
        vma.mapping.perms = new;
        vma.unknown |= HiddenFlags::ACCOUNT;
        if new.write {
            vma.set_flag(HiddenFlags::MAYWRITE, Some(true));
        }
        return;
    }
    if new == old {
        return;
    }
    if new.write {
        // It was allowed, so the mapping may be written.
        vma.set_flag(HiddenFlags::MAYWRITE, Some(true));
        // Making a private mapping writable charges it, unless it is already accounted,
        // writable, shared or MAP_NORESERVE.
        if !(old.write || old.shared) {
            let charged = match (
                vma.flag(HiddenFlags::ACCOUNT),
                vma.flag(HiddenFlags::NORESERVE),
            ) {
                (Some(true), _) | (_, Some(false)) => Some(true),
                (Some(false), Some(true)) => Some(false),
                _ => None,
            };
            vma.set_flag(HiddenFlags::ACCOUNT, charged);
        }
    } else if vma.is_private_anon() && vma.flag(HiddenFlags::ACCOUNT) != Some(false) {
        // Making anonymous memory read-only uncharges it only if no page of it was ever
        // written (no anon_vma), which the events cannot tell.
        vma.set_flag(HiddenFlags::ACCOUNT, None);
    }
    vma.mapping.perms = new;
}

pub(super) fn perms_from_prot(prot: u64) -> Perms {
    Perms {
        read: prot & PROT_READ != 0,
        write: prot & PROT_WRITE != 0,
        exec: prot & PROT_EXEC != 0,
        shared: false,
    }
}

/// The hidden flags an madvise advice sets and clears, for the advices that change them.
pub(super) fn madvise_flag_change(advice: u64) -> Option<(u32, u32)> {
    Some(match advice {
        MADV_NORMAL => (0, HiddenFlags::SEQ_READ | HiddenFlags::RAND_READ),
        MADV_RANDOM => (HiddenFlags::RAND_READ, HiddenFlags::SEQ_READ),
        MADV_SEQUENTIAL => (HiddenFlags::SEQ_READ, HiddenFlags::RAND_READ),
        MADV_HUGEPAGE => (HiddenFlags::HUGEPAGE, HiddenFlags::NOHUGEPAGE),
        MADV_NOHUGEPAGE => (HiddenFlags::NOHUGEPAGE, HiddenFlags::HUGEPAGE),
        MADV_DONTFORK => (HiddenFlags::DONTFORK, 0),
        MADV_DOFORK => (0, HiddenFlags::DONTFORK),
        MADV_WIPEONFORK => (HiddenFlags::WIPEONFORK, 0),
        MADV_KEEPONFORK => (0, HiddenFlags::WIPEONFORK),
        MADV_MERGEABLE => (HiddenFlags::MERGEABLE, 0),
        MADV_UNMERGEABLE => (0, HiddenFlags::MERGEABLE),
        MADV_DONTDUMP => (HiddenFlags::DONTDUMP, 0),
        MADV_DODUMP => (0, HiddenFlags::DONTDUMP),
        _ => return None,
    })
}

/// Whether mprotect refuses `vma` the access `wanted` (EACCES), if the table can tell: writing
/// needs VM_MAYWRITE, which a shared mapping of a file opened read-only lacks; exec needs
/// VM_MAYEXEC, which a file on a noexec mount lacks.
pub(super) fn refuses_access(vma: &Vma, wanted: Perms) -> Option<bool> {
    let write = if wanted.write && vma.mapping.perms.shared && vma.has_file() {
        vma.flag(HiddenFlags::MAYWRITE).map(|may| !may)
    } else {
        Some(false)
    };
    let exec = if wanted.exec && vma.has_file() && !vma.mapping.perms.exec {
        None
    } else {
        Some(false)
    };
    match (write, exec) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// Whether madvise_vma_behavior() refuses `advice` on `vma`, if the table can tell (a VMA
/// whose seal it lost track of may refuse).
pub(super) fn madvise_refuses(advice: u64, vma: &Vma) -> Option<bool> {
    // can_madvise_modify(): DONTFORK and WIPEONFORK count as discarding data, which sealed
    // read-only anonymous memory refuses (EPERM).
    let discard = matches!(advice, MADV_DONTFORK | MADV_WIPEONFORK)
        && vma.is_private_anon()
        && !vma.mapping.perms.write;
    let invalid = match advice {
        // Only private anonymous memory can be wiped in a child (EINVAL).
        MADV_WIPEONFORK => vma.has_file(),
        MADV_DODUMP => vma.is_special(),
        _ => false,
    };
    if invalid {
        Some(true)
    } else if discard {
        vma.flag(HiddenFlags::SEALED)
    } else {
        Some(false)
    }
}

impl AddressSpace {
    pub(super) fn apply_mprotect(&mut self, addr: u64, len: u64, prot: u64, errno: Option<i64>) {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return;
        }
        let end = addr.saturating_add(page_align_up(len));
        let wanted = perms_from_prot(prot);
        // do_mprotect_pkey() changes VMA by VMA from `addr` and stops at the first hole
        // (ENOMEM), sealed VMA (EPERM) or VMA that may not get the access (EACCES), keeping
        // what it changed before.
        let (done, maybe) = match errno {
            None => (end, end),
            // No refusing VMA came before the hole, or the error would be another.
            Some(ENOMEM) => {
                let hole = self.run_end(addr, end, |_| true);
                (hole, hole)
            }
            Some(EPERM) => self.refused_at(addr, end, |v| v.flag(HiddenFlags::SEALED)),
            Some(EACCES) => self.refused_at(addr, end, |v| refuses_access(v, wanted)),
            Some(_) => (addr, addr),
        };
        if errno == Some(EACCES) && wanted.write && done == maybe {
            // Learnt: the VMA that refused writing maps a file opened read-only.
            if let Some((_, v)) = self.vmas.range_mut(..=done).next_back()
                && v.mapping.start == done
                && v.mapping.perms.shared
            {
                v.set_flag(HiddenFlags::MAYWRITE, Some(false));
            }
        }
        self.update_range(addr, done, |v| mprotect_vma(v, wanted));
        if done < maybe {
            // A VMA whose access is already in doubt (an earlier failed call may have changed
            // it) may have been cut where this call may have started or stopped changing it,
            // even where the table's guess is the access asked: keep the cut pending, for the
            // dump to settle both sides.
            for boundary in [done, maybe] {
                if self
                    .vma_at(boundary)
                    .is_some_and(|v| v.mapping.start < boundary && !v.maybe_perms.is_empty())
                {
                    self.split_at(boundary);
                    self.vmas.get_mut(&boundary).expect("just cut").pending_left = true;
                }
            }
        }
        self.update_range(done, maybe, |v| {
            let applied = Perms {
                shared: v.mapping.perms.shared,
                ..wanted
            };
            if applied != v.mapping.perms && !v.maybe_perms.contains(applied) {
                v.maybe_perms = v.maybe_perms.with(applied);
                v.unknown |= HiddenFlags::ACCOUNT | HiddenFlags::MAYWRITE;
            }
        });
    }

    /// How far a call walking `[start, end)` VMA by VMA got, given that a VMA before the first
    /// hole refused it: `(done, maybe)`, where it surely changed `[start, done)` and may have
    /// changed `[done, maybe)`. `refuses` says whether a VMA refuses (None: the table cannot
    /// tell). The refusing VMA is the first that surely refuses when none before it might, or
    /// the only one that might when none surely does; else the kernel is to settle it.
    pub(super) fn refused_at(
        &self,
        start: u64,
        end: u64,
        refuses: impl Fn(&Vma) -> Option<bool>,
    ) -> (u64, u64) {
        let mut run = Vec::new();
        let hole = self.run_end(start, end, |v| {
            run.push((v.mapping.start.max(start), refuses(v)));
            true
        });
        let sure = run
            .iter()
            .find(|&&(_, r)| r == Some(true))
            .map(|&(at, _)| at);
        let maybes: Vec<u64> = run
            .iter()
            .filter(|&&(at, r)| r.is_none() && sure.is_none_or(|s| at < s))
            .map(|&(at, _)| at)
            .collect();
        match (sure, maybes.as_slice()) {
            (Some(at), []) => (at, at),
            (None, &[at]) => (at, at),
            (sure, maybes) => (
                maybes.first().copied().unwrap_or(start),
                sure.unwrap_or(hole),
            ),
        }
    }

    pub(super) fn apply_madvise(&mut self, addr: u64, len: u64, advice: u64, errno: Option<i64>) {
        let Some((set, clear)) = madvise_flag_change(advice) else {
            return;
        };
        if !addr.is_multiple_of(PAGE_SIZE) {
            return;
        }
        let end = addr.saturating_add(page_align_up(len));
        // madvise_walk_vmas() skips holes (ENOMEM at the end) and stops at the first VMA that
        // refuses the advice (EINVAL, EPERM), keeping what it changed before.
        let (stop, maybe) = match errno {
            None | Some(ENOMEM) => (end, end),
            Some(EINVAL | EPERM) => self.madvise_refused_at(advice, addr, end),
            Some(_) => (addr, addr),
        };
        self.update_range(addr, stop, |v| {
            // ksm_madvise() ignores MADV_MERGEABLE on shared and special mappings.
            if set == HiddenFlags::MERGEABLE && (v.mapping.perms.shared || v.is_special()) {
                return;
            }
            v.change_flags(set, clear);
        });
        if stop < maybe {
            // The refusing VMA is one of several the table cannot tell apart: the advice may
            // have reached the VMAs between, whose flags are no longer known, cut the first
            // where it starts, and merged each with the one before or after; those boundaries
            // are left for the dump to settle. (After the sure part: a pending boundary at its
            // end would read as one the kernel may not have.)
            self.split_at(stop);
            let in_doubt: Vec<u64> = self
                .overlapping(stop, maybe)
                .map(|v| v.mapping.start)
                .collect();
            for &start in &in_doubt {
                self.vmas.get_mut(&start).expect("overlapping VMA").unknown |= set | clear;
            }
            for boundary in in_doubt.into_iter().chain([maybe]) {
                let adjacent = self
                    .vma_at(boundary - 1)
                    .is_some_and(|v| v.mapping.end == boundary);
                if let Some(v) = self.vmas.get_mut(&boundary).filter(|_| adjacent) {
                    v.pending_left = true;
                }
            }
        }
    }

    /// Where a refused madvise over `[start, end)` stopped: `(done, maybe)`, where it surely
    /// changed what comes before `done` and may have changed up to `maybe`. The refusing VMA
    /// is the first that surely refuses when none before it might, or the only one that might
    /// when none surely does; none at all: the arguments were invalid.
    fn madvise_refused_at(&self, advice: u64, start: u64, end: u64) -> (u64, u64) {
        let mut maybes = Vec::new();
        for v in self.overlapping(start, end) {
            let at = v.mapping.start.max(start);
            match madvise_refuses(advice, v) {
                Some(true) => {
                    return match maybes.first() {
                        None => (at, at),
                        Some(&first) => (first, at),
                    };
                }
                Some(false) => {}
                None => maybes.push(at),
            }
        }
        match maybes.as_slice() {
            [] => (start, start),
            &[only] => (only, only),
            [first, .., last] => (*first, *last),
        }
    }

    /// mlock, mlock2 and munlock: set the VMAs' lock bits to `bits`.
    pub(super) fn apply_mlock(&mut self, addr: u64, len: u64, bits: u32, errno: Option<i64>) {
        if len == 0 {
            return;
        }
        // They round the start down and the length up to whole pages.
        let start = addr & !(PAGE_SIZE - 1);
        let end = page_align_up(addr.saturating_add(len));
        // apply_vma_lock_flags() changes VMA by VMA and stops at the first hole (ENOMEM); when
        // it got through, mlock then populates the range and reports ENOMEM for pages it
        // cannot fault in (PROT_NONE, a file's end) — after the flags are set. (A refusal
        // for RLIMIT_MEMLOCK is ENOMEM too, before anything is set; this reads it as the
        // former.)
        let stop = match errno {
            None => end,
            Some(ENOMEM) => self.run_end(start, end, |_| true),
            Some(_) => start,
        };
        self.update_range(start, stop, |v| {
            // mlock_fixup() leaves special mappings alone.
            if !v.is_special() {
                v.change_flags(bits, HiddenFlags::LOCKED_MASK & !bits);
            }
        });
    }

    /// mlockall (`flags`) and munlockall (0): apply_mlockall_flags().
    pub(super) fn apply_mlockall(&mut self, flags: u64) {
        let onfault = if flags & MCL_ONFAULT != 0 {
            HiddenFlags::LOCKONFAULT
        } else {
            0
        };
        self.future_lock = if flags & MCL_FUTURE != 0 {
            HiddenFlags::LOCKED | onfault
        } else {
            0
        };
        let bits = if flags & MCL_CURRENT != 0 {
            HiddenFlags::LOCKED | onfault
        } else if flags == 0 {
            0
        } else {
            // MCL_FUTURE alone leaves the current mappings as they are.
            return;
        };
        self.update_range(0, u64::MAX, |v| {
            if !v.is_special() {
                v.change_flags(bits, HiddenFlags::LOCKED_MASK & !bits);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::table::AddressSpace;
    use crate::table::merge::MergeRule;
    use crate::table::test_support::{
        EINVAL_RET, ENOMEM_RET, EPERM_RET, Kernel, MAP_SHARED, NONE, OK, P, R, RW, SHARED_ANON,
        anon, at, empty, lines, mapping, mlock2, mmap, mprotect, run, shared_zero_pages, table,
        vma,
    };
    use crate::table::vma::HiddenFlags;
    use pmap_common::linux::{
        EACCES, MADV_DOFORK, MADV_DONTFORK, MADV_MERGEABLE, MADV_WIPEONFORK, MAP_FIXED,
        MAP_PRIVATE, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT, PROT_EXEC, PROT_READ,
        PROT_WRITE,
    };

    const EACCES_RET: i64 = -EACCES;

    fn madvise(addr: u64, pages: u64, advice: u64) -> Call {
        Call::Madvise {
            addr,
            len: pages * P,
            advice,
        }
    }

    #[test]
    fn a_change_that_makes_a_range_equal_to_both_sides_asks_about_each() {
        // vma_merge_existing_range(): mprotect makes the middle equal to both neighbours,
        // all three written apart; the kernel joins the left one (the middle's anon_vma, or
        // none, agrees with it) and not the right one.
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(2), 1, R), at(2) as i64),
                (anon(at(3), 2, RW), at(3) as i64),
                (mprotect(at(2), 1, RW), OK),
            ],
        );
        assert!(vma(&s, 2).pending_left && vma(&s, 3).pending_left);
        assert_eq!(s.merge_tally().count(MergeRule::ExistingRangeBridged), 1);
        let kernel = vec![
            mapping((0, 3), "rw-p", 0, 0, ""),
            mapping((3, 5), "rw-p", 0, 0, ""),
        ];
        let expected = kernel.clone();
        s.refresh_growing_mappings(&mut Kernel(kernel));
        assert_eq!(s.to_mappings(), expected);
    }

    #[test]
    fn a_change_over_several_vmas_merges_each_with_the_one_before_as_it_goes() {
        // vma_merge_existing_range() per VMA, in address order: shared memory (no anon_vma)
        // changed over three pieces joins into one with both outer neighbours.
        let mut s = shared_zero_pages(6);
        run(
            &mut s,
            &[
                (mprotect(at(1), 1, R), OK),
                (mprotect(at(3), 1, R), OK),
                (mprotect(at(2), 1, PROT_READ | PROT_EXEC), OK),
                (mprotect(at(1), 3, RW), OK),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[(0, 6, "rw-s", 0, 0x9, "/dev/zero (deleted)")])
        );
    }

    #[test]
    fn a_refused_madvise_stops_at_the_only_vma_whose_seal_is_unknown() {
        // can_madvise_modify(): MADV_DONTFORK on sealed read-only anonymous memory is EPERM,
        // after the VMAs before it changed. The read-only VMA read from /proc may be sealed;
        // the writable one before it cannot refuse: it was changed.
        let seeded = vec![
            mapping((0, 2), "rw-p", 0, 0, ""),
            mapping((3, 4), "r--p", 0, 0, ""),
        ];
        let mut s = AddressSpace::from_mappings(seeded, 0);
        run(&mut s, &[(madvise(at(0), 4, MADV_DONTFORK), EPERM_RET)]);
        assert_eq!(s.hidden_flag_at(at(0), HiddenFlags::DONTFORK), Some(true));
        assert_eq!(s.hidden_flag_at(at(3), HiddenFlags::DONTFORK), None);
    }

    #[test]
    fn a_vma_that_may_have_refused_a_madvise_is_cut_pending_the_kernel() {
        // MADV_WIPEONFORK stops with EINVAL at the file mapping; the read-only anonymous VMA
        // read from /proc before it may be sealed (EPERM, before changing it) or not (changed
        // from the call's start, and cut there).
        let seeded = vec![
            mapping((0, 4), "r--p", 0, 0, ""),
            mapping((4, 5), "r--p", 0, 0x5, "/f"),
        ];
        for kernel_cut in [true, false] {
            let mut s = AddressSpace::from_mappings(seeded.clone(), 0);
            run(&mut s, &[(madvise(at(2), 3, MADV_WIPEONFORK), EINVAL_RET)]);
            assert!(vma(&s, 2).pending_left);
            let kernel = if kernel_cut {
                vec![
                    mapping((0, 2), "r--p", 0, 0, ""),
                    mapping((2, 4), "r--p", 0, 0, ""),
                    seeded[1].clone(),
                ]
            } else {
                seeded.clone()
            };
            s.refresh_growing_mappings(&mut Kernel(kernel.clone()));
            assert_eq!(s.to_mappings(), kernel);
        }
    }

    // mprotect

    #[test]
    fn mprotect_splits_and_restoring_shared_memory_merges_it_again() {
        let mut s = empty();
        let mut kernel = Kernel(vec![mapping(
            (0, 4),
            "rw-s",
            0,
            0x99,
            "/dev/zero (deleted)",
        )]);
        s.apply(
            &mmap(0, 4, RW, SHARED_ANON, -1, 0),
            at(0) as i64,
            &mut kernel,
        );
        run(&mut s, &[(mprotect(at(1), 2, R), OK)]);
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "rw-s", 0, 0x99, "/dev/zero (deleted)"),
                (1, 3, "r--s", 0x1000, 0x99, "/dev/zero (deleted)"),
                (3, 4, "rw-s", 0x3000, 0x99, "/dev/zero (deleted)"),
            ])
        );
        // Shared memory never has an anon_vma: the pieces merge again without asking.
        run(&mut s, &[(mprotect(at(1), 2, RW), OK)]);
        assert_eq!(
            lines(&s),
            table(&[(0, 4, "rw-s", 0, 0x99, "/dev/zero (deleted)")])
        );
    }

    #[test]
    fn restoring_private_memory_leaves_the_merge_to_the_kernel_at_the_dump() {
        for (kernel_merged, expected) in [
            (true, table(&[(0, 4, "rw-p", 0, 0, "")])),
            // Written while apart, the pieces hold different anon_vmas and stay apart.
            (
                false,
                table(&[
                    (0, 1, "rw-p", 0, 0, ""),
                    (1, 3, "rw-p", 0, 0, ""),
                    (3, 4, "rw-p", 0, 0, ""),
                ]),
            ),
        ] {
            let mut s = empty();
            run(
                &mut s,
                &[
                    (anon(at(0), 4, RW), at(0) as i64),
                    (mprotect(at(1), 2, R), OK),
                    (mprotect(at(1), 2, RW), OK),
                ],
            );
            assert_eq!(s.vmas.len(), 3, "kept apart until the dump");
            assert!(vma(&s, 1).pending_left && vma(&s, 3).pending_left);
            let mut kernel = Kernel(if kernel_merged {
                vec![mapping((0, 4), "rw-p", 0, 0, "")]
            } else {
                vec![
                    mapping((0, 1), "rw-p", 0, 0, ""),
                    mapping((1, 3), "rw-p", 0, 0, ""),
                    mapping((3, 4), "rw-p", 0, 0, ""),
                ]
            });
            s.refresh_growing_mappings(&mut kernel);
            assert_eq!(lines(&s), expected);
        }
    }

    #[test]
    fn an_unrelated_mapping_spanning_a_pending_boundary_is_no_merge() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 4, RW), at(0) as i64),
                (mprotect(at(2), 2, R), OK),
                (mprotect(at(2), 2, RW), OK),
            ],
        );
        // By the dump another mapping (shared, here) spans the boundary.
        let mut kernel = Kernel(vec![mapping((1, 3), "rw-s", 0, 0x5, "/dev/zero (deleted)")]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(
            lines(&s),
            table(&[(0, 2, "rw-p", 0, 0, ""), (2, 4, "rw-p", 0, 0, "")])
        );
    }

    #[test]
    fn a_failed_mprotect_keeps_what_it_changed_before_a_hole() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(3), 2, RW), at(3) as i64),
                (mprotect(at(1), 4, R), ENOMEM_RET),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "rw-p", 0, 0, ""),
                (1, 2, "r--p", 0, 0, ""),
                (3, 5, "rw-p", 0, 0, ""),
            ])
        );
        // Starting in a hole it changes nothing.
        run(&mut s, &[(mprotect(at(2), 2, R), ENOMEM_RET)]);
        assert_eq!(lines(&s).len(), 3);
    }

    #[test]
    fn a_failed_mprotect_stops_at_a_sealed_vma_or_a_read_only_shared_file() {
        let mut s = empty();
        let mut kernel = Kernel(vec![mapping((2, 4), "r--s", 0, 0x42, "/ro")]);
        run(
            &mut s,
            &[
                (anon(at(0), 2, R), at(0) as i64),
                (
                    Call::Mseal {
                        addr: at(1),
                        len: P,
                        flags: 0,
                    },
                    OK,
                ),
            ],
        );
        s.apply(
            &mmap(at(2), 2, R, MAP_SHARED | MAP_FIXED, 5, 0),
            at(2) as i64,
            &mut kernel,
        );
        run(
            &mut s,
            &[
                (mprotect(at(0), 4, PROT_READ | PROT_EXEC), EPERM_RET),
                (mprotect(at(2), 2, RW), EACCES_RET),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "r-xp", 0, 0, ""),
                (1, 2, "r--p", 0, 0, ""),
                (2, 4, "r--s", 0, 0x42, "/ro"),
            ])
        );
        // The only VMA that could refuse writing did: its file was opened read-only.
        assert_eq!(vma(&s, 2).flag(HiddenFlags::MAYWRITE), Some(false));
    }

    #[test]
    fn how_far_a_failed_mprotect_got_is_settled_at_the_dump_when_the_table_cannot_tell() {
        // Seeded VMAs' seals are unknown: any of them might have stopped it.
        let seeded = vec![
            mapping((0, 2), "r--p", 0, 0, ""),
            mapping((2, 4), "r--p", 0, 0, ""),
        ];
        let mut s = AddressSpace::from_mappings(seeded, 0);
        run(&mut s, &[(mprotect(at(0), 4, RW), EPERM_RET)]);
        let mut kernel = Kernel(vec![
            mapping((0, 2), "rw-p", 0, 0, ""),
            mapping((2, 4), "r--p", 0, 0, ""),
        ]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(
            lines(&s),
            table(&[(0, 2, "rw-p", 0, 0, ""), (2, 4, "r--p", 0, 0, "")])
        );
    }

    #[test]
    fn a_vma_in_doubt_is_cut_where_a_second_failed_mprotect_may_have_started() {
        // Seen in the random walk (seed 216, live): two mprotect calls failed with EACCES
        // before a dump, both on shared memory whose MAYWRITE the table did not know. The
        // second, starting inside it, may have cut it where the table's guess already was the
        // access asked; the dump settles each side.
        let seeded = vec![
            mapping((0, 4), "rw-s", 0, 0x9, "/dev/zero (deleted)"),
            mapping((4, 5), "r--s", 0, 0x7, "/f"),
        ];
        let mut s = AddressSpace::from_mappings(seeded, 0);
        run(
            &mut s,
            &[
                (
                    mprotect(at(0), 5, PROT_READ | PROT_WRITE | PROT_EXEC),
                    EACCES_RET,
                ),
                (mprotect(at(2), 3, RW), EACCES_RET),
            ],
        );
        let mut kernel = Kernel(vec![
            mapping((0, 2), "rwxs", 0, 0x9, "/dev/zero (deleted)"),
            mapping((2, 4), "rw-s", 0x2000, 0x9, "/dev/zero (deleted)"),
            mapping((4, 5), "r--s", 0, 0x7, "/f"),
        ]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(
            lines(&s),
            table(&[
                (0, 2, "rwxs", 0, 0x9, "/dev/zero (deleted)"),
                (2, 4, "rw-s", 0x2000, 0x9, "/dev/zero (deleted)"),
                (4, 5, "r--s", 0, 0x7, "/f"),
            ])
        );
    }

    // madvise

    #[test]
    fn madvise_splits_by_hidden_flags_and_skips_holes() {
        let mut s = shared_zero_pages(4);
        run(
            &mut s,
            &[
                (anon(at(5), 2, RW), at(5) as i64),
                // Over a hole: ENOMEM, applied to every mapped part.
                (madvise(at(3), 3, MADV_DONTFORK), ENOMEM_RET),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 3, "rw-s", 0, 0x9, "/dev/zero (deleted)"),
                (3, 4, "rw-s", 0x3000, 0x9, "/dev/zero (deleted)"),
                (5, 6, "rw-p", 0, 0, ""),
                (6, 7, "rw-p", 0, 0, ""),
            ])
        );
        // Undone on the shared memory: it merges back; the flag set again is no change.
        run(
            &mut s,
            &[
                (madvise(at(3), 1, MADV_DOFORK), OK),
                (madvise(at(5), 1, MADV_DONTFORK), OK),
            ],
        );
        assert_eq!(lines(&s).len(), 3);
    }

    #[test]
    fn madvise_stops_at_the_vma_that_refuses_the_advice() {
        let mut s = empty();
        let mut kernel = Kernel(vec![mapping((2, 3), "r--p", 0, 0x3, "/f")]);
        run(&mut s, &[(anon(at(0), 2, RW), at(0) as i64)]);
        s.apply(
            &mmap(at(2), 1, R, MAP_PRIVATE | MAP_FIXED, 3, 0),
            at(2) as i64,
            &mut kernel,
        );
        run(
            &mut s,
            &[
                (anon(at(3), 1, RW), at(3) as i64),
                // Only private anonymous memory can be wiped on fork: the file refuses.
                (madvise(at(1), 3, MADV_WIPEONFORK), EINVAL_RET),
            ],
        );
        assert_eq!(vma(&s, 1).flag(HiddenFlags::WIPEONFORK), Some(true));
        assert_eq!(vma(&s, 0).flag(HiddenFlags::WIPEONFORK), Some(false));
        assert_eq!(vma(&s, 3).flag(HiddenFlags::WIPEONFORK), Some(false));
        assert_eq!(lines(&s).len(), 4);
    }

    #[test]
    fn mergeable_is_ignored_on_shared_memory() {
        let mut s = shared_zero_pages(4);
        run(&mut s, &[(madvise(at(1), 1, MADV_MERGEABLE), OK)]);
        assert_eq!(lines(&s).len(), 1);
    }

    // mlock, mlockall

    #[test]
    fn mlock_that_cannot_populate_still_locks_up_to_the_first_hole() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 4, NONE), at(0) as i64),
                (anon(at(5), 1, NONE), at(5) as i64),
                // Faulting in PROT_NONE pages fails after the flags are set: ENOMEM.
                (
                    Call::Mlock {
                        addr: at(1),
                        len: 5 * P,
                    },
                    ENOMEM_RET,
                ),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "---p", 0, 0, ""),
                (1, 4, "---p", 0, 0, ""),
                (5, 6, "---p", 0, 0, ""),
            ])
        );
        assert_eq!(vma(&s, 1).flag(HiddenFlags::LOCKED), Some(true));
        assert_eq!(vma(&s, 5).flag(HiddenFlags::LOCKED), Some(false));
    }

    #[test]
    fn mlock2_without_onfault_and_mlockall_reset_the_whole_lock_state() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (mlock2(at(0), 2, MLOCK_ONFAULT), OK),
                (mlock2(at(0), 1, 0), OK),
            ],
        );
        assert_eq!(
            vma(&s, 0).flags.0 & HiddenFlags::LOCKED_MASK,
            HiddenFlags::LOCKED
        );
        assert_eq!(
            vma(&s, 1).flags.0 & HiddenFlags::LOCKED_MASK,
            HiddenFlags::LOCKED_MASK
        );
        run(
            &mut s,
            &[
                (
                    Call::Mlockall {
                        flags: MCL_FUTURE | MCL_ONFAULT,
                    },
                    OK,
                ),
                (anon(at(4), 1, RW), at(4) as i64),
            ],
        );
        assert_eq!(
            vma(&s, 4).flags.0 & HiddenFlags::LOCKED_MASK,
            HiddenFlags::LOCKED_MASK
        );
        // MCL_CURRENT alone ends MCL_FUTURE, and sets every VMA's lock bits to its own.
        run(
            &mut s,
            &[
                (Call::Mlockall { flags: MCL_CURRENT }, OK),
                (anon(at(6), 1, RW), at(6) as i64),
            ],
        );
        assert_eq!(
            vma(&s, 1).flags.0 & HiddenFlags::LOCKED_MASK,
            HiddenFlags::LOCKED
        );
        assert_eq!(vma(&s, 6).flags.0 & HiddenFlags::LOCKED_MASK, 0);
    }
}
