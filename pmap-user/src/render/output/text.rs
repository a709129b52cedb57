//! Messages as text: strace-like event lines, dumps as pmap prints them, notices after
//! `pmap-trace: `.

use super::{Compared, Dump, Message, Output, attached_line, maps_lines, stopped_waiting_line};
use crate::render::{
    diff::write_diff,
    events::{Clock, EventLines, escape_bytes},
    sink::{Sink, SinkError},
};

/// Lines of each kind a re-read after lost records lists; a heavy loss can change thousands.
const RESYNC_LINES_SHOWN: usize = 10;

pub struct TextOutput {
    sink: Sink,
    event_lines: EventLines,
    /// The event line being written, reused from one event to the next: event lines are most
    /// of the work at high call rates, and are written without `format!`.
    line: Vec<u8>,
}

impl TextOutput {
    pub fn new(sink: Sink, clock: Clock) -> TextOutput {
        TextOutput {
            sink,
            event_lines: EventLines::new(clock),
            line: Vec::with_capacity(256),
        }
    }

    fn notice(&mut self, text: &str) -> Result<(), SinkError> {
        self.sink.line(&format!("pmap-trace: {text}"))
    }

    fn verified(&mut self, compared: &Compared<'_>, mappings: usize) -> Result<(), SinkError> {
        let pid = compared.pid;
        if compared.matches() {
            return self.notice(&format!(
                "verify {pid}: the table matches /proc/{pid}/maps ({mappings} mappings)"
            ));
        }
        self.notice(&format!(
            "verify {pid}: the table DIFFERS from /proc/{pid}/maps (re-read from there now):"
        ))?;
        for line in maps_lines(compared.only_in_table) {
            self.notice(&format!("  table only:  {}", escape_bytes(&line)))?;
        }
        for line in maps_lines(compared.only_in_kernel) {
            self.notice(&format!("  kernel only: {}", escape_bytes(&line)))?;
        }
        Ok(())
    }

    /// The counts, then the first [`RESYNC_LINES_SHOWN`] lines of each kind.
    fn resynced(&mut self, compared: &Compared<'_>) -> Result<(), SinkError> {
        let pid = compared.pid;
        let (stale, missed) = (
            maps_lines(compared.only_in_table),
            maps_lines(compared.only_in_kernel),
        );
        self.notice(&format!(
            "re-read {pid}: {} lines of its table were stale, {} missing",
            stale.len(),
            missed.len()
        ))?;
        for (label, lines) in [("stale:  ", &stale), ("missing:", &missed)] {
            for line in &lines[..lines.len().min(RESYNC_LINES_SHOWN)] {
                self.notice(&format!("  {label} {}", escape_bytes(line)))?;
            }
            if lines.len() > RESYNC_LINES_SHOWN {
                self.notice(&format!(
                    "  {label} ... {} more",
                    lines.len() - RESYNC_LINES_SHOWN
                ))?;
            }
        }
        Ok(())
    }
}

impl Output for TextOutput {
    fn write(&mut self, message: Message<'_>) -> Result<(), SinkError> {
        if self.sink.closed() && !message.to_stderr() {
            return Ok(());
        }
        match message {
            Message::Event { event, context } => {
                self.line.clear();
                self.event_lines.push(&mut self.line, event, context);
                self.line.push(b'\n');
                self.sink.bytes(&self.line)
            }
            Message::Dump(Dump { run, view, smaps }) => self
                .sink
                .write_with(|mut out| run.write_process(&mut out, view, smaps)),
            Message::Diff {
                view,
                diff,
                options,
            } => self
                .sink
                .write_with(|mut out| write_diff(&mut out, view, diff, options)),
            Message::Sites(report) => {
                for line in report.text() {
                    self.sink.line(&line)?;
                }
                Ok(())
            }
            Message::Notice(notice) => self.notice(&notice.to_string()),
            Message::Verified { compared, mappings } => self.verified(&compared, mappings),
            Message::Resynced(compared) => self.resynced(&compared),
            Message::Attached {
                targets,
                descendants,
            } => {
                self.sink.diagnostic(&attached_line(targets, descendants));
                Ok(())
            }
            Message::StoppedWaiting { signal, running } => {
                self.sink.diagnostic(&stopped_waiting_line(signal, running));
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sink.flush()
    }

    fn closed(&self) -> bool {
        self.sink.closed()
    }
}
