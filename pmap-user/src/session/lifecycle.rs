//! What each record does to the traced processes: a call applied to its process's table, an
//! exec's new address space, a fork's child table, an exit's final dump; and the tables read
//! from /proc when records cannot give them.

use super::{Session, SessionError, Traced, release_freed_memory};
use crate::{
    decode::{Call, ChildMemory, Event, EventKind, ExecImage, ExitMemory, UserStack},
    procfs::{SeedError, process},
    render::{
        events::EventContext,
        output::notice::{NoTable, Notice},
    },
    sites::{GrowthSite, Origin},
};

impl Session {
    /// Applies one event; `stack` is the caller's stack the kernel copied at a growth call,
    /// `image` the address space an exec made.
    pub(super) fn process(
        &mut self,
        event: &Event,
        stack: Option<&UserStack>,
        image: Option<&ExecImage>,
    ) -> Result<(), SessionError> {
        let tgid = event.tgid;
        if self.ended_early.contains(&tgid) {
            if matches!(event.kind, EventKind::Exit { .. }) {
                self.ended_early.remove(&tgid);
            }
            return self.emit(event, &EventContext::default());
        }
        if !self.processes.contains_key(&tgid) && !self.untabled.contains_key(&tgid) {
            // A followed child whose fork record was lost.
            self.adopt(tgid)?;
        }
        let mut context = EventContext::default();
        match &event.kind {
            EventKind::Call { call, ret } => {
                (context.path, context.site) = self.apply_call(event, call, *ret, stack);
                self.emit(event, &context)?;
            }
            EventKind::Exec => {
                self.emit(event, &context)?;
                self.exec(event, image)?;
            }
            EventKind::Exit { memory } => {
                context.exit = self.reap_if_launched(tgid);
                self.emit(event, &context)?;
                self.settle_at_exit(tgid, *memory)?;
                self.end_process(tgid)?;
            }
            EventKind::Fork { child, memory } => {
                self.emit(event, &context)?;
                if self.config.follow && !self.processes.contains_key(child) {
                    self.fork(tgid, *child, *memory)?;
                }
            }
        }
        Ok(())
    }

    /// Applies `event`'s call to its process's table (and the call sites' owners), and returns
    /// the path its line shows: the file's at the call, as the kernel walked it then; when the
    /// walk stopped short, the table's (the live kernel's answer when there was one), else the
    /// name the kernel recorded. And the call site its line names, when it grew anonymous
    /// memory and lines are printed.
    fn apply_call(
        &mut self,
        event: &Event,
        call: &Call,
        ret: i64,
        stack: Option<&UserStack>,
    ) -> (Option<Vec<u8>>, Option<GrowthSite>) {
        let mut mapped = event
            .file
            .as_ref()
            .and_then(|f| self.files.mapping_for(call, ret, f));
        let walked = event.file.as_ref().is_some_and(|f| f.whole_path);
        let mut path = mapped.as_ref().map(|m| m.name.clone());
        let Some(traced) = self.processes.get_mut(&event.tgid) else {
            // Untabled: its line shows what the kernel recorded.
            return (path, None);
        };
        // An unmap whose record comes after the mapping that reused its memory is applied
        // only where it still has something to unmap.
        let late_unmaps = traced.unmaps_in_flight.before_apply(
            &traced.table,
            event.tid,
            event.timestamp_ns,
            call,
            ret,
        );
        let (applied, applied_ret) = match &late_unmaps {
            Some(pieces) => (pieces.as_slice(), 0),
            None => (std::slice::from_ref(call), ret),
        };
        let mut site = None;
        for applied in applied {
            // Before the table: the stack is unwound against the code mapped at the call.
            if let Some(sites) = &mut self.sites
                && let Some(grown) =
                    sites.apply(event.tgid, &traced.table, applied, applied_ret, stack)
                && self.config.events
            {
                site = Some(sites.growth_site(event.tgid, grown));
            }
            // (Only a file mapping's call has a file; the pieces of an unmap have none.)
            traced.apply_with_file(applied, applied_ret, mapped.take());
        }
        if let Call::Mmap { fd, .. } = call
            && *fd >= 0
            && let Some(now) = traced
                .table
                .mapping_starting_at(ret as u64)
                .filter(|m| !m.name.is_empty())
        {
            if !walked {
                path = Some(now.name.clone());
            }
            self.files.learn([now]);
        }
        (path, site)
    }

    /// An exec replaced `event.tgid`'s address space: its table is the image the record
    /// carries when that is whole, else what /proc shows while the process lives.
    fn exec(&mut self, event: &Event, image: Option<&ExecImage>) -> Result<(), SessionError> {
        let tgid = event.tgid;
        let fresh = match image {
            Some(image) if image.gap.is_none() => Ok(self.traced_from_image(event, image)?),
            _ => self.seed(tgid as i32),
        };
        match fresh {
            Ok(fresh) => {
                self.track_seeded(&fresh, Origin::Exec);
                self.processes.insert(tgid, fresh);
                self.untabled.remove(&tgid);
            }
            Err(_) => {
                if let Some(sites) = &mut self.sites {
                    sites.forget(tgid);
                }
                // The new image ran and ended before it could be read: its first mappings
                // were made by exec itself, without a syscall to replay.
                self.processes.remove(&tgid);
                let gap = image.and_then(|image| image.gap);
                self.untabled.insert(tgid, NoTable::ExecImageUnread { gap });
            }
        }
        Ok(())
    }

    /// The table an exec's whole image gives, headed by the command line the record carries.
    /// A command line longer than the record holds is read from /proc, or when the process is
    /// gone shown as far as it was recorded, with a notice.
    fn traced_from_image(
        &mut self,
        event: &Event,
        image: &ExecImage,
    ) -> Result<Traced, SessionError> {
        let pid = event.tgid as i32;
        let header = match &image.cmdline {
            Some(cmdline) => process::header_from_cmdline(cmdline, &event.comm),
            None => match process::read_process_header(pid) {
                Ok(header) if !process::has_exited(pid) => header,
                _ => {
                    self.say(Notice::CommandLineCut { pid: pid as u32 })?;
                    process::header_from_cmdline(&image.cmdline_start, &event.comm)
                }
            },
        };
        let traced = Traced::from_image(pid, image, header, &mut self.files, &self.specials);
        self.files.learn(traced.table.mappings());
        Ok(traced)
    }

    /// `parent` forked `child`: the child's table is a copy of its parent's as the ring has it
    /// at the fork. A copy that may hold a VMA the child has not (see
    /// [`crate::table::AddressSpace::forked`]) is read from /proc instead while the child
    /// lives, else kept with a notice.
    fn fork(&mut self, parent: u32, child: u32, memory: ChildMemory) -> Result<(), SessionError> {
        // A PID ended early and now given to a new process.
        self.ended_early.remove(&child);
        let copy = self
            .processes
            .get(&parent)
            .map(|p| p.forked(child as i32, memory));
        let Some(copy) = copy else {
            return self.adopt(child);
        };
        let traced = match copy {
            (copy, true) => copy,
            (copy, false) => match self.seed(child as i32) {
                Ok(read) => read,
                Err(_) => {
                    self.say(Notice::ForkCopyKept { child })?;
                    copy
                }
            },
        };
        // The child's memory is a copy of its parent's, owners included.
        if let Some(sites) = &mut self.sites {
            sites.forked(parent, child, &traced.table);
        }
        self.processes.insert(child, traced);
        Ok(())
    }

    /// Brings `tgid`'s table to the size the kernel counted at its exit; a difference left is
    /// a change the table missed, which is said.
    fn settle_at_exit(&mut self, tgid: u32, memory: ExitMemory) -> Result<(), SessionError> {
        let Some(traced) = self.processes.get_mut(&tgid) else {
            return Ok(());
        };
        match traced.settle_at_exit(memory) {
            Some((mapped, kernel)) => self.say(Notice::ExitSizeDiffers {
                pid: tgid,
                mapped,
                kernel,
            }),
            None => Ok(()),
        }
    }

    /// Starts a table for a followed child first seen without its fork record (lost); one
    /// that is already gone is traced without a table, which is said when it ends.
    fn adopt(&mut self, tgid: u32) -> Result<(), SessionError> {
        if !self.config.follow {
            return Ok(());
        }
        match self.seed(tgid as i32) {
            Ok(traced) => {
                self.track_seeded(&traced, Origin::BeforeTracing);
                self.processes.insert(tgid, traced);
                Ok(())
            }
            Err(_) => {
                self.untabled.insert(tgid, NoTable::ForkRecordLost);
                Ok(())
            }
        }
    }

    /// The process is gone: a last dump of its table (or the one notice that it has none),
    /// and its exit code if we started it.
    pub(super) fn end_process(&mut self, tgid: u32) -> Result<(), SessionError> {
        let untabled = self.untabled.remove(&tgid);
        if let Some(mut traced) = self.processes.remove(&tgid) {
            traced.mark_gone();
            self.final_dump(&traced)?;
        } else if let Some(why) = untabled {
            self.say(Notice::NoDump { pid: tgid, why })?;
        }
        if let Some(sites) = &mut self.sites {
            sites.forget(tgid);
        }
        self.source.remove_target(tgid);
        self.reap_if_launched(tgid);
        Ok(())
    }

    /// Reads a process's table from /proc, and learns the paths of the files it maps.
    pub(super) fn seed(&mut self, pid: i32) -> Result<Traced, SeedError> {
        let traced = Traced::seed(pid)?;
        self.files.learn(traced.table.mappings());
        release_freed_memory();
        Ok(traced)
    }

    /// Call sites: a table read from scratch; its anonymous memory so far comes from `origin`.
    pub(super) fn track_seeded(&mut self, traced: &Traced, origin: Origin) {
        if let Some(sites) = &mut self.sites {
            sites.seeded(traced.pid as u32, &traced.table, origin);
        }
    }

    /// Call sites: a table read again; the owners of what is still anonymous stay.
    pub(super) fn track_reread(&mut self, traced: &Traced) {
        if let Some(sites) = &mut self.sites {
            sites.reread(traced.pid as u32, &traced.table);
        }
    }
}
