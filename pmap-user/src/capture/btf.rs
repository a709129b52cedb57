//! Field offsets of kernel structures, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). The kernel side is built without CO-RE relocations, so the
//! offsets it needs to follow pointers (task → files → file → inode, dentry) are found here and
//! handed to it as a global before loading.

use std::collections::HashMap;

use pmap_common::{ExecOffsets, ExitOffsets, FileOffsets, ForkOffsets, StackOffsets, TaskOffsets};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF data is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct {0}")]
    MissingStruct(String),
    #[error("kernel BTF has no field {0}.{1}")]
    MissingField(String, String),
}

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    /// The referenced type for modifiers and typedefs.
    target: u32,
    members: Vec<Member>,
}

/// The struct and union types of a BTF blob, enough to resolve member offsets.
pub struct KernelTypes {
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(BtfError::Malformed("truncated"))
}

impl KernelTypes {
    pub fn parse(data: &[u8]) -> Result<KernelTypes, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Malformed("bad magic"));
        }
        let header_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(header_len + off..header_len + off + len)
                .ok_or(BtfError::Malformed("section out of bounds"))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let string_at = |offset: u32| -> String {
            let rest = strings.get(offset as usize..).unwrap_or_default();
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        };

        // Type id 0 is `void`.
        let mut types = vec![Type {
            kind: 0,
            target: 0,
            members: Vec::new(),
        }];
        let mut structs = HashMap::new();
        let mut at = 0;
        while at < type_data.len() {
            let name_off = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfield_offsets = info >> 31 == 1;
            let mut members = Vec::new();
            if kind == KIND_STRUCT || kind == KIND_UNION {
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let offset = u32_at(type_data, m + 8)?;
                    members.push(Member {
                        name: string_at(u32_at(type_data, m)?),
                        type_id: u32_at(type_data, m + 4)?,
                        bit_offset: if bitfield_offsets {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        },
                    });
                }
                let name = string_at(name_off);
                if kind == KIND_STRUCT && !name.is_empty() {
                    structs.entry(name).or_insert(types.len() as u32);
                }
            }
            at += match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                _ => 0,
            };
            types.push(Type {
                kind,
                target: size_or_type,
                members,
            });
        }
        Ok(KernelTypes { types, structs })
    }

    pub fn from_running_kernel() -> Result<KernelTypes, BtfError> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")
            .map_err(|_| BtfError::Malformed("cannot read /sys/kernel/btf/vmlinux"))?;
        KernelTypes::parse(&data)
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.target
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Byte offset of `field` in `ty`, looking inside anonymous structs and unions.
    fn member_offset(&self, ty: &Type, field: &str) -> Option<u32> {
        for member in &ty.members {
            if member.name == field {
                return Some(member.bit_offset / 8);
            }
            if member.name.is_empty()
                && let Some(inner) = self.resolve(member.type_id)
                && let Some(offset) = self.member_offset(inner, field)
            {
                return Some(member.bit_offset / 8 + offset);
            }
        }
        None
    }

    /// Byte offset of `field` in `struct name`.
    pub fn offset_of(&self, name: &str, field: &str) -> Result<u64, BtfError> {
        let id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::MissingStruct(name.into()))?;
        let ty = &self.types[id as usize];
        self.member_offset(ty, field)
            .map(u64::from)
            .ok_or_else(|| BtfError::MissingField(name.into(), field.into()))
    }

    /// The offsets the kernel side follows to name the file behind a new mapping.
    pub fn file_offsets(&self) -> Result<FileOffsets, BtfError> {
        Ok(FileOffsets {
            valid: 1,
            task_files: self.offset_of("task_struct", "files")?,
            files_fdt: self.offset_of("files_struct", "fdt")?,
            fdtable_max_fds: self.offset_of("fdtable", "max_fds")?,
            fdtable_fd: self.offset_of("fdtable", "fd")?,
            file_inode: self.offset_of("file", "f_inode")?,
            file_dentry: self.offset_of("file", "f_path")? + self.offset_of("path", "dentry")?,
            inode_ino: self.offset_of("inode", "i_ino")?,
            inode_sb: self.offset_of("inode", "i_sb")?,
            sb_dev: self.offset_of("super_block", "s_dev")?,
            dentry_name: self.offset_of("dentry", "d_name")? + self.offset_of("qstr", "name")?,
            dentry_parent: self.offset_of("dentry", "d_parent")?,
            dentry_hash_pprev: self.offset_of("dentry", "d_hash")?
                + self.offset_of("hlist_bl_node", "pprev")?,
            file_mnt: self.offset_of("file", "f_path")? + self.offset_of("path", "mnt")?,
            vfsmount_root: self.offset_of("vfsmount", "mnt_root")?,
            mount_vfsmount: self.offset_of("mount", "mnt")?,
            mount_parent: self.offset_of("mount", "mnt_parent")?,
            mount_mountpoint: self.offset_of("mount", "mnt_mountpoint")?,
        })
    }

    /// The offsets the kernel side follows to the main thread's stack top.
    pub fn stack_offsets(&self) -> Result<StackOffsets, BtfError> {
        Ok(StackOffsets {
            valid: 1,
            task_mm: self.offset_of("task_struct", "mm")?,
            mm_start_stack: self.offset_of("mm_struct", "start_stack")?,
        })
    }

    /// The offset of a task's saved thread pointer, where a Go program finds its current `g`.
    pub fn task_offsets(&self) -> Result<TaskOffsets, BtfError> {
        Ok(TaskOffsets {
            valid: 1,
            task_fsbase: self.offset_of("task_struct", "thread")?
                + self.offset_of("thread_struct", "fsbase")?,
        })
    }

    /// The offsets the exit record follows to the mm's size counters.
    pub fn exit_offsets(&self) -> Result<ExitOffsets, BtfError> {
        Ok(ExitOffsets {
            valid: 1,
            task_mm: self.offset_of("task_struct", "mm")?,
            mm_total_vm: self.offset_of("mm_struct", "total_vm")?,
            mm_stack_vm: self.offset_of("mm_struct", "stack_vm")?,
        })
    }

    /// The offsets the fork record follows from the parent to the child's mm.
    pub fn fork_offsets(&self) -> Result<ForkOffsets, BtfError> {
        let task = |field| self.offset_of("task_struct", field);
        Ok(ForkOffsets {
            valid: 1,
            task_children: task("children")?,
            task_sibling: task("sibling")?,
            task_pid: task("pid")?,
            task_mm: task("mm")?,
            mm_map_count: self.offset_of("mm_struct", "map_count")?,
        })
    }

    /// The offsets the exec record follows through the new image's `mm_struct`, its maple
    /// tree and its VMAs.
    pub fn exec_offsets(&self) -> Result<ExecOffsets, BtfError> {
        let mm = |field| self.offset_of("mm_struct", field);
        let vma = |field| self.offset_of("vm_area_struct", field);
        Ok(ExecOffsets {
            valid: 1,
            task_mm: self.offset_of("task_struct", "mm")?,
            mm_map_count: mm("map_count")?,
            mm_start_brk: mm("start_brk")?,
            mm_brk: mm("brk")?,
            mm_start_stack: mm("start_stack")?,
            mm_arg_start: mm("arg_start")?,
            mm_arg_end: mm("arg_end")?,
            mm_tree_root: mm("mm_mt")? + self.offset_of("maple_tree", "ma_root")?,
            range64_slots: self.offset_of("maple_range_64", "slot")?,
            arange64_slots: self.offset_of("maple_arange_64", "slot")?,
            vma_start: vma("vm_start")?,
            vma_end: vma("vm_end")?,
            vma_mm: vma("vm_mm")?,
            vma_flags: vma("vm_flags")?,
            vma_pgoff: vma("vm_pgoff")?,
            vma_file: vma("vm_file")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct outer { int a; union { int b; struct { int c; int d; }; }; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0d\0";
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            words
                .iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        // 1: int
        push(&[name("int"), KIND_INT << 24, 4, 32]);
        // 2: struct { int c; int d; } (anonymous)
        push(&[0, (KIND_STRUCT << 24) | 2, 8]);
        push(&[name("c"), 1, 0]);
        push(&[name("d"), 1, 32]);
        // 3: union { int b; struct {...}; } (anonymous)
        push(&[0, (KIND_UNION << 24) | 2, 8]);
        push(&[name("b"), 1, 0]);
        push(&[0, 2, 0]);
        // 4: struct outer { int a; union {...}; }
        push(&[name("outer"), (KIND_STRUCT << 24) | 2, 12]);
        push(&[name("a"), 1, 0]);
        push(&[0, 3, 32]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn finds_fields_inside_anonymous_members() {
        let types = KernelTypes::parse(&sample()).unwrap();
        assert_eq!(types.offset_of("outer", "a"), Ok(0));
        assert_eq!(types.offset_of("outer", "b"), Ok(4));
        assert_eq!(types.offset_of("outer", "d"), Ok(8));
        assert_eq!(
            types.offset_of("outer", "zz"),
            Err(BtfError::MissingField("outer".into(), "zz".into()))
        );
        assert_eq!(
            types.offset_of("nope", "a"),
            Err(BtfError::MissingStruct("nope".into()))
        );
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(KernelTypes::parse(b"not btf at all, not at all").is_err());
    }

    #[test]
    fn resolves_the_running_kernels_file_offsets() {
        let offsets = KernelTypes::from_running_kernel()
            .unwrap()
            .file_offsets()
            .unwrap();
        assert_eq!(offsets.valid, 1);
        // Layouts that have not moved in years: the first fields of these structs.
        assert_eq!(offsets.fdtable_max_fds, 0);
        assert!(offsets.task_files > 0 && offsets.inode_ino > 0);
        // struct mount (fs/mount.h) holds its vfsmount after its hash link, parent and
        // mountpoint.
        assert!(offsets.mount_vfsmount >= 24 && offsets.mount_parent > 0);
        let stack = KernelTypes::from_running_kernel()
            .unwrap()
            .stack_offsets()
            .unwrap();
        // Both deep inside their structs (mm_struct's fields sit in an anonymous struct).
        assert!(stack.valid == 1 && stack.task_mm > 0 && stack.mm_start_stack > 0);
        let exec = KernelTypes::from_running_kernel()
            .unwrap()
            .exec_offsets()
            .unwrap();
        // vm_start is the first field of vm_area_struct; the mm's layout fields follow one
        // another.
        assert_eq!(exec.vma_start, 0);
        assert_eq!(exec.vma_end, 8);
        assert_eq!(exec.mm_arg_end, exec.mm_arg_start + 8);
        // A maple node: the parent pointer, the pivots, then the slots (16 and 10 of them
        // in the 256 bytes of a node).
        assert_eq!(exec.range64_slots, 8 + 15 * 8);
        assert_eq!(exec.arange64_slots, 8 + 9 * 8);
        let fork = KernelTypes::from_running_kernel()
            .unwrap()
            .fork_offsets()
            .unwrap();
        // `sibling` follows `children` (two list heads).
        assert_eq!(fork.task_sibling, fork.task_children + 16);
        let exit = KernelTypes::from_running_kernel()
            .unwrap()
            .exit_offsets()
            .unwrap();
        assert!(exit.mm_total_vm > 0 && exit.mm_stack_vm > exit.mm_total_vm);
    }
}
