//! `--faults`: first touches of pages by traced processes, from `exceptions:page_fault_user`,
//! sampled one in N, each with the stack of the code that touched the page. Attached only when
//! asked: it runs on every user page fault of the machine.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::tracepoint,
    programs::TracePointContext,
};
use pmap_common::{DROPPED_FAULTS_SLOT, FaultRecord, fault_layout, record_kind};

use crate::{
    maps::{
        EVENTS, FAULT_TICKS, STACKS, count_drop, current_target, fault_period, fault_room,
        stack_bytes,
    },
    record::Caller,
    regs::SavedRegs,
    stacks::emit_stack,
};

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let caller = Caller::current();
    let Some(target) = current_target(caller.tgid) else {
        return 0;
    };
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
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // The registers the fault saved are the user's at the touching instruction, where the
    // unwinder starts. The stack ring is as large as the event ring when stacks are copied,
    // and a touch's copy takes only its first half, as its record does: the growth calls'
    // copies keep the rest. Without room the touch still counts for the page's owner.
    let stack_bytes = stack_bytes();
    let with_stack = stack_bytes != 0
        && STACKS.query(BPF_RB_AVAIL_DATA as u64) < fault_room()
        && emit_stack(
            caller,
            now,
            SavedRegs::current().user(),
            target,
            stack_bytes,
        );
    entry.write(FaultRecord {
        kind: if with_stack {
            record_kind::FIRST_TOUCH_WITH_STACK
        } else {
            record_kind::FIRST_TOUCH
        },
        tgid: caller.tgid,
        address,
        tid: caller.tid,
        _pad: 0,
        timestamp_ns: now,
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
