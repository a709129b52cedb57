//! A scripted trace for the session's unit tests: recorded records and user requests, fed to
//! the session in the order the script gives them, through the same seams as the kernel's ring
//! and the signals.

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    future::poll_fn,
    io,
    rc::Rc,
    task::Poll,
};

use crate::{
    capture::{CaptureError, Dropped, Loss, RecordSource, Wait},
    decode::Record,
    session::controls::{Control, Controls},
};

/// One step of a script.
pub enum Step {
    /// Records the ring holds when the loop next wakes, and what the kernel side lost before
    /// them (added to its counters).
    Records(Vec<Record>, Dropped),
    /// A dump or stop request.
    Control(Control),
    /// Something that happens meanwhile (a process exits), done when the script reaches it.
    Act(Box<dyn FnOnce()>),
}

/// The kernel filter as the session left it: PID to its follow flag.
pub type Filter = Rc<RefCell<BTreeMap<u32, bool>>>;

type Script = Rc<RefCell<VecDeque<Step>>>;

/// Replays `steps`: records through the returned source, requests through the controls. Each
/// waits for its own kind of step to come to the head of the script, so the session sees them
/// in script order; the controls fail once the script is over, which ends a session the
/// script did not end. A step is taken when the wait for it is polled, not when the wait is
/// made: the loop makes both waits, and drops the one that did not finish.
pub fn replay(steps: Vec<Step>) -> (ReplaySource, ScriptedControls, Filter) {
    let script: Script = Rc::new(RefCell::new(steps.into()));
    let filter = Filter::default();
    let source = ReplaySource {
        script: script.clone(),
        ready: Vec::new(),
        dropped: Dropped::default(),
        filter: filter.clone(),
    };
    (source, ScriptedControls { script }, filter)
}

/// Does the [`Step::Act`]s at the head of the script, then shows its head. Whichever wait is
/// polled first does them, when the session waits again: after the acts the head is for one
/// of the two waits, or the script is over, so the session never waits for nothing.
fn head<T>(script: &Script, look: impl FnOnce(Option<&Step>) -> T) -> T {
    loop {
        if !matches!(script.borrow().front(), Some(Step::Act(_))) {
            return look(script.borrow().front());
        }
        let step = script.borrow_mut().pop_front();
        if let Some(Step::Act(act)) = step {
            act();
        }
    }
}

pub struct ReplaySource {
    script: Script,
    /// Records of the last batch, until drained.
    ready: Vec<Record>,
    dropped: Dropped,
    filter: Filter,
}

impl RecordSource for ReplaySource {
    fn readable(&mut self) -> Wait<'_, Result<(), CaptureError>> {
        Box::pin(poll_fn(|_| {
            let batch = head(&self.script, |step| matches!(step, Some(Step::Records(..))));
            if !batch {
                return Poll::Pending;
            }
            if let Some(Step::Records(records, lost)) = self.script.borrow_mut().pop_front() {
                self.ready.extend(records);
                self.dropped.records += lost.records;
                self.dropped.stacks += lost.stacks;
                self.dropped.faults += lost.faults;
            }
            Poll::Ready(Ok(()))
        }))
    }

    fn drain_records(&mut self, out: &mut Vec<Record>) -> Result<(), CaptureError> {
        out.append(&mut self.ready);
        Ok(())
    }

    fn dropped(&self, loss: Loss) -> u64 {
        let mut counts = self.dropped;
        *counts.count(loss)
    }

    fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError> {
        self.filter.borrow_mut().insert(tgid, follow);
        Ok(())
    }

    fn remove_target(&mut self, tgid: u32) {
        self.filter.borrow_mut().remove(&tgid);
    }
}

pub struct ScriptedControls {
    script: Script,
}

impl Controls for ScriptedControls {
    fn next(&mut self) -> Wait<'_, io::Result<Control>> {
        Box::pin(poll_fn(|_| {
            let next = head(&self.script, |step| match step {
                Some(Step::Control(control)) => Some(Ok(*control)),
                Some(_) => None,
                None => Some(Err(io::Error::other("the script is over"))),
            });
            if let Some(Ok(_)) = next {
                self.script.borrow_mut().pop_front();
            }
            next.map_or(Poll::Pending, Poll::Ready)
        }))
    }
}
