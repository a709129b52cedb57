//! Messages as JSON, one object a line, each with its `type` (see `docs/usage.md`).

use serde_json::json;

use super::{Compared, Dump, Message, Output, attached_line, maps_lines, stopped_waiting_line};
use crate::model::Mapping;
use crate::render::{
    diff::diff_json,
    events::{Clock, escape_bytes, event_json},
    json::dump_json,
    sink::{Sink, SinkError},
};

pub struct JsonOutput {
    sink: Sink,
    clock: Clock,
}

impl JsonOutput {
    pub fn new(sink: Sink, clock: Clock) -> JsonOutput {
        JsonOutput { sink, clock }
    }
}

/// The `/proc/PID/maps` lines of mappings as JSON strings, escaped as event lines escape
/// names.
fn escaped(mappings: &[Mapping]) -> Vec<String> {
    maps_lines(mappings)
        .iter()
        .map(|line| escape_bytes(line))
        .collect()
}

impl Output for JsonOutput {
    fn write(&mut self, message: Message<'_>) -> Result<(), SinkError> {
        if self.sink.closed() && !message.to_stderr() {
            return Ok(());
        }
        let object = match message {
            Message::Event { event, context } => event_json(event, context, &self.clock),
            Message::Dump(Dump { run, view, smaps }) => {
                let smaps: Vec<_> = smaps.collect();
                let dump = run.process(view, &smaps);
                dump_json(view, run.options().format, &dump)
            }
            Message::Diff {
                view,
                diff,
                options,
            } => diff_json(view, diff, options),
            Message::Sites(report) => report.json(),
            Message::Notice(notice) => {
                json!({ "type": "notice", "message": notice.to_string() })
            }
            Message::Verified { compared, .. } => json!({
                "type": "verify",
                "pid": compared.pid,
                "matches": compared.matches(),
                "only_in_table": escaped(compared.only_in_table),
                "only_in_kernel": escaped(compared.only_in_kernel),
            }),
            Message::Resynced(Compared {
                pid,
                only_in_table,
                only_in_kernel,
                ..
            }) => json!({
                "type": "resync",
                "pid": pid,
                "only_in_table": escaped(only_in_table),
                "only_in_kernel": escaped(only_in_kernel),
            }),
            // Standard error is for people and scripts waiting on it: the same line as text.
            Message::Attached {
                targets,
                descendants,
            } => {
                self.sink.diagnostic(&attached_line(targets, descendants));
                return Ok(());
            }
            Message::StoppedWaiting { signal, running } => {
                self.sink.diagnostic(&stopped_waiting_line(signal, running));
                return Ok(());
            }
        };
        self.sink.line(&object.to_string())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sink.flush()
    }

    fn closed(&self) -> bool {
        self.sink.closed()
    }
}
