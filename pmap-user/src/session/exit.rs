//! How a trace ends: the launched command's exit status becomes pmap-trace's; the stop
//! signals (see [`Session::stop_signal`] for the rules); an output nobody reads any more.

use std::time::{Duration, Instant};

use super::{
    Session, SessionError,
    attach::process_name,
    launch::wait_exit,
    signals::{self, Received},
};
use crate::{
    model::ExitStatus,
    render::output::{Message, ProcessName},
};

/// A stop signal this soon after the one passed on is the same request: timeout(1), for one,
/// signals pmap-trace and then its whole process group.
const REPEAT_WINDOW: Duration = Duration::from_secs(1);

impl Session {
    /// Final dump of every process still traced, then stop: with the launched command's
    /// status once it has ended, else 0.
    pub(super) fn finish(&mut self) -> Result<i32, SessionError> {
        self.dump_all()?;
        Ok(self.exit_code)
    }

    /// A SIGINT, SIGTERM, SIGHUP or SIGQUIT: `Some(exit code)` when the session ends now. Attached, or
    /// once the launched command has ended, it ends with the final dumps. While a launched
    /// command runs, the command decides, as it would without pmap-trace: a signal the
    /// terminal sent to the whole process group reached it already; one sent to pmap-trace
    /// alone is passed on to it, once; tracing goes on until the command ends. A second one
    /// sent to pmap-trace (later than [`REPEAT_WINDOW`]) means stop waiting: the final dumps,
    /// and a line naming what is left running.
    pub(super) fn stop_signal(&mut self, received: Received) -> Result<Option<i32>, SessionError> {
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

    /// The output's reader has gone (`pmap-trace … | head -1`): nothing more can be said.
    /// Attached, the trace ends there (`Some(0)`), leaving the targets as they were. A
    /// launched command is not left behind: as a stage of a pipeline, pmap-trace waits for it,
    /// tracing on without output, and exits with its status once it has ended (a command
    /// that writes into the same pipe meets its end too, by SIGPIPE). Its followed children
    /// are left running, as they would be without pmap-trace.
    pub(super) fn unread(&self) -> Option<i32> {
        (self.output.closed() && self.launched.is_none()).then_some(self.exit_code)
    }

    /// The launched command has ended: pmap-trace, its parent, reaps it, and its status
    /// becomes pmap-trace's exit code.
    pub(super) fn reap_if_launched(&mut self, tgid: u32) -> Option<ExitStatus> {
        if self.launched != Some(tgid as i32) {
            return None;
        }
        self.launched = None;
        let status = wait_exit(tgid as i32);
        self.exit_code = status.shell_code();
        Some(status)
    }
}
