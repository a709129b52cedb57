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

    /// What the kernel side has left out so far, counted from the start.
    fn dropped(&self) -> Dropped;

    /// Starts tracing process `tgid` (with `follow`, its future children too).
    fn add_target(&mut self, tgid: u32, follow: bool) -> Result<(), CaptureError>;

    /// Stops tracing process `tgid`; one already gone is no error.
    fn remove_target(&mut self, tgid: u32);
}

/// Counts of what the kernel side could not record, summed over CPUs, since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Records lost because the ring was full.
    pub records: u64,
    /// Growth calls whose record came without its stack copy (the ring had no room for it).
    pub stacks: u64,
    /// Sampled first-touch faults left out because the ring was half full.
    pub faults: u64,
}
