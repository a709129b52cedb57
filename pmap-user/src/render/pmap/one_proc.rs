//! pmap's `one_proc` loop: the default format, `-d` and `-x`. It reads `/proc/PID/maps` (or
//! `smaps` for `-x`) record by record into its line buffer, treats a record that starts with a
//! capital letter as an smaps `Key: value` line and any other as a mapping line, and prints as it
//! goes; `-x` prints a mapping only when its `Swap:` line comes.

use std::io::Write as _;

use super::{
    AddressRange, PmapFormat, PmapOptions, ProcessView, Row, Totals,
    scan::{Input, LineBuffer, fgets_records, pad_left},
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

    /// The permission word up to its terminator, as `%s` prints it.
    fn mode(&self) -> &[u8] {
        let len = self.perms.iter().position(|&b| b == 0).unwrap_or(32);
        &self.perms[..len]
    }
}

/// What `mapping_name` returned: a string of its own, or a pointer into the line buffer, which
/// `-x` reads only after later lines were read into the buffer.
enum Name {
    Fixed(Vec<u8>),
    InBuffer(usize),
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

pub(super) struct OneProc<'v> {
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
    rows: Vec<Row>,
    text: Vec<u8>,
}

impl<'v> OneProc<'v> {
    pub(super) fn new(view: &'v ProcessView<'v>, opts: &PmapOptions) -> OneProc<'v> {
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
            rows: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Replays pmap on `lines`: each the text of one mapping (its maps line, then for `-x` its
    /// smaps lines) with the mapping's index. Returns the text printed after the `PID:` line, the
    /// rows and the totals.
    pub(super) fn run(mut self, lines: &[(usize, Vec<u8>)]) -> (Vec<u8>, Vec<Row>, Totals) {
        self.write_headings();
        let range = self.opts.range;
        'file: for (mapping, text) in lines {
            for record in fgets_records(text) {
                self.buf.load(record);
                // Hex values are lower case or digits, smaps keys start with a capital.
                if self.buf.line().first().is_some_and(u8::is_ascii_uppercase) {
                    self.key();
                    continue;
                }
                if !self.mapping_record(*mapping, range) {
                    break 'file;
                }
            }
        }
        self.write_footer();
        (self.text, self.rows, self.totals)
    }

    fn write_headings(&mut self) {
        if self.opts.quiet {
            return;
        }
        let text = &mut self.text;
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
            _ => return,
        };
        for &(heading, width, right) in headings {
            super::scan::justify_print(text, heading.as_bytes(), width, right);
        }
        text.extend_from_slice(b"Mapping\n");
    }

    /// A smaps `Key: value` line (or a record that pmap takes for one).
    fn key(&mut self) {
        let mut input = Input(self.buf.line());
        let Some(key) = input.set(20, |b| b != b':') else {
            return;
        };
        let value = match (input.literal(b':'), input.number(10)) {
            (Some(()), Some(value)) => value,
            _ => return,
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
                    let name = match name {
                        Name::Fixed(name) => name,
                        Name::InBuffer(offset) => self.buf.line_at(offset).to_vec(),
                    };
                    let dirty = x.private_dirty.wrapping_add(x.shared_dirty);
                    let row = Row {
                        mapping,
                        start: self.fields.start,
                        size: self.size,
                        mode: self.fields.mode().to_vec(),
                        name,
                        rss: x.rss,
                        dirty,
                        ..Row::default()
                    };
                    let t = &mut self.text;
                    let _ = write!(
                        t,
                        "{:0aw$x} {:>kw$} {:>kw$} {:>kw$} ",
                        row.start,
                        row.size >> 10,
                        row.rss,
                        row.dirty,
                        aw = ADDRESS_WIDTH,
                        kw = KBYTES_WIDTH
                    );
                    pad_left(t, &row.mode, MODE_WIDTH);
                    t.push(b' ');
                    t.extend_from_slice(&row.name);
                    t.push(b'\n');
                    self.rows.push(row);
                }
                *x = Extended::default();
                self.size = 0;
                self.fields.end = 0;
                self.fields.perms[0] = 0;
            }
            _ => {}
        }
    }

    /// A mapping line (or the continuation of one). Returns false where pmap stops reading: at
    /// the first mapping above `-A`.
    fn mapping_record(&mut self, mapping: usize, range: AddressRange) -> bool {
        // The result is ignored as pmap ignores it: unconverted fields keep their old values.
        let _ = self.fields.scan(self.buf.line());
        let f = &mut self.fields;
        if f.end.wrapping_sub(1) < range.low {
            self.in_range = false;
            return true;
        }
        if range.high < f.start {
            return false;
        }
        self.in_range = true;
        self.buf.clean_line();

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
        let start = f.start;
        let name = self.mapping_name(start, size);
        if self.opts.format == PmapFormat::Extended {
            self.extended.pending = Some((mapping, name));
            return true;
        }
        let f = &self.fields;
        let row = Row {
            mapping,
            start: f.start,
            size,
            mode: f.mode().to_vec(),
            name: match name {
                Name::Fixed(name) => name,
                Name::InBuffer(offset) => self.buf.line_at(offset).to_vec(),
            },
            offset: f.offset,
            major: f.major,
            minor: f.minor,
            ..Row::default()
        };
        let t = &mut self.text;
        if self.opts.format == PmapFormat::Device {
            let _ = write!(
                t,
                "{:0aw$x} {:>kw$} ",
                row.start,
                row.size >> 10,
                aw = ADDRESS_WIDTH,
                kw = KBYTES_WIDTH
            );
            pad_left(t, &row.mode, MODE_WIDTH);
            let _ = write!(
                t,
                " {:0ow$x} {:03x}:{:05x} ",
                row.offset,
                row.major,
                row.minor,
                ow = OFFSET_WIDTH
            );
        } else {
            let _ = write!(t, "{:016x} {:>6}K ", row.start, row.size >> 10);
            t.extend_from_slice(&row.mode);
            t.push(b' ');
        }
        t.extend_from_slice(&row.name);
        t.push(b'\n');
        self.rows.push(row);
        true
    }

    /// pmap's `mapping_name`. It looks at the whole (cleaned) record, not just the path column;
    /// only the path column can hold a `/`.
    fn mapping_name(&self, start: u64, size: u64) -> Name {
        let f = &self.fields;
        let line = self.buf.line();
        if f.major == 0 && f.minor == self.shm_minor && line.windows(5).any(|w| w == b"/SYSV") {
            return Name::Fixed(format!("  [ shmid=0x{:x} ]", f.inode).into_bytes());
        }
        if let Some(last) = line.iter().rposition(|&b| b == b'/') {
            return Name::InBuffer(if self.opts.show_path {
                line.iter().position(|&b| b == b'/').unwrap_or(last)
            } else if last + 1 < line.len() {
                last + 1
            } else {
                // A path ending in '/' prints as "/".
                last
            });
        }
        // Every other mapping without a '/' ([heap], [vdso], [anon:NAME], …) is anonymous to
        // pmap unless it reaches the stack start, both bounds inclusive.
        let start_stack = self.view.start_stack;
        Name::Fixed(
            if start_stack >= start && start_stack <= start.wrapping_add(size) {
                b"  [ stack ]".to_vec()
            } else {
                b"  [ anon ]".to_vec()
            },
        )
    }

    fn write_footer(&mut self) {
        if self.opts.quiet {
            return;
        }
        let t = &mut self.text;
        let mapped = self.totals.mapped() >> 10;
        let _ = match self.opts.format {
            PmapFormat::Extended => writeln!(
                t,
                "{:-<aw$} {:-<kw$} {:-<kw$} {:-<kw$} ",
                "",
                "",
                "",
                "",
                aw = ADDRESS_WIDTH,
                kw = KBYTES_WIDTH
            )
            .and_then(|()| {
                writeln!(
                    t,
                    "{:<aw$} {:>kw$} {:>kw$} {:>kw$}",
                    "total kB",
                    mapped,
                    self.totals.rss,
                    self.totals.dirty,
                    aw = ADDRESS_WIDTH,
                    kw = KBYTES_WIDTH
                )
            }),
            PmapFormat::Device => writeln!(
                t,
                "mapped: {mapped}K    writeable/private: {}K    shared: {}K",
                self.totals.private_writeable >> 10,
                self.totals.shared >> 10
            ),
            _ => writeln!(t, " total {mapped:>16}K"),
        };
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
