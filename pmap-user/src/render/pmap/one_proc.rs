//! pmap's `one_proc` loop: the default format, `-d` and `-x`. It reads `/proc/PID/maps` (or
//! `smaps` for `-x`) record by record into its line buffer, treats a record that starts with a
//! capital letter as an smaps `Key: value` line and any other as a mapping line, and prints as it
//! goes; `-x` prints a mapping only when its `Swap:` line comes.
//!
//! The default format and `-d` read nothing but the maps lines, and a maps line that is one
//! `fgets` record (no longer than pmap's buffer, no newline or NUL in its path) scans back into
//! exactly the table's fields, with the path column as its only `/`. Such a mapping is printed
//! from the table's fields without building and rescanning its line; any other is replayed
//! record by record. `-x` always replays: it prints names through the line buffer after later
//! lines were read into it.

use std::io::{self, Write};

use super::{
    AddressRange, PmapFormat, PmapOptions, ProcessView, Row, Totals,
    scan::{FGETS_MAX, Input, LineBuffer, fgets_records, is_c_print, pad_left},
};
use crate::{
    model::Mapping,
    render::{
        digits::{push_dec, push_hex},
        maps_line_len, push_maps_line,
    },
};

/// The fields pmap's `sscanf` stores into. They live across records because `sscanf` stores a
/// field only when it converts it and pmap never checks how many it converted.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) start: u64,
    pub(super) end: u64,
    /// `char perms[32]`, NUL-terminated, edited in place by pmap.
    pub(super) perms: [u8; 32],
    pub(super) offset: u64,
    pub(super) major: u32,
    pub(super) minor: u32,
    pub(super) inode: u64,
}

impl Fields {
    /// glibc `sscanf(record, "%lx-%lx %31s %llx %x:%x %llu", …)`, stopping at the first field
    /// that does not convert.
    pub(super) fn scan(&mut self, record: &[u8]) -> Option<()> {
        let mut input = Input(record);
        self.start = input.number(16)?;
        input.literal(b'-')?;
        self.end = input.number(16)?;
        input.word_into(&mut self.perms)?;
        self.offset = input.number(16)?;
        // `%x` stores an unsigned int: glibc converts to unsigned long and truncates.
        self.major = input.number(16)? as u32;
        input.literal(b':')?;
        self.minor = input.number(16)? as u32;
        self.inode = input.number(10)?;
        Some(())
    }

    /// What [`Fields::scan`] stores from `mapping`'s maps line.
    fn load(&mut self, mapping: &Mapping) {
        let p = mapping.perms;
        let flag = |on: bool, c: u8| if on { c } else { b'-' };
        self.start = mapping.start;
        self.end = mapping.end;
        self.perms[..5].copy_from_slice(&[
            flag(p.read, b'r'),
            flag(p.write, b'w'),
            flag(p.exec, b'x'),
            if p.shared { b's' } else { b'p' },
            0,
        ]);
        self.offset = mapping.offset;
        self.major = mapping.device.major;
        self.minor = mapping.device.minor;
        self.inode = mapping.inode;
    }

    /// The permission word up to its terminator, as `%s` prints it.
    fn mode(&self) -> &[u8] {
        let len = self.perms.iter().position(|&b| b == 0).unwrap_or(32);
        &self.perms[..len]
    }
}

/// Whether `mapping`'s maps line is one `fgets` record that scans back into its own fields.
fn is_one_record(mapping: &Mapping) -> bool {
    maps_line_len(mapping) <= FGETS_MAX && !mapping.name.iter().any(|&b| b == b'\n' || b == 0)
}

/// What `mapping_name` returned: a string of its own, or a pointer into the line buffer, which
/// `-x` reads only after later lines were read into it.
#[derive(Clone, Copy)]
enum Name {
    Shmid(u64),
    Stack,
    Anon,
    InBuffer(usize),
}

/// A name as printed.
enum NameText<'a> {
    /// Printed as it is.
    Bytes(&'a [u8]),
    /// A part of a path column, printed as pmap's clean-up leaves it: every byte that is not
    /// printable as `?`.
    Path(&'a [u8]),
    Shmid(u64),
}

impl Name {
    fn text(self, buf: &LineBuffer) -> NameText<'_> {
        match self {
            Name::Shmid(id) => NameText::Shmid(id),
            Name::Stack => NameText::Bytes(b"  [ stack ]"),
            Name::Anon => NameText::Bytes(b"  [ anon ]"),
            Name::InBuffer(offset) => NameText::Bytes(buf.line_at(offset)),
        }
    }
}

impl NameText<'_> {
    fn push(&self, out: &mut Vec<u8>) {
        match *self {
            NameText::Bytes(bytes) => out.extend_from_slice(bytes),
            NameText::Path(path) => {
                out.extend(path.iter().map(|&b| if is_c_print(b) { b } else { b'?' }))
            }
            NameText::Shmid(id) => {
                out.extend_from_slice(b"  [ shmid=0x");
                push_hex(out, id, 0);
                out.extend_from_slice(b" ]");
            }
        }
    }
}

/// What pmap does with a mapping record once its fields are scanned.
enum Step {
    /// Below `-A`: read on.
    Skip,
    /// Above `-A`: pmap stops reading.
    Stop,
    /// Printed; its size.
    Show(u64),
}

/// Column widths pmap sets for `-x` and `-d` (64-bit `long`).
const ADDRESS_WIDTH: usize = 16;
const KBYTES_WIDTH: usize = 7;
const MODE_WIDTH: usize = 5;
const OFFSET_WIDTH: usize = 16;
const DEVICE_WIDTH: usize = 9;

/// The smaps values `-x` mode collects for the mapping being read.
#[derive(Default)]
struct Extended {
    rss: u64,
    shared_dirty: u64,
    private_dirty: u64,
    /// The mapping whose line was read last and what it is called, printed at its `Swap:` line.
    pending: Option<(usize, Name)>,
}

/// What pmap reads for one process.
pub(super) enum Source<'s> {
    /// The text of each mapping (its maps line, then for `-x` its smaps lines) with the
    /// mapping's index.
    Texts(&'s mut dyn Iterator<Item = (usize, Vec<u8>)>),
    /// The mappings, whose maps lines pmap would read (the default format and `-d`).
    Maps(&'s [Mapping]),
}

pub(super) struct OneProc<'v, 'o> {
    view: &'v ProcessView<'v>,
    opts: PmapOptions,
    /// pmap's `shm_minor`, which is `~0u` when undiscovered; a rescanned record can set a minor
    /// of `ffffffff` and so match it.
    shm_minor: u32,
    buf: LineBuffer,
    fields: Fields,
    /// `end - start` of the last mapping record, which `-x` prints.
    size: u64,
    extended: Extended,
    /// Whether the mapping being read is inside `-A`. pmap 4.0.2 adds the RSS and Dirty of
    /// every mapping to the `-x` totals; they count only the mappings it shows here, as the
    /// Kbytes total does.
    in_range: bool,
    totals: Totals,
    /// The rows printed, when the caller wants them.
    rows: Option<Vec<Row>>,
    /// The line being printed, written to `out` once complete.
    line: Vec<u8>,
    out: &'o mut dyn Write,
}

impl<'v, 'o> OneProc<'v, 'o> {
    /// Prints to `out`; keeps the rows when `keep_rows`.
    pub(super) fn new(
        view: &'v ProcessView<'v>,
        opts: &PmapOptions,
        out: &'o mut dyn Write,
        keep_rows: bool,
    ) -> OneProc<'v, 'o> {
        OneProc {
            view,
            opts: *opts,
            shm_minor: view.sysv_shm_minor.unwrap_or(u32::MAX),
            buf: LineBuffer::new(),
            fields: Fields::default(),
            size: 0,
            extended: Extended::default(),
            in_range: true,
            totals: Totals::default(),
            rows: keep_rows.then(Vec::new),
            line: Vec::with_capacity(256),
            out,
        }
    }

    /// Replays pmap on `source`, printing what it prints after the `PID:` line. Returns the
    /// rows (when kept) and the totals.
    pub(super) fn run(mut self, source: Source) -> io::Result<(Vec<Row>, Totals)> {
        self.write_headings()?;
        let range = self.opts.range;
        match source {
            Source::Texts(texts) => {
                for (mapping, text) in texts {
                    if !self.replay(mapping, &text, range)? {
                        break;
                    }
                }
            }
            Source::Maps(mappings) => {
                let mut text = Vec::new();
                for (index, mapping) in mappings.iter().enumerate() {
                    let more = if is_one_record(mapping) {
                        self.mapping(index, mapping, range)?
                    } else {
                        text.clear();
                        push_maps_line(&mut text, mapping);
                        self.replay(index, &text, range)?
                    };
                    if !more {
                        break;
                    }
                }
            }
        }
        self.write_footer()?;
        Ok((self.rows.unwrap_or_default(), self.totals))
    }

    /// Writes the finished line.
    fn flush_line(&mut self) -> io::Result<()> {
        self.out.write_all(&self.line)?;
        self.line.clear();
        Ok(())
    }

    /// Reads one mapping's text record by record. Returns false where pmap stops reading: at
    /// the first mapping above `-A`.
    fn replay(&mut self, mapping: usize, text: &[u8], range: AddressRange) -> io::Result<bool> {
        for record in fgets_records(text) {
            self.buf.load(record);
            // Hex values are lower case or digits, smaps keys start with a capital.
            if self.buf.line().first().is_some_and(u8::is_ascii_uppercase) {
                self.key()?;
                continue;
            }
            if !self.mapping_record(mapping, range)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn write_headings(&mut self) -> io::Result<()> {
        if self.opts.quiet {
            return Ok(());
        }
        let text = &mut self.line;
        // The widths are fixed and wider than the headings, so they print as pmap pads them.
        let headings: &[(&str, usize, bool)] = match self.opts.format {
            PmapFormat::Extended => &[
                ("Address", ADDRESS_WIDTH, false),
                ("Kbytes", KBYTES_WIDTH, true),
                ("RSS", KBYTES_WIDTH, true),
                ("Dirty", KBYTES_WIDTH, true),
                ("Mode", MODE_WIDTH, false),
            ],
            PmapFormat::Device => &[
                ("Address", ADDRESS_WIDTH, false),
                ("Kbytes", KBYTES_WIDTH, true),
                ("Mode", MODE_WIDTH, false),
                ("Offset", OFFSET_WIDTH, false),
                ("Device", DEVICE_WIDTH, false),
            ],
            _ => return Ok(()),
        };
        for &(heading, width, right) in headings {
            super::scan::justify_print(text, heading.as_bytes(), width, right);
        }
        text.extend_from_slice(b"Mapping\n");
        self.flush_line()
    }

    /// A smaps `Key: value` line (or a record that pmap takes for one).
    fn key(&mut self) -> io::Result<()> {
        let mut input = Input(self.buf.line());
        let Some(key) = input.set(20, |b| b != b':') else {
            return Ok(());
        };
        let value = match (input.literal(b':'), input.number(10)) {
            (Some(()), Some(value)) => value,
            _ => return Ok(()),
        };
        let x = &mut self.extended;
        let counted = |total: &mut u64| {
            if self.in_range {
                *total = total.wrapping_add(value);
            }
        };
        match key {
            b"Rss" => {
                x.rss = value;
                counted(&mut self.totals.rss);
            }
            b"Shared_Dirty" => {
                x.shared_dirty = value;
                counted(&mut self.totals.dirty);
            }
            b"Private_Dirty" => {
                x.private_dirty = value;
                counted(&mut self.totals.dirty);
            }
            // The last of the values pmap uses: the mapping is complete.
            b"Swap" => {
                if let Some((mapping, name)) = x.pending.take() {
                    let (rss, dirty) = (x.rss, x.private_dirty.wrapping_add(x.shared_dirty));
                    let t = &mut self.line;
                    push_hex(t, self.fields.start, ADDRESS_WIDTH);
                    t.push(b' ');
                    push_dec(t, self.size >> 10, KBYTES_WIDTH);
                    t.push(b' ');
                    push_dec(t, rss, KBYTES_WIDTH);
                    t.push(b' ');
                    push_dec(t, dirty, KBYTES_WIDTH);
                    t.push(b' ');
                    pad_left(t, self.fields.mode(), MODE_WIDTH);
                    t.push(b' ');
                    let name_at = t.len();
                    name.text(&self.buf).push(t);
                    t.push(b'\n');
                    self.keep_row(mapping, self.size, name_at, rss, dirty);
                    self.flush_line()?;
                }
                self.extended = Extended::default();
                self.size = 0;
                self.fields.end = 0;
                self.fields.perms[0] = 0;
            }
            _ => {}
        }
        Ok(())
    }

    /// pmap's accounting of a mapping record whose fields are scanned: `-A`, the totals, and its
    /// edits of the permission word into the mode column.
    fn account(&mut self, range: AddressRange) -> Step {
        let f = &mut self.fields;
        if f.end.wrapping_sub(1) < range.low {
            self.in_range = false;
            return Step::Skip;
        }
        if range.high < f.start {
            return Step::Stop;
        }
        self.in_range = true;
        let size = f.end.wrapping_sub(f.start);
        self.size = size;
        match f.perms[3] {
            b's' => self.totals.shared = self.totals.shared.wrapping_add(size),
            b'p' => {
                f.perms[3] = b'-';
                let total = if f.perms[1] == b'w' {
                    &mut self.totals.private_writeable
                } else {
                    &mut self.totals.private_readonly
                };
                *total = total.wrapping_add(size);
            }
            _ => {}
        }
        // pmap's fifth column is always '-' (Solaris' 'R' for MAP_NORESERVE was never filled in).
        f.perms[4] = b'-';
        f.perms[5] = 0;
        Step::Show(size)
    }

    /// A mapping line (or the continuation of one) in the line buffer. Returns false where pmap
    /// stops reading.
    fn mapping_record(&mut self, mapping: usize, range: AddressRange) -> io::Result<bool> {
        // The result is ignored as pmap ignores it: unconverted fields keep their old values.
        let _ = self.fields.scan(self.buf.line());
        let size = match self.account(range) {
            Step::Skip => return Ok(true),
            Step::Stop => return Ok(false),
            Step::Show(size) => size,
        };
        self.buf.clean_line();
        let name = self.mapping_name(self.fields.start, size);
        if self.opts.format == PmapFormat::Extended {
            self.extended.pending = Some((mapping, name));
            return Ok(true);
        }
        let mut line = std::mem::take(&mut self.line);
        let name_at = self.push_row(&mut line, size, name.text(&self.buf));
        self.line = line;
        self.keep_row(mapping, size, name_at, 0, 0);
        self.flush_line()?;
        Ok(true)
    }

    /// A mapping whose maps line is one record ([`is_one_record`]), printed from its fields:
    /// what [`Self::mapping_record`] makes of its line. Returns false where pmap stops reading.
    fn mapping(
        &mut self,
        index: usize,
        mapping: &Mapping,
        range: AddressRange,
    ) -> io::Result<bool> {
        self.fields.load(mapping);
        let size = match self.account(range) {
            Step::Skip => return Ok(true),
            Step::Stop => return Ok(false),
            Step::Show(size) => size,
        };
        // The path column is the line's only part with a '/'.
        let path = &mapping.name;
        let f = &self.fields;
        let name = if f.major == 0
            && f.minor == self.shm_minor
            && path.windows(5).any(|w| w == b"/SYSV")
        {
            NameText::Shmid(f.inode)
        } else if let Some(last) = path.iter().rposition(|&b| b == b'/') {
            NameText::Path(&path[self.name_offset(path, last)..])
        } else {
            match self.unnamed(f.start, size) {
                Name::Stack => NameText::Bytes(b"  [ stack ]"),
                _ => NameText::Bytes(b"  [ anon ]"),
            }
        };
        let mut line = std::mem::take(&mut self.line);
        let name_at = self.push_row(&mut line, size, name);
        self.line = line;
        self.keep_row(index, size, name_at, 0, 0);
        self.flush_line()?;
        Ok(true)
    }

    /// Appends the default or `-d` row of the fields just accounted; returns where its name
    /// starts in `t`.
    fn push_row(&self, t: &mut Vec<u8>, size: u64, name: NameText) -> usize {
        let f = &self.fields;
        push_hex(t, f.start, ADDRESS_WIDTH);
        t.push(b' ');
        if self.opts.format == PmapFormat::Device {
            push_dec(t, size >> 10, KBYTES_WIDTH);
            t.push(b' ');
            pad_left(t, f.mode(), MODE_WIDTH);
            t.push(b' ');
            push_hex(t, f.offset, OFFSET_WIDTH);
            t.push(b' ');
            push_hex(t, f.major.into(), 3);
            t.push(b':');
            push_hex(t, f.minor.into(), 5);
        } else {
            push_dec(t, size >> 10, 6);
            t.push(b'K');
            t.push(b' ');
            t.extend_from_slice(f.mode());
        }
        t.push(b' ');
        let name_at = t.len();
        name.push(t);
        t.push(b'\n');
        name_at
    }

    /// Keeps the row just put in the line, when rows are kept.
    fn keep_row(&mut self, mapping: usize, size: u64, name_at: usize, rss: u64, dirty: u64) {
        let Some(rows) = &mut self.rows else {
            return;
        };
        let f = &self.fields;
        rows.push(Row {
            mapping,
            start: f.start,
            size,
            mode: f.mode().to_vec(),
            name: self.line[name_at..self.line.len() - 1].to_vec(),
            offset: f.offset,
            major: f.major,
            minor: f.minor,
            rss,
            dirty,
        });
    }

    /// Where pmap's name of a path starts (`last` is its last '/'): at the first '/' with
    /// `-p`, else after the last one, or at it when the path ends in '/' (printed as "/").
    fn name_offset(&self, path: &[u8], last: usize) -> usize {
        if self.opts.show_path {
            path.iter().position(|&b| b == b'/').unwrap_or(last)
        } else if last + 1 < path.len() {
            last + 1
        } else {
            last
        }
    }

    /// pmap's `mapping_name`. It looks at the whole (cleaned) record, not just the path column;
    /// only the path column can hold a `/`.
    fn mapping_name(&self, start: u64, size: u64) -> Name {
        let f = &self.fields;
        let line = self.buf.line();
        if f.major == 0 && f.minor == self.shm_minor && line.windows(5).any(|w| w == b"/SYSV") {
            return Name::Shmid(f.inode);
        }
        if let Some(last) = line.iter().rposition(|&b| b == b'/') {
            return Name::InBuffer(self.name_offset(line, last));
        }
        self.unnamed(start, size)
    }

    /// Every mapping without a '/' ([heap], [vdso], [anon:NAME], …) is anonymous to pmap unless
    /// it reaches the stack start, both bounds inclusive.
    fn unnamed(&self, start: u64, size: u64) -> Name {
        let start_stack = self.view.start_stack;
        if start_stack >= start && start_stack <= start.wrapping_add(size) {
            Name::Stack
        } else {
            Name::Anon
        }
    }

    fn write_footer(&mut self) -> io::Result<()> {
        if self.opts.quiet {
            return Ok(());
        }
        let mapped = self.totals.mapped() >> 10;
        let t = &mut self.line;
        match self.opts.format {
            PmapFormat::Extended => {
                writeln!(
                    t,
                    "{:-<aw$} {:-<kw$} {:-<kw$} {:-<kw$} ",
                    "",
                    "",
                    "",
                    "",
                    aw = ADDRESS_WIDTH,
                    kw = KBYTES_WIDTH
                )?;
                writeln!(
                    t,
                    "{:<aw$} {:>kw$} {:>kw$} {:>kw$}",
                    "total kB",
                    mapped,
                    self.totals.rss,
                    self.totals.dirty,
                    aw = ADDRESS_WIDTH,
                    kw = KBYTES_WIDTH
                )?;
            }
            PmapFormat::Device => writeln!(
                t,
                "mapped: {mapped}K    writeable/private: {}K    shared: {}K",
                self.totals.private_writeable >> 10,
                self.totals.shared >> 10
            )?,
            _ => writeln!(t, " total {mapped:>16}K")?,
        }
        self.flush_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Fields {
        let mut f = Fields {
            perms: *b"rw---\0zzzzzzzzzzzzzzzzzzzzzzzzzz",
            ..Fields::default()
        };
        let _ = f.scan(text.as_bytes());
        f
    }

    #[test]
    fn scan_reads_a_maps_line() {
        let f =
            scan("7f17c9815000-7f17c9817000 rw-s 00001000 fe:01 7     /SYSV00000000 (deleted)\n");
        assert_eq!(
            (f.start, f.end, f.offset, f.major, f.minor, f.inode),
            (0x7f17c9815000, 0x7f17c9817000, 0x1000, 0xfe, 1, 7)
        );
        assert_eq!(&f.perms[..7], b"rw-s\0\0z");
    }

    #[test]
    fn scan_numbers_as_glibc_does() {
        assert_eq!(scan("  +1f-").start, 0x1f);
        assert_eq!(scan("-1-").start, u64::MAX);
        assert_eq!(scan("-0x10-").start, 0u64.wrapping_sub(0x10));
        assert_eq!(scan("0X1F-").start, 0x1f);
        assert_eq!(scan("0xz").start, 0);
        assert_eq!(scan("-fffffffffffffffff").start, u64::MAX);
        assert_eq!(scan("-ffffffffffffffff").start, 1);
        assert_eq!(scan("1-2 p 3 4:5 0x9").inode, 0);
        assert_eq!(scan("1-2 p 3 4:123456789 9").minor, 0x23456789);
        let f = scan("-x");
        assert_eq!((f.start, f.end), (0, 0));
        let f = scan("a-b");
        assert_eq!((f.start, f.end, &f.perms[..6]), (0xa, 0xb, &b"rw---\0"[..]));
        let f = scan("1-2 0123456789012345678901234567890123");
        assert_eq!(&f.perms[..], b"0123456789012345678901234567890\0");
        assert_eq!(f.offset, 0x123);
    }
}
