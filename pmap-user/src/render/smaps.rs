//! What `/proc/PID/smaps` adds to a mapping, as `-x`, `-X` and `-XX` print it: the `Key: value`
//! lines under it. Only the kernel knows them, so they are read at dump time (by the smaps reader
//! of `procfs`) and joined here to the table's mappings by address range. A
//! mapping the kernel has no lines for (the process has exited, or the table and the kernel
//! disagree about where it starts and ends) gets lines with what is known without the kernel:
//! its size, the page sizes, the flags its permissions imply, and zero for every other value.

use std::borrow::Borrow;

use crate::model::{Mapping, SmapsEntry, SmapsLayout};

/// Keys holding the page sizes, 4 kB for ordinary memory, when synthesizing.
const PAGE_SIZE_KEYS: [&[u8]; 2] = [b"KernelPageSize", b"MMUPageSize"];

/// Lines for a mapping the kernel has none for: its size, 4 kB pages, the flags its permissions
/// imply, 0 for the rest; formatted as the kernel formats them, in `layout`.
pub fn synthesize(layout: &SmapsLayout, mapping: &Mapping) -> Vec<u8> {
    let mut text = Vec::new();
    for (key, kb) in layout.keys() {
        let value = if key == b"Size" {
            mapping.end.wrapping_sub(mapping.start) >> 10
        } else if PAGE_SIZE_KEYS.contains(&key) {
            4
        } else {
            0
        };
        let mut label = key.to_vec();
        label.push(b':');
        text.extend_from_slice(&label);
        // The kernel pads the key to 16 columns and the number to 8.
        let number = value.to_string();
        let pad = 16usize.saturating_sub(label.len()) + 8usize.saturating_sub(number.len());
        text.resize(text.len() + pad, b' ');
        text.extend_from_slice(number.as_bytes());
        if kb {
            text.extend_from_slice(b" kB");
        }
        text.push(b'\n');
    }
    text.extend_from_slice(b"VmFlags:");
    for flag in implied_flags(mapping) {
        text.push(b' ');
        text.extend_from_slice(flag.as_bytes());
    }
    text.extend_from_slice(b" \n");
    text
}

/// The `VmFlags` a mapping's permissions imply, in the kernel's order: what it may be made
/// (`mr`, `mw`, `me`, `ms`) is what mmap grants unless the file's open mode forbids it, which
/// only the kernel knew.
fn implied_flags(mapping: &Mapping) -> Vec<&'static str> {
    let p = mapping.perms;
    let mut flags = Vec::new();
    let mut add = |on: bool, flag| {
        if on {
            flags.push(flag);
        }
    };
    add(p.read, "rd");
    add(p.write, "wr");
    add(p.exec, "ex");
    add(p.shared && p.write, "sh");
    add(true, "mr");
    add(!p.shared || p.write, "mw");
    add(!p.shared || p.exec, "me");
    add(p.shared, "ms");
    flags
}

/// The text pmap reads from `/proc/PID/smaps` for `mappings`, one chunk per mapping (its maps
/// line and the lines under it) with the mapping's index, made as it is read so that the text
/// of every mapping never exists at once. `entries` (in address order, as the kernel prints
/// them, and read as far as the mappings need) give the lines of the mappings they match
/// exactly; any other mapping gets lines made from what the table knows.
pub fn smaps_text<'a, I>(
    mappings: &'a [Mapping],
    entries: I,
    layout: &'a SmapsLayout,
) -> SmapsText<'a, I>
where
    I: Iterator,
    I::Item: Borrow<SmapsEntry>,
{
    SmapsText {
        mappings: mappings.iter().enumerate(),
        entries: entries.peekable(),
        layout,
    }
}

/// See [`smaps_text`]: the mappings and the entries are walked together in address order.
pub struct SmapsText<'a, I: Iterator> {
    mappings: std::iter::Enumerate<std::slice::Iter<'a, Mapping>>,
    entries: std::iter::Peekable<I>,
    layout: &'a SmapsLayout,
}

/// `-X` reads the text twice, from the start each time.
impl<I> Clone for SmapsText<'_, I>
where
    I: Iterator + Clone,
    I::Item: Clone,
{
    fn clone(&self) -> Self {
        SmapsText {
            mappings: self.mappings.clone(),
            entries: self.entries.clone(),
            layout: self.layout,
        }
    }
}

impl<I> Iterator for SmapsText<'_, I>
where
    I: Iterator,
    I::Item: Borrow<SmapsEntry>,
{
    type Item = (usize, Vec<u8>);

    fn next(&mut self) -> Option<(usize, Vec<u8>)> {
        let (index, mapping) = self.mappings.next()?;
        let mut text = super::maps_line(mapping);
        // Entries below this mapping match no mapping: the table and the kernel split there.
        while self
            .entries
            .next_if(|e| e.borrow().start < mapping.start)
            .is_some()
        {}
        let exact = |e: &I::Item| {
            let e = e.borrow();
            (e.start, e.end) == (mapping.start, mapping.end)
        };
        match self.entries.next_if(exact) {
            Some(entry) => text.extend_from_slice(&entry.borrow().details),
            None => text.extend(synthesize(self.layout, mapping)),
        }
        Some((index, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, Perms};

    const DETAILS: &[u8] = b"Size:                132 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                  16 kB\n\
Private_Dirty:        16 kB\n\
Swap:                  0 kB\n\
THPeligible:           0\n\
ProtectionKey:         0\n\
VmFlags: rd wr mr mw me gd ac \n";

    fn anon(start: u64, end: u64, perms: Perms) -> Mapping {
        Mapping {
            start,
            end,
            perms,
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: Vec::new(),
        }
    }

    const RW: Perms = Perms {
        read: true,
        write: true,
        exec: false,
        shared: false,
    };

    #[test]
    fn values_are_read_by_key() {
        let entry = SmapsEntry {
            start: 0,
            end: 0x21000,
            details: DETAILS.to_vec(),
        };
        assert_eq!(entry.value("Rss"), Some(16));
        assert_eq!(entry.value("THPeligible"), Some(0));
        assert_eq!(entry.value("Pss"), None);
        assert_eq!(entry.value("VmFlags"), None);
    }

    #[test]
    fn synthesized_lines_follow_the_kernel_layout() {
        let layout = SmapsLayout::from_details(DETAILS);
        let text = synthesize(&layout, &anon(0x1000, 0x1000 + (1 << 40), RW));
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "Size:           1073741824 kB\n\
             KernelPageSize:        4 kB\n\
             MMUPageSize:           4 kB\n\
             Rss:                   0 kB\n\
             Private_Dirty:         0 kB\n\
             Swap:                  0 kB\n\
             THPeligible:           0\n\
             ProtectionKey:         0\n\
             VmFlags: rd wr mr mw me \n"
        );
    }

    #[test]
    fn implied_flags_follow_the_permissions() {
        let shared_ro = Perms {
            read: true,
            write: false,
            exec: false,
            shared: true,
        };
        assert_eq!(implied_flags(&anon(0, 1, shared_ro)), ["rd", "mr", "ms"]);
        let none = Perms {
            read: false,
            write: false,
            exec: false,
            shared: false,
        };
        assert_eq!(implied_flags(&anon(0, 1, none)), ["mr", "mw", "me"]);
    }

    #[test]
    fn entries_join_by_exact_range() {
        let mappings = [anon(0x1000, 0x3000, RW), anon(0x3000, 0x4000, RW)];
        let entries = [
            SmapsEntry {
                start: 0x1000,
                end: 0x3000,
                details: b"Rss:  8 kB\n".to_vec(),
            },
            // The kernel split this one: the table's mapping has no exact match.
            SmapsEntry {
                start: 0x3000,
                end: 0x3800,
                details: b"Rss:  2 kB\n".to_vec(),
            },
        ];
        let layout = SmapsLayout::default();
        let text: Vec<_> = smaps_text(&mappings, entries.iter(), &layout).collect();
        assert!(text[0].1.ends_with(b"00:00 0 \nRss:  8 kB\n"));
        assert!(text[1].1.ends_with(b"VmFlags: rd wr mr mw me \n"));
        assert_eq!(text[1].0, 1);
    }
}
