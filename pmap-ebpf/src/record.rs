use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
    },
};
use pmap_common::{EventRecord, FILE_NAME_LEN, FileIdentity, TASK_COMM_LEN};

use crate::maps::{EVENTS, count_drop, file_offsets, wakeup_bytes};

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

/// Writes one record into the ring, or counts it as dropped when the ring is full. With
/// `mapped_fd >= 0` (a successful file-backed mmap) the record also names the file behind that
/// descriptor.
#[allow(clippy::too_many_arguments)]
// BPF calls take at most five arguments: inlined, the arguments stay in registers.
#[inline(always)]
pub fn emit(
    urgency: Urgency,
    kind: u32,
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    aux: u64,
    mapped_fd: i32,
) {
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        count_drop();
        return;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable EventRecord in the ring; every field is
    // written before submit. Fields are written in place because the whole record does not fit
    // on the BPF stack next to the saved registers.
    unsafe {
        (&raw mut (*record).kind).write(kind);
        (&raw mut (*record).syscall_nr).write(syscall_nr);
        (&raw mut (*record).timestamp_ns).write(bpf_ktime_get_ns());
        (&raw mut (*record).tgid).write(caller.tgid);
        (&raw mut (*record).tid).write(caller.tid);
        (&raw mut (*record).args).write(args);
        (&raw mut (*record).ret).write(ret);
        (&raw mut (*record).aux).write(aux);
        (&raw mut (*record).comm).write(comm);
        let file = &raw mut (*record).file;
        file.write(FileIdentity {
            dev: 0,
            _pad: 0,
            ino: 0,
            name: [0; FILE_NAME_LEN],
        });
        if mapped_fd >= 0 {
            read_file_identity(mapped_fd, &mut *file);
        }
    }
    let wake =
        urgency == Urgency::Immediate || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes();
    entry.submit(if wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    } as u64);
}

/// A lifecycle record (fork, exec, exit): no call arguments, and the reader is woken at once.
pub fn emit_lifecycle(kind: u32, caller: Caller, aux: u64) {
    emit(Urgency::Immediate, kind, caller, 0, [0; 6], 0, aux, -1);
}

/// Reads a pointer-sized field at `base + offset` of a kernel object.
fn kernel_u64(base: u64, offset: u64) -> Option<u64> {
    // SAFETY: checked kernel read; a bad address fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + offset) as *const u64) }
        .ok()
        .filter(|&v| v != 0)
}

/// Follows current task → files → fdtable → file → inode/dentry for descriptor `fd` and fills
/// `out`; leaves it zeroed when any step fails.
fn read_file_identity(fd: i32, out: &mut FileIdentity) {
    let offsets = file_offsets();
    if offsets.valid == 0 {
        return;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let Some(fdt) =
        kernel_u64(task, offsets.task_files).and_then(|files| kernel_u64(files, offsets.files_fdt))
    else {
        return;
    };
    // SAFETY: checked kernel read.
    let max_fds = unsafe { bpf_probe_read_kernel((fdt + offsets.fdtable_max_fds) as *const u32) };
    if max_fds.is_err() || fd as u32 >= max_fds.unwrap_or(0) {
        return;
    }
    let Some(file) =
        kernel_u64(fdt, offsets.fdtable_fd).and_then(|fds| kernel_u64(fds, fd as u64 * 8))
    else {
        return;
    };
    let Some(inode) = kernel_u64(file, offsets.file_inode) else {
        return;
    };
    let Some(ino) = kernel_u64(inode, offsets.inode_ino) else {
        return;
    };
    let Some(sb) = kernel_u64(inode, offsets.inode_sb) else {
        return;
    };
    // SAFETY: checked kernel read.
    let Ok(dev) = (unsafe { bpf_probe_read_kernel((sb + offsets.sb_dev) as *const u32) }) else {
        return;
    };
    out.dev = dev;
    out.ino = ino;
    if let Some(name) = kernel_u64(file, offsets.file_dentry)
        .and_then(|dentry| kernel_u64(dentry, offsets.dentry_name))
    {
        // SAFETY: checked string read into the record's own buffer.
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut out.name) };
    }
}
