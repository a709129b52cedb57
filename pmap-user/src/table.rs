//! The live mapping table of one traced process: the process's VMAs as `/proc/PID/maps` lists
//! them, kept current by applying decoded events.

/// Page size of the traced machine (x86_64); every mapping bound is a multiple of it.
pub const PAGE_SIZE: u64 = 4096;

/// Access bits of a mapping, as the `rwxp`/`rwxs` column of `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

/// A device number as `/proc/PID/maps` prints it (`fe:00`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

/// One VMA: one line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    /// File offset of `start` in bytes (0 for anonymous memory).
    pub offset: u64,
    pub device: Device,
    pub inode: u64,
    /// The path column exactly as the kernel prints it in `/proc/PID/maps`: empty for anonymous
    /// memory, `[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]`, or a file path with the kernel's
    /// escapes (`\012` for a newline) and ` (deleted)` suffix.
    pub name: Vec<u8>,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// What the table needs to ask the kernel when events alone cannot decide: the VMA that covers
/// an address now. Backed by `PROCMAP_QUERY` for live processes ([`crate::procmap_query`]).
pub trait VmaOracle {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping>;
}

/// An oracle that knows nothing, for processes that are gone.
pub struct NoOracle;

impl VmaOracle for NoOracle {
    fn vma_at(&mut self, _addr: u64) -> Option<Mapping> {
        None
    }
}

/// VMA state that `/proc/PID/maps` does not print but that decides whether the kernel merges
/// two neighbours (and so where a line of the dump ends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HiddenFlags(u32);

impl HiddenFlags {
    pub const LOCKED: u32 = 1 << 0;
    pub const LOCKONFAULT: u32 = 1 << 1;
    pub const HUGEPAGE: u32 = 1 << 2;
    pub const NOHUGEPAGE: u32 = 1 << 3;
    pub const DONTFORK: u32 = 1 << 4;
    pub const WIPEONFORK: u32 = 1 << 5;
    pub const MERGEABLE: u32 = 1 << 6;
    pub const DONTDUMP: u32 = 1 << 7;
    pub const NORESERVE: u32 = 1 << 8;
    pub const GROWSDOWN: u32 = 1 << 9;
    pub const SEALED: u32 = 1 << 10;

    pub fn contains(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    pub fn with(self, set: u32, clear: u32) -> Self {
        HiddenFlags((self.0 & !clear) | set)
    }
}

/// One VMA with the hidden state the table tracks beside what is printed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Vma {
    mapping: Mapping,
    flags: HiddenFlags,
    /// Identifies the VMA a piece was split from. Pieces of one VMA share its anon_vma, so they
    /// merge again when their attributes become equal; pieces of different lineages may not.
    lineage: u64,
    /// `vm_pgoff` of `start` in pages: file offset for file mappings, creation address for
    /// anonymous ones. Neighbours merge only when it is contiguous.
    pgoff: u64,
}

impl Vma {
    /// Piece `[start, end)` of this VMA.
    fn slice(&self, start: u64, end: u64) -> Vma {
        let delta = start - self.mapping.start;
        let mut piece = self.clone();
        piece.mapping.start = start;
        piece.mapping.end = end;
        if piece.is_file_backed() {
            piece.mapping.offset += delta;
        }
        piece.pgoff += delta / PAGE_SIZE;
        piece
    }

    fn is_file_backed(&self) -> bool {
        self.mapping.inode != 0 || self.mapping.offset != 0
    }
}

/// How to decide a merge the events alone cannot settle.
enum MergeVerdict {
    Merge,
    Separate,
    AskKernel,
}

/// The live table of one process.
#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    vmas: std::collections::BTreeMap<u64, Vma>,
    next_lineage: u64,
    /// `mm->start_brk`: where the heap begins, from `/proc/PID/stat` at seed time.
    start_brk: u64,
    /// `mlockall(MCL_FUTURE)` is in force: new mappings are born locked.
    lock_future: bool,
}

pub fn page_align_up(value: u64) -> u64 {
    value.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

impl AddressSpace {
    /// A table holding `mappings` as read from `/proc/PID/maps` (sorted, non-overlapping).
    pub fn from_mappings(mappings: Vec<Mapping>, start_brk: u64) -> Self {
        let mut space = AddressSpace {
            start_brk,
            ..Default::default()
        };
        for mapping in mappings {
            let lineage = space.new_lineage();
            let pgoff = if mapping.inode != 0 {
                mapping.offset / PAGE_SIZE
            } else {
                mapping.start / PAGE_SIZE
            };
            let flags = if mapping.name == b"[stack]" {
                HiddenFlags::default().with(HiddenFlags::GROWSDOWN, 0)
            } else {
                HiddenFlags::default()
            };
            space.vmas.insert(
                mapping.start,
                Vma {
                    mapping,
                    flags,
                    lineage,
                    pgoff,
                },
            );
        }
        space
    }

    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.vmas.values().map(|v| &v.mapping)
    }

    pub fn to_mappings(&self) -> Vec<Mapping> {
        self.mappings().cloned().collect()
    }

    pub fn start_brk(&self) -> u64 {
        self.start_brk
    }

    fn new_lineage(&mut self) -> u64 {
        self.next_lineage += 1;
        self.next_lineage
    }

    /// Cuts the VMA that straddles `addr` (if any) in two at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((_, vma)) = self.vmas.range(..addr).next_back() else {
            return;
        };
        if vma.mapping.end <= addr {
            return;
        }
        let vma = vma.clone();
        let left = vma.slice(vma.mapping.start, addr);
        let right = vma.slice(addr, vma.mapping.end);
        self.vmas.insert(left.mapping.start, left);
        self.vmas.insert(right.mapping.start, right);
    }

    /// Removes `[start, end)` and returns the removed pieces in address order.
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        if start >= end {
            return Vec::new();
        }
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(&k, _)| k).collect();
        keys.into_iter()
            .filter_map(|k| self.vmas.remove(&k))
            .collect()
    }

    /// Applies `change` to every mapped piece of `[start, end)`, then lets neighbours merge.
    fn update_range(
        &mut self,
        start: u64,
        end: u64,
        oracle: &mut dyn VmaOracle,
        mut change: impl FnMut(&mut Vma),
    ) {
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(&k, _)| k).collect();
        for key in &keys {
            if let Some(vma) = self.vmas.get_mut(key) {
                change(vma);
            }
        }
        self.merge_run(start, end, oracle, false);
    }

    fn insert_new(&mut self, mut vma: Vma, oracle: &mut dyn VmaOracle) {
        if self.lock_future {
            vma.flags = vma.flags.with(HiddenFlags::LOCKED, 0);
        }
        let (start, end) = (vma.mapping.start, vma.mapping.end);
        self.remove_range(start, end);
        self.vmas.insert(start, vma);
        self.merge_run(start, end, oracle, true);
    }

    /// Merges equal neighbours across every VMA boundary in `[start, end]`, as the kernel does
    /// after a call changed that range. `fresh` is true when the range is a new VMA that has no
    /// anon_vma yet, which the kernel can always merge with a compatible neighbour.
    fn merge_run(&mut self, start: u64, end: u64, oracle: &mut dyn VmaOracle, fresh: bool) {
        let mut boundaries: Vec<u64> = self
            .vmas
            .range(start..=end)
            .map(|(&k, _)| k)
            .filter(|&k| k >= start)
            .collect();
        if let Some(last) = self.vmas.range(..=end).next_back()
            && last.1.mapping.end == end
            && !boundaries.contains(&end)
        {
            boundaries.push(end);
        }
        for boundary in boundaries {
            self.merge_at(boundary, oracle, fresh);
        }
    }

    fn merge_at(&mut self, boundary: u64, oracle: &mut dyn VmaOracle, fresh: bool) {
        let Some(right) = self.vmas.get(&boundary) else {
            return;
        };
        let Some((_, left)) = self.vmas.range(..boundary).next_back() else {
            return;
        };
        let merge = match merge_verdict(left, right, fresh) {
            MergeVerdict::Merge => true,
            MergeVerdict::Separate => false,
            MergeVerdict::AskKernel => oracle
                .vma_at(boundary)
                .is_some_and(|now| now.start < boundary && now.end > boundary),
        };
        if merge {
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
            left.mapping.end = right.mapping.end;
            left.lineage = left.lineage.min(right.lineage);
        }
    }

    /// Applies one completed call. Failed calls change nothing, except `brk`, which reports
    /// the unchanged break instead of an error.
    pub fn apply(&mut self, call: &crate::decode::Call, ret: i64, oracle: &mut dyn VmaOracle) {
        use crate::decode::Call;
        if ret < 0 && ret > -4096 && !matches!(call, Call::Brk { .. }) {
            return;
        }
        match *call {
            Call::Mmap {
                len,
                prot,
                flags,
                offset,
                ..
            } => self.apply_mmap(ret as u64, len, prot, flags, offset, oracle),
            Call::Munmap { addr, len } => {
                self.remove_range(addr, addr.saturating_add(page_align_up(len)));
            }
            Call::Brk { .. } => self.apply_brk(ret as u64, oracle),
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                ..
            } => self.apply_mremap(old_addr, old_len, new_len, flags, ret as u64, oracle),
            Call::Mprotect { addr, len, prot }
            | Call::PkeyMprotect {
                addr, len, prot, ..
            } => {
                let perms = perms_from_prot(prot);
                self.update_range(addr, addr.saturating_add(page_align_up(len)), oracle, |v| {
                    v.mapping.perms = Perms {
                        shared: v.mapping.perms.shared,
                        ..perms
                    };
                });
            }
            Call::Madvise { addr, len, advice } => {
                if let Some((set, clear)) = madvise_flag_change(advice) {
                    self.set_flags(addr, len, set, clear, oracle);
                }
            }
            Call::Mlock { addr, len } => self.set_flags(
                addr,
                len,
                HiddenFlags::LOCKED,
                HiddenFlags::LOCKONFAULT,
                oracle,
            ),
            Call::Mlock2 { addr, len, flags } => {
                let bits = if flags & MLOCK_ONFAULT != 0 {
                    HiddenFlags::LOCKED | HiddenFlags::LOCKONFAULT
                } else {
                    HiddenFlags::LOCKED
                };
                self.set_flags(addr, len, bits, 0, oracle)
            }
            Call::Munlock { addr, len } => self.set_flags(
                addr,
                len,
                0,
                HiddenFlags::LOCKED | HiddenFlags::LOCKONFAULT,
                oracle,
            ),
            Call::Mlockall { flags } => {
                if flags & MCL_FUTURE != 0 {
                    self.lock_future = true;
                }
                if flags & MCL_CURRENT != 0 {
                    let bits = if flags & MCL_ONFAULT != 0 {
                        HiddenFlags::LOCKED | HiddenFlags::LOCKONFAULT
                    } else {
                        HiddenFlags::LOCKED
                    };
                    self.update_range(0, u64::MAX, oracle, |v| v.flags = v.flags.with(bits, 0));
                }
            }
            Call::Munlockall => {
                self.lock_future = false;
                self.update_range(0, u64::MAX, oracle, |v| {
                    v.flags = v
                        .flags
                        .with(0, HiddenFlags::LOCKED | HiddenFlags::LOCKONFAULT)
                });
            }
            Call::Mseal { addr, len, .. } => {
                self.set_flags(addr, len, HiddenFlags::SEALED, 0, oracle)
            }
            Call::Shmdt { addr } => self.apply_shmdt(addr),
            Call::Shmat { .. } | Call::MapShadowStack { .. } => {
                if let Some(now) = oracle.vma_at(ret as u64) {
                    self.adopt_from_kernel(now, oracle);
                }
            }
            Call::SetVmaAnonName { addr, len, .. }
            | Call::Mbind { addr, len, .. }
            | Call::RemapFilePages {
                addr, size: len, ..
            } => self.refresh_from_kernel(addr, addr.saturating_add(page_align_up(len)), oracle),
        }
    }

    fn set_flags(&mut self, addr: u64, len: u64, set: u32, clear: u32, oracle: &mut dyn VmaOracle) {
        self.update_range(addr, addr.saturating_add(page_align_up(len)), oracle, |v| {
            v.flags = v.flags.with(set, clear)
        });
    }

    fn apply_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        offset: u64,
        oracle: &mut dyn VmaOracle,
    ) {
        let end = addr.saturating_add(page_align_up(len));
        let shared = flags & MAP_TYPE != MAP_PRIVATE;
        let anonymous = flags & MAP_ANONYMOUS != 0;
        let mut mapping = Mapping {
            start: addr,
            end,
            perms: Perms {
                shared,
                ..perms_from_prot(prot)
            },
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: Vec::new(),
        };
        let mut pgoff = addr / PAGE_SIZE;
        if !anonymous || shared {
            // File identity (and the shmem inode behind shared anonymous memory) is not in the
            // arguments once the fd is gone: ask the kernel while the mapping is still there.
            if let Some(now) = oracle
                .vma_at(addr)
                .filter(|m| m.start <= addr && m.end > addr)
            {
                mapping.device = now.device;
                mapping.inode = now.inode;
                mapping.name = now.name;
                mapping.offset = now.offset + (addr - now.start);
            } else if !anonymous {
                mapping.offset = offset;
            }
            pgoff = mapping.offset / PAGE_SIZE;
        }
        let mut hidden = HiddenFlags::default();
        if flags & MAP_NORESERVE != 0 {
            hidden = hidden.with(HiddenFlags::NORESERVE, 0);
        }
        if flags & MAP_GROWSDOWN != 0 {
            hidden = hidden.with(HiddenFlags::GROWSDOWN, 0);
        }
        if flags & MAP_LOCKED != 0 {
            hidden = hidden.with(HiddenFlags::LOCKED, 0);
        }
        if flags & MAP_STACK != 0 && anonymous {
            // Since Linux 6.7 MAP_STACK implies VM_NOHUGEPAGE.
            hidden = hidden.with(HiddenFlags::NOHUGEPAGE, 0);
        }
        let lineage = self.new_lineage();
        self.insert_new(
            Vma {
                mapping,
                flags: hidden,
                lineage,
                pgoff,
            },
            oracle,
        );
    }

    /// The heap is `[start_brk, PAGE_ALIGN(brk))`; `new_brk` is the break after the call.
    fn apply_brk(&mut self, new_brk: u64, oracle: &mut dyn VmaOracle) {
        let new_end = page_align_up(new_brk);
        let heap_end = self
            .vmas
            .values()
            .filter(|v| v.mapping.name == b"[heap]")
            .map(|v| v.mapping.end)
            .max();
        match heap_end {
            Some(end) if new_end < end => {
                self.remove_range(new_end.max(self.start_brk), end);
            }
            Some(end) if new_end > end => self.grow_heap(end, new_end, oracle),
            Some(_) => {}
            None if self.start_brk != 0 && new_end > page_align_up(self.start_brk) => {
                self.grow_heap(page_align_up(self.start_brk), new_end, oracle)
            }
            None => {}
        }
    }

    fn grow_heap(&mut self, from: u64, to: u64, oracle: &mut dyn VmaOracle) {
        let lineage = self.new_lineage();
        let vma = Vma {
            mapping: Mapping {
                start: from,
                end: to,
                perms: Perms {
                    read: true,
                    write: true,
                    exec: false,
                    shared: false,
                },
                offset: 0,
                device: Device::default(),
                inode: 0,
                name: b"[heap]".to_vec(),
            },
            flags: HiddenFlags::default(),
            lineage,
            pgoff: from / PAGE_SIZE,
        };
        self.insert_new(vma, oracle);
    }

    fn apply_mremap(
        &mut self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
        oracle: &mut dyn VmaOracle,
    ) {
        let old_len = page_align_up(old_len);
        let new_len = page_align_up(new_len);
        if new_addr == old_addr {
            if new_len < old_len {
                self.remove_range(old_addr + new_len, old_addr + old_len);
            } else if new_len > old_len {
                self.extend_in_place(old_addr + old_len, old_addr + new_len, oracle);
            }
            return;
        }
        let pieces = if flags & MREMAP_DONTUNMAP != 0 {
            self.vmas
                .range(..old_addr + old_len)
                .filter(|(_, v)| v.mapping.end > old_addr)
                .map(|(_, v)| {
                    v.slice(
                        v.mapping.start.max(old_addr),
                        v.mapping.end.min(old_addr + old_len),
                    )
                })
                .collect()
        } else {
            self.remove_range(old_addr, old_addr + old_len)
        };
        if pieces.is_empty() {
            // The source is not in the table (it changed before the seed was read): take the
            // destination as the kernel has it.
            self.refresh_from_kernel(new_addr, new_addr + new_len, oracle);
            return;
        }
        self.remove_range(new_addr, new_addr + new_len);
        let copied = old_len.min(new_len);
        for piece in pieces {
            let rel_start = piece.mapping.start - old_addr;
            if rel_start >= copied {
                continue;
            }
            let rel_end = (piece.mapping.end - old_addr).min(copied);
            let mut moved = piece.slice(piece.mapping.start, old_addr + rel_end);
            moved.mapping.start = new_addr + rel_start;
            moved.mapping.end = new_addr + rel_end;
            self.vmas.insert(moved.mapping.start, moved);
        }
        if new_len > old_len {
            self.extend_in_place(new_addr + old_len, new_addr + new_len, oracle);
        }
        self.merge_run(new_addr, new_addr + new_len, oracle, false);
    }

    /// Grows the VMA that ends at `from` up to `to` (mremap growth, brk).
    fn extend_in_place(&mut self, from: u64, to: u64, oracle: &mut dyn VmaOracle) {
        let Some((_, last)) = self.vmas.range(..from).next_back() else {
            self.refresh_from_kernel(from, to, oracle);
            return;
        };
        if last.mapping.end != from {
            self.refresh_from_kernel(from, to, oracle);
            return;
        }
        let mut grown = last.slice(last.mapping.start, last.mapping.end);
        grown.mapping.end = to;
        self.remove_range(from, to);
        self.vmas.insert(grown.mapping.start, grown);
        self.merge_run(from, to, oracle, false);
    }

    fn apply_shmdt(&mut self, addr: u64) {
        let Some(first) = self.vmas.get(&addr) else {
            return;
        };
        let inode = first.mapping.inode;
        let mut end = first.mapping.end;
        while let Some(next) = self.vmas.get(&end) {
            if next.mapping.inode != inode {
                break;
            }
            end = next.mapping.end;
        }
        self.remove_range(addr, end);
    }

    /// Replaces `[start, end)` with the VMAs the kernel has there now. Used for calls whose
    /// effect depends on data the event does not carry (a name string in user memory, a NUMA
    /// policy) and so cannot be replayed.
    fn refresh_from_kernel(&mut self, start: u64, end: u64, oracle: &mut dyn VmaOracle) {
        let mut cursor = start;
        let mut found = Vec::new();
        while cursor < end {
            let Some(now) = oracle.vma_at(cursor) else {
                break;
            };
            if now.start > cursor || now.end <= cursor {
                break;
            }
            cursor = now.end;
            found.push(now);
        }
        if found.is_empty() && cursor == start {
            return;
        }
        let covered_start = found.first().map_or(start, |m| m.start.min(start));
        let covered_end = found.last().map_or(end, |m| m.end.max(end));
        let kept: Vec<Vma> = self.remove_range(covered_start, covered_end);
        for now in found {
            let previous = kept
                .iter()
                .find(|v| v.mapping.start <= now.start && v.mapping.end > now.start);
            let (flags, lineage, pgoff) = match previous {
                Some(p) => (
                    p.flags,
                    p.lineage,
                    p.pgoff + (now.start - p.mapping.start) / PAGE_SIZE,
                ),
                None => (
                    HiddenFlags::default(),
                    self.new_lineage(),
                    now.start / PAGE_SIZE,
                ),
            };
            self.vmas.insert(
                now.start,
                Vma {
                    mapping: now,
                    flags,
                    lineage,
                    pgoff,
                },
            );
        }
    }

    fn adopt_from_kernel(&mut self, now: Mapping, oracle: &mut dyn VmaOracle) {
        let (start, end) = (now.start, now.end);
        self.refresh_from_kernel(start, end, oracle);
    }

    /// The kernel grows a `[stack]` or MAP_GROWSDOWN mapping on faults, without a syscall:
    /// bring such mappings' starts up to date before a dump.
    pub fn refresh_growing_mappings(&mut self, oracle: &mut dyn VmaOracle) {
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
    }
}

fn merge_verdict(left: &Vma, right: &Vma, fresh: bool) -> MergeVerdict {
    let (l, r) = (&left.mapping, &right.mapping);
    let attributes_equal = l.end == r.start
        && l.perms == r.perms
        && l.device == r.device
        && l.inode == r.inode
        && l.name == r.name
        && left.flags == right.flags
        && left.pgoff + l.len() / PAGE_SIZE == right.pgoff;
    if !attributes_equal || left.flags.contains(HiddenFlags::GROWSDOWN) {
        return MergeVerdict::Separate;
    }
    if fresh || left.lineage == right.lineage {
        MergeVerdict::Merge
    } else {
        MergeVerdict::AskKernel
    }
}

fn perms_from_prot(prot: u64) -> Perms {
    Perms {
        read: prot & PROT_READ != 0,
        write: prot & PROT_WRITE != 0,
        exec: prot & PROT_EXEC != 0,
        shared: false,
    }
}

/// The hidden flags an madvise advice sets and clears, for the advices that change them.
fn madvise_flag_change(advice: u64) -> Option<(u32, u32)> {
    Some(match advice {
        MADV_HUGEPAGE => (HiddenFlags::HUGEPAGE, HiddenFlags::NOHUGEPAGE),
        MADV_NOHUGEPAGE => (HiddenFlags::NOHUGEPAGE, HiddenFlags::HUGEPAGE),
        MADV_DONTFORK => (HiddenFlags::DONTFORK, 0),
        MADV_DOFORK => (0, HiddenFlags::DONTFORK),
        MADV_WIPEONFORK => (HiddenFlags::WIPEONFORK, 0),
        MADV_KEEPONFORK => (0, HiddenFlags::WIPEONFORK),
        MADV_MERGEABLE => (HiddenFlags::MERGEABLE, 0),
        MADV_UNMERGEABLE => (0, HiddenFlags::MERGEABLE),
        MADV_DONTDUMP => (HiddenFlags::DONTDUMP, 0),
        MADV_DODUMP => (0, HiddenFlags::DONTDUMP),
        _ => return None,
    })
}

pub const PROT_READ: u64 = 0x1;
pub const PROT_WRITE: u64 = 0x2;
pub const PROT_EXEC: u64 = 0x4;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x0100;
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_STACK: u64 = 0x20000;
pub const MREMAP_DONTUNMAP: u64 = 4;
pub const MLOCK_ONFAULT: u64 = 1;
pub const MCL_CURRENT: u64 = 1;
pub const MCL_FUTURE: u64 = 2;
pub const MCL_ONFAULT: u64 = 4;
const MADV_MERGEABLE: u64 = 12;
const MADV_UNMERGEABLE: u64 = 13;
const MADV_HUGEPAGE: u64 = 14;
const MADV_NOHUGEPAGE: u64 = 15;
const MADV_DONTFORK: u64 = 10;
const MADV_DOFORK: u64 = 11;
const MADV_DONTDUMP: u64 = 16;
const MADV_DODUMP: u64 = 17;
const MADV_WIPEONFORK: u64 = 18;
const MADV_KEEPONFORK: u64 = 19;
