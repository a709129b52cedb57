//! Starting a trace: running processes attached (`-p`, with `-f` their descendants too), or a
//! command launched held before its exec; and the line that says tracing is live.

use std::fs;

use super::{Session, SessionError, launch::HeldChild};
use crate::{
    config::PidTarget,
    procfs::{SeedError, process},
    render::output::{AttachedTarget, Message, ProcessName},
    sites::Origin,
};

impl Session {
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
            if process::has_exited(pid) {
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
            .flat_map(|t| process::children_of(t.pid))
            .collect();
        let mut added = 0;
        while let Some(pid) = pending.pop() {
            if self.processes.contains_key(&(pid as u32)) {
                continue;
            }
            self.source.add_target(pid as u32, true)?;
            let traced = match self.seed(pid) {
                Ok(traced) if !process::has_exited(pid) => traced,
                Ok(_) | Err(SeedError::NoSuchProcess { .. }) => {
                    self.source.remove_target(pid as u32);
                    continue;
                }
                Err(source) => return Err(SessionError::Attach { pid, source }),
            };
            self.track_seeded(&traced, Origin::BeforeTracing);
            self.processes.insert(pid as u32, traced);
            added += 1;
            pending.extend(process::children_of(pid));
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
pub(super) fn process_name(pid: u32) -> ProcessName {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ProcessName {
        pid,
        comm: comm.trim_end().to_string(),
    }
}
