//! procps-ng `pmap` 4.0.2 output, byte for byte.
//!
//! pmap does not print mappings, it prints what its `fgets`/`sscanf` loop makes of the lines of
//! `/proc/PID/maps`. So rather than formatting [`Mapping`] fields directly, this module rebuilds
//! each maps line ([`super::maps_line`]) and replays that loop on it, quirks included: a line
//! longer than pmap's 1023-byte buffer is read as several records, and each continuation record
//! is rescanned into fields that keep whatever the previous record left in them. Every format
//! (`-x`, `-d`, `-X` when they come) prints the same `Row`s, so they are meant to be added as
//! siblings of [`write_default`] over `Scanner`, with their flags in [`PmapOptions`].

use std::io::{self, Write};

use super::maps_line;
use crate::table::Mapping;

/// What pmap knows about a process when it prints it.
#[derive(Clone, Copy, Debug)]
pub struct ProcessView<'a> {
    /// The process (thread-group) id; pmap prints the thread-group id even when given a thread.
    pub pid: i32,
    /// What pmap prints after `PID:   ` ([`crate::seed::read_process_header`]).
    pub header: &'a [u8],
    /// `startstack` of `/proc/PID/stat` ([`crate::seed::read_start_stack`]): an unnamed mapping
    /// reaching it prints as `[ stack ]`.
    pub start_stack: u64,
    /// Device minor of SysV shared memory on this host ([`crate::seed::discover_shm_minor`]):
    /// pmap prints such segments as `[ shmid=0x… ]`.
    pub sysv_shm_minor: Option<u32>,
    pub mappings: &'a [Mapping],
}

/// pmap's options that apply to every format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmapOptions {
    /// `-q`: no footer. pmap still prints the `PID:` line.
    pub quiet: bool,
    /// `-p`: a file mapping shows its path (from the first `/`) rather than its base name.
    pub show_path: bool,
}

/// What `pmap PID` prints (with `-q` and `-p` as `opts` say).
pub fn write_default(
    out: &mut impl Write,
    view: &ProcessView,
    opts: &PmapOptions,
) -> io::Result<()> {
    // Built whole and written once, so a sink shared with other output gets the dump in one piece.
    let mut text = Vec::new();
    write_header(&mut text, view)?;
    let (rows, mapped) = rows(view, opts);
    for row in rows {
        write!(text, "{:016x} {:>6}K ", row.start, row.size >> 10)?;
        text.extend_from_slice(&row.mode);
        text.push(b' ');
        text.extend_from_slice(&row.name);
        text.push(b'\n');
    }
    if !opts.quiet {
        writeln!(text, " total {:>16}K", mapped >> 10)?;
    }
    out.write_all(&text)
}

/// The rows pmap prints for `view`, and the total it prints under them (in bytes).
pub fn rows(view: &ProcessView, opts: &PmapOptions) -> (Vec<Row>, u64) {
    let mut scanner = Scanner::new(view, opts);
    let rows = view
        .mappings
        .iter()
        .enumerate()
        .flat_map(|(index, mapping)| {
            fgets_records(&maps_line(mapping))
                .map(|record| Row {
                    mapping: index,
                    ..scanner.row(record)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    (rows, scanner.totals.mapped())
}

fn write_header(out: &mut Vec<u8>, view: &ProcessView) -> io::Result<()> {
    write!(out, "{}:   ", view.pid as u32)?;
    out.extend_from_slice(view.header);
    out.push(b'\n');
    Ok(())
}

/// `fgets(mapbuf, 1024, …)` returns at most this many bytes; the rest of a longer line comes back
/// as the next record.
const FGETS_MAX: usize = 1023;

/// The records successive `fgets` calls return for `text`.
fn fgets_records(mut text: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if text.is_empty() {
            return None;
        }
        let window = &text[..text.len().min(FGETS_MAX)];
        let len = window
            .iter()
            .position(|&b| b == b'\n')
            .map_or(window.len(), |i| i + 1);
        let (record, rest) = text.split_at(len);
        text = rest;
        Some(record)
    })
}

/// One line pmap prints for a record.
pub struct Row {
    /// Index of the mapping (in [`ProcessView::mappings`]) whose maps line the record is from.
    pub mapping: usize,
    pub start: u64,
    /// `end - start`, wrapping as pmap's unsigned arithmetic does.
    pub size: u64,
    /// `rwx` plus `s` for shared or `-` for private, then `-`: pmap's 5-character mode column
    /// (shorter only when a continuation record rescans a short permission word).
    pub mode: Vec<u8>,
    pub name: Vec<u8>,
}

/// The fields pmap's `sscanf` stores into. They live across records because `sscanf` stores a
/// field only when it converts it and pmap never checks how many it converted.
#[derive(Default)]
struct Fields {
    start: u64,
    end: u64,
    /// `char perms[32]`, NUL-terminated, edited in place by pmap.
    perms: [u8; 32],
    offset: u64,
    major: u32,
    minor: u32,
    inode: u64,
}

impl Fields {
    /// glibc `sscanf(record, "%lx-%lx %31s %llx %x:%x %llu", …)`, stopping at the first field
    /// that does not convert.
    fn scan(&mut self, record: &[u8]) -> Option<()> {
        let mut input = Input(record);
        self.start = input.number(16)?;
        input.literal(b'-')?;
        self.end = input.number(16)?;
        input.word(&mut self.perms)?;
        self.offset = input.number(16)?;
        // `%x` stores an unsigned int: glibc converts to unsigned long and truncates.
        self.major = input.number(16)? as u32;
        input.literal(b':')?;
        self.minor = input.number(16)? as u32;
        self.inode = input.number(10)?;
        Some(())
    }
}

/// The unread rest of a record, for the glibc scanf conversions pmap uses.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn bump(&mut self) {
        self.0 = &self.0[1..];
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_c_space) {
            self.bump();
        }
    }

    fn literal(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.bump())
    }

    /// `%31s`: up to 31 non-space bytes, NUL-terminated in `dst`; bytes after the terminator keep
    /// their old values.
    fn word(&mut self, dst: &mut [u8; 32]) -> Option<()> {
        self.skip_space();
        self.peek()?;
        let len = self
            .0
            .iter()
            .take(31)
            .take_while(|&&b| !is_c_space(b))
            .count();
        dst[..len].copy_from_slice(&self.0[..len]);
        dst[len] = 0;
        self.0 = &self.0[len..];
        Some(())
    }

    /// An integer conversion without width: optional sign, a `0x` prefix in base 16 (glibc
    /// consumes the `x` even when no digit follows), digits. The value is `strtoul`'s: negated
    /// modulo 2^64 after a `-`, `u64::MAX` on overflow whatever the sign.
    fn number(&mut self, base: u32) -> Option<u64> {
        self.skip_space();
        let negative = match self.peek()? {
            b'-' => true,
            b'+' => false,
            _ => return Some(self.magnitude(base)?.unwrap_or(u64::MAX)),
        };
        self.bump();
        Some(
            self.magnitude(base)?
                .map_or(u64::MAX, |v| if negative { v.wrapping_neg() } else { v }),
        )
    }

    /// The digits' value, `Some(None)` when it overflows, `None` when there is no digit.
    fn magnitude(&mut self, base: u32) -> Option<Option<u64>> {
        let mut any_digit = false;
        if self.peek() == Some(b'0') {
            self.bump();
            any_digit = true;
            if base == 16 && matches!(self.peek(), Some(b'x' | b'X')) {
                self.bump();
            }
        }
        let mut value = Some(0u64);
        while let Some(digit) = self.peek().and_then(|c| char::from(c).to_digit(base)) {
            self.bump();
            any_digit = true;
            value = value.and_then(|v| v.checked_mul(base.into())?.checked_add(digit.into()));
        }
        any_digit.then_some(value)
    }
}

/// `isspace` in the C and UTF-8 locales.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `isprint` in the C and UTF-8 locales (bytes above ASCII are not characters on their own).
fn is_c_print(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Sums pmap keeps for its footers, in bytes.
#[derive(Default)]
struct Totals {
    shared: u64,
    private_writeable: u64,
    private_readonly: u64,
}

impl Totals {
    fn mapped(&self) -> u64 {
        self.shared
            .wrapping_add(self.private_writeable)
            .wrapping_add(self.private_readonly)
    }
}

/// pmap's per-record loop for one process.
struct Scanner {
    start_stack: u64,
    /// pmap's `shm_minor`, which is `~0u` when undiscovered; a rescanned record can set a minor
    /// of `ffffffff` and so match it.
    shm_minor: u32,
    show_path: bool,
    fields: Fields,
    totals: Totals,
}

impl Scanner {
    fn new(view: &ProcessView, opts: &PmapOptions) -> Scanner {
        Scanner {
            start_stack: view.start_stack,
            shm_minor: view.sysv_shm_minor.unwrap_or(u32::MAX),
            show_path: opts.show_path,
            fields: Fields::default(),
            totals: Totals::default(),
        }
    }

    fn row(&mut self, record: &[u8]) -> Row {
        // pmap handles the record as a C string.
        let record = &record[..record.iter().position(|&b| b == 0).unwrap_or(record.len())];
        // The result is ignored as pmap ignores it: unconverted fields keep their old values.
        let _ = self.fields.scan(record);

        let line = record
            .iter()
            .position(|&b| b == b'\n')
            .map_or(record, |i| &record[..i]);
        let line: Vec<u8> = line
            .iter()
            .map(|&b| if is_c_print(b) { b } else { b'?' })
            .collect();

        let f = &mut self.fields;
        let size = f.end.wrapping_sub(f.start);
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
        let mode_len = f
            .perms
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(f.perms.len());
        let mode = f.perms[..mode_len].to_vec();
        let start = f.start;
        let name = self.mapping_name(&line, start, size);
        Row {
            mapping: 0,
            start,
            size,
            mode,
            name,
        }
    }

    /// pmap's `mapping_name`. It looks at the whole record, not just the path column; only the
    /// path column can hold a `/`.
    fn mapping_name(&self, line: &[u8], start: u64, size: u64) -> Vec<u8> {
        let f = &self.fields;
        if f.major == 0 && f.minor == self.shm_minor && line.windows(5).any(|w| w == b"/SYSV") {
            return format!("  [ shmid=0x{:x} ]", f.inode).into_bytes();
        }
        if let Some(last) = line.iter().rposition(|&b| b == b'/') {
            let from = if self.show_path {
                line.iter().position(|&b| b == b'/').unwrap_or(last)
            } else if last + 1 < line.len() {
                last + 1
            } else {
                // A path ending in '/' prints as "/".
                last
            };
            return line[from..].to_vec();
        }
        // Every other mapping without a '/' ([heap], [vdso], [anon:NAME], …) is anonymous to
        // pmap unless it reaches the stack start, both bounds inclusive.
        if self.start_stack >= start && self.start_stack <= start.wrapping_add(size) {
            b"  [ stack ]".to_vec()
        } else {
            b"  [ anon ]".to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::{
        seed::{self, Codeset, fixtures::*},
        table::{Device, Perms},
    };

    fn m(start: u64, end: u64, perms: &str, dev: (u32, u32), inode: u64, name: &[u8]) -> Mapping {
        let b = perms.as_bytes();
        Mapping {
            start,
            end,
            perms: Perms {
                read: b[0] == b'r',
                write: b[1] == b'w',
                exec: b[2] == b'x',
                shared: b[3] == b's',
            },
            offset: 0,
            device: Device {
                major: dev.0,
                minor: dev.1,
            },
            inode,
            name: name.to_vec(),
        }
    }

    fn anon(start: u64, end: u64, perms: &str, name: &[u8]) -> Mapping {
        m(start, end, perms, (0, 0), 0, name)
    }

    fn file(start: u64, end: u64, perms: &str, name: &[u8]) -> Mapping {
        m(start, end, perms, (0xfe, 0), 1234, name)
    }

    fn render_with(
        mappings: &[Mapping],
        start_stack: u64,
        shm_minor: Option<u32>,
        opts: PmapOptions,
    ) -> String {
        let view = ProcessView {
            pid: 4242,
            header: b"cmd",
            start_stack,
            sysv_shm_minor: shm_minor,
            mappings,
        };
        let mut out = Vec::new();
        write_default(&mut out, &view, &opts).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render(mappings: &[Mapping], opts: PmapOptions) -> String {
        render_with(mappings, 0, None, opts)
    }

    /// The mapping lines only: no header, no footer.
    fn rows(mappings: &[Mapping], opts: PmapOptions) -> Vec<String> {
        let text = render(
            mappings,
            PmapOptions {
                quiet: true,
                ..opts
            },
        );
        text.lines().skip(1).map(str::to_owned).collect()
    }

    const PATH: PmapOptions = PmapOptions {
        quiet: false,
        show_path: true,
    };

    #[test]
    fn default_format_of_a_typical_process() {
        let maps = [
            file(0x55b32b6bd000, 0x55b32b6ec000, "r--p", b"/usr/bin/bash"),
            file(0x55b32b6ec000, 0x55b32b7ad000, "r-xp", b"/usr/bin/bash"),
            anon(0x55b33b5cc000, 0x55b33b60d000, "rw-p", b"[heap]"),
            anon(0x7f200c700000, 0x7f200c702000, "rw-p", b""),
            file(
                0x7f200c777000,
                0x7f200c77e000,
                "r--s",
                b"/usr/lib/gconv/gconv-modules.cache",
            ),
            anon(0x7f200c781000, 0x7f200c785000, "r--p", b"[vvar]"),
            anon(0x7f200c785000, 0x7f200c787000, "r--p", b"[vvar_vclock]"),
            anon(0x7f200c787000, 0x7f200c789000, "r-xp", b"[vdso]"),
            anon(0x7ffde299d000, 0x7ffde29be000, "rw-p", b"[stack]"),
            anon(
                0xffffffffff600000,
                0xffffffffff601000,
                "--xp",
                b"[vsyscall]",
            ),
        ];
        let view = ProcessView {
            pid: 4242,
            header: b"bash -i",
            start_stack: 0x7ffde29bc2d0,
            sysv_shm_minor: Some(1),
            mappings: &maps,
        };
        let mut out = Vec::new();
        write_default(&mut out, &view, &PmapOptions::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "4242:   bash -i\n\
             000055b32b6bd000    188K r---- bash\n\
             000055b32b6ec000    772K r-x-- bash\n\
             000055b33b5cc000    260K rw---   [ anon ]\n\
             00007f200c700000      8K rw---   [ anon ]\n\
             00007f200c777000     28K r--s- gconv-modules.cache\n\
             00007f200c781000     16K r----   [ anon ]\n\
             00007f200c785000      8K r----   [ anon ]\n\
             00007f200c787000      8K r-x--   [ anon ]\n\
             00007ffde299d000    132K rw---   [ stack ]\n\
             ffffffffff600000      4K --x--   [ anon ]\n \
             total             1424K\n"
        );
    }

    #[test]
    fn quiet_drops_only_the_footer() {
        let maps = [anon(0x1000, 0x2000, "rw-p", b"")];
        assert_eq!(
            render(
                &maps,
                PmapOptions {
                    quiet: true,
                    show_path: false
                }
            ),
            "4242:   cmd\n0000000000001000      4K rw---   [ anon ]\n"
        );
    }

    #[test]
    fn process_without_mappings() {
        assert_eq!(
            render(&[], PmapOptions::default()),
            "4242:   cmd\n total                0K\n"
        );
    }

    #[test]
    fn file_names_are_base_names_or_paths() {
        let maps = [
            file(0x1000, 0x2000, "r--p", b"/usr/lib/libc.so.6 (deleted)"),
            file(0x2000, 0x3000, "r--p", b"/memfd:my memfd (deleted)"),
            file(0x3000, 0x4000, "r--p", b"/tmp/dir with space/file name"),
            file(0x4000, 0x5000, "r--p", b"/tmp/new\\012line"),
            file(0x5000, 0x6000, "r--p", b"/tmp/tab\there\x7f"),
            file(0x6000, 0x7000, "r--p", b"/tmp/caf\xc3\xa9"),
            file(0x7000, 0x8000, "r--p", b"/tmp/dir/"),
            anon(0x8000, 0x9000, "rw-p", b"[anon:some/name]"),
            anon(0x9000, 0xa000, "rw-p", b"[anon:no slash]"),
        ];
        assert_eq!(
            rows(&maps, PmapOptions::default()),
            [
                "0000000000001000      4K r---- libc.so.6 (deleted)",
                "0000000000002000      4K r---- memfd:my memfd (deleted)",
                "0000000000003000      4K r---- file name",
                "0000000000004000      4K r---- new\\012line",
                "0000000000005000      4K r---- tab?here?",
                "0000000000006000      4K r---- caf??",
                "0000000000007000      4K r---- /",
                "0000000000008000      4K rw--- name]",
                "0000000000009000      4K rw---   [ anon ]",
            ]
        );
        assert_eq!(
            rows(&maps, PATH),
            [
                "0000000000001000      4K r---- /usr/lib/libc.so.6 (deleted)",
                "0000000000002000      4K r---- /memfd:my memfd (deleted)",
                "0000000000003000      4K r---- /tmp/dir with space/file name",
                "0000000000004000      4K r---- /tmp/new\\012line",
                "0000000000005000      4K r---- /tmp/tab?here?",
                "0000000000006000      4K r---- /tmp/caf??",
                "0000000000007000      4K r---- /tmp/dir/",
                "0000000000008000      4K rw--- /name]",
                "0000000000009000      4K rw---   [ anon ]",
            ]
        );
    }

    #[test]
    fn stack_is_whatever_unnamed_mapping_reaches_start_stack() {
        let maps = [
            anon(0x1000, 0x3000, "rw-p", b""),
            anon(0x3000, 0x5000, "rw-p", b"[stack]"),
            anon(0x5000, 0x6000, "rw-p", b"[heap]"),
            file(0x6000, 0x7000, "rw-p", b"/x/y"),
        ];
        let stack_rows = |start_stack| {
            let text = render_with(
                &maps,
                start_stack,
                None,
                PmapOptions {
                    quiet: true,
                    show_path: false,
                },
            );
            text.lines()
                .filter(|l| l.ends_with("[ stack ]"))
                .map(|l| l[..16].to_owned())
                .collect::<Vec<_>>()
        };
        // Both bounds are inclusive, so a start on a boundary claims both neighbours.
        assert_eq!(stack_rows(0x3000), ["0000000000001000", "0000000000003000"]);
        assert_eq!(stack_rows(0x4000), ["0000000000003000"]);
        assert_eq!(stack_rows(0x5800), ["0000000000005000"]);
        // A file mapping is named by its path whatever it holds; the name "[stack]" means nothing.
        assert!(stack_rows(0x6800).is_empty());
        assert!(stack_rows(0).is_empty());
    }

    #[test]
    fn sysv_segments_print_their_shmid() {
        let maps = [
            m(
                0x1000,
                0x3000,
                "rw-s",
                (0, 1),
                0x2a,
                b"/SYSV00000000 (deleted)",
            ),
            m(
                0x3000,
                0x4000,
                "rw-s",
                (0, 2),
                0x2b,
                b"/SYSV00000000 (deleted)",
            ),
            m(0x4000, 0x5000, "rw-s", (8, 1), 0x2c, b"/tmp/SYSVfile"),
        ];
        assert_eq!(
            render_with(
                &maps,
                0,
                Some(1),
                PmapOptions {
                    quiet: true,
                    show_path: true
                }
            ),
            "4242:   cmd\n\
             0000000000001000      8K rw-s-   [ shmid=0x2a ]\n\
             0000000000003000      4K rw-s- /SYSV00000000 (deleted)\n\
             0000000000004000      4K rw-s- /tmp/SYSVfile\n"
        );
        assert_eq!(
            rows(&maps[..1], PmapOptions::default()),
            ["0000000000001000      8K rw-s- SYSV00000000 (deleted)"]
        );
    }

    #[test]
    fn columns_widen_for_huge_sizes() {
        let maps = [
            anon(0x1000, 0xc000000000000000, "---p", b""),
            anon(0xc000000000000000, 0xc000010000000000, "---p", b""),
        ];
        assert_eq!(
            render(&maps, PmapOptions::default()),
            "4242:   cmd\n\
             0000000000001000 13510798882111484K -----   [ anon ]\n\
             c000000000000000 1073741824K -----   [ anon ]\n \
             total 13510799955853308K\n"
        );
    }

    #[test]
    fn totals_count_shared_and_private_mappings() {
        let maps = [
            anon(0x1000, 0x2000, "r--s", b""),
            anon(0x2000, 0x4000, "rw-p", b""),
            anon(0x4000, 0x7000, "r-xp", b""),
            anon(0x7000, 0xb000, "---p", b""),
        ];
        assert!(render(&maps, PmapOptions::default()).ends_with(" total               40K\n"));
    }

    #[test]
    fn fgets_splits_lines_at_1023_bytes() {
        let mut text = vec![b'a'; 2500];
        text.push(b'\n');
        text.extend_from_slice(b"short\n");
        let lens: Vec<usize> = fgets_records(&text).map(<[u8]>::len).collect();
        assert_eq!(lens, [1023, 1023, 455, 6]);
    }

    /// A file mapping at 0x7f0000001000 whose maps line puts `tail` at byte `at` of the path, so
    /// that pmap's buffer splits the path just before it.
    fn long(perms: &str, at: usize, tail: &str) -> Mapping {
        let mut name = b"/long".to_vec();
        while name.len() < at {
            name.push(if name.len().is_multiple_of(100) {
                b'/'
            } else {
                b'a'
            });
        }
        name.extend_from_slice(tail.as_bytes());
        m(0x7f0000001000, 0x7f0000002000, perms, (0xfe, 0), 99, &name)
    }

    const SPLIT: usize = PATH_BYTES_IN_FIRST_RECORD;

    /// The base name pmap shows for the first record of a [`long`] mapping cut at `at`.
    fn first_base_name(at: usize) -> String {
        "a".repeat(at - at / 100 * 100 - 1)
    }

    #[test]
    fn a_long_line_prints_once_per_record() {
        let maps = [long("rw-p", SPLIT, "/tail")];
        assert_eq!(
            rows(&maps, PmapOptions::default()),
            [
                format!("00007f0000001000      4K rw--- {}", first_base_name(SPLIT)),
                "00007f0000001000      4K rw--- tail".into()
            ]
        );
        // The continuation did not convert a single field, so it keeps the first record's
        // already-edited mode ("rw---"), which no longer counts in any total.
        assert!(render(&maps, PmapOptions::default()).ends_with(" total                4K\n"));
        let path_rows = rows(&maps, PATH);
        assert_eq!(path_rows[1], "00007f0000001000      4K rw--- /tail");
    }

    #[test]
    fn a_line_of_exactly_1023_bytes_leaves_its_newline_as_a_record() {
        let maps = [long("r--p", SPLIT - 1, "z")];
        let got = rows(&maps, PmapOptions::default());
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            format!(
                "00007f0000001000      4K r---- {}z",
                first_base_name(SPLIT - 1)
            )
        );
        assert_eq!(got[1], "00007f0000001000      4K r----   [ anon ]");
    }

    #[test]
    fn a_shared_continuation_counts_twice() {
        let maps = [long("r--s", SPLIT, "qqq")];
        let text = render(&maps, PmapOptions::default());
        assert!(
            text.contains("\n00007f0000001000      4K r--s-   [ anon ]\n"),
            "{text}"
        );
        assert!(text.ends_with(" total                8K\n"), "{text}");
    }

    #[test]
    fn a_continuation_that_looks_like_fields_is_read_as_fields() {
        let maps = [long("rw-p", SPLIT, "bc-def rw-s 10 3:4 99 zzz/end")];
        let got = rows(&maps, PmapOptions::default());
        assert_eq!(got[1], "00000000000000bc      3K rw-s- end");
        // 4K for the first record, 0xdef - 0xbc bytes (rounded down in kB only when printed).
        let total = 0x1000 + 0xdef - 0xbc;
        assert!(
            render(&maps, PmapOptions::default())
                .ends_with(&format!(" total {:>16}K\n", total >> 10))
        );
    }

    #[test]
    fn a_continuation_can_pass_for_a_sysv_segment() {
        let maps = [long("rw-p", SPLIT, "1000-2000 rw-s 0 0:1 77 /SYSVx")];
        let got = render_with(
            &maps,
            0,
            Some(1),
            PmapOptions {
                quiet: true,
                show_path: false,
            },
        );
        assert!(
            got.ends_with("\n0000000000001000      4K rw-s-   [ shmid=0x4d ]\n"),
            "{got}"
        );
        // Undiscovered, pmap's sentinel minor ~0u can still be matched.
        let maps = [long("rw-p", SPLIT, "1000-2000 rw-s 0 0:ffffffff 77 /SYSVx")];
        let got = render_with(
            &maps,
            0,
            None,
            PmapOptions {
                quiet: true,
                show_path: false,
            },
        );
        assert!(
            got.ends_with("\n0000000000001000      4K rw-s-   [ shmid=0x4d ]\n"),
            "{got}"
        );
    }

    #[test]
    fn a_continuation_keeps_unconverted_fields() {
        let rows_for = |tail| {
            rows(&[long("rw-p", SPLIT, tail)], PmapOptions::default())
                .pop()
                .unwrap()
        };
        // Only the start converts: the size is end - start, modulo 2^64.
        assert_eq!(
            rows_for("-12 x"),
            "ffffffffffffffee 136365211656K rw---   [ anon ]"
        );
        assert_eq!(rows_for("0xg/q"), "0000000000000000 136365211656K rw--- q");
        // A short permission word leaves the rest of pmap's buffer as it was; the mode prints
        // up to the word's terminator.
        assert_eq!(
            rows_for("fffffffffffffffffffff-1 r x/y"),
            "ffffffffffffffff      0K r y"
        );
    }

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

    // Live comparisons with procps-ng pmap.

    const PMAP: &str = "/usr/bin/pmap";

    fn pmap_args(opts: PmapOptions) -> Vec<&'static str> {
        let mut args = Vec::new();
        if opts.quiet {
            args.push("-q");
        }
        if opts.show_path {
            args.push("-p");
        }
        args
    }

    fn reference(pid: i32, opts: PmapOptions, env: &[(&str, &str)]) -> Vec<u8> {
        let out = Command::new(PMAP)
            .args(pmap_args(opts))
            .arg(pid.to_string())
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {PMAP}: {e}"));
        assert!(
            out.status.success(),
            "{PMAP} {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn ours(pid: i32, opts: PmapOptions, codeset: Codeset) -> Vec<u8> {
        let mappings = seed::read_mappings(pid).unwrap();
        let header = seed::read_process_header_with(pid, codeset).unwrap();
        let view = ProcessView {
            pid,
            header: &header,
            start_stack: seed::read_start_stack(pid).unwrap(),
            sysv_shm_minor: seed::discover_shm_minor(),
            mappings: &mappings,
        };
        let mut out = Vec::new();
        write_default(&mut out, &view, &opts).unwrap();
        out
    }

    const ALL_OPTIONS: [PmapOptions; 4] = [
        PmapOptions {
            quiet: false,
            show_path: false,
        },
        PmapOptions {
            quiet: true,
            show_path: false,
        },
        PmapOptions {
            quiet: false,
            show_path: true,
        },
        PmapOptions {
            quiet: true,
            show_path: true,
        },
    ];

    /// Compares with pmap for a process that holds still; returns what `pmap PID` printed.
    fn assert_matches_pmap(pid: i32) -> String {
        for opts in ALL_OPTIONS {
            let want = reference(pid, opts, &[]);
            let got = ours(pid, opts, Codeset::from_environment());
            assert!(
                want == got,
                "pmap {:?} {pid} differs\n{}",
                pmap_args(opts),
                line_diff(&want, &got)
            );
        }
        String::from_utf8_lossy(&reference(pid, PmapOptions::default(), &[])).into_owned()
    }

    #[test]
    fn matches_pmap_for_this_process() {
        // This process keeps mapping memory (other tests, their threads), so a comparison counts
        // only when the mappings are the same before and after pmap reads them.
        let pid = std::process::id() as i32;
        for opts in ALL_OPTIONS {
            let mut last_stable_diff = None;
            let matched = (0..20).any(|_| {
                let before = ours(pid, opts, Codeset::from_environment());
                let want = reference(pid, opts, &[]);
                let after = ours(pid, opts, Codeset::from_environment());
                if before == after && before != want {
                    last_stable_diff = Some(line_diff(&want, &before));
                }
                before == want
            });
            assert!(
                matched,
                "pmap {:?} {pid} differs\n{}",
                pmap_args(opts),
                last_stable_diff.unwrap_or_else(|| "(mappings never held still)".into())
            );
        }
    }

    #[test]
    fn matches_pmap_for_sleep() {
        let child = sleeper();
        assert_matches_pmap(child.pid());
    }

    #[test]
    fn matches_pmap_for_odd_names_and_arguments() {
        let dir = TempDir::new("pmap-odd");
        let args: [&[u8]; 7] = [
            b"caf\xc3\xa9",
            b"bad\xff\xfe",
            b"x\x01y",
            b"nl\nx",
            b"",
            b"\xc3",
            b"end ",
        ];
        let child = mapper(b"py\tthon", &args, &odd_files(dir.path()));
        let text = assert_matches_pmap(child.pid());
        assert!(text.contains(" gone deleted.bin (deleted)\n"), "{text}");
        assert!(text.contains("   [ shmid=0x"), "{text}");
        // The header's escaping follows the locale's character set.
        for (env, codeset) in [("C", Codeset::SingleByte), ("C.UTF-8", Codeset::Utf8)] {
            let opts = PmapOptions::default();
            let want = reference(child.pid(), opts, &[("LC_ALL", env)]);
            let got = ours(child.pid(), opts, codeset);
            assert!(
                want == got,
                "LC_ALL={env} pmap differs\n{}",
                line_diff(&want, &got)
            );
        }
    }

    #[test]
    fn matches_pmap_for_lines_longer_than_its_buffer() {
        let dir = TempDir::new("pmap-long");
        let minor = seed::discover_shm_minor().expect("SysV shared memory");
        let child = mapper(b"python3", &[], &long_files(dir.path(), minor));
        let text = assert_matches_pmap(child.pid());
        // The fixture did produce continuation records that pmap reads as fields.
        assert!(
            text.contains("\n00000000000000bc      3K rw-s- end\n"),
            "{text}"
        );
        assert!(
            text.contains("\n0000000000001000      4K rw-s-   [ shmid=0x4d ]\n"),
            "{text}"
        );
    }

    #[test]
    fn matches_pmap_for_a_zombie() {
        let child = Child::spawn(Command::new("true"));
        wait_for_state(child.pid(), |s| s == 'Z');
        let text = assert_matches_pmap(child.pid());
        assert_eq!(
            text,
            format!(
                "{}:   [true] <defunct>\n total                0K\n",
                child.pid()
            )
        );
    }

    #[test]
    fn matches_pmap_for_a_kernel_thread() {
        // Outside a PID namespace, PID 2 is kthreadd.
        if std::fs::read("/proc/2/comm").ok().as_deref() != Some(b"kthreadd\n") {
            eprintln!("no kthreadd in this PID namespace; skipped");
            return;
        }
        assert_matches_pmap(2);
    }
}
