//! pmap's `print_extended_maps`: `-X` and `-XX`, a table of `/proc/PID/smaps` as pmap prints it.
//!
//! pmap reads smaps twice: a first pass measures the columns and sums the totals, a second
//! prints. The columns are whatever `Key: number` lines the kernel prints under the first mapping
//! (`-X` leaves out a fixed few), and they are kept for every further process of the same run,
//! with their widths; a process's totals are its own (pmap 4.0.2 kept adding them up across
//! processes; fixed upstream in 2023). `-A` limits the rows and totals to the range (pmap 4.0.2
//! ignored it here; fixed upstream in 2025), while the widths are measured over every mapping.

use super::{
    PmapFormat, PmapOptions, SmapsRow,
    scan::{Input, LineBuffer, fgets_records, hex_value, justify_print, pad_left},
};

/// Fields `-X` does not show (pmap's `is_unimportant`); `-XX` shows everything.
const UNIMPORTANT: &[&[u8]] = &[
    b"AnonHugePages",
    b"KernelPageSize",
    b"MMUPageSize",
    b"Shared_Dirty",
    b"Private_Dirty",
    b"Shared_Clean",
    b"Private_Clean",
    b"VmFlags",
];

/// One column of smaps values: pmap's `struct listnode`.
struct Column {
    description: Vec<u8>,
    /// The value of the mapping being read, as printed.
    value: Vec<u8>,
    total: u64,
    max_width: usize,
}

/// What one pmap run keeps from one process to the next: the columns and their widths.
#[derive(Default)]
pub struct SmapsColumns {
    columns: Vec<Column>,
}

/// A mapping's header line as `sscanf(…, "%20[0-9a-f]-%20[0-9a-f] %31s %20[0-9a-f]
/// %63[0-9a-f:] %20s %127[^\n]")` splits it; `None` when fewer than six fields convert.
struct Header<'a> {
    start: &'a [u8],
    end: &'a [u8],
    perms: &'a [u8],
    offset: &'a [u8],
    device: &'a [u8],
    inode: &'a [u8],
    /// At most 127 bytes of the path column.
    description: &'a [u8],
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

impl<'a> Header<'a> {
    fn scan(line: &'a [u8]) -> Option<Header<'a>> {
        let mut input = Input(line);
        let start = input.set(20, is_lower_hex)?;
        input.literal(b'-')?;
        let end = input.set(20, is_lower_hex)?;
        let perms = input.word(31)?;
        input.skip_space();
        let offset = input.set(20, is_lower_hex)?;
        input.skip_space();
        let device = input.set(63, |b| is_lower_hex(b) || b == b':')?;
        let inode = input.word(20)?;
        input.skip_space();
        let description = input.set(127, |b| b != b'\n').unwrap_or_default();
        Some(Header {
            start,
            end,
            perms,
            offset,
            device,
            inode,
            description,
        })
    }
}

/// `sscanf(line, "%31[^:]: %20[0-9] kB %c", …) == 2`: a `Key: number` line, with or without a
/// unit (`THPeligible:    0` counts too).
fn scan_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut input = Input(line);
    let key = input.set(31, |b| b != b':')?;
    input.literal(b':')?;
    input.skip_space();
    let value = input.set(20, |b| b.is_ascii_digit())?;
    input.skip_space();
    // A third conversion would make the count 3, which pmap does not take for a value line.
    let third = input
        .literals(b"kB")
        .and_then(|()| {
            input.skip_space();
            input.byte()
        })
        .is_some();
    (!third).then_some((key, value))
}

/// `sscanf(line, "VmFlags: %127[a-z ]", flags) == 1`.
fn scan_flags(line: &[u8]) -> Option<&[u8]> {
    let mut input = Input(line);
    input.literals(b"VmFlags:")?;
    input.skip_space();
    input.set(127, |b| b.is_ascii_lowercase() || b == b' ')
}

/// `fgets` over the records of a whole smaps text, which pmap reads twice. The text comes one
/// mapping at a time from `texts`, made again for the second reading.
struct Reader<I> {
    texts: I,
    unread: I,
    /// The mapping being read, its text and how much of it was read.
    mapping: usize,
    text: Vec<u8>,
    read: usize,
}

impl<I: Iterator<Item = (usize, Vec<u8>)> + Clone> Reader<I> {
    fn new(texts: I) -> Reader<I> {
        Reader {
            unread: texts.clone(),
            texts,
            mapping: 0,
            text: Vec::new(),
            read: 0,
        }
    }

    /// Reads the next record into `buf`; returns the index of the mapping it belongs to.
    fn fgets(&mut self, buf: &mut LineBuffer) -> Option<usize> {
        while self.read == self.text.len() {
            (self.mapping, self.text) = self.unread.next()?;
            self.read = 0;
        }
        let record = fgets_records(&self.text[self.read..])
            .next()
            .expect("unread text holds a record");
        self.read += record.len();
        buf.load(record);
        Some(self.mapping)
    }

    /// Back to the start, for the second reading.
    fn rewind(&mut self) {
        self.unread = self.texts.clone();
        self.text.clear();
        self.read = 0;
    }
}

/// Number of decimal digits of `n` (pmap's `integer_width`).
fn integer_width(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |digits| digits as usize + 1)
}

impl SmapsColumns {
    /// Replays pmap on `texts` (each mapping's smaps header line and the lines under it, with
    /// the mapping's index). Returns the text printed after the `PID:` line and the rows.
    pub(super) fn print(
        &mut self,
        texts: impl Iterator<Item = (usize, Vec<u8>)> + Clone,
        opts: &PmapOptions,
    ) -> (Vec<u8>, Vec<SmapsRow>) {
        let all = opts.format == PmapFormat::AllSmaps;
        let enabled = |key: &[u8]| all || !UNIMPORTANT.contains(&key);
        let mut reader = Reader::new(texts);
        let mut text = Vec::new();
        let mut rows = Vec::new();
        let mut buf = LineBuffer::new();
        // Address, Perm, Offset, Device, Inode, VmFlags.
        let mut widths = [0usize; 6];
        let mut measuring = true;
        let mut first_row = false;
        let mut has_flags = false;
        let mut flags = Vec::new();

        let mut ret = reader.fgets(&mut buf);
        while let Some(mapping) = ret {
            let Some(header) = Header::scan(buf.line()) else {
                // pmap stops with "Unknown format in smaps file!"; the kernel never prints one.
                break;
            };
            let (start, end) = (header.start.to_vec(), header.end.to_vec());
            let fixed = [
                start.clone(),
                header.perms.to_vec(),
                header.offset.to_vec(),
                header.device.to_vec(),
                header.inode.to_vec(),
            ];
            let description = header.description.to_vec();
            // The rest of a line too long for the buffer is skipped.
            while buf.line().last() != Some(&b'\n') {
                if reader.fgets(&mut buf).is_none() {
                    break;
                }
            }
            let (start_n, end_n) = (hex_value(&start), hex_value(&end));
            let in_range = end_n.wrapping_sub(1) >= opts.range.low && opts.range.high >= start_n;
            for (width, field) in widths.iter_mut().zip(&fixed) {
                *width = (*width).max(field.len());
            }

            ret = reader.fgets(&mut buf);
            let mut column = 0;
            while ret.is_some() {
                let Some((key, value)) = scan_value(buf.line()) else {
                    break;
                };
                if enabled(key) {
                    if column == self.columns.len() {
                        if !measuring {
                            // pmap asserts here: a mapping has more values than the first.
                            return (text, rows);
                        }
                        self.columns.push(Column {
                            description: key.to_vec(),
                            value: Vec::new(),
                            total: 0,
                            max_width: if opts.quiet { 0 } else { key.len() },
                        });
                    } else if self.columns[column].description != key {
                        // pmap stops: "inconsistent detail field in smaps file".
                        return (text, rows);
                    }
                    let c = &mut self.columns[column];
                    c.value = value.to_vec();
                    if measuring && in_range {
                        c.total = c.total.wrapping_add(decimal(value));
                        if opts.quiet {
                            c.max_width = c.max_width.max(value.len());
                        }
                    }
                    column += 1;
                }
                ret = reader.fgets(&mut buf);
            }
            if ret.is_some()
                && let Some(scanned) = scan_flags(buf.line())
            {
                flags = scanned.strip_suffix(b" ").unwrap_or(scanned).to_vec();
                widths[5] = widths[5].max(flags.len());
                has_flags = true;
                ret = reader.fgets(&mut buf);
            }

            if measuring {
                if ret.is_none() {
                    // Second pass: print with the widths now known.
                    measuring = false;
                    first_row = true;
                    reader.rewind();
                    ret = reader.fgets(&mut buf);
                    if !opts.quiet {
                        for c in &mut self.columns {
                            c.max_width = c.max_width.max(integer_width(c.total));
                        }
                    }
                }
                continue;
            }
            if first_row && !opts.quiet {
                self.write_headings(&mut text, &mut widths, has_flags && all);
            }
            first_row = false;
            if !in_range {
                continue;
            }
            for (i, (field, width)) in fixed.iter().zip(widths).enumerate() {
                if i > 0 {
                    text.push(b' ');
                }
                pad_left(&mut text, field, width);
            }
            for c in &self.columns {
                text.push(b' ');
                pad_left(&mut text, &c.value, c.max_width);
            }
            if has_flags && all {
                text.push(b' ');
                pad_left(&mut text, &flags, widths[5]);
            }
            let name = match (opts.show_path, description.iter().rposition(|&b| b == b'/')) {
                (false, Some(slash)) => &description[slash + 1..],
                _ => &description[..],
            };
            text.push(b' ');
            text.extend_from_slice(name);
            text.push(b'\n');
            rows.push(SmapsRow {
                mapping,
                start: start_n,
                perms: fixed[1].clone(),
                offset: hex_value(&fixed[2]),
                device: fixed[3].clone(),
                inode: decimal(&fixed[4]),
                values: self
                    .columns
                    .iter()
                    .map(|c| (c.description.clone(), decimal(&c.value)))
                    .collect(),
                flags: (has_flags && all).then(|| flags.clone()),
                name: name.to_vec(),
            });
        }
        if !opts.quiet && !self.columns.is_empty() {
            self.write_footer(&mut text, &widths);
        }
        (text, rows)
    }

    fn write_headings(&self, text: &mut Vec<u8>, widths: &mut [usize; 6], flags: bool) {
        for (heading, width) in ["Address", "Perm", "Offset", "Device", "Inode"]
            .iter()
            .zip(widths.iter_mut())
        {
            *width = justify_print(text, heading.as_bytes(), *width, true);
        }
        for c in &self.columns {
            justify_print(text, &c.description, c.max_width, true);
        }
        if flags {
            widths[5] = justify_print(text, b"VmFlags", widths[5], true);
        }
        justify_print(text, b"Mapping", 0, false);
    }

    fn write_footer(&mut self, text: &mut Vec<u8>, widths: &[usize; 6]) {
        let gap: usize = widths[..5].iter().map(|w| w + 1).sum();
        text.resize(text.len() + gap, b' ');
        for c in &self.columns {
            text.resize(text.len() + c.max_width, b'=');
            text.push(b' ');
        }
        text.push(b'\n');
        text.resize(text.len() + gap, b' ');
        for c in &mut self.columns {
            pad_left(text, c.total.to_string().as_bytes(), c.max_width);
            text.push(b' ');
            c.total = 0;
        }
        text.extend_from_slice(b"KB \n");
    }
}

/// `sscanf(digits, "%lu")` of at most 20 digits: `ULONG_MAX` when it overflows.
fn decimal(digits: &[u8]) -> u64 {
    let mut input = Input(digits);
    input.number(10).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::{AddressRange, PmapRun, ProcessView};
    use super::*;
    use crate::model::{Device, Mapping, Perms, SmapsEntry, SmapsLayout};

    fn mapping(start: u64, end: u64, name: &[u8]) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms {
                read: true,
                write: !name.is_empty(),
                exec: false,
                shared: false,
            },
            offset: 0,
            device: Device { major: 8, minor: 1 },
            inode: if name.is_empty() { 0 } else { 1234 },
            name: name.to_vec(),
        }
    }

    fn entry(m: &Mapping, rss: u64) -> SmapsEntry {
        let details = format!(
            "Size:           {:>8} kB\nRss:            {rss:>8} kB\nPss:            {rss:>8} kB\n\
             Private_Dirty:  {rss:>8} kB\nTHPeligible:           1\nVmFlags: rd mr mw me \n",
            (m.end - m.start) >> 10
        );
        SmapsEntry {
            start: m.start,
            end: m.end,
            details: details.into_bytes(),
        }
    }

    fn render(format: PmapFormat, quiet: bool, range: AddressRange, long: usize) -> String {
        let mut path = b"/d/".to_vec();
        path.extend(std::iter::repeat_n(b'p', long));
        path.extend_from_slice(b"/file");
        let maps = [
            mapping(0x1000, 0x3000, &path),
            mapping(0x10000, 0x11000, b""),
        ];
        let smaps: Vec<SmapsEntry> = maps
            .iter()
            .zip([8, 12345])
            .map(|(m, r)| entry(m, r))
            .collect();
        let view = ProcessView {
            pid: 7,
            header: b"cmd",
            start_stack: 0,
            sysv_shm_minor: None,
            mappings: &maps,
        };
        let opts = PmapOptions {
            format,
            quiet,
            show_path: false,
            range,
        };
        let layout = SmapsLayout::default();
        let mut run = PmapRun::new(opts, &layout);
        let first = run.process(&view, &smaps).text;
        // The second process of the run keeps the columns' widths, not their totals.
        let small = [mapping(0x1000, 0x2000, b"")];
        let second = run.process(
            &ProcessView {
                mappings: &small,
                ..view
            },
            &[entry(&small[0], 4)],
        );
        String::from_utf8([first, second.text].concat()).unwrap()
    }

    #[test]
    fn smaps_columns_widths_and_totals() {
        // The kernel prints addresses with at least 8 digits; pmap right-justifies every column
        // to its widest value or heading, and the totals under "=" rules.
        assert_eq!(
            render(PmapFormat::Smaps, false, AddressRange::default(), 1),
            "7:   cmd\n \
             Address Perm   Offset Device Inode Size   Rss   Pss THPeligible Mapping\n\
             00001000 rw-p 00000000  08:01  1234    8     8     8           1 file\n\
             00010000 r--p 00000000  08:01     0    4 12345 12345           1 \n                                    \
             ==== ===== ===== =========== \n                                      \
             12 12353 12353           2 KB \n\
             7:   cmd\n \
             Address Perm   Offset Device Inode Size   Rss   Pss THPeligible Mapping\n\
             00001000 r--p 00000000  08:01     0    4     4     4           1 \n                                    \
             ==== ===== ===== =========== \n                                       \
             4     4     4           1 KB \n"
        );
    }

    #[test]
    fn all_smaps_add_the_hidden_values_and_flags_and_quiet_measures_values_only() {
        // With -q the fixed columns are as wide as this process's values, the smaps columns as
        // the widest value of the whole run.
        assert_eq!(
            render(PmapFormat::AllSmaps, true, AddressRange::default(), 1),
            "7:   cmd\n\
             00001000 rw-p 00000000 08:01 1234 8     8     8     8 1 rd mr mw me file\n\
             00010000 r--p 00000000 08:01    0 4 12345 12345 12345 1 rd mr mw me \n\
             7:   cmd\n\
             00001000 r--p 00000000 08:01 0 4     4     4     4 1 rd mr mw me \n"
        );
    }

    #[test]
    fn a_range_limits_rows_and_totals_but_not_widths() {
        let range = AddressRange {
            low: 0x2fff,
            high: 0x3000,
        };
        assert_eq!(
            render(PmapFormat::Smaps, false, range, 1),
            "7:   cmd\n \
             Address Perm   Offset Device Inode Size Rss Pss THPeligible Mapping\n\
             00001000 rw-p 00000000  08:01  1234    8   8   8           1 file\n                                    \
             ==== === === =========== \n                                       \
             8   8   8           1 KB \n\
             7:   cmd\n \
             Address Perm   Offset Device Inode Size Rss Pss THPeligible Mapping\n                                    \
             ==== === === =========== \n                                       \
             0   0   0           0 KB \n"
        );
    }

    #[test]
    fn the_path_column_is_cut_at_127_bytes() {
        // "/d/" and 124 bytes of directory name fill the 127: the last '/' left is the first.
        let text = render(PmapFormat::Smaps, true, AddressRange::default(), 124);
        assert!(text.contains(&format!(" {}\n", "p".repeat(124))), "{text}");
        let text = render(PmapFormat::Smaps, true, AddressRange::default(), 120);
        assert!(text.contains(" fil\n"), "{text}");
    }
}
