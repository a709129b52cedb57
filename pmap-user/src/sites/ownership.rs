//! Who owns each anonymous byte: a range map from address to the call site whose call created
//! or grew it, kept exact through every call that maps, unmaps, moves or resizes memory.
//!
//! "Anonymous" here is private anonymous memory: `MAP_PRIVATE|MAP_ANONYMOUS` mappings and the
//! heap, as pmap shows them with no file (or as `[heap]` / `[anon:NAME]`). Shared anonymous
//! memory is shmem, and the stack grows without a call; neither is owned.
//!
//! The map is kept apart from the table ([`crate::table`]): it needs nothing from it but the
//! seed, and it answers "is this range anonymous?" itself, since a range is owned exactly when
//! it is private anonymous memory.

use std::collections::{BTreeMap, HashMap};

use pmap_common::linux::{MAP_ANONYMOUS, MAP_PRIVATE, MAP_TYPE, MREMAP_DONTUNMAP};

use crate::{
    decode::Call,
    model::{Mapping, page_align_up, syscall_failed},
};

/// A call site, interned by the site tracker ([`crate::sites::SiteTracker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub u32);

/// One owned range: `[start, end)` (the map's key is `start`) belongs to `site`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owned {
    end: u64,
    site: SiteId,
}

/// The private anonymous memory of one process, by owner.
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    owners: BTreeMap<u64, Owned>,
    /// The program break the last `brk` returned (or the seed's heap end).
    brk: u64,
}

/// Whether a mapping is private anonymous memory that calls create (not the stack, which grows
/// by itself, nor the kernel's vdso/vvar pages).
pub fn is_private_anon(mapping: &Mapping) -> bool {
    mapping.inode == 0
        && !mapping.perms.shared
        && (mapping.name.is_empty()
            || mapping.name == b"[heap]"
            || mapping.name.starts_with(b"[anon:"))
}

impl Attribution {
    /// The memory of a process whose table was just read: every anonymous range is owned by
    /// `site` (one of the pseudo-sites: "before tracing", "unknown").
    pub fn seeded(mappings: &[Mapping], start_brk: u64, site: SiteId) -> Attribution {
        let mut attribution = Attribution::default();
        attribution.reconcile(mappings, start_brk, site);
        attribution
    }

    /// Brings the map in line with a table read afresh (after lost records, or a divergence
    /// found by `--verify`): ranges that are still anonymous keep their owners, owners of
    /// ranges that are not are dropped, and anonymous ranges nobody owns go to `unknown`.
    pub fn reconcile(&mut self, mappings: &[Mapping], start_brk: u64, unknown: SiteId) {
        let mut fresh = BTreeMap::new();
        self.brk = start_brk;
        for mapping in mappings.iter().filter(|m| is_private_anon(m)) {
            if mapping.name == b"[heap]" {
                self.brk = mapping.end;
            }
            let mut cursor = mapping.start;
            for (start, end, site) in self.pieces(mapping.start, mapping.end) {
                if start > cursor {
                    fresh.insert(
                        cursor,
                        Owned {
                            end: start,
                            site: unknown,
                        },
                    );
                }
                fresh.insert(start, Owned { end, site });
                cursor = end;
            }
            if cursor < mapping.end {
                fresh.insert(
                    cursor,
                    Owned {
                        end: mapping.end,
                        site: unknown,
                    },
                );
            }
        }
        self.owners = fresh;
    }

    /// Applies a completed call. `site` names the caller; it is asked only when the call grew
    /// anonymous memory, since finding it means unwinding.
    pub fn apply(&mut self, call: &Call, ret: i64, site: impl FnOnce() -> SiteId) {
        if let Call::Brk { .. } = call {
            // brk returns the break after the call whether or not it moved it.
            let (before, after) = (page_align_up(self.brk), page_align_up(ret as u64));
            self.brk = ret as u64;
            if after > before {
                self.assign(before, after, site());
            } else if after < before {
                self.release(after, before);
            }
            return;
        }
        if syscall_failed(ret) {
            return;
        }
        match *call {
            Call::Mmap { len, flags, .. } => {
                let start = ret as u64;
                let end = start.saturating_add(page_align_up(len));
                if is_anon_private_mmap(flags) {
                    self.assign(start, end, site());
                } else {
                    // A MAP_FIXED file or shared mapping replaces whatever was there.
                    self.release(start, end);
                }
            }
            Call::Munmap { addr, len } => {
                self.release(addr, addr.saturating_add(page_align_up(len)))
            }
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                ..
            } => self.apply_mremap(old_addr, old_len, new_len, flags, ret as u64, site),
            _ => {}
        }
    }

    fn apply_mremap(
        &mut self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        site: impl FnOnce() -> SiteId,
    ) {
        let (old_len, new_len) = (page_align_up(old_len), page_align_up(new_len));
        let new_end = new_addr.saturating_add(new_len);
        // old_len 0 duplicates a shared mapping: nothing private is involved.
        if old_len == 0 || self.owner_at(old_addr).is_none() {
            // A file or shared mapping moved onto new_addr replaces what was there.
            if new_addr != old_addr {
                self.release(new_addr, new_end);
            }
            return;
        }
        if new_addr == old_addr {
            if new_len > old_len {
                self.assign(old_addr + old_len, new_end, site());
            } else {
                self.release(new_end, old_addr + old_len);
            }
            return;
        }
        // Moved: the pages keep their owners at the new place.
        let kept = old_len.min(new_len);
        let moved = self.pieces(old_addr, old_addr + kept);
        // With MREMAP_DONTUNMAP the old range stays mapped (empty), still anonymous memory.
        if flags & MREMAP_DONTUNMAP == 0 {
            self.release(old_addr, old_addr + old_len);
        }
        self.release(new_addr, new_end);
        for (start, end, owner) in moved {
            let shifted = start - old_addr + new_addr;
            self.insert(shifted, shifted + (end - start), owner);
        }
        if new_len > old_len {
            self.assign(new_addr + old_len, new_end, site());
        }
    }

    /// Bytes owned by each site.
    pub fn live_by_site(&self) -> HashMap<SiteId, u64> {
        let mut live = HashMap::new();
        for (start, owned) in &self.owners {
            *live.entry(owned.site).or_insert(0) += owned.end - start;
        }
        live
    }

    /// Owned ranges in address order, each as `(start, end, site)`.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64, SiteId)> + '_ {
        self.owners
            .iter()
            .map(|(&start, owned)| (start, owned.end, owned.site))
    }

    /// The site that owns the byte at `addr`, if it is owned anonymous memory.
    pub fn owner_at(&self, addr: u64) -> Option<SiteId> {
        self.owners
            .range(..=addr)
            .next_back()
            .filter(|(_, owned)| owned.end > addr)
            .map(|(_, owned)| owned.site)
    }

    /// The owned pieces of `[start, end)`, clipped to it.
    fn pieces(&self, start: u64, end: u64) -> Vec<(u64, u64, SiteId)> {
        let first = self
            .owners
            .range(..=start)
            .next_back()
            .filter(|(_, owned)| owned.end > start)
            .map_or(start, |(&key, _)| key);
        self.owners
            .range(first..end)
            .map(|(&s, owned)| (s.max(start), owned.end.min(end), owned.site))
            .filter(|(s, e, _)| s < e)
            .collect()
    }

    fn assign(&mut self, start: u64, end: u64, site: SiteId) {
        self.release(start, end);
        self.insert(start, end, site);
    }

    /// Inserts a range known to be free, merging it with neighbours of the same owner so
    /// that a heap grown step by step by one site stays one entry.
    fn insert(&mut self, mut start: u64, mut end: u64, site: SiteId) {
        if start >= end {
            return;
        }
        if let Some((&before, owned)) = self.owners.range(..start).next_back()
            && owned.end == start
            && owned.site == site
        {
            self.owners.remove(&before);
            start = before;
        }
        if let Some(owned) = self.owners.get(&end).copied()
            && owned.site == site
        {
            self.owners.remove(&end);
            end = owned.end;
        }
        self.owners.insert(start, Owned { end, site });
    }

    /// Drops ownership of `[start, end)`, cutting the ranges that straddle its ends.
    fn release(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some((&key, owned)) = self.owners.range(..start).next_back()
            && owned.end > start
        {
            let owned = *owned;
            self.owners.insert(
                key,
                Owned {
                    end: start,
                    site: owned.site,
                },
            );
            if owned.end > end {
                self.owners.insert(end, owned);
                return;
            }
        }
        let inside: Vec<u64> = self.owners.range(start..end).map(|(&k, _)| k).collect();
        for key in inside {
            let owned = self.owners.remove(&key).expect("key just listed");
            if owned.end > end {
                self.owners.insert(end, owned);
            }
        }
    }
}

fn is_anon_private_mmap(flags: u64) -> bool {
    flags & MAP_ANONYMOUS != 0 && flags & MAP_TYPE == MAP_PRIVATE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::PAGE_SIZE,
        table::{AddressSpace, NoOracle},
    };

    const PAGE: u64 = PAGE_SIZE;
    const BASE: u64 = 0x1000_0000;
    const WINDOW_PAGES: u64 = 48;
    const START_BRK: u64 = 0x2000_0000;
    const RW: u64 = 3;
    const ANON_PRIVATE: u64 = MAP_ANONYMOUS | MAP_PRIVATE;
    const ANON_SHARED: u64 = MAP_ANONYMOUS | 0x01;
    const MAP_FIXED: u64 = 0x10;
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    const ENOMEM: i64 = -12;

    /// xorshift64: a fixed sequence, so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn anon_ranges(table: &AddressSpace) -> Vec<(u64, u64)> {
        merge(
            table
                .mappings()
                .filter(|m| is_private_anon(m))
                .map(|m| (m.start, m.end)),
        )
    }

    fn merge(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (start, end) in ranges {
            match out.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => out.push((start, end)),
            }
        }
        out
    }

    /// A call the kernel would accept in the table's state, with the result it would give.
    fn random_call(rng: &mut Rng, table: &AddressSpace, brk: u64) -> (Call, i64) {
        let page = |rng: &mut Rng| BASE + rng.below(WINDOW_PAGES) * PAGE;
        let len = |rng: &mut Rng| (1 + rng.below(6)) * PAGE;
        let mappings: Vec<&Mapping> = table
            .mappings()
            .filter(|m| m.start >= BASE && m.end <= BASE + WINDOW_PAGES * PAGE)
            .collect();
        let is_free = |start: u64, end: u64| {
            end <= BASE + WINDOW_PAGES * PAGE
                && table.mappings().all(|m| m.end <= start || m.start >= end)
        };
        match rng.below(8) {
            0 | 1 => {
                let (addr, len) = (page(rng), len(rng));
                let flags = if rng.below(4) == 0 {
                    ANON_SHARED
                } else {
                    ANON_PRIVATE
                };
                let call = Call::Mmap {
                    addr,
                    len,
                    prot: RW,
                    flags: flags | MAP_FIXED,
                    fd: -1,
                    offset: 0,
                };
                (call, addr as i64)
            }
            2 => {
                let (addr, len) = (page(rng), len(rng));
                (Call::Munmap { addr, len }, 0)
            }
            3 => {
                let (addr, len) = (page(rng), len(rng));
                (Call::Mprotect { addr, len, prot: 1 }, 0)
            }
            4 => {
                let addr = START_BRK + rng.below(12) * PAGE + rng.below(PAGE);
                let _ = brk;
                (Call::Brk { addr }, addr as i64)
            }
            _ if mappings.is_empty() => (Call::Brk { addr: 0 }, brk as i64),
            choice => {
                // mremap of a whole VMA: in place, or moved to a fixed place.
                let m = mappings[rng.below(mappings.len() as u64) as usize];
                let old_len = m.end - m.start;
                let new_len = len(rng);
                if choice == 5 {
                    let call = Call::Mremap {
                        old_addr: m.start,
                        old_len,
                        new_len,
                        flags: 0,
                        new_addr: 0,
                    };
                    let fits = new_len <= old_len || is_free(m.end, m.start + new_len);
                    return (call, if fits { m.start as i64 } else { ENOMEM });
                }
                let new_addr = page(rng);
                let dontunmap = choice == 7 && !m.perms.shared;
                let new_len = if dontunmap { old_len } else { new_len };
                let overlaps = new_addr < m.end && m.start < new_addr + new_len;
                let flags =
                    MREMAP_MAYMOVE | MREMAP_FIXED | if dontunmap { MREMAP_DONTUNMAP } else { 0 };
                let call = Call::Mremap {
                    old_addr: m.start,
                    old_len,
                    new_len,
                    flags,
                    new_addr,
                };
                let fits = !overlaps && new_addr + new_len <= BASE + WINDOW_PAGES * PAGE;
                (call, if fits { new_addr as i64 } else { -22 })
            }
        }
    }

    #[test]
    fn owned_ranges_are_exactly_the_private_anonymous_memory_through_random_calls() {
        let before = SiteId(0);
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let seeded = vec![Mapping {
                start: BASE + 4 * PAGE,
                end: BASE + 8 * PAGE,
                perms: Default::default(),
                offset: 0,
                device: Default::default(),
                inode: 0,
                name: Vec::new(),
            }];
            let mut table = AddressSpace::from_mappings(seeded.clone(), START_BRK);
            let mut owners = Attribution::seeded(&seeded, START_BRK, before);
            let mut brk = START_BRK;
            let mut next_site = 1;
            for step in 0..300 {
                let (call, ret) = random_call(&mut rng, &table, brk);
                if let Call::Brk { .. } = call {
                    brk = ret as u64;
                }
                owners.apply(&call, ret, || {
                    next_site += 1;
                    SiteId(next_site)
                });
                table.apply(&call, ret, &mut NoOracle);
                let owned = merge(owners.ranges().map(|(s, e, _)| (s, e)));
                assert_eq!(
                    owned,
                    anon_ranges(&table),
                    "seed {seed} step {step}: after {call:?} = {ret:#x}"
                );
            }
        }
    }

    #[test]
    fn growth_goes_to_its_caller_and_moves_keep_owners() {
        let (a, b, c) = (SiteId(10), SiteId(11), SiteId(12));
        let mut owners = Attribution::seeded(&[], START_BRK, SiteId(0));
        let mmap = |addr: u64, pages: u64| Call::Mmap {
            addr,
            len: pages * PAGE,
            prot: RW,
            flags: ANON_PRIVATE,
            fd: -1,
            offset: 0,
        };
        owners.apply(&mmap(0, 4), BASE as i64, || a);
        // brk up in two steps by two sites, then down into the first step.
        owners.apply(
            &Call::Brk {
                addr: START_BRK + 100,
            },
            (START_BRK + 100) as i64,
            || b,
        );
        owners.apply(
            &Call::Brk {
                addr: START_BRK + 3 * PAGE,
            },
            (START_BRK + 3 * PAGE) as i64,
            || c,
        );
        assert_eq!(owners.live_by_site()[&b], PAGE);
        assert_eq!(owners.live_by_site()[&c], 2 * PAGE);
        // A query and a failed call change nothing and ask for no site.
        owners.apply(
            &Call::Brk { addr: 0 },
            (START_BRK + 3 * PAGE) as i64,
            || unreachable!(),
        );
        owners.apply(&mmap(0, 1), ENOMEM, || unreachable!());
        owners.apply(
            &Call::Brk {
                addr: START_BRK + 2 * PAGE,
            },
            (START_BRK + 2 * PAGE) as i64,
            || unreachable!(),
        );
        assert_eq!(owners.live_by_site()[&c], PAGE);
        // Grow a's block by moving it: its 4 pages keep owner a at the new place, the 2 new
        // pages go to c.
        let moved = BASE + 100 * PAGE;
        let grow = Call::Mremap {
            old_addr: BASE,
            old_len: 4 * PAGE,
            new_len: 6 * PAGE,
            flags: MREMAP_MAYMOVE,
            new_addr: 0,
        };
        owners.apply(&grow, moved as i64, || c);
        assert_eq!(
            owners.ranges().collect::<Vec<_>>(),
            [
                (moved, moved + 4 * PAGE, a),
                (moved + 4 * PAGE, moved + 6 * PAGE, c),
                (START_BRK, START_BRK + PAGE, b),
                (START_BRK + PAGE, START_BRK + 2 * PAGE, c),
            ]
        );
        // An anonymous MAP_FIXED over the middle of a's pages takes them over.
        let fixed = Call::Mmap {
            addr: moved + PAGE,
            len: 2 * PAGE,
            prot: RW,
            flags: ANON_PRIVATE | MAP_FIXED,
            fd: -1,
            offset: 0,
        };
        owners.apply(&fixed, (moved + PAGE) as i64, || b);
        let live = owners.live_by_site();
        assert_eq!(
            (live[&a], live[&b], live[&c]),
            (2 * PAGE, 3 * PAGE, 3 * PAGE)
        );
    }

    #[test]
    fn releases_and_moves_touch_exactly_their_pages() {
        let (a, b) = (SiteId(10), SiteId(11));
        let mut owners = Attribution::seeded(&[], START_BRK, SiteId(0));
        let anon = |addr: u64, pages: u64, fixed: u64| Call::Mmap {
            addr,
            len: pages * PAGE,
            prot: RW,
            flags: ANON_PRIVATE | fixed,
            fd: -1,
            offset: 0,
        };
        owners.apply(&anon(0, 16, 0), BASE as i64, || a);
        let page = |n: u64| BASE + n * PAGE;
        // Partial munmaps: the head, a middle piece, the tail; an unaligned length rounds up.
        for (addr, len) in [(page(0), PAGE), (page(5), 2 * PAGE - 100), (page(15), PAGE)] {
            owners.apply(&Call::Munmap { addr, len }, 0, || unreachable!());
        }
        // A file mapped over pages 8..10 releases them; a shared anonymous one over 12.
        let file = Call::Mmap {
            addr: page(8),
            len: 2 * PAGE,
            prot: 1,
            flags: MAP_PRIVATE | MAP_FIXED,
            fd: 3,
            offset: 0,
        };
        owners.apply(&file, page(8) as i64, || unreachable!());
        let shared = Call::Mmap {
            addr: page(12),
            len: PAGE,
            prot: RW,
            flags: ANON_SHARED | MAP_FIXED,
            fd: -1,
            offset: 0,
        };
        owners.apply(&shared, page(12) as i64, || unreachable!());
        assert_eq!(
            owners.ranges().collect::<Vec<_>>(),
            [
                (page(1), page(5), a),
                (page(7), page(8), a),
                (page(10), page(12), a),
                (page(13), page(15), a),
            ]
        );
        // mremap shrinks 13..15 to one page in place, then moves 1..5 with MREMAP_DONTUNMAP:
        // the pages keep their owner at the new place, and the old range, still mapped (now
        // empty), stays with the site that created it.
        let shrink = Call::Mremap {
            old_addr: page(13),
            old_len: 2 * PAGE,
            new_len: PAGE,
            flags: 0,
            new_addr: 0,
        };
        owners.apply(&shrink, page(13) as i64, || unreachable!());
        let moved = BASE + 100 * PAGE;
        let dontunmap = Call::Mremap {
            old_addr: page(1),
            old_len: 4 * PAGE,
            new_len: 4 * PAGE,
            flags: MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
            new_addr: moved,
        };
        owners.apply(&dontunmap, moved as i64, || b);
        assert_eq!(
            owners.ranges().collect::<Vec<_>>(),
            [
                (page(1), page(5), a),
                (page(7), page(8), a),
                (page(10), page(12), a),
                (page(13), page(14), a),
                (moved, moved + 4 * PAGE, a),
            ]
        );
        // A failed munmap changes nothing.
        owners.apply(
            &Call::Munmap {
                addr: page(1),
                len: PAGE,
            },
            -22,
            || unreachable!(),
        );
        assert_eq!(owners.live_by_site()[&a], 12 * PAGE);
    }

    #[test]
    fn a_reread_keeps_owners_of_what_is_still_anonymous() {
        let (a, unknown) = (SiteId(10), SiteId(1));
        let mut owners = Attribution::seeded(&[], START_BRK, SiteId(0));
        let call = Call::Mmap {
            addr: 0,
            len: 4 * PAGE,
            prot: RW,
            flags: ANON_PRIVATE,
            fd: -1,
            offset: 0,
        };
        owners.apply(&call, BASE as i64, || a);
        // The process now has the first two pages of that block and one more block we missed.
        let anon = |start: u64, pages: u64| Mapping {
            start,
            end: start + pages * PAGE,
            perms: Default::default(),
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: Vec::new(),
        };
        owners.reconcile(
            &[anon(BASE, 2), anon(BASE + 10 * PAGE, 1)],
            START_BRK,
            unknown,
        );
        assert_eq!(
            owners.ranges().collect::<Vec<_>>(),
            [
                (BASE, BASE + 2 * PAGE, a),
                (BASE + 10 * PAGE, BASE + 11 * PAGE, unknown)
            ]
        );
    }
}
