//! One traced process: its live table, the `/proc/PID/maps` handle the table may query, and
//! what pmap prints in its header.

use std::fs;

use crate::{
    decode::Call,
    procmap_query::VmaQuery,
    render::pmap::ProcessView,
    seed::{self, SeedError},
    table::{AddressSpace, Mapping, NoOracle},
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
        match &mut self.query {
            Some(query) => self.table.apply(call, ret, query),
            None => self.table.apply(call, ret, &mut NoOracle),
        }
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

/// `mm->start_brk` (field 47 of `/proc/PID/stat`): where the heap starts.
fn read_start_brk(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the command name, so field 47 is the 45th.
    after_comm.split_whitespace().nth(44)?.parse().ok()
}
