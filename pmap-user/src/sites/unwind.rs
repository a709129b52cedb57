//! Unwinding the user stacks the kernel copies at growth calls: framehop walks them with the
//! `.eh_frame`/`.debug_frame` unwind tables of the ELF files the process maps code from, and
//! falls back to frame pointers where a function has no table entry.
//!
//! A Go program grows its heap on a thread's system stack, switched to by `runtime.systemstack`
//! (or `mcall`, `morestack`, `asmcgocall`): above that frame the system stack holds nothing of
//! the caller. The walk stops there and goes on in the goroutine that switched, from where it
//! stopped, when the kernel copied its stack too; otherwise the stack ends with a frame that
//! says it was cut ([`FrameLoc::CutAtStackSwitch`]), never with a caller read from stale bytes.
//!
//! An unwind that reaches a thread's outermost frame tells the kernel how far up that thread's
//! stack its copies need to go (see `pmap_common::THREAD_TOPS_MAP`).
//!
//! Files are opened through `/proc/PID/map_files` (the exact file mapped, whatever mount
//! namespace the process sees) or else `/proc/PID/root/PATH`, read once per file
//! ([`Modules`]), and kept open so that symbols can still be read after the process is gone.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    ops::Range,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
    sync::Arc,
};

use framehop::{
    ExplicitModuleSectionInfo, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{
    Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _, ReadCache,
    SegmentFlags, elf::PF_X,
};

use pmap_common::linux::{MAP_FIXED, PROT_EXEC};

use super::{
    ownership::SiteId,
    stack_memo::{Read, Segment, StackMemo, Walked, word_at},
};
use crate::{
    decode::{Call, UserStack},
    model::{Device, Mapping, PAGE_SIZE},
};

/// Frames kept of one stack: deeper recursion adds nothing a reader could use.
pub const MAX_FRAMES: usize = 128;

/// An ELF file opened by [`Modules`], by its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(pub u32);

/// One address of an unwound stack: in a known file, by file offset (the same in every process
/// and run), or a bare address in memory no file backs (JIT code, the vdso); or the mark that
/// the stack was cut where a Go thread had switched to its system stack and the goroutine that
/// switched could not be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameLoc {
    Module { module: ModuleId, offset: u64 },
    Address(u64),
    CutAtStackSwitch,
}

/// The Go runtime's functions that switch a thread to its system stack (asm_amd64.s): a frame
/// in one of them is the last frame of that stack. The symbol table names assembly functions
/// with their ABI (`runtime.systemstack.abi0`).
const GO_STACK_SWITCHES: [&str; 4] = [
    "runtime.systemstack",
    "runtime.mcall",
    "runtime.morestack",
    "runtime.asmcgocall",
];

type SectionData = Arc<[u8]>;

/// An ELF file some traced process maps code from.
pub struct ModuleFile {
    /// The path the process maps it by, for display.
    pub path: String,
    /// A path that reaches this open file as long as pmap-trace runs (`/proc/self/fd/N`), for
    /// the symbolizer.
    pub open_path: PathBuf,
    _file: File,
    /// Executable `PT_LOAD` segments as (file offset, virtual address, file size).
    code_segments: Vec<(u64, u64, u64)>,
    sections: ExplicitModuleSectionInfo<SectionData>,
    /// Linked addresses of [`GO_STACK_SWITCHES`] in a Go program.
    stack_switches: Arc<[Range<u64>]>,
}

impl ModuleFile {
    fn read(file: File, path: String) -> Option<ModuleFile> {
        let cache = ReadCache::new(&file);
        let elf = object::File::parse(&cache).ok()?;
        // Only code is unwound, and only code segments say where a code mapping is linked: a
        // segment that does not start on a page is mapped from the page before, which the
        // previous segment's file range may cover too.
        let code_segments = elf
            .segments()
            .filter(|segment| {
                matches!(segment.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0)
            })
            .map(|segment| {
                let (offset, size) = segment.file_range();
                (offset, segment.address(), size)
            })
            .collect();
        let range = |name: &str| {
            elf.section_by_name(name)
                .map(|s| s.address()..s.address() + s.size())
        };
        let data = |name: &str| -> Option<SectionData> {
            let section = elf.section_by_name(name)?;
            Some(Arc::from(section.uncompressed_data().ok()?.as_ref()))
        };
        let sections = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: range(".text"),
            got_svma: range(".got"),
            eh_frame_svma: range(".eh_frame"),
            eh_frame: data(".eh_frame"),
            eh_frame_hdr_svma: range(".eh_frame_hdr"),
            eh_frame_hdr: data(".eh_frame_hdr"),
            debug_frame: data(".debug_frame"),
            ..ExplicitModuleSectionInfo::default()
        };
        let stack_switches = go_stack_switches(&elf);
        drop(elf);
        drop(cache);
        Some(ModuleFile {
            path,
            open_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            _file: file,
            code_segments,
            sections,
            stack_switches,
        })
    }

    /// The address the file's bytes at `offset`, the start of a code mapping, are linked at:
    /// the mapping starts at the code segment's first byte rounded down to a page.
    fn svma_of_offset(&self, offset: u64) -> Option<u64> {
        self.code_segments
            .iter()
            .find(|&&(start, _, size)| offset >= start & !(PAGE_SIZE - 1) && offset < start + size)
            .map(|&(start, vaddr, _)| (vaddr + offset).wrapping_sub(start))
    }
}

/// Where a Go program's stack-switching functions are linked, from its symbol table (none in
/// any other file, or in a Go program whose symbols were stripped).
fn go_stack_switches<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
) -> Arc<[Range<u64>]> {
    if elf.section_by_name(".gopclntab").is_none() {
        return Arc::new([]);
    }
    elf.symbols()
        .filter(|symbol| {
            symbol.name().is_ok_and(|name| {
                let name = name.strip_suffix(".abi0").unwrap_or(name);
                GO_STACK_SWITCHES.contains(&name)
            })
        })
        .map(|symbol| symbol.address()..symbol.address() + symbol.size())
        .collect()
}

/// Every code file seen so far, by device and inode, opened once.
#[derive(Default)]
pub struct Modules {
    by_file: HashMap<(Device, u64), Option<ModuleId>>,
    files: Vec<Arc<ModuleFile>>,
}

impl Modules {
    pub fn get(&self, id: ModuleId) -> &Arc<ModuleFile> {
        &self.files[id.0 as usize]
    }

    /// The file behind `mapping` of process `pid`; `None` (remembered) when it cannot be
    /// opened or is no ELF file.
    fn open(&mut self, pid: i32, mapping: &Mapping) -> Option<Arc<ModuleFile>> {
        let key = (mapping.device, mapping.inode);
        if let Some(known) = self.by_file.get(&key) {
            return known.map(|id| self.get(id).clone());
        }
        let path = String::from_utf8_lossy(&mapping.name).into_owned();
        let module = open_mapped_file(pid, mapping, &path).and_then(|f| ModuleFile::read(f, path));
        let id = module.map(|module| {
            self.files.push(Arc::new(module));
            ModuleId(self.files.len() as u32 - 1)
        });
        self.by_file.insert(key, id);
        id.map(|id| self.get(id).clone())
    }
}

/// Opens the file a process maps: `map_files` names exactly the mapped file even in another
/// mount namespace but needs CAP_SYS_ADMIN; the path under the process's root is the same file
/// when its inode says so.
fn open_mapped_file(pid: i32, mapping: &Mapping, path: &str) -> Option<File> {
    let exact = format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        mapping.start, mapping.end
    );
    if let Ok(file) = File::open(exact) {
        return Some(file);
    }
    let file = File::open(format!("/proc/{pid}/root{path}")).ok()?;
    (file.metadata().ok()?.ino() == mapping.inode).then_some(file)
}

/// A code mapping registered with the unwinder.
struct CodeMapping {
    end: u64,
    /// File offset of the mapping's start.
    offset: u64,
    id: ModuleId,
    /// What to subtract from an address in the mapping to get its linked address.
    bias: u64,
    stack_switches: Arc<[Range<u64>]>,
}

/// One process's unwinder: the code it maps, kept in step with its table, and the walks it
/// made (see `stack_memo`).
pub struct ProcessUnwinder {
    unwinder: UnwinderX86_64<SectionData>,
    cache: CacheX86_64,
    code: BTreeMap<u64, CodeMapping>,
    /// The code mappings may have changed since they were registered.
    stale: bool,
    memo: StackMemo<WalkSummary>,
}

impl Default for ProcessUnwinder {
    fn default() -> Self {
        ProcessUnwinder {
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            code: BTreeMap::new(),
            stale: true,
            memo: StackMemo::default(),
        }
    }
}

impl ProcessUnwinder {
    /// Notes a call about to be applied: one that may map, unmap or re-protect code makes the
    /// registered code mappings stale, to be re-read from the table at the next unwind.
    pub fn note_call(&mut self, call: &Call) {
        let touches = |addr: u64, len: u64| self.overlaps_code(addr, addr.saturating_add(len));
        let stale = match *call {
            Call::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                ..
            } => {
                (fd >= 0 && prot & PROT_EXEC != 0) || (flags & MAP_FIXED != 0 && touches(addr, len))
            }
            Call::Mprotect { addr, len, prot }
            | Call::PkeyMprotect {
                addr, len, prot, ..
            } => prot & PROT_EXEC != 0 || touches(addr, len),
            Call::Munmap { addr, len } => touches(addr, len),
            // A move can land on code (MREMAP_FIXED) or move code.
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                ..
            } => touches(old_addr, old_len) || touches(old_addr, new_len) || old_len == 0,
            Call::RemapFilePages { .. } => true,
            _ => false,
        };
        self.stale |= stale;
    }

    fn overlaps_code(&self, start: u64, end: u64) -> bool {
        self.code
            .range(..end)
            .next_back()
            .is_some_and(|(_, code)| code.end > start)
            || self.code.range(start..end).next().is_some()
    }

    /// Registers the code mappings of the table, `mappings`, that are not registered yet and
    /// drops those that are gone.
    fn sync<'a>(
        &mut self,
        pid: i32,
        mappings: impl Iterator<Item = &'a Mapping>,
        modules: &mut Modules,
    ) {
        let mut wanted = BTreeMap::new();
        for mapping in mappings.filter(|m| m.perms.exec && m.inode != 0) {
            if let Some(code) = self.code.remove(&mapping.start)
                && code.end == mapping.end
                && code.offset == mapping.offset
                && modules.by_file.get(&(mapping.device, mapping.inode)) == Some(&Some(code.id))
            {
                wanted.insert(mapping.start, code);
                continue;
            }
            self.unwinder.remove_module(mapping.start);
            let Some(file) = modules.open(pid, mapping) else {
                continue;
            };
            let Some(svma) = file.svma_of_offset(mapping.offset) else {
                continue;
            };
            let id = modules.by_file[&(mapping.device, mapping.inode)].expect("just opened");
            let bias = mapping.start.wrapping_sub(svma);
            self.unwinder.add_module(Module::new(
                file.path.clone(),
                mapping.start..mapping.end,
                bias,
                file.sections.clone(),
            ));
            wanted.insert(
                mapping.start,
                CodeMapping {
                    end: mapping.end,
                    offset: mapping.offset,
                    id,
                    bias,
                    stack_switches: file.stack_switches.clone(),
                },
            );
        }
        for gone in std::mem::replace(&mut self.code, wanted).into_keys() {
            self.unwinder.remove_module(gone);
        }
        self.stale = false;
        self.memo.forget();
    }

    /// The site of `stack`: its frames, innermost first, as file locations, interned by
    /// `intern`; a stack like one walked before (see `stack_memo`) gets that one's site
    /// without a walk. `mappings` is the process's table when the call was made. A stack that
    /// reaches its thread's outermost frame tells the kernel where that thread's stack ends
    /// (not the main thread's, whose end the kernel knows).
    pub fn site_of<'a>(
        &mut self,
        pid: i32,
        mappings: impl Iterator<Item = &'a Mapping>,
        modules: &mut Modules,
        stack: &UserStack,
        intern: impl FnOnce(&[FrameLoc]) -> SiteId,
    ) -> SiteId {
        if self.stale {
            self.sync(pid, mappings, modules);
        }
        let walked = match self.memo.recall(stack) {
            Some(walked) => walked,
            None => {
                let mut reads = Vec::new();
                let (frames, first) = self.unwind(stack, &mut reads);
                let walked = Walked {
                    site: intern(&frames),
                    top: first,
                };
                self.memo.remember(stack, reads, walked);
                walked
            }
        };
        if stack.tid != pid as u32 {
            report_top(stack, walked.top);
        }
        walked.site
    }

    /// The frames of `stack`, innermost first, and how the walk of its first segment ended;
    /// every stack word read goes into `reads`.
    fn unwind(&mut self, stack: &UserStack, reads: &mut Vec<Read>) -> (Vec<FrameLoc>, WalkSummary) {
        let mut addresses = Vec::new();
        let first = self.walk(
            UnwindRegsX86_64::new(stack.rip, stack.rsp, stack.rbp),
            (Segment::Call, &stack.bytes),
            &mut addresses,
            reads,
        );
        let mut cut = false;
        match (first.end, &stack.switched) {
            (WalkEnd::StackSwitch, Some(goroutine)) => {
                self.walk(
                    UnwindRegsX86_64::new(goroutine.rip, goroutine.rsp, goroutine.rbp),
                    (Segment::Switched, &goroutine.bytes),
                    &mut addresses,
                    reads,
                );
            }
            (WalkEnd::StackSwitch, None) => cut = true,
            _ => {}
        }
        let mut frames: Vec<FrameLoc> = addresses
            .into_iter()
            .map(|addr| self.locate(addr))
            .collect();
        if cut {
            frames.push(FrameLoc::CutAtStackSwitch);
        }
        (frames, first)
    }

    /// Walks one stack segment from `regs`, reading `bytes` (copied from `regs.sp()` up),
    /// appending each frame's lookup address to `out` and each word read to `reads`, until
    /// the outermost frame, a frame that switched stacks, a read the copy cannot serve, or
    /// [`MAX_FRAMES`].
    fn walk(
        &mut self,
        regs: UnwindRegsX86_64,
        (segment, bytes): (Segment, &[u8]),
        out: &mut Vec<u64>,
        reads: &mut Vec<Read>,
    ) -> WalkSummary {
        let rsp = regs.sp();
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let value = word_at(bytes, rsp, addr);
            reads.push(Read {
                segment,
                addr,
                value,
            });
            value.ok_or(())
        };
        let ProcessUnwinder {
            unwinder,
            cache,
            code,
            ..
        } = self;
        let mut frames = unwinder.iter_frames(regs.ip(), regs, cache, &mut read_stack);
        // An error ends the walk (it ran off the copy, or met code it cannot unwind); the
        // frames so far stand.
        let end = loop {
            match frames.next() {
                Ok(Some(frame)) => {
                    let addr = frame.address_for_lookup();
                    out.push(addr);
                    if out.len() >= MAX_FRAMES {
                        break WalkEnd::Cut;
                    }
                    if switches_stack(code, addr) {
                        break WalkEnd::StackSwitch;
                    }
                }
                Ok(None) => break WalkEnd::Outermost,
                Err(_) => break WalkEnd::Cut,
            }
        };
        let segment_reads = reads.iter().rev().take_while(|r| r.segment == segment);
        let highest_read = segment_reads
            .clone()
            .filter(|r| r.value.is_some())
            .map(|r| r.addr + 8)
            .max();
        let ran_off = segment_reads
            .filter(|r| r.value.is_none())
            .any(|r| r.addr >= rsp);
        WalkSummary {
            end,
            highest_read,
            ran_off,
        }
    }

    fn locate(&self, addr: u64) -> FrameLoc {
        match self.code.range(..=addr).next_back() {
            Some((&start, code)) if addr < code.end => FrameLoc::Module {
                module: code.id,
                offset: addr - start + code.offset,
            },
            _ => FrameLoc::Address(addr),
        }
    }
}

/// How a walk of one stack segment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WalkEnd {
    /// At the thread's outermost frame: the whole stack was walked.
    Outermost,
    /// At a frame that had switched to this stack from another (Go).
    StackSwitch,
    /// Anywhere else: the copy ended, the code could not be unwound, or too many frames.
    Cut,
}

/// How the walk of a segment went, as far as the thread's stack top is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WalkSummary {
    end: WalkEnd,
    /// One past the highest stack byte read.
    highest_read: Option<u64>,
    /// A read above the stack pointer fell beyond the copy.
    ran_off: bool,
}

/// Whether `addr` (a frame's lookup address) lies in a Go function that switches stacks.
fn switches_stack(code: &BTreeMap<u64, CodeMapping>, addr: u64) -> bool {
    match code.range(..=addr).next_back() {
        Some((_, code)) if addr < code.end => {
            let linked = addr.wrapping_sub(code.bias);
            code.stack_switches
                .iter()
                .any(|range| range.contains(&linked))
        }
        _ => false,
    }
}

/// Tells the kernel where the stack of `stack`'s thread ends, as far as this walk of its first
/// segment found: the highest byte read once the walk reached the outermost frame (a thread's
/// outermost frames never move). A copy the previous top cut short goes back to the full
/// size. Nothing is written when nothing changed: each write is a system call.
fn report_top(stack: &UserStack, walk: WalkSummary) {
    let Some(tops) = &stack.tops else {
        return;
    };
    match (walk.end, walk.highest_read) {
        (WalkEnd::Outermost, Some(top)) if stack.learned_top != Some(top) => {
            tops.set(stack.tid, Some(top))
        }
        (WalkEnd::Cut, _) if walk.ran_off && stack.learned_top.is_some() => {
            tops.set(stack.tid, None)
        }
        _ => {}
    }
}
