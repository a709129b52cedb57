//! System V shared memory: shmat and shmdt as `do_shmat()` and `ksys_shmdt()` (Linux 6.18
//! `ipc/shm.c`) apply them. An attach is a shared mapping of the whole segment through a file of
//! its own, whose `vm_ops` (`shm_vm_ops`) have a `close` hook: no merge may remove one of its
//! VMAs (can_merge_remove_vma(), [`super::merge::refuse_removal`]).

use super::merge::MergeEntry;
use super::vma::{AnonVma, HiddenFlags, PermsSet, VmOps, Vma, unknown};
use super::{AddressSpace, VmaOracle};
use crate::model::{Device, Mapping, PAGE_SIZE, Perms, page_align_up};
use pmap_common::linux::{SHM_EXEC, SHM_RDONLY, SHM_REMAP};

impl AddressSpace {
    /// A successful shmat of segment `shmid` at `addr`, with shmat's `flags`.
    pub(super) fn apply_shmat(
        &mut self,
        shmid: i32,
        flags: u64,
        addr: u64,
        oracle: &mut dyn VmaOracle,
    ) {
        // newseg(): the segment's file has the id as its inode number (what /proc prints).
        let inode = u64::from(shmid as u32);
        // The kernel's VMA there now: the attach if it starts there at offset 0 with the
        // segment's inode (a later attach of it would do as well: same name, same size).
        let now = oracle
            .vma_at(addr)
            .filter(|m| m.start == addr && m.offset == 0 && m.inode == inode && m.perms.shared);
        // The event does not carry the size; the kernel's VMA may have been cut since.
        let segment_bytes = oracle.shm_size(shmid);
        let Some(len) = segment_bytes
            .map(page_align_up)
            .or_else(|| now.as_ref().map(|m| m.end - m.start))
        else {
            return;
        };
        let write = flags & SHM_RDONLY == 0;
        let mut mapping = Mapping {
            start: addr,
            end: addr + len,
            perms: Perms {
                read: true,
                write,
                exec: flags & SHM_EXEC != 0,
                shared: true,
            },
            offset: 0,
            device: Device::default(),
            inode,
            name: Vec::new(),
        };
        let mut unknown = 0;
        match now {
            Some(now) => {
                mapping.device = now.device;
                mapping.name = now.name;
            }
            None => unknown |= unknown::IDENTITY,
        }
        // do_mmap(): a shared mapping of a file opened read-only (SHM_RDONLY) may never be
        // made writable; nothing else is set (shared memory is not accounted).
        let hidden = if write {
            HiddenFlags::default().with(HiddenFlags::MAYWRITE, 0)
        } else {
            HiddenFlags::default()
        };
        let origin = self.new_origin();
        self.insert_new(
            Vma {
                mapping,
                flags: hidden,
                unknown,
                anon: AnonVma::Never,
                origin,
                pgoff: 0,
                pending_left: false,
                maybe_perms: PermsSet::default(),
                ops: VmOps::SysvShm { segment_bytes },
            },
            MergeEntry::NewRange,
        );
    }

    /// A shmat at `addr` with SHM_REMAP refused with EPERM: do_mmap() with MAP_FIXED met
    /// sealed memory, which leaves what [`Self::refused_unmap`] says.
    pub(super) fn refused_shmat(
        &mut self,
        shmid: i32,
        flags: u64,
        addr: u64,
        oracle: &mut dyn VmaOracle,
    ) {
        if addr == 0 || flags & SHM_REMAP == 0 || !addr.is_multiple_of(PAGE_SIZE) {
            return;
        }
        if let Some(bytes) = oracle.shm_size(shmid) {
            self.refused_unmap(addr, addr.saturating_add(page_align_up(bytes)));
        }
    }

    /// ksys_shmdt(): unmaps the first VMA at or above `addr` that is a piece of an attach
    /// placed at `addr` (System V shared memory whose `vm_pgoff` is its distance from `addr`),
    /// then every later piece of the same attach (the same file) that ends within the
    /// segment's size of `addr`, across holes and other mappings. It ignores failures to
    /// unmap: a sealed piece stays.
    pub(super) fn apply_shmdt(&mut self, addr: u64, oracle: &mut dyn VmaOracle) {
        let at_its_offset = |v: &Vma| {
            matches!(v.ops, VmOps::SysvShm { .. })
                && v.mapping.start >= addr
                && (v.mapping.start - addr) / PAGE_SIZE == v.mapping.offset / PAGE_SIZE
        };
        let Some(first) = self.overlapping(addr, u64::MAX).find(|v| at_its_offset(v)) else {
            return;
        };
        let (origin, origin_known) = (first.origin, first.unknown & unknown::ORIGIN == 0);
        let (
            VmOps::SysvShm {
                segment_bytes: known,
            },
            inode,
        ) = (first.ops, first.mapping.inode)
        else {
            return;
        };
        // An attach the table did not see: the segment's size from the kernel, or if gone
        // too, every later piece of it counts.
        let size = known
            .or_else(|| oracle.shm_size(inode as i32))
            .map_or(u64::MAX, page_align_up);
        let mut pieces = vec![first];
        pieces.extend(
            self.vmas
                .range(first.mapping.end..)
                .map(|(_, v)| v)
                .take_while(|v| v.mapping.end - addr <= size)
                .filter(|v| {
                    // The same `struct file`: pieces of the one attach (a seeded piece's
                    // attach is unknown: the same segment then).
                    let same_file = if origin_known {
                        v.origin == origin
                    } else {
                        v.mapping.inode == inode
                    };
                    at_its_offset(v) && same_file
                }),
        );
        // It ignores what do_vmi_align_munmap() refuses: a sealed piece stays (EPERM).
        let gone: Vec<(u64, u64)> = pieces
            .iter()
            .filter(|v| v.flag(HiddenFlags::SEALED) != Some(true))
            .map(|v| (v.mapping.start, v.mapping.end))
            .collect();
        for (start, end) in gone {
            self.remove_range(start, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::model::Mapping;
    use crate::table::merge::MergeRule;
    use crate::table::test_support::{
        EPERM_RET, MREMAP_MAYMOVE, OK, P, R, RW, anon, at, empty, lines, mapping, mprotect, mremap,
        munmap, run, table, vma,
    };
    use crate::table::vma::VmOps;
    use crate::table::{AddressSpace, VmaOracle};
    use pmap_common::linux::{EFAULT, MREMAP_FIXED, SHM_RDONLY, SHM_REMAP};

    const SHMID: i32 = 0x2a;
    const NAME: &str = "/SYSV00000000 (deleted)";

    /// The kernel as a shmat test states it: its VMAs now, and segment [`SHMID`]'s size.
    struct Segment {
        vmas: Vec<Mapping>,
        bytes: Option<u64>,
    }

    impl VmaOracle for Segment {
        fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
            self.vmas
                .iter()
                .find(|m| m.start <= addr && addr < m.end)
                .cloned()
        }

        fn shm_size(&mut self, shmid: i32) -> Option<u64> {
            self.bytes.filter(|_| shmid == SHMID)
        }
    }

    /// shmat of a `bytes`-byte segment at page `page`, the kernel's VMA as it was then.
    fn attach(s: &mut AddressSpace, page: u64, bytes: u64, flags: u64) {
        let pages = bytes.div_ceil(P);
        let perms = if flags & SHM_RDONLY != 0 {
            "r--s"
        } else {
            "rw-s"
        };
        let mut kernel = Segment {
            vmas: vec![mapping((page, page + pages), perms, 0, SHMID as u64, NAME)],
            bytes: Some(bytes),
        };
        let call = Call::Shmat {
            shmid: SHMID,
            addr: at(page),
            flags: flags | SHM_REMAP,
        };
        s.apply(&call, at(page) as i64, &mut kernel);
    }

    fn shmdt(page: u64) -> Call {
        Call::Shmdt { addr: at(page) }
    }

    fn segment_rows(rows: &[(u64, u64, &str)]) -> Vec<String> {
        let rows: Vec<_> = rows
            .iter()
            .map(|&(s, e, p)| (s, e, p, (s % 4) * P, SHMID as u64, NAME))
            .collect();
        table(&rows)
    }

    #[test]
    fn a_segment_split_by_mprotect_stays_split_when_restored() {
        // can_merge_remove_vma(): the restored middle is a whole VMA with shm_vm_ops, which
        // vma_merge_existing_range() may not remove, so it joins neither side.
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        run(
            &mut s,
            &[(mprotect(at(1), 2, R), OK), (mprotect(at(1), 2, RW), OK)],
        );
        assert_eq!(
            lines(&s),
            segment_rows(&[(0, 1, "rw-s"), (1, 3, "rw-s"), (3, 4, "rw-s")])
        );
        assert!(!vma(&s, 1).pending_left && !vma(&s, 3).pending_left);
        assert_eq!(s.merge_tally().count(MergeRule::RemoveRefused), 2);
    }

    #[test]
    fn a_segment_read_from_proc_is_known_by_its_name() {
        // Seeded, its hidden flags are unknown and its merges would be asked; its name says
        // it is System V shared memory, whose whole VMAs no merge removes.
        let pieces = vec![
            mapping((0, 1), "rw-s", 0, SHMID as u64, NAME),
            mapping((1, 2), "rw-s", P, SHMID as u64, NAME),
            mapping((2, 3), "rw-s", 2 * P, SHMID as u64, NAME),
        ];
        let mut s = AddressSpace::from_mappings(pieces.clone(), 0);
        run(
            &mut s,
            &[(mprotect(at(1), 1, R), OK), (mprotect(at(1), 1, RW), OK)],
        );
        assert_eq!(s.to_mappings(), pieces);
        assert!(!vma(&s, 1).pending_left && !vma(&s, 2).pending_left);
        // A file that is only named like one is not.
        let mut file = mapping((0, 1), "rw-s", 0, 7, "/SYSVfile (deleted)");
        assert_eq!(VmOps::of_listed(&file), VmOps::Plain);
        file.name = NAME.as_bytes().to_vec();
        assert_ne!(VmOps::of_listed(&file), VmOps::Plain);
    }

    #[test]
    fn a_change_at_the_edge_of_a_piece_moves_the_boundary() {
        // Only part of the middle changes: the left VMA grows over it and nothing is removed.
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        run(
            &mut s,
            &[(mprotect(at(1), 2, R), OK), (mprotect(at(1), 1, RW), OK)],
        );
        assert_eq!(
            lines(&s),
            segment_rows(&[(0, 2, "rw-s"), (2, 3, "r--s"), (3, 4, "rw-s")])
        );
    }

    #[test]
    fn growing_a_piece_up_to_the_next_leaves_that_one_apart() {
        // vma_merge_extend(): joining the next piece would remove it.
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        run(
            &mut s,
            &[
                (munmap(at(2), 1), OK),
                (mremap(at(0), 2, 3, 0, 0), at(0) as i64),
            ],
        );
        assert_eq!(lines(&s), segment_rows(&[(0, 3, "rw-s"), (3, 4, "rw-s")]));
        assert_eq!(s.merge_tally().count(MergeRule::RemoveRefused), 1);
    }

    #[test]
    fn a_piece_moved_back_between_its_neighbours_joins_the_left_one() {
        // vma_merge_copied_range(): the left neighbour grows over it; the right one, which a
        // merge of both would remove, stays apart.
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
        run(
            &mut s,
            &[
                (mremap(at(1), 1, 1, fixed, at(10)), at(10) as i64),
                (mremap(at(10), 1, 1, fixed, at(1)), at(1) as i64),
            ],
        );
        assert_eq!(lines(&s), segment_rows(&[(0, 2, "rw-s"), (2, 4, "rw-s")]));
    }

    #[test]
    fn a_fixed_move_of_several_vmas_stops_at_an_attach() {
        // vma_multi_allowed(): shm_get_unmapped_area() is no shmem one, so an attach is not
        // moved in a batch: EFAULT, the VMA before it moved.
        let mut s = empty();
        run(&mut s, &[(anon(at(0), 1, RW), at(0) as i64)]);
        attach(&mut s, 1, 2 * P, 0);
        let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
        s.apply(
            &mremap(at(0), 3, 3, fixed, at(10)),
            -EFAULT,
            &mut Segment {
                vmas: Vec::new(),
                bytes: None,
            },
        );
        assert_eq!(
            lines(&s),
            table(&[
                (1, 3, "rw-s", 0, SHMID as u64, NAME),
                (10, 11, "rw-p", 0, 0, ""),
            ])
        );
    }

    #[test]
    fn pieces_of_two_attaches_never_merge() {
        // Each attach has a file of its own: a piece moved next to a piece of another attach
        // of the segment, at the very next offset, stays apart without asking the kernel.
        let mut s = empty();
        attach(&mut s, 0, 2 * P, 0);
        attach(&mut s, 10, 4 * P, 0);
        let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
        run(
            &mut s,
            &[
                (munmap(at(10), 1), OK),
                (mremap(at(0), 1, 1, fixed, at(10)), at(10) as i64),
            ],
        );
        assert_eq!(lines(&s).len(), 3);
        assert!(!vma(&s, 11).pending_left);
    }

    #[test]
    fn a_read_only_attach_cannot_be_made_writable() {
        let mut s = empty();
        attach(&mut s, 0, 2 * P, SHM_RDONLY);
        run(&mut s, &[(mprotect(at(0), 2, RW), -13)]);
        assert_eq!(lines(&s), segment_rows(&[(0, 2, "r--s")]));
    }

    #[test]
    fn the_attach_spans_the_segment_even_if_cut_since() {
        // Applied after a later munmap cut the attach: the segment's size, not the VMA now.
        let mut s = empty();
        let mut kernel = Segment {
            vmas: vec![mapping((0, 1), "rw-s", 0, SHMID as u64, NAME)],
            bytes: Some(3 * P + 100),
        };
        let call = Call::Shmat {
            shmid: SHMID,
            addr: 0,
            flags: 0,
        };
        s.apply(&call, at(0) as i64, &mut kernel);
        assert_eq!(lines(&s), segment_rows(&[(0, 4, "rw-s")]));
        run(&mut s, &[(munmap(at(1), 1), OK)]);
        assert_eq!(lines(&s), segment_rows(&[(0, 1, "rw-s"), (2, 4, "rw-s")]));
    }

    #[test]
    fn shmdt_detaches_every_piece_of_the_attach_and_nothing_else() {
        // ksys_shmdt(): the first piece at its offset from the address, then later pieces of
        // the same attach within the segment's size, across a hole; not the next attach of
        // the same segment, whose offsets do not match.
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        attach(&mut s, 4, 4 * P, 0);
        run(&mut s, &[(munmap(at(0), 1), OK), (munmap(at(2), 1), OK)]);
        run(&mut s, &[(shmdt(0), OK)]);
        assert_eq!(lines(&s), segment_rows(&[(4, 8, "rw-s")]));
    }

    #[test]
    fn shmdt_leaves_a_sealed_piece() {
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        let seal = Call::Mseal {
            addr: at(1),
            len: P,
            flags: 0,
        };
        run(&mut s, &[(seal, OK), (shmdt(0), OK)]);
        assert_eq!(lines(&s), segment_rows(&[(1, 2, "rw-s")]));
    }

    #[test]
    fn shmdt_passes_other_mappings_between_pieces() {
        let mut s = empty();
        attach(&mut s, 0, 4 * P, 0);
        run(
            &mut s,
            &[(anon(at(1), 1, RW), at(1) as i64), (shmdt(0), OK)],
        );
        assert_eq!(lines(&s), table(&[(1, 2, "rw-p", 0, 0, "")]));
    }

    #[test]
    fn a_remapping_attach_refused_by_a_seal_splits_what_it_starts_in() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 4, RW), at(0) as i64),
                (
                    Call::Mseal {
                        addr: at(3),
                        len: P,
                        flags: 0,
                    },
                    OK,
                ),
            ],
        );
        let mut kernel = Segment {
            vmas: Vec::new(),
            bytes: Some(4 * P),
        };
        let call = Call::Shmat {
            shmid: SHMID,
            addr: at(1),
            flags: SHM_REMAP,
        };
        s.apply(&call, EPERM_RET, &mut kernel);
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "rw-p", 0, 0, ""),
                (1, 3, "rw-p", 0, 0, ""),
                (3, 4, "rw-p", 0, 0, ""),
            ])
        );
    }
}
