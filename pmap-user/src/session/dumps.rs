//! Dumps: every process on request, one process at its exit; `--diff` instead of a dump once a
//! process has had one; the call sites after each (a summary, or `--sites N`), and the
//! `--folded`/`--flamegraph` files rewritten.

use super::{Session, SessionError, Traced, release_freed_memory};
use crate::{
    render::output::{Message, notice::Notice},
    sites::SitesReport,
};

impl Session {
    /// Applies every event produced so far, then dumps every table.
    pub(super) fn dump_all(&mut self) -> Result<(), SessionError> {
        self.process_available()?;
        for traced in self.processes.values_mut() {
            traced.refresh_growing();
            traced.refresh_header();
        }
        // One pmap run over every process, in PID order.
        let processes: Vec<&Traced> = self.processes.values().collect();
        self.dump_style
            .write(self.output.as_mut(), &processes, true)?;
        // Reported after the dumps, in PID order, each with its table's protections.
        let mut reports = Vec::new();
        if let Some(sites) = &mut self.sites {
            for (&pid, traced) in &self.processes {
                if let Some(report) = sites.report(pid, &traced.table) {
                    reports.push(report);
                }
            }
        }
        for report in reports {
            self.write_sites(report)?;
        }
        self.write_stack_files()?;
        if self.config.verify {
            let pids: Vec<u32> = self.processes.keys().copied().collect();
            for pid in pids {
                self.verify(pid)?;
            }
        }
        self.output.flush()?;
        release_freed_memory();
        Ok(())
    }

    /// The last dump of a process that is gone (its smaps are not read: it has none, and its
    /// PID may name another process already), its sites, and the stack files with them.
    pub(super) fn final_dump(&mut self, traced: &Traced) -> Result<(), SessionError> {
        let pid = traced.pid as u32;
        self.dump_style
            .write(self.output.as_mut(), &[traced], false)?;
        self.dump_style.forget(pid);
        if let Some(report) = self
            .sites
            .as_mut()
            .and_then(|s| s.report(pid, &traced.table))
        {
            self.write_sites(report)?;
        }
        self.write_stack_files()
    }

    /// The call sites of a process after its dump; `--folded`/`--flamegraph` take them in too.
    fn write_sites(&mut self, report: SitesReport) -> Result<(), SessionError> {
        if let Some(files) = &mut self.stack_files {
            files.update(report.pid, &report.all);
        }
        self.output.write(Message::Sites(&report))?;
        Ok(())
    }

    /// `--folded`/`--flamegraph`: rewrites the files. A write that fails is said and tracing
    /// goes on: the next dump tries again.
    fn write_stack_files(&mut self) -> Result<(), SessionError> {
        let Some(files) = &self.stack_files else {
            return Ok(());
        };
        match files.write() {
            Ok(()) => Ok(()),
            Err(err) => self.say(Notice::StackFilesNotWritten(&err)),
        }
    }
}
