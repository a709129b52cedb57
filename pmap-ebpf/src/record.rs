use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_ktime_get_ns},
};
use pmap_common::{EventRecord, TASK_COMM_LEN};

use crate::maps::{EVENTS, count_drop, wakeup_bytes};

/// Whether a record must reach the reader at once (lifecycle) or may wait for its next poll.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Batched,
    Immediate,
}

/// Identity of the calling task, split from `bpf_get_current_pid_tgid`.
#[derive(Clone, Copy)]
pub struct Caller {
    /// Thread-group id: the HIGH half of `bpf_get_current_pid_tgid`.
    pub tgid: u32,
    /// Thread id: the low half.
    pub tid: u32,
}

impl Caller {
    pub fn current() -> Self {
        let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
        Caller {
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
        }
    }
}

/// Writes one record into the ring, or counts it as dropped when the ring is full.
pub fn emit(
    urgency: Urgency,
    kind: u32,
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    aux: u64,
) {
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        count_drop();
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    entry.write(EventRecord {
        kind,
        syscall_nr,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        tgid: caller.tgid,
        tid: caller.tid,
        args,
        ret,
        aux,
        comm,
    });
    let wake = urgency == Urgency::Immediate
        || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes();
    entry.submit(if wake { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP } as u64);
}
