//! `/proc/PID/maps`: the mappings a table is seeded from and compared with.
//!
//! It is parsed here rather than through `procfs::process::MemoryMaps`, which reads lines as
//! UTF-8 (failing on any other file name) and trims the path column; the path column must reach
//! the table byte for byte.

use super::{SeedError, open, read_all};
use crate::model::{Device, MAPS_NAME_COLUMN, Mapping, Perms};

/// The process's mappings, one per line of `/proc/PID/maps`, in address order.
pub fn read_mappings(pid: i32) -> Result<Vec<Mapping>, SeedError> {
    let process = open(pid)?;
    let text = read_all(&process, pid, "maps", None)?;
    parse_maps(&text).map_err(|detail| SeedError::Malformed {
        pid,
        file: "maps",
        detail,
    })
}

/// The device minor number of SysV shared memory segments, found as pmap finds it: by attaching a
/// private segment and reading its line of `/proc/self/maps`. pmap names mappings on that device
/// `[ shmid=0x… ]`. `None` when SysV IPC is unavailable.
pub fn discover_shm_minor() -> Option<u32> {
    // SAFETY: plain SysV IPC calls; the segment is private, attached read-only, and detached and
    // removed below whatever happens in between.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 42, libc::IPC_CREAT | 0o600) };
    if id == -1 {
        return None;
    }
    // SAFETY: as above; a null address lets the kernel choose.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    let minor = if addr as isize == -1 {
        None
    } else {
        let found = std::fs::read("/proc/self/maps")
            .ok()
            .and_then(|text| parse_maps(&text).ok())
            .and_then(|maps| {
                maps.into_iter()
                    .find(|m| {
                        m.start == addr as u64
                            && m.device.major == 0
                            && m.perms.shared
                            && m.name.windows(5).any(|w| w == b"/SYSV")
                    })
                    .map(|m| m.device.minor)
            });
        // SAFETY: `addr` was returned by `shmat` above and is not used after this.
        unsafe { libc::shmdt(addr) };
        found
    };
    // SAFETY: removes the segment created above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    minor
}

/// Parses the text of a `/proc/PID/maps` file.
fn parse_maps(text: &[u8]) -> Result<Vec<Mapping>, String> {
    text.split_inclusive(|&b| b == b'\n')
        .map(|line| {
            parse_maps_line(line)
                .ok_or_else(|| format!("bad line {:?}", String::from_utf8_lossy(line)))
        })
        .collect()
}

/// One line: `start-end perms offset major:minor inode ` then, for a named mapping, padding to
/// the name column, a space and the name up to the newline (which the kernel escapes inside
/// names, so the name needs no unescaping).
pub(super) fn parse_maps_line(line: &[u8]) -> Option<Mapping> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let device = fields.next()?;
    let inode = fields.next()?;
    let rest = fields.next()?;
    let fixed_len = line.len() - rest.len();

    let dash = range.iter().position(|&b| b == b'-')?;
    let colon = device.iter().position(|&b| b == b':')?;
    let mapping_perms = Perms::parse(perms)?;
    let name = if rest.is_empty() {
        Vec::new()
    } else {
        let pad = MAPS_NAME_COLUMN.saturating_sub(fixed_len) + 1;
        let (spaces, name) = (rest.get(..pad)?, rest.get(pad..)?);
        if spaces.iter().any(|&b| b != b' ') || name.is_empty() {
            return None;
        }
        name.to_vec()
    };
    Some(Mapping {
        start: hex(&range[..dash])?,
        end: hex(&range[dash + 1..])?,
        perms: mapping_perms,
        offset: hex(offset)?,
        device: Device {
            major: hex(&device[..colon])? as u32,
            minor: hex(&device[colon + 1..])? as u32,
        },
        inode: std::str::from_utf8(inode).ok()?.parse().ok()?,
        name,
    })
}

fn hex(digits: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        procfs::fixtures::{TempDir, line_diff, long_files, mapper, odd_files},
        render::maps_line,
    };

    fn render_maps(mappings: &[Mapping]) -> Vec<u8> {
        mappings.iter().flat_map(maps_line).collect()
    }

    /// Reads `pid`'s maps both ways until they agree or `/proc` holds still while they do not.
    fn assert_round_trip(pid: i32) {
        let mut last = None;
        for _ in 0..20 {
            let before = std::fs::read(format!("/proc/{pid}/maps")).unwrap();
            let parsed = read_mappings(pid).unwrap();
            let after = std::fs::read(format!("/proc/{pid}/maps")).unwrap();
            let rendered = render_maps(&parsed);
            if rendered == before {
                return;
            }
            if before == after {
                last = Some((before, rendered));
            }
        }
        let (want, got) = last.expect("/proc/PID/maps never held still");
        panic!(
            "read_mappings({pid}) does not reproduce /proc/{pid}/maps\n{}",
            line_diff(&want, &got)
        );
    }

    #[test]
    fn own_maps_round_trip() {
        assert_round_trip(std::process::id() as i32);
    }

    #[test]
    fn odd_file_names_round_trip() {
        let dir = TempDir::new("seed-odd");
        let child = mapper(b"python3", &[], &odd_files(dir.path()));
        let maps = std::fs::read(format!("/proc/{}/maps", child.pid())).unwrap();
        for needle in [
            &b"new\\012line"[..],
            b"tab\there",
            b"gone deleted.bin (deleted)",
            b"\xff\xfe",
            b"/SYSV00000000 (deleted)",
        ] {
            assert!(
                maps.windows(needle.len()).any(|w| w == needle),
                "{needle:?} not in maps"
            );
        }
        assert_round_trip(child.pid());
    }

    #[test]
    fn long_paths_round_trip() {
        let dir = TempDir::new("seed-long");
        let child = mapper(b"python3", &[], &long_files(dir.path(), 1));
        assert_round_trip(child.pid());
    }

    #[test]
    fn parses_every_kind_of_name() {
        let text: &[u8] = b"55b32b6bd000-55b32b6ec000 r--p 00000000 fe:00 247003                     /usr/bin/bash\n\
7ff71f67a000-7ff71f73e000 rw-p 00000000 00:00 0 \n\
7f17c9815000-7f17c9817000 rw-s 00000000 00:01 7                          /SYSV00000000 (deleted)\n\
7f17c998b000-7f17c998d000 rw-p 00001000 fe:00 10010971                   /tmp/d/nl\\012name\n\
7f17c9a04000-7f17c9a06000 rw-p 00000000 fe:00 10010970                   /tmp/d/tab\there\n\
7f17ca6a8000-7f17ca6aa000 r--p 00000000 00:00 0                          [vvar_vclock]\n\
7f17ca6aa000-7f17ca6ab000 rw-p 00000000 00:00 0                          [anon:my name]\n\
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
        let maps = parse_maps(text).unwrap();
        let names: Vec<&[u8]> = maps.iter().map(|m| &m.name[..]).collect();
        assert_eq!(
            names,
            [
                &b"/usr/bin/bash"[..],
                b"",
                b"/SYSV00000000 (deleted)",
                b"/tmp/d/nl\\012name",
                b"/tmp/d/tab\there",
                b"[vvar_vclock]",
                b"[anon:my name]",
                b"[vsyscall]",
            ]
        );
        assert_eq!(maps[3].offset, 0x1000);
        assert_eq!(
            maps[3].device,
            Device {
                major: 0xfe,
                minor: 0
            }
        );
        assert_eq!(maps[3].inode, 10010971);
        assert!(maps[2].perms.shared && maps[2].perms.write && !maps[2].perms.exec);
        assert!(maps[7].perms.exec && !maps[7].perms.read);
        assert_eq!(render_maps(&maps), text);
    }

    #[test]
    fn parses_a_line_too_wide_to_pad() {
        let line: &[u8] = b"ffffffffff600000-ffffffffff601000 rw-s ffffffff00000000 fff:fffff 18446744073709551615  /a b\n";
        let maps = parse_maps(line).unwrap();
        assert_eq!(maps[0].name, b"/a b");
        assert_eq!(maps[0].inode, u64::MAX);
        assert_eq!(render_maps(&maps), line);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            &b"1000-2000 rw-q 00000000 00:00 0 \n"[..],
            b"1000-2000 rw-p 00000000 00:00 0\n",
            b"1000-2000 rw-p 00000000 00:00 0 x\n",
            b"1000 rw-p 00000000 00:00 0 \n",
        ] {
            assert!(
                parse_maps(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn shm_minor_is_found() {
        // SysV shared memory lives on the internal shm mount: an anonymous device, major 0.
        assert!(discover_shm_minor().is_some());
    }
}
