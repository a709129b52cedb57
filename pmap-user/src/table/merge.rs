//! How the table merges: the kernel's merge rules (Linux 6.18 `mm/vma.c`) decided from what the
//! table knows, each named after the kernel function it follows and counted as it fires
//! ([`MergeTally`]), and the merge of a range with its neighbours as the kernel's entry points
//! make it, three ways: a range that reaches both neighbours joins the right one only if the two
//! neighbours' anon_vmas agree with each other.

use super::vma::{AnonVma, HiddenFlags, PermsSet, VmOps, Vma, unknown};
use super::{AddressSpace, PAGE_SIZE, is_heap_or_unnamed};
use crate::model::Mapping;

/// How to decide a merge the events alone cannot settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MergeVerdict {
    Merge,
    Separate,
    AskKernel,
}

/// A merge decision and the rule that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decision {
    pub(super) verdict: MergeVerdict,
    pub(super) rule: MergeRule,
}

/// The rules the table decides merges by, each named after the kernel function it follows
/// (Linux 6.18 `mm/vma.c`), and the kernel's merge entry points as they meet a range that
/// reaches both its neighbours. [`AddressSpace::merge_tally`] counts how often each fired, so
/// a workload shows which rules it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeRule {
    /// is_mergeable_vma(): the two differ in something the table knows (access, file, name,
    /// hidden `vm_flags`): apart.
    IsMergeableVmaApart,
    /// can_vma_merge_before() / can_vma_merge_after(): their `vm_pgoff` is known not to be
    /// contiguous: apart.
    PgoffApart,
    /// is_mergeable_vm_userfaultfd_ctx(): registered with a userfaultfd, which only the kernel
    /// tells apart from another: asked.
    UserfaultfdCtxAsked,
    /// is_mergeable_vma() or the `vm_pgoff` check on state the table does not know (hidden
    /// flags, access after a failed mprotect, the file, a moved mapping's `vm_pgoff`): asked.
    IsMergeableVmaAsked,
    /// is_mergeable_vma(), `vm_file`: two mmap calls of one file may hold two `struct file`s
    /// (the file opened twice): asked.
    VmFileAsked,
    /// vma_is_fork_child(): a private VMA read from `/proc` may have been inherited at fork,
    /// whose anon_vma the kernel does not share with a neighbour: asked.
    ForkChildAsked,
    /// is_mergeable_anon_vma(): at most one of the two can hold an anon_vma (one is the range
    /// the call is making, or both are shared memory): merged.
    AnonVmaMerged,
    /// is_mergeable_anon_vma(): both may hold anon_vmas, of unknown identity: asked.
    AnonVmaAsked,
    /// can_vma_merge_right(): a range that joins its left neighbour (or may) joins its right
    /// one only if the two neighbours' anon_vmas are compatible with each other (at most one
    /// has one, or both the same: the check are_anon_vmas_compatible(prev, next) made before
    /// 6.16, inline since); the table knows they are (one cannot have an anon_vma, or the call
    /// split one VMA into the two): merged.
    NeighboursCompatibleMerged,
    /// The same when the table cannot tell (both neighbours may hold anon_vmas of unknown
    /// identity): asked, where it would have merged pair by pair.
    NeighboursCompatibleAsked,
    /// vma_merge_new_range() (mmap) with both neighbours in reach.
    NewRangeBridged,
    /// vma_merge_existing_range() (mprotect, madvise, mlock, mseal, userfaultfd) with both
    /// neighbours in reach.
    ExistingRangeBridged,
    /// vma_merge_copied_range() (copy_vma(), an mremap move) with both neighbours in reach.
    CopiedRangeBridged,
    /// vma_merge_extend() (mremap growing in place) up to a neighbour.
    ExtendBridged,
    /// can_merge_remove_vma(): a merge may not remove a VMA with a `close` hook (System V
    /// shared memory): vma_merge_existing_range() merges a changed VMA that is whole with
    /// neither side, and a range joining both sides leaves the right one apart (asked when the
    /// left one is itself left to the kernel: the right joins only if the left does not).
    RemoveRefused,
}

impl MergeRule {
    pub const ALL: [MergeRule; 15] = [
        MergeRule::IsMergeableVmaApart,
        MergeRule::PgoffApart,
        MergeRule::UserfaultfdCtxAsked,
        MergeRule::IsMergeableVmaAsked,
        MergeRule::VmFileAsked,
        MergeRule::ForkChildAsked,
        MergeRule::AnonVmaMerged,
        MergeRule::AnonVmaAsked,
        MergeRule::NeighboursCompatibleMerged,
        MergeRule::NeighboursCompatibleAsked,
        MergeRule::NewRangeBridged,
        MergeRule::ExistingRangeBridged,
        MergeRule::CopiedRangeBridged,
        MergeRule::ExtendBridged,
        MergeRule::RemoveRefused,
    ];

    /// The kernel function and the outcome, as a tally prints it.
    pub fn name(self) -> &'static str {
        match self {
            MergeRule::IsMergeableVmaApart => "is_mergeable_vma:apart",
            MergeRule::PgoffApart => "can_vma_merge_before/after:vm_pgoff-apart",
            MergeRule::UserfaultfdCtxAsked => "is_mergeable_vm_userfaultfd_ctx:asked",
            MergeRule::IsMergeableVmaAsked => "is_mergeable_vma:asked",
            MergeRule::VmFileAsked => "is_mergeable_vma:vm_file-asked",
            MergeRule::ForkChildAsked => "vma_is_fork_child:asked",
            MergeRule::AnonVmaMerged => "is_mergeable_anon_vma:merged",
            MergeRule::AnonVmaAsked => "is_mergeable_anon_vma:asked",
            MergeRule::NeighboursCompatibleMerged => "can_vma_merge_right:neighbours-merged",
            MergeRule::NeighboursCompatibleAsked => "can_vma_merge_right:neighbours-asked",
            MergeRule::NewRangeBridged => "vma_merge_new_range:bridged",
            MergeRule::ExistingRangeBridged => "vma_merge_existing_range:bridged",
            MergeRule::CopiedRangeBridged => "vma_merge_copied_range:bridged",
            MergeRule::ExtendBridged => "vma_merge_extend:bridged",
            MergeRule::RemoveRefused => "can_merge_remove_vma:refused",
        }
    }
}

/// How often each [`MergeRule`] fired in one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeTally([u64; MergeRule::ALL.len()]);

impl MergeTally {
    pub fn count(&self, rule: MergeRule) -> u64 {
        self.0[rule as usize]
    }

    /// Every rule with its count, in [`MergeRule::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (MergeRule, u64)> + '_ {
        MergeRule::ALL.iter().map(|&rule| (rule, self.count(rule)))
    }

    /// Adds `other`'s counts: a tally over several tables.
    pub fn add(&mut self, other: &MergeTally) {
        for (sum, n) in self.0.iter_mut().zip(other.0) {
            *sum += n;
        }
    }

    pub(super) fn record(&mut self, rule: MergeRule) {
        self.0[rule as usize] += 1;
    }
}

/// The kernel function that merges a range with its neighbours after a call put it there or
/// changed it, and which neighbours it tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MergeEntry {
    /// vma_merge_new_range() from __mmap_region(): a new mapping, both sides.
    NewRange,
    /// do_brk_flags(): vma_merge_new_range() with `just_expand`, which only grows the VMA
    /// before the new heap pages (brk() keeps a page free above the heap anyway).
    BrkExpand,
    /// vma_merge_existing_range() from vma_modify(): a range whose attributes changed, both
    /// sides.
    ExistingRange,
    /// vma_merge_copied_range() from copy_vma(): a moved range at its destination, both sides.
    CopiedRange,
    /// vma_merge_extend(): a VMA grown in place, whose left side is the VMA itself; only the
    /// right side is tried.
    Extend,
}

impl MergeEntry {
    /// The neighbours this entry tries.
    pub(super) fn reach(self) -> Reach {
        match self {
            MergeEntry::BrkExpand => Reach {
                left: true,
                right: false,
            },
            MergeEntry::Extend => Reach {
                left: false,
                right: true,
            },
            _ => Reach::BOTH,
        }
    }

    /// The tally's name for this entry reaching both neighbours, if it can.
    fn bridged(self) -> Option<MergeRule> {
        match self {
            MergeEntry::NewRange => Some(MergeRule::NewRangeBridged),
            MergeEntry::ExistingRange => Some(MergeRule::ExistingRangeBridged),
            MergeEntry::CopiedRange => Some(MergeRule::CopiedRangeBridged),
            MergeEntry::Extend => Some(MergeRule::ExtendBridged),
            MergeEntry::BrkExpand => None,
        }
    }
}

/// Which neighbours a merge tries: vma_merge_existing_range() does not try the right one when
/// the call changes that one next (it differs until then), and leaves the boundary to that
/// VMA's own left merge; an entry may try one side only ([`MergeEntry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reach {
    pub(super) left: bool,
    pub(super) right: bool,
}

impl Reach {
    pub(super) const BOTH: Reach = Reach {
        left: true,
        right: true,
    };
}

impl AddressSpace {
    /// Whether one VMA of the table reaches past both ends of `[start, end)`: a call that
    /// unmaps the range then splits it in two, which hold the same anon_vma (or none), so the
    /// two are compatible with each other whatever was written (anon_vma_clone() on split).
    pub(super) fn one_vma_around(&self, start: u64, end: u64) -> bool {
        start
            .checked_sub(1)
            .and_then(|before| self.vma_at(before))
            .is_some_and(|v| v.mapping.end > end)
    }

    /// The kernel's merge of `[start, end)` with its neighbours after a call put it there or
    /// changed it ([`MergeEntry`]): one VMA, or pieces of one the table keeps apart pending the
    /// kernel's word (those boundaries are decided pair by pair first). Both sides are decided
    /// from the state before either merges, the left first ([`right_after_left`]), then as
    /// can_merge_remove_vma() allows ([`refuse_removal`]); `split_neighbours` says the call
    /// split one VMA into the two neighbours, `whole` whether the range changed
    /// ([`MergeEntry::ExistingRange`]) was one whole VMA before the call (None: a boundary at
    /// either end is one the kernel may not have).
    pub(super) fn merge_around(
        &mut self,
        start: u64,
        end: u64,
        entry: MergeEntry,
        reach: Reach,
        split_neighbours: bool,
        whole: Option<bool>,
    ) {
        let inside: Vec<u64> = self.vmas.range(start + 1..end).map(|(&k, _)| k).collect();
        for boundary in inside {
            self.merge_at(boundary);
        }
        let (Some(first), Some(last)) = (
            self.vmas.get(&start),
            self.vma_at(end - 1).filter(|v| v.mapping.end == end),
        ) else {
            return;
        };
        let prev = self
            .vmas
            .range(..start)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.mapping.end == start);
        let next = self.vmas.get(&end);
        let left = prev
            .filter(|_| reach.left)
            .map(|prev| merge_verdict(prev, first));
        let right_pair = next
            .filter(|_| reach.right)
            .map(|next| merge_verdict(last, next));
        let neighbours_compatible = match (prev, next) {
            (Some(prev), Some(next)) => {
                split_neighbours || prev.anon != AnonVma::Unknown || next.anon != AnonVma::Unknown
            }
            _ => true,
        };
        let right =
            right_pair.map(|r| right_after_left(left.map(|l| l.verdict), r, neighbours_compatible));
        let (left, right) = refuse_removal(
            Removal {
                entry,
                range_removed: if entry == MergeEntry::ExistingRange {
                    whole
                } else {
                    Some(false)
                },
                range: first.ops,
                next: next.map(|n| n.ops),
            },
            left,
            right,
        );
        let separate = |d: Option<Decision>| d.is_none_or(|d| d.verdict == MergeVerdict::Separate);
        let bridged = !separate(right_pair) && (!reach.left || !separate(left));
        if let Some(rule) = entry.bridged().filter(|_| bridged) {
            self.merge_tally.record(rule);
        }
        // The right side first: joining the left one moves the range's key.
        if let Some(right) = right {
            self.settle_boundary(end, right);
        }
        if let Some(left) = left {
            self.settle_boundary(start, left);
        }
    }

    /// The kernel's merge attempt at `boundary`, decided pair by pair: between pieces of a
    /// range the table keeps apart pending the kernel's word.
    fn merge_at(&mut self, boundary: u64) {
        let Some(right) = self.vmas.get(&boundary) else {
            return;
        };
        let Some((_, left)) = self
            .vmas
            .range(..boundary)
            .next_back()
            .filter(|(_, left)| left.mapping.end == boundary)
        else {
            return;
        };
        let decision = merge_verdict(left, right);
        self.settle_boundary(boundary, decision);
    }

    /// Applies a merge decision at `boundary`: joins the two sides, keeps them apart, or keeps
    /// them apart pending the kernel's word at the next dump.
    fn settle_boundary(&mut self, boundary: u64, decision: Decision) {
        self.merge_tally.record(decision.rule);
        match decision.verdict {
            MergeVerdict::Merge => self.join(boundary),
            verdict => {
                self.vmas
                    .get_mut(&boundary)
                    .expect("right neighbour present")
                    .pending_left = verdict == MergeVerdict::AskKernel;
            }
        }
    }

    /// Makes the VMA starting at `boundary` and its left neighbour one VMA.
    pub(super) fn join(&mut self, boundary: u64) {
        let right = self
            .vmas
            .remove(&boundary)
            .expect("right neighbour present");
        let left = self
            .vmas
            .range_mut(..boundary)
            .next_back()
            .expect("left neighbour present")
            .1;
        absorb(left, right);
    }
}

/// Whether the kernel may merge `left` and `right`, from what the table knows (is_mergeable_vma,
/// is_mergeable_anon_vma and the pgoff checks of mm/vma.c), and the rule that says so.
pub(super) fn merge_verdict(left: &Vma, right: &Vma) -> Decision {
    use MergeRule::*;
    use MergeVerdict::*;
    let decide = |verdict, rule| Decision { verdict, rule };
    let (l, r) = (&left.mapping, &right.mapping);
    // Pieces of one mapping map one file, named or not.
    let unknown = if left.origin == right.origin {
        (left.unknown | right.unknown) & !unknown::IDENTITY
    } else {
        left.unknown | right.unknown
    };
    let identity_known = unknown & unknown::IDENTITY == 0;
    let perms_settled = left.maybe_perms.is_empty() && right.maybe_perms.is_empty();
    let (l_may, r_may) = (
        left.maybe_perms.with(l.perms),
        right.maybe_perms.with(r.perms),
    );
    let perms_may_match = l_may.0 & r_may.0 != 0;
    let same_name =
        l.name == r.name || (!left.has_file() && is_heap_or_unnamed(l) && is_heap_or_unnamed(r));
    let printed_equal = l.end == r.start
        && perms_may_match
        && (!identity_known || (l.device == r.device && l.inode == r.inode && same_name));
    let contiguous = left.pgoff + l.len() / PAGE_SIZE == right.pgoff;
    if !printed_equal {
        return decide(Separate, IsMergeableVmaApart);
    }
    // The offset of a mapping with a file is printed, so its pgoff is always known.
    if left.has_file() && !contiguous {
        return decide(Separate, PgoffApart);
    }
    if (left.flags.0 ^ right.flags.0) & HiddenFlags::ALL & !unknown != 0 {
        return decide(Separate, IsMergeableVmaApart);
    }
    // Equal userfaultfd modes merge only under the same userfaultfd, which the events do not
    // tell (two descriptors may share one).
    if (left.flags.0 | right.flags.0) & HiddenFlags::UFFD & !unknown != 0 {
        return decide(AskKernel, UserfaultfdCtxAsked);
    }
    if !contiguous && unknown & unknown::PGOFF == 0 {
        return decide(Separate, PgoffApart);
    }
    if unknown & !unknown::ORIGIN != 0 || !perms_settled {
        return decide(AskKernel, IsMergeableVmaAsked);
    }
    if left.has_file() && left.origin != right.origin {
        // do_shmat() opens a file of its own for each attach (alloc_file_clone()): two
        // attaches the table saw made never share a `struct file`.
        let attaches = left.ops != VmOps::Plain || right.ops != VmOps::Plain;
        if attaches && unknown & unknown::ORIGIN == 0 {
            return decide(Separate, IsMergeableVmaApart);
        }
        // Perhaps another open of the same file.
        return decide(AskKernel, VmFileAsked);
    }
    let no_anon_vma = |v: &Vma| matches!(v.anon, AnonVma::Never | AnonVma::Fresh);
    // A fork child's anon_vma (it has one only if private) is shared with no neighbour; a
    // VMA that cannot have one is no fork child.
    if unknown & unknown::ORIGIN != 0 && !(no_anon_vma(left) && no_anon_vma(right)) {
        return decide(AskKernel, ForkChildAsked);
    }
    // A new VMA has no anon_vma, so it is compatible with any neighbour that is not a fork
    // child (known not to be: the neighbour's origin is known); shared memory has none.
    // Written pieces of one VMA can hold different anon_vmas once split (each written while
    // apart), and then refuse to merge again: only the kernel knows.
    if no_anon_vma(left) || no_anon_vma(right) {
        decide(Merge, AnonVmaMerged)
    } else {
        decide(AskKernel, AnonVmaAsked)
    }
}

/// can_vma_merge_right(): the right side of a range, decided pair by pair as `right`, once the
/// left side is decided as `left` (None: not tried, or no neighbour there). The kernel decides
/// the left side first; a range that joins its left neighbour joins the right one as well only
/// if the two neighbours' anon_vmas are compatible with each other (at most one has one, or
/// both the same), which `neighbours_compatible` says when the table knows. Where the left
/// merge is itself left to the kernel, the right one depends on it.
pub(super) fn right_after_left(
    left: Option<MergeVerdict>,
    right: Decision,
    neighbours_compatible: bool,
) -> Decision {
    let left_may_merge = matches!(left, Some(MergeVerdict::Merge | MergeVerdict::AskKernel));
    if right.verdict != MergeVerdict::Merge || !left_may_merge {
        return right;
    }
    if neighbours_compatible {
        Decision {
            verdict: MergeVerdict::Merge,
            rule: MergeRule::NeighboursCompatibleMerged,
        }
    } else {
        Decision {
            verdict: MergeVerdict::AskKernel,
            rule: MergeRule::NeighboursCompatibleAsked,
        }
    }
}

/// What a merge around a range would remove, for [`refuse_removal`].
pub(super) struct Removal {
    pub(super) entry: MergeEntry,
    /// The range is a whole VMA that vma_merge_existing_range() removes if either side joins
    /// (None: it may be).
    pub(super) range_removed: Option<bool>,
    /// The range's operations (those of the VMA that is the range, when `range_removed`).
    pub(super) range: VmOps,
    /// The right neighbour's, if there is one.
    pub(super) next: Option<VmOps>,
}

/// can_merge_remove_vma() (Linux 6.18 `mm/vma.c`): no merge may remove a VMA whose `vm_ops`
/// has a `close` hook. vma_merge_existing_range() returns without merging when the changed
/// range is a whole such VMA (a merge on either side would remove it); a range joining both
/// sides removes the right one, so vma_merge_new_range() (and with it vma_merge_extend() and
/// vma_merge_copied_range()) and vma_merge_existing_range() then join the left one alone.
/// `left` and `right` are the sides as decided so far; a merge that only grows a neighbour or
/// moves a boundary removes nothing and stands. Where the left side is itself left to the
/// kernel, the right one joins only if the left does not: asked.
pub(super) fn refuse_removal(
    removal: Removal,
    left: Option<Decision>,
    right: Option<Decision>,
) -> (Option<Decision>, Option<Decision>) {
    let refused = |verdict| Decision {
        verdict,
        rule: MergeRule::RemoveRefused,
    };
    let refuse = |d: Decision| {
        if d.verdict == MergeVerdict::Separate {
            d
        } else {
            refused(MergeVerdict::Separate)
        }
    };
    if !removal.range.can_merge_remove() {
        match removal.range_removed {
            Some(true) => return (left.map(refuse), right.map(refuse)),
            // Joined only if the range is part of a larger VMA, which only the kernel knows.
            None => {
                let ask = |d: Decision| {
                    if d.verdict == MergeVerdict::Merge {
                        refused(MergeVerdict::AskKernel)
                    } else {
                        d
                    }
                };
                return (left.map(ask), right.map(ask));
            }
            Some(false) => {}
        }
    }
    let next_stays = removal.next.is_some_and(|ops| !ops.can_merge_remove());
    let Some(r) = right.filter(|r| next_stays && r.verdict != MergeVerdict::Separate) else {
        return (left, right);
    };
    // vma_merge_extend(): the range's left side is the VMA grown, joined already.
    let left_verdict = if removal.entry == MergeEntry::Extend {
        Some(MergeVerdict::Merge)
    } else {
        left.map(|l| l.verdict)
    };
    let right = match left_verdict {
        Some(MergeVerdict::Merge) => refused(MergeVerdict::Separate),
        Some(MergeVerdict::AskKernel) => refused(MergeVerdict::AskKernel),
        _ => r,
    };
    (left, Some(right))
}

/// Whether `now`, the kernel's VMA at the boundary of `left` and `right`, is the two merged: it
/// spans the boundary with their access, and maps their file at their offset. The kernel is
/// asked after the call, sometimes long after (a dump applies all pending events at once): a
/// later mapping that spans the boundary by then fails this and leaves the two apart, rather
/// than teaching the table that they are one VMA and equal. (Its extent is no test: later calls
/// may have moved the far ends of the two since.)
pub(super) fn is_merge_of(now: &Mapping, left: &Vma, right: &Vma) -> bool {
    let (l, r) = (&left.mapping, &right.mapping);
    let boundary = r.start;
    let same_file = left.unknown & unknown::IDENTITY != 0
        || (now.device == l.device
            && now.inode == l.inode
            && (!left.has_file() || now.offset + (boundary - now.start) == r.offset));
    now.start < boundary && now.end > boundary && now.perms == l.perms && same_file
}

/// Folds `right` into `left`, its left neighbour, once the kernel merged them: the merged VMA's
/// hidden state is known wherever either side's was, since they were equal.
fn absorb(left: &mut Vma, right: Vma) {
    if !left.maybe_perms.is_empty() && right.maybe_perms.is_empty() {
        // One VMA has one access: the side that knows its own tells the other's.
        left.mapping.perms = right.mapping.perms;
        left.maybe_perms = PermsSet::default();
    }
    if left.unknown & unknown::IDENTITY != 0 && right.unknown & unknown::IDENTITY == 0 {
        left.mapping.device = right.mapping.device;
        left.mapping.inode = right.mapping.inode;
        left.mapping.name = right.mapping.name.clone();
    }
    left.mapping.end = right.mapping.end;
    let known_left = !left.unknown & HiddenFlags::ALL;
    left.flags = HiddenFlags((left.flags.0 & known_left) | (right.flags.0 & !known_left));
    let left_pages = (right.mapping.start - left.mapping.start) / PAGE_SIZE;
    if left.unknown & unknown::PGOFF != 0 && right.unknown & unknown::PGOFF == 0 {
        left.pgoff = right.pgoff.wrapping_sub(left_pages);
    }
    left.unknown = (left.unknown & right.unknown & !unknown::ORIGIN)
        | ((left.unknown | right.unknown) & unknown::ORIGIN);
    left.anon = match (left.anon, right.anon) {
        (AnonVma::Fresh, other) | (other, AnonVma::Fresh) => other,
        (AnonVma::Never, AnonVma::Never) => AnonVma::Never,
        _ => AnonVma::Unknown,
    };
    left.origin = left.origin.min(right.origin);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_hook_on_the_right_waits_for_a_left_side_the_kernel_decides() {
        let pair = |verdict| Decision {
            verdict,
            rule: MergeRule::AnonVmaMerged,
        };
        let refused = |verdict| Decision {
            verdict,
            rule: MergeRule::RemoveRefused,
        };
        let shm = VmOps::SysvShm {
            segment_bytes: None,
        };
        let removal = |entry, next| Removal {
            entry,
            range_removed: Some(false),
            range: shm,
            next: Some(next),
        };
        let copied = || removal(MergeEntry::CopiedRange, shm);
        let right =
            |removal, left| refuse_removal(removal, left, Some(pair(MergeVerdict::Merge))).1;
        // The left side joins: joining the right one too would remove it.
        assert_eq!(
            right(copied(), Some(pair(MergeVerdict::Merge))),
            Some(refused(MergeVerdict::Separate))
        );
        // The kernel decides the left side: the right one joins only if the left does not.
        assert_eq!(
            right(copied(), Some(pair(MergeVerdict::AskKernel))),
            Some(refused(MergeVerdict::AskKernel))
        );
        // The left stays apart: the right neighbour grows down over the range, removing
        // nothing.
        assert_eq!(
            right(copied(), Some(pair(MergeVerdict::Separate))),
            Some(pair(MergeVerdict::Merge))
        );
        assert_eq!(right(copied(), None), Some(pair(MergeVerdict::Merge)));
        // vma_merge_extend(): the left side is the VMA grown itself.
        assert_eq!(
            right(removal(MergeEntry::Extend, shm), None),
            Some(refused(MergeVerdict::Separate))
        );
        // No close hook on the right: as decided.
        assert_eq!(
            right(
                removal(MergeEntry::CopiedRange, VmOps::Plain),
                Some(pair(MergeVerdict::Merge))
            ),
            Some(pair(MergeVerdict::Merge))
        );
    }

    #[test]
    fn a_whole_changed_vma_with_a_close_hook_joins_neither_side() {
        let merge = Decision {
            verdict: MergeVerdict::Merge,
            rule: MergeRule::AnonVmaMerged,
        };
        let apart = Decision {
            verdict: MergeVerdict::Separate,
            rule: MergeRule::IsMergeableVmaApart,
        };
        let refused = Decision {
            verdict: MergeVerdict::Separate,
            rule: MergeRule::RemoveRefused,
        };
        let removal = |range_removed| Removal {
            entry: MergeEntry::ExistingRange,
            range_removed,
            range: VmOps::SysvShm {
                segment_bytes: Some(4096),
            },
            next: None,
        };
        assert_eq!(
            refuse_removal(removal(Some(true)), Some(merge), Some(apart)),
            (Some(refused), Some(apart))
        );
        // Part of a VMA: the neighbour grows over it and the rest stays.
        assert_eq!(
            refuse_removal(removal(Some(false)), Some(merge), None),
            (Some(merge), None)
        );
        // Perhaps part of one: the kernel knows.
        assert_eq!(
            refuse_removal(removal(None), Some(merge), None),
            (
                Some(Decision {
                    verdict: MergeVerdict::AskKernel,
                    rule: MergeRule::RemoveRefused,
                }),
                None
            )
        );
    }
}
