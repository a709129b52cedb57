//! A trace session: attaches to the targets, seeds their tables, then turns ring records into
//! output lines and keeps every table current until the targets are gone or the user stops it.

mod attach;
pub mod controls;
mod dump_style;
mod dumps;
mod exit;
pub mod launch;
mod lifecycle;
mod recovery;
pub mod signals;
mod terminal;
#[cfg(test)]
mod tests;
pub mod traced;

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    time::Instant,
};

use thiserror::Error;

use self::{
    controls::{Control, Controls},
    dump_style::DumpStyle,
    launch::LaunchError,
    traced::{KnownFiles, TracedProcess as Traced},
};
use crate::{
    capture::{CaptureError, Dropped, RecordSource},
    config::Config,
    decode::{Captured, Event, Record, special_mappings},
    model::Mapping,
    procfs::{SeedError, maps},
    render::{
        events::EventContext,
        output::{
            Message, Output,
            notice::{NoTable, Notice},
        },
        sink::SinkError,
    },
    sites::{SiteTracker, folded::StackFiles, residency::Rank},
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
                config.sites.map_or(Rank::Live, |sites| sites.folded_weight),
            ),
            specials: maps::read_mappings(std::process::id() as i32)
                .map(|maps| special_mappings(&maps))
                .unwrap_or_default(),
            config,
        }
    }

    /// Runs until every target has exited (returning the launched command's exit code, or 0)
    /// or a stop signal ends it (see `Session::stop_signal`); a final dump is written either
    /// way. Or until the output's reader has gone, and no launched command is left to wait
    /// for (see `Session::unread`).
    pub async fn run(mut self) -> Result<i32, SessionError> {
        let outcome = loop {
            if self.processes.is_empty() && self.untabled.is_empty() {
                break Ok(self.exit_code);
            }
            if let Some(code) = self.unread() {
                break Ok(code);
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
        let flushed = self.output.flush();
        match (outcome, flushed) {
            (Ok(code), Ok(())) => Ok(code),
            (Ok(_), Err(err)) => Err(err.into()),
            (Err(err), _) => Err(err),
        }
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
                    self.process(event, stack.as_deref(), image.as_deref())?;
                }
                Record::FirstTouch(touch) => {
                    if let (Some(sites), Some(traced)) =
                        (&mut self.sites, self.processes.get(&touch.tgid))
                    {
                        sites.first_touch(
                            touch.tgid,
                            &traced.table,
                            touch.address,
                            touch.stack.as_deref(),
                        );
                    }
                }
            }
        }
        self.check_dropped()?;
        self.output.flush()?;
        Ok(changed)
    }

    fn say(&mut self, notice: Notice<'_>) -> Result<(), SessionError> {
        self.output.write(Message::Notice(notice))?;
        Ok(())
    }

    fn emit(&mut self, event: &Event, context: &EventContext) -> Result<(), SessionError> {
        if !self.config.events {
            return Ok(());
        }
        self.output.write(Message::Event { event, context })?;
        Ok(())
    }
}

/// What woke the loop.
enum Woken {
    Records(Result<(), CaptureError>),
    Control(io::Result<Control>),
}

/// Seeding and dumping a process with many mappings allocate temporary text several times the
/// size of its table; glibc keeps freed memory mapped unless asked, which left pmap-trace's RSS
/// at its peak after every dump.
fn release_freed_memory() {
    // SAFETY: no preconditions; it only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}
