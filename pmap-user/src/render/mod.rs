//! Text output of a mapping table. Renderers are pure: everything they print comes from their
//! arguments, so the same table renders identically whether it was just read from `/proc` or kept
//! current from events long after the process is gone.

pub mod diff;
pub mod events;
pub mod json;
pub mod pmap;
pub mod smaps;

use std::io::{self, Write};

use crate::table::Mapping;

/// What the kernel pads the fixed columns of a `/proc/PID/maps` line to before the path column
/// (`25 + sizeof(void *) * 6 - 1` in `show_vma_header_prefix`).
pub(crate) const MAPS_NAME_COLUMN: usize = 72;

/// Writes `mapping` as its line of `/proc/PID/maps`, newline included, byte for byte as the
/// kernel prints it.
pub fn write_maps_line(out: &mut impl Write, mapping: &Mapping) -> io::Result<()> {
    let p = mapping.perms;
    let flag = |on: bool, c: char| if on { c } else { '-' };
    let fixed = format!(
        "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {} ",
        mapping.start,
        mapping.end,
        flag(p.read, 'r'),
        flag(p.write, 'w'),
        flag(p.exec, 'x'),
        if p.shared { 's' } else { 'p' },
        mapping.offset,
        mapping.device.major,
        mapping.device.minor,
        mapping.inode,
    );
    out.write_all(fixed.as_bytes())?;
    if !mapping.name.is_empty() {
        // The kernel pads only when there is a name, then adds one more space: a line whose fixed
        // part is already wider than the column gets a second space after the inode's.
        let pad = MAPS_NAME_COLUMN.saturating_sub(fixed.len()) + 1;
        out.write_all(&b" ".repeat(pad))?;
        out.write_all(&mapping.name)?;
    }
    out.write_all(b"\n")
}

/// The `/proc/PID/maps` line of `mapping`, as [`write_maps_line`] writes it.
pub fn maps_line(mapping: &Mapping) -> Vec<u8> {
    let mut line = Vec::with_capacity(MAPS_NAME_COLUMN + 1 + mapping.name.len() + 1);
    write_maps_line(&mut line, mapping).expect("writing to a Vec cannot fail");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Device, Perms};

    fn mapping(
        start: u64,
        end: u64,
        perms: &str,
        offset: u64,
        dev: (u32, u32),
        inode: u64,
        name: &[u8],
    ) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms::parse(perms.as_bytes()).expect("a maps permission word"),
            offset,
            device: Device {
                major: dev.0,
                minor: dev.1,
            },
            inode,
            name: name.to_vec(),
        }
    }

    #[test]
    fn file_line_is_padded_to_the_name_column() {
        let m = mapping(
            0x55b32b6bd000,
            0x55b32b6ec000,
            "r--p",
            0,
            (0xfe, 0),
            247003,
            b"/usr/bin/bash",
        );
        assert_eq!(
            String::from_utf8(maps_line(&m)).unwrap(),
            "55b32b6bd000-55b32b6ec000 r--p 00000000 fe:00 247003                     /usr/bin/bash\n"
        );
    }

    #[test]
    fn anonymous_line_ends_after_the_inode_and_its_space() {
        let m = mapping(0x7ff71f67a000, 0x7ff71f73e000, "rw-p", 0, (0, 0), 0, b"");
        assert_eq!(
            maps_line(&m),
            b"7ff71f67a000-7ff71f73e000 rw-p 00000000 00:00 0 \n"
        );
    }

    #[test]
    fn narrow_addresses_are_zero_padded_to_eight_digits() {
        let m = mapping(0x1000, 0x2000, "--xs", 0x1000, (3, 0x12345), 7, b"[x]");
        let line = String::from_utf8(maps_line(&m)).unwrap();
        assert!(
            line.starts_with("00001000-00002000 --xs 00001000 03:12345 7 "),
            "{line:?}"
        );
        assert_eq!(line.find("[x]"), Some(73));
    }

    #[test]
    fn wide_fixed_part_gets_one_more_space_before_the_name() {
        let m = mapping(
            0xffffffffff600000,
            0xffffffffff601000,
            "rw-s",
            0xffffffff00000000,
            (0xfff, 0xfffff),
            u64::MAX,
            b"/a b",
        );
        assert_eq!(
            maps_line(&m),
            b"ffffffffff600000-ffffffffff601000 rw-s ffffffff00000000 fff:fffff 18446744073709551615  /a b\n"
        );
    }
}
