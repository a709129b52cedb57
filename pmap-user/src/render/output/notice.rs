//! The notices a session gives about the trace itself: each a value, worded here once for
//! every format (text prints `pmap-trace: TEXT`, JSON `{"type":"notice","message":TEXT}`).

use std::fmt;

use crate::{
    decode::ImageGap,
    sites::{Origin, folded::StackFileError},
};

#[derive(Clone, Copy, Debug)]
pub enum Notice<'a> {
    /// A forked child's table copied from its parent may show memory the parent marked
    /// `MADV_DONTFORK` before tracing, and the child ended before it could be read instead.
    ForkCopyKept { child: u32 },
    /// The final dump's size differs from what the kernel counted at the exit, in bytes.
    ExitSizeDiffers { pid: u32, mapped: u64, kernel: u64 },
    /// A traced process ended without a table to dump.
    NoDump { pid: u32, why: NoTable },
    /// `--folded`/`--flamegraph` could not be written (the next dump tries again).
    StackFilesNotWritten(&'a StackFileError),
    /// `--verify` gave up on a process that changed during every attempt.
    NotCompared { pid: u32, attempts: usize },
    /// `--faults`: samples the kernel side left out.
    FaultSamplesLeftOut { count: u64 },
    /// `--sites`: growth calls whose stack copy was lost.
    StackCopiesLost { count: u64 },
    /// Records the kernel side lost: every table is re-read.
    RecordsLost { count: u64 },
    /// A process found ended when records were lost.
    EndedWhileRecordsLost { pid: u32 },
    /// A process found ended whose exit record was lost.
    ExitRecordLost { pid: u32 },
    /// An exec's command line was longer than its record, and the process ended before it
    /// could be read.
    CommandLineCut { pid: u32 },
}

/// Why a traced process has no table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTable {
    /// A followed child seen without its fork record, gone before /proc could be read.
    ForkRecordLost,
    /// The new image of an exec ran and ended before it could be read (with what kept its
    /// record from being whole).
    ExecImageUnread { gap: Option<ImageGap> },
}

impl fmt::Display for Notice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Notice::ForkCopyKept { child } => write!(
                f,
                "{child} ended before it could be read: its table is its parent's at the fork, \
                 which may show memory the parent marked MADV_DONTFORK before it was traced"
            ),
            Notice::ExitSizeDiffers {
                pid,
                mapped,
                kernel,
            } => write!(
                f,
                "{pid}: its final dump maps {}K where the kernel had {}K at its exit",
                mapped >> 10,
                kernel >> 10
            ),
            Notice::NoDump { pid, why } => write!(f, "{pid} {why}; no dump for it"),
            Notice::StackFilesNotWritten(err) => write!(f, "{err}"),
            Notice::NotCompared { pid, attempts } => write!(
                f,
                "verify {pid}: not compared: the process kept changing during {attempts} attempts"
            ),
            Notice::FaultSamplesLeftOut { count } => write!(
                f,
                "{count} fault samples left out (ring half full; raise --ring-size or sample \
                 with --faults=N): touched bytes are underestimated"
            ),
            Notice::StackCopiesLost { count } => write!(
                f,
                "{count} stack copies lost (ring full; raise --ring-size or lower \
                 --stack-bytes): that growth is listed as {}",
                Origin::CopyLost.describe()
            ),
            Notice::RecordsLost { count } => write!(
                f,
                "{count} records lost (ring full; raise --ring-size): mapping tables re-read \
                 from /proc"
            ),
            Notice::EndedWhileRecordsLost { pid } => write!(
                f,
                "{pid} ended while records were lost: its last dump may miss changes"
            ),
            Notice::ExitRecordLost { pid } => write!(
                f,
                "{pid} ended and its exit record was lost: its last dump may miss changes"
            ),
            Notice::CommandLineCut { pid } => write!(
                f,
                "{pid}: its command line was longer than the exec record holds and it ended \
                 before it could be read; its dump is headed by the start of it"
            ),
        }
    }
}

impl fmt::Display for NoTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoTable::ForkRecordLost => {
                f.write_str("ended before its table could be read (its fork record was lost)")
            }
            NoTable::ExecImageUnread { gap: None } => {
                f.write_str("exited before its new address space could be read")
            }
            NoTable::ExecImageUnread { gap: Some(gap) } => write!(
                f,
                "exited before its new address space could be read ({gap})"
            ),
        }
    }
}
