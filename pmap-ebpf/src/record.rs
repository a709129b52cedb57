use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
};
use pmap_common::{
    DROPPED_RECORDS_SLOT, EventRecord, FILE_PATH_LEN, FILE_PATH_ROOM, FILE_PATH_STEPS,
    FileIdentity, FileMmapRecord, FileOffsets, FilePath, GrowthRecord, TASK_COMM_LEN, UserRegs,
    file_path, record_kind, syscall_nr,
};

use crate::maps::{EVENTS, count_drop, file_offsets, stack_offsets, wakeup_bytes};

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
) {
    let Some(mut entry) = EVENTS.reserve::<EventRecord>(0) else {
        count_drop(DROPPED_RECORDS_SLOT);
        return;
    };
    // SAFETY: the pointer is a reserved, writable EventRecord in the ring.
    unsafe { fill(entry.as_mut_ptr(), kind, caller, syscall_nr, args, ret, aux) };
    entry.submit(wake_flag(urgency));
}

/// Writes a successful file-backed mmap with the identity of the file behind `fd`, read now,
/// while the descriptor is certainly open.
#[inline(always)]
pub fn emit_file_mmap(caller: Caller, args: [u64; 6], ret: i64, fd: i32) {
    let Some(mut entry) = EVENTS.reserve::<FileMmapRecord>(0) else {
        count_drop(DROPPED_RECORDS_SLOT);
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable FileMmapRecord in the ring.
    unsafe {
        fill(
            &raw mut (*record).event,
            record_kind::FILE_MMAP,
            caller,
            syscall_nr::MMAP,
            args,
            ret,
            0,
        );
        let file = &raw mut (*record).file;
        // The path buffer is not cleared: `path_len` says how much of it was written.
        (&raw mut (*file).dev).write(0);
        (&raw mut (*file).path_flags).write(0);
        (&raw mut (*file).ino).write(0);
        (&raw mut (*file).path_len).write(0);
        (&raw mut (*file)._pad).write(0);
        read_file_path_of_fd(fd, file);
    }
    entry.submit(wake_flag(Urgency::Batched));
}

/// Writes a call that may have grown anonymous memory, with the caller's registers and a copy
/// of at most `stack_bytes` (one of `STACK_SIZES`) of its stack for userspace to unwind: on the
/// main thread only up to its stack top, in the smallest record that holds that. Returns
/// false, having written nothing, when the ring has no room for it (or `stack_bytes` is no
/// size): the caller then writes the call's plain record.
#[inline(always)]
pub fn emit_growth(
    stack_bytes: u32,
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    regs: UserRegs,
) -> bool {
    let wanted = match main_stack_top() {
        // No frame lies above the top; a grain more keeps the last frame's return address
        // in even when the top is not aligned.
        Some(top) if top > regs.rsp => (top - regs.rsp)
            .saturating_add(STACK_GRAIN as u64)
            .min(stack_bytes as u64) as usize,
        _ => stack_bytes as usize,
    };
    // Each size is its own reservation: the verifier only takes a constant size.
    match stack_bytes {
        0 => false,
        _ if wanted <= 4096 => {
            emit_growth_sized::<4096>(caller, syscall_nr, args, ret, regs, wanted)
        }
        _ if wanted <= 8192 => {
            emit_growth_sized::<8192>(caller, syscall_nr, args, ret, regs, wanted)
        }
        _ if wanted <= 16384 => {
            emit_growth_sized::<16384>(caller, syscall_nr, args, ret, regs, wanted)
        }
        _ if wanted <= 32768 => {
            emit_growth_sized::<32768>(caller, syscall_nr, args, ret, regs, wanted)
        }
        _ if wanted <= 65536 => {
            emit_growth_sized::<65536>(caller, syscall_nr, args, ret, regs, wanted)
        }
        _ => false,
    }
}

/// `mm->start_stack` of the current process: the top of its main thread's stack.
#[inline(always)]
fn main_stack_top() -> Option<u64> {
    let offsets = stack_offsets();
    if offsets.valid == 0 {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    kernel_u64(task, offsets.task_mm).and_then(|mm| kernel_u64(mm, offsets.mm_start_stack))
}

#[inline(always)]
fn emit_growth_sized<const N: usize>(
    caller: Caller,
    syscall_nr: u32,
    args: [u64; 6],
    ret: i64,
    regs: UserRegs,
    wanted: usize,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<GrowthRecord<N>>(0) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable GrowthRecord<N> in the ring; every field
    // is written before submit (the stack bytes past `stack_len` are not read by userspace).
    unsafe {
        fill(
            &raw mut (*record).event,
            record_kind::SYSCALL_WITH_STACK,
            caller,
            syscall_nr,
            args,
            ret,
            0,
        );
        (&raw mut (*record).regs).write(regs);
        let copied = copy_user_stack::<N>((&raw mut (*record).stack).cast(), regs.rsp, wanted);
        (&raw mut (*record).stack_len).write(copied as u64);
    }
    entry.submit(wake_flag(Urgency::Batched));
    true
}

/// Bytes copied with one `bpf_probe_read_user` while the stack is readable: a read that runs
/// past the end of the stack's mapping fails whole, so the last piece is found by halving.
const STACK_CHUNK: usize = 4096;
/// The finest piece the last read is narrowed to.
const STACK_GRAIN: usize = 64;

/// Copies user memory from `rsp` up into `dst` (`N` bytes of ring memory), `wanted` bytes at
/// most: whole chunks while they read, then halving pieces down to [`STACK_GRAIN`] bytes, so
/// everything readable up to the end of the stack (short of at most one grain) arrives. Returns
/// the bytes copied.
///
/// # Safety
/// `dst` must point at `N` writable bytes.
#[inline(always)]
unsafe fn copy_user_stack<const N: usize>(dst: *mut u8, rsp: u64, wanted: usize) -> usize {
    let mut copied = 0usize;
    for _ in 0..N / STACK_CHUNK {
        if copied + STACK_CHUNK > wanted {
            break;
        }
        // SAFETY: copied + STACK_CHUNK <= N, checked by the loop bound; a bad user address
        // fails the helper instead of faulting.
        let failed = unsafe {
            bpf_probe_read_user(
                dst.add(copied).cast(),
                STACK_CHUNK as u32,
                (rsp + copied as u64) as *const c_void,
            )
        } != 0;
        if failed {
            break;
        }
        copied += STACK_CHUNK;
    }
    let mut piece = STACK_CHUNK / 2;
    while piece >= STACK_GRAIN {
        // The explicit bound keeps the verifier's view of `copied` inside the reservation.
        if copied <= N - piece && copied + piece <= wanted {
            // SAFETY: copied + piece <= N, checked just above.
            let read = unsafe {
                bpf_probe_read_user(
                    dst.add(copied).cast(),
                    piece as u32,
                    (rsp + copied as u64) as *const c_void,
                )
            };
            if read == 0 {
                copied += piece;
            }
        }
        piece /= 2;
    }
    copied
}

/// Fills the record at `record` with a call or lifecycle event.
///
/// # Safety
/// `record` must point at a writable `EventRecord` in reserved ring memory.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn fill(
    record: *mut EventRecord,
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
        (&raw mut (*record).timestamp_ns).write(bpf_ktime_get_ns());
        (&raw mut (*record).tgid).write(caller.tgid);
        (&raw mut (*record).tid).write(caller.tid);
        (&raw mut (*record).args).write(args);
        (&raw mut (*record).ret).write(ret);
        (&raw mut (*record).aux).write(aux);
        (&raw mut (*record).comm).write(comm);
    }
}

/// Wake the reader for lifecycle records, and for calls only once the ring is a quarter full.
#[inline(always)]
pub fn wake_flag(urgency: Urgency) -> u64 {
    let wake =
        urgency == Urgency::Immediate || EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes();
    (if wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }) as u64
}

/// A lifecycle record (fork, exec, exit): no call arguments, and the reader is woken at once.
pub fn emit_lifecycle(kind: u32, caller: Caller, aux: u64) {
    emit(Urgency::Immediate, kind, caller, 0, [0; 6], 0, aux);
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
/// `out` must point at a writable `FilePath` in reserved ring memory, its header zeroed.
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
/// `out` must point at a writable `FilePath` in reserved ring memory.
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
