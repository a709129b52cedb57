//! Property tests of the table against a page-granular model of the kernel: after any sequence
//! of calls (each with the result the model gives it), the table's VMAs are sorted,
//! non-overlapping, page-aligned and non-empty, and every page has the access, file and offset
//! the model has — before and after the dump settles what the table left to the kernel.
//!
//! The model keeps one record per page of a small window and no VMAs: the kernel's VMA structure
//! is what the table has to work out, so the model cannot lean on the same reasoning. Where the
//! table asks the kernel, the model answers with the longest run of pages that look alike, the
//! most merged the kernel could be.
//!
//! A second model keeps the kernel's VMAs for what decides where they end: splits and merges,
//! each VMA's anon_vma (a write gives one), `vm_pgoff`, and the flags its calls change. Its
//! calls are few (fixed mmap, munmap, mprotect, madvise, mremap growing or moving) and often
//! make the shape three-way merges decide: two written neighbours and a call bridging them. The
//! table must end with exactly its VMAs, answering the table's questions from them.

use std::collections::BTreeMap;

use pmap_common::linux::{
    EFAULT, EINVAL, ENOMEM, EPERM, MADV_DODUMP, MADV_DONTDUMP, MADV_HUGEPAGE, MADV_RANDOM,
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC,
    PROT_READ, PROT_WRITE,
};
use pmap_trace::{
    decode::Call,
    model::{Device, Mapping, PAGE_SIZE, Perms},
    table::{AddressSpace, VmaOracle},
};
use proptest::prelude::*;

/// Pages in the window the calls work on.
const PAGES: u64 = 24;
const BASE: u64 = 0x7f00_0000_0000;

fn addr(page: u64) -> u64 {
    BASE + page * PAGE_SIZE
}

/// What backs a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    Anon,
    /// A shmem object (shared anonymous memory), by number.
    Shm(u64),
    /// A file, by inode.
    File(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Page {
    perms: Perms,
    object: Object,
    /// File offset of the page (0 for private anonymous memory).
    offset: u64,
    sealed: bool,
}

#[derive(Clone, Debug, Default)]
struct Model {
    pages: BTreeMap<u64, Page>,
    next_shm: u64,
}

impl Model {
    fn mapped(&self, from: u64, to: u64) -> bool {
        (from..to).all(|p| self.pages.contains_key(&p))
    }

    fn sealed(&self, from: u64, to: u64) -> bool {
        (from..to).any(|p| self.pages.get(&p).is_some_and(|pg| pg.sealed))
    }

    /// Pages from `from` that a VMA-by-VMA walk gets through before a hole, or (with
    /// `stop_at_seal`) a sealed page.
    fn run(&self, from: u64, to: u64, stop_at_seal: bool) -> u64 {
        (from..to)
            .find(|p| match self.pages.get(p) {
                None => true,
                Some(pg) => stop_at_seal && pg.sealed,
            })
            .unwrap_or(to)
    }

    fn name(object: Object) -> Vec<u8> {
        match object {
            Object::Anon => Vec::new(),
            Object::Shm(_) => b"/dev/zero (deleted)".to_vec(),
            Object::File(inode) => format!("/f{inode}").into_bytes(),
        }
    }

    fn inode(object: Object) -> u64 {
        match object {
            Object::Anon => 0,
            Object::Shm(n) => 0x1000 + n,
            Object::File(inode) => inode,
        }
    }

    /// Whether the kernel could hold pages `a` and `a + 1` in one VMA.
    fn alike(a: &Page, b: &Page) -> bool {
        a.perms == b.perms
            && a.object == b.object
            && a.sealed == b.sealed
            && (a.object == Object::Anon || a.offset + PAGE_SIZE == b.offset)
    }
}

/// The model as the kernel the table asks: the longest run of alike pages around an address.
struct ModelKernel<'a>(&'a Model);

impl VmaOracle for ModelKernel<'_> {
    fn vma_at(&mut self, at: u64) -> Option<Mapping> {
        if at < BASE {
            return None;
        }
        let page = (at - BASE) / PAGE_SIZE;
        let this = *self.0.pages.get(&page)?;
        let mut first = page;
        while first > 0 {
            match self.0.pages.get(&(first - 1)) {
                Some(prev) if Model::alike(prev, &self.0.pages[&first]) => first -= 1,
                _ => break,
            }
        }
        let mut end = page + 1;
        while let Some(next) = self.0.pages.get(&end) {
            if !Model::alike(&self.0.pages[&(end - 1)], next) {
                break;
            }
            end += 1;
        }
        let head = self.0.pages[&first];
        Some(Mapping {
            start: addr(first),
            end: addr(end),
            perms: this.perms,
            offset: head.offset,
            device: device(this.object),
            inode: Model::inode(this.object),
            name: Model::name(this.object),
        })
    }
}

fn device(object: Object) -> Device {
    match object {
        Object::Anon => Device::default(),
        Object::Shm(_) => Device { major: 0, minor: 1 },
        Object::File(_) => Device { major: 8, minor: 1 },
    }
}

fn perms(prot: u64, shared: bool) -> Perms {
    Perms {
        read: prot & PROT_READ != 0,
        write: prot & PROT_WRITE != 0,
        exec: prot & PROT_EXEC != 0,
        shared,
    }
}

/// A call the model can make, in pages of the window.
#[derive(Clone, Debug)]
enum Op {
    /// `file`: None for anonymous memory, else the inode; offsets in pages.
    Mmap {
        page: u64,
        pages: u64,
        prot: u64,
        shared: bool,
        file: Option<(u64, u64)>,
    },
    Munmap {
        page: u64,
        pages: u64,
    },
    Mprotect {
        page: u64,
        pages: u64,
        prot: u64,
    },
    Madvise {
        page: u64,
        pages: u64,
        advice: u64,
    },
    Mlock {
        page: u64,
        pages: u64,
        lock: bool,
    },
    Mseal {
        page: u64,
        pages: u64,
    },
    /// UFFDIO_REGISTER with `mode` (MISSING 1, WP 2), or UFFDIO_UNREGISTER when `mode` is 0.
    Userfaultfd {
        page: u64,
        pages: u64,
        mode: u64,
    },
    /// mremap of `pages` at `page` to `new_pages`, in place (`to` None) or to a fixed place.
    Mremap {
        page: u64,
        pages: u64,
        new_pages: u64,
        to: Option<u64>,
    },
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..PAGES).prop_flat_map(|page| (Just(page), 1..=(PAGES - page).min(8)))
}

fn prot() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(PROT_READ),
        Just(PROT_READ | PROT_WRITE),
        Just(PROT_READ | PROT_EXEC),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (range(), prot(), any::<bool>(), proptest::option::of((1..3u64, 0..6u64))).prop_map(
            |((page, pages), prot, shared, file)| Op::Mmap { page, pages, prot, shared, file }
        ),
        2 => range().prop_map(|(page, pages)| Op::Munmap { page, pages }),
        4 => (range(), prot()).prop_map(|((page, pages), prot)| Op::Mprotect { page, pages, prot }),
        2 => (range(), prop_oneof![Just(MADV_DONTDUMP), Just(MADV_HUGEPAGE), Just(MADV_RANDOM)])
            .prop_map(|((page, pages), advice)| Op::Madvise { page, pages, advice }),
        2 => (range(), any::<bool>()).prop_map(|((page, pages), lock)| Op::Mlock { page, pages, lock }),
        1 => (0..PAGES, 1..3u64).prop_map(|(page, pages)| Op::Mseal {
            page,
            pages: pages.min(PAGES - page),
        }),
        2 => (range(), 0..3u64).prop_map(|((page, pages), mode)| Op::Userfaultfd { page, pages, mode }),
        3 => (range(), 1..6u64, proptest::option::of(0..PAGES)).prop_map(
            |((page, pages), new_pages, to)| Op::Mremap { page, pages, new_pages, to }
        ),
    ]
}

/// Makes `op` in the model; returns the call as traced and its result.
fn step(model: &mut Model, op: &Op) -> (Call, i64) {
    match *op {
        Op::Mmap {
            page,
            pages,
            prot,
            shared,
            file,
        } => {
            let anonymous = file.is_none();
            let flags = MAP_FIXED
                | if shared { MAP_SHARED } else { MAP_PRIVATE }
                | if anonymous { MAP_ANONYMOUS } else { 0 };
            let call = Call::Mmap {
                addr: addr(page),
                len: pages * PAGE_SIZE,
                prot,
                flags,
                fd: if anonymous { -1 } else { 3 },
                offset: file.map_or(0, |(_, off)| off * PAGE_SIZE),
            };
            if model.sealed(page, page + pages) {
                return (call, -EPERM);
            }
            let object = match (file, shared) {
                (Some((inode, _)), _) => Object::File(inode),
                (None, true) => {
                    model.next_shm += 1;
                    Object::Shm(model.next_shm)
                }
                (None, false) => Object::Anon,
            };
            for i in 0..pages {
                let offset = match (file, object) {
                    (Some((_, off)), _) => (off + i) * PAGE_SIZE,
                    (None, Object::Shm(_)) => i * PAGE_SIZE,
                    _ => 0,
                };
                model.pages.insert(
                    page + i,
                    Page {
                        perms: perms(prot, shared),
                        object,
                        offset,
                        sealed: false,
                    },
                );
            }
            (call, addr(page) as i64)
        }
        Op::Munmap { page, pages } => {
            let call = Call::Munmap {
                addr: addr(page),
                len: pages * PAGE_SIZE,
            };
            if model.sealed(page, page + pages) {
                return (call, -EPERM);
            }
            for p in page..page + pages {
                model.pages.remove(&p);
            }
            (call, 0)
        }
        Op::Mprotect { page, pages, prot } => {
            let call = Call::Mprotect {
                addr: addr(page),
                len: pages * PAGE_SIZE,
                prot,
            };
            let stop = model.run(page, page + pages, true);
            for p in page..stop {
                let pg = model.pages.get_mut(&p).expect("in the run");
                pg.perms = perms(prot, pg.perms.shared);
            }
            let ret = match model.pages.get(&stop) {
                _ if stop == page + pages => 0,
                Some(_) => -EPERM,
                None => -ENOMEM,
            };
            (call, ret)
        }
        Op::Madvise {
            page,
            pages,
            advice,
        } => {
            let ret = if model.mapped(page, page + pages) {
                0
            } else {
                -ENOMEM
            };
            let call = Call::Madvise {
                addr: addr(page),
                len: pages * PAGE_SIZE,
                advice,
            };
            (call, ret)
        }
        Op::Mlock { page, pages, lock } => {
            let (addr, len) = (addr(page), pages * PAGE_SIZE);
            let call = if lock {
                Call::Mlock { addr, len }
            } else {
                Call::Munlock { addr, len }
            };
            let ret = if model.mapped(page, page + pages) {
                0
            } else {
                -ENOMEM
            };
            (call, ret)
        }
        Op::Mseal { page, pages } => {
            let call = Call::Mseal {
                addr: addr(page),
                len: pages * PAGE_SIZE,
                flags: 0,
            };
            if !model.mapped(page, page + pages) {
                return (call, -ENOMEM);
            }
            for p in page..page + pages {
                model.pages.get_mut(&p).expect("mapped").sealed = true;
            }
            (call, 0)
        }
        Op::Userfaultfd { page, pages, mode } => {
            let (start, len) = (addr(page), pages * PAGE_SIZE);
            let call = if mode == 0 {
                Call::UffdUnregister { fd: 3, start, len }
            } else {
                Call::UffdRegister {
                    fd: 3,
                    start,
                    len,
                    mode,
                }
            };
            // Registration changes no printed attribute; regular files cannot be registered,
            // and the calls check the whole range first.
            let ret = if !model.mapped(page, page + pages) {
                -ENOMEM
            } else if (page..page + pages)
                .any(|p| matches!(model.pages[&p].object, Object::File(_)))
            {
                -EINVAL
            } else {
                0
            };
            (call, ret)
        }
        Op::Mremap {
            page,
            pages,
            new_pages,
            to,
        } => mremap(model, page, pages, new_pages, to),
    }
}

/// mremap in the model, for the cases whose outcome the model can tell without VMAs.
fn mremap(
    model: &mut Model,
    page: u64,
    pages: u64,
    new_pages: u64,
    to: Option<u64>,
) -> (Call, i64) {
    let (flags, new_addr) = match to {
        Some(dest) => (MREMAP_MAYMOVE | MREMAP_FIXED, addr(dest)),
        None => (0, 0),
    };
    let call = Call::Mremap {
        old_addr: addr(page),
        old_len: pages * PAGE_SIZE,
        new_len: new_pages * PAGE_SIZE,
        flags,
        new_addr,
    };
    let refused = (call, -EFAULT);
    let dest_overlaps = to.is_some_and(|dest| dest < page + pages && page < dest + new_pages);
    if dest_overlaps || to.is_some_and(|dest| dest + new_pages > PAGES) {
        // check_mremap_params() refuses these before looking at any VMA.
        return (call, -EINVAL);
    }
    if let Some(dest) = to.filter(|_| new_pages == pages) {
        return remap_move(model, call, page, pages, dest);
    }
    // One mapping of uniform pages (which the kernel may hold as one VMA) moves or resizes.
    let uniform = model.mapped(page, page + pages)
        && !model.sealed(page, page + pages)
        && (page..page + pages - 1).all(|p| Model::alike(&model.pages[&p], &model.pages[&(p + 1)]));
    match to {
        None if new_pages < pages => {
            if !model.pages.contains_key(&page) || model.sealed(page + new_pages, page + pages) {
                return refused;
            }
            for p in page + new_pages..page + pages {
                model.pages.remove(&p);
            }
            (call, addr(page) as i64)
        }
        None => {
            let end = page + new_pages;
            // Growing in place needs free pages after the range, which then ends its VMA.
            let grows_into_free =
                end <= PAGES && !(page + pages..end).any(|p| model.pages.contains_key(&p));
            if !uniform || !grows_into_free {
                return refused;
            }
            let last = model.pages[&(page + pages - 1)];
            for (i, p) in (page + pages..end).enumerate() {
                let offset = match last.object {
                    Object::Anon => 0,
                    _ => last.offset + (i as u64 + 1) * PAGE_SIZE,
                };
                model.pages.insert(p, Page { offset, ..last });
            }
            (call, addr(page) as i64)
        }
        Some(dest) => {
            if !uniform || model.sealed(dest, dest + new_pages) {
                return refused;
            }
            let moved: Vec<Page> = (page..page + pages).map(|p| model.pages[&p]).collect();
            for p in dest..dest + new_pages {
                model.pages.remove(&p);
            }
            for p in page..page + pages {
                model.pages.remove(&p);
            }
            let last = moved[moved.len() - 1];
            for i in 0..new_pages {
                let pg = match moved.get(i as usize) {
                    Some(pg) => *pg,
                    None => Page {
                        offset: match last.object {
                            Object::Anon => 0,
                            _ => last.offset + (i + 1 - pages) * PAGE_SIZE,
                        },
                        ..last
                    },
                };
                model.pages.insert(dest + i, pg);
            }
            (call, addr(dest) as i64)
        }
    }
}

/// remap_move(): a fixed move without resizing moves what is mapped of the source to the same
/// offsets from `dest`, leaving the destination's other pages as they are, and stops at sealed
/// memory keeping the moves before. (A sealed page in the destination would stop it part-way
/// through a VMA the model cannot see, so the model makes no such move.)
fn remap_move(model: &mut Model, call: Call, page: u64, pages: u64, dest: u64) -> (Call, i64) {
    if model.sealed(dest, dest + pages) {
        return (call, -EINVAL);
    }
    if !model.pages.contains_key(&page) {
        return (call, -EFAULT);
    }
    for p in page..page + pages {
        let Some(&pg) = model.pages.get(&p) else {
            continue;
        };
        if pg.sealed {
            return (call, -EPERM);
        }
        model.pages.remove(&p);
        model.pages.insert(dest + (p - page), pg);
    }
    (call, addr(dest) as i64)
}

/// Checks the table's structure and every page of it against the model.
fn check(table: &AddressSpace, model: &Model) -> Result<(), TestCaseError> {
    let mappings: Vec<&Mapping> = table.mappings().collect();
    for m in &mappings {
        prop_assert!(m.start < m.end, "empty mapping {m:?}");
        prop_assert!(
            m.start % PAGE_SIZE == 0 && m.end % PAGE_SIZE == 0,
            "unaligned {m:?}"
        );
    }
    for pair in mappings.windows(2) {
        prop_assert!(
            pair[0].end <= pair[1].start,
            "overlap or disorder: {pair:?}"
        );
    }
    for page in 0..PAGES {
        let at = addr(page);
        let ours = mappings.iter().find(|m| m.start <= at && at < m.end);
        match (model.pages.get(&page), ours) {
            (None, None) => {}
            (Some(pg), Some(m)) => {
                let offset = if m.inode == 0 {
                    0
                } else {
                    m.offset + (at - m.start)
                };
                prop_assert_eq!(m.perms, pg.perms, "access of page {}", page);
                prop_assert_eq!(m.inode, Model::inode(pg.object), "file of page {}", page);
                prop_assert_eq!(&m.name, &Model::name(pg.object), "name of page {}", page);
                prop_assert_eq!(offset, pg.offset, "offset of page {}", page);
            }
            (expected, got) => {
                prop_assert!(false, "page {page}: model {expected:?}, table {got:?}")
            }
        }
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES runs more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn the_table_has_the_models_pages_after_any_calls(ops in prop::collection::vec(op(), 1..60)) {
        let mut model = Model::default();
        let mut table = AddressSpace::from_mappings(Vec::new(), 0);
        for op in &ops {
            let (call, ret) = step(&mut model, op);
            table.apply(&call, ret, &mut ModelKernel(&model));
            check(&table, &model)?;
        }
        table.refresh_growing_mappings(&mut ModelKernel(&model));
        check(&table, &model)?;
    }
}

// The three-way model: the kernel's VMAs, anon_vmas included.
//
// Where the page model above answers the table's questions with the most merged the kernel could
// be, this one is the kernel as far as merging goes (6.18 mm/vma.c): VMAs that split and merge,
// each with its anon_vma, which a write gives a VMA that has none. The table must then end with
// exactly its VMAs. The table decides a merge itself only where it knows the anon_vmas (a new
// range has none, shared memory never has one, pieces one call split share theirs) and asks
// otherwise; the model answers from its VMAs. (It gives a written VMA a new anon_vma where the
// kernel may reuse a neighbour's, find_mergeable_anon_vma(): a choice the table asks about, so
// it need not follow.)

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
            device: device(self.object),
            inode: Model::inode(self.object),
            name: Model::name(self.object),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Kernel {
    vmas: BTreeMap<u64, KVma>,
    next_anon: u64,
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
    /// right one only if the neighbours agree with each other when the left one merged.
    fn merge_around(&mut self, start: u64) {
        let mid = self.vmas[&start].clone();
        let prev = self
            .vmas
            .range(..start)
            .next_back()
            .map(|(_, v)| v.clone())
            .filter(|p| p.end == start);
        let next = self.vmas.get(&mid.end).cloned();
        let left = prev
            .as_ref()
            .is_some_and(|p| mergeable(p, &mid) && anon_compatible(p.anon, mid.anon));
        let right = next.as_ref().is_some_and(|n| {
            mergeable(&mid, n)
                && anon_compatible(mid.anon, n.anon)
                && (!left || anon_compatible(prev.as_ref().unwrap().anon, n.anon))
        });
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
                self.split(cursor);
                self.split(piece_end);
                f(self.vmas.get_mut(&cursor).unwrap());
                self.merge_around(cursor);
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
                kernel.merge_around(page);
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
                kernel.merge_around(vma.start);
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
                    kernel.merge_around(dest);
                    kernel.unmap(from, until);
                }
                (call, addr(to) as i64)
            }
        })
    }
}

/// The kernel model as the oracle the table asks.
struct KernelOracle<'a>(&'a Kernel);

impl VmaOracle for KernelOracle<'_> {
    fn vma_at(&mut self, at: u64) -> Option<Mapping> {
        let page = at.checked_sub(BASE)? / PAGE_SIZE;
        self.0.vma_at(page).map(KVma::mapping)
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
    ]
    .prop_map(|op| vec![op]);
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
    prop_oneof![3 => single, 1 => bridge]
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
