//! Decoder: raw [`EventRecord`] bytes from the ring → typed [`Event`]s.

use pmap_common::{
    EXEC_RECORD_MAX, EventRecord, ExecHeader, FaultRecord, FileMmapRecord, FilePath, record_kind,
    syscall_nr,
};
use thiserror::Error;

mod call;
mod exec_image;
mod mapped_file;
mod stack;
pub use call::{Arg, ArgKind, Call, Returns};
pub use exec_image::{ExecImage, ImageGap, ImageVma, special_mappings};
pub use mapped_file::MappedFile;
pub use stack::{StackKey, StackSegment, StackTops, UserStack, awaited_stack, decode_stack};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error(
        "ring record of {0} bytes, which its kind does not have (a call record has {expected})",
        expected = EventRecord::SIZE
    )]
    WrongSize(usize),
    #[error("stack record claims {0} stack bytes, not what it holds")]
    StackOverrun(u64),
    #[error("file mmap record claims {0} path bytes, more than it holds")]
    PathOverrun(u32),
    #[error("ring record of unknown kind {0}")]
    UnknownKind(u32),
    #[error("ring record for unknown syscall number {0}")]
    UnknownSyscall(u32),
    #[error("ring record for unknown ioctl request {0:#x}")]
    UnknownIoctl(u32),
    #[error("ring record for unknown prctl option {0:#x}")]
    UnknownPrctl(u64),
}

/// One thing that happened to a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `CLOCK_MONOTONIC` nanoseconds when the call completed.
    pub timestamp_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// The thread's command name, as the kernel keeps it (up to 15 bytes, any bytes but NUL).
    pub comm: Vec<u8>,
    pub kind: EventKind,
    /// For a successful file-backed mmap, the file the kernel saw behind the descriptor.
    pub file: Option<MappedFile>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A completed mapping-changing call and its raw return value.
    Call { call: Call, ret: i64 },
    /// The process completed an exec; its address space was replaced.
    Exec,
    /// The last thread of the process exited.
    Exit {
        /// The size of its address space then, as the kernel counted it.
        memory: ExitMemory,
    },
    /// The process forked a child process (threads are not reported) with this PID.
    Fork {
        child: u32,
        /// What the kernel said of the child's memory at the fork.
        memory: ChildMemory,
    },
}

/// What the fork record says of a new child's address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildMemory {
    /// The child's number of VMAs (`mm->map_count`), when the kernel side could read it.
    pub vmas: Option<u32>,
    /// The child shares its parent's mm (CLONE_VM, as vfork and posix_spawn do).
    pub shared: bool,
}

/// What the exit record says of the address space the process had at its exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitMemory {
    /// `mm->total_vm`: pages mapped, the gate page aside.
    pub total_pages: Option<u64>,
    /// `mm->stack_vm`: pages of VM_GROWSDOWN mappings (the stack), grown without a syscall.
    pub stack_pages: Option<u64>,
}

/// One ring record: the event, for a growth call the stack copied for it (joined from the
/// stack ring), and for an exec the address space it made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub event: Event,
    pub stack: Option<Box<UserStack>>,
    pub image: Option<Box<ExecImage>>,
}

/// A sampled first touch of a page by a traced process (`--faults`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstTouch {
    pub tgid: u32,
    pub address: u64,
    /// The stack of the code that touched it, when the kernel copied it (joined by the
    /// capture, see [`awaited_stack`]).
    pub stack: Option<Box<UserStack>>,
}

/// One ring record of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Captured(Captured),
    FirstTouch(FirstTouch),
}

/// Decodes one ring-buffer record of any kind.
pub fn decode_ring_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    // Every record starts with its kind.
    let kind = bytes
        .first_chunk::<4>()
        .map(|kind| u32::from_ne_bytes(*kind));
    if !matches!(
        kind,
        Some(record_kind::FIRST_TOUCH | record_kind::FIRST_TOUCH_WITH_STACK)
    ) {
        return decode_captured(bytes).map(Record::Captured);
    }
    if bytes.len() != FaultRecord::SIZE {
        return Err(DecodeError::WrongSize(bytes.len()));
    }
    // SAFETY: the length is a FaultRecord's, plain data valid for any bit pattern, read
    // unaligned as below.
    let record: FaultRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Ok(Record::FirstTouch(FirstTouch {
        tgid: record.tgid,
        address: record.address,
        stack: None,
    }))
}

/// Decodes one ring-buffer record, dropping a growth record's stack.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    decode_captured(bytes).map(|captured| captured.event)
}

/// Decodes one ring-buffer record: a plain [`EventRecord`] (also for a growth call, whose
/// stack arrives in the stack ring), a [`FileMmapRecord`] with as much of its path as was
/// written, or an exec image; the kind says which, and the length must fit it.
pub fn decode_captured(bytes: &[u8]) -> Result<Captured, DecodeError> {
    if bytes.len() < EventRecord::SIZE {
        return Err(DecodeError::WrongSize(bytes.len()));
    }
    // SAFETY: the length is at least an EventRecord's, which starts every record and is plain
    // data valid for any bit pattern; the unaligned read copes with whatever alignment the
    // ring gives the slice.
    let record: EventRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let fits = match record.kind {
        record_kind::FILE_MMAP => {
            (FileMmapRecord::HEADER_SIZE..=FileMmapRecord::SIZE).contains(&bytes.len())
        }
        record_kind::EXEC_IMAGE => (ExecHeader::SIZE..=EXEC_RECORD_MAX).contains(&bytes.len()),
        _ => bytes.len() == EventRecord::SIZE,
    };
    if !fits {
        return Err(DecodeError::WrongSize(bytes.len()));
    }
    let mut event = decode_record(&record)?;
    if record.kind == record_kind::FILE_MMAP {
        event.file = MappedFile::from_path(&file_path_of(bytes)?);
    }
    let image = match record.kind {
        record_kind::EXEC_IMAGE => Some(Box::new(
            ExecImage::from_bytes(bytes).ok_or(DecodeError::WrongSize(bytes.len()))?,
        )),
        _ => None,
    };
    Ok(Captured {
        event,
        stack: None,
        image,
    })
}

/// The file of a file mmap record: the header and the `path_len` bytes of path after it.
fn file_path_of(bytes: &[u8]) -> Result<FilePath, DecodeError> {
    // SAFETY: a plain repr(C) struct of integers and bytes: all zero is a valid value.
    let mut whole: FileMmapRecord = unsafe { std::mem::zeroed() };
    // SAFETY: `bytes` is no longer than a FileMmapRecord (checked by the caller), copied into
    // the start of one.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut whole).cast::<u8>(), bytes.len())
    };
    let sent = bytes.len() - FileMmapRecord::HEADER_SIZE;
    if whole.file.path_len as usize > sent {
        return Err(DecodeError::PathOverrun(whole.file.path_len));
    }
    Ok(whole.file)
}

/// The call a syscall record describes, or why it describes none.
fn call_of(nr: u32, args: [u64; 6]) -> Result<Call, DecodeError> {
    Call::from_registers(nr, args).ok_or(match nr {
        syscall_nr::IOCTL => DecodeError::UnknownIoctl(args[1] as u32),
        syscall_nr::PRCTL => DecodeError::UnknownPrctl(args[0]),
        other => DecodeError::UnknownSyscall(other),
    })
}

pub fn decode_record(record: &EventRecord) -> Result<Event, DecodeError> {
    let kind = match record.kind {
        record_kind::SYSCALL | record_kind::SYSCALL_WITH_STACK | record_kind::FILE_MMAP => {
            EventKind::Call {
                call: call_of(record.syscall_nr, record.args)?,
                ret: record.ret,
            }
        }
        record_kind::EXEC | record_kind::EXEC_IMAGE => EventKind::Exec,
        record_kind::EXIT => EventKind::Exit {
            memory: ExitMemory {
                total_pages: Some(record.args[pmap_common::EXIT_TOTAL_PAGES]).filter(|&p| p > 0),
                stack_pages: Some(record.args[pmap_common::EXIT_STACK_PAGES]).filter(|&p| p > 0),
            },
        },
        record_kind::FORK => EventKind::Fork {
            child: record.aux as u32,
            memory: ChildMemory {
                vmas: record.args[pmap_common::FORK_CHILD_VMAS]
                    .checked_sub(1)
                    .map(|count| count as u32),
                shared: record.args[pmap_common::FORK_SHARES_MM] == 1,
            },
        },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    let comm_len = record
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(record.comm.len());
    Ok(Event {
        timestamp_ns: record.timestamp_ns,
        tgid: record.tgid,
        tid: record.tid,
        comm: record.comm[..comm_len].to_vec(),
        kind,
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use pmap_common::{FilePath, file_path};

    use super::*;
    use crate::model::Device;

    fn record(kind: u32, nr: u32, args: [u64; 6], ret: i64) -> EventRecord {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"work");
        EventRecord {
            kind,
            syscall_nr: nr,
            timestamp_ns: 42,
            tgid: 100,
            tid: 101,
            args,
            ret,
            aux: 0,
            comm,
        }
    }

    fn bytes_of(r: &EventRecord) -> Vec<u8> {
        // SAFETY: plain repr(C) data.
        unsafe {
            std::slice::from_raw_parts((r as *const EventRecord).cast::<u8>(), EventRecord::SIZE)
        }
        .to_vec()
    }

    #[test]
    fn decodes_mmap_arguments_in_register_order() {
        let r = record(
            record_kind::SYSCALL,
            syscall_nr::MMAP,
            [0, 8192, 3, 0x22, u64::MAX, 0],
            0x7f00_0000_0000,
        );
        let event = decode(&bytes_of(&r)).unwrap();
        assert_eq!(event.tgid, 100);
        assert_eq!(event.tid, 101);
        assert_eq!(event.comm, b"work");
        assert_eq!(
            event.kind,
            EventKind::Call {
                call: Call::Mmap {
                    addr: 0,
                    len: 8192,
                    prot: 3,
                    flags: 0x22,
                    fd: -1,
                    offset: 0
                },
                ret: 0x7f00_0000_0000
            }
        );
    }

    #[test]
    fn userfaultfd_ioctls_carry_their_range_and_other_requests_are_refused() {
        let range = |request: u32| {
            let r = record(
                record_kind::SYSCALL,
                syscall_nr::IOCTL,
                [3, request as u64, 0x7ffd_0000, 0x1000, 0x2000, 1],
                0,
            );
            decode(&bytes_of(&r)).map(|e| match e.kind {
                EventKind::Call { call, .. } => call,
                other => panic!("not a call: {other:?}"),
            })
        };
        assert_eq!(
            range(pmap_common::linux::UFFDIO_REGISTER),
            Ok(Call::UffdRegister {
                fd: 3,
                start: 0x1000,
                len: 0x2000,
                mode: 1
            })
        );
        assert_eq!(
            range(pmap_common::linux::UFFDIO_UNREGISTER),
            Ok(Call::UffdUnregister {
                fd: 3,
                start: 0x1000,
                len: 0x2000
            })
        );
        assert_eq!(range(0x5401), Err(DecodeError::UnknownIoctl(0x5401)));
    }

    #[test]
    fn decodes_every_traced_syscall_to_its_own_name() {
        for &(name, nr) in pmap_common::TRACED_SYSCALLS {
            // The calls the kernel side lets through: prctl(PR_SET_VMA), a userfaultfd ioctl.
            let first_args = if nr == syscall_nr::IOCTL {
                [3, pmap_common::linux::UFFDIO_REGISTER as u64]
            } else {
                [pmap_common::linux::PR_SET_VMA, 0]
            };
            let r = record(
                record_kind::SYSCALL,
                nr,
                [first_args[0], first_args[1], 0, 0, 0, 0],
                0,
            );
            let EventKind::Call { call, .. } = decode(&bytes_of(&r)).unwrap().kind else {
                panic!("{name} did not decode as a call");
            };
            assert_eq!(call.name(), name);
        }
    }

    #[test]
    fn decodes_the_kernels_file_identity() {
        let event = record(
            record_kind::FILE_MMAP,
            syscall_nr::MMAP,
            [0, 4096, 1, 2, 3, 0],
            0x1000,
        );
        let mut r = FileMmapRecord {
            event,
            file: FilePath {
                dev: 0,
                path_flags: 0,
                ino: 0,
                path_len: 0,
                _pad: 0,
                path: [0xaa; pmap_common::FILE_PATH_LEN],
            },
        };
        // As the kernel sends it: the header and the part of the path written.
        let file_bytes = |r: &FileMmapRecord| {
            // SAFETY: a plain repr(C) struct viewed as its bytes.
            unsafe {
                std::slice::from_raw_parts(
                    (r as *const FileMmapRecord).cast::<u8>(),
                    FileMmapRecord::HEADER_SIZE + r.file.path_len as usize,
                )
            }
            .to_vec()
        };
        // The kernel could not read it: no identity.
        assert_eq!(file_bytes(&r).len(), FileMmapRecord::HEADER_SIZE);
        assert_eq!(decode(&file_bytes(&r)).unwrap().file, None);
        // A file record cut to a call record's size is refused.
        assert_eq!(
            decode(&bytes_of(&event)),
            Err(DecodeError::WrongSize(EventRecord::SIZE))
        );
        // So is one that claims more path than it carries.
        let mut short = r;
        short.file.path_len = 8;
        let mut bytes = file_bytes(&short);
        bytes.truncate(bytes.len() - 1);
        assert_eq!(decode(&bytes), Err(DecodeError::PathOverrun(8)));
        r.file.dev = (0xfe << 20) | 1;
        r.file.ino = 4242;
        // Components last first; the walk stopped before the root: the name alone.
        let components = b"libc.so.6\0x86_64-linux-gnu\0lib\0usr\0";
        r.file.path[..components.len()].copy_from_slice(components);
        r.file.path_len = 14;
        let decoded = decode(&file_bytes(&r)).unwrap();
        assert!(matches!(
            decoded.kind,
            EventKind::Call {
                call: Call::Mmap { fd: 3, .. },
                ret: 0x1000
            }
        ));
        let file = decoded.file.unwrap();
        assert_eq!(
            file.device,
            Device {
                major: 0xfe,
                minor: 1
            }
        );
        assert_eq!(file.inode, 4242);
        assert_eq!(file.name, b"libc.so.6");
        assert!(!file.whole_path);
        // It reached the root: the whole path, as /proc prints it.
        r.file.path_len = components.len() as u32;
        r.file.path_flags = file_path::COMPLETE;
        let file = decode(&file_bytes(&r)).unwrap().file.unwrap();
        assert_eq!(file.name, b"/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(file.whole_path);
        r.file.path_flags |= file_path::DELETED;
        let file = decode(&file_bytes(&r)).unwrap().file.unwrap();
        assert_eq!(file.name, b"/usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)");
    }

    #[test]
    fn decodes_lifecycle_records() {
        let mut r = record(record_kind::FORK, 0, [0; 6], 0);
        r.aux = 555;
        assert_eq!(
            decode(&bytes_of(&r)).unwrap().kind,
            EventKind::Fork {
                child: 555,
                memory: ChildMemory::default()
            }
        );
        // The kernel side counted the child's VMAs (plus one) and saw it share the mm.
        let mut r = record(record_kind::FORK, 0, [43, 1, 0, 0, 0, 0], 0);
        r.aux = 556;
        assert_eq!(
            decode(&bytes_of(&r)).unwrap().kind,
            EventKind::Fork {
                child: 556,
                memory: ChildMemory {
                    vmas: Some(42),
                    shared: true
                }
            }
        );
        let r = record(record_kind::EXEC, 0, [0; 6], 0);
        assert_eq!(decode(&bytes_of(&r)).unwrap().kind, EventKind::Exec);
        // An exec record with its image: the header alone is an image of no VMA, which is
        // not whole (the mm counts one).
        let mut header: ExecHeader = unsafe { std::mem::zeroed() };
        header.event = record(record_kind::EXEC_IMAGE, 0, [0; 6], 0);
        header.map_count = 1;
        // SAFETY: plain data viewed as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const header).cast::<u8>(), ExecHeader::SIZE)
        };
        let captured = decode_captured(bytes).unwrap();
        assert_eq!(captured.event.kind, EventKind::Exec);
        let image = captured.image.expect("the image");
        assert_eq!(
            image.gap,
            Some(ImageGap::Count {
                found: 0,
                kernel: 1
            })
        );
        assert_eq!(
            decode_captured(&bytes[..bytes.len() - 8]),
            Err(DecodeError::WrongSize(ExecHeader::SIZE - 8))
        );
        let r = record(record_kind::EXIT, 0, [0; 6], 0);
        assert_eq!(
            decode(&bytes_of(&r)).unwrap().kind,
            EventKind::Exit {
                memory: ExitMemory::default()
            }
        );
        let r = record(record_kind::EXIT, 0, [1300, 33, 0, 0, 0, 0], 0);
        assert_eq!(
            decode(&bytes_of(&r)).unwrap().kind,
            EventKind::Exit {
                memory: ExitMemory {
                    total_pages: Some(1300),
                    stack_pages: Some(33)
                }
            }
        );
    }

    #[test]
    fn a_growth_calls_record_is_a_call_record_whose_stack_comes_apart() {
        let r = record(
            record_kind::SYSCALL_WITH_STACK,
            syscall_nr::BRK,
            [0x5000_0000, 0, 0, 0, 0, 0],
            0x5000_0000,
        );
        let captured = decode_captured(&bytes_of(&r)).unwrap();
        assert_eq!(
            captured.event.kind,
            EventKind::Call {
                call: Call::Brk { addr: 0x5000_0000 },
                ret: 0x5000_0000
            }
        );
        assert_eq!(captured.stack, None);
        assert_eq!(
            awaited_stack(&bytes_of(&r)),
            Some(StackKey {
                tid: 101,
                timestamp_ns: 42
            })
        );
    }

    #[test]
    fn rejects_malformed_records() {
        assert_eq!(decode(&[0u8; 3]), Err(DecodeError::WrongSize(3)));
        let r = record(99, 0, [0; 6], 0);
        assert_eq!(decode(&bytes_of(&r)), Err(DecodeError::UnknownKind(99)));
        let r = record(record_kind::SYSCALL, 1, [0; 6], 0);
        assert_eq!(decode(&bytes_of(&r)), Err(DecodeError::UnknownSyscall(1)));
        // prctl is traced for PR_SET_VMA alone; PR_SET_NAME is another option.
        let r = record(
            record_kind::SYSCALL,
            syscall_nr::PRCTL,
            [15, 0, 0, 0, 0, 0],
            0,
        );
        assert_eq!(decode(&bytes_of(&r)), Err(DecodeError::UnknownPrctl(15)));
    }

    #[test]
    fn a_fault_sample_is_its_own_small_record() {
        for kind in [
            record_kind::FIRST_TOUCH,
            record_kind::FIRST_TOUCH_WITH_STACK,
        ] {
            let record = FaultRecord {
                kind,
                tgid: 77,
                address: 0x7f00_1234_5000,
                tid: 78,
                _pad: 0,
                timestamp_ns: 42,
            };
            // SAFETY: plain data, read as its bytes.
            let mut bytes = unsafe {
                std::slice::from_raw_parts((&raw const record).cast::<u8>(), FaultRecord::SIZE)
            }
            .to_vec();
            assert_eq!(
                decode_ring_record(&bytes),
                Ok(Record::FirstTouch(FirstTouch {
                    tgid: 77,
                    address: 0x7f00_1234_5000,
                    stack: None,
                }))
            );
            // Only a sample whose stack was copied waits for it.
            let awaited = (kind == record_kind::FIRST_TOUCH_WITH_STACK).then_some(StackKey {
                tid: 78,
                timestamp_ns: 42,
            });
            assert_eq!(awaited_stack(&bytes), awaited);
            bytes.push(0);
            assert_eq!(
                decode_ring_record(&bytes),
                Err(DecodeError::WrongSize(FaultRecord::SIZE + 1))
            );
        }
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever the ring hands over, decoding returns an event or an error: it never
            /// panics.
            #[test]
            fn decoding_arbitrary_bytes_never_panics(
                bytes in prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..400),
                    proptest::collection::vec(any::<u8>(), EventRecord::SIZE),
                    proptest::collection::vec(
                        any::<u8>(),
                        FileMmapRecord::HEADER_SIZE..=FileMmapRecord::SIZE
                    ),
                    proptest::collection::vec(any::<u8>(), FaultRecord::SIZE),
                ]
            ) {
                let _ = decode(&bytes);
                let _ = decode_ring_record(&bytes);
            }
        }
    }
}
