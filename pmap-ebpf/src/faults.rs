//! `--faults`: first touches of pages by traced processes, from `exceptions:page_fault_user`,
//! sampled one in N. Attached only when asked: it runs on every user page fault of the machine.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_NO_WAKEUP},
    macros::tracepoint,
    programs::TracePointContext,
};
use pmap_common::{DROPPED_FAULTS_SLOT, FaultRecord, fault_layout, record_kind};

use crate::{
    maps::{EVENTS, FAULT_TICKS, count_drop, current_target, fault_period, fault_room},
    record::Caller,
};

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    if current_target(caller.tgid).is_none() {
        return 0;
    }
    // SAFETY: offsets checked against the tracepoint's format file by userspace.
    let Ok(error_code) = (unsafe { ctx.read_at::<u64>(fault_layout::ERROR_CODE_OFFSET) }) else {
        return 0;
    };
    // A fault on a present page (copy on write, a protection change) is not a first touch.
    if error_code & fault_layout::PF_PROTECTION != 0 || !sampled() {
        return 0;
    }
    // SAFETY: as above.
    let Ok(address) = (unsafe { ctx.read_at::<u64>(fault_layout::ADDRESS_OFFSET) }) else {
        return 0;
    };
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= fault_room() {
        count_drop(DROPPED_FAULTS_SLOT);
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<FaultRecord>(0) else {
        count_drop(DROPPED_FAULTS_SLOT);
        return 0;
    };
    entry.write(FaultRecord {
        kind: record_kind::FIRST_TOUCH,
        tgid: caller.tgid,
        address,
    });
    // Samples never wake the reader: the calls' records and the periodic poll do.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    0
}

/// One first touch in `--faults=N`, counted per CPU (the count needs no atomics, and N is a
/// sampling period, not an exact split between CPUs).
fn sampled() -> bool {
    let period = fault_period() as u64;
    let Some(ticks) = FAULT_TICKS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
    unsafe {
        *ticks += 1;
        if *ticks < period {
            return false;
        }
        *ticks = 0;
    }
    true
}
