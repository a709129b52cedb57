//! Exit of every mapping-changing syscall: one program, attached to each `sys_exit_*` tracepoint.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use pmap_common::{
    DROPPED_STACKS_SLOT,
    linux::{
        MAP_ANONYMOUS, MAP_PRIVATE, MAP_TYPE, PAGE_SIZE, PR_SET_VMA, UFFDIO_REGISTER,
        UFFDIO_UNREGISTER,
    },
    record_kind, sys_exit_layout, syscall_nr,
};

use crate::{
    maps::{BRK_TOPS, count_drop, current_target, stack_bytes},
    record::{Caller, Urgency, emit, emit_file_mmap},
    regs::SavedRegs,
    stacks::emit_stack,
};

const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

#[tracepoint]
pub fn mm_syscall_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets checked against the tracepoint's format file by userspace before attach.
    let Ok(nr) = (unsafe { ctx.read_at::<i32>(sys_exit_layout::SYSCALL_NR_OFFSET) }) else {
        return 0;
    };
    let nr = nr as u32;
    // Every process's ioctls and prctls come here: the few that change mappings are told
    // apart by their arguments before the (dearer) lookup of the caller in the filter. Other
    // calls read no register until the caller is known to be traced.
    let foreign_request = match nr {
        syscall_nr::IOCTL => !is_uffd_request(SavedRegs::current().syscall_args()[1]),
        syscall_nr::PRCTL => SavedRegs::current().syscall_args()[0] != PR_SET_VMA,
        _ => false,
    };
    if foreign_request {
        return 0;
    }
    let caller = Caller::current();
    let Some(target) = current_target(caller.tgid) else {
        return 0;
    };
    let regs = SavedRegs::current();
    let mut args = regs.syscall_args();
    if nr == syscall_nr::IOCTL {
        read_uffd_range(&mut args);
    }
    let _ = record_exit(&ctx, caller, target, nr, args, &regs);
    0
}

fn record_exit(
    ctx: &TracePointContext,
    caller: Caller,
    target: u32,
    nr: u32,
    args: [u64; 6],
    regs: &SavedRegs,
) -> Result<(), i64> {
    // SAFETY: as above.
    let ret: i64 = unsafe { ctx.read_at(sys_exit_layout::RET_OFFSET) }.map_err(i64::from)?;
    if nr == syscall_nr::MMAP && succeeded(ret) && args[3] & MAP_ANONYMOUS == 0 {
        emit_file_mmap(caller, args, ret, args[4] as i32);
        return Ok(());
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut kind = record_kind::SYSCALL;
    // Only calls that may have grown anonymous memory pay for a stack copy. The stack goes
    // first: once userspace reads the call's record, its stack is in the stack ring.
    let stack_bytes = stack_bytes();
    if stack_bytes != 0 && may_grow_anon(nr, &args, ret, caller.tgid) {
        if emit_stack(caller, now, regs.user(), target, stack_bytes) {
            kind = record_kind::SYSCALL_WITH_STACK;
        } else {
            // No room for the copy: the call itself must still reach the table.
            count_drop(DROPPED_STACKS_SLOT);
        }
    }
    emit(Urgency::Batched, now, kind, caller, nr, args, ret, 0);
    Ok(())
}

/// Whether an ioctl request is a userfaultfd (un)registration (the kernel takes the request as
/// an unsigned int).
#[inline(always)]
fn is_uffd_request(request: u64) -> bool {
    matches!(request as u32, UFFDIO_REGISTER | UFFDIO_UNREGISTER)
}

/// For a userfaultfd (un)registration, puts the range (and the mode) it names into the argument
/// slots ioctl does not use. The struct is read at exit, when the kernel has only written its
/// `ioctls` field, after the range and mode.
#[inline(always)]
fn read_uffd_range(args: &mut [u64; 6]) {
    let user = args[2] as *const [u64; 3];
    // SAFETY: checked user reads; an unreadable struct (the call failed with EFAULT) reads as
    // zeros. The unregister struct is only the range: reading more could fail at a page end.
    let fields = if args[1] as u32 == UFFDIO_REGISTER {
        unsafe { bpf_probe_read_user(user) }.unwrap_or([0; 3])
    } else {
        unsafe { bpf_probe_read_user(user as *const [u64; 2]) }
            .map(|[start, len]| [start, len, 0])
            .unwrap_or([0; 3])
    };
    args[3] = fields[0];
    args[4] = fields[1];
    args[5] = fields[2];
}

fn succeeded(ret: i64) -> bool {
    !(-4095..0).contains(&ret)
}

/// Whether a completed call may have added private anonymous memory: a successful anonymous
/// private mmap (MAP_FIXED or not), a brk that moved the break to a higher page, an mremap that
/// grew. Userspace decides exactly (it knows which mapping an mremap grew); this only has to
/// let every growth through and keep the copy off other calls.
#[inline(always)]
fn may_grow_anon(nr: u32, args: &[u64; 6], ret: i64, tgid: u32) -> bool {
    match nr {
        syscall_nr::MMAP => {
            succeeded(ret) && args[3] & MAP_ANONYMOUS != 0 && args[3] & MAP_TYPE == MAP_PRIVATE
        }
        syscall_nr::BRK => {
            // brk returns the break after the call, whatever it was asked: remembered, it tells
            // the next call's growth from a shrink or a query.
            let top = ret as u64;
            // SAFETY: the value is a plain u64 copied out immediately.
            let previous = unsafe { BRK_TOPS.get(&tgid).copied() };
            let _ = BRK_TOPS.insert(&tgid, &top, 0);
            let page_end = |brk: u64| (brk + PAGE_SIZE - 1) & PAGE_MASK;
            args[0] != 0
                && top == args[0]
                && previous.is_none_or(|before| page_end(top) > page_end(before))
        }
        syscall_nr::MREMAP => succeeded(ret) && args[2] > args[1],
        _ => false,
    }
}
