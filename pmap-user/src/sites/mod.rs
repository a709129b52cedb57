//! Which code grew the anonymous memory (on unless `--no-sites`). Each growth call's stack
//! (copied by the kernel) is unwound when its event is applied and interned as a call site; its
//! event line names the site, symbolized once per site (names cached per location); each
//! process's [`Attribution`] keeps every anonymous byte owned by the site that created or grew
//! it; and each dump is followed by the top sites by resident bytes (read then from the
//! process's pagemap, see [`residency`]; or by what `--rank` asks) and by growth since the
//! previous dump, with allocator frames folded away and start-up frames below `main` cut.

pub mod fold_rules;
#[cfg(test)]
mod fold_tests;
pub mod folded;
pub mod ownership;
pub mod perf_map;
pub mod residency;
mod stack_memo;
pub mod start_up;
pub mod symbolize;
pub mod touches;
pub mod unwind;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use serde_json::{Value, json};

use self::{
    ownership::{Attribution, SiteId},
    perf_map::PerfMaps,
    residency::{Column, Footprint, Rank, columns, footprint_json, footprints, spans},
    start_up::cut_below_main,
    symbolize::{SymbolFrame, Symbols, fold},
    touches::{TouchLine, rank_touchers},
    unwind::{FrameLoc, ModuleId, Modules, ProcessUnwinder},
};
use crate::{
    decode::{Call, UserStack},
    model::PAGE_SIZE,
    procfs::pagemap::Pagemap,
    table::AddressSpace,
};

/// Where memory came from when no stack names its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Mapped before pmap-trace attached.
    BeforeTracing,
    /// Mapped by exec itself (the new program's bss and heap start), without a call.
    Exec,
    /// Grown by a call whose stack was not copied (`--stack-bytes 0`).
    NotCopied,
    /// Grown by a call whose stack copy the full ring had no room for.
    CopyLost,
    /// Found anonymous when a table was read again after lost records, owner unknown.
    Unknown,
}

impl Origin {
    const ALL: [Origin; 5] = [
        Origin::BeforeTracing,
        Origin::Exec,
        Origin::NotCopied,
        Origin::CopyLost,
        Origin::Unknown,
    ];

    fn site(self) -> SiteId {
        SiteId(Origin::ALL.iter().position(|&o| o == self).expect("listed") as u32)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Origin::BeforeTracing => "(mapped before tracing started)",
            Origin::Exec => "(mapped by exec)",
            Origin::NotCopied => "(no stack copied: --stack-bytes 0)",
            Origin::CopyLost => "(stack copy lost: ring full)",
            Origin::Unknown => "(owner unknown: records were lost)",
        }
    }
}

/// Every distinct stack seen, as a tree of callers: a stack is the node of its innermost frame,
/// whose caller is the node of the stack without that frame. Stacks that share callers share
/// their nodes, so a new stack costs only the frames no stack before it had, and each is kept
/// once. Nodes name their location by index: there are few distinct locations (return
/// addresses in the code) but many nodes.
struct Sites {
    /// Every location seen, each once.
    locs: Vec<FrameLoc>,
    loc_ids: HashMap<FrameLoc, LocId>,
    /// The frame nodes, the first at [`Sites::FIRST_NODE`].
    nodes: Vec<Node>,
    /// Each node by its caller and location.
    children: HashMap<Node, SiteId>,
}

/// A [`FrameLoc`] by its index in [`Sites`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LocId(u32);

/// One frame of the tree: its location, called from `caller`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Node {
    caller: SiteId,
    loc: LocId,
}

impl Sites {
    /// The stack with no frame, the caller of every outermost frame. The ids before it are
    /// the [`Origin`]s, which have no frames either.
    const EMPTY: SiteId = SiteId(Origin::ALL.len() as u32);
    const FIRST_NODE: u32 = Sites::EMPTY.0 + 1;

    fn new() -> Sites {
        Sites {
            locs: Vec::new(),
            loc_ids: HashMap::new(),
            nodes: Vec::new(),
            children: HashMap::new(),
        }
    }

    /// The id of the stack `frames`, innermost first.
    fn intern(&mut self, frames: &[FrameLoc]) -> SiteId {
        let mut id = Sites::EMPTY;
        for &loc in frames.iter().rev() {
            let loc = *self.loc_ids.entry(loc).or_insert_with(|| {
                self.locs.push(loc);
                LocId(self.locs.len() as u32 - 1)
            });
            let node = Node { caller: id, loc };
            id = *self.children.entry(node).or_insert_with(|| {
                self.nodes.push(node);
                SiteId(Sites::FIRST_NODE + self.nodes.len() as u32 - 1)
            });
        }
        id
    }

    /// The frames of the stack `id`, innermost first (none for an origin).
    fn frames(&self, mut id: SiteId) -> impl Iterator<Item = &FrameLoc> {
        std::iter::from_fn(move || {
            let node = self
                .nodes
                .get(id.0.checked_sub(Sites::FIRST_NODE)? as usize)?;
            id = node.caller;
            Some(&self.locs[node.loc.0 as usize])
        })
    }

    fn origin(&self, id: SiteId) -> Option<Origin> {
        Origin::ALL.get(id.0 as usize).copied()
    }
}

/// A stack as a report shows it: symbolized, innermost first, allocator frames folded away.
pub type ShownStack = Arc<[Arc<SymbolFrame>]>;

/// A [`ShownStack`] by its index in [`Shown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ShownId(u32);

/// Every stack shown so far, each kept once, and the one each site shows as. Sites that differ
/// only in allocator frames (or in return addresses within one line) show as one stack: to a
/// reader they are one site.
#[derive(Default)]
struct Shown {
    stacks: Vec<ShownStack>,
    ids: HashMap<ShownStack, ShownId>,
    /// What a site shows as never changes once all its frames are named: they are read once.
    of_site: HashMap<SiteId, ShownId>,
    /// Sites with JIT code no perf map named yet: the runtime may write the names later (the
    /// JVM when asked), so they are read again at each report until named.
    unnamed: HashSet<SiteId>,
}

impl Shown {
    fn site(&self, site: SiteId) -> Option<ShownId> {
        self.of_site.get(&site).copied()
    }

    /// Whether the next report must read the names of `site`'s frames.
    fn needs_names(&self, site: SiteId) -> bool {
        !self.of_site.contains_key(&site) || self.unnamed.contains(&site)
    }

    /// Records that `site` shows as `frames`, for good once they are `all_named`.
    fn insert(&mut self, site: SiteId, frames: &[Arc<SymbolFrame>], all_named: bool) -> ShownId {
        if all_named {
            self.unnamed.remove(&site);
        } else {
            self.unnamed.insert(site);
        }
        let id = match self.ids.get(frames) {
            Some(&id) => id,
            None => {
                let id = ShownId(self.stacks.len() as u32);
                let stack: ShownStack = frames.into();
                self.stacks.push(stack.clone());
                self.ids.insert(stack, id);
                id
            }
        };
        self.of_site.insert(site, id);
        id
    }

    fn stack(&self, id: ShownId) -> &ShownStack {
        &self.stacks[id.0 as usize]
    }
}

/// What follows each dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The [`SUMMARY_SITES`] sites holding or growing the most, one line each (the default).
    Summary,
    /// `--sites N`: the N sites holding the most and the N that grew most, with their stacks.
    Sites(usize),
}

/// Sites in the summary after each dump.
pub const SUMMARY_SITES: usize = 5;

impl Listing {
    /// Sites in each ranking.
    fn top(self) -> usize {
        match self {
            Listing::Summary => SUMMARY_SITES,
            Listing::Sites(top) => top,
        }
    }
}

/// Call-site settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SitesSettings {
    pub listing: Listing,
    /// Bytes of stack the kernel copies per growth call (0: none).
    pub stack_bytes: u32,
    /// `--full-stacks`: keep allocator frames and the start-up frames below `main`.
    pub full_stacks: bool,
    /// `--faults=N`: one first-touch page fault in N is sampled and counted for the site that
    /// owns the page.
    pub fault_period: Option<u32>,
    /// What the rankings order sites by (`--rank`).
    pub rank: Rank,
    /// What `--folded`/`--flamegraph` weigh stacks by (`--folded-weight`).
    pub folded_weight: Rank,
}

impl SitesSettings {
    /// Whether dumps read which pages of the sites' memory are in use.
    fn reads_pages(&self) -> bool {
        self.rank.needs_pages() || self.folded_weight.needs_pages()
    }
}

/// One process's owners, unwinder and previous report.
struct ProcessSites {
    attribution: Attribution,
    unwinder: ProcessUnwinder,
    /// Live bytes by shown stack at the previous report, for the growth ranking.
    previous: HashMap<ShownId, u64>,
    /// `--faults`: first-touch samples since the previous report, by the site of the code that
    /// touched the page and the site that owns it.
    touches: HashMap<(SiteId, SiteId), u64>,
    /// Its pagemap, opened with its address space (see [`Pagemap`]); none when the ranking
    /// needs no pages or the kernel refused it.
    pagemap: Option<Pagemap>,
}

impl ProcessSites {
    fn new(pid: u32, attribution: Attribution, settings: &SitesSettings) -> ProcessSites {
        ProcessSites {
            attribution,
            unwinder: ProcessUnwinder::default(),
            previous: HashMap::new(),
            touches: HashMap::new(),
            pagemap: settings
                .reads_pages()
                .then(|| Pagemap::open(pid as i32).ok())
                .flatten(),
        }
    }

    /// Each site's footprint now, if the pages can be read: the process may have gone.
    fn footprints(&mut self, table: &AddressSpace) -> Option<HashMap<SiteId, Footprint>> {
        let pagemap = self.pagemap.as_mut()?;
        let mut pages = Vec::new();
        for (start, end) in spans(self.attribution.ranges().map(|(s, e, _)| (s, e))) {
            if pagemap.runs(start, end, &mut pages).is_err() {
                // Gone (or exec'd: its new address space gets a new pagemap when seeded).
                self.pagemap = None;
                return None;
            }
        }
        let mappings: Vec<_> = table.mappings().cloned().collect();
        Some(footprints(self.attribution.ranges(), &mappings, &pages))
    }
}

/// Call-site attribution for every traced process.
pub struct SiteTracker {
    settings: SitesSettings,
    sites: Sites,
    shown: Shown,
    modules: Modules,
    symbols: Symbols,
    /// Names of JIT-compiled code, by process.
    jit: PerfMaps,
    processes: HashMap<u32, ProcessSites>,
}

impl SiteTracker {
    pub fn new(settings: SitesSettings) -> SiteTracker {
        SiteTracker {
            settings,
            sites: Sites::new(),
            shown: Shown::default(),
            modules: Modules::default(),
            symbols: Symbols::default(),
            jit: PerfMaps::default(),
            processes: HashMap::new(),
        }
    }

    /// Process `pid`, whose `table` was just read from scratch (attach, exec, a new child): its
    /// anonymous memory so far comes from `origin`.
    pub fn seeded(&mut self, pid: u32, table: &AddressSpace, origin: Origin) {
        let mappings: Vec<_> = table.mappings().cloned().collect();
        let attribution = Attribution::seeded(&mappings, table.start_brk(), origin.site());
        let process = ProcessSites::new(pid, attribution, &self.settings);
        self.processes.insert(pid, process);
    }

    /// A child forked by `parent` (its table `table`) has the parent's memory, owners
    /// included.
    pub fn forked(&mut self, parent: u32, child: u32, table: &AddressSpace) {
        let Some(from) = self.processes.get(&parent) else {
            return self.seeded(child, table, Origin::BeforeTracing);
        };
        let mut attribution = from.attribution.clone();
        let mappings: Vec<_> = table.mappings().cloned().collect();
        attribution.reconcile(&mappings, table.start_brk(), Origin::Unknown.site());
        let process = ProcessSites::new(child, attribution, &self.settings);
        self.processes.insert(child, process);
    }

    /// `pid`'s table read again (after lost records, or `--verify` found it wrong): owners of
    /// ranges still anonymous stay.
    pub fn reread(&mut self, pid: u32, table: &AddressSpace) {
        let Some(process) = self.processes.get_mut(&pid) else {
            return self.seeded(pid, table, Origin::BeforeTracing);
        };
        let mappings: Vec<_> = table.mappings().cloned().collect();
        process
            .attribution
            .reconcile(&mappings, table.start_brk(), Origin::Unknown.site());
        process.unwinder = ProcessUnwinder::default();
    }

    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.jit.forget(pid);
    }

    /// Applies a call of process `pid` before its `table` applies it (the stack is unwound
    /// against the code mapped when the call was made). `stack` is what the kernel copied.
    /// Returns the site the call's growth of anonymous memory went to, if it grew any.
    pub fn apply(
        &mut self,
        pid: u32,
        table: &AddressSpace,
        call: &Call,
        ret: i64,
        stack: Option<&UserStack>,
    ) -> Option<SiteId> {
        let ProcessSites {
            attribution,
            unwinder,
            ..
        } = self.processes.get_mut(&pid)?;
        let mut grown = None;
        let (modules, sites) = (&mut self.modules, &mut self.sites);
        let stack_bytes = self.settings.stack_bytes;
        // Unwinding is what costs: the attribution asks for the site only when the call grew
        // anonymous memory.
        attribution.apply(call, ret, || {
            let site = match stack {
                Some(stack) => {
                    unwinder.site_of(pid as i32, table.mappings(), modules, stack, |frames| {
                        sites.intern(frames)
                    })
                }
                None if stack_bytes == 0 => Origin::NotCopied.site(),
                None => Origin::CopyLost.site(),
            };
            grown = Some(site);
            site
        });
        unwinder.note_call(call);
        grown
    }

    /// The site an event line of process `pid` shows for a growth that went to `site`: its
    /// stack as reports show it, named now if no line or report has named it yet (a site with
    /// JIT code the perf map did not name yet keeps that name until the next report names it
    /// again).
    pub fn growth_site(&mut self, pid: u32, site: SiteId) -> GrowthSite {
        if let Some(origin) = self.sites.origin(site) {
            return GrowthSite::Unknown(origin);
        }
        let shown = match self.shown.site(site) {
            Some(shown) => shown,
            None => {
                self.name_sites(pid, &[site]);
                self.shown.site(site).expect("just named")
            }
        };
        GrowthSite::Stack(self.shown.stack(shown).clone())
    }

    /// Names the sites of process `pid` in `unshown`: symbolized in one batch, JIT code from
    /// the perf map, allocator and runtime frames folded, start-up frames cut unless
    /// `--full-stacks`.
    fn name_sites(&mut self, pid: u32, unshown: &[SiteId]) {
        self.symbols.prepare(
            unshown.iter().flat_map(|&id| self.sites.frames(id)),
            &self.modules,
        );
        // Only code outside every file is named from the perf map: a process without any is
        // spared the look at its /tmp.
        let has_jit_frames = unshown.iter().any(|&id| {
            self.sites
                .frames(id)
                .any(|loc| matches!(loc, FrameLoc::Address(_)))
        });
        if has_jit_frames {
            self.jit.refresh(pid);
        }
        let full = self.settings.full_stacks;
        for &id in unshown {
            match self.sites.origin(id) {
                Some(origin) => self
                    .shown
                    .insert(id, &[Arc::new(origin_frame(origin))], true),
                None => {
                    let mut all_named = true;
                    let mut all: Vec<Arc<SymbolFrame>> = Vec::new();
                    for loc in self.sites.frames(id) {
                        let jit = match *loc {
                            FrameLoc::Address(addr) => self.jit.frame(pid, addr),
                            _ => None,
                        };
                        match jit {
                            Some(jit) => all.push(jit.clone()),
                            None => {
                                all_named &= !matches!(loc, FrameLoc::Address(_));
                                all.extend(self.symbols.frames(loc).iter().cloned());
                            }
                        }
                    }
                    let folded = fold(&all, full);
                    let shown = if full { folded } else { cut_below_main(folded) };
                    self.shown.insert(id, shown, all_named)
                }
            };
        }
    }

    /// `--faults`: a sampled first touch of `address` by process `tgid` (its table `table`)
    /// counts for the code that touched it, whose `stack` the kernel copied, and for the site
    /// that owns the page now. A page no site owns (file or shared memory, the stack) is not
    /// anonymous memory a call created.
    pub fn first_touch(
        &mut self,
        tgid: u32,
        table: &AddressSpace,
        address: u64,
        stack: Option<&UserStack>,
    ) {
        let Some(process) = self.processes.get_mut(&tgid) else {
            return;
        };
        let Some(owner) = process.attribution.owner_at(address) else {
            return;
        };
        let sites = &mut self.sites;
        let toucher = match stack {
            Some(stack) => process.unwinder.site_of(
                tgid as i32,
                table.mappings(),
                &mut self.modules,
                stack,
                |frames| sites.intern(frames),
            ),
            None if self.settings.stack_bytes == 0 => Origin::NotCopied.site(),
            None => Origin::CopyLost.site(),
        };
        *process.touches.entry((toucher, owner)).or_insert(0) += 1;
    }

    /// The call sites of `pid` (its table `table`) by what `--rank` asks and by growth since
    /// the previous report (which this one becomes).
    pub fn report(&mut self, pid: u32, table: &AddressSpace) -> Option<SitesReport> {
        let process = self.processes.get_mut(&pid)?;
        let live_by_site = process.attribution.live_by_site();
        let live_sites: Vec<SiteId> = live_by_site.keys().copied().collect();
        let touches = std::mem::take(&mut process.touches);
        // What a site shows as never changes: only sites no report has named yet are named.
        let mut unshown: Vec<SiteId> = live_by_site
            .keys()
            .chain(touches.keys().flat_map(|(toucher, owner)| [toucher, owner]))
            .filter(|&&id| self.shown.needs_names(id))
            .copied()
            .collect();
        unshown.sort_unstable();
        unshown.dedup();
        self.name_sites(pid, &unshown);
        self.symbols.release();
        let process = self.processes.get_mut(&pid)?;
        let footprints = process.footprints(table);
        let shown_of = |id: SiteId| self.shown.site(id).expect("every site was just shown");
        let mut merged: HashMap<ShownId, Merged> = HashMap::new();
        for (id, bytes) in live_by_site {
            let site = merged.entry(shown_of(id)).or_default();
            site.live += bytes;
            site.origin = self.sites.origin(id);
            if let Some(footprint) = footprints.as_ref().and_then(|f| f.get(&id)) {
                site.footprint += *footprint;
            }
        }
        for (&(_, owner), samples) in &touches {
            let site = merged.entry(shown_of(owner)).or_default();
            site.touches += samples;
            site.origin = self.sites.origin(owner);
        }
        let touched_bytes = |samples: u64| {
            self.settings
                .fault_period
                .map(|period| samples * u64::from(period) * PAGE_SIZE)
        };
        let lines: Vec<SiteLine> = merged
            .iter()
            .map(|(id, site)| SiteLine {
                live: site.live,
                growth: site.live as i64 - process.previous.get(id).copied().unwrap_or(0) as i64,
                origin: site.origin,
                frames: self.shown.stack(*id).clone(),
                touched: touched_bytes(site.touches),
                footprint: footprints.is_some().then_some(site.footprint),
            })
            .collect();
        process.previous = merged
            .into_iter()
            .filter(|(_, site)| site.live > 0)
            .map(|(id, site)| (id, site.live))
            .collect();
        let by_touches = touched_bytes(1).map(|sample_bytes| self.touchers(&touches, sample_bytes));
        let unsymbolized = self.modules_without_symbols(live_sites);
        let mut report = SitesReport::ranked(pid, lines, &self.settings, footprints.is_some());
        report.unsymbolized = unsymbolized;
        report.by_touches = by_touches;
        Some(report)
    }
}

impl SiteTracker {
    /// `--faults`: the code that first touched the most, from `touches` (samples by toucher
    /// and owner, all named), each sample `sample_bytes`.
    fn touchers(
        &self,
        touches: &HashMap<(SiteId, SiteId), u64>,
        sample_bytes: u64,
    ) -> Vec<TouchLine> {
        let shown = |id: SiteId| touches::Shown {
            frames: self
                .shown
                .stack(self.shown.site(id).expect("every site was just shown"))
                .clone(),
            origin: self.sites.origin(id),
        };
        let mut bytes = HashMap::new();
        for (&(toucher, owner), samples) in touches {
            *bytes.entry((shown(toucher), shown(owner))).or_insert(0) += samples * sample_bytes;
        }
        rank_touchers(bytes, self.settings.listing.top())
    }

    /// The file names of the modules with no symbols at all that frames of `sites` are in,
    /// sorted.
    fn modules_without_symbols(&self, sites: Vec<SiteId>) -> Vec<String> {
        let mut unnamed: Vec<ModuleId> = sites
            .into_iter()
            .flat_map(|id| self.sites.frames(id))
            .filter_map(|loc| match *loc {
                FrameLoc::Module { module, .. } if !self.symbols.has_symbols(module) => {
                    Some(module)
                }
                _ => None,
            })
            .collect();
        unnamed.sort_unstable();
        unnamed.dedup();
        let mut names: Vec<String> = unnamed
            .into_iter()
            .map(|m| symbolize::base_name(&self.modules.get(m).path).to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The site an event line that grew anonymous memory shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrowthSite {
    /// The stack as reports show it (empty when the unwind found no frame).
    Stack(ShownStack),
    /// No stack: why.
    Unknown(Origin),
}

impl GrowthSite {
    /// The innermost frame shown, when there is one.
    pub fn innermost(&self) -> Option<&SymbolFrame> {
        match self {
            GrowthSite::Stack(stack) => stack.first().map(|frame| &**frame),
            GrowthSite::Unknown(_) => None,
        }
    }
}

/// What the stacks that fold to one displayed site hold together.
#[derive(Default)]
struct Merged {
    live: u64,
    touches: u64,
    origin: Option<Origin>,
    footprint: Footprint,
}

/// A pseudo-frame naming an origin, so that origins rank and group like sites.
fn origin_frame(origin: Origin) -> SymbolFrame {
    SymbolFrame {
        function: origin.describe().to_string(),
        file: None,
        line: None,
        module: None,
        inlined: false,
    }
}

/// One line of a ranking: a site (or an origin) and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteLine {
    pub live: u64,
    /// Live bytes now less live bytes at the previous report.
    pub growth: i64,
    pub origin: Option<Origin>,
    /// The site's frames, innermost first (one pseudo-frame for an origin).
    pub frames: ShownStack,
    /// `--faults`: bytes of its pages first touched since the previous report, estimated as
    /// samples × N × page size.
    pub touched: Option<u64>,
    /// What backs its live bytes, when the pages were read.
    pub footprint: Option<Footprint>,
}

/// What a dump prints about a process's call sites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitesReport {
    pub pid: u32,
    /// A summary, or whole stacks (`--sites N`).
    pub listing: Listing,
    pub total_live: u64,
    /// What backs all of it, when the pages were read.
    pub total_footprint: Option<Footprint>,
    /// What the [`ranked`](field@SitesReport::ranked) sites are ordered by: `--rank`, or
    /// live bytes when the pages could not be read.
    pub rank: Rank,
    /// Distinct sites holding memory.
    pub sites: usize,
    /// Modules that frames of those sites are in and that have no symbols at all: their
    /// frames read `module+0xOFFSET`.
    pub unsymbolized: Vec<String>,
    /// `--faults=N`.
    pub fault_period: Option<u32>,
    /// The top sites by [`SitesReport::rank`].
    pub ranked: Vec<SiteLine>,
    pub by_growth: Vec<SiteLine>,
    /// `--faults`: the code that first touched the most since the previous report.
    pub by_touches: Option<Vec<TouchLine>>,
    /// Every site, ranked (what `--folded` writes).
    pub all: Vec<SiteLine>,
}

/// Frames shown per site in text; JSON has them all.
const TEXT_FRAMES: usize = 8;

impl SitesReport {
    /// The report of `lines` (every site of process `pid`), ranked by `settings.rank` when
    /// `paged` (each line has its footprint) or the rank needs no pages, else by live bytes;
    /// ties by live bytes, then by frames' text, so that the order is stable.
    fn ranked(pid: u32, mut lines: Vec<SiteLine>, settings: &SitesSettings, paged: bool) -> Self {
        let rank = if paged || !settings.rank.needs_pages() {
            settings.rank
        } else {
            Rank::Live
        };
        let weight = |line: &SiteLine| rank.weight(line.live, line.footprint.as_ref());
        lines.sort_by(|a, b| {
            (weight(b), b.live)
                .cmp(&(weight(a), a.live))
                .then_with(|| a.frames.cmp(&b.frames))
        });
        let total_footprint = paged.then(|| {
            let mut total = Footprint::default();
            for footprint in lines.iter().filter_map(|l| l.footprint) {
                total += footprint;
            }
            total
        });
        let top = settings.listing.top();
        let mut by_growth: Vec<SiteLine> = lines.iter().filter(|l| l.growth > 0).cloned().collect();
        by_growth.sort_by(|a, b| {
            b.growth
                .cmp(&a.growth)
                .then_with(|| a.frames.cmp(&b.frames))
        });
        by_growth.truncate(top);
        SitesReport {
            pid,
            listing: settings.listing,
            total_live: lines.iter().map(|l| l.live).sum(),
            total_footprint,
            rank,
            sites: lines.iter().filter(|l| l.live > 0).count(),
            unsymbolized: Vec::new(),
            fault_period: settings.fault_period,
            ranked: lines.iter().take(top).cloned().collect(),
            by_growth,
            by_touches: None,
            all: lines,
        }
    }

    /// The report as text lines (see `docs/call-sites.md`).
    pub fn text(&self) -> Vec<String> {
        let mut out = match self.listing {
            Listing::Summary => self.summary_text(),
            Listing::Sites(_) => self.full_text(),
        };
        if !self.unsymbolized.is_empty() {
            out.push(format!(
                "sites {}: no symbols in {} (frames there read module+offset; a debug package names them)",
                self.pid,
                self.unsymbolized.join(", ")
            ));
        }
        out
    }

    /// The sites holding or growing the most, at most [`SUMMARY_SITES`], one line each, by
    /// live bytes: the top sites of both rankings in turn (a site that grew fast shows even
    /// when it holds less than the fifth largest).
    fn summary_text(&self) -> Vec<String> {
        if self.ranked.is_empty() {
            return vec![format!("sites {}: no anonymous memory", self.pid)];
        }
        let mut chosen: Vec<&SiteLine> = Vec::new();
        let (mut live, mut growth) = (self.ranked.iter(), self.by_growth.iter());
        while chosen.len() < SUMMARY_SITES {
            let (a, b) = (live.next(), growth.next());
            if a.is_none() && b.is_none() {
                break;
            }
            for line in [a, b].into_iter().flatten() {
                if chosen.len() < SUMMARY_SITES && !chosen.iter().any(|c| c.frames == line.frames) {
                    chosen.push(line);
                }
            }
        }
        // In the ranking's order; its measure is a column of its own unless it is live bytes.
        let weight = |line: &SiteLine| self.rank.weight(line.live, line.footprint.as_ref());
        chosen.sort_by(|a, b| {
            (weight(b), b.live)
                .cmp(&(weight(a), a.live))
                .then_with(|| a.frames.cmp(&b.frames))
        });
        let ranked_column = (self.rank != Rank::Live).then(|| self.rank.name());
        let mut out = vec![format!(
            "sites {}: {} anonymous in {} call sites; holding or growing the most (live, \
             growth since the previous dump{}):",
            self.pid,
            units(self.total_live),
            self.sites,
            ranked_column.map_or(String::new(), |name| format!(", {name}")),
        )];
        for line in chosen {
            let ranked = match ranked_column {
                Some(_) => format!(" {:>8}", units(weight(line).unwrap_or(0))),
                None => String::new(),
            };
            out.push(format!(
                "  {:>8} {:>9}{ranked}  {}",
                units(line.live),
                signed_units(line.growth),
                summary_site(&line.frames)
            ));
        }
        out
    }

    /// `--sites N`: both rankings, each site with its stack.
    fn full_text(&self) -> Vec<String> {
        let shown = self.total_footprint.as_ref().map_or(Vec::new(), columns);
        let mut names = vec!["live", "growth"];
        names.extend(shown.iter().map(|(name, _)| *name));
        if self.fault_period.is_some() {
            names.push("first touched since the previous dump");
        }
        let columns = if names.len() > 2 {
            format!(" ({})", names.join(", "))
        } else {
            String::new()
        };
        let held = self
            .total_footprint
            .as_ref()
            .map_or(String::new(), |total| {
                let parts: Vec<String> = shown
                    .iter()
                    .map(|(name, bytes)| format!("{} {name}", units(bytes(total))))
                    .collect();
                format!(" ({})", parts.join(", "))
            });
        // A ranking with nothing in it says so in one line, rather than a heading over nothing.
        let mut out = vec![if self.ranked.is_empty() {
            format!("sites {}: no anonymous memory", self.pid)
        } else {
            format!(
                "sites {}: {} anonymous{held} in {} call sites; top {} by {} bytes{columns}:",
                self.pid,
                units(self.total_live),
                self.sites,
                self.ranked.len(),
                self.rank.name(),
            )
        }];
        self.text_lines(&self.ranked, &shown, &mut out);
        out.push(if self.by_growth.is_empty() {
            format!("sites {}: nothing grew since the previous dump", self.pid)
        } else {
            format!(
                "sites {}: top {} by growth since the previous dump{columns}:",
                self.pid,
                self.by_growth.len()
            )
        });
        self.text_lines(&self.by_growth, &shown, &mut out);
        if let Some(by_touches) = &self.by_touches {
            out.push(if by_touches.is_empty() {
                format!(
                    "sites {}: nothing first touched since the previous dump",
                    self.pid
                )
            } else {
                format!(
                    "sites {}: top {} by first touches since the previous dump (the code that \
                     touched, in whose memory):",
                    self.pid,
                    by_touches.len()
                )
            });
            touches::text_lines(by_touches, units, &mut out);
        }
        out
    }

    fn text_lines(&self, lines: &[SiteLine], shown: &[Column], out: &mut Vec<String>) {
        for line in lines {
            let mut head = format!("  {:>8} {:>9}", units(line.live), signed_units(line.growth));
            if let Some(footprint) = &line.footprint {
                for (_, bytes) in shown {
                    head.push_str(&format!(" {:>9}", units(bytes(footprint))));
                }
            }
            if let Some(bytes) = line.touched {
                head.push_str(&format!(" {:>9}", units(bytes)));
            }
            head.push_str("  ");
            let indent = " ".repeat(head.len());
            for (i, frame) in line.frames.iter().take(TEXT_FRAMES).enumerate() {
                let text = frame.display();
                out.push(if i == 0 {
                    format!("{head}{text}")
                } else {
                    format!("{indent}< {text}")
                });
            }
            if line.frames.len() > TEXT_FRAMES {
                out.push(format!(
                    "{indent}< ... {} more",
                    line.frames.len() - TEXT_FRAMES
                ));
            }
        }
    }

    /// The report as one JSON object of type `sites`.
    pub fn json(&self) -> Value {
        let lines = |lines: &[SiteLine]| -> Vec<Value> {
            lines
                .iter()
                .map(|l| {
                    let mut line = json!({
                        "live_bytes": l.live,
                        "growth_bytes": l.growth,
                        "origin": l.origin.map(Origin::describe),
                        "touched_bytes": l.touched,
                        "frames": if l.origin.is_some() { Vec::new() } else { l.frames.iter().map(|f| &**f).collect::<Vec<&SymbolFrame>>() },
                    });
                    footprint_json(&mut line, l.footprint.as_ref());
                    line
                })
                .collect()
        };
        let mut report = json!({
            "type": "sites",
            "pid": self.pid,
            "summary": self.listing == Listing::Summary,
            "live_bytes": self.total_live,
            "sites": self.sites,
            "modules_without_symbols": self.unsymbolized,
            "fault_period": self.fault_period,
            "ranked_by": self.rank.name(),
            "top": lines(&self.ranked),
            "by_growth": lines(&self.by_growth),
            "by_touches": self.by_touches.as_deref().map(touches::json_lines),
        });
        footprint_json(&mut report, self.total_footprint.as_ref());
        report
    }
}

/// A site in one line: its innermost frame and the first caller in another function (an
/// inlined frame's caller is often the same function at another line).
fn summary_site(frames: &[Arc<SymbolFrame>]) -> String {
    let Some(innermost) = frames.first() else {
        return "?".to_string();
    };
    match frames
        .iter()
        .find(|frame| frame.function != innermost.function)
    {
        Some(caller) => format!("{} < {}", innermost.display(), caller.display()),
        None => innermost.display(),
    }
}

/// `16.0M`, `512K`, `100`: bytes in binary units, one decimal when not whole.
fn units(bytes: u64) -> String {
    for (unit, suffix) in [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if bytes >= unit {
            return if bytes.is_multiple_of(unit) {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{:.1}{suffix}", bytes as f64 / unit as f64)
            };
        }
    }
    bytes.to_string()
}

fn signed_units(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "+" };
    format!("{sign}{}", units(bytes.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_sizes_in_binary_units() {
        assert_eq!(units(100), "100");
        assert_eq!(units(4096), "4K");
        assert_eq!(units(16 << 20), "16M");
        assert_eq!(units(1536 << 10), "1.5M");
        assert_eq!(signed_units(-(8 << 10)), "-8K");
        assert_eq!(signed_units(0), "+0");
    }

    fn site(function: &str, live: u64, growth: i64) -> SiteLine {
        SiteLine {
            live,
            growth,
            origin: None,
            touched: None,
            footprint: None,
            frames: Arc::new([
                Arc::new(SymbolFrame {
                    function: function.into(),
                    file: Some("/src/app.rs".into()),
                    line: Some(7),
                    module: Some("app".into()),
                    inlined: false,
                }),
                Arc::new(SymbolFrame {
                    function: "main".into(),
                    file: None,
                    line: None,
                    module: Some("app".into()),
                    inlined: false,
                }),
            ]),
        }
    }

    #[test]
    fn text_lists_each_site_with_its_callers_indented() {
        let report = SitesReport {
            pid: 42,
            listing: Listing::Sites(2),
            total_footprint: None,
            rank: Rank::Live,
            total_live: 3 << 20,
            sites: 2,
            unsymbolized: Vec::new(),
            fault_period: None,
            ranked: vec![
                site("app::load", 2 << 20, 2 << 20),
                site("app::grow", 1 << 20, 0),
            ],
            by_touches: None,
            by_growth: vec![site("app::load", 2 << 20, 2 << 20)],
            all: Vec::new(),
        };
        assert_eq!(
            report.text(),
            [
                "sites 42: 3M anonymous in 2 call sites; top 2 by live bytes:",
                "        2M       +2M  app::load (app.rs:7)",
                "                      < main",
                "        1M        +0  app::grow (app.rs:7)",
                "                      < main",
                "sites 42: top 1 by growth since the previous dump:",
                "        2M       +2M  app::load (app.rs:7)",
                "                      < main",
            ]
        );
        let json = report.json();
        assert_eq!(json["top"][1]["frames"][0]["function"], "app::grow");
        assert_eq!(json["by_growth"][0]["growth_bytes"], 2 << 20);
        assert_eq!(json["by_growth"][0]["touched_bytes"], Value::Null);
    }

    #[test]
    fn the_summary_is_one_line_a_site_holding_or_growing_the_most() {
        // Six sites hold more than the one that grew most: it still shows, in place of the
        // sixth by live bytes.
        let holders: Vec<SiteLine> = (0..6)
            .map(|i| site(&format!("app::hold{i}"), (10 - i) << 20, 0))
            .collect();
        let grower = site("app::grow", 1 << 20, 1 << 20);
        let report = SitesReport {
            pid: 42,
            listing: Listing::Summary,
            total_live: 46 << 20,
            total_footprint: None,
            rank: Rank::Live,
            sites: 7,
            unsymbolized: Vec::new(),
            fault_period: None,
            ranked: holders[..SUMMARY_SITES].to_vec(),
            by_growth: vec![grower],
            by_touches: None,
            all: Vec::new(),
        };
        assert_eq!(
            report.text(),
            [
                "sites 42: 46M anonymous in 7 call sites; holding or growing the most (live, \
                 growth since the previous dump):",
                "       10M        +0  app::hold0 (app.rs:7) < main",
                "        9M        +0  app::hold1 (app.rs:7) < main",
                "        8M        +0  app::hold2 (app.rs:7) < main",
                "        7M        +0  app::hold3 (app.rs:7) < main",
                "        1M       +1M  app::grow (app.rs:7) < main",
            ]
        );
        assert_eq!(report.json()["summary"], true);
        let empty = SitesReport {
            ranked: vec![],
            by_growth: vec![],
            total_live: 0,
            sites: 0,
            ..report
        };
        assert_eq!(empty.text(), ["sites 42: no anonymous memory"]);
    }

    #[test]
    fn a_summary_line_names_the_first_caller_in_another_function() {
        let frame = |function: &str, line| {
            Arc::new(SymbolFrame {
                function: function.into(),
                file: Some("mmap64.c".into()),
                line: Some(line),
                module: None,
                inlined: false,
            })
        };
        assert_eq!(
            summary_site(&[
                frame("__mmap64", 58),
                frame("__mmap64", 46),
                frame("_dl_map", 9)
            ]),
            "__mmap64 (mmap64.c:58) < _dl_map (mmap64.c:9)"
        );
        assert_eq!(summary_site(&[frame("grow", 1)]), "grow (mmap64.c:1)");
        assert_eq!(summary_site(&[]), "?");
    }

    #[test]
    fn with_faults_a_column_gives_the_bytes_first_touched() {
        let mut line = site("app::load", 2 << 20, 2 << 20);
        line.touched = Some(512 << 10);
        let report = SitesReport {
            pid: 42,
            listing: Listing::Sites(2),
            total_footprint: None,
            rank: Rank::Live,
            total_live: 2 << 20,
            sites: 1,
            unsymbolized: Vec::new(),
            fault_period: Some(4),
            ranked: vec![line.clone()],
            by_touches: None,
            by_growth: vec![],
            all: vec![line],
        };
        let text = report.text();
        assert_eq!(
            text[0],
            "sites 42: 2M anonymous in 1 call sites; top 1 by live bytes (live, growth, first \
             touched since the previous dump):"
        );
        assert_eq!(
            text[1],
            "        2M       +2M      512K  app::load (app.rs:7)"
        );
        let json = report.json();
        assert_eq!(json["fault_period"], 4);
        assert_eq!(json["top"][0]["touched_bytes"], 512 << 10);
    }

    #[test]
    fn an_empty_ranking_is_one_line_not_a_heading_over_nothing() {
        let line = site("app::load", 2 << 20, 0);
        let report = SitesReport {
            pid: 42,
            listing: Listing::Sites(2),
            total_footprint: None,
            rank: Rank::Live,
            total_live: 2 << 20,
            sites: 1,
            unsymbolized: Vec::new(),
            fault_period: None,
            ranked: vec![line.clone()],
            by_touches: None,
            by_growth: vec![],
            all: vec![line],
        };
        assert_eq!(
            report.text(),
            [
                "sites 42: 2M anonymous in 1 call sites; top 1 by live bytes:",
                "        2M        +0  app::load (app.rs:7)",
                "                      < main",
                "sites 42: nothing grew since the previous dump",
            ]
        );
        // JSON has no headings: an empty list says it.
        assert_eq!(report.json()["by_growth"], json!([]));

        let empty = SitesReport {
            pid: 42,
            listing: Listing::Sites(2),
            total_footprint: None,
            rank: Rank::Live,
            total_live: 0,
            sites: 0,
            unsymbolized: Vec::new(),
            fault_period: Some(1),
            ranked: vec![],
            by_touches: None,
            by_growth: vec![],
            all: vec![],
        };
        assert_eq!(
            empty.text(),
            [
                "sites 42: no anonymous memory",
                "sites 42: nothing grew since the previous dump",
            ]
        );
    }

    #[test]
    fn modules_without_symbols_are_named_once_after_the_rankings() {
        let line = site("app::load", 2 << 20, 2 << 20);
        let mut report = SitesReport {
            pid: 42,
            listing: Listing::Sites(10),
            total_footprint: None,
            rank: Rank::Live,
            total_live: 2 << 20,
            sites: 1,
            unsymbolized: vec!["libstripped.so".into(), "tool".into()],
            fault_period: None,
            ranked: vec![line.clone()],
            by_touches: None,
            by_growth: vec![line.clone()],
            all: vec![line],
        };
        // After the whole report and after the plain run's summary alike.
        for listing in [Listing::Sites(10), Listing::Summary] {
            report.listing = listing;
            let text = report.text();
            assert_eq!(
                text.last().unwrap(),
                "sites 42: no symbols in libstripped.so, tool (frames there read module+offset; \
                 a debug package names them)",
                "{listing:?}"
            );
            assert_eq!(text.iter().filter(|l| l.contains("no symbols")).count(), 1);
        }
        assert_eq!(
            report.json()["modules_without_symbols"],
            json!(["libstripped.so", "tool"])
        );
    }

    fn module_frame(module: u32, offset: u64) -> FrameLoc {
        FrameLoc::Module {
            module: ModuleId(module),
            offset,
        }
    }

    #[test]
    fn stacks_are_interned_once_and_share_their_callers() {
        let mut sites = Sites::new();
        let (main, load, grow) = (
            module_frame(0, 0x100),
            module_frame(0, 0x200),
            module_frame(0, 0x300),
        );
        let loaded = sites.intern(&[grow, load, main]);
        // The same stack is the same site; a stack with another innermost frame is another.
        assert_eq!(sites.intern(&[grow, load, main]), loaded);
        let direct = sites.intern(&[grow, main]);
        let jit = sites.intern(&[FrameLoc::Address(0x7000), load, main]);
        assert_eq!(
            [loaded, direct, jit].map(|id| sites.frames(id).copied().collect::<Vec<_>>()),
            [
                vec![grow, load, main],
                vec![grow, main],
                vec![FrameLoc::Address(0x7000), load, main]
            ]
        );
        // main, load, grow under load, grow under main, the JIT frame: each kept once, and
        // each location once.
        assert_eq!(sites.nodes.len(), 5);
        assert_eq!(sites.locs.len(), 4);
        // A stack inside another is a site of its own, and needs no new frame.
        let caller = sites.intern(&[load, main]);
        assert!(![loaded, direct, jit].contains(&caller));
        assert_eq!(sites.frames(caller).count(), 2);
        assert_eq!(sites.nodes.len(), 5);
        // Neither the origins nor the empty stack have frames, and they are distinct sites.
        let empty = sites.intern(&[]);
        assert_eq!(sites.frames(empty).count(), 0);
        assert_eq!(sites.origin(empty), None);
        for origin in Origin::ALL {
            assert_ne!(origin.site(), empty);
            assert_eq!(sites.origin(origin.site()), Some(origin));
            assert_eq!(sites.frames(origin.site()).count(), 0);
        }
        assert_eq!(sites.origin(loaded), None);
    }

    #[test]
    fn sites_that_show_alike_share_one_shown_stack() {
        let frame = |function: &str| {
            Arc::new(SymbolFrame {
                function: function.into(),
                file: None,
                line: None,
                module: Some("app".into()),
                inlined: false,
            })
        };
        let (load, main) = (frame("app::load"), frame("main"));
        let mut shown = Shown::default();
        let first = shown.insert(SiteId(10), &[load.clone(), main.clone()], true);
        // Another site whose frames read the same (other frame objects, equal names).
        let same = shown.insert(SiteId(11), &[frame("app::load"), frame("main")], true);
        let other = shown.insert(SiteId(12), std::slice::from_ref(&main), true);
        assert_eq!(first, same);
        assert_ne!(first, other);
        assert_eq!(shown.stacks.len(), 2);
        assert_eq!(shown.site(SiteId(11)), Some(first));
        assert_eq!(shown.site(SiteId(13)), None);
        assert_eq!(&shown.stack(first)[..], &[load, main.clone()]);
        assert_eq!(&shown.stack(other)[..], &[main]);
    }

    #[test]
    fn growth_is_counted_from_the_previous_report() {
        use pmap_common::linux::{MAP_ANONYMOUS, MAP_PRIVATE};

        use crate::model::Mapping;

        const PAGE: u64 = PAGE_SIZE;
        let seeded = Mapping {
            start: 0x1000_0000,
            end: 0x1000_0000 + 4 * PAGE,
            perms: Default::default(),
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: Vec::new(),
        };
        let table = AddressSpace::from_mappings(vec![seeded], 0x2000_0000);
        let mut tracker = SiteTracker::new(SitesSettings {
            listing: Listing::Sites(10),
            stack_bytes: 0,
            full_stacks: false,
            fault_period: None,
            rank: Rank::Live,
            folded_weight: Rank::Live,
        });
        tracker.seeded(42, &table, Origin::BeforeTracing);
        let block = 0x3000_0000;
        let mmap = |addr: u64, pages: u64| Call::Mmap {
            addr,
            len: pages * PAGE,
            prot: 3,
            flags: MAP_ANONYMOUS | MAP_PRIVATE,
            fd: -1,
            offset: 0,
        };
        // Without stack copies every call's growth goes to the origin that says so.
        tracker.apply(42, &table, &mmap(0, 8), block as i64, None);
        let ranking = |lines: &[SiteLine]| -> Vec<(Option<Origin>, u64, i64)> {
            lines.iter().map(|l| (l.origin, l.live, l.growth)).collect()
        };
        let first = tracker.report(42, &table).expect("a tracked process");
        let (copied, before) = (Some(Origin::NotCopied), Some(Origin::BeforeTracing));
        assert_eq!((first.total_live, first.sites), (12 * PAGE, 2));
        assert_eq!(
            ranking(&first.ranked),
            [
                (copied, 8 * PAGE, 8 * PAGE as i64),
                (before, 4 * PAGE, 4 * PAGE as i64)
            ]
        );
        assert_eq!(ranking(&first.by_growth), ranking(&first.ranked));
        assert_eq!(
            first.ranked[0].frames[0].function,
            Origin::NotCopied.describe()
        );
        // Freeing counts against growing; nothing grew.
        let unmap = Call::Munmap {
            addr: block,
            len: 2 * PAGE,
        };
        tracker.apply(42, &table, &unmap, 0, None);
        let second = tracker.report(42, &table).expect("a tracked process");
        assert_eq!(
            ranking(&second.ranked),
            [(copied, 6 * PAGE, -2 * PAGE as i64), (before, 4 * PAGE, 0)]
        );
        assert!(second.by_growth.is_empty());
        // The next report counts from the second, not the first.
        tracker.apply(42, &table, &mmap(0, 3), (block + 64 * PAGE) as i64, None);
        let third = tracker.report(42, &table).expect("a tracked process");
        assert_eq!(
            ranking(&third.by_growth),
            [(copied, 9 * PAGE, 3 * PAGE as i64)]
        );
        // A process that is gone has no report.
        tracker.forget(42);
        assert!(tracker.report(42, &table).is_none());
    }

    #[test]
    fn sites_rank_by_the_pages_their_memory_holds_at_the_report() {
        use pmap_common::linux::{MAP_ANONYMOUS, MAP_PRIVATE};

        use crate::{
            model::{Mapping, Perms},
            procfs::fixtures::Anon,
        };

        const PAGE: u64 = PAGE_SIZE;
        // This process: a reservation mapped "before tracing", and a block mapped since, a
        // quarter of it written.
        let reservation = Anon::new(32, libc::PROT_NONE);
        let block = Anon::new(16, libc::PROT_READ | libc::PROT_WRITE);
        for n in 0..4 {
            block.write(n);
        }
        let anon = |anon: &Anon, write: bool| Mapping {
            start: anon.page(0),
            end: anon.end(),
            perms: Perms {
                read: write,
                write,
                ..Perms::default()
            },
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: Vec::new(),
        };
        let mut mappings = vec![anon(&reservation, false), anon(&block, true)];
        mappings.sort_by_key(|m| m.start);
        let before = AddressSpace::from_mappings(vec![anon(&reservation, false)], 0);
        let table = AddressSpace::from_mappings(mappings, 0);
        let settings = |rank| SitesSettings {
            listing: Listing::Sites(10),
            stack_bytes: 0,
            full_stacks: false,
            fault_period: None,
            rank,
            folded_weight: Rank::Live,
        };
        let pid = std::process::id();
        let mmap = Call::Mmap {
            addr: 0,
            len: 16 * PAGE,
            prot: 3,
            flags: MAP_ANONYMOUS | MAP_PRIVATE,
            fd: -1,
            offset: 0,
        };
        let report = |rank| {
            let mut tracker = SiteTracker::new(settings(rank));
            tracker.seeded(pid, &before, Origin::BeforeTracing);
            tracker.apply(pid, &before, &mmap, block.page(0) as i64, None);
            tracker.report(pid, &table).expect("a tracked process")
        };
        let ranked = |report: &SitesReport| -> Vec<(Option<Origin>, Option<Footprint>)> {
            report
                .ranked
                .iter()
                .map(|l| (l.origin, l.footprint))
                .collect()
        };
        let grown = Footprint {
            resident: 4 * PAGE,
            swapped: 0,
            reserved: 12 * PAGE,
            committed: 16 * PAGE,
        };
        let reserved = Footprint {
            reserved: 32 * PAGE,
            ..Footprint::default()
        };
        // By resident bytes (the default) the block that holds memory comes first, though
        // the reservation is twice its size.
        let resident = report(Rank::Resident);
        assert_eq!(resident.rank, Rank::Resident);
        assert_eq!(
            ranked(&resident),
            [
                (Some(Origin::NotCopied), Some(grown)),
                (Some(Origin::BeforeTracing), Some(reserved))
            ]
        );
        let total = grown.resident + grown.reserved + reserved.reserved;
        assert_eq!(
            resident.total_footprint,
            Some(Footprint {
                resident: 4 * PAGE,
                swapped: 0,
                reserved: total - 4 * PAGE,
                committed: 16 * PAGE,
            })
        );
        let text = resident.text();
        assert!(
            text[0].ends_with(
                "(16K resident, 64K committed, 176K reserved) in 2 call sites; top 2 by \
                 resident bytes (live, growth, resident, committed, reserved):"
            ),
            "{text:?}"
        );
        assert_eq!(
            text[1],
            "       64K      +64K       16K       64K       48K  (no stack copied: --stack-bytes 0)"
        );
        let json = resident.json();
        assert_eq!(json["ranked_by"], "resident");
        assert_eq!(json["resident_bytes"], 4 * PAGE);
        assert_eq!(json["top"][1]["reserved_bytes"], 32 * PAGE);
        // By live bytes the reservation leads, and the pages are not read.
        let live = report(Rank::Live);
        assert_eq!(
            ranked(&live),
            [
                (Some(Origin::BeforeTracing), None),
                (Some(Origin::NotCopied), None)
            ]
        );
        assert_eq!(live.json()["resident_bytes"], Value::Null);
        // By reserved bytes too; by committed, the block.
        assert_eq!(
            ranked(&report(Rank::Reserved))[0].0,
            Some(Origin::BeforeTracing)
        );
        assert_eq!(
            ranked(&report(Rank::Committed))[0].0,
            Some(Origin::NotCopied)
        );
    }

    #[test]
    fn a_process_whose_pages_cannot_be_read_is_ranked_by_live_bytes() {
        use crate::model::Mapping;

        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid = child.id();
        // One range to read (not the child's: its pages would be none anyway).
        let block = Mapping {
            start: 0x1000_0000,
            end: 0x1000_4000,
            perms: Default::default(),
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: Vec::new(),
        };
        let table = AddressSpace::from_mappings(vec![block], 0);
        let mut tracker = SiteTracker::new(SitesSettings {
            listing: Listing::Sites(10),
            stack_bytes: 0,
            full_stacks: false,
            fault_period: None,
            rank: Rank::Resident,
            folded_weight: Rank::Live,
        });
        tracker.seeded(pid, &table, Origin::BeforeTracing);
        assert_eq!(tracker.report(pid, &table).unwrap().rank, Rank::Resident);
        // Gone (and reaped: its PID is free for another process).
        child.kill().unwrap();
        child.wait().unwrap();
        let report = tracker.report(pid, &table).unwrap();
        assert_eq!(report.rank, Rank::Live);
        assert_eq!(report.total_footprint, None);
        assert_eq!(report.json()["resident_bytes"], Value::Null);
    }
}
