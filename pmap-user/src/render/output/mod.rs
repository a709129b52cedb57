//! One output layer for a trace session: everything it says is a [`Message`], a value that an
//! [`Output`] writes to the sink as text ([`text::TextOutput`]) or as one JSON object a line
//! ([`json::JsonOutput`]). The session decides what to say; how it reads is decided here
//! alone.

pub mod json;
pub mod notice;
pub mod text;

use std::fmt;

use self::notice::Notice;
use super::{
    diff::Diff,
    events::EventContext,
    pmap::{PmapOptions, PmapRun, ProcessView},
    sink::SinkError,
};
use crate::{
    decode::Event,
    model::{Mapping, SmapsEntry, signal_name},
    sites::SitesReport,
};

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
    /// `--verify`: a table compared with the kernel's `/proc/PID/maps`, of `mappings` lines.
    Verified {
        compared: Compared<'a>,
        mappings: usize,
    },
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

impl Message<'_> {
    /// Whether the message goes to standard error: it does even once the output's reader is
    /// gone.
    fn to_stderr(&self) -> bool {
        matches!(
            self,
            Message::Attached { .. } | Message::StoppedWaiting { .. }
        )
    }
}

/// One process's dump. A run keeps what pmap keeps from one process to the next (`-X` column
/// widths); `smaps` gives `/proc/PID/smaps` entries as the dump reads them (none when the
/// process is gone), so a large dump is streamed rather than built.
pub struct Dump<'a> {
    pub run: &'a mut PmapRun,
    pub view: &'a ProcessView<'a>,
    pub smaps: &'a mut dyn Iterator<Item = SmapsEntry>,
}

/// A table held against the kernel's: the mappings only one of them has, shown as their
/// `/proc/PID/maps` lines.
pub struct Compared<'a> {
    pub pid: u32,
    pub only_in_table: &'a [Mapping],
    pub only_in_kernel: &'a [Mapping],
}

impl Compared<'_> {
    fn matches(&self) -> bool {
        self.only_in_table.is_empty() && self.only_in_kernel.is_empty()
    }
}

/// The `/proc/PID/maps` lines of `mappings`, without their newlines.
fn maps_lines(mappings: &[Mapping]) -> Vec<Vec<u8>> {
    mappings
        .iter()
        .map(|mapping| {
            let mut line = super::maps_line(mapping);
            line.pop();
            line
        })
        .collect()
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
    /// Writes `message`; once the output's reader has gone (see [`Output::closed`]), only what
    /// goes to standard error.
    fn write(&mut self, message: Message<'_>) -> Result<(), SinkError>;

    /// Pushes buffered output to the reader: after every batch, so events are seen live.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Whether the output's reader has gone (`| head -1`): nothing more reaches anyone.
    fn closed(&self) -> bool;
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

#[cfg(test)]
mod tests {
    use super::{json::JsonOutput, notice::NoTable, text::TextOutput, *};
    use crate::render::{events::Clock, sink::Sink};

    /// What `messages` print as text and as JSON: (standard output, standard error) of each.
    fn written<'a>(messages: impl Fn() -> Vec<Message<'a>>) -> [(String, String); 2] {
        let outputs: [fn(Sink) -> Box<dyn Output>; 2] = [
            |sink| Box::new(TextOutput::new(sink, Clock::now())),
            |sink| Box::new(JsonOutput::new(sink, Clock::now())),
        ];
        outputs.map(|output| {
            let (sink, written) = Sink::in_memory();
            let mut output = output(sink);
            for message in messages() {
                output.write(message).unwrap();
            }
            output.flush().unwrap();
            (written.out(), written.err())
        })
    }

    fn named(pid: u32, comm: &str) -> ProcessName {
        ProcessName {
            pid,
            comm: comm.to_string(),
        }
    }

    #[test]
    fn the_attached_line_names_each_target_its_thread_and_the_descendants() {
        let targets = [
            AttachedTarget {
                process: named(7, "redis-server"),
                thread: Some(9),
            },
            AttachedTarget {
                process: named(12, "sh"),
                thread: None,
            },
        ];
        for (descendants, tail) in [(0, ""), (1, " and 1 descendant"), (3, " and 3 descendants")] {
            let line = format!(
                "pmap-trace: attached to 7 (redis-server) (thread 9 given), 12 (sh){tail}\n"
            );
            let messages = || {
                vec![Message::Attached {
                    targets: &targets[..],
                    descendants,
                }]
            };
            // Standard error is for people and scripts: the same line in both formats.
            assert_eq!(
                written(messages),
                [(String::new(), line.clone()), (String::new(), line)]
            );
        }
    }

    #[test]
    fn stopping_the_wait_names_what_is_left_running_on_standard_error() {
        let running = [named(42, "server"), named(43, "worker")];
        let line = "pmap-trace: stopped waiting at a second SIGTERM: 42 (server), 43 (worker) \
                    still running, no longer traced\n";
        let messages = || {
            vec![Message::StoppedWaiting {
                signal: libc::SIGTERM,
                running: &running[..],
            }]
        };
        assert_eq!(
            written(messages),
            [
                (String::new(), line.to_string()),
                (String::new(), line.to_string())
            ]
        );
    }

    #[test]
    fn a_re_read_lists_ten_lines_of_each_kind_as_text_and_all_as_json() {
        let mapping = |page: u64, name: &[u8]| Mapping {
            start: page * 0x1000,
            end: (page + 1) * 0x1000,
            perms: crate::model::Perms::parse(b"rw-p").unwrap(),
            offset: 0,
            device: Default::default(),
            inode: 0,
            name: name.to_vec(),
        };
        let stale: Vec<Mapping> = (0..12).map(|i| mapping(i, b"")).collect();
        let missing = [mapping(20, b"bad \x1b name")];
        let messages = || {
            vec![Message::Resynced(Compared {
                pid: 5,
                only_in_table: &stale,
                only_in_kernel: &missing,
            })]
        };
        let [(text, _), (json, _)] = written(messages);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "pmap-trace: re-read 5: 12 lines of its table were stale, 1 missing"
        );
        assert_eq!(
            lines[1],
            "pmap-trace:   stale:   00000000-00001000 rw-p 00000000 00:00 0 "
        );
        assert_eq!(
            lines[10],
            "pmap-trace:   stale:   00009000-0000a000 rw-p 00000000 00:00 0 "
        );
        assert_eq!(lines[11], "pmap-trace:   stale:   ... 2 more");
        // Names are escaped as event lines escape them.
        assert!(
            lines[12]
                .starts_with("pmap-trace:   missing: 00014000-00015000 rw-p 00000000 00:00 0 ")
        );
        assert!(lines[12].ends_with(" bad \\033 name"), "{}", lines[12]);
        assert_eq!(lines.len(), 13);
        let object: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(object["type"], "resync");
        assert_eq!(object["only_in_table"].as_array().unwrap().len(), 12);
        assert!(
            object["only_in_kernel"][0]
                .as_str()
                .unwrap()
                .ends_with(" bad \\033 name")
        );
    }

    #[test]
    fn a_notice_is_one_line_after_the_name_or_one_object() {
        let messages = || {
            vec![Message::Notice(Notice::NoDump {
                pid: 8,
                why: NoTable::ExecImageUnread {
                    gap: Some(crate::decode::ImageGap::Overlap),
                },
            })]
        };
        let text = "8 exited before its new address space could be read (the exec record's VMAs \
                    overlap); no dump for it";
        let [(plain, _), (json, _)] = written(messages);
        assert_eq!(plain, format!("pmap-trace: {text}\n"));
        assert_eq!(
            json,
            format!(
                "{}\n",
                serde_json::json!({"type": "notice", "message": text})
            )
        );
    }
}
