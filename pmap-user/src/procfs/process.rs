//! What pmap and the session read of a process besides its mappings: the command line pmap
//! prints after `PID:`, escaped as procps escapes it; the main stack's address; whether the
//! process has exited; its children.

use std::ffi::CStr;

use procfs::{FromRead, process::Stat};

use super::{SeedError, open, read_all};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::maps::read_mappings;

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
}
