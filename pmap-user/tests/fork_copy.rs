//! A forked child's table is its parent's at the fork (dup_mmap(), kernel/fork.c): without the
//! VMAs marked MADV_DONTFORK, with the MADV_WIPEONFORK ones, and certain only where the table
//! knows those flags or the kernel's count of the child's VMAs agrees with the copy.

use pmap_common::linux::{MADV_DONTFORK, MADV_WIPEONFORK, PAGE_SIZE as PAGE};
use pmap_trace::{
    decode::Call,
    model::{Device, Mapping, Perms},
    table::{AddressSpace, HiddenFlags, NoOracle},
};

fn anon(page: u64, pages: u64, name: &str) -> Mapping {
    Mapping {
        start: 0x10_0000 + page * PAGE,
        end: 0x10_0000 + (page + pages) * PAGE,
        perms: Perms {
            read: true,
            write: true,
            ..Perms::default()
        },
        offset: 0,
        device: Device::default(),
        inode: 0,
        name: name.as_bytes().to_vec(),
    }
}

/// Three anonymous VMAs apart from one another, and the gate page /proc lists after them.
fn layout() -> Vec<Mapping> {
    let mut gate = anon(0, 1, "[vsyscall]");
    (gate.start, gate.end) = (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000);
    vec![anon(0, 2, ""), anon(4, 2, ""), anon(8, 2, ""), gate]
}

/// A table whose hidden flags are all known, as an exec's image gives it.
fn known() -> AddressSpace {
    let vmas = layout()
        .into_iter()
        .map(|m| {
            let pgoff = m.start / PAGE;
            (m, HiddenFlags::default(), pgoff)
        })
        .collect();
    AddressSpace::from_image(vmas, 0, 0)
}

fn madvise(table: &mut AddressSpace, page: u64, advice: u64) {
    let call = Call::Madvise {
        addr: 0x10_0000 + page * PAGE,
        len: 2 * PAGE,
        advice,
    };
    table.apply(&call, 0, &mut NoOracle);
}

fn starts(table: &AddressSpace) -> Vec<u64> {
    table
        .mappings()
        .map(|m| (m.start - 0x10_0000) / PAGE)
        .collect()
}

#[test]
fn the_child_has_the_parents_vmas_but_the_dontfork_ones() {
    let mut parent = known();
    madvise(&mut parent, 4, MADV_DONTFORK);
    madvise(&mut parent, 8, MADV_WIPEONFORK);
    let (child, certain) = parent.forked(false, None);
    assert!(certain, "every flag is known");
    let gate = (0xffff_ffff_ff60_0000 - 0x10_0000) / PAGE;
    assert_eq!(starts(&child), [0, 8, gate]);
    // The parent keeps its own.
    assert_eq!(starts(&parent), [0, 4, 8, gate]);
    assert_eq!(
        child.hidden_flag_at(0x10_0000 + 8 * PAGE, HiddenFlags::WIPEONFORK),
        Some(true)
    );
}

#[test]
fn a_table_read_from_proc_is_certain_only_when_the_kernels_count_agrees() {
    let parent = AddressSpace::from_mappings(layout(), 0);
    assert!(!parent.forked(false, None).1, "MADV_DONTFORK unknown");
    // map_count leaves the gate page out.
    assert!(parent.forked(false, Some(3)).1);
    assert!(!parent.forked(false, Some(2)).1, "one VMA was not copied");
    assert_eq!(parent.forked(false, Some(2)).0.mappings().count(), 4);
}

#[test]
fn a_child_sharing_the_mm_has_the_very_same_vmas() {
    let mut parent = known();
    madvise(&mut parent, 4, MADV_DONTFORK);
    let (child, certain) = parent.forked(true, None);
    assert!(certain);
    assert_eq!(child.to_mappings(), parent.to_mappings());
}
