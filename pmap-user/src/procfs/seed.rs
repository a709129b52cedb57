//! The starting state of a traced process, read from `/proc`: its mappings, and what pmap shows
//! about it besides them (the command line after `PID:`, the main stack's address).
//!
//! `/proc/PID/maps` is parsed here rather than through `procfs::process::MemoryMaps`, which reads
//! lines as UTF-8 (failing on any other file name) and trims the path column; the path column
//! must reach the table byte for byte. `procfs` opens the process and parses `stat`.

use std::{
    ffi::CStr,
    fs::File,
    io::{self, Read},
};

use procfs::{FromRead, ProcError, process::Process, process::Stat};
use thiserror::Error;

use crate::{
    model::{Device, Mapping, Perms},
    procfs::access::Denial,
    render::{
        MAPS_NAME_COLUMN,
        smaps::{SmapsEntry, SmapsLayout},
    },
};

#[derive(Debug, Error)]
pub enum SeedError {
    #[error("no such process: {pid}")]
    NoSuchProcess { pid: i32 },
    #[error(
        "cannot read /proc/{pid}/{file}: permission denied ({}): {why}",
        errno_name(*errno)
    )]
    PermissionDenied {
        pid: i32,
        file: &'static str,
        errno: i32,
        why: Denial,
    },
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Io {
        pid: i32,
        file: &'static str,
        source: io::Error,
    },
    #[error("unexpected contents in /proc/{pid}/{file}: {detail}")]
    Malformed {
        pid: i32,
        file: &'static str,
        detail: String,
    },
}

impl SeedError {
    /// A refused read of `/proc/PID/FILE`, with why the kernel refused it.
    fn permission_denied(pid: i32, file: &'static str, errno: Option<i32>) -> SeedError {
        // procfs keeps the kind of error, not its number: the open is tried again to tell
        // EACCES (mm_access) from EPERM.
        let errno = errno
            .or_else(|| {
                File::open(format!("/proc/{pid}/{file}"))
                    .err()
                    .and_then(|err| err.raw_os_error())
            })
            .unwrap_or(libc::EACCES);
        SeedError::PermissionDenied {
            pid,
            file,
            errno,
            why: Denial::of(pid),
        }
    }

    fn from_io(pid: i32, file: &'static str, err: io::Error) -> SeedError {
        match err.kind() {
            io::ErrorKind::NotFound => SeedError::NoSuchProcess { pid },
            io::ErrorKind::PermissionDenied => {
                SeedError::permission_denied(pid, file, err.raw_os_error())
            }
            // Reading a file of a process that exited after the open.
            _ if err.raw_os_error() == Some(libc::ESRCH) => SeedError::NoSuchProcess { pid },
            _ => SeedError::Io {
                pid,
                file,
                source: err,
            },
        }
    }

    fn from_proc(pid: i32, file: &'static str, err: ProcError) -> SeedError {
        match err {
            ProcError::NotFound(_) => SeedError::NoSuchProcess { pid },
            ProcError::PermissionDenied(_) => SeedError::permission_denied(pid, file, None),
            ProcError::Io(source, _) => SeedError::from_io(pid, file, source),
            other => SeedError::Malformed {
                pid,
                file,
                detail: other.to_string(),
            },
        }
    }
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EACCES => "EACCES".into(),
        libc::EPERM => "EPERM".into(),
        other => format!("errno {other}"),
    }
}

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

/// Every mapping of `/proc/PID/smaps` and the lines under it, in address order.
fn read_smaps_file(pid: i32) -> Result<Vec<(Mapping, SmapsEntry)>, SeedError> {
    let mut reader = SmapsReader::open(pid)?;
    let entries = reader.by_ref().collect();
    match reader.error {
        Some(err) => Err(err),
        None => Ok(entries),
    }
}

/// `/proc/PID/smaps` read line by line, one mapping and the lines under it at a time: what
/// `-x`, `-X` and `-XX` print besides the mappings. With many mappings the file is large (72 MB
/// for 100 000), and a dump that prints each mapping as it comes holds only one. The iteration
/// ends at the end of the file or at the first error, which is kept.
pub struct SmapsReader<R = io::BufReader<File>> {
    pid: i32,
    input: R,
    /// The header line of the next mapping, read while looking for the end of the last one.
    next_header: Vec<u8>,
    pub error: Option<SeedError>,
}

impl SmapsReader {
    pub fn open(pid: i32) -> Result<SmapsReader, SeedError> {
        let file = open(pid)?
            .open_relative("smaps")
            .map_err(|e| SeedError::from_proc(pid, "smaps", e))?;
        Ok(SmapsReader::new(
            pid,
            io::BufReader::with_capacity(1 << 16, file),
        ))
    }
}

impl<R: io::BufRead> SmapsReader<R> {
    /// Reads the smaps text of `pid` (named in errors) from `input`.
    fn new(pid: i32, input: R) -> SmapsReader<R> {
        let mut reader = SmapsReader {
            pid,
            input,
            next_header: Vec::new(),
            error: None,
        };
        reader.read_line_into_header();
        if reader
            .next_header
            .first()
            .is_some_and(u8::is_ascii_uppercase)
        {
            reader.fail("a value line before any mapping".to_string());
        }
        reader
    }

    /// Reads the next line into `next_header` (empty at the end or on an error).
    fn read_line_into_header(&mut self) {
        self.next_header.clear();
        if let Err(err) = self.input.read_until(b'\n', &mut self.next_header) {
            self.next_header.clear();
            self.error = Some(SeedError::from_io(self.pid, "smaps", err));
        }
    }

    fn fail(&mut self, detail: String) {
        self.next_header.clear();
        self.error = Some(SeedError::Malformed {
            pid: self.pid,
            file: "smaps",
            detail,
        });
    }
}

impl<R: io::BufRead> Iterator for SmapsReader<R> {
    type Item = (Mapping, SmapsEntry);

    fn next(&mut self) -> Option<(Mapping, SmapsEntry)> {
        if self.next_header.is_empty() {
            return None;
        }
        let Some(mapping) = parse_maps_line(&self.next_header) else {
            let line = String::from_utf8_lossy(&self.next_header).into_owned();
            self.fail(format!("bad line {line:?}"));
            return None;
        };
        let mut details = Vec::new();
        loop {
            self.read_line_into_header();
            if !self.next_header.first().is_some_and(u8::is_ascii_uppercase) {
                break;
            }
            details.extend_from_slice(&self.next_header);
        }
        details.shrink_to_fit();
        let entry = SmapsEntry {
            start: mapping.start,
            end: mapping.end,
            details,
        };
        Some((mapping, entry))
    }
}

/// Everything pmap reads about a process, for a one-shot dump.
pub struct Snapshot {
    /// The thread-group id, which pmap prints even when given a thread's id.
    pub pid: i32,
    pub header: Vec<u8>,
    pub start_stack: u64,
    /// The mappings and, if asked for, their smaps lines; or why they could not be read, after
    /// pmap has printed the `PID:` line.
    pub maps: Result<(Vec<Mapping>, Vec<SmapsEntry>), SeedError>,
}

/// Reads `pid` as pmap does: a thread's id names its process. With `smaps`, the mappings and
/// their smaps lines come from one read of `/proc/PID/smaps`, as pmap reads only that file.
pub fn read_snapshot(pid: i32, smaps: bool) -> Result<Snapshot, SeedError> {
    let status = open(pid)?
        .status()
        .map_err(|e| SeedError::from_proc(pid, "status", e))?;
    let pid = status.tgid;
    let maps = if smaps {
        read_smaps_file(pid).map(|entries| entries.into_iter().unzip())
    } else {
        read_mappings(pid).map(|mappings| (mappings, Vec::new()))
    };
    Ok(Snapshot {
        pid,
        header: read_process_header(pid)?,
        start_stack: read_start_stack(pid)?,
        maps,
    })
}

/// The keys this kernel prints in smaps, from this process's own smaps (the built-in Linux 6.x
/// layout when it cannot be read): what a mapping without smaps lines is given.
pub fn discover_smaps_layout() -> SmapsLayout {
    File::open("/proc/self/smaps")
        .ok()
        .and_then(|file| {
            let pid = std::process::id() as i32;
            SmapsReader::new(pid, io::BufReader::new(file)).next()
        })
        .map(|(_, first)| SmapsLayout::from_details(&first.details))
        .unwrap_or_default()
}

/// The text procps `pmap` prints after `PID:   `: the command line, arguments joined by spaces,
/// or `[comm]` (with ` <defunct>` for a zombie) when the command line is empty, as for kernel
/// threads. Unprintable bytes are escaped as procps does for the locale's character set, taken
/// from the environment (`LC_ALL`, `LC_CTYPE`, `LANG`) the way pmap takes it. These are bytes, not
/// a `String`: in a UTF-8 locale pmap passes through sequences that are not valid UTF-8.
pub fn read_process_header(pid: i32) -> Result<Vec<u8>, SeedError> {
    read_process_header_with(pid, Codeset::from_environment())
}

/// [`read_process_header`] for an explicit character set.
pub fn read_process_header_with(pid: i32, codeset: Codeset) -> Result<Vec<u8>, SeedError> {
    let process = open(pid)?;
    // procps reads at most this much of the command line (`MAX_BUFSZ` less its terminator).
    const CMDLINE_MAX: u64 = 128 * 1024 - 1;
    let cmdline = match read_all(&process, pid, "cmdline", Some(CMDLINE_MAX)) {
        // procps treats an unreadable command line as an empty one.
        Err(SeedError::PermissionDenied { .. } | SeedError::Io { .. }) => Vec::new(),
        other => other?,
    };
    let stat_text = read_all(&process, pid, "stat", None)?;
    let stat = Stat::from_read(&stat_text[..]).map_err(|e| SeedError::from_proc(pid, "stat", e))?;
    let comm = raw_comm(&stat_text).ok_or_else(|| SeedError::Malformed {
        pid,
        file: "stat",
        detail: "no (comm) field".into(),
    })?;
    Ok(header_text(&cmdline, comm, stat.state == 'Z', codeset))
}

/// The header [`read_process_header`] reads, made from a command line recorded while the
/// process lived (NUL-separated arguments) and its command name.
pub fn header_from_cmdline(cmdline: &[u8], comm: &[u8]) -> Vec<u8> {
    header_text(cmdline, comm, false, Codeset::from_environment())
}

/// Whether `pid` is gone or a zombie (its exit has happened), from `/proc/PID/stat`.
pub fn has_exited(pid: i32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses and may contain either.
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| stat.get(close + 2));
    matches!(state, None | Some(b'Z' | b'X'))
}

/// The processes `pid` has forked that are still its children, from the `children` file of
/// each of its threads (a child is listed under the thread that forked it). Empty once `pid`
/// is gone.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children: Vec<i32> = threads
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    children.sort_unstable();
    children
}

/// `startstack` of `/proc/PID/stat`: the address pmap uses to tell the main stack (`[ stack ]`)
/// from other unnamed memory.
pub fn read_start_stack(pid: i32) -> Result<u64, SeedError> {
    let process = open(pid)?;
    let stat = process
        .stat()
        .map_err(|e| SeedError::from_proc(pid, "stat", e))?;
    Ok(stat.startstack)
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

/// Whether procps escapes text as UTF-8 or as a single-byte character set: the only distinction
/// its `escape_str` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codeset {
    Utf8,
    /// Any other locale, `C` included: every byte outside printable ASCII is replaced.
    SingleByte,
}

impl Codeset {
    /// The codeset pmap ends up with after `setlocale(LC_ALL, "")`: that of the locale the
    /// environment names, or `C`'s when that locale is not installed.
    pub fn from_environment() -> Codeset {
        // SAFETY: newlocale/nl_langinfo_l/freelocale on a locale object private to this call,
        // leaving the process's global locale untouched; the codeset string is copied before
        // the object is freed.
        unsafe {
            let locale = libc::newlocale(libc::LC_ALL_MASK, c"".as_ptr(), std::ptr::null_mut());
            if locale.is_null() {
                return Codeset::SingleByte;
            }
            let name = libc::nl_langinfo_l(libc::CODESET, locale);
            let utf8 = !name.is_null()
                && CStr::from_ptr(name)
                    .to_bytes()
                    .eq_ignore_ascii_case(b"UTF-8");
            libc::freelocale(locale);
            if utf8 {
                Codeset::Utf8
            } else {
                Codeset::SingleByte
            }
        }
    }
}

fn open(pid: i32) -> Result<Process, SeedError> {
    Process::new(pid).map_err(|e| SeedError::from_proc(pid, "", e))
}

fn read_all(
    process: &Process,
    pid: i32,
    file: &'static str,
    limit: Option<u64>,
) -> Result<Vec<u8>, SeedError> {
    let mut f: File = process
        .open_relative(file)
        .map_err(|e| SeedError::from_proc(pid, file, e))?;
    let mut buf = Vec::new();
    match limit {
        Some(limit) => f.take(limit).read_to_end(&mut buf),
        None => f.read_to_end(&mut buf),
    }
    .map_err(|e| SeedError::from_io(pid, file, e))?;
    Ok(buf)
}

/// The command name between the first `(` and the last `)` of a `stat` line, as procps takes it
/// (the name itself may contain parentheses).
fn raw_comm(stat: &[u8]) -> Option<&[u8]> {
    let open = stat.iter().position(|&b| b == b'(')? + 1;
    let close = stat.iter().rposition(|&b| b == b')')?;
    // procps rejects a line that ends right after the name.
    (close >= open && close + 1 < stat.len()).then(|| &stat[open..close])
}

/// procps' `fill_cmdline_cvt`: the command line with NULs and newlines turned into spaces,
/// trailing NULs dropped, then escaped; `[comm]` when it is empty.
fn header_text(cmdline: &[u8], comm: &[u8], zombie: bool, codeset: Codeset) -> Vec<u8> {
    if cmdline.is_empty() {
        let mut text = b"[".to_vec();
        text.extend(escape(comm, codeset));
        text.push(b']');
        if zombie {
            text.extend_from_slice(b" <defunct>");
        }
        return text;
    }
    let mut joined = cmdline.to_vec();
    let kept = joined.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    for b in &mut joined[..kept] {
        if *b == b'\n' || *b == 0 {
            *b = b' ';
        }
    }
    // Only the very last byte read is checked: a trailing NUL hides a space before it.
    if joined.last() == Some(&b' ') {
        joined.pop();
    }
    let end = joined.iter().position(|&b| b == 0).unwrap_or(joined.len());
    joined.truncate(end);
    let text = escape(&joined, codeset);
    if text.is_empty() { b"?".to_vec() } else { text }
}

/// procps' `escape_str`. In UTF-8 it walks characters by their lead byte alone (continuation bytes
/// are not checked) replacing control characters with `?`; from the first byte that cannot lead a
/// character, or a character cut short by the end, it falls back to the single-byte rule for the
/// rest: controls become `.`, bytes above ASCII `?`.
fn escape(text: &[u8], codeset: Codeset) -> Vec<u8> {
    fn single_byte(b: u8) -> u8 {
        match b {
            0x00..=0x1f | 0x7f => b'.',
            0x80..=0xff => b'?',
            _ => b,
        }
    }
    let mut out = text.to_vec();
    if codeset == Codeset::SingleByte {
        out.iter_mut().for_each(|b| *b = single_byte(*b));
        return out;
    }
    let mut i = 0;
    while i < out.len() {
        let width = match out[i] {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        if width == 0 || i + width > out.len() {
            out[i..].iter_mut().for_each(|b| *b = single_byte(*b));
            break;
        }
        if out[i] < 0x20 || out[i] == 0x7f {
            out[i] = b'?';
        }
        i += width;
    }
    out
}

/// Parses the text of a `/proc/PID/smaps` file: each mapping's maps line, then its `Key: value`
/// lines, which (unlike maps lines, which start with a hex digit) start with a capital.
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
fn parse_maps_line(line: &[u8]) -> Option<Mapping> {
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

/// Processes with unusual mappings and command lines, for tests that compare against `/proc`
/// and procps.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::{
        ffi::OsStr,
        fs,
        io::{BufRead, BufReader, Write},
        os::unix::{
            ffi::{OsStrExt, OsStringExt},
            process::CommandExt,
        },
        path::{Path, PathBuf},
        process::{Command, Stdio},
        sync::atomic::{AtomicU32, Ordering},
        time::{Duration, Instant},
    };

    /// A unified-style diff of `want` and `got` by lines (longest common subsequence), with
    /// three lines of context around each change; bytes outside printable ASCII are escaped.
    pub fn line_diff(want: &[u8], got: &[u8]) -> String {
        let want: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
        let got: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
        // common[i][j]: length of the longest common subsequence of want[i..] and got[j..].
        let mut common = vec![vec![0u32; got.len() + 1]; want.len() + 1];
        for i in (0..want.len()).rev() {
            for j in (0..got.len()).rev() {
                common[i][j] = if want[i] == got[j] {
                    common[i + 1][j + 1] + 1
                } else {
                    common[i + 1][j].max(common[i][j + 1])
                };
            }
        }
        let mut lines = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < want.len() || j < got.len() {
            if i < want.len() && j < got.len() && want[i] == got[j] {
                lines.push((' ', want[i]));
                (i, j) = (i + 1, j + 1);
            } else if j == got.len() || (i < want.len() && common[i + 1][j] >= common[i][j + 1]) {
                lines.push(('-', want[i]));
                i += 1;
            } else {
                lines.push(('+', got[j]));
                j += 1;
            }
        }
        let near_change = |k: usize| {
            lines[k.saturating_sub(3)..(k + 4).min(lines.len())]
                .iter()
                .any(|(tag, _)| *tag != ' ')
        };
        let mut out = String::from("--- expected (procps pmap)\n+++ got\n");
        let mut skipped = false;
        for (k, (tag, line)) in lines.iter().enumerate() {
            if near_change(k) {
                out += &format!("{tag}{}\n", line.escape_ascii());
                skipped = false;
            } else if !skipped {
                out += "@@\n";
                skipped = true;
            }
        }
        out
    }

    /// A directory of test files, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // Canonical, because the kernel prints mapped files by their canonical path.
            let base = fs::canonicalize(std::env::temp_dir()).unwrap();
            let path = base.join(format!("pmap-trace-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A child process, killed and reaped on drop.
    pub struct Child(std::process::Child);

    impl Child {
        pub fn spawn(mut command: Command) -> Child {
            Child(command.spawn().unwrap())
        }

        pub fn pid(&self) -> i32 {
            self.0.id() as i32
        }

        /// Its stdin, which the command must have piped.
        pub fn take_stdin(&mut self) -> std::process::ChildStdin {
            self.0.stdin.take().expect("stdin is piped")
        }

        /// Its stdout, which the command must have piped.
        pub fn take_stdout(&mut self) -> std::process::ChildStdout {
            self.0.stdout.take().expect("stdout is piped")
        }

        /// Stops the child (SIGSTOP) and waits until the kernel reports it stopped, so that its
        /// mappings hold still while they are compared.
        pub fn stop(&self) {
            // SAFETY: signals our own child, which is not reaped before drop.
            assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
            wait_for_state(self.pid(), |state| state == 'T');
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The state letter of `/proc/PID/stat`.
    pub fn state(pid: i32) -> Option<char> {
        let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.iter().rposition(|&b| b == b')')? + 2;
        stat.get(after).map(|&b| b as char)
    }

    pub fn wait_for_state(pid: i32, want: impl Fn(char) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !state(pid).is_some_and(&want) {
            assert!(
                Instant::now() < deadline,
                "process {pid} stuck in state {:?}",
                state(pid)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `sleep 600`, stopped once it sleeps.
    pub fn sleeper() -> Child {
        let mut command = Command::new("sleep");
        command.arg("600");
        let child = Child::spawn(command);
        let exe = Path::new("/proc").join(child.pid().to_string()).join("exe");
        let deadline = Instant::now() + Duration::from_secs(20);
        // Sleeping in sleep(1) itself, not in the forked test binary or the dynamic loader.
        while !(fs::read_link(&exe).is_ok_and(|p| p.ends_with("sleep"))
            && state(child.pid()) == Some('S'))
        {
            assert!(Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.stop();
        child
    }

    const MAPPER: &str = r#"
import ctypes, mmap, os, sys, time
keep = []
for path in sys.stdin.buffer.read().split(b"\0"):
    if not path:
        continue
    fd = os.open(path, os.O_RDWR)
    base = os.path.basename(path)
    keep.append(mmap.mmap(fd, 4096, mmap.MAP_SHARED if b"shared" in base else mmap.MAP_PRIVATE))
    os.close(fd)
    if b"deleted" in base:
        os.unlink(path)
libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
shmid = libc.shmget(0, 8192, 0o1600)
libc.shmat(shmid, None, 0)
libc.shmctl(shmid, 0, None)
memfd = os.memfd_create("pmap test memfd")
os.ftruncate(memfd, 4096)
keep.append(mmap.mmap(memfd, 4096))
keep.append(mmap.mmap(-1, 1 << 40, flags=mmap.MAP_PRIVATE | 0x4000, prot=0))
print("ready", flush=True)
time.sleep(600)
"#;

    /// A stopped `python3 -c` that maps each of `files` (shared when the file name contains
    /// "shared", then unlinked when it contains "deleted"), an attached-and-removed SysV segment,
    /// a memfd and a 1 TiB reservation. `argv0` and `extra_args` end up in its command line.
    pub fn mapper(argv0: &[u8], extra_args: &[&[u8]], files: &[PathBuf]) -> Child {
        let mut command = Command::new("python3");
        command
            .arg0(OsStr::from_bytes(argv0))
            .arg("-c")
            .arg(MAPPER)
            .args(extra_args.iter().map(|a| OsStr::from_bytes(a)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = Child(command.spawn().unwrap());
        let mut list = Vec::new();
        for file in files {
            list.extend_from_slice(file.as_os_str().as_bytes());
            list.push(0);
        }
        let mut stdin = child.0.stdin.take().unwrap();
        stdin.write_all(&list).unwrap();
        drop(stdin);
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the python mapper failed");
        child.stop();
        child
    }

    fn create(path: &Path) -> PathBuf {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, [b'x'; 4096]).unwrap();
        path.to_path_buf()
    }

    /// Files whose names exercise the kernel's and pmap's escaping and naming.
    pub fn odd_files(dir: &Path) -> Vec<PathBuf> {
        let names: &[&[u8]] = &[
            b"plain.bin",
            b"with space shared.bin",
            b"gone deleted.bin",
            b"fake (deleted)",
            b"tab\there",
            b"new\nline",
            b"utf8-\xc3\xa9.bin",
            b"invalid-\xff\xfe",
            b"del\x7f",
            b"back\\slash",
            b"[brackets]",
            b"SYSV00000000 (deleted)",
        ];
        names
            .iter()
            .map(|n| create(&dir.join(OsStr::from_bytes(n))))
            .collect()
    }

    /// Where pmap's 1023-byte `fgets` splits a maps line whose fixed columns are padded to the
    /// name column: 73 bytes of columns, then this many bytes of path.
    pub const PATH_BYTES_IN_FIRST_RECORD: usize = 1023 - 73;

    /// A file whose path has `tail` starting at byte `at`, the rest made of long components.
    pub fn long_file(dir: &Path, tag: &str, at: usize, tail: &str) -> PathBuf {
        let mut path = dir.join(tag).into_os_string().into_vec();
        path.push(b'/');
        let slash_before_tail = !tail.starts_with('/');
        loop {
            let room = at - path.len();
            if slash_before_tail && room <= 201 {
                path.extend(std::iter::repeat_n(b'a', room - 1));
                path.push(b'/');
                break;
            }
            if !slash_before_tail && room <= 200 {
                path.extend(std::iter::repeat_n(b'a', room));
                break;
            }
            path.extend(std::iter::repeat_n(b'a', 100));
            path.push(b'/');
        }
        assert_eq!(path.len(), at);
        path.extend_from_slice(tail.as_bytes());
        create(Path::new(OsStr::from_bytes(&path)))
    }

    /// Files whose maps lines are longer than pmap's line buffer, with continuations that pmap's
    /// `sscanf` reads as fields in various ways. `shm_minor` lets one continuation pass for a
    /// SysV segment.
    pub fn long_files(dir: &Path, shm_minor: u32) -> Vec<PathBuf> {
        let at = PATH_BYTES_IN_FIRST_RECORD;
        vec![
            long_file(dir, "rescan", at, "bc-def rw-s 10 3:4 99 zzz/end"),
            // The line is exactly 1023 bytes: its newline is a record of its own.
            long_file(dir, "exact", at - 1, "z"),
            long_file(dir, "slash", at, "/slashstart"),
            long_file(dir, "negative", at, "-12 x"),
            long_file(dir, "hexprefix", at, "0xg/q"),
            long_file(dir, "twice-shared", at, "qqq"),
            long_file(
                dir,
                "overflow",
                at,
                "fffffffffffffffffffff-1 r x/short-perms",
            ),
            long_file(
                dir,
                "spoof",
                at,
                &format!("1000-2000 rw-s 0 0:{shm_minor:x} 77 /SYSVx"),
            ),
            // Continuations that start with a capital are smaps keys to pmap, even in maps.
            long_file(dir, "capital-rss", at, "Rss: 77 kB/counted"),
            long_file(dir, "capital-swap", at, "Swap: 1/swapped"),
            long_file(
                dir,
                "three-records",
                at,
                &format!(
                    "c/{}/{}/{}/{}/{}/1ab-2 rw-p 0 0:0 0 k",
                    "d".repeat(200),
                    "e".repeat(200),
                    "f".repeat(200),
                    "g".repeat(200),
                    "h".repeat(200)
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};
    use crate::render::maps_line;

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
    fn smaps_lines_go_under_their_mapping() {
        let text: &[u8] = b"55b32b6bd000-55b32b6ec000 r--p 00000000 fe:00 247003                     /usr/bin/bash\n\
Size:                188 kB\n\
VmFlags: rd mr mw me \n\
7ff71f67a000-7ff71f73e000 rw-p 00000000 00:00 0 \n\
Rss:                   4 kB\n";
        let mut reader = SmapsReader::new(1, text);
        let entries: Vec<_> = reader.by_ref().collect();
        assert!(reader.error.is_none());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.name, b"/usr/bin/bash");
        assert_eq!(
            entries[0].1.details,
            b"Size:                188 kB\nVmFlags: rd mr mw me \n"
        );
        assert_eq!(entries[1].1.start, 0x7ff71f67a000);
        assert_eq!(entries[1].1.value("Rss"), Some(4));
        let mut orphan = SmapsReader::new(1, &b"Rss: 4 kB\n"[..]);
        assert!(orphan.next().is_none());
        assert!(orphan.error.is_some());
    }

    #[test]
    fn own_smaps_match_own_maps() {
        let pid = std::process::id() as i32;
        let (mappings, smaps) = read_snapshot(pid, true).unwrap().maps.unwrap();
        assert_eq!(mappings.len(), smaps.len());
        for (m, e) in mappings.iter().zip(&smaps) {
            assert_eq!((m.start, m.end), (e.start, e.end));
            assert_eq!(e.value("Size"), Some((m.end - m.start) >> 10));
        }
        assert_eq!(
            discover_smaps_layout(),
            SmapsLayout::from_details(&smaps[0].details)
        );
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
    fn missing_process_is_reported_as_such() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let pid = 1 << 23;
        assert!(matches!(read_mappings(pid), Err(SeedError::NoSuchProcess { pid: p }) if p == pid));
        assert!(matches!(
            read_process_header(pid),
            Err(SeedError::NoSuchProcess { .. })
        ));
        assert_eq!(
            read_mappings(pid).unwrap_err().to_string(),
            format!("no such process: {pid}")
        );
    }

    #[test]
    fn header_joins_arguments_with_spaces() {
        let h = |cmdline: &[u8]| header_text(cmdline, b"comm", false, Codeset::Utf8);
        assert_eq!(h(b"sleep\x00100\0"), b"sleep 100");
        assert_eq!(h(b"a\0\0\0"), b"a");
        assert_eq!(h(b"a\0\0b\0"), b"a  b");
        assert_eq!(h(b"nl\n\0"), b"nl ");
        // A space before the final NUL stays; a space (or newline) that is the last byte goes.
        assert_eq!(h(b"end \0"), b"end ");
        assert_eq!(h(b"retitled "), b"retitled");
        assert_eq!(h(b"x\n"), b"x");
        assert_eq!(h(b"\0\0"), b"?");
    }

    #[test]
    fn header_of_a_process_without_command_line() {
        assert_eq!(
            header_text(b"", b"kthreadd", false, Codeset::Utf8),
            b"[kthreadd]"
        );
        assert_eq!(
            header_text(b"", b"sleep", true, Codeset::Utf8),
            b"[sleep] <defunct>"
        );
        assert_eq!(
            header_text(b"", b"a\tb\xc3", false, Codeset::Utf8),
            b"[a?b?]"
        );
        assert_eq!(
            header_text(b"", b"a\tb", false, Codeset::SingleByte),
            b"[a.b]"
        );
    }

    #[test]
    fn header_escapes_as_procps_does() {
        let utf8 = |s: &[u8]| header_text(s, b"", false, Codeset::Utf8);
        let single = |s: &[u8]| header_text(s, b"", false, Codeset::SingleByte);
        assert_eq!(utf8(b"caf\xc3\xa9\0"), b"caf\xc3\xa9");
        assert_eq!(single(b"caf\xc3\xa9\0"), b"caf??");
        assert_eq!(utf8(b"bad\xff\xfe\0x\x01y\0"), b"bad?? x.y");
        assert_eq!(utf8(b"a\x01\0\xc3\0"), b"a? ?");
        assert_eq!(single(b"a\x01\0\xc3\0"), b"a. ?");
        // A lead byte swallows the next byte unchecked.
        assert_eq!(utf8(b"\xc3\0ok\x01\0"), b"\xc3 ok?");
        assert_eq!(utf8(b"sleep\x7f\0"), b"sleep?");
        assert_eq!(single(b"sleep\x7f\0"), b"sleep.");
    }

    #[test]
    fn comm_is_taken_between_the_outer_parentheses() {
        assert_eq!(raw_comm(b"12 (a) (b)) S 1 2"), Some(&b"a) (b)"[..]));
        assert_eq!(raw_comm(b"12 () S 1"), Some(&b""[..]));
        assert_eq!(raw_comm(b"12 (x)"), None);
    }

    #[test]
    fn own_start_stack_is_in_the_stack_mapping() {
        let pid = std::process::id() as i32;
        let start_stack = read_start_stack(pid).unwrap();
        let maps = read_mappings(pid).unwrap();
        let stack = maps.iter().find(|m| m.name == b"[stack]").unwrap();
        assert!(stack.start <= start_stack && start_stack <= stack.end);
    }

    #[test]
    fn shm_minor_is_found() {
        // SysV shared memory lives on the internal shm mount: an anonymous device, major 0.
        assert!(discover_shm_minor().is_some());
    }
}
