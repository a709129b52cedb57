//! One traced process: its live table, the `/proc/PID/maps` handle the table may query, and
//! what pmap prints in its header.

use std::{collections::HashMap, fs};

use pmap_common::linux::{MAP_PRIVATE, MAP_TYPE, PROT_EXEC, PROT_READ, PROT_WRITE};

use crate::{
    decode::{Call, MappedFile},
    model::{Device, Mapping, Perms, page_align_up},
    procfs::{
        procmap_query::VmaQuery,
        seed::{self, SeedError},
    },
    render::pmap::ProcessView,
    table::{AddressSpace, NoOracle, VmaOracle},
};

pub struct TracedProcess {
    pub pid: i32,
    /// What pmap prints after `PID:` (the command line, escaped as pmap escapes it).
    pub header: Vec<u8>,
    /// `startstack` from `/proc/PID/stat`: pmap names the mapping that reaches it `[ stack ]`.
    pub start_stack: u64,
    pub table: AddressSpace,
    /// `None` once the process is gone.
    query: Option<VmaQuery>,
}

#[cfg(test)]
impl TracedProcess {
    /// A process known only by its table, for the unit tests of what is kept beside it.
    pub fn from_table(pid: i32, table: AddressSpace) -> TracedProcess {
        TracedProcess {
            pid,
            header: Vec::new(),
            start_stack: 0,
            table,
            query: None,
        }
    }
}

impl TracedProcess {
    /// Reads the process's current mappings. Call it after the process is in the kernel
    /// filter: every call completing after that is in the ring, and replaying it on this seed
    /// gives the same table whether or not the seed already saw its effect.
    pub fn seed(pid: i32) -> Result<TracedProcess, SeedError> {
        // Opened first, so the seed and the queries describe the same address space.
        let query = VmaQuery::open(pid).ok();
        let mappings = seed::read_mappings(pid)?;
        let header = seed::read_process_header(pid)?;
        let start_stack = seed::read_start_stack(pid)?;
        let start_brk = read_start_brk(pid).unwrap_or(0);
        Ok(TracedProcess {
            pid,
            header,
            start_stack,
            table: AddressSpace::from_mappings(mappings, start_brk),
            query,
        })
    }

    pub fn apply(&mut self, call: &Call, ret: i64) {
        self.apply_with_file(call, ret, None);
    }

    /// Applies a call; `mapped` is the file the kernel saw behind a file-backed mmap's
    /// descriptor, which names the new mapping when the process no longer has it to ask about.
    pub fn apply_with_file(&mut self, call: &Call, ret: i64, mapped: Option<Mapping>) {
        let mut no_oracle = NoOracle;
        let live: &mut dyn VmaOracle = match &mut self.query {
            Some(query) => query,
            None => &mut no_oracle,
        };
        let mut oracle = KernelHint {
            live,
            mapped: mapped.as_ref(),
        };
        self.table.apply(call, ret, &mut oracle);
    }

    /// Brings mappings that grow without a syscall (the stack) up to date before a dump.
    pub fn refresh_growing(&mut self) {
        if let Some(query) = &mut self.query {
            self.table.refresh_growing_mappings(query);
        }
    }

    /// Re-reads what pmap reads afresh on every run besides the mappings: the command line,
    /// which a running process may rewrite (servers such as redis put their state there, as
    /// `setproctitle` does), and the main stack's start. Kept as they were once the process is
    /// gone, for its final dump.
    pub fn refresh_header(&mut self) {
        if self.query.is_none() {
            return;
        }
        if let Ok(header) = seed::read_process_header(self.pid) {
            self.header = header;
        }
        if let Ok(start_stack) = seed::read_start_stack(self.pid) {
            self.start_stack = start_stack;
        }
    }

    /// The process has exited: nothing is left to query.
    pub fn mark_gone(&mut self) {
        self.query = None;
    }

    pub fn mappings(&self) -> Vec<Mapping> {
        self.table.to_mappings()
    }

    /// What a renderer needs to print this process, over `mappings` (from [`Self::mappings`]).
    pub fn view<'a>(
        &'a self,
        mappings: &'a [Mapping],
        sysv_shm_minor: Option<u32>,
    ) -> ProcessView<'a> {
        ProcessView {
            pid: self.pid,
            header: &self.header,
            start_stack: self.start_stack,
            sysv_shm_minor,
            mappings,
        }
    }
}

/// Asks the live process first; for the address a file-backed mmap just returned, falls back
/// on the kernel's record of the call when the live mapping is gone or is another file by now.
struct KernelHint<'a> {
    live: &'a mut dyn VmaOracle,
    mapped: Option<&'a Mapping>,
}

impl VmaOracle for KernelHint<'_> {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
        let live = self.live.vma_at(addr);
        match self.mapped {
            Some(hint) if hint.start == addr => match live {
                Some(now) if now.inode == hint.inode && now.device == hint.device => Some(now),
                _ => Some(hint.clone()),
            },
            _ => live,
        }
    }
}

/// Paths of the files seen mapped so far, by device and inode: the kernel records only a
/// mapped file's last path component, and this turns it back into the path /proc shows.
#[derive(Default)]
pub struct KnownFiles {
    paths: HashMap<(Device, u64), Vec<u8>>,
}

impl KnownFiles {
    pub fn learn<'a>(&mut self, mappings: impl IntoIterator<Item = &'a Mapping>) {
        for m in mappings {
            if m.inode != 0 && m.name.starts_with(b"/") {
                self.paths
                    .entry((m.device, m.inode))
                    .or_insert_with(|| m.name.clone());
            }
        }
    }

    /// The mapping a successful file-backed `mmap` created, as far as the kernel's record and
    /// the files seen so far tell: its path if known, else the file's name alone.
    pub fn mapping_for(&self, call: &Call, ret: i64, file: &MappedFile) -> Option<Mapping> {
        let Call::Mmap {
            len,
            prot,
            flags,
            offset,
            ..
        } = *call
        else {
            return None;
        };
        let start = ret as u64;
        Some(Mapping {
            start,
            end: start.saturating_add(page_align_up(len)),
            perms: Perms {
                read: prot & PROT_READ != 0,
                write: prot & PROT_WRITE != 0,
                exec: prot & PROT_EXEC != 0,
                shared: flags & MAP_TYPE != MAP_PRIVATE,
            },
            offset,
            device: file.device,
            inode: file.inode,
            name: self
                .paths
                .get(&(file.device, file.inode))
                .cloned()
                .unwrap_or_else(|| file.name.clone()),
        })
    }
}

/// `mm->start_brk` (field 47 of `/proc/PID/stat`): where the heap starts.
fn read_start_brk(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command name, so field 47 is the 45th.
    after_comm.split_whitespace().nth(44)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        process::{Command, Stdio},
    };

    use super::*;
    use crate::procfs::seed::fixtures::Child;

    /// Overwrites its own argument area through /proc/self/mem, as setproctitle does, when
    /// told to on stdin.
    const RETITLE: &str = r#"
import sys
stat = open("/proc/self/stat").read()
fields = stat[stat.rindex(")") + 2:].split()
arg_start, arg_end = int(fields[45]), int(fields[46])
print("ready", flush=True)
sys.stdin.readline()
title = b"retitled: serving"
with open("/proc/self/mem", "r+b", buffering=0) as mem:
    mem.seek(arg_start)
    mem.write(title + bytes(arg_end - arg_start - len(title)))
print("done", flush=True)
sys.stdin.readline()
"#;

    #[test]
    fn a_dump_shows_the_command_line_the_process_has_now() {
        let mut command = Command::new("python3");
        command
            .args(["-c", RETITLE, "with", "its", "original", "arguments"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = Child::spawn(command);
        let mut stdin = child.take_stdin();
        let mut stdout = BufReader::new(child.take_stdout());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");

        let mut traced = TracedProcess::seed(child.pid()).unwrap();
        assert!(
            traced.header.ends_with(b"with its original arguments"),
            "{}",
            String::from_utf8_lossy(&traced.header)
        );
        stdin.write_all(b"retitle\n").unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "done\n");
        traced.refresh_header();
        let now = seed::read_process_header(child.pid()).unwrap();
        assert!(now.starts_with(b"retitled: serving"));
        assert_eq!(traced.header, now);

        // Once the process is gone, its last command line stays for the final dump.
        traced.mark_gone();
        drop(stdin);
        drop(child);
        traced.refresh_header();
        assert_eq!(traced.header, now);
    }
}
