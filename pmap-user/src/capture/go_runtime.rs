//! Go programs: the runtime's layout the kernel side needs to follow a call made on a thread's
//! system stack back to the goroutine that switched there (see `pmap_common::GoOffsets`),
//! read from the program's DWARF and handed to the kernel per traced process.
//!
//! Go grows its heap on the system stack (`runtime.systemstack`), so without this every heap
//! growth's stack would end at the switch. A program built without DWARF (`-ldflags=-s -w`)
//! gives no layout: its stacks stop at the switch.

use std::{borrow::Cow, collections::HashMap, fs::File, os::unix::fs::MetadataExt as _};

use aya::maps::{HashMap as BpfHashMap, MapData};
use gimli::{
    AttributeValue, DW_AT_data_member_location, DW_AT_name, DW_TAG_member, DW_TAG_structure_type,
    EndianSlice, LittleEndian,
};
use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, ReadCache,
    elf::PT_TLS,
    read::elf::{ElfFile64, ProgramHeader as _},
};
use pmap_common::GoOffsets;

/// Where the Go linker puts the current `g` from the thread pointer when it links a program
/// alone (no TLS segment): `runtime.tlsg` is `-8(FS)`.
const INTERNAL_TLS_G: i64 = -8;

/// The Go runtime layouts of the traced processes, in the kernel's map, and those of every
/// program file seen (by device and inode), read once each.
pub(super) struct GoRuntimes {
    map: BpfHashMap<MapData, u32, GoOffsets>,
    by_file: HashMap<(u64, u64), Option<GoOffsets>>,
}

impl GoRuntimes {
    pub(super) fn new(map: BpfHashMap<MapData, u32, GoOffsets>) -> GoRuntimes {
        GoRuntimes {
            map,
            by_file: HashMap::new(),
        }
    }

    /// Looks at the program process `tgid` runs now and tells the kernel its Go layout (or
    /// that it has none). Whether it is a Go program whose stacks can be followed.
    pub(super) fn examine(&mut self, tgid: u32) -> bool {
        let offsets = File::open(format!("/proc/{tgid}/exe"))
            .ok()
            .and_then(|file| self.offsets_of(file));
        match offsets {
            Some(offsets) => self.map.insert(tgid, offsets, 0).is_ok(),
            None => {
                // Not there unless an earlier program of the process was Go.
                let _ = self.map.remove(&tgid);
                false
            }
        }
    }

    fn offsets_of(&mut self, file: File) -> Option<GoOffsets> {
        let meta = file.metadata().ok()?;
        *self
            .by_file
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| go_offsets(&file))
    }
}

/// The layout of the Go runtime linked into `file`, when it is a Go program with DWARF.
pub fn go_offsets(file: &File) -> Option<GoOffsets> {
    let cache = ReadCache::new(file);
    let elf = ElfFile64::<object::Endianness, _>::parse(&cache).ok()?;
    // Every Go program has its function table; nothing else does.
    elf.section_by_name(".gopclntab")?;
    let layout = RuntimeLayout::read(&elf)?;
    Some(GoOffsets {
        tls_g: tls_g(&elf)?,
        g_stack_lo: layout.g_stack + layout.stack_lo,
        g_stack_hi: layout.g_stack + layout.stack_hi,
        g_m: layout.g_m,
        g_sched: layout.g_sched,
        m_g0: layout.m_g0,
        m_curg: layout.m_curg,
        gobuf_sp: layout.gobuf_sp,
        gobuf_pc: layout.gobuf_pc,
        gobuf_bp: layout.gobuf_bp,
    })
}

/// The offset of the current `g` from the thread pointer. Linked alone, the Go linker puts it
/// at -8; linked by the system linker (cgo), `runtime.tlsg` is a TLS variable of the
/// executable, whose TLS block ends at the thread pointer (x86-64's TLS variant II).
fn tls_g<'a, R: object::ReadRef<'a>>(elf: &ElfFile64<'a, object::Endianness, R>) -> Option<i64> {
    let endian = elf.endian();
    let Some(tls) = elf
        .elf_program_headers()
        .iter()
        .find(|header| header.p_type(endian) == PT_TLS)
    else {
        return Some(INTERNAL_TLS_G);
    };
    let tlsg = elf.symbol_by_name("runtime.tlsg")?;
    let block = tls
        .p_memsz(endian)
        .next_multiple_of(tls.p_align(endian).max(1));
    Some(tlsg.address() as i64 - block as i64)
}

/// Member offsets of the runtime's `g`, `m`, `gobuf` and `stack` structs, from DWARF.
struct RuntimeLayout {
    g_stack: u64,
    g_m: u64,
    g_sched: u64,
    stack_lo: u64,
    stack_hi: u64,
    m_g0: u64,
    m_curg: u64,
    gobuf_sp: u64,
    gobuf_pc: u64,
    gobuf_bp: u64,
}

/// The struct members looked for, by struct name.
const STRUCTS: [(&str, &[&str]); 4] = [
    ("runtime.g", &["stack", "m", "sched"]),
    ("runtime.m", &["g0", "curg"]),
    ("runtime.gobuf", &["sp", "pc", "bp"]),
    ("runtime.stack", &["lo", "hi"]),
];

impl RuntimeLayout {
    fn read<'a, R: object::ReadRef<'a>>(
        elf: &ElfFile64<'a, object::Endianness, R>,
    ) -> Option<RuntimeLayout> {
        let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'_, [u8]>, ()> {
            Ok(elf
                .section_by_name(id.name())
                .and_then(|section| section.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[])))
        })
        .ok()?;
        let dwarf = sections.borrow(|data| EndianSlice::new(data, LittleEndian));
        let members = struct_members(&dwarf).ok()?;
        let at = |name: &str, member: &str| members.get(&(name.to_owned(), member.to_owned()));
        Some(RuntimeLayout {
            g_stack: *at("runtime.g", "stack")?,
            g_m: *at("runtime.g", "m")?,
            g_sched: *at("runtime.g", "sched")?,
            stack_lo: *at("runtime.stack", "lo")?,
            stack_hi: *at("runtime.stack", "hi")?,
            m_g0: *at("runtime.m", "g0")?,
            m_curg: *at("runtime.m", "curg")?,
            gobuf_sp: *at("runtime.gobuf", "sp")?,
            gobuf_pc: *at("runtime.gobuf", "pc")?,
            gobuf_bp: *at("runtime.gobuf", "bp")?,
        })
    }
}

type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The byte offset of every member [`STRUCTS`] asks for, by (struct, member): each struct is
/// taken where it is first defined.
fn struct_members(
    dwarf: &gimli::Dwarf<Reader<'_>>,
) -> gimli::Result<HashMap<(String, String), u64>> {
    let mut found = HashMap::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        // The struct being read, and the depth of its members.
        let mut inside: Option<(&str, &[&str], isize)> = None;
        while let Some(entry) = entries.next_dfs()? {
            if let Some((_, _, depth)) = inside
                && entry.depth() < depth
            {
                inside = None;
            }
            let name = match entry.attr_value(DW_AT_name) {
                Some(value) => dwarf.attr_string(&unit, value)?,
                None => continue,
            };
            let name = name.to_string_lossy();
            if entry.tag() == DW_TAG_structure_type {
                inside = STRUCTS
                    .iter()
                    .find(|(struct_name, _)| *struct_name == name && !seen.contains(struct_name))
                    .map(|&(struct_name, members)| (struct_name, members, entry.depth() + 1));
                if let Some((struct_name, _, _)) = inside {
                    seen.push(struct_name);
                }
                continue;
            }
            let Some((struct_name, members, depth)) = inside else {
                continue;
            };
            if entry.tag() != DW_TAG_member || entry.depth() != depth || !members.contains(&&*name)
            {
                continue;
            }
            let offset = match entry.attr_value(DW_AT_data_member_location) {
                Some(AttributeValue::Udata(offset)) => offset,
                Some(other) => match other.udata_value() {
                    Some(offset) => offset,
                    None => continue,
                },
                None => continue,
            };
            found.insert((struct_name.to_owned(), name.into_owned()), offset);
        }
        if seen.len() == STRUCTS.len() {
            break;
        }
    }
    Ok(found)
}
