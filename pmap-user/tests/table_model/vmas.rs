//! The three-way model: the kernel's VMAs, anon_vmas included.
//!
//! Where the page model (`pages.rs`) answers the table's questions with the most merged the kernel could
//! be, this one is the kernel as far as merging goes (6.18 mm/vma.c): VMAs that split and merge,
//! each with its anon_vma, which a write gives a VMA that has none. The table must then end with
//! exactly its VMAs. The table decides a merge itself only where it knows the anon_vmas (a new
//! range has none, shared memory never has one, pieces one call split share theirs) and asks
//! otherwise; the model answers from its VMAs. (It gives a written VMA a new anon_vma where the
//! kernel may reuse a neighbour's, find_mergeable_anon_vma(): a choice the table asks about, so
//! it need not follow.) System V shared memory is attached and detached too, whose VMAs no merge
//! may remove (can_merge_remove_vma()).

use std::collections::BTreeMap;

use pmap_common::linux::{
    EFAULT, EINVAL, ENOMEM, MADV_DODUMP, MADV_DONTDUMP, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
    MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE, SHM_REMAP,
};
use pmap_trace::{
    decode::Call,
    model::{Mapping, PAGE_SIZE, Perms},
    table::{AddressSpace, VmaOracle},
};
use proptest::prelude::*;

use super::window::{BASE, Object, addr, perms, shmid};

/// A VMA of the kernel model, in pages of the window.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KVma {
    start: u64,
    end: u64,
    perms: Perms,
    object: Object,
    /// `vm_pgoff`: the file page of `start`, or for anonymous memory the page it was made at.
    pgoff: u64,
    /// Its anon_vma, by number.
    anon: Option<u64>,
    dontdump: bool,
    /// `VM_ACCOUNT`: charged to the commit limit, which decides merges as any flag does.
    account: bool,
}

impl KVma {
    fn pages(&self) -> u64 {
        self.end - self.start
    }

    fn mapping(&self) -> Mapping {
        let file = self.object != Object::Anon;
        Mapping {
            start: addr(self.start),
            end: addr(self.end),
            perms: self.perms,
            offset: if file { self.pgoff * PAGE_SIZE } else { 0 },
            device: Object::device(self.object),
            inode: Object::inode(self.object),
            name: Object::name(self.object),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Kernel {
    vmas: BTreeMap<u64, KVma>,
    next_anon: u64,
    next_attach: u64,
}

/// Pages of the System V segments, by number.
const SEGMENT_PAGES: [u64; 2] = [5, 3];

/// The kernel function merging a range, as far as what it may remove differs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// vma_merge_new_range() (mmap, shmat) and vma_merge_copied_range() (a move).
    New,
    /// vma_merge_existing_range(): the changed range, `whole` if it was one whole VMA.
    Existing { whole: bool },
    /// vma_merge_extend(): the VMA grown, which joins the next one by removing it.
    Extend,
}

/// A VMA whose `vm_ops` have a `close` hook, which no merge may remove (can_merge_remove_vma()).
fn closes(vma: &KVma) -> bool {
    matches!(vma.object, Object::SysV { .. })
}

/// is_mergeable_vma() and the `vm_pgoff` check of can_vma_merge_before() / _after().
fn mergeable(left: &KVma, right: &KVma) -> bool {
    left.end == right.start
        && left.perms == right.perms
        && left.object == right.object
        && left.dontdump == right.dontdump
        && left.account == right.account
        && left.pgoff + left.pages() == right.pgoff
}

/// is_mergeable_anon_vma() and can_vma_merge_right()'s check of the two neighbours: no fork
/// children here.
fn anon_compatible(a: Option<u64>, b: Option<u64>) -> bool {
    a.is_none() || b.is_none() || a == b
}

impl Kernel {
    fn vma_at(&self, page: u64) -> Option<&KVma> {
        self.vmas
            .range(..=page)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end > page)
    }

    fn mappings(&self) -> Vec<Mapping> {
        self.vmas.values().map(KVma::mapping).collect()
    }

    /// __split_vma(): both pieces keep the anon_vma.
    fn split(&mut self, page: u64) {
        let Some(vma) = self.vma_at(page).filter(|v| v.start < page).cloned() else {
            return;
        };
        let right = KVma {
            start: page,
            pgoff: vma.pgoff + (page - vma.start),
            ..vma
        };
        self.vmas.get_mut(&vma.start).unwrap().end = page;
        self.vmas.insert(page, right);
    }

    fn unmap(&mut self, from: u64, to: u64) {
        self.split(from);
        self.split(to);
        let inside: Vec<u64> = self.vmas.range(from..to).map(|(&k, _)| k).collect();
        for key in inside {
            self.vmas.remove(&key);
        }
    }

    /// The merge of the VMA at `start` with its neighbours: vma_merge_new_range(),
    /// vma_merge_existing_range() and vma_merge_copied_range() alike, the left side first, the
    /// right one only if the neighbours agree with each other when the left one merged, as
    /// far as can_merge_remove_vma() lets them ([`Merge`]); vma_merge_extend() the right one.
    fn merge_around(&mut self, start: u64, how: Merge) {
        let mid = self.vmas[&start].clone();
        let prev = self
            .vmas
            .range(..start)
            .next_back()
            .map(|(_, v)| v.clone())
            .filter(|p| p.end == start);
        let next = self.vmas.get(&mid.end).cloned();
        // vma_merge_extend() tries the right side only: the grown VMA is its left one.
        let left = how != Merge::Extend
            && prev
                .as_ref()
                .is_some_and(|p| mergeable(p, &mid) && anon_compatible(p.anon, mid.anon));
        let mut right = next.as_ref().is_some_and(|n| {
            mergeable(&mid, n)
                && anon_compatible(mid.anon, n.anon)
                && (!left || anon_compatible(prev.as_ref().unwrap().anon, n.anon))
        });
        // can_merge_remove_vma(): a whole changed VMA with a close hook merges with neither
        // side; joining both sides (the grown VMA joining the next) removes the next one.
        if how == (Merge::Existing { whole: true }) && closes(&mid) {
            return;
        }
        if (left || how == Merge::Extend) && next.as_ref().is_some_and(closes) {
            right = false;
        }
        if right {
            let next = self.vmas.remove(&mid.end).unwrap();
            let mid = self.vmas.get_mut(&start).unwrap();
            mid.end = next.end;
            mid.anon = mid.anon.or(next.anon);
        }
        if left {
            let mid = self.vmas.remove(&start).unwrap();
            let prev = self.vmas.get_mut(&prev.unwrap().start).unwrap();
            prev.end = mid.end;
            prev.anon = prev.anon.or(mid.anon);
        }
    }

    /// A write to `page`: a private writable VMA without anon_vma gets one.
    fn write(&mut self, page: u64) {
        let Some(start) = self.vma_at(page).map(|v| v.start) else {
            return;
        };
        let vma = self.vmas.get_mut(&start).unwrap();
        if vma.perms.write && !vma.perms.shared && vma.anon.is_none() {
            self.next_anon += 1;
            vma.anon = Some(self.next_anon);
        }
    }

    /// Changes the VMAs of `[from, to)` VMA by VMA, as mprotect and madvise do: each changed
    /// piece is cut out and merged before the next is looked at. False if there was a hole.
    fn change(&mut self, from: u64, to: u64, stop_at_hole: bool, f: impl Fn(&mut KVma)) -> bool {
        let mut cursor = from;
        let mut whole = true;
        while cursor < to {
            let Some(vma) = self.vma_at(cursor).cloned() else {
                whole = false;
                if stop_at_hole {
                    break;
                }
                match self.vmas.range(cursor..to).next() {
                    Some((&next, _)) => {
                        cursor = next;
                        continue;
                    }
                    None => break,
                }
            };
            let piece_end = vma.end.min(to);
            let mut changed = vma.clone();
            f(&mut changed);
            if changed != vma {
                let whole = vma.start == cursor && vma.end == piece_end;
                self.split(cursor);
                self.split(piece_end);
                f(self.vmas.get_mut(&cursor).unwrap());
                self.merge_around(cursor, Merge::Existing { whole });
            }
            cursor = piece_end;
        }
        whole
    }
}

/// mprotect_fixup(): the access, and the accounting it charges: a private mapping made
/// writable is charged; made read-only, only anonymous memory without anon_vma is uncharged.
fn mprotect_vma(vma: &mut KVma, prot: u64) {
    let new = perms(prot, vma.perms.shared);
    if new.write {
        if !(vma.account || vma.perms.write || vma.perms.shared) {
            vma.account = true;
        }
    } else if vma.account && vma.object == Object::Anon && vma.anon.is_none() {
        vma.account = false;
    }
    vma.perms = new;
}

/// What a file-backed or anonymous mapping of the three-way model maps.
#[derive(Clone, Copy, Debug)]
enum Backing {
    PrivateAnon,
    /// A file by inode, private or shared, from file page `offset`.
    File {
        inode: u64,
        offset: u64,
        shared: bool,
    },
}

/// An operation of the three-way model: a call, or a write the table does not see.
#[derive(Clone, Debug)]
enum KOp {
    Map {
        page: u64,
        pages: u64,
        prot: u64,
        backing: Backing,
    },
    Write {
        page: u64,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
    Protect {
        page: u64,
        pages: u64,
        prot: u64,
    },
    DontDump {
        page: u64,
        pages: u64,
        on: bool,
    },
    /// mremap growing in place.
    Grow {
        page: u64,
        pages: u64,
        by: u64,
    },
    /// mremap moving to a fixed place, unresized.
    Move {
        page: u64,
        pages: u64,
        to: u64,
    },
    /// shmat of segment `segment` at `page`, with SHM_REMAP.
    Attach {
        page: u64,
        segment: u64,
    },
    /// shmdt at `page`.
    Detach {
        page: u64,
    },
}

/// Pages of the three-way model's window.
const KPAGES: u64 = 16;

impl KOp {
    /// Makes the operation in `kernel`; the call the table sees and its result, if a call.
    fn make(&self, kernel: &mut Kernel) -> Option<(Call, i64)> {
        let len = |pages: u64| pages * PAGE_SIZE;
        Some(match *self {
            KOp::Map {
                page,
                pages,
                prot,
                backing,
            } => {
                let (object, pgoff, shared, flags, fd, offset) = match backing {
                    Backing::PrivateAnon => (
                        Object::Anon,
                        page,
                        false,
                        MAP_PRIVATE | MAP_ANONYMOUS,
                        -1,
                        0,
                    ),
                    Backing::File {
                        inode,
                        offset,
                        shared,
                    } => (
                        Object::File(inode),
                        offset,
                        shared,
                        if shared { MAP_SHARED } else { MAP_PRIVATE },
                        3,
                        offset * PAGE_SIZE,
                    ),
                };
                kernel.unmap(page, page + pages);
                kernel.vmas.insert(
                    page,
                    KVma {
                        start: page,
                        end: page + pages,
                        perms: perms(prot, shared),
                        object,
                        pgoff,
                        anon: None,
                        dontdump: false,
                        // accountable_mapping()
                        account: !shared && prot & PROT_WRITE != 0,
                    },
                );
                kernel.merge_around(page, Merge::New);
                let call = Call::Mmap {
                    addr: addr(page),
                    len: len(pages),
                    prot,
                    flags: flags | MAP_FIXED,
                    fd,
                    offset,
                };
                (call, addr(page) as i64)
            }
            KOp::Write { page } => {
                kernel.write(page);
                return None;
            }
            KOp::Unmap { page, pages } => {
                kernel.unmap(page, page + pages);
                let call = Call::Munmap {
                    addr: addr(page),
                    len: len(pages),
                };
                (call, 0)
            }
            KOp::Protect { page, pages, prot } => {
                let whole = kernel.change(page, page + pages, true, |v| mprotect_vma(v, prot));
                let call = Call::Mprotect {
                    addr: addr(page),
                    len: len(pages),
                    prot,
                };
                (call, if whole { 0 } else { -ENOMEM })
            }
            KOp::DontDump { page, pages, on } => {
                let whole = kernel.change(page, page + pages, false, |v| v.dontdump = on);
                let call = Call::Madvise {
                    addr: addr(page),
                    len: len(pages),
                    advice: if on { MADV_DONTDUMP } else { MADV_DODUMP },
                };
                (call, if whole { 0 } else { -ENOMEM })
            }
            KOp::Grow { page, pages, by } => {
                let call = Call::Mremap {
                    old_addr: addr(page),
                    old_len: len(pages),
                    new_len: len(pages + by),
                    flags: 0,
                    new_addr: 0,
                };
                let Some(vma) = kernel.vma_at(page).cloned() else {
                    return Some((call, -EFAULT));
                };
                let end = page + pages;
                if end > vma.end {
                    return Some((call, -EFAULT));
                }
                let free = end + by <= KPAGES && kernel.vmas.range(end..end + by).next().is_none();
                if end < vma.end || !free {
                    return Some((call, -ENOMEM));
                }
                // vma_merge_extend(): the grown VMA, then its right neighbour if it agrees.
                kernel.vmas.get_mut(&vma.start).unwrap().end = end + by;
                kernel.merge_around(vma.start, Merge::Extend);
                (call, addr(page) as i64)
            }
            KOp::Move { page, pages, to } => {
                let call = Call::Mremap {
                    old_addr: addr(page),
                    old_len: len(pages),
                    new_len: len(pages),
                    flags: MREMAP_MAYMOVE | MREMAP_FIXED,
                    new_addr: addr(to),
                };
                if to < page + pages && page < to + pages || to + pages > KPAGES {
                    return Some((call, -EINVAL));
                }
                if kernel.vma_at(page).is_none() {
                    return Some((call, -EFAULT));
                }
                // remap_move(): each VMA of the source on its own, copied (and merged) at its
                // destination before its source is unmapped.
                let sources: Vec<KVma> = kernel
                    .vmas
                    .values()
                    .filter(|v| v.end > page && v.start < page + pages)
                    .cloned()
                    .collect();
                for vma in sources {
                    let (from, until) = (vma.start.max(page), vma.end.min(page + pages));
                    let dest = to + (from - page);
                    kernel.unmap(dest, dest + (until - from));
                    let pgoff = if vma.object == Object::Anon && vma.anon.is_none() {
                        dest
                    } else {
                        vma.pgoff + (from - vma.start)
                    };
                    kernel.vmas.insert(
                        dest,
                        KVma {
                            start: dest,
                            end: dest + (until - from),
                            pgoff,
                            ..vma
                        },
                    );
                    kernel.merge_around(dest, Merge::New);
                    kernel.unmap(from, until);
                }
                (call, addr(to) as i64)
            }
            KOp::Attach { page, segment } => {
                let call = Call::Shmat {
                    shmid: shmid(segment) as i32,
                    addr: addr(page),
                    flags: SHM_REMAP,
                };
                let pages = SEGMENT_PAGES[segment as usize];
                if page + pages > KPAGES {
                    return Some((call, -EINVAL));
                }
                kernel.unmap(page, page + pages);
                kernel.next_attach += 1;
                kernel.vmas.insert(
                    page,
                    KVma {
                        start: page,
                        end: page + pages,
                        perms: perms(PROT_READ | PROT_WRITE, true),
                        object: Object::SysV {
                            segment,
                            attach: kernel.next_attach,
                        },
                        pgoff: 0,
                        anon: None,
                        dontdump: false,
                        account: false,
                    },
                );
                kernel.merge_around(page, Merge::New);
                (call, addr(page) as i64)
            }
            KOp::Detach { page } => (
                Call::Shmdt { addr: addr(page) },
                if kernel.detach(page) { 0 } else { -EINVAL },
            ),
        })
    }
}

impl Kernel {
    /// ksys_shmdt(): the first System V VMA from `page` up whose `vm_pgoff` is its distance
    /// from `page`, then the later VMAs of the same attach at their distance that end within
    /// the segment's size of `page`. False if there was none.
    fn detach(&mut self, page: u64) -> bool {
        let at_distance = |v: &KVma| closes(v) && v.start >= page && v.start - page == v.pgoff;
        let Some(first) = self.vmas.values().find(|v| at_distance(v)).cloned() else {
            return false;
        };
        let Object::SysV { segment, .. } = first.object else {
            return false;
        };
        let size = SEGMENT_PAGES[segment as usize];
        let later: Vec<(u64, u64)> = self
            .vmas
            .range(first.end..)
            .map(|(_, v)| v)
            .take_while(|v| v.end - page <= size)
            .filter(|v| at_distance(v) && v.object == first.object)
            .map(|v| (v.start, v.end))
            .collect();
        self.unmap(first.start, first.end);
        for (start, end) in later {
            self.unmap(start, end);
        }
        true
    }
}

/// The kernel model as the oracle the table asks.
struct KernelOracle<'a>(&'a Kernel);

impl VmaOracle for KernelOracle<'_> {
    fn vma_at(&mut self, at: u64) -> Option<Mapping> {
        let page = at.checked_sub(BASE)? / PAGE_SIZE;
        self.0.vma_at(page).map(KVma::mapping)
    }

    fn shm_size(&mut self, id: i32) -> Option<u64> {
        let segment = (0..SEGMENT_PAGES.len() as u64).find(|&s| shmid(s) == id as u64)?;
        Some(SEGMENT_PAGES[segment as usize] * PAGE_SIZE)
    }
}

fn kprot() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(PROT_READ | PROT_WRITE),
        1 => Just(PROT_READ),
        1 => Just(0),
    ]
}

fn backing() -> impl Strategy<Value = Backing> {
    prop_oneof![
        4 => Just(Backing::PrivateAnon),
        2 => (1..3u64, 0..8u64, any::<bool>())
            .prop_map(|(inode, offset, shared)| Backing::File { inode, offset, shared }),
    ]
}

fn krange() -> impl Strategy<Value = (u64, u64)> {
    (0..KPAGES).prop_flat_map(|page| (Just(page), 1..=(KPAGES - page).min(5)))
}

/// One operation, or a shape made on purpose: two written neighbours and a call bridging them
/// (a new mapping in the hole, or the range between made equal to both, or the left one grown
/// up to the right one, or a mapping moved in between).
fn kops() -> impl Strategy<Value = Vec<KOp>> {
    let single = prop_oneof![
        4 => (krange(), kprot(), backing()).prop_map(|((page, pages), prot, backing)| {
            KOp::Map { page, pages, prot, backing }
        }),
        4 => (0..KPAGES).prop_map(|page| KOp::Write { page }),
        1 => krange().prop_map(|(page, pages)| KOp::Unmap { page, pages }),
        2 => (krange(), kprot()).prop_map(|((page, pages), prot)| KOp::Protect { page, pages, prot }),
        1 => (krange(), any::<bool>()).prop_map(|((page, pages), on)| KOp::DontDump { page, pages, on }),
        1 => (krange(), 1..4u64).prop_map(|((page, pages), by)| KOp::Grow { page, pages, by }),
        1 => (krange(), 0..KPAGES).prop_map(|((page, pages), to)| KOp::Move { page, pages, to }),
        1 => (0..KPAGES, 0..SEGMENT_PAGES.len() as u64)
            .prop_map(|(page, segment)| KOp::Attach { page, segment }),
        1 => (0..KPAGES).prop_map(|page| KOp::Detach { page }),
    ]
    .prop_map(|op| vec![op]);
    // Segment 0 attached, its middle split out and restored, or unmapped and the left piece
    // grown back up to the right one, or moved to the window's end and back.
    let segment = (0..KPAGES - 7, 1..3u64, 1..3u64, 0..4u8).prop_map(|(page, a, h, how)| {
        let middle = (page + a, h);
        let mut ops = vec![KOp::Attach { page, segment: 0 }];
        match how {
            0 => ops.extend(
                [PROT_READ, PROT_READ | PROT_WRITE].map(|prot| KOp::Protect {
                    page: middle.0,
                    pages: middle.1,
                    prot,
                }),
            ),
            1 => ops.extend([true, false].map(|on| KOp::DontDump {
                page: middle.0,
                pages: middle.1,
                on,
            })),
            2 => ops.extend([
                KOp::Unmap {
                    page: middle.0,
                    pages: middle.1,
                },
                KOp::Grow {
                    page,
                    pages: a,
                    by: h,
                },
            ]),
            _ => ops.extend([
                KOp::Move {
                    page: middle.0,
                    pages: middle.1,
                    to: KPAGES - h,
                },
                KOp::Move {
                    page: KPAGES - h,
                    pages: h,
                    to: middle.0,
                },
            ]),
        }
        ops
    });
    let bridge = (
        0..KPAGES - 6,
        (1..3u64, 1..3u64, 1..3u64),
        kprot(),
        backing(),
        0..5u8,
        any::<bool>(),
    )
        .prop_map(|(page, (a, h, b), prot, backing, how, written)| {
            let at = |offset: u64| match backing {
                Backing::File {
                    inode,
                    offset: first,
                    shared,
                } => Backing::File {
                    inode,
                    offset: first + offset,
                    shared,
                },
                other => other,
            };
            let map = |from: u64, pages: u64, prot: u64| KOp::Map {
                page: page + from,
                pages,
                prot,
                backing: at(from),
            };
            let mut ops = vec![map(0, a, prot), map(a + h, b, prot)];
            if written {
                ops.push(KOp::Write { page });
                ops.push(KOp::Write { page: page + a + h });
            }
            let hole = (page + a, h);
            match how {
                0 => ops.push(map(a, h, prot)),
                1 => ops.extend([
                    map(a, h, if prot == PROT_READ { 0 } else { PROT_READ }),
                    KOp::Protect {
                        page: hole.0,
                        pages: hole.1,
                        prot,
                    },
                ]),
                2 => ops.extend([
                    map(a, h, prot),
                    KOp::DontDump {
                        page: hole.0,
                        pages: hole.1,
                        on: true,
                    },
                    KOp::DontDump {
                        page: hole.0,
                        pages: hole.1,
                        on: false,
                    },
                ]),
                3 => ops.extend([
                    KOp::Unmap {
                        page: hole.0,
                        pages: hole.1,
                    },
                    KOp::Grow {
                        page,
                        pages: a,
                        by: h,
                    },
                ]),
                _ => {
                    // Made at the window's end, unwritten, then moved into the hole.
                    let source = KPAGES - h;
                    ops.extend([
                        KOp::Unmap {
                            page: hole.0,
                            pages: hole.1,
                        },
                        KOp::Map {
                            page: source,
                            pages: h,
                            prot,
                            backing: at(a),
                        },
                        KOp::Move {
                            page: source,
                            pages: h,
                            to: hole.0,
                        },
                    ])
                }
            }
            ops
        });
    prop_oneof![6 => single, 2 => bridge, 1 => segment]
}

/// The table's VMAs must be the model's, every printed field included.
fn check_vmas(table: &AddressSpace, kernel: &Kernel, after: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.to_mappings(), kernel.mappings(), "after {}", after);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    /// Some VMAs first (read from `/proc` when the table is made: their hidden state
    /// unknown), then the calls; the dump settles what the table left to the kernel after
    /// each call (`each`) or only at the end, when the answers describe a later moment.
    #[test]
    fn the_table_has_the_kernels_vmas_after_bridging_calls(
        before in prop::collection::vec(kops(), 0..6),
        ops in prop::collection::vec(kops(), 1..30),
        each in any::<bool>(),
    ) {
        let mut kernel = Kernel::default();
        for op in before.iter().flatten() {
            op.make(&mut kernel);
        }
        let mut table = AddressSpace::from_mappings(kernel.mappings(), 0);
        for op in ops.iter().flatten() {
            let Some((call, ret)) = op.make(&mut kernel) else {
                continue;
            };
            table.apply(&call, ret, &mut KernelOracle(&kernel));
            if each {
                table.refresh_growing_mappings(&mut KernelOracle(&kernel));
                check_vmas(&table, &kernel, &format!("{op:?} = {ret}"))?;
            }
        }
        table.refresh_growing_mappings(&mut KernelOracle(&kernel));
        check_vmas(&table, &kernel, "the last call")?;
    }
}
