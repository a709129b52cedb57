//! Tables kept right when records are lost (the ring was full): a notice, every table re-read
//! from /proc, and processes whose exit record was lost ended anyway; and `--verify`, which
//! compares each table with the kernel's at every dump.

use super::{Session, SessionError};
use crate::{
    capture::Loss,
    procfs::{
        maps, process,
        verify::{self, Divergence},
    },
    render::output::{Compared, Message, notice::Notice},
};

impl Session {
    /// When the kernel lost records, every table may be stale: say so and re-read them.
    pub(super) fn check_dropped(&mut self) -> Result<(), SessionError> {
        if self.config.sites.is_some_and(|s| s.fault_period.is_some()) {
            let count = self.newly_dropped(Loss::Faults);
            if count != 0 {
                self.say(Notice::FaultSamplesLeftOut { count })?;
            }
        }
        if self.sites.is_some() {
            let count = self.newly_dropped(Loss::Stacks);
            if count != 0 {
                self.say(Notice::StackCopiesLost { count })?;
            }
        }
        let count = self.newly_dropped(Loss::Records);
        if count == 0 {
            return Ok(());
        }
        self.say(Notice::RecordsLost { count })?;
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        let mut gone = Vec::new();
        for pid in pids {
            // A zombie's maps read empty; its exit record may be among those lost.
            if process::has_exited(pid as i32) {
                gone.push(pid);
                continue;
            }
            // A process in exit_mm() is not read (see `TracedProcess::seed`): the table held
            // is the better last dump.
            match self.seed(pid as i32) {
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

    /// How many of `loss` the kernel side has had since the last look.
    fn newly_dropped(&mut self, loss: Loss) -> u64 {
        let now = self.source.dropped(loss);
        now - std::mem::replace(self.dropped_seen.count(loss), now)
    }

    /// Once records have been lost, a traced process's exit record may be among them: one
    /// that has ended is ended here, after a last drain gave its exit record (written before
    /// it became a zombie) every chance to arrive.
    pub(super) fn end_processes_whose_exit_was_lost(&mut self) -> Result<(), SessionError> {
        if self.dropped_seen.records == 0 {
            return Ok(());
        }
        let ended = |session: &Session| -> Vec<u32> {
            session
                .processes
                .keys()
                .chain(session.untabled.keys())
                .copied()
                .filter(|&pid| process::has_exited(pid as i32))
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
            only_in_table: &divergence.only_in_table,
            only_in_kernel: &divergence.only_in_kernel,
        }))?;
        Ok(())
    }

    /// `--verify`: compares a table with the kernel's. Only a state the events have caught up
    /// with can be compared, so a process that changed meanwhile is read again.
    pub(super) fn verify(&mut self, pid: u32) -> Result<(), SessionError> {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let Ok(kernel) = maps::read_mappings(pid as i32) else {
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

    fn report_verification(
        &mut self,
        pid: u32,
        divergence: &Divergence,
        mappings: usize,
    ) -> Result<(), SessionError> {
        let compared = Compared {
            pid,
            only_in_table: &divergence.only_in_table,
            only_in_kernel: &divergence.only_in_kernel,
        };
        self.output
            .write(Message::Verified { compared, mappings })?;
        Ok(())
    }
}
