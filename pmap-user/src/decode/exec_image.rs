//! The address space an exec made, as its record carries it ([`pmap_common::ExecRecord`]):
//! decoded, checked whole, and turned into the mappings `/proc/PID/maps` would have listed
//! right after the exec.

use pmap_common::{
    EXEC_CMDLINE_MAX, EXEC_VMA_SIZE, EXEC_VMAS_MAX, ExecHeader, ExecVma,
    linux::vm_flags::{VM_DONTEXPAND, VM_EXEC, VM_MAYSHARE, VM_READ, VM_WRITE},
};

use super::mapped_file::MappedFile;
use crate::model::{Device, Mapping, PAGE_SIZE, Perms};

/// One VMA of the new image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVma {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    /// In pages.
    pub pgoff: u64,
    pub file: Option<MappedFile>,
}

/// Why an image cannot stand for the process's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageGap {
    /// The maple tree was deeper, or had more VMAs, than the record holds.
    Truncated,
    /// The record found this many VMAs where the mm counts `kernel`.
    Count { found: usize, kernel: usize },
    /// Two of the VMAs found overlap (a stale slot of the tree).
    Overlap,
}

impl std::fmt::Display for ImageGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageGap::Truncated => write!(
                f,
                "its new address space had more than the {EXEC_VMAS_MAX} VMAs the exec record holds"
            ),
            ImageGap::Count { found, kernel } => {
                write!(f, "the exec record found {found} of its {kernel} VMAs")
            }
            ImageGap::Overlap => write!(f, "the exec record's VMAs overlap"),
        }
    }
}

/// A decoded exec record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecImage {
    pub start_stack: u64,
    pub start_brk: u64,
    pub brk: u64,
    /// Sorted by address, without overlap when `gap` is `None`.
    pub vmas: Vec<ImageVma>,
    /// What is missing for `vmas` to be the whole address space.
    pub gap: Option<ImageGap>,
    /// The file name execve was given (empty when unknown).
    pub path: Vec<u8>,
    /// The command line (NUL-separated arguments), `None` when it was not copied whole.
    pub cmdline: Option<Vec<u8>>,
    /// As much of the command line as was copied.
    pub cmdline_start: Vec<u8>,
}

impl ExecImage {
    /// Decodes an exec record's bytes: an [`ExecHeader`], its VMAs and its command line;
    /// `None` when the length is not the one the header announces.
    pub fn from_bytes(bytes: &[u8]) -> Option<ExecImage> {
        if bytes.len() < ExecHeader::SIZE {
            return None;
        }
        // SAFETY: the length covers a header, plain data valid for any bit pattern, read
        // unaligned.
        let header: ExecHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let count = header.vma_count as usize;
        let copied = header.cmdline_len as usize;
        let cmdline_at = ExecHeader::SIZE + count * EXEC_VMA_SIZE;
        if count > EXEC_VMAS_MAX || copied > EXEC_CMDLINE_MAX || bytes.len() != cmdline_at + copied
        {
            return None;
        }
        let mut vmas: Vec<ImageVma> = (0..count)
            .map(|i| {
                // SAFETY: slot i lies inside the length checked above; plain data, unaligned.
                let v: ExecVma = unsafe {
                    std::ptr::read_unaligned(
                        bytes[ExecHeader::SIZE + i * EXEC_VMA_SIZE..]
                            .as_ptr()
                            .cast(),
                    )
                };
                ImageVma {
                    start: v.start,
                    end: v.end,
                    flags: v.flags,
                    pgoff: v.pgoff,
                    file: MappedFile::from_record(&v.file),
                }
            })
            .collect();
        vmas.sort_by_key(|v| v.start);
        // A leaf slot and its parent's copy of it can both be read: the same VMA twice.
        vmas.dedup();
        let gap = if header.truncated != 0 {
            Some(ImageGap::Truncated)
        } else if vmas.len() != header.map_count as usize {
            Some(ImageGap::Count {
                found: vmas.len(),
                kernel: header.map_count as usize,
            })
        } else if vmas.windows(2).any(|w| w[0].end > w[1].start)
            || vmas.iter().any(|v| v.end <= v.start)
        {
            Some(ImageGap::Overlap)
        } else {
            None
        };
        let cmdline_start = bytes[cmdline_at..].to_vec();
        let cmdline = (copied as u64 == header.arg_len).then(|| cmdline_start.clone());
        let path_len = header
            .path
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(header.path.len());
        Some(ExecImage {
            start_stack: header.start_stack,
            start_brk: header.start_brk,
            brk: header.brk,
            vmas,
            gap,
            path: header.path[..path_len].to_vec(),
            cmdline,
            cmdline_start,
        })
    }

    /// The lines `/proc/PID/maps` would list for the image. `name_file` gives a file's path;
    /// `specials` are the kernel's special mappings as another process of this kernel has them
    /// (`[vvar]`, `[vdso]`, ... and `[vsyscall]`), which name the image's by size and access.
    pub fn mappings(
        &self,
        name_file: &mut dyn FnMut(&MappedFile) -> Vec<u8>,
        specials: &[Mapping],
    ) -> Vec<Mapping> {
        let mut mappings: Vec<Mapping> = self
            .vmas
            .iter()
            .map(|vma| {
                let perms = Perms {
                    read: vma.flags & VM_READ != 0,
                    write: vma.flags & VM_WRITE != 0,
                    exec: vma.flags & VM_EXEC != 0,
                    shared: vma.flags & VM_MAYSHARE != 0,
                };
                let (offset, device, inode, name) = match &vma.file {
                    Some(file) => (
                        vma.pgoff * PAGE_SIZE,
                        file.device,
                        file.inode,
                        name_file(file),
                    ),
                    None => (
                        0,
                        Device::default(),
                        0,
                        self.anonymous_name(vma, perms, specials),
                    ),
                };
                Mapping {
                    start: vma.start,
                    end: vma.end,
                    perms,
                    offset,
                    device,
                    inode,
                    name,
                }
            })
            .collect();
        // The vsyscall page is no VMA of the mm (get_gate_vma()) but /proc lists it last in
        // every 64-bit process.
        if let Some(gate) = specials.iter().find(|m| m.name == b"[vsyscall]")
            && self.start_stack > u64::from(u32::MAX)
            && mappings.last().is_none_or(|m| m.end <= gate.start)
        {
            mappings.push(gate.clone());
        }
        mappings
    }

    /// The name /proc gives a VMA without a file (show_map_vma()): a special mapping's own, the
    /// stack's, the heap's; else none.
    fn anonymous_name(&self, vma: &ImageVma, perms: Perms, specials: &[Mapping]) -> Vec<u8> {
        if vma.flags & VM_DONTEXPAND != 0
            && let Some(special) = specials
                .iter()
                .find(|s| s.len() == vma.end - vma.start && s.perms == perms)
        {
            return special.name.clone();
        }
        if vma.start <= self.start_stack && vma.end >= self.start_stack {
            return b"[stack]".to_vec();
        }
        // vma_is_initial_heap().
        if vma.start < self.brk && vma.end > self.start_brk {
            return b"[heap]".to_vec();
        }
        Vec::new()
    }
}

/// The kernel's special mappings in `maps` (this process's, say): named, without a file, and
/// neither stack nor heap.
pub fn special_mappings(maps: &[Mapping]) -> Vec<Mapping> {
    maps.iter()
        .filter(|m| {
            m.inode == 0
                && m.name.starts_with(b"[")
                && !matches!(m.name.as_slice(), b"[stack]" | b"[heap]")
                && !m.name.starts_with(b"[anon")
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use pmap_common::{EXEC_PATH_MAX, EventRecord, FILE_NAME_LEN, FileIdentity};

    use super::*;

    /// An exec record as the kernel sends it: the header, the VMAs, the command line.
    struct Record {
        header: ExecHeader,
        vmas: Vec<ExecVma>,
        cmdline: Vec<u8>,
    }

    impl Record {
        fn bytes(&self) -> Vec<u8> {
            let mut header = self.header;
            header.vma_count = self.vmas.len() as u32;
            header.cmdline_len = self.cmdline.len() as u32;
            // SAFETY: plain data viewed as bytes.
            let view = |p: *const u8, len| unsafe { std::slice::from_raw_parts(p, len) };
            let mut bytes = view((&raw const header).cast(), ExecHeader::SIZE).to_vec();
            for vma in &self.vmas {
                bytes.extend_from_slice(view((vma as *const ExecVma).cast(), EXEC_VMA_SIZE));
            }
            bytes.extend_from_slice(&self.cmdline);
            bytes
        }

        fn image(&self) -> ExecImage {
            ExecImage::from_bytes(&self.bytes()).expect("a well-formed record")
        }
    }

    fn vma(start: u64, end: u64, flags: u64, file: Option<(u64, &str)>) -> ExecVma {
        let mut identity = FileIdentity {
            dev: 0,
            _pad: 0,
            ino: 0,
            name: [0; FILE_NAME_LEN],
        };
        if let Some((ino, name)) = file {
            identity.dev = (254 << 20) | 1;
            identity.ino = ino;
            identity.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        ExecVma {
            start,
            end,
            flags,
            pgoff: 2,
            file: identity,
        }
    }

    /// A small image: a program's text, its `.bss`, the stack and the vDSO, out of order (as
    /// the leaves of the tree may give them) and one read twice.
    fn image_record() -> Record {
        let rx = VM_READ | VM_EXEC;
        let rw = VM_READ | VM_WRITE;
        let vmas = vec![
            vma(0x7ffd_0000_0000, 0x7ffd_0002_1000, rw, None),
            vma(0x5555_0000_0000, 0x5555_0000_2000, rx, Some((42, "prog"))),
            vma(0x7ffd_0010_0000, 0x7ffd_0010_2000, rx | VM_DONTEXPAND, None),
            vma(0x5555_0000_2000, 0x5555_0000_3000, rw, None),
            vma(0x7ffd_0000_0000, 0x7ffd_0002_1000, rw, None),
        ];
        let cmdline = b"/usr/bin/prog\0-x\0".to_vec();
        let mut path = [0; EXEC_PATH_MAX];
        path[..9].copy_from_slice(b"/bin/prog");
        let header = ExecHeader {
            event: EventRecord {
                kind: pmap_common::record_kind::EXEC_IMAGE,
                syscall_nr: 0,
                timestamp_ns: 1,
                tgid: 7,
                tid: 7,
                args: [0; 6],
                ret: 0,
                aux: 0,
                comm: [0; 16],
            },
            start_stack: 0x7ffd_0002_0f00,
            start_brk: 0x5555_0100_0000,
            brk: 0x5555_0100_0000,
            arg_len: cmdline.len() as u64,
            map_count: 4,
            vma_count: 0,
            cmdline_len: 0,
            truncated: 0,
            path,
        };
        Record {
            header,
            vmas,
            cmdline,
        }
    }

    #[test]
    fn decodes_a_whole_image_in_address_order() {
        let image = image_record().image();
        assert_eq!(image.gap, None);
        assert_eq!(image.vmas.len(), 4);
        assert!(image.vmas.windows(2).all(|w| w[0].end <= w[1].start));
        assert_eq!(image.path, b"/bin/prog");
        assert_eq!(image.cmdline.as_deref(), Some(&b"/usr/bin/prog\0-x\0"[..]));
        let file = image.vmas[0].file.as_ref().unwrap();
        assert_eq!(
            file.device,
            Device {
                major: 254,
                minor: 1
            }
        );
        assert_eq!((file.inode, file.name.as_slice()), (42, &b"prog"[..]));
    }

    #[test]
    fn names_the_mappings_as_proc_does() {
        let image = image_record().image();
        let vdso = Mapping {
            start: 0x7fff_0000_0000,
            end: 0x7fff_0000_2000,
            perms: Perms {
                read: true,
                exec: true,
                ..Perms::default()
            },
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: b"[vdso]".to_vec(),
        };
        let gate = Mapping {
            start: 0xffff_ffff_ff60_0000,
            end: 0xffff_ffff_ff60_1000,
            perms: Perms {
                exec: true,
                ..Perms::default()
            },
            name: b"[vsyscall]".to_vec(),
            ..vdso.clone()
        };
        let specials = [vdso, gate];
        let mut named = |file: &MappedFile| [b"/usr/bin/".as_slice(), &file.name].concat();
        let mappings = image.mappings(&mut named, &specials);
        let names: Vec<&[u8]> = mappings.iter().map(|m| m.name.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b"/usr/bin/prog"[..],
                b"",
                b"[stack]",
                b"[vdso]",
                b"[vsyscall]"
            ]
        );
        assert_eq!(mappings[0].offset, 2 * PAGE_SIZE);
        assert_eq!(mappings[1].offset, 0);
        assert!(mappings[0].perms.exec && !mappings[0].perms.write);
    }

    #[test]
    fn an_image_short_of_the_mm_s_count_is_not_whole() {
        let mut r = image_record();
        r.header.map_count = 5;
        assert_eq!(
            r.image().gap,
            Some(ImageGap::Count {
                found: 4,
                kernel: 5
            })
        );
        r.header.map_count = 4;
        r.header.truncated = 1;
        assert_eq!(r.image().gap, Some(ImageGap::Truncated));
        // A stale slot: a piece of a VMA that a later split replaced.
        let mut r = image_record();
        r.vmas[4] = vma(0x5555_0000_1000, 0x5555_0000_3000, VM_READ, None);
        r.header.map_count = 5;
        assert_eq!(r.image().gap, Some(ImageGap::Overlap));
    }

    #[test]
    fn a_command_line_longer_than_the_record_is_not_taken_whole() {
        let mut r = image_record();
        r.header.arg_len = 10_000;
        let image = r.image();
        assert_eq!(image.cmdline, None);
        assert_eq!(image.cmdline_start, b"/usr/bin/prog\0-x\0");
    }

    #[test]
    fn a_record_of_another_length_than_announced_is_refused() {
        let bytes = image_record().bytes();
        assert!(ExecImage::from_bytes(&bytes[..bytes.len() - 1]).is_none());
        assert!(ExecImage::from_bytes(&[bytes.as_slice(), &[0]].concat()).is_none());
        assert!(ExecImage::from_bytes(&bytes[..ExecHeader::SIZE - 1]).is_none());
    }
}
