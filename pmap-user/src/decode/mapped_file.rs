//! A file a mapping maps, as the kernel side identified it: by device, inode and the path (or
//! last component) it walked. A file-backed mmap's record and an exec image's record carry one.

use pmap_common::{FileIdentity, FilePath, file_path};

use crate::model::Device;

/// A mapped file as the kernel identified it at the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedFile {
    pub device: Device,
    pub inode: u64,
    /// Its path as `/proc/PID/maps` prints it (` (deleted)` included) when `whole_path`, else
    /// the last component of its path (or nothing).
    pub name: Vec<u8>,
    /// Whether the kernel's walk reached the root, so that `name` is the whole path.
    pub whole_path: bool,
}

/// The kernel's internal dev_t: 12 bits of major above 20 bits of minor.
fn device_of(dev: u32) -> Device {
    Device {
        major: dev >> 20,
        minor: dev & 0xf_ffff,
    }
}

impl MappedFile {
    /// A file of a fresh image, by its last path component.
    pub(crate) fn from_record(identity: &FileIdentity) -> Option<MappedFile> {
        if identity.ino == 0 {
            return None;
        }
        let len = identity
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(identity.name.len());
        Some(MappedFile {
            device: device_of(identity.dev),
            inode: identity.ino,
            name: identity.name[..len].to_vec(),
            whole_path: false,
        })
    }

    /// The file a file-backed mmap mapped, by the path the kernel walked.
    pub(super) fn from_path(identity: &FilePath) -> Option<MappedFile> {
        if identity.ino == 0 {
            return None;
        }
        let written = &identity.path[..(identity.path_len as usize).min(identity.path.len())];
        // Last component first, each NUL-terminated.
        let components: Vec<&[u8]> = written
            .split(|&b| b == 0)
            .filter(|c| !c.is_empty())
            .collect();
        let whole_path = identity.path_flags & file_path::COMPLETE != 0;
        let name = if whole_path {
            let mut path = Vec::with_capacity(written.len() + 11);
            for component in components.iter().rev() {
                path.push(b'/');
                path.extend_from_slice(component);
            }
            if path.is_empty() {
                path.push(b'/');
            }
            if identity.path_flags & file_path::DELETED != 0 {
                path.extend_from_slice(b" (deleted)");
            }
            path
        } else {
            components.first().map_or(Vec::new(), |leaf| leaf.to_vec())
        };
        Some(MappedFile {
            device: device_of(identity.dev),
            inode: identity.ino,
            name,
            whole_path,
        })
    }
}
