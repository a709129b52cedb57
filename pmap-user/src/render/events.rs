//! One output line per event: text (strace-like) or a JSON object with stable field names.

use std::io::Write as _;

use pmap_common::linux::{MAP_HUGE_MASK, MAP_HUGE_SHIFT, MAP_TYPE};
use serde_json::{Map, Value, json};

use super::digits::{push_dec, push_dec_zero_padded, push_prefixed_hex, push_signed};
use crate::{
    decode::{Arg, ArgKind, Call, Event, EventKind, Returns},
    model::{ExitStatus, signal_name, syscall_failed},
    sites::GrowthSite,
};

/// What the table knows about an event at the moment it was applied.
#[derive(Clone, Debug, Default)]
pub struct EventContext {
    /// Path column of the mapping a file-backed call created, as `/proc/PID/maps` prints it.
    pub path: Option<Vec<u8>>,
    /// How the process ended, for the exit of a process pmap-trace started (its parent, it
    /// alone is told).
    pub exit: Option<ExitStatus>,
    /// The call site of a call that grew anonymous memory (call sites on).
    pub site: Option<GrowthSite>,
}

/// Converts the kernel's monotonic timestamps to wall-clock time for display.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Realtime minus monotonic, in nanoseconds, measured once at start-up.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid clock id and out-pointer.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        Clock {
            offset_ns: read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC),
        }
    }

    #[cfg(test)]
    pub fn with_offset(offset_ns: i128) -> Self {
        Clock { offset_ns }
    }

    /// Nanoseconds since the Unix epoch for a `CLOCK_MONOTONIC` timestamp.
    pub fn wall_ns(&self, monotonic_ns: u64) -> i128 {
        monotonic_ns as i128 + self.offset_ns
    }

    /// `HH:MM:SS.micros` in local time, as `strace -tt` prints it.
    pub fn time_of_day(&self, monotonic_ns: u64) -> String {
        let mut text = Vec::with_capacity(15);
        let (secs, micros) = self.split(monotonic_ns);
        text.extend_from_slice(&local_hms(secs));
        push_micros(&mut text, micros);
        String::from_utf8(text).expect("digits and colons")
    }

    /// Whole seconds since the epoch and the microseconds after them.
    fn split(&self, monotonic_ns: u64) -> (libc::time_t, u64) {
        let wall = self.wall_ns(monotonic_ns);
        let secs = wall.div_euclid(1_000_000_000) as libc::time_t;
        let micros = (wall.rem_euclid(1_000_000_000) / 1000) as u64;
        (secs, micros)
    }
}

/// `HH:MM:SS` of `secs` in local time.
fn local_hms(secs: libc::time_t) -> [u8; 8] {
    // SAFETY: zeroed tm is a valid out-parameter for localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; localtime_r is thread-safe.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    let two = |v: libc::c_int| {
        let v = v.clamp(0, 99) as u8;
        [b'0' + v / 10, b'0' + v % 10]
    };
    let ([h1, h2], [m1, m2], [s1, s2]) = (two(tm.tm_hour), two(tm.tm_min), two(tm.tm_sec));
    [h1, h2, b':', m1, m2, b':', s1, s2]
}

/// `.micros`, six digits.
fn push_micros(out: &mut Vec<u8>, micros: u64) {
    out.push(b'.');
    push_dec_zero_padded(out, micros, 6);
}

/// Bytes from the kernel (command names, paths) made safe to print: control characters and
/// invalid UTF-8 become `\ooo` octal escapes, so a hostile name cannot forge an output line or
/// drive the terminal.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    push_escaped(&mut out, bytes);
    String::from_utf8(out).expect("valid UTF-8 is copied, everything else escaped in ASCII")
}

/// Appends `bytes` as [`escape_bytes`] makes them.
pub fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let octal = |out: &mut Vec<u8>, b: u8| {
        out.extend_from_slice(&[
            b'\\',
            b'0' + (b >> 6),
            b'0' + ((b >> 3) & 7),
            b'0' + (b & 7),
        ]);
    };
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let mut buf = [0u8; 4];
            let encoded = c.encode_utf8(&mut buf).as_bytes();
            if c.is_control() {
                encoded.iter().for_each(|&b| octal(out, b));
            } else {
                out.extend_from_slice(encoded);
            }
        }
        chunk.invalid().iter().for_each(|&b| octal(out, b));
    }
}

/// A size as bytes and, when at least 1 KiB, in binary units: `65536 (64K)`.
fn push_size(out: &mut Vec<u8>, bytes: u64) {
    const UNITS: [(u64, u8); 4] = [
        (1 << 40, b'T'),
        (1 << 30, b'G'),
        (1 << 20, b'M'),
        (1 << 10, b'K'),
    ];
    push_dec(out, bytes, 0);
    let Some(&(unit, suffix)) = UNITS.iter().find(|(unit, _)| bytes >= *unit) else {
        return;
    };
    out.extend_from_slice(b" (");
    if bytes.is_multiple_of(unit) {
        push_dec(out, bytes / unit, 0);
    } else {
        let _ = write!(out, "{:.1}", bytes as f64 / unit as f64);
    }
    out.extend_from_slice(&[suffix, b')']);
}

/// `NULL`, or the address in hex.
fn push_addr(out: &mut Vec<u8>, value: u64) {
    if value == 0 {
        out.extend_from_slice(b"NULL");
    } else {
        push_prefixed_hex(out, value);
    }
}

/// The names of the set bits of `value` from `table` and any unknown remainder in hex, joined
/// by `|`; `none` when there are none.
fn push_flags(out: &mut Vec<u8>, value: u64, table: &[(u64, &str)], none: &str) {
    let start = out.len();
    let mut rest = value;
    for &(bit, name) in table {
        if bit != 0 && value & bit == bit {
            push_separator(out, start);
            out.extend_from_slice(name.as_bytes());
            rest &= !bit;
        }
    }
    if rest != 0 {
        push_separator(out, start);
        push_prefixed_hex(out, rest);
    }
    if out.len() == start {
        out.extend_from_slice(none.as_bytes());
    }
}

/// `|` unless this is the first name since `start`.
fn push_separator(out: &mut Vec<u8>, start: usize) {
    if out.len() > start {
        out.push(b'|');
    }
}

fn push_prot(out: &mut Vec<u8>, prot: u64) {
    push_flags(out, prot, PROT, "PROT_NONE");
}

/// mmap's flags as [`map_flag_names`] names them, joined by `|`.
fn push_map_flags(out: &mut Vec<u8>, flags: u64) {
    // The type comes first and is never empty, so every later name follows a '|'.
    match map_kind(flags) {
        Some(kind) => out.extend_from_slice(kind.as_bytes()),
        None => push_prefixed_hex(out, flags & MAP_TYPE),
    }
    let rest = map_flags_rest(flags);
    if rest != 0 {
        out.push(b'|');
        push_flags(out, rest, MAP_FLAGS, "");
    }
    let huge_shift = map_huge_shift(flags);
    if huge_shift != 0 {
        out.push(b'|');
        match map_huge_name(huge_shift) {
            Some(name) => out.extend_from_slice(name.as_bytes()),
            None => {
                push_dec(out, huge_shift, 0);
                out.extend_from_slice(b"<<MAP_HUGE_SHIFT");
            }
        }
    }
}

/// Names of the set bits of `value` from `table`, plus any unknown remainder in hex.
fn flag_names(value: u64, table: &[(u64, &'static str)]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if bit != 0 && value & bit == bit {
            names.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names
}

/// `(CONST, "CONST")` pairs of `pmap_common::linux` constants: each name is written once, as
/// the constant it names.
macro_rules! named {
    ($($name:ident),* $(,)?) => {
        &[$((pmap_common::linux::$name as u64, stringify!($name))),*]
    };
}

const PROT: &[(u64, &str)] = named![
    PROT_READ,
    PROT_WRITE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP
];

const MAP_TYPES: &[(u64, &str)] = named![MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE];

const MAP_FLAGS: &[(u64, &str)] = named![
    MAP_FIXED,
    MAP_ANONYMOUS,
    MAP_32BIT,
    MAP_GROWSDOWN,
    MAP_DENYWRITE,
    MAP_EXECUTABLE,
    MAP_LOCKED,
    MAP_NORESERVE,
    MAP_POPULATE,
    MAP_NONBLOCK,
    MAP_STACK,
    MAP_HUGETLB,
    MAP_SYNC,
    MAP_FIXED_NOREPLACE,
    MAP_UNINITIALIZED,
];

const MAP_HUGE_SIZES: &[(u64, &str)] = named![MAP_HUGE_64KB, MAP_HUGE_2MB, MAP_HUGE_1GB];

fn prot_names(prot: u64) -> Vec<String> {
    flag_names(prot, PROT)
}

/// MAP_SHARED, MAP_PRIVATE or MAP_SHARED_VALIDATE, from the type bits.
fn map_kind(flags: u64) -> Option<&'static str> {
    name_of(flags & MAP_TYPE, MAP_TYPES)
}

/// The flag bits, without the type and the huge page size.
fn map_flags_rest(flags: u64) -> u64 {
    flags & !MAP_TYPE & !(MAP_HUGE_MASK << MAP_HUGE_SHIFT)
}

fn map_huge_shift(flags: u64) -> u64 {
    (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK
}

fn map_huge_name(shift: u64) -> Option<&'static str> {
    name_of(shift << MAP_HUGE_SHIFT, MAP_HUGE_SIZES)
}

fn map_flag_names(flags: u64) -> Vec<String> {
    let kind = map_kind(flags).map_or_else(|| format!("{:#x}", flags & MAP_TYPE), str::to_string);
    let mut names = vec![kind];
    names.extend(flag_names(map_flags_rest(flags), MAP_FLAGS));
    let huge_shift = map_huge_shift(flags);
    if huge_shift != 0 {
        names.push(
            map_huge_name(huge_shift)
                .map_or_else(|| format!("{huge_shift}<<MAP_HUGE_SHIFT"), str::to_string),
        );
    }
    names
}

const MREMAP: &[(u64, &str)] = named![MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP];
const MLOCKALL: &[(u64, &str)] = named![MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT];
const MLOCK2: &[(u64, &str)] = named![MLOCK_ONFAULT];
const UFFDIO_REGISTER_MODE: &[(u64, &str)] = named![
    UFFDIO_REGISTER_MODE_MISSING,
    UFFDIO_REGISTER_MODE_WP,
    UFFDIO_REGISTER_MODE_MINOR,
];
const SHMAT: &[(u64, &str)] = named![SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC];
const PRCTL_OPTIONS: &[(u64, &str)] = named![PR_SET_VMA];
const VMA_ATTRIBUTES: &[(u64, &str)] = named![PR_SET_VMA_ANON_NAME];
const IOCTL_REQUESTS: &[(u64, &str)] = named![UFFDIO_REGISTER, UFFDIO_UNREGISTER];

const MADVICE: &[(u64, &str)] = named![
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_DONTNEED_LOCKED,
    MADV_COLLAPSE,
    MADV_HWPOISON,
    MADV_SOFT_OFFLINE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
];

/// The name `table` gives `value`.
fn name_of(value: u64, table: &[(u64, &'static str)]) -> Option<&'static str> {
    table
        .iter()
        .find(|&&(known, _)| known == value)
        .map(|&(_, name)| name)
}

/// The name `table` gives `value`, or the number in decimal.
fn push_named(out: &mut Vec<u8>, value: u64, table: &[(u64, &'static str)]) {
    match name_of(value, table) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => push_dec(out, value, 0),
    }
}

/// [`push_named`] as a `String`.
fn named_text(value: u64, table: &[(u64, &'static str)]) -> String {
    name_of(value, table).map_or_else(|| value.to_string(), str::to_string)
}

fn madvise_name(advice: u64) -> String {
    named_text(advice, MADVICE)
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EIDRM => "EIDRM",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "E?",
    }
}

/// The errno of a failed call, if `ret` is one, unless the call never returns one.
fn failure(call: &Call, ret: i64) -> Option<i32> {
    (syscall_failed(ret) && call.returns() != Returns::Break).then_some((-ret) as i32)
}

fn errno_text(errno: i32) -> String {
    let message = std::io::Error::from_raw_os_error(errno).to_string();
    let message = message
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string();
    format!("-1 {} ({message})", errno_name(errno))
}

fn returns_address(call: &Call) -> bool {
    matches!(call.returns(), Returns::Address | Returns::Break)
}

fn push_fd(out: &mut Vec<u8>, fd: i32, context: &EventContext) {
    push_signed(out, fd.into());
    if let (Some(path), true) = (&context.path, fd >= 0) {
        out.push(b'<');
        push_escaped(out, path);
        out.push(b'>');
    }
}

/// The argument list of `call`, strace style.
fn push_args(out: &mut Vec<u8>, call: &Call, context: &EventContext) {
    let mut first = true;
    // Inlined at each argument of each call, where its kind is a constant: the match on it
    // folds away, and the line costs what a formatter written per call would.
    call.for_each_arg(
        #[inline(always)]
        |arg| {
            if !arg.in_text {
                return;
            }
            if !first {
                out.extend_from_slice(b", ");
            }
            first = false;
            let (before, after) = arg.text_around;
            out.extend_from_slice(before.as_bytes());
            push_arg(out, &arg, context);
            out.extend_from_slice(after.as_bytes());
        },
    );
}

/// One argument, as strace prints its kind.
#[inline(always)]
fn push_arg(out: &mut Vec<u8>, arg: &Arg, context: &EventContext) {
    let value = arg.value;
    match arg.kind {
        ArgKind::Address => push_addr(out, value),
        ArgKind::Size => push_size(out, value),
        ArgKind::Offset | ArgKind::Bits => push_prefixed_hex(out, value),
        ArgKind::Decimal => push_dec(out, value, 0),
        ArgKind::Signed | ArgKind::Fd => push_signed(out, value as i64),
        ArgKind::MappedFd => push_fd(out, value as i32, context),
        ArgKind::Prot => push_prot(out, value),
        ArgKind::MapFlags => push_map_flags(out, value),
        ArgKind::MremapFlags => push_flags(out, value, MREMAP, "0"),
        ArgKind::Mlock2Flags => push_flags(out, value, MLOCK2, "0"),
        ArgKind::MlockallFlags => push_flags(out, value, MLOCKALL, "0"),
        ArgKind::ShmatFlags => push_flags(out, value, SHMAT, "0"),
        ArgKind::UffdRegisterMode => push_flags(out, value, UFFDIO_REGISTER_MODE, "0"),
        ArgKind::Advice => push_named(out, value, MADVICE),
        ArgKind::PrctlOption => push_named(out, value, PRCTL_OPTIONS),
        ArgKind::VmaAttribute => push_named(out, value, VMA_ATTRIBUTES),
        ArgKind::IoctlRequest => push_named(out, value, IOCTL_REQUESTS),
    }
}

fn push_result(out: &mut Vec<u8>, call: &Call, ret: i64) {
    match failure(call, ret) {
        Some(errno) => out.extend_from_slice(errno_text(errno).as_bytes()),
        None if returns_address(call) => push_prefixed_hex(out, ret as u64),
        None => push_signed(out, ret),
    }
}

/// Writes events as text lines into a caller's buffer. Event lines are most of pmap-trace's
/// own work at high call rates, so nothing here goes through `format!` or allocates, and the
/// local time of day is looked up once per second rather than once per line.
pub struct EventLines {
    clock: Clock,
    /// The second of the last line and its `HH:MM:SS`.
    second: Option<(libc::time_t, [u8; 8])>,
}

impl EventLines {
    pub fn new(clock: Clock) -> EventLines {
        EventLines {
            clock,
            second: None,
        }
    }

    /// Appends `event`'s line, without a newline.
    pub fn push(&mut self, out: &mut Vec<u8>, event: &Event, context: &EventContext) {
        let (secs, micros) = self.clock.split(event.timestamp_ns);
        let hms = match self.second {
            Some((second, hms)) if second == secs => hms,
            _ => {
                let hms = local_hms(secs);
                self.second = Some((secs, hms));
                hms
            }
        };
        out.extend_from_slice(&hms);
        push_micros(out, micros);
        out.push(b' ');
        push_dec(out, event.tgid.into(), 0);
        out.push(b'/');
        push_dec(out, event.tid.into(), 0);
        out.push(b' ');
        push_escaped(out, &event.comm);
        out.push(b' ');
        match &event.kind {
            EventKind::Call { call, ret } => {
                out.extend_from_slice(call.name().as_bytes());
                out.push(b'(');
                push_args(out, call, context);
                out.extend_from_slice(b") = ");
                push_result(out, call, *ret);
                if let Some(site) = &context.site {
                    push_site(out, site);
                }
            }
            EventKind::Exec => out.extend_from_slice(b"+++ exec: address space replaced +++"),
            EventKind::Exit { .. } => out.extend_from_slice(exit_text(context.exit).as_bytes()),
            EventKind::Fork { child, .. } => {
                out.extend_from_slice(b"+++ forked ");
                push_dec(out, (*child).into(), 0);
                out.extend_from_slice(b" +++");
            }
        }
    }
}

/// ` <- function (file:line)`: the innermost frame of the program the call's growth is
/// charged to; ` <- ?` when there is none (no stack copied, or none unwound: docs/call-sites.md).
fn push_site(out: &mut Vec<u8>, site: &GrowthSite) {
    out.extend_from_slice(b" <- ");
    let Some(frame) = site.innermost() else {
        out.push(b'?');
        return;
    };
    push_escaped(out, frame.function.as_bytes());
    if let Some(file) = &frame.file {
        out.extend_from_slice(b" (");
        push_escaped(out, file.rsplit('/').next().unwrap_or(file).as_bytes());
        if let Some(line) = frame.line {
            out.push(b':');
            push_dec(out, line.into(), 0);
        }
        out.push(b')');
    }
}

/// An exit as strace reports it: `+++ exited with 0 +++`, `+++ killed by SIGINT +++`, or
/// `+++ exited +++` when the status is not known.
fn exit_text(status: Option<ExitStatus>) -> String {
    match status {
        Some(ExitStatus::Exited(code)) => format!("+++ exited with {code} +++"),
        Some(ExitStatus::Killed {
            signal,
            core_dumped,
        }) => format!(
            "+++ killed by {}{} +++",
            signal_name(signal),
            if core_dumped { " (core dumped)" } else { "" }
        ),
        Some(ExitStatus::Unknown) | None => "+++ exited +++".to_string(),
    }
}

/// One text line (without the newline) for `event`.
#[cfg(test)]
pub fn event_line(event: &Event, context: &EventContext, clock: &Clock) -> String {
    let mut line = Vec::new();
    EventLines::new(*clock).push(&mut line, event, context);
    String::from_utf8(line).expect("event lines are UTF-8")
}

/// The `args` object of a call: each argument under its name, valued as its kind.
fn args_json(call: &Call, context: &EventContext) -> Value {
    let mut args = Map::new();
    for arg in call.args() {
        let value = arg.value;
        let json = match arg.kind {
            // The call's name says it: prctl is traced for PR_SET_VMA alone.
            ArgKind::PrctlOption => continue,
            ArgKind::Address
            | ArgKind::Size
            | ArgKind::Offset
            | ArgKind::Decimal
            | ArgKind::Bits
            | ArgKind::VmaAttribute
            | ArgKind::UffdRegisterMode => value.into(),
            ArgKind::Signed | ArgKind::Fd => (value as i64).into(),
            ArgKind::MappedFd => {
                let path = context.path.as_deref().map(escape_bytes);
                args.insert("path".into(), path.into());
                (value as i64).into()
            }
            ArgKind::Prot => prot_names(value).into(),
            ArgKind::MapFlags => map_flag_names(value).into(),
            ArgKind::MremapFlags => flag_names(value, MREMAP).into(),
            ArgKind::Mlock2Flags => flag_names(value, MLOCK2).into(),
            ArgKind::MlockallFlags => flag_names(value, MLOCKALL).into(),
            ArgKind::ShmatFlags => flag_names(value, SHMAT).into(),
            ArgKind::Advice => madvise_name(value).into(),
            ArgKind::IoctlRequest => named_text(value, IOCTL_REQUESTS).into(),
        };
        args.insert(arg.name.into(), json);
    }
    Value::Object(args)
}

/// One JSON object for `event`. Field names are stable: `type`, `time`, `timestamp_ns`, `pid`,
/// `tid`, `comm`, and for calls `call`, `args`, `ret`, `errno`.
/// `"stack"`: the frames of a growth's site, innermost first, as the sites report has them;
/// with `"stack_unknown"` saying why when there is no stack.
fn insert_stack(fields: &mut serde_json::Map<String, Value>, site: &GrowthSite) {
    let (stack, unknown) = match site {
        GrowthSite::Stack(frames) => (json!(frames.iter().map(|f| &**f).collect::<Vec<_>>()), None),
        GrowthSite::Unknown(origin) => (json!([]), Some(origin.describe())),
    };
    fields.insert("stack".into(), stack);
    if let Some(why) = unknown {
        fields.insert("stack_unknown".into(), why.into());
    }
}

pub fn event_json(event: &Event, context: &EventContext, clock: &Clock) -> Value {
    let mut object = json!({
        "time": clock.time_of_day(event.timestamp_ns),
        "timestamp_ns": event.timestamp_ns,
        "pid": event.tgid,
        "tid": event.tid,
        "comm": escape_bytes(&event.comm),
    });
    let fields = object.as_object_mut().expect("object literal");
    match &event.kind {
        EventKind::Call { call, ret } => {
            fields.insert("type".into(), "call".into());
            fields.insert("call".into(), call.name().into());
            fields.insert("args".into(), args_json(call, context));
            fields.insert("ret".into(), (*ret).into());
            let errno = failure(call, *ret).map(errno_name);
            fields.insert("errno".into(), errno.into());
            if let Some(site) = &context.site {
                insert_stack(fields, site);
            }
        }
        EventKind::Exec => {
            fields.insert("type".into(), "exec".into());
        }
        EventKind::Exit { .. } => {
            fields.insert("type".into(), "exit".into());
            let (code, signal) = match context.exit {
                Some(ExitStatus::Exited(code)) => (Some(code), None),
                Some(ExitStatus::Killed { signal, .. }) => (None, Some(signal_name(signal))),
                Some(ExitStatus::Unknown) | None => (None, None),
            };
            fields.insert("exit_code".into(), code.into());
            fields.insert("killed_by".into(), signal.into());
        }
        EventKind::Fork { child, .. } => {
            fields.insert("type".into(), "fork".into());
            fields.insert("child".into(), (*child).into());
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event lines as they were made before they were written into a buffer: with `format!`,
    /// one `String` per piece. [`EventLines`] must print exactly this.
    mod reference {
        use std::fmt::Write as _;

        use super::super::*;

        fn escape_bytes(bytes: &[u8]) -> String {
            let mut out = String::with_capacity(bytes.len());
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c.is_control() {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            let _ = write!(out, "\\{b:03o}");
                        }
                    } else {
                        out.push(c);
                    }
                }
                for b in chunk.invalid() {
                    let _ = write!(out, "\\{b:03o}");
                }
            }
            out
        }

        /// The time of day as it was printed before, with `format!`.
        fn reference_time_of_day(clock: &Clock, monotonic_ns: u64) -> String {
            let wall = clock.wall_ns(monotonic_ns);
            let secs = (wall.div_euclid(1_000_000_000)) as libc::time_t;
            let micros = wall.rem_euclid(1_000_000_000) / 1000;
            // SAFETY: zeroed tm is a valid out-parameter for localtime_r.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers; localtime_r is thread-safe.
            unsafe { libc::localtime_r(&secs, &mut tm) };
            format!(
                "{:02}:{:02}:{:02}.{:06}",
                tm.tm_hour, tm.tm_min, tm.tm_sec, micros
            )
        }

        /// A size as bytes and, when at least 1 KiB, in binary units: `65536 (64K)`.
        fn size(bytes: u64) -> String {
            const UNITS: [(u64, &str); 4] = [
                (1 << 40, "T"),
                (1 << 30, "G"),
                (1 << 20, "M"),
                (1 << 10, "K"),
            ];
            for (unit, suffix) in UNITS {
                if bytes >= unit {
                    return if bytes.is_multiple_of(unit) {
                        format!("{bytes} ({}{suffix})", bytes / unit)
                    } else {
                        format!("{bytes} ({:.1}{suffix})", bytes as f64 / unit as f64)
                    };
                }
            }
            bytes.to_string()
        }

        fn addr(value: u64) -> String {
            if value == 0 {
                "NULL".to_string()
            } else {
                format!("{value:#x}")
            }
        }

        fn joined(names: Vec<String>, none: &str) -> String {
            if names.is_empty() {
                none.to_string()
            } else {
                names.join("|")
            }
        }

        fn fd_text(fd: i32, context: &EventContext) -> String {
            match (&context.path, fd) {
                (Some(path), fd) if fd >= 0 => format!("{fd}<{}>", escape_bytes(path)),
                _ => fd.to_string(),
            }
        }

        /// The argument list of `call` as text, strace style.
        fn args_text(call: &Call, context: &EventContext) -> String {
            match *call {
                Call::Mmap {
                    addr: a,
                    len,
                    prot,
                    flags,
                    fd,
                    offset,
                } => format!(
                    "{}, {}, {}, {}, {}, {offset:#x}",
                    addr(a),
                    size(len),
                    joined(prot_names(prot), "PROT_NONE"),
                    joined(map_flag_names(flags), "0"),
                    fd_text(fd, context)
                ),
                Call::Munmap { addr: a, len }
                | Call::Mlock { addr: a, len }
                | Call::Munlock { addr: a, len } => format!("{}, {}", addr(a), size(len)),
                Call::Brk { addr: a } => addr(a),
                Call::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags,
                    new_addr,
                } => {
                    let mut text = format!(
                        "{}, {}, {}, {}",
                        addr(old_addr),
                        size(old_len),
                        size(new_len),
                        joined(flag_names(flags, MREMAP), "0")
                    );
                    if flags & 2 != 0 {
                        let _ = write!(text, ", {}", addr(new_addr));
                    }
                    text
                }
                Call::Mprotect { addr: a, len, prot } => {
                    format!(
                        "{}, {}, {}",
                        addr(a),
                        size(len),
                        joined(prot_names(prot), "PROT_NONE")
                    )
                }
                Call::PkeyMprotect {
                    addr: a,
                    len,
                    prot,
                    pkey,
                } => format!(
                    "{}, {}, {}, {pkey}",
                    addr(a),
                    size(len),
                    joined(prot_names(prot), "PROT_NONE")
                ),
                Call::Madvise {
                    addr: a,
                    len,
                    advice,
                } => {
                    format!("{}, {}, {}", addr(a), size(len), madvise_name(advice))
                }
                Call::Mlock2 {
                    addr: a,
                    len,
                    flags,
                } => {
                    format!(
                        "{}, {}, {}",
                        addr(a),
                        size(len),
                        joined(flag_names(flags, MLOCK2), "0")
                    )
                }
                Call::Mlockall { flags } => joined(flag_names(flags, MLOCKALL), "0"),
                Call::Munlockall => String::new(),
                Call::Shmat {
                    shmid,
                    addr: a,
                    flags,
                } => {
                    format!(
                        "{shmid}, {}, {}",
                        addr(a),
                        joined(flag_names(flags, SHMAT), "0")
                    )
                }
                Call::Shmdt { addr: a } => addr(a),
                Call::SetVmaAnonName {
                    attr,
                    addr: a,
                    len,
                    name,
                } => format!(
                    "PR_SET_VMA, {}, {}, {}, {}",
                    if attr == 0 {
                        "PR_SET_VMA_ANON_NAME".to_string()
                    } else {
                        attr.to_string()
                    },
                    addr(a),
                    size(len),
                    addr(name)
                ),
                Call::RemapFilePages {
                    addr: a,
                    size: len,
                    prot,
                    pgoff,
                    flags,
                } => {
                    format!("{}, {}, {prot:#x}, {pgoff}, {flags:#x}", addr(a), size(len))
                }
                Call::Mbind {
                    addr: a,
                    len,
                    mode,
                    flags,
                } => {
                    format!("{}, {}, {mode}, {flags:#x}", addr(a), size(len))
                }
                Call::MapShadowStack {
                    addr: a,
                    size: len,
                    flags,
                } => {
                    format!("{}, {}, {flags:#x}", addr(a), size(len))
                }
                Call::Mseal {
                    addr: a,
                    len,
                    flags,
                } => format!("{}, {}, {flags:#x}", addr(a), size(len)),
                Call::UffdRegister {
                    fd,
                    start,
                    len,
                    mode,
                } => format!(
                    "{fd}, UFFDIO_REGISTER, {{range={{start={}, len={}}}, mode={}}}",
                    addr(start),
                    size(len),
                    joined(flag_names(mode, UFFDIO_REGISTER_MODE), "0")
                ),
                Call::UffdUnregister { fd, start, len } => format!(
                    "{fd}, UFFDIO_UNREGISTER, {{start={}, len={}}}",
                    addr(start),
                    size(len)
                ),
            }
        }

        fn result_text(call: &Call, ret: i64) -> String {
            match failure(call, ret) {
                Some(errno) => errno_text(errno),
                None if returns_address(call) => format!("{:#x}", ret as u64),
                None => ret.to_string(),
            }
        }

        /// One text line (without the newline) for `event`.
        fn reference_line(event: &Event, context: &EventContext, clock: &Clock) -> String {
            let head = format!(
                "{} {}/{} {}",
                reference_time_of_day(clock, event.timestamp_ns),
                event.tgid,
                event.tid,
                escape_bytes(&event.comm)
            );
            match &event.kind {
                EventKind::Call { call, ret } => format!(
                    "{head} {}({}) = {}",
                    call.name(),
                    args_text(call, context),
                    result_text(call, *ret)
                ),
                EventKind::Exec => format!("{head} +++ exec: address space replaced +++"),
                EventKind::Exit { .. } => format!("{head} {}", exit_text(context.exit)),
                EventKind::Fork { child, .. } => format!("{head} +++ forked {child} +++"),
            }
        }
        pub(super) fn line(event: &Event, context: &EventContext, clock: &Clock) -> String {
            reference_line(event, context, clock)
        }

        /// The `args` object of a call as it was made before each call was described once:
        /// one `json!` object per call.
        pub(super) fn args_json(call: &Call, context: &EventContext) -> Value {
            match *call {
                Call::Mmap {
                    addr,
                    len,
                    prot,
                    flags,
                    fd,
                    offset,
                } => json!({
                    "addr": addr, "len": len, "prot": prot_names(prot), "flags": map_flag_names(flags),
                    "fd": fd, "offset": offset,
                    "path": context.path.as_deref().map(escape_bytes),
                }),
                Call::Munmap { addr, len }
                | Call::Mlock { addr, len }
                | Call::Munlock { addr, len } => {
                    json!({ "addr": addr, "len": len })
                }
                Call::Brk { addr } => json!({ "addr": addr }),
                Call::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags,
                    new_addr,
                } => json!({
                    "old_addr": old_addr, "old_len": old_len, "new_len": new_len,
                    "flags": flag_names(flags, MREMAP), "new_addr": new_addr,
                }),
                Call::Mprotect { addr, len, prot } => {
                    json!({ "addr": addr, "len": len, "prot": prot_names(prot) })
                }
                Call::PkeyMprotect {
                    addr,
                    len,
                    prot,
                    pkey,
                } => {
                    json!({ "addr": addr, "len": len, "prot": prot_names(prot), "pkey": pkey })
                }
                Call::Madvise { addr, len, advice } => {
                    json!({ "addr": addr, "len": len, "advice": madvise_name(advice) })
                }
                Call::Mlock2 { addr, len, flags } => {
                    json!({ "addr": addr, "len": len, "flags": flag_names(flags, MLOCK2) })
                }
                Call::Mlockall { flags } => json!({ "flags": flag_names(flags, MLOCKALL) }),
                Call::Munlockall => json!({}),
                Call::Shmat { shmid, addr, flags } => {
                    json!({ "shmid": shmid, "addr": addr, "flags": flag_names(flags, SHMAT) })
                }
                Call::Shmdt { addr } => json!({ "addr": addr }),
                Call::SetVmaAnonName {
                    attr,
                    addr,
                    len,
                    name,
                } => {
                    json!({ "attr": attr, "addr": addr, "len": len, "name_ptr": name })
                }
                Call::RemapFilePages {
                    addr,
                    size,
                    prot,
                    pgoff,
                    flags,
                } => json!({
                    "addr": addr, "size": size, "prot": prot, "pgoff": pgoff, "flags": flags,
                }),
                Call::Mbind {
                    addr,
                    len,
                    mode,
                    flags,
                } => {
                    json!({ "addr": addr, "len": len, "mode": mode, "flags": flags })
                }
                Call::MapShadowStack { addr, size, flags } => {
                    json!({ "addr": addr, "size": size, "flags": flags })
                }
                Call::Mseal { addr, len, flags } => {
                    json!({ "addr": addr, "len": len, "flags": flags })
                }
                Call::UffdRegister {
                    fd,
                    start,
                    len,
                    mode,
                } => json!({
                    "fd": fd, "request": "UFFDIO_REGISTER", "start": start, "len": len, "mode": mode,
                }),
                Call::UffdUnregister { fd, start, len } => {
                    json!({ "fd": fd, "request": "UFFDIO_UNREGISTER", "start": start, "len": len })
                }
            }
        }
    }

    mod same_as_reference {
        use proptest::prelude::*;

        use super::*;

        fn number() -> impl Strategy<Value = u64> {
            prop_oneof![
                Just(0u64),
                0u64..5000,
                (0u32..64).prop_map(|shift| 1u64 << shift),
                (1u64..4, 0u32..4).prop_map(|(n, unit)| n << (10 * (unit + 1))),
                any::<u64>(),
            ]
        }

        fn flags() -> impl Strategy<Value = u64> {
            prop_oneof![0u64..0x200, any::<u32>().prop_map(u64::from), any::<u64>()]
        }

        fn call() -> impl Strategy<Value = Call> {
            let n = number;
            prop_oneof![
                (n(), n(), flags(), flags(), any::<i32>(), n()).prop_map(
                    |(addr, len, prot, flags, fd, offset)| Call::Mmap {
                        addr,
                        len,
                        prot,
                        flags,
                        fd: if fd % 2 == 0 { fd } else { -1 },
                        offset
                    }
                ),
                (n(), n()).prop_map(|(addr, len)| Call::Munmap { addr, len }),
                (n(), n()).prop_map(|(addr, len)| Call::Mlock { addr, len }),
                (n(), n()).prop_map(|(addr, len)| Call::Munlock { addr, len }),
                n().prop_map(|addr| Call::Brk { addr }),
                (n(), n(), n(), flags(), n()).prop_map(
                    |(old_addr, old_len, new_len, flags, new_addr)| Call::Mremap {
                        old_addr,
                        old_len,
                        new_len,
                        flags,
                        new_addr
                    }
                ),
                (n(), n(), flags()).prop_map(|(addr, len, prot)| Call::Mprotect {
                    addr,
                    len,
                    prot
                }),
                (n(), n(), flags(), any::<i32>()).prop_map(|(addr, len, prot, pkey)| {
                    Call::PkeyMprotect {
                        addr,
                        len,
                        prot,
                        pkey,
                    }
                }),
                (n(), n(), prop_oneof![0u64..130, any::<u64>()])
                    .prop_map(|(addr, len, advice)| Call::Madvise { addr, len, advice }),
                (n(), n(), flags()).prop_map(|(addr, len, flags)| Call::Mlock2 {
                    addr,
                    len,
                    flags
                }),
                flags().prop_map(|flags| Call::Mlockall { flags }),
                Just(Call::Munlockall),
                (any::<i32>(), n(), flags()).prop_map(|(shmid, addr, flags)| Call::Shmat {
                    shmid,
                    addr,
                    flags
                }),
                n().prop_map(|addr| Call::Shmdt { addr }),
                (prop_oneof![Just(0u64), n()], n(), n(), n()).prop_map(
                    |(attr, addr, len, name)| {
                        Call::SetVmaAnonName {
                            attr,
                            addr,
                            len,
                            name,
                        }
                    }
                ),
                (n(), n(), flags(), n(), flags()).prop_map(|(addr, size, prot, pgoff, flags)| {
                    Call::RemapFilePages {
                        addr,
                        size,
                        prot,
                        pgoff,
                        flags,
                    }
                }),
                (n(), n(), n(), flags()).prop_map(|(addr, len, mode, flags)| Call::Mbind {
                    addr,
                    len,
                    mode,
                    flags
                }),
                (n(), n(), flags()).prop_map(|(addr, size, flags)| Call::MapShadowStack {
                    addr,
                    size,
                    flags
                }),
                (n(), n(), flags()).prop_map(|(addr, len, flags)| Call::Mseal { addr, len, flags }),
                (any::<i32>(), n(), n(), flags()).prop_map(|(fd, start, len, mode)| {
                    Call::UffdRegister {
                        fd,
                        start,
                        len,
                        mode,
                    }
                }),
                (any::<i32>(), n(), n()).prop_map(|(fd, start, len)| Call::UffdUnregister {
                    fd,
                    start,
                    len
                }),
            ]
        }

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                "[a-z0-9/._-]{0,20}".prop_map(String::into_bytes),
                "\\PC{0,8}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..20),
                // Bytes next to the edges of what prints as it is.
                proptest::collection::vec(
                    proptest::sample::select(
                        &[
                            b'a', b' ', b'~', 0x7f, 0x1f, b'\n', 0xc2, 0x80, 0x9f, 0xc3, 0xa9
                        ][..]
                    ),
                    0..8
                ),
            ]
        }

        fn kind() -> impl Strategy<Value = EventKind> {
            prop_oneof![
                4 => (call(), prop_oneof![-4200i64..10, any::<i64>()])
                    .prop_map(|(call, ret)| EventKind::Call { call, ret }),
                1 => Just(EventKind::Exec),
                1 => Just(EventKind::Exit {
                    memory: crate::decode::ExitMemory::default()
                }),
                1 => any::<u32>().prop_map(|child| EventKind::Fork {
                    child,
                    memory: crate::decode::ChildMemory::default()
                }),
            ]
        }

        fn event() -> impl Strategy<Value = (Event, EventContext)> {
            (
                0u64..200_000_000_000,
                any::<u32>(),
                any::<u32>(),
                bytes(),
                kind(),
                proptest::option::of(bytes()),
            )
                .prop_map(|(timestamp_ns, tgid, tid, comm, kind, path)| {
                    let event = Event {
                        timestamp_ns,
                        tgid,
                        tid,
                        comm,
                        kind,
                        file: None,
                    };
                    (
                        event,
                        EventContext {
                            path,
                            ..Default::default()
                        },
                    )
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn event_lines_are_the_format_lines(
                mut events in proptest::collection::vec(event(), 1..20),
            ) {
                // In time order, as the ring delivers them, so the second is often the last one's.
                events.sort_by_key(|(e, _)| e.timestamp_ns);
                let clock = Clock::now();
                let mut lines = EventLines::new(clock);
                for (event, context) in &events {
                    let mut line = b"<".to_vec();
                    lines.push(&mut line, event, context);
                    let want = format!("<{}", reference::line(event, context, &clock));
                    prop_assert_eq!(String::from_utf8(line).unwrap(), want);
                }
            }

            #[test]
            fn call_arguments_in_json_are_the_format_arguments((event, context) in event()) {
                if let EventKind::Call { call, .. } = &event.kind {
                    let object = event_json(&event, &context, &Clock::with_offset(0));
                    prop_assert_eq!(
                        object["args"].to_string(),
                        reference::args_json(call, &context).to_string()
                    );
                }
            }
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            timestamp_ns: 1_000_000,
            tgid: 7,
            tid: 8,
            comm: b"work".to_vec(),
            kind,
            file: None,
        }
    }

    fn clock() -> Clock {
        Clock::with_offset(0)
    }

    #[test]
    fn formats_an_anonymous_mmap_like_strace() {
        let e = event(EventKind::Call {
            call: Call::Mmap {
                addr: 0,
                len: 65536,
                prot: 3,
                flags: 0x22,
                fd: -1,
                offset: 0,
            },
            ret: 0x7f00_0000_0000,
        });
        let line = event_line(&e, &EventContext::default(), &clock());
        assert!(
            line.ends_with(
                " 7/8 work mmap(NULL, 65536 (64K), PROT_READ|PROT_WRITE, \
                 MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x7f0000000000"
            ),
            "{line}"
        );
    }

    #[test]
    fn shows_the_file_behind_a_descriptor_and_errno_names() {
        let e = event(EventKind::Call {
            call: Call::Mmap {
                addr: 0,
                len: 5000,
                prot: 5,
                flags: 0x802,
                fd: 3,
                offset: 4096,
            },
            ret: -12,
        });
        let context = EventContext {
            path: Some(b"/lib/x.so".to_vec()),
            ..Default::default()
        };
        let line = event_line(&e, &context, &clock());
        assert!(
            line.ends_with(
                "mmap(NULL, 5000 (4.9K), PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_DENYWRITE, \
                 3</lib/x.so>, 0x1000) = -1 ENOMEM (Cannot allocate memory)"
            ),
            "{line}"
        );
        let object = event_json(&e, &context, &clock());
        assert_eq!(object["errno"], "ENOMEM");
        assert_eq!(object["args"]["path"], "/lib/x.so");
        assert_eq!(object["args"]["prot"], json!(["PROT_READ", "PROT_EXEC"]));
    }

    #[test]
    fn a_growth_ends_with_its_call_site_and_its_json_has_the_stack() {
        use std::sync::Arc;

        use crate::sites::{Origin, symbolize::SymbolFrame};

        let e = event(EventKind::Call {
            call: Call::Mmap {
                addr: 0,
                len: 1 << 20,
                prot: 3,
                flags: 0x22,
                fd: -1,
                offset: 0,
            },
            ret: 0x7f1c_2e00_0000,
        });
        let frame = |function: &str, file: Option<&str>, line| {
            Arc::new(SymbolFrame {
                function: function.into(),
                file: file.map(Into::into),
                line,
                module: Some("cache".into()),
                inlined: false,
            })
        };
        let stack: Arc<[_]> = Arc::new([
            frame("grow_cache", Some("/src/cache.c"), Some(88)),
            frame("main", None, None),
        ]);
        let with = |site| EventContext {
            site: Some(site),
            ..Default::default()
        };
        let context = with(GrowthSite::Stack(stack));
        let line = event_line(&e, &context, &clock());
        assert!(
            line.ends_with(") = 0x7f1c2e000000 <- grow_cache (cache.c:88)"),
            "{line}"
        );
        let object = event_json(&e, &context, &clock());
        assert_eq!(object["stack"][0]["function"], "grow_cache");
        assert_eq!(object["stack"][0]["line"], 88);
        assert_eq!(object["stack"][1]["function"], "main");
        assert_eq!(object.get("stack_unknown"), None);
        // No stack, or none unwound: a question mark, never a name.
        for site in [
            GrowthSite::Unknown(Origin::CopyLost),
            GrowthSite::Stack(Arc::new([])),
        ] {
            let line = event_line(&e, &with(site), &clock());
            assert!(line.ends_with(" = 0x7f1c2e000000 <- ?"), "{line}");
        }
        let object = event_json(&e, &with(GrowthSite::Unknown(Origin::CopyLost)), &clock());
        assert_eq!(object["stack"], json!([]));
        assert_eq!(object["stack_unknown"], Origin::CopyLost.describe());
        // A call that grew nothing has neither.
        let plain = event_line(&e, &EventContext::default(), &clock());
        assert!(plain.ends_with(" = 0x7f1c2e000000"), "{plain}");
        assert_eq!(
            event_json(&e, &EventContext::default(), &clock()).get("stack"),
            None
        );
    }

    #[test]
    fn the_exit_of_a_launched_command_says_how_it_ended() {
        let e = event(EventKind::Exit {
            memory: crate::decode::ExitMemory::default(),
        });
        let with = |exit| EventContext {
            exit,
            ..Default::default()
        };
        let cases = [
            (None, "+++ exited +++", Value::Null, Value::Null),
            (
                Some(ExitStatus::Exited(7)),
                "+++ exited with 7 +++",
                json!(7),
                Value::Null,
            ),
            (
                Some(ExitStatus::Killed {
                    signal: libc::SIGINT,
                    core_dumped: false,
                }),
                "+++ killed by SIGINT +++",
                Value::Null,
                json!("SIGINT"),
            ),
            (
                Some(ExitStatus::Killed {
                    signal: libc::SIGSEGV,
                    core_dumped: true,
                }),
                "+++ killed by SIGSEGV (core dumped) +++",
                Value::Null,
                json!("SIGSEGV"),
            ),
        ];
        for (exit, text, code, signal) in cases {
            let line = event_line(&e, &with(exit), &clock());
            assert!(line.ends_with(text), "{line}");
            let object = event_json(&e, &with(exit), &clock());
            assert_eq!(
                (&object["exit_code"], &object["killed_by"]),
                (&code, &signal)
            );
        }
    }

    #[test]
    fn brk_never_reports_an_errno() {
        let e = event(EventKind::Call {
            call: Call::Brk { addr: 0 },
            ret: 0x5555_0000,
        });
        assert!(
            event_line(&e, &EventContext::default(), &clock()).ends_with("brk(NULL) = 0x55550000")
        );
    }

    #[test]
    fn escapes_control_characters_and_invalid_utf8() {
        assert_eq!(escape_bytes(b"a\nb\x1b[31m\xff"), "a\\012b\\033[31m\\377");
        assert_eq!(escape_bytes(b"del\x7f"), "del\\177");
        assert_eq!(escape_bytes("caf\u{e9}".as_bytes()), "caf\u{e9}");
    }

    #[test]
    fn decodes_flag_words_with_unknown_bits_kept() {
        assert_eq!(
            map_flag_names(0x01 | 0x10 | 0x40000 | (21 << 26) | 0x200),
            vec![
                "MAP_SHARED",
                "MAP_FIXED",
                "MAP_HUGETLB",
                "0x200",
                "MAP_HUGE_2MB"
            ]
        );
        let text = |push: fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            push(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(|o| push_prot(o, 0)), "PROT_NONE");
        assert_eq!(text(|o| push_size(o, 3 << 20)), "3145728 (3M)");
        assert_eq!(text(|o| push_size(o, 5000)), "5000 (4.9K)");
        assert_eq!(
            text(|o| push_map_flags(o, 0x01 | 0x10 | 0x40000 | (21 << 26) | 0x200)),
            "MAP_SHARED|MAP_FIXED|MAP_HUGETLB|0x200|MAP_HUGE_2MB"
        );
    }
}
