//! The live mapping table of one traced process: the process's VMAs as `/proc/PID/maps` lists
//! them, kept current by applying decoded events.
//!
//! Each call is applied as the kernel applies it (Linux 6.18, `mm/`): ranges are split, changed
//! and merged again VMA by VMA, and a call that fails part-way keeps what it did before failing.
//! Beside what `/proc/PID/maps` prints, the table tracks the VMA state that decides whether two
//! neighbours merge (and so where a line ends): hidden `vm_flags`, `vm_pgoff` and the anon_vma.
//! What it cannot know — a seeded VMA's hidden flags, whether a private mapping has been written
//! (which gives it an anon_vma), a moved mapping's `vm_pgoff` — it records as unknown. A merge
//! that depends on it is left pending: the two VMAs stay apart, the mark travels with the memory,
//! and the kernel ([`VmaOracle`]) is asked where the boundary is at the next dump
//! ([`AddressSpace::refresh_growing_mappings`]). Asking right away would ask too late: the events
//! are applied after the fact (a dump applies all pending ones at once), when later calls may
//! have moved or replaced that memory. The one call that must ask when applied is a fixed
//! mremap refused at such a boundary: how much it moved depends on the answer (`remap_move`).

mod merge;
mod mmap;
mod protect;
mod refresh;
mod remap;
mod shm;
#[cfg(test)]
mod test_support;
mod uffd;
mod unmaps_in_flight;
mod vma;

use crate::model::{Mapping, PAGE_SIZE, page_align_up, syscall_failed};
use pmap_common::linux::{EINVAL, EPERM, MAP_FIXED, MLOCK_ONFAULT};

use merge::{MergeEntry, Reach};
pub use merge::{MergeRule, MergeTally};
use remap::Remap;
use uffd::uffd_flags;
pub use unmaps_in_flight::UnmapsInFlight;
pub use vma::HiddenFlags;
use vma::{AnonVma, PermsSet, VmOps, Vma, unknown};

/// What the table needs to ask the kernel when events alone cannot decide: the VMA that covers
/// an address now. Backed by `PROCMAP_QUERY` for live processes ([`crate::procfs::procmap_query`]).
pub trait VmaOracle {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping>;

    /// The size in bytes of System V shared memory segment `shmid` (`shm_segsz`), which a
    /// shmat event does not carry; None when it cannot be told.
    fn shm_size(&mut self, _shmid: i32) -> Option<u64> {
        None
    }
}

/// An oracle that knows nothing, for processes that are gone.
pub struct NoOracle;

impl VmaOracle for NoOracle {
    fn vma_at(&mut self, _addr: u64) -> Option<Mapping> {
        None
    }
}

/// The live table of one process.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    vmas: std::collections::BTreeMap<u64, Vma>,
    next_origin: u64,
    /// `mm->start_brk`: where the heap begins, from `/proc/PID/stat` at seed time (0: unknown).
    start_brk: u64,
    /// `mm->brk`, the break: what the last brk returned; before any, the end of the heap as
    /// seeded (0: unknown).
    brk: u64,
    /// The lock bits of `mm->def_flags` that `mlockall(MCL_FUTURE)` set: new mappings are born
    /// with them.
    future_lock: u32,
    /// How often each merge rule fired.
    merge_tally: MergeTally,
}

impl AddressSpace {
    /// A table holding `mappings` as read from `/proc/PID/maps` (sorted, non-overlapping).
    pub fn from_mappings(mappings: Vec<Mapping>, start_brk: u64) -> Self {
        let heap_end = mappings
            .iter()
            .filter(|m| m.name == b"[heap]")
            .map(|m| m.end)
            .max();
        let mut space = AddressSpace {
            start_brk,
            brk: heap_end.unwrap_or(start_brk),
            ..Default::default()
        };
        for mapping in mappings {
            let origin = space.new_origin();
            let pgoff = if mapping.inode != 0 || mapping.perms.shared {
                mapping.offset / PAGE_SIZE
            } else {
                mapping.start / PAGE_SIZE
            };
            // Only the stack's growing is known; every other hidden bit is a guess, and the
            // growing flag is what `refresh_growing_mappings` follows.
            let (flags, unknown) = if mapping.name == b"[stack]" {
                (
                    HiddenFlags::default().with(HiddenFlags::GROWSDOWN, 0),
                    unknown::ALL & !HiddenFlags::GROWSDOWN,
                )
            } else {
                (HiddenFlags::default(), unknown::ALL)
            };
            let anon = if mapping.perms.shared {
                AnonVma::Never
            } else {
                AnonVma::Unknown
            };
            let ops = VmOps::of_listed(&mapping);
            space.vmas.insert(
                mapping.start,
                Vma {
                    mapping,
                    flags,
                    unknown,
                    anon,
                    origin,
                    pgoff,
                    pending_left: false,
                    maybe_perms: PermsSet::default(),
                    ops,
                },
            );
        }
        space
    }

    /// A table holding an exec's fresh image, whose hidden state the kernel told: each
    /// mapping's hidden flags and `vm_pgoff` (in pages). Nothing in it was inherited; what
    /// exec wrote (the stack, `.data`) may have an anon_vma.
    pub fn from_image(
        vmas: Vec<(Mapping, HiddenFlags, u64)>,
        start_brk: u64,
        brk: u64,
    ) -> AddressSpace {
        let mut space = AddressSpace {
            start_brk,
            brk,
            ..Default::default()
        };
        for (mapping, flags, pgoff) in vmas {
            let origin = space.new_origin();
            let anon = if mapping.perms.shared {
                AnonVma::Never
            } else {
                AnonVma::Unknown
            };
            let ops = VmOps::of_listed(&mapping);
            space.vmas.insert(
                mapping.start,
                Vma {
                    mapping,
                    flags,
                    unknown: 0,
                    anon,
                    origin,
                    pgoff,
                    pending_left: false,
                    maybe_perms: PermsSet::default(),
                    ops,
                },
            );
        }
        space
    }

    /// The table of a child forked now, which has `child_vmas` VMAs when the kernel said so.
    /// dup_mmap() (kernel/fork.c) copies every VMA but those marked VM_DONTCOPY
    /// (MADV_DONTFORK); VM_WIPEONFORK ones are copied, only empty. Every copy may hold
    /// copy-on-write pages shared with the parent, which the kernel refuses to merge with a
    /// neighbour, so its origin is unknown as a seeded VMA's is. A child that `shares` the
    /// parent's mm (CLONE_VM) has the very same VMAs. Returns the table and whether it is
    /// certain: false when the copy may hold a VMA the child has not (a VM_DONTCOPY the table
    /// does not know, from /proc) and the child's count does not settle it.
    pub fn forked(&self, shares: bool, child_vmas: Option<u32>) -> (AddressSpace, bool) {
        let mut child = self.clone();
        // Its own table from now on: its merges are counted from zero.
        child.merge_tally = MergeTally::default();
        if shares {
            return (child, true);
        }
        child
            .vmas
            .retain(|_, vma| vma.flag(HiddenFlags::DONTFORK) != Some(true));
        let flags_known = child
            .vmas
            .values()
            .all(|vma| vma.flag(HiddenFlags::DONTFORK).is_some());
        // The table may keep one VMA in pieces while a merge is pending: only a count equal
        // to the kernel's says nothing was left out. The gate page /proc lists last is no VMA
        // of the mm (get_gate_vma()), so map_count leaves it out.
        let vmas = child
            .vmas
            .values()
            .filter(|vma| vma.mapping.name != b"[vsyscall]")
            .count();
        let certain = flags_known || child_vmas.is_some_and(|count| count as usize == vmas);
        for vma in child.vmas.values_mut() {
            vma.unknown |= unknown::ORIGIN;
        }
        (child, certain)
    }

    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.vmas.values().map(|v| &v.mapping)
    }

    /// The mapping that starts at `start`, if one does.
    pub fn mapping_starting_at(&self, start: u64) -> Option<&Mapping> {
        self.vmas.get(&start).map(|v| &v.mapping)
    }

    /// The parts of `[start, end)` the table holds mapped, in address order.
    pub fn mapped_within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.overlapping(start, end)
            .map(|v| (v.mapping.start.max(start), v.mapping.end.min(end)))
            .collect()
    }

    pub fn to_mappings(&self) -> Vec<Mapping> {
        self.mappings().cloned().collect()
    }

    pub fn start_brk(&self) -> u64 {
        self.start_brk
    }

    /// The hidden state the table keeps for the VMA containing `addr`, as text: what a report
    /// of a divergence from the kernel needs besides the printed fields.
    pub fn hidden_state_at(&self, addr: u64) -> Option<String> {
        self.vma_at(addr).map(|v| {
            format!(
                "flags {:#x} unknown {:#x} anon {:?} origin {} pgoff {:#x} ops {:?}{}{}",
                v.flags.0,
                v.unknown,
                v.anon,
                v.origin,
                v.pgoff,
                v.ops,
                if v.pending_left { " pending" } else { "" },
                if v.maybe_perms.is_empty() {
                    String::new()
                } else {
                    format!(" maybe perms {:#x}", v.maybe_perms.0)
                }
            )
        })
    }

    /// How often each merge rule decided a boundary since the table was made.
    pub fn merge_tally(&self) -> &MergeTally {
        &self.merge_tally
    }

    /// A hidden flag ([`HiddenFlags`]) of the VMA holding `addr`, when the table knows it: what
    /// a test compares with the kernel's `VmFlags`.
    pub fn hidden_flag_at(&self, addr: u64, bit: u32) -> Option<bool> {
        self.vma_at(addr).and_then(|v| v.flag(bit))
    }

    fn new_origin(&mut self) -> u64 {
        self.next_origin += 1;
        self.next_origin
    }

    /// The VMA containing `addr`, if any.
    fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.mapping.end > addr)
    }

    /// The VMAs that overlap `[start, end)`, in address order. The search starts at the VMA
    /// holding `start`: a call's cost does not grow with the VMAs below it.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self
            .vmas
            .range(..=start)
            .next_back()
            .map_or(start, |(&key, _)| key);
        self.vmas
            .range(first..end.max(first))
            .map(|(_, v)| v)
            .filter(move |v| v.mapping.end > start)
    }

    /// Cuts the VMA that straddles `addr` (if any) in two at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((_, vma)) = self.vmas.range_mut(..addr).next_back() else {
            return;
        };
        if vma.mapping.end <= addr {
            return;
        }
        let mut right = vma.slice(addr, vma.mapping.end);
        right.pending_left = false;
        // The left piece keeps its start, so only its end changes.
        vma.mapping.end = addr;
        self.vmas.insert(addr, right);
    }

    /// Removes `[start, end)` and returns the removed pieces in address order.
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        if start >= end {
            return Vec::new();
        }
        self.split_at(start);
        self.split_at(end);
        let mut removed = Vec::new();
        while let Some((&key, _)) = self.vmas.range(start..end).next() {
            removed.extend(self.vmas.remove(&key));
        }
        removed
    }

    /// Where the run of VMAs that starts at `start` and leaves no hole ends (at most `end`),
    /// stopping early at the first VMA `accept` refuses. The kernel's mprotect and mlock walk a
    /// range this way and stop at the first hole or failure, keeping what they changed.
    fn run_end(&self, start: u64, end: u64, mut accept: impl FnMut(&Vma) -> bool) -> u64 {
        let mut cursor = start;
        while cursor < end {
            match self.vma_at(cursor) {
                Some(vma) if accept(vma) => cursor = vma.mapping.end.min(end),
                _ => break,
            }
        }
        cursor
    }

    /// Applies `change` to every mapped piece of `[start, end)`, then lets neighbours merge.
    /// Like the kernel's vma_modify(), it cuts out and merges only pieces that `change`
    /// really changes: a VMA that already has the new state is neither split nor merged with
    /// anything (two equal neighbours can stay apart that way).
    fn update_range(&mut self, start: u64, end: u64, mut change: impl FnMut(&mut Vma)) {
        if start >= end {
            return;
        }
        let overlapping: Vec<(u64, u64)> = self
            .overlapping(start, end)
            .map(|v| (v.mapping.start.max(start), v.mapping.end.min(end)))
            .filter(|&(from, to)| from < to)
            .collect();
        let mut changed_pieces = Vec::new();
        for (from, to) in overlapping {
            let vma = self.vma_at(from).expect("overlapping VMA present");
            let mut changed = vma.clone();
            change(&mut changed);
            if (
                changed.mapping.perms,
                changed.maybe_perms,
                changed.flags,
                changed.unknown,
            ) == (vma.mapping.perms, vma.maybe_perms, vma.flags, vma.unknown)
            {
                continue;
            }
            // The piece is the kernel's whole VMA when the table cuts nothing, unless an end
            // is a boundary the kernel may not have.
            let cut = vma.mapping.start != from || vma.mapping.end != to;
            let in_doubt =
                vma.pending_left || self.vmas.get(&to).is_some_and(|next| next.pending_left);
            let whole = if cut {
                Some(false)
            } else if in_doubt {
                None
            } else {
                Some(true)
            };
            self.split_at(from);
            self.split_at(to);
            change(self.vmas.get_mut(&from).expect("piece cut at its start"));
            changed_pieces.push((from, to, whole));
        }
        // The kernel changes and merges VMA by VMA in address order. While it merges one, the
        // next it will change still differs from it: that boundary is the next one's left side.
        for (i, &(from, to, whole)) in changed_pieces.iter().enumerate() {
            let next_changed = changed_pieces
                .get(i + 1)
                .is_some_and(|&(next, _, _)| next == to);
            let reach = Reach {
                left: true,
                right: !next_changed,
            };
            self.merge_around(from, to, MergeEntry::ExistingRange, reach, false, whole);
        }
    }

    /// Maps a new VMA over `[start, end)` of `vma`, replacing what was there; `entry` is the
    /// kernel function that merges it with its neighbours.
    fn insert_new(&mut self, mut vma: Vma, entry: MergeEntry) {
        vma.flags = vma.flags.with(self.future_lock, 0);
        let (start, end) = (vma.mapping.start, vma.mapping.end);
        let split = self.one_vma_around(start, end);
        self.remove_range(start, end);
        self.vmas.insert(start, vma);
        self.merge_around(start, end, entry, entry.reach(), split, Some(false));
        // Once the call returns the process may write to it: no longer known to be fresh.
        if let Some((_, vma)) = self.vmas.range_mut(..=start).next_back()
            && vma.anon == AnonVma::Fresh
        {
            vma.anon = AnonVma::Unknown;
        }
    }

    /// The kernel showed `[start, end)` is within one VMA (a call that requires it succeeded):
    /// settle the pending boundaries inside as merged.
    fn join_pending(&mut self, start: u64, end: u64) {
        let inside: Vec<u64> = self
            .vmas
            .range(start + 1..end)
            .filter(|(_, v)| v.pending_left)
            .map(|(&k, _)| k)
            .collect();
        for boundary in inside {
            self.join(boundary);
        }
    }

    /// The VMAs the kernel may hold as one with the VMA containing `addr`: the run of
    /// neighbours joined to it by pending boundaries.
    fn pending_run(&self, addr: u64) -> (u64, u64) {
        let Some(vma) = self.vma_at(addr) else {
            return (addr, addr);
        };
        let (mut start, mut end) = (vma.mapping.start, vma.mapping.end);
        loop {
            let joined = self.vmas.get(&start).is_some_and(|v| v.pending_left);
            match self.vmas.range(..start).next_back() {
                Some((_, left)) if joined && left.mapping.end == start => {
                    start = left.mapping.start
                }
                _ => break,
            }
        }
        while let Some(next) = self.vmas.get(&end).filter(|v| v.pending_left) {
            end = next.mapping.end;
        }
        (start, end)
    }

    /// Applies one completed call, with its raw return value (`-errno` when it failed). A
    /// failed call changes what the kernel changed before failing: nothing for most; the VMAs
    /// before the hole or refusing VMA for mprotect, mlock and madvise; the split at its start
    /// for an unmap refused by a seal; the VMAs moved before a seal for a fixed mremap.
    pub fn apply(&mut self, call: &crate::decode::Call, ret: i64, oracle: &mut dyn VmaOracle) {
        use crate::decode::Call;
        let errno = syscall_failed(ret).then_some(-ret);
        let ok = errno.is_none();
        match *call {
            Call::Mmap {
                len,
                prot,
                flags,
                offset,
                ..
            } if ok => self.apply_mmap(ret as u64, len, prot, flags, offset, oracle),
            // MAP_FIXED unmaps what was there first, and refuses sealed memory as munmap does.
            Call::Mmap {
                addr, len, flags, ..
            } if errno == Some(EPERM) && flags & MAP_FIXED != 0 => {
                self.refused_unmap(addr, addr.saturating_add(page_align_up(len)))
            }
            Call::Munmap { addr, len } => {
                let end = addr.saturating_add(page_align_up(len));
                match errno {
                    None => {
                        self.remove_range(addr, end);
                    }
                    Some(EPERM) => self.refused_unmap(addr, end),
                    Some(_) => {}
                }
            }
            // brk does not fail: it returns the break, moved or not.
            Call::Brk { .. } => self.apply_brk(ret as u64),
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => self.apply_mremap(
                Remap {
                    old_addr,
                    old_len: page_align_up(old_len),
                    new_len: page_align_up(new_len),
                    flags,
                    new_addr,
                },
                ret,
                errno,
                oracle,
            ),
            Call::Mprotect { addr, len, prot }
            | Call::PkeyMprotect {
                addr, len, prot, ..
            } => self.apply_mprotect(addr, len, prot, errno),
            Call::Madvise { addr, len, advice } => self.apply_madvise(addr, len, advice, errno),
            Call::Mlock { addr, len } => self.apply_mlock(addr, len, HiddenFlags::LOCKED, errno),
            Call::Mlock2 { addr, len, flags } => {
                let bits = if flags & MLOCK_ONFAULT != 0 {
                    HiddenFlags::LOCKED | HiddenFlags::LOCKONFAULT
                } else {
                    HiddenFlags::LOCKED
                };
                self.apply_mlock(addr, len, bits, errno)
            }
            Call::Munlock { addr, len } => self.apply_mlock(addr, len, 0, errno),
            Call::Mlockall { flags } if ok => self.apply_mlockall(flags),
            Call::Munlockall if ok => self.apply_mlockall(0),
            // mseal checks the whole range before sealing any of it.
            Call::Mseal { addr, len, .. } if ok => {
                self.update_range(addr, addr.saturating_add(page_align_up(len)), |v| {
                    v.change_flags(HiddenFlags::SEALED, 0)
                })
            }
            Call::Shmat { shmid, flags, .. } if ok => {
                self.apply_shmat(shmid, flags, ret as u64, oracle)
            }
            Call::Shmat {
                shmid, addr, flags, ..
            } if errno == Some(EPERM) => self.refused_shmat(shmid, flags, addr, oracle),
            Call::Shmdt { addr } if ok => self.apply_shmdt(addr, oracle),
            Call::UffdRegister {
                start, len, mode, ..
            } if ok => self.apply_uffd(start, len, uffd_flags(mode)),
            Call::UffdUnregister { start, len, .. } if ok => self.apply_uffd(start, len, 0),
            Call::MapShadowStack { .. } if ok => {
                if let Some(now) = oracle.vma_at(ret as u64) {
                    self.refresh_from_kernel(now.start, now.end, oracle);
                }
            }
            // Their effect depends on data the event does not carry (a name string in user
            // memory, a NUMA policy), and naming stops at the first file mapping with EBADF
            // after naming the VMAs before it: take the range as the kernel has it, unless the
            // arguments were refused (EINVAL) before any VMA was touched.
            Call::SetVmaAnonName { addr, len, .. }
            | Call::Mbind { addr, len, .. }
            | Call::RemapFilePages {
                addr, size: len, ..
            } if errno != Some(EINVAL) => {
                self.refresh_from_kernel(addr, addr.saturating_add(page_align_up(len)), oracle)
            }
            _ => {}
        }
    }
}

fn is_heap_or_unnamed(mapping: &Mapping) -> bool {
    mapping.name.is_empty() || mapping.name == b"[heap]"
}

#[cfg(test)]
mod tests {
    use crate::decode::Call;
    use crate::table::merge::{MergeRule, MergeTally};
    use crate::table::test_support::{
        EINVAL_RET, ENOMEM_RET, EPERM_RET, OK, P, R, RW, anon, at, empty, lines, mlock2, mprotect,
        mremap, munmap, run, shared_zero_pages, table,
    };
    use pmap_common::linux::MCL_CURRENT;

    #[test]
    fn the_merge_tally_counts_each_rule_apart() {
        // MergeTally indexes its counts by the rule's place in MergeRule::ALL.
        for (i, rule) in MergeRule::ALL.iter().enumerate() {
            assert_eq!(*rule as usize, i, "{}", rule.name());
            let mut tally = MergeTally::default();
            tally.record(*rule);
            let counted: Vec<MergeRule> = tally
                .iter()
                .filter(|&(_, n)| n > 0)
                .map(|(r, _)| r)
                .collect();
            assert_eq!(counted, vec![*rule]);
        }
    }

    #[test]
    fn failed_calls_change_nothing() {
        let mut s = empty();
        run(
            &mut s,
            &[
                (anon(at(0), 4, RW), at(0) as i64),
                (munmap(at(1), 1), EINVAL_RET),
                (mprotect(at(1), 1, R), EINVAL_RET),
                (mremap(at(0), 4, 8, 0, 0), ENOMEM_RET),
                (anon(at(2), 1, R), -17),
            ],
        );
        assert_eq!(lines(&s), table(&[(0, 4, "rw-p", 0, 0, "")]));
    }

    #[test]
    fn a_call_that_changes_nothing_merges_nothing() {
        let mut s = shared_zero_pages(4);
        run(
            &mut s,
            &[
                (mlock2(at(0), 4, 0), OK),
                (
                    Call::Mseal {
                        addr: at(3),
                        len: P,
                        flags: 0,
                    },
                    OK,
                ),
                // Split at page 2 without being unmapped: equal pieces, apart.
                (munmap(at(2), 2), EPERM_RET),
                // mlock_fixup() leaves a VMA whose flags do not change alone.
                (Call::Mlockall { flags: MCL_CURRENT }, OK),
                (mlock2(at(0), 3, 0), OK),
            ],
        );
        assert_eq!(lines(&s).len(), 3);
        // A change to both merges them as the second is changed.
        run(
            &mut s,
            &[(
                Call::Munlock {
                    addr: at(0),
                    len: 3 * P,
                },
                OK,
            )],
        );
        assert_eq!(lines(&s).len(), 2);
    }
}
