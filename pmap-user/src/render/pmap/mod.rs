//! procps-ng `pmap` 4.0.2 output, byte for byte.
//!
//! pmap does not print mappings, it prints what its `fgets`/`sscanf` loops make of the lines of
//! `/proc/PID/maps` (default format, `-d`) or `/proc/PID/smaps` (`-x`, `-X`, `-XX`). So this
//! module replays pmap's loops on the text pmap would read (each mapping's maps line from the
//! table, plus the smaps lines read at dump time), quirks included, except where the result is
//! known without the text: a maps line that is one plain record prints from the table's fields
//! (see `one_proc`). The quirks: a line longer than pmap's 1023-byte buffer is read as
//! several records; a continuation record is rescanned into fields that keep whatever the
//! previous record left in them, or taken for an smaps key when it starts with a capital; `-x`
//! prints a mapping's name through a pointer into the line buffer after later lines were read
//! into it; `-X` cuts the path column at 127 bytes.
//!
//! Where pmap 4.0.2 has known bugs this follows upstream's fixes (see `docs/usage.md`): `-A` limits
//! `-X`/`-XX` too, `-X` totals are per process, and `-x` totals count only the mappings `-A` shows.

mod one_proc;
mod scan;
mod smaps_table;

use std::{
    borrow::Borrow,
    io::{self, Write},
};

use super::{digits::push_dec, smaps::smaps_text};
use crate::model::{Mapping, SmapsEntry, SmapsLayout};
use one_proc::{OneProc, Source};
use smaps_table::SmapsColumns;

/// What pmap knows about a process when it prints it.
#[derive(Clone, Copy, Debug)]
pub struct ProcessView<'a> {
    /// The process (thread-group) id; pmap prints the thread-group id even when given a thread.
    pub pid: i32,
    /// What pmap prints after `PID:   ` ([`crate::procfs::process::read_process_header`]).
    pub header: &'a [u8],
    /// `startstack` of `/proc/PID/stat` ([`crate::procfs::process::read_start_stack`]): an unnamed mapping
    /// reaching it prints as `[ stack ]`.
    pub start_stack: u64,
    /// Device minor of SysV shared memory on this host ([`crate::procfs::maps::discover_shm_minor`]):
    /// pmap prints such segments as `[ shmid=0x… ]`.
    pub sysv_shm_minor: Option<u32>,
    pub mappings: &'a [Mapping],
}

/// pmap's formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PmapFormat {
    /// `pmap PID`: address, size, mode, mapping.
    #[default]
    Default,
    /// `-x`: adds RSS and Dirty from smaps.
    Extended,
    /// `-d`: adds file offset and device, and a footer of mapped, writeable/private and shared.
    Device,
    /// `-X`: the smaps values pmap considers important.
    Smaps,
    /// `-XX`: every smaps value and the VmFlags.
    AllSmaps,
}

impl PmapFormat {
    /// Whether the format prints values only `/proc/PID/smaps` has.
    pub fn needs_smaps(self) -> bool {
        matches!(
            self,
            PmapFormat::Extended | PmapFormat::Smaps | PmapFormat::AllSmaps
        )
    }
}

/// `-A low,high`: the mappings shown are those with `end - 1 >= low` and `start <= high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRange {
    pub low: u64,
    pub high: u64,
}

impl Default for AddressRange {
    fn default() -> AddressRange {
        AddressRange {
            low: 0,
            high: u64::MAX,
        }
    }
}

/// pmap's `-A` argument, `LOW[,HIGH]` (one address alone is both), each read by
/// `strtoul(…, 16)`: an empty side keeps its default, a side with anything but one number is
/// refused, an overflowing number is the highest address.
pub fn parse_range(text: &str) -> Option<AddressRange> {
    let (low, high) = text.split_once(',').unwrap_or((text, text));
    let mut range = AddressRange::default();
    if !low.is_empty() {
        range.low = strtoul_hex(low.as_bytes())?;
    }
    if !high.is_empty() {
        range.high = strtoul_hex(high.as_bytes())?;
    }
    Some(range)
}

/// `strtoul(text, &end, 16)` when it must read all of `text`.
fn strtoul_hex(text: &[u8]) -> Option<u64> {
    let text = &text[text.iter().take_while(|&&b| scan::is_c_space(b)).count()..];
    let (negative, text) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // A "0x" prefix counts only when a hex digit follows it.
    let digits = match text {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => &text[2..],
        _ => text,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let value = scan::hex_value(digits);
    Some(if negative && value != u64::MAX {
        value.wrapping_neg()
    } else {
        value
    })
}

/// pmap's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmapOptions {
    pub format: PmapFormat,
    /// `-q`: no headings and no footer. pmap still prints the `PID:` line.
    pub quiet: bool,
    /// `-p`: a file mapping shows its path (from the first `/`) rather than its base name.
    pub show_path: bool,
    /// `-A`.
    pub range: AddressRange,
}

/// One line the default format, `-d` or `-x` prints (fields a format does not print are 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Index of the mapping (in [`ProcessView::mappings`]) whose line the row is from.
    pub mapping: usize,
    pub start: u64,
    /// `end - start`, wrapping as pmap's unsigned arithmetic does.
    pub size: u64,
    /// `rwx` plus `s` for shared or `-` for private, then `-`: pmap's 5-character mode column
    /// (shorter only when a continuation record rescans a short permission word).
    pub mode: Vec<u8>,
    pub name: Vec<u8>,
    /// `-d`: the file offset and the device.
    pub offset: u64,
    pub major: u32,
    pub minor: u32,
    /// `-x`: resident and dirty kB.
    pub rss: u64,
    pub dirty: u64,
}

/// One line `-X` or `-XX` prints, its fields as pmap scanned them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmapsRow {
    pub mapping: usize,
    pub start: u64,
    pub perms: Vec<u8>,
    pub offset: u64,
    pub device: Vec<u8>,
    pub inode: u64,
    /// The value of each column, by smaps key (kB for most).
    pub values: Vec<(Vec<u8>, u64)>,
    /// `-XX`: the VmFlags.
    pub flags: Option<Vec<u8>>,
    pub name: Vec<u8>,
}

/// Sums pmap keeps for its footers: sizes in bytes, smaps values in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub shared: u64,
    pub private_writeable: u64,
    pub private_readonly: u64,
    pub rss: u64,
    pub dirty: u64,
}

impl Totals {
    /// What the footers call the total or mapped size, in bytes.
    pub fn mapped(&self) -> u64 {
        self.shared
            .wrapping_add(self.private_writeable)
            .wrapping_add(self.private_readonly)
    }
}

/// What pmap printed for one process, as rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    /// The default format, `-d`, `-x`.
    Maps { rows: Vec<Row>, totals: Totals },
    /// `-X`, `-XX`.
    Smaps { rows: Vec<SmapsRow> },
}

/// One process's block: the text pmap prints for it and the same as rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessDump {
    pub text: Vec<u8>,
    pub table: Table,
}

/// One pmap invocation over several processes, `pmap OPTIONS PID...`: `-X` keeps its columns
/// and their widths from one process to the next.
pub struct PmapRun {
    opts: PmapOptions,
    /// A copy (a few dozen keys, once per run), so a run borrows nothing and can be handed
    /// from one process's dump to the next.
    layout: SmapsLayout,
    columns: SmapsColumns,
}

impl PmapRun {
    /// `layout` is this kernel's smaps layout, used for mappings the kernel has no lines for.
    pub fn new(opts: PmapOptions, layout: &SmapsLayout) -> PmapRun {
        PmapRun {
            opts,
            layout: layout.clone(),
            columns: SmapsColumns::default(),
        }
    }

    /// The options the run prints with.
    pub fn options(&self) -> &PmapOptions {
        &self.opts
    }

    /// The next process's block, as text and as rows. `smaps` is what `/proc/PID/smaps` held
    /// at dump time (empty when the process is gone); only `-x`, `-X` and `-XX` use it.
    pub fn process(&mut self, view: &ProcessView, smaps: &[SmapsEntry]) -> ProcessDump {
        let mut text = Vec::new();
        let table = self
            .render(&mut text, view, smaps.iter(), true)
            .expect("writing to a Vec cannot fail");
        ProcessDump { text, table }
    }

    /// Writes the next process's block to `out` as it is made, keeping no rows. `smaps` (in
    /// address order) is read as the mappings need it: a dump of many mappings never exists in
    /// memory as a whole (`-X` and `-XX` excepted: pmap sizes their columns over every mapping
    /// before printing the first, so their smaps lines are all read first).
    pub fn write_process<E: Borrow<SmapsEntry>>(
        &mut self,
        out: &mut dyn Write,
        view: &ProcessView,
        smaps: impl IntoIterator<Item = E>,
    ) -> io::Result<()> {
        self.render(out, view, smaps.into_iter(), false).map(drop)
    }

    fn render<E: Borrow<SmapsEntry>>(
        &mut self,
        out: &mut dyn Write,
        view: &ProcessView,
        smaps: impl Iterator<Item = E>,
        keep_rows: bool,
    ) -> io::Result<Table> {
        let mut pid_line = Vec::with_capacity(view.header.len() + 16);
        push_dec(&mut pid_line, (view.pid as u32).into(), 0);
        pid_line.extend_from_slice(b":   ");
        pid_line.extend_from_slice(view.header);
        pid_line.push(b'\n');
        out.write_all(&pid_line)?;
        let opts = &self.opts;
        Ok(if opts.format.needs_smaps() {
            if opts.format == PmapFormat::Extended {
                let mut texts = smaps_text(view.mappings, smaps, &self.layout);
                let (rows, totals) =
                    OneProc::new(view, opts, out, keep_rows).run(Source::Texts(&mut texts))?;
                Table::Maps { rows, totals }
            } else {
                let smaps: Vec<E> = smaps.collect();
                let texts = smaps_text(view.mappings, smaps.iter().map(E::borrow), &self.layout);
                let (body, rows) = self.columns.print(texts, opts);
                out.write_all(&body)?;
                Table::Smaps { rows }
            }
        } else {
            let (rows, totals) =
                OneProc::new(view, opts, out, keep_rows).run(Source::Maps(view.mappings))?;
            Table::Maps { rows, totals }
        })
    }
}

/// What `pmap PID` prints (in a format that reads only `/proc/PID/maps`: the default or `-d`,
/// with `-q`, `-p` and `-A` as `opts` say).
pub fn write_default(
    out: &mut impl Write,
    view: &ProcessView,
    opts: &PmapOptions,
) -> io::Result<()> {
    let layout = SmapsLayout::default();
    PmapRun::new(*opts, &layout).write_process(out, view, std::iter::empty::<SmapsEntry>())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::{
        model::{Device, Perms},
        procfs::{
            fixtures::*,
            maps,
            process::{self, Codeset},
            smaps,
        },
    };

    fn m(start: u64, end: u64, perms: &str, dev: (u32, u32), inode: u64, name: &[u8]) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms::parse(perms.as_bytes()).expect("a maps permission word"),
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
        format: PmapFormat::Default,
        quiet: false,
        show_path: true,
        range: AddressRange {
            low: 0,
            high: u64::MAX,
        },
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
                    show_path: false,
                    ..PmapOptions::default()
                }
            ),
            "4242:   cmd\n0000000000001000      4K rw---   [ anon ]\n"
        );
    }

    #[test]
    fn ranges_are_read_as_pmap_reads_them() {
        let r = |text| parse_range(text).map(|r| (r.low, r.high));
        assert_eq!(r("7f00,7fff"), Some((0x7f00, 0x7fff)));
        assert_eq!(r("0x10"), Some((0x10, 0x10)));
        assert_eq!(r(",ff"), Some((0, 0xff)));
        assert_eq!(r("ff,"), Some((0xff, u64::MAX)));
        assert_eq!(r(""), Some((0, u64::MAX)));
        assert_eq!(r(" -1"), Some((u64::MAX, u64::MAX)));
        assert_eq!(r("-2,"), Some((u64::MAX - 1, u64::MAX)));
        assert_eq!(r("fffffffffffffffffff"), Some((u64::MAX, u64::MAX)));
        assert_eq!(r("0x"), None);
        assert_eq!(r("12,34,56"), None);
        assert_eq!(r("1 "), None);
        assert_eq!(r("g"), None);
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
                    ..PmapOptions::default()
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
                    show_path: true,
                    ..PmapOptions::default()
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
                ..PmapOptions::default()
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
                ..PmapOptions::default()
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

    mod printed_from_fields {
        //! The default format and `-d` print a one-record maps line from the table's fields;
        //! that must be what replaying pmap on the line prints, for any mix of mappings.

        use proptest::prelude::*;

        use super::*;
        use crate::render::{maps_line, pmap::one_proc::Source};

        /// pmap replayed on every mapping's maps line: the default format and `-d` as they were
        /// printed before any line was printed from fields.
        fn replayed(view: &ProcessView, opts: &PmapOptions) -> (Vec<u8>, Vec<Row>, Totals) {
            let mut lines = view.mappings.iter().map(maps_line).enumerate();
            let mut text = Vec::new();
            let (rows, totals) = OneProc::new(view, opts, &mut text, true)
                .run(Source::Texts(&mut lines))
                .unwrap();
            (text, rows, totals)
        }

        /// Path columns made of pieces that matter to pmap: slashes, `/SYSV`, bytes it prints
        /// as `?`, newlines and NULs (which end an `fgets` record or a C string), and runs long
        /// enough to push a line past pmap's 1023-byte buffer.
        fn name() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"/".to_vec()),
                Just(b"/SYSV00000000 (deleted)".to_vec()),
                Just(b"[heap]".to_vec()),
                Just(b"lib x.so".to_vec()),
                Just(b"\t\x7f\xc3\xa9".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\0".to_vec()),
                Just(b"7f00-8000 rw-s 10 0:1 77 ".to_vec()),
                (1usize..1100).prop_map(|n| vec![b'a'; n]),
            ];
            prop_oneof![
                Just(Vec::new()),
                proptest::collection::vec(piece, 1..5).prop_map(|p| p.concat()),
            ]
        }

        fn mapping() -> impl Strategy<Value = Mapping> {
            (
                (0u64..0x20, 1u64..4, any::<bool>()),
                (any::<[bool; 4]>(), prop_oneof![Just(0u64), any::<u64>()]),
                (0u32..2, 0u32..3, prop_oneof![Just(0u64), any::<u64>()]),
                name(),
            )
                .prop_map(
                    |((page, pages, high), (p, offset), (major, minor, inode), name)| {
                        let base = if high { 0x7fff_0000_0000 } else { 0 };
                        let start = base + page * 0x1000;
                        Mapping {
                            start,
                            end: start + pages * 0x1000,
                            perms: Perms {
                                read: p[0],
                                write: p[1],
                                exec: p[2],
                                shared: p[3],
                            },
                            offset,
                            device: Device { major, minor },
                            inode,
                            name,
                        }
                    },
                )
        }

        fn options() -> impl Strategy<Value = PmapOptions> {
            (
                prop_oneof![Just(PmapFormat::Default), Just(PmapFormat::Device)],
                any::<bool>(),
                any::<bool>(),
                prop_oneof![
                    Just(AddressRange::default()),
                    (0u64..0x30000, 0u64..0x30000)
                        .prop_map(|(low, high)| AddressRange { low, high }),
                ],
            )
                .prop_map(|(format, quiet, show_path, range)| PmapOptions {
                    format,
                    quiet,
                    show_path,
                    range,
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            #[test]
            fn equals_the_replay_of_the_maps_lines(
                mappings in proptest::collection::vec(mapping(), 0..12),
                opts in options(),
                start_stack in prop_oneof![Just(0u64), 0u64..0x30000],
                shm_minor in prop_oneof![Just(None), (0u32..3).prop_map(Some)],
            ) {
                let view = ProcessView {
                    pid: 7,
                    header: b"cmd",
                    start_stack,
                    sysv_shm_minor: shm_minor,
                    mappings: &mappings,
                };
                let layout = SmapsLayout::default();
                let dump = PmapRun::new(opts, &layout).process(&view, &[]);
                let (text, rows, totals) = replayed(&view, &opts);
                let body = &dump.text[dump.text.iter().position(|&b| b == b'\n').unwrap() + 1..];
                prop_assert!(body == text, "{}", line_diff(&text, body));
                prop_assert_eq!(dump.table, Table::Maps { rows, totals });
            }
        }
    }

    // Live comparisons with procps-ng pmap, in the formats whose values do not depend on which
    // other processes map the same pages (-X's Pss does: the integration tests compare it with
    // pmap running on private copies of its libraries).

    const PMAP: &str = "/usr/bin/pmap";

    fn pmap_args(opts: PmapOptions) -> Vec<String> {
        let mut args: Vec<String> = match opts.format {
            PmapFormat::Default => vec![],
            PmapFormat::Extended => vec!["-x".into()],
            PmapFormat::Device => vec!["-d".into()],
            PmapFormat::Smaps => vec!["-X".into()],
            PmapFormat::AllSmaps => vec!["-XX".into()],
        };
        if opts.quiet {
            args.push("-q".into());
        }
        if opts.show_path {
            args.push("-p".into());
        }
        if opts.range != AddressRange::default() {
            args.push(format!("-A{:x},{:x}", opts.range.low, opts.range.high));
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
        let mappings = maps::read_mappings(pid).unwrap();
        let smaps: Vec<SmapsEntry> = smaps::SmapsReader::open(pid)
            .unwrap()
            .map(|(_, e)| e)
            .collect();
        let header = process::read_process_header_with(pid, codeset).unwrap();
        let view = ProcessView {
            pid,
            header: &header,
            start_stack: process::read_start_stack(pid).unwrap(),
            sysv_shm_minor: maps::discover_shm_minor(),
            mappings: &mappings,
        };
        let layout = smaps::discover_smaps_layout();
        PmapRun::new(opts, &layout).process(&view, &smaps).text
    }

    /// What pmap prints with the fix this module makes: pmap 4.0.2's `-x` total line adds up
    /// the RSS and Dirty of the mappings below `-A` too (it stops reading at the first above);
    /// the fixed one leaves out those the unranged `pmap -x` lists below the range.
    fn with_fixes(pid: i32, reference_text: Vec<u8>, opts: PmapOptions) -> Vec<u8> {
        if opts.format != PmapFormat::Extended
            || opts.quiet
            || opts.range == AddressRange::default()
        {
            return reference_text;
        }
        let tokens = |line: &[u8]| -> Vec<Vec<u8>> {
            line.split(|&b| b == b' ' || b == b'\n')
                .filter(|t| !t.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let number = |token: &[u8]| -> u64 { std::str::from_utf8(token).unwrap().parse().unwrap() };
        let unranged = reference(
            pid,
            PmapOptions {
                range: AddressRange::default(),
                ..opts
            },
            &[],
        );
        let (mut rss, mut dirty) = (0, 0);
        for line in unranged.split(|&b| b == b'\n') {
            let t = tokens(line);
            if t.len() < 4 || t[0].len() != 16 || !t[0].iter().all(u8::is_ascii_hexdigit) {
                continue;
            }
            let start = u64::from_str_radix(std::str::from_utf8(&t[0]).unwrap(), 16).unwrap();
            let end = start.wrapping_add(number(&t[1]) << 10);
            if end.wrapping_sub(1) < opts.range.low {
                rss += number(&t[2]);
                dirty += number(&t[3]);
            }
        }
        let lines: Vec<&[u8]> = reference_text.split_inclusive(|&b| b == b'\n').collect();
        let (total, rows) = lines.split_last().unwrap();
        let t = tokens(total);
        let mut fixed = rows.concat();
        fixed.extend(
            format!(
                "{:<16} {:>7} {:>7} {:>7}\n",
                "total kB",
                number(&t[2]),
                number(&t[3]) - rss,
                number(&t[4]) - dirty
            )
            .bytes(),
        );
        fixed
    }

    /// Every combination of the formats compared here with -q and -p, and two ranges.
    fn all_options() -> Vec<PmapOptions> {
        let mut all = Vec::new();
        for format in [
            PmapFormat::Default,
            PmapFormat::Device,
            PmapFormat::Extended,
        ] {
            for (quiet, show_path) in [(false, false), (true, false), (false, true), (true, true)] {
                all.push(PmapOptions {
                    format,
                    quiet,
                    show_path,
                    range: AddressRange::default(),
                });
            }
            // Cutting through the middle of the address space, and a single address.
            for (low, high) in [(0x7f0000000000, 0x7fff00000000), (0x1000, 0x1000)] {
                all.push(PmapOptions {
                    format,
                    range: AddressRange { low, high },
                    ..PmapOptions::default()
                });
            }
        }
        all
    }

    /// Compares with pmap for a process that holds still; returns what `pmap PID` printed.
    fn assert_matches_pmap(pid: i32) -> String {
        for opts in all_options() {
            let want = with_fixes(pid, reference(pid, opts, &[]), opts);
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
        for opts in all_options() {
            let mut last_stable_diff = None;
            let matched = (0..20).any(|_| {
                let before = ours(pid, opts, Codeset::from_environment());
                let want = with_fixes(pid, reference(pid, opts, &[]), opts);
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
        let minor = maps::discover_shm_minor().expect("SysV shared memory");
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
