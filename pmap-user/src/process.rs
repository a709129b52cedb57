//! One traced process: its live table, the `/proc/PID/maps` handle the table may query, and
//! what pmap prints in its header.

use std::{collections::HashMap, fs};

use crate::{
    decode::{Call, MappedFile},
    procmap_query::VmaQuery,
    render::pmap::ProcessView,
    seed::{self, SeedError},
    table::{
        AddressSpace, Device, MAP_PRIVATE, MAP_TYPE, Mapping, NoOracle, PROT_EXEC, PROT_READ,
        PROT_WRITE, Perms, VmaOracle, page_align_up,
    },
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
