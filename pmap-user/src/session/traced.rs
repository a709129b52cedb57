//! One traced process: its live table, the `/proc/PID/maps` handle the table may query, and
//! what pmap prints in its header.

use std::{collections::HashMap, fs};

use pmap_common::linux::{MAP_PRIVATE, MAP_TYPE, PROT_EXEC, PROT_READ, PROT_WRITE};

use crate::{
    decode::{Call, ChildMemory, ExecImage, ExitMemory, MappedFile},
    model::{Device, Mapping, PAGE_SIZE, Perms, page_align_up},
    procfs::{SeedError, maps, process, procmap_query::VmaQuery},
    render::pmap::ProcessView,
    table::{AddressSpace, HiddenFlags, NoOracle, UnmapsInFlight, VmaOracle},
};

pub struct TracedProcess {
    pub pid: i32,
    /// What pmap prints after `PID:` (the command line, escaped as pmap escapes it).
    pub header: Vec<u8>,
    /// `startstack` from `/proc/PID/stat`: pmap names the mapping that reaches it `[ stack ]`.
    pub start_stack: u64,
    pub table: AddressSpace,
    /// Unmaps the kernel made before a mapping the table has already applied.
    pub unmaps_in_flight: UnmapsInFlight,
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
            unmaps_in_flight: UnmapsInFlight::default(),
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
        let mappings = maps::read_mappings(pid)?;
        let header = process::read_process_header(pid)?;
        let start_stack = process::read_start_stack(pid)?;
        let start_brk = read_start_brk(pid).unwrap_or(0);
        // Ended while being read: the reads may describe it before and after exit_mm() (its
        // mappings, then a `[comm]` header and no mappings). Its address space is checked
        // last: one still there was there for every read before.
        if process::has_exited(pid) || !has_address_space(pid) {
            return Err(SeedError::NoSuchProcess { pid });
        }
        Ok(TracedProcess {
            pid,
            header,
            start_stack,
            table: AddressSpace::from_mappings(mappings, start_brk),
            unmaps_in_flight: UnmapsInFlight::default(),
            query,
        })
    }

    /// The process as an exec left it, from the image its record carries (whole: see
    /// [`ExecImage::gap`]); `specials` name the kernel's special mappings. The header is the
    /// recorded command line, or `header` when the record holds only its start.
    pub fn from_image(
        pid: i32,
        image: &ExecImage,
        header: Vec<u8>,
        files: &mut KnownFiles,
        specials: &[Mapping],
    ) -> TracedProcess {
        let mut name_file = |file: &MappedFile| files.path_of(file, &image.path);
        let mappings = image.mappings(&mut name_file, specials);
        let vmas = mappings
            .into_iter()
            .map(|m| {
                let vma = image.vmas.iter().find(|v| v.start == m.start);
                // The gate page is no VMA of the mm: flags as /proc's VmFlags show them.
                let (flags, pgoff) = vma.map_or((0, m.start / PAGE_SIZE), |v| (v.flags, v.pgoff));
                (m, HiddenFlags::from_vm_flags(flags), pgoff)
            })
            .collect();
        TracedProcess {
            pid,
            header,
            start_stack: image.start_stack,
            table: AddressSpace::from_image(vmas, image.start_brk, image.brk),
            unmaps_in_flight: UnmapsInFlight::default(),
            query: VmaQuery::open(pid).ok(),
        }
    }

    /// The child `child` forked by this process now, with a copy of its table, header and
    /// stack; and whether the copy is certain (see [`AddressSpace::forked`]).
    pub fn forked(&self, child: i32, memory: ChildMemory) -> (TracedProcess, bool) {
        let (table, certain) = self.table.forked(memory.shared, memory.vmas);
        let traced = TracedProcess {
            pid: child,
            header: self.header.clone(),
            start_stack: self.start_stack,
            table,
            unmaps_in_flight: UnmapsInFlight::default(),
            query: VmaQuery::open(child).ok(),
        };
        (traced, certain)
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
    /// A process that has exited but whose exit record is not applied yet (pmap-trace runs
    /// behind it) keeps them too: past exit_mm() its command line reads empty (the header would
    /// be `[comm] <defunct>`) and do_task_stat() (fs/proc/array.c) reports startstack 0 without
    /// an mm (its stack would print as `[ anon ]`).
    pub fn refresh_header(&mut self) {
        if self.query.is_none() {
            return;
        }
        let header = process::read_process_header(self.pid);
        let start_stack = process::read_start_stack(self.pid);
        // Checked after the reads: a process with an address space now had it for both.
        if process::has_exited(self.pid) || !has_address_space(self.pid) {
            return;
        }
        if let Ok(header) = header {
            self.header = header;
        }
        if let Ok(start_stack) = start_stack {
            self.start_stack = start_stack;
        }
    }

    /// The process has exited: nothing is left to query.
    pub fn mark_gone(&mut self) {
        self.query = None;
    }

    /// Brings the table to the size the kernel counted at the exit: the main stack grows on
    /// faults, without a syscall (acct_stack_growth() counts it in `mm->stack_vm`, with any
    /// other VM_GROWSDOWN mapping). Returns the table's size and the kernel's, in bytes, when
    /// they still differ: a change the table missed.
    pub fn settle_at_exit(&mut self, memory: ExitMemory) -> Option<(u64, u64)> {
        let table = &self.table;
        let stack = table.mappings().find(|m| m.name == b"[stack]").cloned();
        if let (Some(stack), Some(pages)) = (stack, memory.stack_pages) {
            let others: u64 = table
                .mappings()
                .filter(|m| m.start != stack.start)
                .filter(|m| table.hidden_flag_at(m.start, HiddenFlags::GROWSDOWN) == Some(true))
                .map(Mapping::len)
                .sum();
            let size = (pages * PAGE_SIZE).saturating_sub(others);
            let start = stack.end.saturating_sub(size);
            let free_below = table
                .mappings()
                .all(|m| m.end <= start || m.start >= stack.start);
            if size > stack.len() && free_below {
                let mut grown = StackAt(Mapping { start, ..stack });
                self.table.refresh_growing_mappings(&mut grown);
            }
        }
        let mapped: u64 = self
            .table
            .mappings()
            .filter(|m| m.name != b"[vsyscall]")
            .map(Mapping::len)
            .sum();
        let kernel = memory.total_pages? * PAGE_SIZE;
        (mapped != kernel).then_some((mapped, kernel))
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

/// The kernel's main stack as it was at the exit, and nothing else known.
struct StackAt(Mapping);

impl VmaOracle for StackAt {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
        (self.0.start <= addr && addr < self.0.end).then(|| self.0.clone())
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

    fn shm_size(&mut self, shmid: i32) -> Option<u64> {
        self.live.shm_size(shmid)
    }
}

/// Paths of the files seen mapped so far, by device and inode: when the kernel could not walk a
/// mapped file's path up to the root, it records only its last component, and this turns it
/// back into the path /proc shows.
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

    /// The path /proc shows for `file`: known from an earlier mapping, or `exec_path` (the
    /// name execve was given) when that is the file, else the file's name alone.
    pub fn path_of(&mut self, file: &MappedFile, exec_path: &[u8]) -> Vec<u8> {
        let key = (file.device, file.inode);
        if let Some(path) = self.paths.get(&key) {
            return path.clone();
        }
        match canonical_path_of(file, exec_path) {
            Some(path) => {
                self.paths.insert(key, path.clone());
                path
            }
            None => file.name.clone(),
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
            name: self.name_of(file),
        })
    }

    /// What `/proc/PID/maps` called the file at the call: the path the kernel walked up to the
    /// root at the call itself; else the path of the file seen in a table (the kernel's walk
    /// stopped short: a path longer than its room, or a file in no directory tree); else its
    /// last component.
    fn name_of(&self, file: &MappedFile) -> Vec<u8> {
        if file.whole_path {
            return file.name.clone();
        }
        self.paths
            .get(&(file.device, file.inode))
            .cloned()
            .unwrap_or_else(|| file.name.clone())
    }
}

/// `exec_path` with its symbolic links resolved, as d_path() gives it, when it names `file`
/// (an absolute name of a file that is still there).
fn canonical_path_of(file: &MappedFile, exec_path: &[u8]) -> Option<Vec<u8>> {
    use std::os::unix::{ffi::OsStrExt, fs::MetadataExt};
    let given = std::path::Path::new(std::ffi::OsStr::from_bytes(exec_path));
    if !given.is_absolute() {
        return None;
    }
    let canonical = fs::canonicalize(given).ok()?;
    let meta = fs::metadata(&canonical).ok()?;
    let device = Device {
        major: libc::major(meta.dev()),
        minor: libc::minor(meta.dev()),
    };
    (device == file.device && meta.ino() == file.inode)
        .then(|| canonical.as_os_str().as_bytes().to_vec())
}

/// Whether `pid` still has its address space. exit_mm() (kernel/exit.c) drops it before
/// exit_notify() makes the process a zombie; from then on proc_pid_statm() (fs/proc/array.c)
/// finds no mm and reports zeros, where a live process maps something.
fn has_address_space(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/statm")).is_ok_and(|statm| {
        statm
            .split_whitespace()
            .next()
            .is_some_and(|size| size != "0")
    })
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
    use crate::procfs::fixtures::Child;

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

    fn line(start: u64, end: u64, name: &str) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms {
                read: true,
                write: true,
                ..Perms::default()
            },
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_process_that_exited_before_its_exit_is_applied_keeps_its_header_and_stack() {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let pid = child.id() as i32;
        let mut traced = TracedProcess::seed(pid).unwrap();
        let (header, start_stack) = (traced.header.clone(), traced.start_stack);
        assert_ne!(start_stack, 0);
        child.kill().unwrap();
        while !process::has_exited(pid) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Not yet marked gone: its exit record has not been applied.
        traced.refresh_header();
        assert_eq!(
            (String::from_utf8_lossy(&traced.header), traced.start_stack),
            (String::from_utf8_lossy(&header), start_stack)
        );
        child.wait().unwrap();
    }

    #[test]
    fn a_process_whose_exit_has_dropped_its_address_space_has_none() {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(has_address_space(pid));
        child.kill().unwrap();
        // A zombie until reaped: past exit_mm().
        while !process::has_exited(pid) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!has_address_space(pid));
        child.wait().unwrap();
        assert!(!has_address_space(pid));
    }

    #[test]
    fn at_exit_the_stack_is_as_large_as_the_kernel_counted_it() {
        let stack = line(0x7fff_0000_0000, 0x7fff_0002_1000, "[stack]");
        let table = AddressSpace::from_mappings(vec![line(0x1000, 0x3000, ""), stack.clone()], 0);
        let mut traced = TracedProcess::from_table(1, table);
        // 33 pages of stack at exec, 64 at the exit; 66 pages in all.
        let memory = ExitMemory {
            total_pages: Some(66),
            stack_pages: Some(64),
        };
        assert_eq!(traced.settle_at_exit(memory), None);
        let grown = traced.mappings()[1].clone();
        assert_eq!(
            (grown.start, grown.end),
            (stack.end - 64 * PAGE_SIZE, stack.end)
        );
        // A size the table cannot reach is said.
        let memory = ExitMemory {
            total_pages: Some(70),
            stack_pages: Some(64),
        };
        assert_eq!(
            traced.settle_at_exit(memory),
            Some((66 * PAGE_SIZE, 70 * PAGE_SIZE))
        );
        // Unknown counts change nothing.
        assert_eq!(traced.settle_at_exit(ExitMemory::default()), None);
    }

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
        let now = process::read_process_header(child.pid()).unwrap();
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
