//! A trace session: attaches to the targets, seeds their tables, then turns ring records into
//! output lines and keeps every table current until the targets are gone or the user stops it.

pub mod controls;
pub mod launch;
pub mod signals;
mod terminal;
pub mod traced;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs, io,
    time::{Duration, Instant},
};

use thiserror::Error;

use self::{
    controls::{Control, Controls},
    launch::{HeldChild, LaunchError, wait_exit},
    signals::Received,
    traced::{KnownFiles, TracedProcess as Traced},
};
use crate::{
    capture::{CaptureError, Dropped, RecordSource},
    config::{Config, DumpSettings, PidTarget},
    decode::{
        Call, Captured, ChildMemory, Event, EventKind, ExecImage, ExitMemory, Record, UserStack,
        special_mappings,
    },
    model::{ExitStatus, Mapping},
    procfs::{
        seed::{self, SeedError, SmapsReader},
        verify::{self, Divergence},
    },
    render::{
        diff::diff,
        events::EventContext,
        output::{AttachedTarget, Compared, Dump, Message, NoTable, Notice, Output, ProcessName},
        pmap::PmapRun,
        sink::SinkError,
        smaps::SmapsLayout,
    },
    sites::{Origin, SiteTracker, folded::StackFiles},
};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("cannot attach to {pid}: {source}")]
    Attach { pid: i32, source: SeedError },
    #[error(
        "PID {0} exited while pmap-trace was attaching to it: nothing is left to trace (to see \
         a short-lived program from its start, launch it: pmap-trace -- CMD)"
    )]
    ExitedDuringAttach(i32),
    #[error("cannot watch signals: {0}")]
    Signals(io::Error),
}

pub struct Session {
    config: Config,
    /// The kernel's ring, or records replayed.
    source: Box<dyn RecordSource>,
    /// Dump and stop requests.
    controls: Box<dyn Controls>,
    /// Where every message goes, as text or JSON.
    output: Box<dyn Output>,
    processes: BTreeMap<u32, Traced>,
    /// The command started by the session, whose exit status becomes ours.
    launched: Option<i32>,
    /// When a stop signal was passed on to the launched command.
    passed_on: Option<Instant>,
    exit_code: i32,
    /// What the kernel side had left out at the last look.
    dropped_seen: Dropped,
    dump_style: DumpStyle,
    /// Paths of mapped files by device and inode, to name files the kernel reports by name only.
    files: KnownFiles,
    /// Traced processes whose table could not be read (they ended first); their events are
    /// still printed.
    /// With why they have none, said when they end unless a table comes meanwhile (an exec
    /// record's image).
    untabled: BTreeMap<u32, NoTable>,
    /// Processes ended without their exit record (it seemed lost): records of theirs that
    /// arrive late, behind a record another CPU had not yet committed, must not bring them back.
    ended_early: BTreeSet<u32>,
    /// `--sites`: who owns the anonymous memory of each process.
    sites: Option<SiteTracker>,
    /// `--folded`, `--flamegraph`.
    stack_files: Option<StackFiles>,
    /// The kernel's special mappings (vDSO, vvar, vsyscall) as this process has them: they
    /// name those of an exec's image.
    specials: Vec<Mapping>,
}

impl Session {
    /// A session reading `source`, asked for dumps and stops by `controls`, saying what it
    /// sees to `output`.
    pub fn new(
        config: Config,
        source: Box<dyn RecordSource>,
        controls: Box<dyn Controls>,
        output: Box<dyn Output>,
    ) -> Session {
        Session {
            source,
            controls,
            output,
            processes: BTreeMap::new(),
            launched: None,
            passed_on: None,
            exit_code: 0,
            dropped_seen: Dropped::default(),
            untabled: BTreeMap::new(),
            ended_early: BTreeSet::new(),
            files: KnownFiles::default(),
            dump_style: DumpStyle::new(&config),
            sites: config.sites.map(SiteTracker::new),
            stack_files: StackFiles::new(
                config.stack_files.folded.clone(),
                config.stack_files.flamegraph.clone(),
            ),
            specials: seed::read_mappings(std::process::id() as i32)
                .map(|maps| special_mappings(&maps))
                .unwrap_or_default(),
            config,
        }
    }

    /// Adds running processes to the kernel filter and seeds their tables from /proc. The
    /// filter is set first: every call completing after that is in the ring, and replaying it
    /// on a seed read later is harmless, so nothing is lost or counted twice.
    pub fn attach(&mut self, targets: &[PidTarget]) -> Result<(), SessionError> {
        for &PidTarget { pid, .. } in targets {
            self.source.add_target(pid as u32, self.config.follow)?;
            let traced = self.seed(pid).map_err(|source| match source {
                SeedError::NoSuchProcess { .. } => SessionError::ExitedDuringAttach(pid),
                source => SessionError::Attach { pid, source },
            })?;
            // A process that exited before it entered the filter will send no exit record:
            // alive now, its exit is certain to be seen.
            if seed::has_exited(pid) {
                return Err(SessionError::ExitedDuringAttach(pid));
            }
            self.track_seeded(&traced, Origin::BeforeTracing);
            self.processes.insert(pid as u32, traced);
        }
        let descendants = if self.config.follow {
            self.attach_descendants(targets)?
        } else {
            0
        };
        self.announce(targets, descendants)
    }

    /// `-f`: the processes the targets forked before pmap-trace came, and theirs, are traced
    /// too. Each is in the filter (with the follow flag) before its own children are listed,
    /// so a child forked meanwhile is either listed or added by the kernel's fork hook (and
    /// adopted when its records come); one found both ways is seeded once. A descendant that
    /// has exited meanwhile is left out: it sends no exit record. Returns how many were added.
    fn attach_descendants(&mut self, targets: &[PidTarget]) -> Result<usize, SessionError> {
        let mut pending: Vec<i32> = targets
            .iter()
            .flat_map(|t| seed::children_of(t.pid))
            .collect();
        let mut added = 0;
        while let Some(pid) = pending.pop() {
            if self.processes.contains_key(&(pid as u32)) {
                continue;
            }
            self.source.add_target(pid as u32, true)?;
            let traced = match self.seed(pid) {
                Ok(traced) if !seed::has_exited(pid) => traced,
                Ok(_) | Err(SeedError::NoSuchProcess { .. }) => {
                    self.source.remove_target(pid as u32);
                    continue;
                }
                Err(source) => return Err(SessionError::Attach { pid, source }),
            };
            self.track_seeded(&traced, Origin::BeforeTracing);
            self.processes.insert(pid as u32, traced);
            added += 1;
            pending.extend(seed::children_of(pid));
        }
        Ok(added)
    }

    /// Traces a held child from its exec on, then lets it run.
    pub fn launch(&mut self, child: HeldChild) -> Result<(), SessionError> {
        let pid = child.pid();
        self.source.add_target(pid as u32, self.config.follow)?;
        // The child is a copy of us until its exec, which re-seeds the table.
        let traced = self
            .seed(pid)
            .map_err(|source| SessionError::Attach { pid, source })?;
        self.track_seeded(&traced, Origin::BeforeTracing);
        self.processes.insert(pid as u32, traced);
        self.launched = Some(pid);
        // Said before the command runs, so the line comes before anything the command prints.
        let command = AttachedTarget {
            process: ProcessName {
                pid: pid as u32,
                comm: child.program_name().to_string(),
            },
            thread: None,
        };
        self.output.write(Message::Attached {
            targets: &[command],
            descendants: 0,
        })?;
        if let Err(err) = child.release() {
            self.processes.clear();
            return Err(err.into());
        }
        Ok(())
    }

    /// Reads a process's table from /proc, and learns the paths of the files it maps.
    fn seed(&mut self, pid: i32) -> Result<Traced, SeedError> {
        let traced = Traced::seed(pid)?;
        self.files.learn(traced.table.mappings());
        release_freed_memory();
        Ok(traced)
    }

    /// `--sites`: a table read from scratch; its anonymous memory so far comes from `origin`.
    fn track_seeded(&mut self, traced: &Traced, origin: Origin) {
        if let Some(sites) = &mut self.sites {
            sites.seeded(traced.pid as u32, &traced.table, origin);
        }
    }

    /// `--sites`: a table read again; the owners of what is still anonymous stay.
    fn track_reread(&mut self, traced: &Traced) {
        if let Some(sites) = &mut self.sites {
            sites.reread(traced.pid as u32, &traced.table);
        }
    }

    /// Runs until every target has exited (returning the launched command's exit code, or 0)
    /// or a stop signal ends it (see `Session::stop_signal`); a final dump is written either
    /// way.
    pub async fn run(mut self) -> Result<i32, SessionError> {
        let outcome = loop {
            if self.processes.is_empty() && self.untabled.is_empty() {
                break Ok(self.exit_code);
            }
            let woken = tokio::select! {
                ready = self.source.readable() => Woken::Records(ready),
                control = self.controls.next() => Woken::Control(control),
            };
            let step = match woken {
                Woken::Records(Ok(())) => self
                    .process_available()
                    .and_then(|_| self.end_processes_whose_exit_was_lost()),
                Woken::Records(Err(err)) => Err(err.into()),
                Woken::Control(Ok(Control::Dump)) => self.dump_all(),
                Woken::Control(Ok(Control::Stop(received))) => match self.stop_signal(received) {
                    Ok(Some(code)) => break Ok(code),
                    other => other.map(drop),
                },
                Woken::Control(Err(err)) => Err(SessionError::Signals(err)),
            };
            if let Err(err) = step {
                break Err(err);
            }
        };
        match outcome {
            Err(SessionError::Sink(SinkError::Closed)) => Ok(0),
            other => {
                let flushed = self.output.flush();
                match (other, flushed) {
                    (Ok(code), Ok(())) | (Ok(code), Err(SinkError::Closed)) => Ok(code),
                    (Ok(_), Err(err)) => Err(err.into()),
                    (Err(err), _) => Err(err),
                }
            }
        }
    }

    /// Final dump of every process still traced, then stop: with the launched command's
    /// status once it has ended, else 0.
    fn finish(&mut self) -> Result<i32, SessionError> {
        self.dump_all()?;
        Ok(self.exit_code)
    }

    /// A SIGINT, SIGTERM or SIGHUP: `Some(exit code)` when the session ends now. Attached, or
    /// once the launched command has ended, it ends with the final dumps. While a launched
    /// command runs, the command decides, as it would without pmap-trace: a signal the
    /// terminal sent to the whole process group reached it already; one sent to pmap-trace
    /// alone is passed on to it, once; tracing goes on until the command ends. A second one
    /// sent to pmap-trace (later than [`REPEAT_WINDOW`]) means stop waiting: the final dumps,
    /// and a line naming what is left running.
    fn stop_signal(&mut self, received: Received) -> Result<Option<i32>, SessionError> {
        let Some(command) = self.launched else {
            return self.finish().map(Some);
        };
        if received.reached_group_of(command) {
            return Ok(None);
        }
        match self.passed_on {
            None => {
                // Gone already: its exit record is on its way.
                let _ = signals::send(command, received.signal);
                self.passed_on = Some(Instant::now());
                Ok(None)
            }
            Some(at) if at.elapsed() < REPEAT_WINDOW => Ok(None),
            Some(_) => self.stop_waiting(received.signal).map(Some),
        }
    }

    /// Leaves the processes still traced running, and says so: exits as if killed by `signal`.
    fn stop_waiting(&mut self, signal: i32) -> Result<i32, SessionError> {
        self.dump_all()?;
        let running: Vec<ProcessName> = self
            .processes
            .keys()
            .chain(self.untabled.keys())
            .map(|&pid| process_name(pid))
            .collect();
        self.output.write(Message::StoppedWaiting {
            signal,
            running: &running,
        })?;
        Ok(128 + signal)
    }

    /// Reads and applies every record already in the ring.
    /// Returns the processes that had events.
    fn process_available(&mut self) -> Result<BTreeSet<u32>, SessionError> {
        let mut records = Vec::new();
        self.source.drain_records(&mut records)?;
        let mut changed = BTreeSet::new();
        for record in &records {
            match record {
                Record::Captured(Captured {
                    event,
                    stack,
                    image,
                }) => {
                    changed.insert(event.tgid);
                    self.process(event, stack.as_ref(), image.as_deref())?;
                }
                Record::FirstTouch(touch) => {
                    if let Some(sites) = &mut self.sites {
                        sites.first_touch(touch.tgid, touch.address);
                    }
                }
            }
        }
        self.check_dropped()?;
        self.output.flush()?;
        Ok(changed)
    }

    /// When the kernel lost records, every table may be stale: say so and re-read them.
    fn check_dropped(&mut self) -> Result<(), SessionError> {
        let dropped = self.source.dropped();
        let seen = std::mem::replace(&mut self.dropped_seen, dropped);
        if self.config.sites.is_some_and(|s| s.fault_period.is_some()) {
            let count = dropped.faults - seen.faults;
            if count != 0 {
                self.say(Notice::FaultSamplesLeftOut { count })?;
            }
        }
        if self.sites.is_some() {
            let count = dropped.stacks - seen.stacks;
            if count != 0 {
                self.say(Notice::StackCopiesLost { count })?;
            }
        }
        let count = dropped.records - seen.records;
        if count == 0 {
            return Ok(());
        }
        self.say(Notice::RecordsLost { count })?;
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        let mut gone = Vec::new();
        for pid in pids {
            // A zombie's maps read empty; its exit record may be among those lost.
            if seed::has_exited(pid as i32) {
                gone.push(pid);
                continue;
            }
            match self.seed(pid as i32) {
                // A process in exit_mm() reads empty before it is a zombie: the table held
                // is the better last dump.
                Ok(fresh) if fresh.table.mappings().next().is_none() => gone.push(pid),
                Ok(fresh) => {
                    let before = self.processes[&pid].table.to_mappings();
                    let divergence = verify::compare(&before, &fresh.table.to_mappings());
                    self.track_reread(&fresh);
                    self.processes.insert(pid, fresh);
                    self.report_resync(pid, &divergence)?;
                }
                Err(_) => gone.push(pid),
            }
        }
        for pid in gone {
            self.say(Notice::EndedWhileRecordsLost { pid })?;
            self.end_early(pid)?;
        }
        Ok(())
    }

    /// Once records have been lost, a traced process's exit record may be among them: one
    /// that has ended is ended here, after a last drain gave its exit record (written before
    /// it became a zombie) every chance to arrive.
    fn end_processes_whose_exit_was_lost(&mut self) -> Result<(), SessionError> {
        if self.dropped_seen.records == 0 {
            return Ok(());
        }
        let ended = |session: &Session| -> Vec<u32> {
            session
                .processes
                .keys()
                .chain(session.untabled.keys())
                .copied()
                .filter(|&pid| seed::has_exited(pid as i32))
                .collect()
        };
        if ended(self).is_empty() {
            return Ok(());
        }
        self.process_available()?;
        for pid in ended(self) {
            if self.processes.contains_key(&pid) {
                self.say(Notice::ExitRecordLost { pid })?;
            }
            self.end_early(pid)?;
        }
        Ok(())
    }

    /// Ends a process whose exit record has not come, and ignores its records from here on.
    fn end_early(&mut self, pid: u32) -> Result<(), SessionError> {
        self.end_process(pid)?;
        self.ended_early.insert(pid);
        Ok(())
    }

    /// What a re-read after lost records changed in `pid`'s table: the lines it had that the
    /// kernel has not, and the other way round.
    fn report_resync(&mut self, pid: u32, divergence: &Divergence) -> Result<(), SessionError> {
        self.output.write(Message::Resynced(Compared {
            pid,
            mappings: 0,
            only_in_table: &divergence.only_in_table,
            only_in_kernel: &divergence.only_in_kernel,
        }))?;
        Ok(())
    }

    fn say(&mut self, notice: Notice<'_>) -> Result<(), SessionError> {
        self.output.write(Message::Notice(notice))?;
        Ok(())
    }

    /// Applies one event; `stack` is the caller's stack the kernel copied at a growth call,
    /// `image` the address space an exec made.
    fn process(
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
                let mapped = event
                    .file
                    .as_ref()
                    .and_then(|f| self.files.mapping_for(call, *ret, f));
                // The path shown is the file's at the call, as the kernel walked it then; when
                // the walk stopped short, the table's (the live kernel's answer when there was
                // one), else the name the kernel recorded.
                let walked = event.file.as_ref().is_some_and(|f| f.whole_path);
                context.path = mapped.as_ref().map(|m| m.name.clone());
                if let Some(traced) = self.processes.get_mut(&tgid) {
                    // Before the table: the stack is unwound against the code mapped at the
                    // call.
                    if let Some(sites) = &mut self.sites {
                        sites.apply(tgid, &traced.table, call, *ret, stack);
                    }
                    traced.apply_with_file(call, *ret, mapped);
                    if let Call::Mmap { fd, .. } = call
                        && *fd >= 0
                        && let Some(now) = traced
                            .table
                            .mapping_starting_at(*ret as u64)
                            .filter(|m| !m.name.is_empty())
                    {
                        if !walked {
                            context.path = Some(now.name.clone());
                        }
                        self.files.learn([now]);
                    }
                }
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
            Some(cmdline) => seed::header_from_cmdline(cmdline, &event.comm),
            None => match seed::read_process_header(pid) {
                Ok(header) if !seed::has_exited(pid) => header,
                _ => {
                    self.say(Notice::CommandLineCut { pid: pid as u32 })?;
                    seed::header_from_cmdline(&image.cmdline_start, &event.comm)
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

    fn emit(&mut self, event: &Event, context: &EventContext) -> Result<(), SessionError> {
        if !self.config.events {
            return Ok(());
        }
        self.output.write(Message::Event { event, context })?;
        Ok(())
    }

    /// The process is gone: a last dump of its table (or the one notice that it has none),
    /// and its exit code if we started it.
    fn end_process(&mut self, tgid: u32) -> Result<(), SessionError> {
        let untabled = self.untabled.remove(&tgid);
        if let Some(mut traced) = self.processes.remove(&tgid) {
            traced.mark_gone();
            self.dump_style
                .write(self.output.as_mut(), &[&traced], false)?;
            self.dump_style.forget(tgid);
            self.write_sites(tgid)?;
            self.write_stack_files()?;
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

    /// The launched command has ended: pmap-trace, its parent, reaps it, and its status
    /// becomes pmap-trace's exit code.
    fn reap_if_launched(&mut self, tgid: u32) -> Option<ExitStatus> {
        if self.launched != Some(tgid as i32) {
            return None;
        }
        self.launched = None;
        let status = wait_exit(tgid as i32);
        self.exit_code = status.shell_code();
        Some(status)
    }

    /// Applies every event produced so far, then dumps every table.
    fn dump_all(&mut self) -> Result<(), SessionError> {
        self.process_available()?;
        for traced in self.processes.values_mut() {
            traced.refresh_growing();
            traced.refresh_header();
        }
        // One pmap run over every process, in PID order.
        let processes: Vec<&Traced> = self.processes.values().collect();
        self.dump_style
            .write(self.output.as_mut(), &processes, true)?;
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            self.write_sites(pid)?;
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

    /// `--verify`: compares a table with the kernel's. Only a state the events have caught up
    /// with can be compared, so a process that changed meanwhile is read again.
    fn verify(&mut self, pid: u32) -> Result<(), SessionError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let Ok(kernel) = seed::read_mappings(pid as i32) else {
                // Gone: its exit record ends it.
                return Ok(());
            };
            if self.process_available()?.contains(&pid) {
                continue;
            }
            let Some(traced) = self.processes.get_mut(&pid) else {
                return Ok(());
            };
            traced.refresh_growing();
            let divergence = verify::compare(&traced.mappings(), &kernel);
            if !divergence.is_empty() {
                // The alarm is raised; from here on the table is exact again.
                if let Ok(fresh) = self.seed(pid as i32) {
                    self.track_reread(&fresh);
                    self.processes.insert(pid, fresh);
                }
            }
            return self.report_verification(pid, &divergence, kernel.len());
        }
        self.say(Notice::NotCompared {
            pid,
            attempts: ATTEMPTS,
        })
    }

    /// `--sites`: the call sites of `pid` after its dump; `--folded`/`--flamegraph` take
    /// them in too.
    fn write_sites(&mut self, pid: u32) -> Result<(), SessionError> {
        let Some(report) = self.sites.as_mut().and_then(|sites| sites.report(pid)) else {
            return Ok(());
        };
        if let Some(files) = &mut self.stack_files {
            files.update(pid, &report.all);
        }
        if self.config.sites.is_none_or(|sites| sites.top.is_none()) {
            return Ok(());
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

    fn report_verification(
        &mut self,
        pid: u32,
        divergence: &Divergence,
        mappings: usize,
    ) -> Result<(), SessionError> {
        self.output.write(Message::Verified(Compared {
            pid,
            mappings,
            only_in_table: &divergence.only_in_table,
            only_in_kernel: &divergence.only_in_kernel,
        }))?;
        Ok(())
    }

    /// Says tracing is live, on one line that scripts wait for: `attached to PID (COMM)` for
    /// each target, in PID order, followed by `(thread TID given)` when `-p` named one of its
    /// threads, and with `-f` how many processes they had forked already.
    fn announce(&mut self, targets: &[PidTarget], descendants: usize) -> Result<(), SessionError> {
        let mut targets: Vec<AttachedTarget> = targets
            .iter()
            .map(|target| AttachedTarget {
                process: process_name(target.pid as u32),
                thread: target.thread,
            })
            .collect();
        targets.sort_by_key(|target| target.process.pid);
        self.output.write(Message::Attached {
            targets: &targets,
            descendants,
        })?;
        Ok(())
    }
}

/// `pid` and its name as `/proc/PID/comm` gives it now (empty when it is gone).
fn process_name(pid: u32) -> ProcessName {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ProcessName {
        pid,
        comm: comm.trim_end().to_string(),
    }
}

/// A stop signal this soon after the one passed on is the same request: timeout(1), for one,
/// signals pmap-trace and then its whole process group.
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

/// How dumps are printed, what pmap looks up once per run, and for `--diff` each process's
/// table at its previous dump.
struct DumpStyle {
    settings: DumpSettings,
    sysv_shm_minor: Option<u32>,
    smaps_layout: SmapsLayout,
    previous: HashMap<u32, Vec<Mapping>>,
}

impl DumpStyle {
    fn new(config: &Config) -> DumpStyle {
        DumpStyle {
            settings: config.dump,
            sysv_shm_minor: seed::discover_shm_minor(),
            smaps_layout: seed::discover_smaps_layout(),
            previous: HashMap::new(),
        }
    }

    /// One pmap run over `processes`. Their smaps are read now when the format shows smaps
    /// values and they are `live`: a process that is gone has none, and its PID may already
    /// name another process.
    fn write(
        &mut self,
        output: &mut dyn Output,
        processes: &[&Traced],
        live: bool,
    ) -> Result<(), SinkError> {
        let options = self.settings.pmap;
        let mut run = PmapRun::new(options, &self.smaps_layout);
        for traced in processes {
            let mappings: Vec<Mapping> = traced.mappings();
            let view = traced.view(&mappings, self.sysv_shm_minor);
            let before = if self.settings.diff {
                self.previous.insert(traced.pid as u32, mappings.clone())
            } else {
                None
            };
            if let Some(before) = before {
                let diff = diff(&before, &mappings);
                output.write(Message::Diff {
                    view: &view,
                    diff: &diff,
                    options: &options,
                })?;
                continue;
            }
            // Read as the dump goes. A file that cannot be read, or stops early (the process
            // ended), leaves the mappings it has no lines for with lines made from the table.
            let mut smaps_file = if live && options.format.needs_smaps() {
                SmapsReader::open(traced.pid).ok()
            } else {
                None
            };
            let mut smaps = smaps_file.iter_mut().flatten().map(|(_, entry)| entry);
            output.write(Message::Dump(Dump {
                run: &mut run,
                view: &view,
                smaps: &mut smaps,
            }))?;
        }
        Ok(())
    }

    /// The process is gone: its next dump, if its PID comes back, is a first one.
    fn forget(&mut self, pid: u32) {
        self.previous.remove(&pid);
    }
}

/// Seeding and dumping a process with many mappings allocate temporary text several times the
/// size of its table; glibc keeps freed memory mapped unless asked, which left pmap-trace's RSS
/// at its peak after every dump.
fn release_freed_memory() {
    // SAFETY: no preconditions; it only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// What woke the loop.
enum Woken {
    Records(Result<(), CaptureError>),
    Control(io::Result<Control>),
}
