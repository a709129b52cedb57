//! Names for JIT-compiled code from perf map files, as perf (`tools/perf/util/symbol.c`,
//! `dso__load_perf_map`) and bpftrace read them: the runtime writes `/tmp/perf-PID.map`, one
//! `START SIZE name` line per piece of code it generated (hex numbers, `0x` optional). node
//! writes it with `--perf-basic-prof`, OpenJDK when asked (`jcmd PID Compiler.perfmap`).
//!
//! Runtimes append as they compile, so a file is read again from where the last read stopped
//! when it has grown; only reports ask, so nothing here runs while events stream in. Code a
//! runtime frees can be replaced by other code at the same addresses: a later line wins over
//! the earlier ones it overlaps.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::PathBuf,
    sync::Arc,
};

use crate::sites::symbolize::SymbolFrame;

/// One line: the code's start, its size and its name.
pub fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let hex = |field: &str| {
        let digits = field.strip_prefix("0x").unwrap_or(field);
        u64::from_str_radix(digits, 16).ok()
    };
    let mut fields = line.splitn(3, ' ');
    let start = hex(fields.next()?)?;
    let size = hex(fields.next()?)?;
    let name = fields.next()?.trim_end();
    (size > 0 && !name.is_empty()).then_some((start, size, name))
}

/// `name` without the tier V8 writes after its tag (`JS:~f` interpreted, `^` baseline, `+`
/// Maglev, `*` TurboFan: `CodeKindToMarker` in V8's src/objects/code-kind.cc): a function is
/// one frame in whichever tier it ran, as the JVM names its tiers alike. Kept, its memory
/// splits into a site per tier at whatever moment V8 tiers the function up, which depends on
/// all the code the process ran before (Sparkplug compiles in batches of queued functions).
fn without_v8_tier(name: &str) -> Cow<'_, str> {
    if let Some((tag, rest)) = name.split_once(':')
        && !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphabetic())
        && let Some(function) = rest.strip_prefix(['~', '^', '+', '*'])
    {
        return format!("{tag}:{function}").into();
    }
    name.into()
}

/// The code ranges of one process and their names, the latest line for each address.
#[derive(Default)]
pub struct JitSymbols {
    /// By start: (end, frame).
    ranges: BTreeMap<u64, (u64, Arc<SymbolFrame>)>,
}

impl JitSymbols {
    /// Adds `name` for `start..start + size`, dropping the earlier ranges it overlaps.
    pub fn insert(&mut self, start: u64, size: u64, frame: Arc<SymbolFrame>) {
        let end = start.saturating_add(size);
        if let Some((&before, &(before_end, _))) = self.ranges.range(..start).next_back()
            && before_end > start
        {
            self.ranges.remove(&before);
        }
        let overlapped: Vec<u64> = self.ranges.range(start..end).map(|(&s, _)| s).collect();
        for gone in overlapped {
            self.ranges.remove(&gone);
        }
        self.ranges.insert(start, (end, frame));
    }

    /// The frame for the code at `addr`, if a line covers it.
    pub fn lookup(&self, addr: u64) -> Option<&Arc<SymbolFrame>> {
        self.ranges
            .range(..=addr)
            .next_back()
            .filter(|(_, (end, _))| addr < *end)
            .map(|(_, (_, frame))| frame)
    }

    /// Adds every complete line of `text` (a line a runtime is still writing has no newline
    /// yet) and returns the bytes taken. Lines that do not parse are skipped.
    pub fn add_lines(&mut self, text: &[u8], module: &str) -> usize {
        let Some(last_newline) = text.iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        for line in text[..last_newline].split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            if let Some((start, size, name)) = parse_line(&line) {
                let frame = SymbolFrame {
                    function: without_v8_tier(name).into_owned(),
                    file: None,
                    line: None,
                    module: Some(module.to_string()),
                    inlined: false,
                };
                self.insert(start, size, Arc::new(frame));
            }
        }
        last_newline + 1
    }
}

/// One process's perf map file and what has been read of it.
struct PerfMap {
    path: PathBuf,
    /// The file name, which JIT frames show as their module.
    module: String,
    /// Who may have written it: the process's user (or root).
    owner: u32,
    /// The file read last (device, inode) and the bytes taken from it.
    read_from: Option<(u64, u64)>,
    taken: u64,
    symbols: JitSymbols,
}

impl PerfMap {
    /// The perf map of process `pid`: `/tmp/perf-NSPID.map` as the process sees `/tmp` (its
    /// mount namespace) and names itself (its pid namespace), as perf finds it.
    fn of_process(pid: u32) -> Option<PerfMap> {
        let owner = fs::metadata(format!("/proc/{pid}")).ok()?.uid();
        let ns_pid = namespace_pid(pid).unwrap_or(pid);
        let module = format!("perf-{ns_pid}.map");
        Some(PerfMap {
            path: PathBuf::from(format!("/proc/{pid}/root/tmp/{module}")),
            module,
            owner,
            read_from: None,
            taken: 0,
            symbols: JitSymbols::default(),
        })
    }

    /// Reads what was appended since the last read (all of it if the file was replaced or
    /// truncated). A file that is missing, a symbolic link, or owned by another user than the
    /// process's or root is not read: in the shared `/tmp` anyone could have put it there.
    fn refresh(&mut self) {
        let Ok(mut file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
        else {
            return;
        };
        let Ok(meta) = file.metadata() else { return };
        if !meta.is_file() || (meta.uid() != self.owner && meta.uid() != 0) {
            return;
        }
        let identity = (meta.dev(), meta.ino());
        if self.read_from != Some(identity) || meta.len() < self.taken {
            self.read_from = Some(identity);
            self.taken = 0;
            self.symbols = JitSymbols::default();
        }
        if meta.len() > self.taken {
            self.taken += read_lines_from(&mut file, self.taken, &mut self.symbols, &self.module);
        }
    }
}

/// Adds the complete lines of `file` from `offset` on; returns the bytes taken.
fn read_lines_from(file: &mut File, offset: u64, symbols: &mut JitSymbols, module: &str) -> u64 {
    let mut text = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut text).is_err() {
        return 0;
    }
    symbols.add_lines(&text, module) as u64
}

/// The pid process `pid` has in its own pid namespace (the last of `NSpid` in its status).
fn namespace_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The perf maps of the traced processes, each read when a report first needs it.
#[derive(Default)]
pub struct PerfMaps {
    by_pid: HashMap<u32, Option<PerfMap>>,
}

impl PerfMaps {
    /// Reads what process `pid`'s perf map gained since the last call.
    pub fn refresh(&mut self, pid: u32) {
        if let Some(map) = self
            .by_pid
            .entry(pid)
            .or_insert_with(|| PerfMap::of_process(pid))
        {
            map.refresh();
        }
    }

    /// The name process `pid`'s perf map gives the code at `addr`, as read by the last
    /// [`PerfMaps::refresh`].
    pub fn frame(&self, pid: u32, addr: u64) -> Option<&Arc<SymbolFrame>> {
        self.by_pid.get(&pid)?.as_ref()?.symbols.lookup(addr)
    }

    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(symbols: &JitSymbols, addrs: &[u64]) -> Vec<Option<String>> {
        addrs
            .iter()
            .map(|&a| symbols.lookup(a).map(|f| f.function.clone()))
            .collect()
    }

    #[test]
    fn parses_node_and_jvm_lines() {
        // node --perf-basic-prof: bare hex.
        assert_eq!(
            parse_line("3cb1ff416ca6 4f JS:~growBuffers /srv/grow.js:3:21"),
            Some((0x3cb1ff416ca6, 0x4f, "JS:~growBuffers /srv/grow.js:3:21"))
        );
        // jcmd Compiler.perfmap: 0x-prefixed, names with spaces.
        assert_eq!(
            parse_line("0x00007fa5dcec7600 0x0000000000000078 void Grow.fillBuffers(int)"),
            Some((0x7fa5dcec7600, 0x78, "void Grow.fillBuffers(int)"))
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("10 zz name"), None);
        assert_eq!(parse_line("10 0 empty"), None);
        assert_eq!(parse_line("10 20"), None);
    }

    /// V8 marks each line with the tier of the code (`CodeKindToMarker`): one function's
    /// interpreted, baseline and optimized code must name one frame, or its memory splits
    /// into one site per tier (each ranked on its own) at whatever moment V8 tiers up.
    #[test]
    fn the_tiers_of_one_v8_function_name_one_frame() {
        let mut symbols = JitSymbols::default();
        symbols.add_lines(
            b"1000 100 JS:~growMore /srv/grow.js:10:18\n\
              2000 100 JS:^growMore /srv/grow.js:10:18\n\
              3000 100 JS:+growMore /srv/grow.js:10:18\n\
              4000 100 JS:*growMore /srv/grow.js:10:18\n\
              5000 100 JS:~ /srv/grow.js:17:16\n",
            "perf-1.map",
        );
        let frames: Vec<_> = [0x1000, 0x2000, 0x3000, 0x4000]
            .map(|addr| symbols.lookup(addr).unwrap().clone())
            .into();
        assert_eq!(frames[0].function, "JS:growMore /srv/grow.js:10:18");
        assert!(frames.iter().all(|frame| **frame == *frames[0]));
        assert_eq!(
            names(&symbols, &[0x5000]),
            [Some("JS: /srv/grow.js:17:16".into())]
        );
    }

    #[test]
    fn names_without_a_v8_tier_are_kept_as_written() {
        for name in [
            "void Grow.fillBuffers(int, int)",
            "Interpreter",
            "Foo::~Foo()",
            "Builtin:ArrayBufferConstructor",
            "JS:",
            "~tilde",
            "a b:~c",
        ] {
            assert_eq!(without_v8_tier(name), name);
        }
        assert_eq!(
            without_v8_tier("Script:~ /srv/app.js"),
            "Script: /srv/app.js"
        );
    }

    #[test]
    fn a_later_line_wins_over_the_code_it_replaced() {
        let mut symbols = JitSymbols::default();
        let taken = symbols.add_lines(b"1000 100 old\n1100 100 next\n", "perf-1.map");
        assert_eq!(taken, 27);
        assert_eq!(
            names(&symbols, &[0xfff, 0x1000, 0x10ff, 0x1100, 0x1200]),
            [
                None,
                Some("old".into()),
                Some("old".into()),
                Some("next".into()),
                None
            ]
        );
        // Code freed and replaced by new code straddling both.
        symbols.add_lines(b"1080 100 new\n", "perf-1.map");
        assert_eq!(
            names(&symbols, &[0x1000, 0x1080, 0x117f, 0x1180]),
            [None, Some("new".into()), Some("new".into()), None]
        );
        assert_eq!(
            symbols.lookup(0x1080).unwrap().module.as_deref(),
            Some("perf-1.map")
        );
    }

    #[test]
    fn a_line_still_being_written_waits_for_its_newline() {
        let mut symbols = JitSymbols::default();
        assert_eq!(symbols.add_lines(b"1000 10 a\n2000 1", "m"), 10);
        assert_eq!(names(&symbols, &[0x2000]), [None]);
        assert_eq!(symbols.add_lines(b"2000 10 b\n", "m"), 10);
        assert_eq!(
            names(&symbols, &[0x1000, 0x2000]),
            [Some("a".into()), Some("b".into())]
        );
    }

    /// A perf map for this test process, read as a traced process's would be: appended lines
    /// are read at the next refresh, a replaced file from its start; a symbolic link or a
    /// file of another user is not read.
    #[test]
    fn the_file_is_read_again_as_it_grows_or_is_replaced() {
        let pid = std::process::id();
        let path = PathBuf::from(format!("/tmp/perf-{pid}.map"));
        fs::write(&path, "1000 10 first\n2000 10 sec").unwrap();
        let mut maps = PerfMaps::default();
        maps.refresh(pid);
        let name = |maps: &PerfMaps, addr| maps.frame(pid, addr).map(|f| f.function.clone());
        assert_eq!(name(&maps, 0x1004).as_deref(), Some("first"));
        assert_eq!(name(&maps, 0x2004), None);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"ond\n").unwrap();
        maps.refresh(pid);
        assert_eq!(name(&maps, 0x2004).as_deref(), Some("second"));
        // Replaced (a new process with the same pid): only the new file's lines count.
        fs::remove_file(&path).unwrap();
        fs::write(&path, "3000 10 third\n").unwrap();
        maps.refresh(pid);
        assert_eq!(name(&maps, 0x1004), None);
        assert_eq!(name(&maps, 0x3004).as_deref(), Some("third"));
        // A symbolic link is not followed.
        fs::remove_file(&path).unwrap();
        let target = PathBuf::from(format!("/tmp/perf-{pid}.target"));
        fs::write(&target, "4000 10 planted\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        maps.forget(pid);
        maps.refresh(pid);
        assert_eq!(name(&maps, 0x4004), None);
        fs::remove_file(&path).unwrap();
        fs::remove_file(&target).unwrap();
        // Nor a file another user owns (checked where the test may hand it to one: as root).
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            fs::write(&path, "5000 10 foreign\n").unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            maps.forget(pid);
            maps.refresh(pid);
            assert_eq!(name(&maps, 0x5004), None);
            std::os::unix::fs::chown(&path, Some(0), None).unwrap();
            maps.refresh(pid);
            assert_eq!(name(&maps, 0x5004).as_deref(), Some("foreign"));
            fs::remove_file(&path).unwrap();
        }
    }
}
