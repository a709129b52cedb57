//! What a trace session reads records from, and tells which processes to trace: the kernel's
//! ring (the capture), or in the session's unit tests records replayed in order.

use std::{future::Future, pin::Pin};

use super::error::CaptureError;
use crate::decode::Record;

/// A wait that a trait object can return: the session waits on its record source and its
/// controls once per batch, so a boxed future costs nothing that shows.
pub type Wait<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The session's source of records. The session holds one as a trait object: it is asked
/// once per batch (a wait, then a drain of every record the batch holds), never per record,
/// so dynamic dispatch costs nothing that shows, and the session stays one plain type.
pub trait RecordSource {
    /// Resolves when records may be available. It may also resolve with none (the capture
    /// looks at least every `POLL_INTERVAL`); the session drains then either way.
    fn readable(&mut self) -> Wait<'_, Result<(), CaptureError>>;

    /// Appends the records available now to `out`, in the order they were written, without
    /// waiting.
    fn drain_records(&mut self, out: &mut Vec<Record>) -> Result<(), CaptureError>;

    /// How many of `loss` the kernel side has had since it was loaded. Each count is a read of
    /// the kernel's counters (a syscall), once per batch: the session asks for those it
    /// reports only.
    fn dropped(&self, loss: Loss) -> u64;

    /// Starts tracing process `tgid` (with `follow`, its future children too).
    fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError>;

    /// Stops tracing process `tgid`; one already gone is no error.
    fn remove_target(&mut self, tgid: u32);
}

/// What the kernel side can fail to record, each counted over every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Records lost because the ring was full.
    Records,
    /// Growth calls whose record came without its stack copy (the ring had no room for it).
    Stacks,
    /// Sampled first-touch faults left out because the ring was half full.
    Faults,
}

/// A count of each [`Loss`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub stacks: u64,
    pub faults: u64,
}

impl Dropped {
    pub fn count(&mut self, loss: Loss) -> &mut u64 {
        match loss {
            Loss::Records => &mut self.records,
            Loss::Stacks => &mut self.stacks,
            Loss::Faults => &mut self.faults,
        }
    }
}
