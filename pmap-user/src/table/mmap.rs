//! Mappings made and unmapped: mmap (with or without a hint, MAP_FIXED), munmap and brk, as
//! `do_mmap()`/`mmap_region()`, `do_vmi_munmap()` and `do_brk_flags()` (Linux 6.18
//! `mm/mmap.c`, `mm/vma.c`) apply them.

use super::merge::MergeEntry;
use super::protect::perms_from_prot;
use super::vma::{AnonVma, HiddenFlags, PermsSet, VmOps, Vma, unknown};
use super::{AddressSpace, VmaOracle};
use crate::model::{Device, Mapping, PAGE_SIZE, Perms, page_align_up};
use pmap_common::linux::{
    MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_STACK, MAP_TYPE,
};

impl AddressSpace {
    pub(super) fn apply_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        offset: u64,
        oracle: &mut dyn VmaOracle,
    ) {
        let end = addr.saturating_add(page_align_up(len));
        let shared = flags & MAP_TYPE != MAP_PRIVATE;
        let anonymous = flags & MAP_ANONYMOUS != 0;
        let perms = Perms {
            shared,
            ..perms_from_prot(prot)
        };
        let mut mapping = Mapping {
            start: addr,
            end,
            perms,
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: Vec::new(),
        };
        let mut pgoff = addr / PAGE_SIZE;
        let mut unknown = 0;
        if !anonymous || shared {
            // File identity (and the shmem object behind shared anonymous memory) is not in the
            // arguments: ask the kernel. Its answer describes the address now, which may be a
            // later mapping; take it only if it fits this one (a new shmem object starts at
            // offset 0 and merges with nothing), else resolve it before the next dump.
            mapping.offset = if anonymous { 0 } else { offset };
            // (A file is told by its inode and offset, which later calls do not change; a
            // shmem object only by being this mapping, with its access and extent.)
            let fits = |m: &Mapping| {
                m.start <= addr
                    && m.end > addr
                    && m.inode != 0
                    && m.offset + (addr - m.start) == mapping.offset
                    && (!anonymous || (m.perms == perms && m.start == addr && m.end == end))
            };
            match oracle.vma_at(addr).filter(fits) {
                Some(now) => {
                    // A name that is no path is the kernel's record of the call (its file's
                    // last component), the file having gone from there since: complete it. A
                    // shmem object has no record, and a later one mapped at the same place
                    // would fit as well: confirm it where the mapping is at the dump, keeping
                    // this answer in case the process is gone by then.
                    if anonymous || !now.name.starts_with(b"/") {
                        unknown |= unknown::IDENTITY;
                    }
                    mapping.device = now.device;
                    mapping.inode = now.inode;
                    mapping.name = now.name;
                }
                None => unknown |= unknown::IDENTITY,
            }
            pgoff = mapping.offset / PAGE_SIZE;
        }
        // calc_vm_flag_bits() and do_mmap().
        let mut hidden = HiddenFlags::default();
        if flags & MAP_GROWSDOWN != 0 {
            hidden = hidden.with(HiddenFlags::GROWSDOWN, 0);
        }
        if flags & MAP_LOCKED != 0 {
            hidden = hidden.with(HiddenFlags::LOCKED, 0);
        }
        if flags & MAP_STACK != 0 {
            // Since Linux 6.7 MAP_STACK means VM_NOHUGEPAGE, for any mapping.
            hidden = hidden.with(HiddenFlags::NOHUGEPAGE, 0);
        }
        if flags & MAP_NORESERVE != 0 {
            // Honoured unless overcommit is off (vm.overcommit_memory = 2), which the events
            // do not tell; accounting depends on it.
            hidden = hidden.with(HiddenFlags::NORESERVE, 0);
            unknown |= HiddenFlags::NORESERVE | HiddenFlags::ACCOUNT;
        } else if !shared && perms.write {
            // accountable_mapping(): private, writable and not MAP_NORESERVE.
            hidden = hidden.with(HiddenFlags::ACCOUNT, 0);
        }
        // A shared mapping of a file may be made writable only if the file was opened for
        // writing, which the call shows only by asking for PROT_WRITE.
        hidden = hidden.with(HiddenFlags::MAYWRITE, 0);
        if shared && !anonymous && !perms.write {
            unknown |= HiddenFlags::MAYWRITE;
        }
        let origin = self.new_origin();
        let anon = if shared {
            AnonVma::Never
        } else {
            AnonVma::Fresh
        };
        self.insert_new(
            Vma {
                mapping,
                flags: hidden,
                unknown,
                anon,
                origin,
                pgoff,
                pending_left: false,
                maybe_perms: PermsSet::default(),
                ops: VmOps::Plain,
            },
            MergeEntry::NewRange,
        );
    }

    /// The heap is `[start_brk, PAGE_ALIGN(brk))`; `new_brk` is the break after the call (the
    /// old one when it failed). brk() unmaps or maps the whole pages in between.
    pub(super) fn apply_brk(&mut self, new_brk: u64) {
        if self.brk != 0 {
            let (old_end, new_end) = (page_align_up(self.brk), page_align_up(new_brk));
            if new_end < old_end {
                self.remove_range(new_end.max(page_align_up(self.start_brk)), old_end);
            } else if new_end > old_end {
                self.grow_heap(old_end, new_end);
            }
        }
        self.brk = new_brk;
    }

    pub(super) fn grow_heap(&mut self, from: u64, to: u64) {
        let origin = self.new_origin();
        let vma = Vma {
            mapping: Mapping {
                start: from,
                end: to,
                perms: Perms {
                    read: true,
                    write: true,
                    exec: false,
                    shared: false,
                },
                offset: 0,
                device: Device::default(),
                inode: 0,
                name: b"[heap]".to_vec(),
            },
            // do_brk_flags(): the heap is always accounted.
            flags: HiddenFlags::default().with(HiddenFlags::ACCOUNT | HiddenFlags::MAYWRITE, 0),
            unknown: 0,
            anon: AnonVma::Fresh,
            origin,
            pgoff: from / PAGE_SIZE,
            pending_left: false,
            maybe_perms: PermsSet::default(),
            ops: VmOps::Plain,
        };
        self.insert_new(vma, MergeEntry::BrkExpand);
    }

    /// An unmap of `[start, end)` refused with EPERM: vms_gather_munmap_vmas() splits the VMA
    /// straddling `start` (unless that one is sealed) before it meets the sealed VMA, and
    /// leaves the split in place.
    pub(super) fn refused_unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let unsealed = |v: &Vma| v.flag(HiddenFlags::SEALED) != Some(true);
        if self.vmas.contains_key(&start) {
            // A pending boundary there: if the kernel had one VMA across it, it split it now,
            // unless that VMA (as the left side, equal to the right) is sealed.
            if self.vma_at(start - 1).is_some_and(unsealed) {
                self.vmas.get_mut(&start).expect("checked").pending_left = false;
            }
        } else if self.vma_at(start).is_some_and(unsealed) {
            self.split_at(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::table::merge::MergeRule;
    use crate::table::test_support::{
        EPERM_RET, Kernel, OK, P, PRIVATE_ANON, R, RW, anon, at, empty, lines, mapping, mmap,
        munmap, run, table, vma,
    };
    use crate::table::{AddressSpace, NoOracle};
    use pmap_common::linux::{MAP_FIXED, MAP_GROWSDOWN, MAP_PRIVATE, MCL_CURRENT};

    // mmap

    #[test]
    fn new_anonymous_mappings_merge_with_an_equal_neighbour_made_by_the_process() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, RW), at(0) as i64),
                (anon(at(2), 2, RW), at(2) as i64),
            ],
        );
        // A new VMA has no anon_vma: the kernel merges it with any compatible neighbour.
        assert_eq!(lines(&s), table(&[(0, 4, "rw-p", 0, 0, "")]));
        run(&mut s, &[(anon(at(4), 1, R), at(4) as i64)]);
        assert_eq!(
            lines(&s),
            table(&[(0, 4, "rw-p", 0, 0, ""), (4, 5, "r--p", 0, 0, "")])
        );
    }

    #[test]
    fn a_file_mapping_takes_its_identity_from_the_kernel_and_offsets_follow_pages() {
        let mut s = empty();
        let mut kernel = Kernel(vec![mapping((0, 3), "r--p", 2 * P, 0x77, "/lib/x.so")]);
        s.apply(
            &mmap(0, 3, R, MAP_PRIVATE, 3, 2 * P),
            at(0) as i64,
            &mut kernel,
        );
        run(&mut s, &[(munmap(at(1), 1), OK)]);
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "r--p", 0x2000, 0x77, "/lib/x.so"),
                (2, 3, "r--p", 0x4000, 0x77, "/lib/x.so"),
            ])
        );
    }

    /// Three-way merges: a range that reaches both its neighbours (6.18 mm/vma.c).
    #[test]
    fn a_new_mapping_between_two_written_ones_joins_the_right_only_if_the_left_agrees() {
        // The case: libc's written .bss (read from /proc) ends at page 2, a written
        // mapping made by the process starts at page 3, and an mmap fills the page between.
        // The new VMA is compatible with each, but can_vma_merge_right() joins the right one
        // too only if the two neighbours' anon_vmas are compatible with each other (at most
        // one has one, or both the same): written apart, they are not, and the kernel extends
        // the left one alone. Unwritten, all three merge. Only the kernel knows which.
        for (neighbours_written, kernel) in [
            (
                true,
                vec![
                    mapping((0, 3), "rw-p", 0, 0, ""),
                    mapping((3, 5), "rw-p", 0, 0, ""),
                ],
            ),
            (false, vec![mapping((0, 5), "rw-p", 0, 0, "")]),
        ] {
            let seeded = vec![mapping((0, 2), "rw-p", 0, 0, "")];
            let mut s = AddressSpace::from_mappings(seeded, 0);
            run(
                &mut s,
                &[
                    (anon(at(3), 2, RW), at(3) as i64),
                    (anon(at(2), 1, RW), at(2) as i64),
                ],
            );
            assert_eq!(s.vmas.len(), 3, "both sides left to the kernel");
            assert!(vma(&s, 2).pending_left && vma(&s, 3).pending_left);
            let tally = s.merge_tally();
            assert_eq!(tally.count(MergeRule::NeighboursCompatibleAsked), 1);
            assert_eq!(tally.count(MergeRule::NewRangeBridged), 1);
            let expected = kernel.clone();
            s.refresh_growing_mappings(&mut Kernel(kernel));
            assert_eq!(s.to_mappings(), expected, "written: {neighbours_written}");
        }
    }

    #[test]
    fn a_new_mapping_joins_the_right_neighbour_alone_when_the_left_differs() {
        // can_vma_merge_right() checks the neighbours against each other only when the left
        // one merges: here it cannot (read-only), so the right one merges without asking.
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 2, R), at(0) as i64),
                (anon(at(3), 2, RW), at(3) as i64),
                (anon(at(2), 1, RW), at(2) as i64),
            ],
        );
        s.refresh_growing_mappings(&mut NoOracle);
        assert_eq!(
            lines(&s),
            table(&[(0, 2, "r--p", 0, 0, ""), (2, 5, "rw-p", 0, 0, "")])
        );
    }

    #[test]
    fn growsdown_mappings_merge_like_any_other() {
        // is_mergeable_vma() has no exception for VM_GROWSDOWN: two equal MAP_GROWSDOWN
        // mappings made by the process are one VMA (checked on 6.18).
        let mut s = empty();
        let growsdown = |page| {
            mmap(
                at(page),
                2,
                RW,
                PRIVATE_ANON | MAP_FIXED | MAP_GROWSDOWN,
                -1,
                0,
            )
        };
        run(
            &mut s,
            &[(growsdown(2), at(2) as i64), (growsdown(0), at(0) as i64)],
        );
        assert_eq!(lines(&s), table(&[(0, 4, "rw-p", 0, 0, "")]));
    }

    #[test]
    fn map_fixed_replaces_the_middle_of_a_mapping() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 6, RW), at(0) as i64),
                (anon(at(2), 2, R), at(2) as i64),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 2, "rw-p", 0, 0, ""),
                (2, 4, "r--p", 0, 0, ""),
                (4, 6, "rw-p", 0, 0, ""),
            ])
        );
    }

    // munmap

    #[test]
    fn munmap_cuts_the_head_the_tail_the_middle_and_across_holes() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 10, RW), at(0) as i64),
                (munmap(at(0), 1), OK),
                (munmap(at(9), 1), OK),
                (munmap(at(4), 2), OK),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[(1, 4, "rw-p", 0, 0, ""), (6, 9, "rw-p", 0, 0, "")])
        );
        // Spanning both mappings and the hole between them, with pieces left outside.
        run(&mut s, &[(munmap(at(3), 4), OK)]);
        assert_eq!(
            lines(&s),
            table(&[(1, 3, "rw-p", 0, 0, ""), (7, 9, "rw-p", 0, 0, "")])
        );
    }

    #[test]
    fn a_munmap_refused_by_sealed_memory_still_splits_at_its_start() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 4, RW), at(0) as i64),
                (anon(at(4), 2, R), at(4) as i64),
                (
                    Call::Mseal {
                        addr: at(4),
                        len: 2 * P,
                        flags: 0,
                    },
                    OK,
                ),
                // vms_gather_munmap_vmas() splits the first VMA, then meets the sealed one.
                (munmap(at(2), 3), EPERM_RET),
                // Starting inside the sealed VMA: it refuses before splitting.
                (munmap(at(5), 1), EPERM_RET),
            ],
        );
        assert_eq!(
            lines(&s),
            table(&[
                (0, 2, "rw-p", 0, 0, ""),
                (2, 4, "rw-p", 0, 0, ""),
                (4, 6, "r--p", 0, 0, ""),
            ])
        );
    }

    // brk

    #[test]
    fn brk_makes_the_heap_grows_it_and_shrinks_it() {
        let start_brk = at(0) + 0x123;
        let mut s = AddressSpace::from_mappings(Vec::new(), start_brk);
        let brk = |to: u64| (Call::Brk { addr: to }, to as i64);
        run(&mut s, &[brk(start_brk), brk(at(2) + 8)]);
        // The heap starts at the page start_brk is in: [PAGE_ALIGN(start_brk), PAGE_ALIGN(brk)).
        assert_eq!(lines(&s), table(&[(1, 3, "rw-p", 0, 0, "[heap]")]));
        run(&mut s, &[brk(at(6))]);
        assert_eq!(lines(&s), table(&[(1, 6, "rw-p", 0, 0, "[heap]")]));
        run(&mut s, &[brk(at(4) - 5)]);
        assert_eq!(lines(&s), table(&[(1, 4, "rw-p", 0, 0, "[heap]")]));
        // A refused brk returns the old break and changes nothing.
        run(&mut s, &[(Call::Brk { addr: 1 }, (at(4) - 5) as i64)]);
        assert_eq!(lines(&s), table(&[(1, 4, "rw-p", 0, 0, "[heap]")]));
    }

    #[test]
    fn the_end_of_bss_merged_with_the_heap_is_named_heap() {
        // No gap between .bss and the heap (no address randomization): once their flags are
        // equal the kernel merges them, and /proc names the whole VMA from the break.
        let seeded = vec![
            mapping((0, 1), "rw-p", 0, 0, ""),
            mapping((1, 3), "rw-p", 0, 0, "[heap]"),
        ];
        let mut s = AddressSpace::from_mappings(seeded, at(1));
        run(&mut s, &[(Call::Mlockall { flags: MCL_CURRENT }, OK)]);
        let mut kernel = Kernel(vec![mapping((0, 3), "rw-p", 0, 0, "[heap]")]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(lines(&s), table(&[(0, 3, "rw-p", 0, 0, "[heap]")]));
    }
}
