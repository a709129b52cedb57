//! The page model: one record per page of a small window, no VMAs (see the crate's docs).

use std::collections::BTreeMap;

use super::window::{BASE, Object, addr, perms};
use pmap_common::linux::{
    EFAULT, EINVAL, ENOMEM, EPERM, MADV_DONTDUMP, MADV_HUGEPAGE, MADV_RANDOM, MAP_ANONYMOUS,
    MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC, PROT_READ,
    PROT_WRITE,
};
use pmap_trace::{
    decode::Call,
    model::{Mapping, PAGE_SIZE, Perms},
    table::{AddressSpace, VmaOracle},
};
use proptest::prelude::*;

/// Pages in the window the calls work on.
const PAGES: u64 = 24;

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
            device: Object::device(this.object),
            inode: Object::inode(this.object),
            name: Object::name(this.object),
        })
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
                prop_assert_eq!(m.inode, Object::inode(pg.object), "file of page {}", page);
                prop_assert_eq!(&m.name, &Object::name(pg.object), "name of page {}", page);
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
