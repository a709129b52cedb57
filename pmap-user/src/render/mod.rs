//! Text output of a mapping table. Renderers are pure: everything they print comes from their
//! arguments, so the same table renders identically whether it was just read from `/proc` or kept
//! current from events long after the process is gone.

pub mod diff;
pub mod digits;
pub mod events;
pub mod json;
pub mod output;
pub mod pmap;
pub mod sink;
pub mod smaps;

use crate::model::{MAPS_NAME_COLUMN, Mapping};
use digits::{dec_len, hex_len, push_dec, push_hex};

/// Length of the fixed columns of `mapping`'s maps line, including the space after the inode.
fn maps_fixed_len(mapping: &Mapping) -> usize {
    let hex8 = |v: u64| hex_len(v).max(8);
    let hex2 = |v: u32| hex_len(v.into()).max(2);
    hex8(mapping.start)
        + 1
        + hex8(mapping.end)
        + 6
        + hex8(mapping.offset)
        + 1
        + hex2(mapping.device.major)
        + 1
        + hex2(mapping.device.minor)
        + 1
        + dec_len(mapping.inode)
        + 1
}

/// Spaces the kernel puts between the fixed columns and a name. It pads only when there is a
/// name, then adds one more space: a line whose fixed part is already wider than the column
/// gets a second space after the inode's.
fn maps_name_pad(fixed_len: usize) -> usize {
    MAPS_NAME_COLUMN.saturating_sub(fixed_len) + 1
}

/// Length of `mapping`'s `/proc/PID/maps` line, newline included, without building it.
pub fn maps_line_len(mapping: &Mapping) -> usize {
    let fixed = maps_fixed_len(mapping);
    let name = if mapping.name.is_empty() {
        0
    } else {
        maps_name_pad(fixed) + mapping.name.len()
    };
    fixed + name + 1
}

/// Appends `mapping`'s line of `/proc/PID/maps`, newline included, byte for byte as the kernel
/// prints it.
pub fn push_maps_line(out: &mut Vec<u8>, mapping: &Mapping) {
    let line_start = out.len();
    let p = mapping.perms;
    let flag = |on: bool, c: u8| if on { c } else { b'-' };
    push_hex(out, mapping.start, 8);
    out.push(b'-');
    push_hex(out, mapping.end, 8);
    out.extend_from_slice(&[
        b' ',
        flag(p.read, b'r'),
        flag(p.write, b'w'),
        flag(p.exec, b'x'),
        if p.shared { b's' } else { b'p' },
        b' ',
    ]);
    push_hex(out, mapping.offset, 8);
    out.push(b' ');
    push_hex(out, mapping.device.major.into(), 2);
    out.push(b':');
    push_hex(out, mapping.device.minor.into(), 2);
    out.push(b' ');
    push_dec(out, mapping.inode, 0);
    out.push(b' ');
    if !mapping.name.is_empty() {
        let fixed_len = out.len() - line_start;
        out.resize(out.len() + maps_name_pad(fixed_len), b' ');
        out.extend_from_slice(&mapping.name);
    }
    out.push(b'\n');
}

/// The `/proc/PID/maps` line of `mapping`, as [`push_maps_line`] writes it.
pub fn maps_line(mapping: &Mapping) -> Vec<u8> {
    let mut line = Vec::with_capacity(maps_line_len(mapping));
    push_maps_line(&mut line, mapping);
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, Perms};

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
    fn the_length_is_that_of_the_line() {
        let names: [&[u8]; 3] = [b"", b"[heap]", b"/usr/lib/x86_64-linux-gnu/libc.so.6"];
        for (start, end, offset, dev, inode) in [
            (0x1000, 0x2000, 0, (0, 0), 0),
            (0x7f0000000000, 0x7f0000001000, 0x1234, (0xfe, 1), 247003),
            (
                0x10000000,
                0x100000000,
                0xffffffff,
                (0x100, 0xfffff),
                99999999,
            ),
            (
                u64::MAX - 0xfff,
                u64::MAX,
                u64::MAX,
                (u32::MAX, u32::MAX),
                u64::MAX,
            ),
        ] {
            for name in names {
                let m = mapping(start, end, "rw-p", offset, dev, inode, name);
                assert_eq!(maps_line_len(&m), maps_line(&m).len(), "{m:?}");
            }
        }
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
