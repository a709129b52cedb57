//! Unwinding the user stacks the kernel copies at growth calls: framehop walks them with the
//! `.eh_frame`/`.debug_frame` unwind tables of the ELF files the process maps code from, and
//! falls back to frame pointers where a function has no table entry.
//!
//! Files are opened through `/proc/PID/map_files` (the exact file mapped, whatever mount
//! namespace the process sees) or else `/proc/PID/root/PATH`, read once per file
//! ([`Modules`]), and kept open so that symbols can still be read after the process is gone.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
    sync::Arc,
};

use framehop::{
    ExplicitModuleSectionInfo, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{
    Object as _, ObjectSection as _, ObjectSegment as _, ReadCache, SegmentFlags, elf::PF_X,
};

use pmap_common::linux::{MAP_FIXED, PROT_EXEC};

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
/// and run), or a bare address in memory no file backs (JIT code, the vdso).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameLoc {
    Module { module: ModuleId, offset: u64 },
    Address(u64),
}

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
        drop(elf);
        drop(cache);
        Some(ModuleFile {
            path,
            open_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            _file: file,
            code_segments,
            sections,
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
}

/// One process's unwinder: the code it maps, kept in step with its table.
pub struct ProcessUnwinder {
    unwinder: UnwinderX86_64<SectionData>,
    cache: CacheX86_64,
    code: BTreeMap<u64, CodeMapping>,
    /// The code mappings may have changed since they were registered.
    stale: bool,
}

impl Default for ProcessUnwinder {
    fn default() -> Self {
        ProcessUnwinder {
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            code: BTreeMap::new(),
            stale: true,
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
            self.unwinder.add_module(Module::new(
                file.path.clone(),
                mapping.start..mapping.end,
                mapping.start.wrapping_sub(svma),
                file.sections.clone(),
            ));
            wanted.insert(
                mapping.start,
                CodeMapping {
                    end: mapping.end,
                    offset: mapping.offset,
                    id,
                },
            );
        }
        for gone in std::mem::replace(&mut self.code, wanted).into_keys() {
            self.unwinder.remove_module(gone);
        }
        self.stale = false;
    }

    /// The frames of `stack`, innermost first, as file locations. `mappings` is the process's
    /// table when the call was made.
    pub fn unwind<'a>(
        &mut self,
        pid: i32,
        mappings: impl Iterator<Item = &'a Mapping>,
        modules: &mut Modules,
        stack: &UserStack,
    ) -> Vec<FrameLoc> {
        if self.stale {
            self.sync(pid, mappings, modules);
        }
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let at = usize::try_from(addr.checked_sub(stack.rsp).ok_or(())?).map_err(|_| ())?;
            let bytes = stack
                .bytes
                .get(at..at.checked_add(8).ok_or(())?)
                .ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
        };
        let regs = UnwindRegsX86_64::new(stack.rip, stack.rsp, stack.rbp);
        let mut frames =
            self.unwinder
                .iter_frames(stack.rip, regs, &mut self.cache, &mut read_stack);
        let mut out = Vec::new();
        // The walk ends with an error when it runs off the copy; the frames so far stand.
        while let Ok(Some(frame)) = frames.next() {
            out.push(frame.address_for_lookup());
            if out.len() == MAX_FRAMES {
                break;
            }
        }
        out.into_iter().map(|addr| self.locate(addr)).collect()
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
