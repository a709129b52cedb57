//! How a session's dumps are printed: pmap's options, what pmap looks up once per run, and
//! for `--diff` each process's table at its previous dump.

use std::collections::HashMap;

use super::traced::TracedProcess as Traced;
use crate::{
    config::{Config, DumpSettings},
    model::{Mapping, SmapsLayout},
    procfs::{
        maps,
        smaps::{self, SmapsReader},
    },
    render::{
        diff::diff,
        output::{Dump, Message, Output},
        pmap::PmapRun,
        sink::SinkError,
    },
};

/// How dumps are printed, what pmap looks up once per run, and for `--diff` each process's
/// table at its previous dump.
pub(super) struct DumpStyle {
    settings: DumpSettings,
    sysv_shm_minor: Option<u32>,
    smaps_layout: SmapsLayout,
    previous: HashMap<u32, Vec<Mapping>>,
}

impl DumpStyle {
    pub(super) fn new(config: &Config) -> DumpStyle {
        DumpStyle {
            settings: config.dump,
            sysv_shm_minor: maps::discover_shm_minor(),
            smaps_layout: smaps::discover_smaps_layout(),
            previous: HashMap::new(),
        }
    }

    /// One pmap run over `processes`. Their smaps are read now when the format shows smaps
    /// values and they are `live`: a process that is gone has none, and its PID may already
    /// name another process.
    pub(super) fn write(
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
    pub(super) fn forget(&mut self, pid: u32) {
        self.previous.remove(&pid);
    }
}
