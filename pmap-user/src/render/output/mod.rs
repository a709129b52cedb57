//! One output layer for a trace session: everything it says is a [`Message`], a value that an
//! [`Output`] writes to the sink as text ([`TextOutput`]) or as one JSON object a line
//! ([`JsonOutput`]). The session decides what to say; how it reads is decided here alone.

mod json;
mod notice;
mod text;

use std::fmt;

pub use self::{
    json::JsonOutput,
    notice::{NoTable, Notice},
    text::TextOutput,
};
use super::{
    diff::Diff,
    events::EventContext,
    pmap::{PmapOptions, PmapRun, ProcessView},
    sink::SinkError,
    smaps::SmapsEntry,
};
use crate::{decode::Event, model::signal_name, sites::SitesReport};

/// What a trace session prints.
pub enum Message<'a> {
    /// A call or a lifecycle record (exec, fork, exit).
    Event {
        event: &'a Event,
        context: &'a EventContext,
    },
    /// One process's dump in pmap's format.
    Dump(Dump<'a>),
    /// `--diff`: what changed in a process since its previous dump.
    Diff {
        view: &'a ProcessView<'a>,
        diff: &'a Diff,
        options: &'a PmapOptions,
    },
    /// `--sites`: a process's call sites, after its dump.
    Sites(&'a SitesReport),
    /// Something the user should know about the trace itself.
    Notice(Notice<'a>),
    /// `--verify`: a table compared with the kernel's `/proc/PID/maps`.
    Verified(Compared<'a>),
    /// A table re-read after lost records: what the re-read changed.
    Resynced(Compared<'a>),
    /// Tracing is live (on standard error: scripts wait for this line).
    Attached {
        targets: &'a [AttachedTarget],
        /// `-f` with `-p`: how many processes the targets had forked already.
        descendants: usize,
    },
    /// A second stop signal ended the wait for a launched command that outlived the first
    /// (on standard error).
    StoppedWaiting {
        signal: i32,
        running: &'a [ProcessName],
    },
}

/// One process's dump. A run keeps what pmap keeps from one process to the next (`-X` column
/// widths); `smaps` gives `/proc/PID/smaps` entries as the dump reads them (none when the
/// process is gone), so a large dump is streamed rather than built.
pub struct Dump<'a> {
    pub run: &'a mut PmapRun,
    pub view: &'a ProcessView<'a>,
    pub smaps: &'a mut dyn Iterator<Item = SmapsEntry>,
}

/// A table held against the kernel's: the `/proc/PID/maps` lines only one of them has.
pub struct Compared<'a> {
    pub pid: u32,
    /// Lines in the kernel's file (`--verify` says how many it compared).
    pub mappings: usize,
    pub only_in_table: &'a [Vec<u8>],
    pub only_in_kernel: &'a [Vec<u8>],
}

impl Compared<'_> {
    fn matches(&self) -> bool {
        self.only_in_table.is_empty() && self.only_in_kernel.is_empty()
    }
}

/// A process by its PID and its name (`/proc/PID/comm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessName {
    pub pid: u32,
    pub comm: String,
}

impl fmt::Display for ProcessName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pid, self.comm)
    }
}

/// A process tracing started with, and the thread `-p` named when it named one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedTarget {
    pub process: ProcessName,
    pub thread: Option<i32>,
}

/// Writes messages. Implementations own the sink.
pub trait Output {
    fn write(&mut self, message: Message<'_>) -> Result<(), SinkError>;

    /// Pushes buffered output to the reader: after every batch, so events are seen live.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// The `attached to …` line, the same in every format.
fn attached_line(targets: &[AttachedTarget], descendants: usize) -> String {
    let names: Vec<String> = targets
        .iter()
        .map(|target| match target.thread {
            Some(tid) => format!("{} (thread {tid} given)", target.process),
            None => target.process.to_string(),
        })
        .collect();
    let descendants = match descendants {
        0 => String::new(),
        1 => " and 1 descendant".to_string(),
        n => format!(" and {n} descendants"),
    };
    format!("pmap-trace: attached to {}{descendants}", names.join(", "))
}

/// The `stopped waiting …` line, the same in every format.
fn stopped_waiting_line(signal: i32, running: &[ProcessName]) -> String {
    let running: Vec<String> = running.iter().map(ToString::to_string).collect();
    format!(
        "pmap-trace: stopped waiting at a second {}: {} still running, no longer traced",
        signal_name(signal),
        running.join(", ")
    )
}
