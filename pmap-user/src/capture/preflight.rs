//! What must hold before loading: privileges, BTF, a mounted tracefs, and tracepoint records laid
//! out as the eBPF program reads them.

use std::{ffi::CString, fs, io, path::Path};

use pmap_common::{TRACED_SYSCALLS, fault_layout, sched_layout, sys_exit_layout};
use thiserror::Error;

pub const TRACEFS: &str = "/sys/kernel/tracing";
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const CAP_SYS_ADMIN: u32 = 21;

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "missing capabilities {missing}: run pmap-trace as root (sudo) or grant them with \
         `setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep`"
    )]
    MissingCapabilities { missing: String },
    #[error(
        "cannot read {TRACEFS} (tracefs is readable by root only): run pmap-trace as root or \
         with CAP_DAC_READ_SEARCH"
    )]
    TracefsUnreadable,
    #[error(
        "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): pmap-trace needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted at {TRACEFS} and could not be mounted ({0}): mount it with \
         `sudo mount -t tracefs nodev {TRACEFS}` and try again"
    )]
    TracefsMount(io::Error),
    #[error(
        "tracefs is not mounted at {TRACEFS}: run pmap-trace as root so it can mount it, or \
         mount it with `sudo mount -t tracefs nodev {TRACEFS}`"
    )]
    TracefsMissing,
    #[error("tracepoint {tracepoint} is not available on this kernel ({source})")]
    MissingTracepoint {
        tracepoint: String,
        source: io::Error,
    },
    #[error(
        "tracepoint {tracepoint} has field `{field}` at {found}, but pmap-trace reads it at \
         {expected}: this kernel's layout is not supported"
    )]
    UnexpectedLayout {
        tracepoint: String,
        field: String,
        expected: String,
        found: String,
    },
}

/// Syscalls every kernel pmap-trace supports has; the others in [`TRACED_SYSCALLS`] (mseal,
/// map_shadow_stack, ...) are traced where the kernel has them and cannot happen where it has not.
const REQUIRED_SYSCALLS: &[&str] = &["mmap", "munmap", "brk", "mremap", "mprotect", "madvise"];

/// Checks privileges, BTF and tracefs (mounting it when allowed), and the tracepoint layouts.
/// Returns the names of the traced syscalls this kernel has.
pub fn check_machine() -> Result<Vec<&'static str>, PreflightError> {
    check_capabilities()?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    ensure_tracefs()?;
    check_layouts()
}

fn effective_capabilities() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("CapEff:")
                    .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            })
        })
        .unwrap_or(0)
}

fn check_capabilities() -> Result<(), PreflightError> {
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::MissingCapabilities {
            missing: missing.join(" and "),
        })
    }
}

/// Whether tracefs is mounted at [`TRACEFS`], from /proc/self/mountinfo (readable by anyone,
/// unlike tracefs itself).
fn tracefs_mounted() -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let fstype = fields
                .iter()
                .position(|&f| f == "-")
                .and_then(|i| fields.get(i + 1));
            fields.get(4) == Some(&TRACEFS) && fstype == Some(&"tracefs")
        })
    })
}

fn ensure_tracefs() -> Result<(), PreflightError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    if tracefs_mounted() {
        return Err(PreflightError::TracefsUnreadable);
    }
    if effective_capabilities() & (1 << CAP_SYS_ADMIN) == 0 {
        return Err(PreflightError::TracefsMissing);
    }
    let source = CString::new("nodev").expect("no NUL");
    let target = CString::new(TRACEFS).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no mount data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PreflightError::TracefsMount(io::Error::last_os_error()));
    }
    Ok(())
}

/// One field as a tracepoint `format` file describes it.
#[derive(Debug, PartialEq, Eq)]
struct Field {
    declaration: String,
    offset: usize,
    size: usize,
}

fn parse_format(text: &str) -> Vec<Field> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("field:")?;
            let mut parts = line.split(';').map(str::trim);
            let declaration = parts.next()?.to_string();
            let offset = parts.next()?.strip_prefix("offset:")?.parse().ok()?;
            let size = parts.next()?.strip_prefix("size:")?.parse().ok()?;
            Some(Field {
                declaration,
                offset,
                size,
            })
        })
        .collect()
}

/// Checks that `field` (the last word of its declaration, without array brackets) sits at
/// `offset` with `size` bytes in `category:name`.
fn expect_field(
    fields: &[Field],
    tracepoint: &str,
    field: &str,
    offset: usize,
    size: usize,
) -> Result<(), PreflightError> {
    let found = fields.iter().find(|f| {
        f.declaration
            .rsplit([' ', '\t'])
            .next()
            .is_some_and(|name| name.split('[').next() == Some(field))
    });
    match found {
        Some(f) if f.offset == offset && f.size == size => Ok(()),
        other => Err(PreflightError::UnexpectedLayout {
            tracepoint: tracepoint.to_string(),
            field: field.to_string(),
            expected: format!("offset {offset} size {size}"),
            found: other.map_or("no such field".to_string(), |f| {
                format!("offset {} size {}", f.offset, f.size)
            }),
        }),
    }
}

fn read_format(category: &str, name: &str) -> Result<Vec<Field>, PreflightError> {
    let path = Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    fs::read_to_string(&path)
        .map(|text| parse_format(&text))
        .map_err(|source| PreflightError::MissingTracepoint {
            tracepoint: format!("{category}:{name}"),
            source,
        })
}

/// `--faults`: checks that `exceptions:page_fault_user` exists with the layout its program
/// reads. Call after [`check_machine`] (which mounts tracefs).
pub fn check_fault_tracepoint() -> Result<(), PreflightError> {
    let tracepoint = "exceptions:page_fault_user";
    let fields = read_format("exceptions", "page_fault_user")?;
    expect_field(
        &fields,
        tracepoint,
        "address",
        fault_layout::ADDRESS_OFFSET,
        8,
    )?;
    expect_field(
        &fields,
        tracepoint,
        "error_code",
        fault_layout::ERROR_CODE_OFFSET,
        8,
    )
}

fn check_layouts() -> Result<Vec<&'static str>, PreflightError> {
    let mut available = Vec::new();
    for &(syscall, _) in TRACED_SYSCALLS {
        let name = format!("sys_exit_{syscall}");
        let fields = match read_format("syscalls", &name) {
            Ok(fields) => fields,
            Err(_) if !REQUIRED_SYSCALLS.contains(&syscall) => continue,
            Err(err) => return Err(err),
        };
        let tracepoint = format!("syscalls:{name}");
        expect_field(
            &fields,
            &tracepoint,
            "__syscall_nr",
            sys_exit_layout::SYSCALL_NR_OFFSET,
            4,
        )?;
        expect_field(&fields, &tracepoint, "ret", sys_exit_layout::RET_OFFSET, 8)?;
        available.push(syscall);
    }
    let fork = read_format("sched", "sched_process_fork")?;
    expect_field(
        &fork,
        "sched:sched_process_fork",
        "child_pid",
        sched_layout::FORK_CHILD_PID_OFFSET,
        4,
    )?;
    let exit = read_format("sched", "sched_process_exit")?;
    expect_field(
        &exit,
        "sched:sched_process_exit",
        "group_dead",
        sched_layout::EXIT_GROUP_DEAD_OFFSET,
        1,
    )?;
    let exec = read_format("sched", "sched_process_exec")?;
    expect_field(
        &exec,
        "sched:sched_process_exec",
        "filename",
        sched_layout::EXEC_FILENAME_OFFSET,
        4,
    )?;
    Ok(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_EXIT_MMAP: &str = "name: sys_exit_mmap
ID: 173
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;
";

    #[test]
    fn parses_format_files() {
        let fields = parse_format(SYS_EXIT_MMAP);
        assert_eq!(fields.len(), 4);
        assert_eq!(
            fields[3],
            Field {
                declaration: "long ret".into(),
                offset: 16,
                size: 8
            }
        );
    }

    #[test]
    fn accepts_the_expected_layout_and_names_a_moved_field() {
        let fields = parse_format(SYS_EXIT_MMAP);
        expect_field(&fields, "syscalls:sys_exit_mmap", "ret", 16, 8).unwrap();
        let err = expect_field(&fields, "syscalls:sys_exit_mmap", "ret", 24, 8).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tracepoint syscalls:sys_exit_mmap has field `ret` at offset 16 size 8, but \
             pmap-trace reads it at offset 24 size 8: this kernel's layout is not supported"
        );
        let err = expect_field(&fields, "syscalls:sys_exit_mmap", "nope", 0, 1).unwrap_err();
        assert!(err.to_string().contains("no such field"), "{err}");
    }
}
