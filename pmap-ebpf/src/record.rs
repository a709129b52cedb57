use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_kernel_str,
    },
};
use pmap_common::{
    DROPPED_RECORDS_SLOT, EventRecord, FILE_PATH_LEN, FILE_PATH_ROOM, FILE_PATH_STEPS,
    FileIdentity, FileMmapRecord, FileOffsets, FilePath, TASK_COMM_LEN, file_path, record_kind,
    syscall_nr,
};

use crate::maps::{EVENTS, FILE_SCRATCH, count_drop, file_offsets, wakeup_bytes};

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

/// Ring bytes a record of `len` bytes takes: the record, padded to 8 bytes, and the ring's
/// 8-byte header.
#[inline(always)]
pub const fn ring_bytes(len: usize) -> u64 {
    (len as u64).next_multiple_of(8) + 8
}

const EVENT_RING_BYTES: u64 = ring_bytes(EventRecord::SIZE);

/// Writes one record into the ring, or counts it as dropped when the ring is full.
/// `timestamp_ns` is the call's `bpf_ktime_get_ns`, shared with its stack record.
#[allow(clippy::too_many_arguments)]
// BPF calls take at most five arguments: inlined, the arguments stay in registers.
#[inline(always)]
pub fn emit(
    urgency: Urgency,
    timestamp_ns: u64,
    kind: u32,
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    aux: u64,
) {
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        count_drop(DROPPED_RECORDS_SLOT);
        return;
    };
    // SAFETY: the pointer is a reserved, writable EventRecord in the ring.
    unsafe {
        fill(
            entry.as_mut_ptr(),
            timestamp_ns,
            kind,
            caller,
            syscall_nr,
            args,
            ret,
            aux,
        )
    };
    // The reservation is already counted in the ring's unread bytes.
    let after = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    entry.submit(wake_flag(
        urgency,
        after.saturating_sub(EVENT_RING_BYTES),
        after,
        wakeup_bytes(),
    ));
}

/// Writes a successful file-backed mmap with the identity of the file behind `fd`, read now,
/// while the descriptor is certainly open. The record is assembled in this CPU's scratch entry
/// and sent with only the part of the path buffer the walk filled: most paths are a fraction
/// of it, and every byte of a record is ring room and a copy the traced thread pays for.
#[inline(always)]
pub fn emit_file_mmap(caller: Caller, args: [u64; 6], ret: i64, fd: i32) {
    let Some(record) = FILE_SCRATCH.get_ptr_mut(0) else {
        count_drop(DROPPED_RECORDS_SLOT);
        return;
    };
    // SAFETY: `record` is this CPU's scratch entry, which nothing else writes meanwhile (see
    // STACK_SCRATCH).
    let path_len = unsafe {
        fill(
            &raw mut (*record).event,
            bpf_ktime_get_ns(),
            record_kind::FILE_MMAP,
            caller,
            syscall_nr::MMAP,
            args,
            ret,
            0,
        );
        let file = &raw mut (*record).file;
        (&raw mut (*file).dev).write(0);
        (&raw mut (*file).path_flags).write(0);
        (&raw mut (*file).ino).write(0);
        (&raw mut (*file).path_len).write(0);
        (&raw mut (*file)._pad).write(0);
        read_file_path_of_fd(fd, file);
        (*file).path_len as usize
    };
    let len = FileMmapRecord::HEADER_SIZE + path_len;
    if len > FileMmapRecord::SIZE {
        count_drop(DROPPED_RECORDS_SLOT);
        return;
    }
    // SAFETY: the first `len` bytes of the scratch record, all written above.
    let used = unsafe { core::slice::from_raw_parts(record.cast::<u8>(), len) };
    let before = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = wake_flag(
        Urgency::Batched,
        before,
        before + ring_bytes(len),
        wakeup_bytes(),
    );
    if EVENTS.output::<[u8]>(used, flags).is_err() {
        count_drop(DROPPED_RECORDS_SLOT);
    }
}

/// Fills the record at `record` with a call or lifecycle event.
///
/// # Safety
/// `record` must point at a writable `EventRecord` in reserved ring memory.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn fill(
    record: *mut EventRecord,
    timestamp_ns: u64,
    kind: u32,
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    aux: u64,
) {
    let comm = bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]);
    // SAFETY: per this function's contract. Fields are written in place because the whole
    // record does not fit on the BPF stack next to the saved registers.
    unsafe {
        (&raw mut (*record).kind).write(kind);
        (&raw mut (*record).syscall_nr).write(syscall_nr);
        (&raw mut (*record).timestamp_ns).write(timestamp_ns);
        (&raw mut (*record).tgid).write(caller.tgid);
        (&raw mut (*record).tid).write(caller.tid);
        (&raw mut (*record).args).write(args);
        (&raw mut (*record).ret).write(ret);
        (&raw mut (*record).aux).write(aux);
        (&raw mut (*record).comm).write(comm);
    }
}

/// Wake the reader for lifecycle records at once; for other records, only when the record
/// takes the ring's unread bytes (from `before` to `after`) across `threshold` or across a
/// further step above it. Waking on every record above the mark would cost each one a
/// self-IPI (`bpf_ringbuf_commit` queues `irq_work` on every forced wakeup; in a VM an APIC
/// write and a VM exit), while the reader, once woken, drains the whole ring anyway. The later
/// steps wake it again should it have stopped at a record another CPU had not committed yet.
#[inline(always)]
pub fn wake_flag(urgency: Urgency, before: u64, after: u64, threshold: u64) -> u64 {
    let wake = urgency == Urgency::Immediate || crosses_wake_level(before, after, threshold);
    (if wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }) as u64
}

/// Whether unread bytes growing from `before` to `after` pass `threshold` or one of the
/// levels a quarter of it apart above it.
#[inline(always)]
fn crosses_wake_level(before: u64, after: u64, threshold: u64) -> bool {
    let step = threshold / 4;
    if step == 0 {
        return after >= threshold;
    }
    let level = |unread: u64| (unread + step).saturating_sub(threshold) / step;
    level(after) != level(before)
}

/// A lifecycle record (fork, exec, exit): no call arguments, and the reader is woken at once.
pub fn emit_lifecycle(kind: u32, caller: Caller, aux: u64) {
    emit(
        Urgency::Immediate,
        // SAFETY: helper without preconditions.
        unsafe { bpf_ktime_get_ns() },
        kind,
        caller,
        0,
        [0; 6],
        0,
        aux,
    );
}

/// Reads a pointer-sized field at `base + offset` of a kernel object.
pub fn kernel_u64(base: u64, offset: u64) -> Option<u64> {
    // SAFETY: checked kernel read; a bad address fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + offset) as *const u64) }
        .ok()
        .filter(|&v| v != 0)
}

/// Follows current task → files → fdtable to the `struct file *` behind descriptor `fd`.
#[inline(always)]
fn file_of_fd(fd: i32, offsets: &FileOffsets) -> Option<u64> {
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let fdt = kernel_u64(task, offsets.task_files)
        .and_then(|files| kernel_u64(files, offsets.files_fdt))?;
    // SAFETY: checked kernel read.
    let max_fds = unsafe { bpf_probe_read_kernel((fdt + offsets.fdtable_max_fds) as *const u32) };
    if max_fds.is_err() || fd as u32 >= max_fds.unwrap_or(0) {
        return None;
    }
    kernel_u64(fdt, offsets.fdtable_fd).and_then(|fds| kernel_u64(fds, fd as u64 * 8))
}

/// The device (`inode->i_sb->s_dev`) and inode number of `file` (a `struct file *`).
#[inline(always)]
fn file_dev_ino(file: u64, offsets: &FileOffsets) -> Option<(u32, u64)> {
    let inode = kernel_u64(file, offsets.file_inode)?;
    let ino = kernel_u64(inode, offsets.inode_ino)?;
    let sb = kernel_u64(inode, offsets.inode_sb)?;
    // SAFETY: checked kernel read.
    let dev = unsafe { bpf_probe_read_kernel((sb + offsets.sb_dev) as *const u32) }.ok()?;
    Some((dev, ino))
}

/// Follows `file` (a `struct file *`) to its inode and dentry and fills `out`; leaves it
/// zeroed when any step fails.
#[inline(always)]
pub fn file_identity(file: u64, out: &mut FileIdentity) {
    let offsets = file_offsets();
    if offsets.valid == 0 {
        return;
    }
    let Some((dev, ino)) = file_dev_ino(file, &offsets) else {
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

/// Fills `out` with the device, inode and path of the file behind descriptor `fd`; leaves it
/// zeroed when the file cannot be found.
///
/// # Safety
/// `out` must point at a writable `FilePath` in this CPU's scratch record, its header zeroed.
#[inline(always)]
unsafe fn read_file_path_of_fd(fd: i32, out: *mut FilePath) {
    let offsets = file_offsets();
    if offsets.valid == 0 {
        return;
    }
    let Some(file) = file_of_fd(fd, &offsets) else {
        return;
    };
    let Some((dev, ino)) = file_dev_ino(file, &offsets) else {
        return;
    };
    // SAFETY: per this function's contract.
    unsafe {
        (&raw mut (*out).dev).write(dev);
        (&raw mut (*out).ino).write(ino);
        read_file_path(file, &offsets, out);
    }
}

/// Writes the path of `file` into `out`, as `d_path` builds the one `/proc/PID/maps` prints
/// (fs/d_path.c `prepend_path`): its name and each parent's, crossing from a mount's root to
/// the dentry it is mounted on, up to the root of the mount namespace. A dentry that is its
/// own parent without being a mount's root is in no tree (memfd, anonymous inodes: /proc names
/// them by `d_dname`): the walk stops there, incomplete, as it does after
/// [`FILE_PATH_STEPS`] steps or once [`FILE_PATH_ROOM`] bytes are filled.
///
/// # Safety
/// `out` must point at a writable `FilePath` in this CPU's scratch record.
#[inline(always)]
unsafe fn read_file_path(file: u64, offsets: &FileOffsets, out: *mut FilePath) {
    let (Some(leaf), Some(mut vfsmount)) = (
        kernel_u64(file, offsets.file_dentry),
        kernel_u64(file, offsets.file_mnt),
    ) else {
        return;
    };
    // SAFETY: per this function's contract.
    let path = unsafe { (&raw mut (*out).path).cast::<u8>() };
    let mut mount = vfsmount - offsets.mount_vfsmount;
    let mut root = kernel_u64(vfsmount, offsets.vfsmount_root);
    let mut dentry = leaf;
    let mut used = 0usize;
    let mut flags = 0;
    for _ in 0..FILE_PATH_STEPS {
        if root == Some(dentry) {
            let Some(parent) = kernel_u64(mount, offsets.mount_parent) else {
                break;
            };
            if parent == mount {
                flags |= file_path::COMPLETE;
                break;
            }
            let Some(mountpoint) = kernel_u64(mount, offsets.mount_mountpoint) else {
                break;
            };
            dentry = mountpoint;
            mount = parent;
            vfsmount = parent + offsets.mount_vfsmount;
            root = kernel_u64(vfsmount, offsets.vfsmount_root);
            continue;
        }
        let Some(parent) = kernel_u64(dentry, offsets.dentry_parent) else {
            break;
        };
        if parent == dentry || used >= FILE_PATH_ROOM {
            break;
        }
        let Some(name) = kernel_u64(dentry, offsets.dentry_name) else {
            break;
        };
        // The mask shows the verifier what the check above made sure of.
        let at = used & (FILE_PATH_ROOM - 1);
        // SAFETY: at + (FILE_PATH_LEN - FILE_PATH_ROOM) <= FILE_PATH_LEN bytes of the buffer;
        // a checked string read.
        let copied = unsafe {
            bpf_probe_read_kernel_str(
                path.add(at).cast(),
                (FILE_PATH_LEN - FILE_PATH_ROOM) as u32,
                name as *const c_void,
            )
        };
        if copied <= 0 {
            break;
        }
        used = at + copied as usize;
        dentry = parent;
    }
    // d_unlinked (include/linux/dcache.h): unhashed, and not the root of its tree.
    let unhashed = kernel_u64(leaf, offsets.dentry_hash_pprev).is_none();
    if unhashed && kernel_u64(leaf, offsets.dentry_parent) != Some(leaf) {
        flags |= file_path::DELETED;
    }
    // SAFETY: per this function's contract.
    unsafe {
        (&raw mut (*out).path_len).write(used as u32);
        (&raw mut (*out).path_flags).write(flags);
    }
}
