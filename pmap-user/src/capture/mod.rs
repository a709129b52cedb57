//! The kernel side as userspace sees it: checks the machine can run it, loads and attaches the
//! eBPF programs, manages the target filter and reads records from the ring.

mod btf;
mod error;
pub(crate) mod fd_watch;
mod go_runtime;
mod preflight;
mod priority;
mod record_source;
mod release;
mod source;
mod stack_join;
mod thread_tops;

pub use error::CaptureError;
pub use preflight::{PreflightError, check_fault_tracepoint, check_machine};
pub use priority::raise_reader_priority;
pub use record_source::{Dropped, Loss, RecordSource, Wait};
pub use release::RELEASER_NAME;
pub use source::{Capture, CaptureOptions, POLL_INTERVAL};
