//! Asking the kernel: ranges whose shape events cannot tell are read again through the
//! [`VmaOracle`], and merges left pending are settled at the next dump.

use super::merge::is_merge_of;
use super::vma::{AnonVma, HiddenFlags, PermsSet, VmOps, Vma, unknown};
use super::{AddressSpace, VmaOracle, is_heap_or_unnamed};
use crate::model::{Mapping, PAGE_SIZE};

impl AddressSpace {
    /// Replaces `[start, end)` with the VMAs the kernel has there now. Used for calls whose
    /// effect depends on data the event does not carry (a name string in user memory, a NUMA
    /// policy) and so cannot be replayed.
    pub(super) fn refresh_from_kernel(&mut self, start: u64, end: u64, oracle: &mut dyn VmaOracle) {
        let mut cursor = start;
        let mut found: Vec<Mapping> = Vec::new();
        while cursor < end {
            match oracle.vma_at(cursor) {
                Some(now) if now.start <= cursor && now.end > cursor => {
                    cursor = now.end;
                    found.push(now);
                }
                // A hole. These calls map and unmap nothing, so the next VMA starts where the
                // table's next one does.
                _ => match self.vmas.range(cursor + 1..end).next() {
                    Some((&next, _)) => cursor = next,
                    None => break,
                },
            }
        }
        // Nothing found is no answer (the process is gone): keep what the table has.
        if found.is_empty() {
            return;
        }
        let covered_start = found.first().map_or(start, |m| m.start.min(start));
        let covered_end = found.last().map_or(end, |m| m.end.max(end));
        let kept: Vec<Vma> = self.remove_range(covered_start, covered_end);
        for now in found {
            let previous = kept
                .iter()
                .find(|v| v.mapping.start <= now.start && v.mapping.end > now.start);
            // What the kernel reports is exact; what it does not (the hidden state) is now a
            // guess: the VMA may have merged with neighbours the table knew differently.
            let (flags, anon, origin, pgoff, ops) = match previous {
                Some(p) => (
                    p.flags,
                    p.anon,
                    p.origin,
                    p.pgoff + (now.start - p.mapping.start) / PAGE_SIZE,
                    p.ops,
                ),
                None => (
                    HiddenFlags::default(),
                    AnonVma::Unknown,
                    self.new_origin(),
                    // vm_pgoff: printed as the offset where the VMA has a file, as
                    // from_mappings() takes it.
                    if now.inode != 0 || now.perms.shared {
                        now.offset / PAGE_SIZE
                    } else {
                        now.start / PAGE_SIZE
                    },
                    VmOps::of_listed(&now),
                ),
            };
            let anon = if now.perms.shared {
                AnonVma::Never
            } else if anon == AnonVma::Never {
                AnonVma::Unknown
            } else {
                anon
            };
            self.vmas.insert(
                now.start,
                Vma {
                    mapping: now,
                    flags,
                    unknown: unknown::ALL,
                    anon,
                    origin,
                    pgoff,
                    pending_left: false,
                    maybe_perms: PermsSet::default(),
                    ops,
                },
            );
        }
    }

    /// Brings up to date, before a dump, what changes without a syscall or is left to the
    /// kernel: the kernel grows a `[stack]` or MAP_GROWSDOWN mapping on faults; a file mapping
    /// made while the kernel could no longer say what it maps (it had moved away by the time
    /// it was asked) is named from where it is now; and every pending merge is settled by
    /// where the kernel has boundaries now.
    pub fn refresh_growing_mappings(&mut self, oracle: &mut dyn VmaOracle) {
        // Access first: naming and merging check the kernel's VMAs against it.
        for vma in self.vmas.values_mut().filter(|v| !v.maybe_perms.is_empty()) {
            let maybe = std::mem::take(&mut vma.maybe_perms);
            let start = vma.mapping.start;
            if let Some(now) = oracle
                .vma_at(start)
                .filter(|now| now.start <= start && now.end > start && maybe.contains(now.perms))
            {
                vma.mapping.perms = now.perms;
            }
        }
        let unnamed: Vec<u64> = self
            .vmas
            .values()
            .filter(|v| v.unknown & unknown::IDENTITY != 0)
            .map(|v| v.mapping.start)
            .collect();
        for start in unnamed {
            let vma = self.vmas.get_mut(&start).expect("unnamed VMA present");
            let fits = |m: &Mapping| {
                m.start <= start
                    && m.end > start
                    && m.perms == vma.mapping.perms
                    && m.inode != 0
                    && m.offset + (start - m.start) == vma.mapping.offset
            };
            if let Some(now) = oracle.vma_at(start).filter(fits) {
                vma.mapping.device = now.device;
                vma.mapping.inode = now.inode;
                vma.mapping.name = now.name;
                vma.unknown &= !unknown::IDENTITY;
            }
        }
        let pending: Vec<u64> = self
            .vmas
            .values()
            .filter(|v| v.pending_left)
            .map(|v| v.mapping.start)
            .collect();
        for boundary in pending {
            let (Some(right), Some((_, left))) = (
                self.vmas.get(&boundary),
                self.vmas.range(..boundary).next_back(),
            ) else {
                continue;
            };
            let merged = left.mapping.end == boundary
                && oracle
                    .vma_at(boundary)
                    .is_some_and(|now| is_merge_of(&now, left, right));
            if merged {
                self.join(boundary);
            } else {
                self.vmas
                    .get_mut(&boundary)
                    .expect("pending VMA present")
                    .pending_left = false;
            }
        }
        let growing: Vec<(u64, u64)> = self
            .vmas
            .values()
            .filter(|v| v.flags.contains(HiddenFlags::GROWSDOWN))
            .map(|v| (v.mapping.start, v.mapping.end))
            .collect();
        for (start, end) in growing {
            let Some(now) = oracle.vma_at(end - 1) else {
                continue;
            };
            if now.end == end && now.start < start {
                let mut vma = self.vmas.remove(&start).expect("growing VMA present");
                let grown = start - now.start;
                vma.mapping.start = now.start;
                vma.pgoff = vma.pgoff.saturating_sub(grown / PAGE_SIZE);
                self.remove_range(now.start, start);
                self.vmas.insert(now.start, vma);
            }
        }
        self.name_heap();
    }

    /// Names the heap as /proc does: `[heap]` is no stored name but any anonymous VMA that
    /// overlaps `(start_brk, brk)` (vma_is_initial_heap()), such as the end of `.bss` merged
    /// with the heap.
    pub(super) fn name_heap(&mut self) {
        if self.start_brk == 0 {
            return;
        }
        let (start_brk, brk) = (self.start_brk, self.brk);
        for vma in self.vmas.values_mut() {
            if vma.is_private_anon() && is_heap_or_unnamed(&vma.mapping) {
                let heap = vma.mapping.start < brk && vma.mapping.end > start_brk;
                vma.mapping.name = if heap { b"[heap]".to_vec() } else { Vec::new() };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::table::AddressSpace;
    use crate::table::test_support::{
        ENOMEM_RET, Kernel, MREMAP_MAYMOVE, P, R, RW, SHARED_ANON, at, empty, lines, mapping, mmap,
        mremap, run, table,
    };
    use pmap_common::linux::{MAP_PRIVATE, MREMAP_FIXED};

    // What the kernel reports

    #[test]
    fn a_shared_memory_object_is_named_where_it_is_at_the_dump() {
        let mut s = empty();
        // Asked after the fact, the kernel shows a later object mapped at the same place.
        let mut late = Kernel(vec![mapping(
            (0, 1),
            "rw-s",
            0,
            0xbbb,
            "/dev/zero (deleted)",
        )]);
        s.apply(&mmap(0, 1, RW, SHARED_ANON, -1, 0), at(0) as i64, &mut late);
        run(
            &mut s,
            &[(
                mremap(at(0), 1, 1, MREMAP_MAYMOVE | MREMAP_FIXED, at(8)),
                at(8) as i64,
            )],
        );
        let mut kernel = Kernel(vec![mapping(
            (8, 9),
            "rw-s",
            0,
            0xaaa,
            "/dev/zero (deleted)",
        )]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(
            lines(&s),
            table(&[(8, 9, "rw-s", 0, 0xaaa, "/dev/zero (deleted)")])
        );
    }

    #[test]
    fn a_file_named_by_its_last_component_gets_its_path_at_the_dump() {
        let mut s = empty();
        let mut record = Kernel(vec![mapping((0, 2), "r--p", 0, 0x5, "lib.so")]);
        s.apply(&mmap(0, 2, R, MAP_PRIVATE, 3, 0), at(0) as i64, &mut record);
        let mut kernel = Kernel(vec![mapping((0, 2), "r--p", 0, 0x5, "/usr/lib/lib.so")]);
        s.refresh_growing_mappings(&mut kernel);
        assert_eq!(
            lines(&s),
            table(&[(0, 2, "r--p", 0, 0x5, "/usr/lib/lib.so")])
        );
    }

    #[test]
    fn naming_takes_the_kernels_vmas_around_holes() {
        let seeded = vec![
            mapping((0, 2), "rw-p", 0, 0, ""),
            mapping((3, 5), "rw-p", 0, 0, ""),
        ];
        let mut s = AddressSpace::from_mappings(seeded, 0);
        let mut kernel = Kernel(vec![
            mapping((0, 1), "rw-p", 0, 0, ""),
            mapping((1, 2), "rw-p", 0, 0, "[anon:x]"),
            mapping((3, 4), "rw-p", 0, 0, "[anon:x]"),
            mapping((4, 5), "rw-p", 0, 0, ""),
        ]);
        let name = Call::SetVmaAnonName {
            attr: 0,
            addr: at(1),
            len: 3 * P,
            name: 0x1,
        };
        // A hole in the range: ENOMEM, after naming every mapped part.
        s.apply(&name, ENOMEM_RET, &mut kernel);
        assert_eq!(
            lines(&s),
            table(&[
                (0, 1, "rw-p", 0, 0, ""),
                (1, 2, "rw-p", 0, 0, "[anon:x]"),
                (3, 4, "rw-p", 0, 0, "[anon:x]"),
                (4, 5, "rw-p", 0, 0, ""),
            ])
        );
    }
}
