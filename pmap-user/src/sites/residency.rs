//! What each call site's anonymous memory holds: resident, swapped, reserved and committed
//! bytes, from the ranges each site owns, the table's protections and the pages
//! `/proc/PID/pagemap` shows in use at the dump ([`crate::procfs::pagemap`]); and what a
//! ranking orders sites by ([`Rank`]).
//!
//! - **resident**: pages in memory (as smaps' `Rss`; the shared zero page is not one);
//! - **swapped**: pages swapped out;
//! - **reserved**: the rest of the site's live bytes: address space with no memory behind it,
//!   never touched, `PROT_NONE`, or given back (`MADV_DONTNEED`, `MADV_FREE` once reclaimed).
//!   live = resident + swapped + reserved;
//! - **committed**: writable bytes, touched or not: what the kernel charges against the
//!   overcommit limit for private memory (`accountable_mapping` in mm/vma.h: `VM_WRITE`
//!   without `VM_SHARED` or `VM_NORESERVE`). It overlaps the other three.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::ownership::SiteId;
use crate::{
    model::Mapping,
    procfs::pagemap::{PageRun, PageState},
};

/// What a ranking (`--rank`) or the folded weights (`--folded-weight`) count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rank {
    Resident,
    Committed,
    Reserved,
    /// Live bytes: the address space a site owns, whatever backs it. Needs no page read.
    Live,
}

impl Rank {
    pub const ALL: [Rank; 4] = [Rank::Resident, Rank::Committed, Rank::Reserved, Rank::Live];

    /// As the option and the JSON name it.
    pub fn name(self) -> &'static str {
        match self {
            Rank::Resident => "resident",
            Rank::Committed => "committed",
            Rank::Reserved => "reserved",
            Rank::Live => "live",
        }
    }

    pub fn parse(name: &str) -> Option<Rank> {
        Rank::ALL.into_iter().find(|rank| rank.name() == name)
    }

    /// Whether counting it reads the pages.
    pub fn needs_pages(self) -> bool {
        self != Rank::Live
    }

    /// What a site with `live` bytes and `footprint` weighs, when it can be told: every rank
    /// but [`Rank::Live`] needs the footprint.
    pub fn weight(self, live: u64, footprint: Option<&Footprint>) -> Option<u64> {
        match (self, footprint) {
            (Rank::Live, _) => Some(live),
            (Rank::Resident, Some(f)) => Some(f.resident),
            (Rank::Committed, Some(f)) => Some(f.committed),
            (Rank::Reserved, Some(f)) => Some(f.reserved),
            (_, None) => None,
        }
    }
}

/// A site's memory by what backs it (see the module's definitions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub resident: u64,
    pub swapped: u64,
    pub reserved: u64,
    pub committed: u64,
}

impl std::ops::AddAssign for Footprint {
    fn add_assign(&mut self, other: Footprint) {
        self.resident += other.resident;
        self.swapped += other.swapped;
        self.reserved += other.reserved;
        self.committed += other.committed;
    }
}

/// A column of the text report: its name and what it shows of a footprint.
pub type Column = (&'static str, fn(&Footprint) -> u64);

/// The columns a text report shows after live bytes and growth, its footprint `total`: swapped
/// only when some of the memory is.
pub fn columns(total: &Footprint) -> Vec<Column> {
    let mut columns: Vec<Column> = vec![("resident", |f| f.resident)];
    if total.swapped > 0 {
        columns.push(("swapped", |f| f.swapped));
    }
    columns.push(("committed", |f| f.committed));
    columns.push(("reserved", |f| f.reserved));
    columns
}

/// Adds a footprint's fields to a JSON object (each null when the pages were not read).
pub fn footprint_json(object: &mut Value, footprint: Option<&Footprint>) {
    let field = |bytes: fn(&Footprint) -> u64| footprint.map(bytes);
    object["resident_bytes"] = json!(field(|f| f.resident));
    object["swapped_bytes"] = json!(field(|f| f.swapped));
    object["committed_bytes"] = json!(field(|f| f.committed));
    object["reserved_bytes"] = json!(field(|f| f.reserved));
}

/// The owned ranges to read the pages of: `owned` (in address order) joined where they touch,
/// so that one read covers neighbours of different sites.
pub fn spans(owned: impl Iterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (start, end) in owned {
        match spans.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => spans.push((start, end)),
        }
    }
    spans
}

/// Each site's footprint: `owned` ranges `(start, end, site)` and `pages` (runs of resident or
/// swapped pages) in address order, `mappings` the table's, in address order. Memory no
/// mapping covers (the table and the owners disagree only between a lost record and the
/// re-read) is counted as not writable.
pub fn footprints(
    owned: impl Iterator<Item = (u64, u64, SiteId)>,
    mappings: &[Mapping],
    pages: &[PageRun],
) -> HashMap<SiteId, Footprint> {
    let writable: Vec<(u64, u64)> = mappings
        .iter()
        .filter(|m| m.perms.write && !m.perms.shared)
        .map(|m| (m.start, m.end))
        .collect();
    let pages = disjoint(pages);
    let (mut w, mut p) = (0, 0);
    let mut by_site: HashMap<SiteId, Footprint> = HashMap::new();
    for (start, end, site) in owned {
        let clip = |s: u64, e: u64| e.min(end).saturating_sub(s.max(start));
        let mut footprint = Footprint::default();
        for &(s, e) in overlapping(&writable, &mut w, start, end, |&range| range) {
            footprint.committed += clip(s, e);
        }
        for run in overlapping(&pages, &mut p, start, end, |run| (run.start, run.end)) {
            match run.state {
                PageState::Resident => footprint.resident += clip(run.start, run.end),
                PageState::Swapped => footprint.swapped += clip(run.start, run.end),
            }
        }
        // Runs that overlap (they should not) must not make it negative: one page counted
        // twice is a wrong column, a panic loses the dump.
        footprint.reserved = (end - start).saturating_sub(footprint.resident + footprint.swapped);
        *by_site.entry(site).or_default() += footprint;
    }
    by_site
}

/// `pages` (in address order) with each run cut where an earlier one already counted its pages.
fn disjoint(pages: &[PageRun]) -> Vec<PageRun> {
    let mut out: Vec<PageRun> = Vec::with_capacity(pages.len());
    for run in pages {
        let start = out.last().map_or(run.start, |last| run.start.max(last.end));
        if start < run.end {
            out.push(PageRun { start, ..*run });
        }
    }
    out
}

/// The ranges of the sorted, disjoint `ranges` (each as `bounds` gives it) that overlap
/// `[start, end)`, the search starting at `*at` and leaving it at the last of them, which may
/// reach into the next range asked: asked in address order, each range is walked about once.
fn overlapping<'a, T>(
    ranges: &'a [T],
    at: &mut usize,
    start: u64,
    end: u64,
    bounds: impl Fn(&T) -> (u64, u64),
) -> &'a [T] {
    while *at < ranges.len() && bounds(&ranges[*at]).1 <= start {
        *at += 1;
    }
    let first = *at;
    let mut last = first;
    while last < ranges.len() && bounds(&ranges[last]).0 < end {
        last += 1;
    }
    *at = last.saturating_sub(1).max(first);
    &ranges[first..last]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PAGE_SIZE, Perms};

    const PAGE: u64 = PAGE_SIZE;
    const BASE: u64 = 0x1000_0000;

    fn page(n: u64) -> u64 {
        BASE + n * PAGE
    }

    fn mapping(from: u64, to: u64, write: bool) -> Mapping {
        Mapping {
            start: page(from),
            end: page(to),
            perms: Perms {
                read: write,
                write,
                ..Perms::default()
            },
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: Vec::new(),
        }
    }

    fn run(from: u64, to: u64, state: PageState) -> PageRun {
        PageRun {
            start: page(from),
            end: page(to),
            state,
        }
    }

    #[test]
    fn each_site_gets_the_pages_and_protections_of_its_own_ranges() {
        let (a, b, c) = (SiteId(10), SiteId(11), SiteId(12));
        // a owns 0..4 and 10..12, b 4..10 (a reservation: PROT_NONE but for 6..8), c 20..24.
        let owned = [
            (page(0), page(4), a),
            (page(4), page(10), b),
            (page(10), page(12), a),
            (page(20), page(24), c),
        ];
        let mappings = [
            mapping(0, 4, true),
            mapping(4, 6, false),
            mapping(6, 8, true),
            mapping(8, 10, false),
            mapping(10, 12, true),
            mapping(20, 24, true),
        ];
        // One run straddles a's and b's ranges, another b's and a's; c has a swapped page.
        let pages = [
            run(1, 5, PageState::Resident),
            run(7, 11, PageState::Resident),
            run(21, 22, PageState::Swapped),
            run(22, 23, PageState::Resident),
        ];
        let by_site = footprints(owned.into_iter(), &mappings, &pages);
        assert_eq!(
            by_site[&a],
            Footprint {
                resident: 4 * PAGE,
                swapped: 0,
                reserved: 2 * PAGE,
                committed: 6 * PAGE,
            }
        );
        assert_eq!(
            by_site[&b],
            Footprint {
                resident: 4 * PAGE,
                swapped: 0,
                reserved: 2 * PAGE,
                committed: 2 * PAGE,
            }
        );
        assert_eq!(
            by_site[&c],
            Footprint {
                resident: PAGE,
                swapped: PAGE,
                reserved: 2 * PAGE,
                committed: 4 * PAGE,
            }
        );
        // Every owned byte is resident, swapped or reserved.
        for (site, footprint) in &by_site {
            let live: u64 = owned
                .iter()
                .filter(|(_, _, s)| s == site)
                .map(|(s, e, _)| e - s)
                .sum();
            assert_eq!(
                footprint.resident + footprint.swapped + footprint.reserved,
                live
            );
        }
    }

    #[test]
    fn pages_reported_twice_count_once() {
        // Seen on redis-server under load (a panic: reserved went below zero): two reads of
        // neighbouring ranges both gave the pages of one huge page.
        let site = SiteId(1);
        let owned = [(page(0), page(4), site), (page(4), page(8), site)];
        let pages = [
            run(0, 6, PageState::Resident),
            run(4, 6, PageState::Resident),
            run(5, 7, PageState::Resident),
        ];
        let by_site = footprints(owned.into_iter(), &[mapping(0, 8, true)], &pages);
        assert_eq!(
            by_site[&site],
            Footprint {
                resident: 7 * PAGE,
                swapped: 0,
                reserved: PAGE,
                committed: 8 * PAGE,
            }
        );
    }

    #[test]
    fn pages_and_mappings_outside_the_owned_ranges_count_for_no_one() {
        let a = SiteId(10);
        let owned = [(page(4), page(6), a)];
        // A writable file mapping below, a shared one over the range (the table says so after
        // a MAP_FIXED the owners have not seen yet), resident pages all around.
        let mut shared = mapping(4, 6, true);
        shared.perms.shared = true;
        let mappings = [mapping(0, 4, true), shared];
        let pages = [
            run(0, 3, PageState::Resident),
            run(5, 9, PageState::Resident),
        ];
        assert_eq!(
            footprints(owned.into_iter(), &mappings, &pages)[&a],
            Footprint {
                resident: PAGE,
                swapped: 0,
                reserved: PAGE,
                committed: 0,
            }
        );
    }

    #[test]
    fn touching_ranges_are_read_as_one_span() {
        let owned = [(page(0), page(2)), (page(2), page(3)), (page(5), page(6))];
        assert_eq!(
            spans(owned.into_iter()),
            [(page(0), page(3)), (page(5), page(6))]
        );
    }

    #[test]
    fn ranks_weigh_what_they_name_and_only_live_needs_no_pages() {
        let footprint = Footprint {
            resident: 1,
            swapped: 2,
            reserved: 3,
            committed: 4,
        };
        let weights = Rank::ALL.map(|rank| rank.weight(10, Some(&footprint)));
        assert_eq!(weights, [Some(1), Some(4), Some(3), Some(10)]);
        let unknown = Rank::ALL.map(|rank| rank.weight(10, None));
        assert_eq!(unknown, [None, None, None, Some(10)]);
        for rank in Rank::ALL {
            assert_eq!(Rank::parse(rank.name()), Some(rank));
            assert_eq!(rank.needs_pages(), rank != Rank::Live);
        }
        assert_eq!(Rank::parse("rss"), None);
    }
}
