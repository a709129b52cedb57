//! What the kernel shows of a process under `/proc`: the mappings a table is seeded from
//! ([`maps`]), the lines `/proc/PID/smaps` adds to them ([`smaps`]), the command line, stack start
//! and state pmap and the session read ([`process`]), all of them at once for a one-shot dump
//! ([`snapshot`]), the `PROCMAP_QUERY` ioctl that settles what events cannot tell, the comparison
//! `--verify` makes, and why the kernel refuses to show a process.
//!
//! `procfs` (the crate) opens the process and parses `stat` and `status`; the files whose bytes
//! must reach the table or the output unchanged are read and parsed here.

use std::{
    fs::File,
    io::{self, Read},
};

use procfs::{ProcError, process::Process};
use thiserror::Error;

use access::Denial;

pub mod access;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod maps;
pub mod pagemap;
pub mod process;
pub mod procmap_query;
pub mod smaps;
pub mod snapshot;
pub mod verify;

/// Why a file of `/proc/PID` could not be read: when a table is seeded, at a dump, or when the
/// session reads a process again.
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

/// `/proc/PID`, for reading its files.
fn open(pid: i32) -> Result<Process, SeedError> {
    Process::new(pid).map_err(|e| SeedError::from_proc(pid, "", e))
}

/// The bytes of `/proc/PID/FILE`, at most `limit` of them.
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

#[cfg(test)]
mod tests {
    use super::{maps::read_mappings, process::read_process_header, *};

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
}
