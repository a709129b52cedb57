//! The stack copies of growth calls, as the kernel sends them in the stack ring: a
//! [`StackHeader`] and the bytes of one or two stack segments, joined to the call's record by
//! thread id and timestamp.

use std::sync::Arc;

use pmap_common::{EventRecord, FaultRecord, StackHeader, record_kind, stack_flags};

use super::DecodeError;

/// What joins a stack record to its call's record: both carry the calling thread and the
/// timestamp the kernel took once for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub tid: u32,
    pub timestamp_ns: u64,
}

/// Where an unwinder tells the kernel side how far up a thread's stack the copies of its
/// growth calls must reach (see `pmap_common::THREAD_TOPS_MAP`).
pub trait StackTops: Send + Sync {
    /// Every frame of thread `tid` lies below `top` (exclusive); `None`: the copy a bound of
    /// the kernel's cut short did not hold the whole stack, so copies go back to the full size.
    fn set(&self, tid: u32, top: Option<u64>);
}

/// Registers and a copy of user memory from `rsp` up: where an unwinder starts, and what it
/// reads.
#[derive(Clone, PartialEq, Eq)]
pub struct StackSegment {
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    /// User memory from `rsp` up, as far as it was copied.
    pub bytes: Vec<u8>,
}

/// The caller's user registers and a copy of its stack from `rsp` up, taken by the kernel at a
/// call that may have grown anonymous memory; for a Go program's call on its system stack, also
/// the goroutine that switched there.
#[derive(Clone)]
pub struct UserStack {
    pub tid: u32,
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
    /// User memory from `rsp` up, as far as it was copied.
    pub bytes: Vec<u8>,
    /// The goroutine whose call switched to the system stack: where it stopped (`g.sched`)
    /// and its stack.
    pub switched: Option<Box<StackSegment>>,
    /// The top of the thread's stack the copy was cut at, as an earlier unwind had found it.
    pub learned_top: Option<u64>,
    /// Where to report the top this stack's unwind finds; none in tests and replays.
    pub tops: Option<Arc<dyn StackTops>>,
}

impl PartialEq for UserStack {
    // What was copied, not where a learned top is reported to.
    fn eq(&self, other: &Self) -> bool {
        (
            self.tid,
            self.rip,
            self.rsp,
            self.rbp,
            &self.bytes,
            &self.switched,
            self.learned_top,
        ) == (
            other.tid,
            other.rip,
            other.rsp,
            other.rbp,
            &other.bytes,
            &other.switched,
            other.learned_top,
        )
    }
}

impl Eq for UserStack {}

impl std::fmt::Debug for StackSegment {
    // As for UserStack: the bytes by their length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackSegment")
            .field("rip", &format_args!("{:#x}", self.rip))
            .field("rsp", &format_args!("{:#x}", self.rsp))
            .field("rbp", &format_args!("{:#x}", self.rbp))
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl std::fmt::Debug for UserStack {
    // The bytes are kilobytes of noise in a test failure; their length says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStack")
            .field("tid", &self.tid)
            .field("rip", &format_args!("{:#x}", self.rip))
            .field("rsp", &format_args!("{:#x}", self.rsp))
            .field("rbp", &format_args!("{:#x}", self.rbp))
            .field("bytes", &self.bytes.len())
            .field("switched", &self.switched)
            .field("learned_top", &self.learned_top)
            .finish()
    }
}

/// The key of the stack a call's record says is waiting in the stack ring (kind
/// [`record_kind::SYSCALL_WITH_STACK`]), or a fault sample's ([`record_kind::FIRST_TOUCH_WITH_STACK`]);
/// `None` for any other record.
pub fn awaited_stack(bytes: &[u8]) -> Option<StackKey> {
    if bytes.len() == FaultRecord::SIZE {
        // SAFETY: as below, for a FaultRecord.
        let record: FaultRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        return (record.kind == record_kind::FIRST_TOUCH_WITH_STACK).then_some(StackKey {
            tid: record.tid,
            timestamp_ns: record.timestamp_ns,
        });
    }
    if bytes.len() != EventRecord::SIZE {
        return None;
    }
    // SAFETY: the length is an EventRecord's, plain data valid for any bit pattern, read
    // unaligned as the ring gives no alignment.
    let record: EventRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    (record.kind == record_kind::SYSCALL_WITH_STACK).then_some(StackKey {
        tid: record.tid,
        timestamp_ns: record.timestamp_ns,
    })
}

/// Decodes one record of the stack ring: a [`StackHeader`] followed by exactly the bytes of
/// its segments.
pub fn decode_stack(bytes: &[u8]) -> Result<(StackKey, UserStack), DecodeError> {
    if bytes.len() < StackHeader::SIZE {
        return Err(DecodeError::WrongSize(bytes.len()));
    }
    // SAFETY: the length covers a StackHeader, plain data valid for any bit pattern, read
    // unaligned as above.
    let header: StackHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if header.kind != record_kind::STACK {
        return Err(DecodeError::UnknownKind(header.kind));
    }
    let switched = header.flags & stack_flags::SWITCHED != 0;
    let first = header.len as usize;
    let second = if switched {
        header.switched_len as usize
    } else {
        0
    };
    let body = &bytes[StackHeader::SIZE..];
    if first + second != body.len() {
        return Err(DecodeError::StackOverrun((first + second) as u64));
    }
    let stack = UserStack {
        tid: header.tid,
        rip: header.regs.rip,
        rsp: header.regs.rsp,
        rbp: header.regs.rbp,
        bytes: body[..first].to_vec(),
        switched: switched.then(|| {
            Box::new(StackSegment {
                rip: header.switched.rip,
                rsp: header.switched.rsp,
                rbp: header.switched.rbp,
                bytes: body[first..].to_vec(),
            })
        }),
        learned_top: (header.flags & stack_flags::LEARNED_TOP != 0).then_some(header.learned_top),
        tops: None,
    };
    let key = StackKey {
        tid: header.tid,
        timestamp_ns: header.timestamp_ns,
    };
    Ok((key, stack))
}

#[cfg(test)]
mod tests {
    use pmap_common::UserRegs;

    use super::*;

    fn header(len: u32, flags: u32, switched_len: u32) -> StackHeader {
        StackHeader {
            kind: record_kind::STACK,
            tid: 101,
            timestamp_ns: 42,
            regs: UserRegs {
                rip: 0x401000,
                rsp: 0x7ffc_0000_1000,
                rbp: 0x7ffc_0000_2000,
            },
            len,
            flags,
            learned_top: 0x7ffc_0000_3000,
            switched: UserRegs {
                rip: 0x402000,
                rsp: 0xc000_1000,
                rbp: 0xc000_1100,
            },
            switched_len,
            _pad: 0,
        }
    }

    fn record(header: &StackHeader, body: &[u8]) -> Vec<u8> {
        // SAFETY: a plain repr(C) struct viewed as its bytes.
        let mut out = unsafe {
            std::slice::from_raw_parts(
                (header as *const StackHeader).cast::<u8>(),
                StackHeader::SIZE,
            )
        }
        .to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn the_fuzzed_fields_are_where_the_header_has_them() {
        assert_eq!(std::mem::offset_of!(StackHeader, len), 40);
        assert_eq!(std::mem::offset_of!(StackHeader, flags), 44);
        assert_eq!(std::mem::offset_of!(StackHeader, switched_len), 80);
    }

    #[test]
    fn decodes_a_stack_record_with_its_registers_and_bytes() {
        let bytes = record(&header(5, 0, 0), &[1, 2, 3, 4, 5]);
        let (key, stack) = decode_stack(&bytes).unwrap();
        assert_eq!(
            key,
            StackKey {
                tid: 101,
                timestamp_ns: 42
            }
        );
        assert_eq!(
            (stack.rip, stack.rsp, stack.rbp),
            (0x401000, 0x7ffc_0000_1000, 0x7ffc_0000_2000)
        );
        assert_eq!(stack.bytes, [1, 2, 3, 4, 5]);
        assert_eq!((stack.switched, stack.learned_top), (None, None));
    }

    #[test]
    fn a_learned_top_and_a_switched_goroutine_are_decoded_when_flagged() {
        let flags = stack_flags::LEARNED_TOP | stack_flags::SWITCHED;
        let bytes = record(&header(2, flags, 3), &[1, 2, 7, 8, 9]);
        let (_, stack) = decode_stack(&bytes).unwrap();
        assert_eq!(stack.bytes, [1, 2]);
        assert_eq!(stack.learned_top, Some(0x7ffc_0000_3000));
        let switched = stack.switched.unwrap();
        assert_eq!(
            (switched.rip, switched.rsp, switched.rbp),
            (0x402000, 0xc000_1000, 0xc000_1100)
        );
        assert_eq!(switched.bytes, [7, 8, 9]);
    }

    #[test]
    fn refuses_records_whose_segments_do_not_fill_them() {
        let bytes = record(&header(6, 0, 0), &[1, 2, 3, 4, 5]);
        assert_eq!(decode_stack(&bytes), Err(DecodeError::StackOverrun(6)));
        let bytes = record(&header(1, stack_flags::SWITCHED, 5), &[1, 2, 3, 4, 5]);
        assert_eq!(decode_stack(&bytes), Err(DecodeError::StackOverrun(6)));
        // Without the flag the second length is not counted.
        let bytes = record(&header(5, 0, 9), &[1, 2, 3, 4, 5]);
        assert!(decode_stack(&bytes).is_ok());
        assert_eq!(
            decode_stack(&bytes[..10]).map(|_| ()),
            Err(DecodeError::WrongSize(10))
        );
        let mut other = header(0, 0, 0);
        other.kind = record_kind::SYSCALL;
        assert_eq!(
            decode_stack(&record(&other, &[])).map(|_| ()),
            Err(DecodeError::UnknownKind(record_kind::SYSCALL))
        );
    }

    #[test]
    fn only_a_growth_call_with_a_stack_waits_for_one() {
        let mut event = EventRecord {
            kind: record_kind::SYSCALL_WITH_STACK,
            syscall_nr: 9,
            timestamp_ns: 42,
            tgid: 100,
            tid: 101,
            args: [0; 6],
            ret: 0,
            aux: 0,
            comm: [0; 16],
        };
        // SAFETY: a plain repr(C) struct viewed as its bytes.
        let bytes = |event: &EventRecord| {
            unsafe {
                std::slice::from_raw_parts(
                    (event as *const EventRecord).cast::<u8>(),
                    EventRecord::SIZE,
                )
            }
            .to_vec()
        };
        assert_eq!(
            awaited_stack(&bytes(&event)),
            Some(StackKey {
                tid: 101,
                timestamp_ns: 42
            })
        );
        event.kind = record_kind::SYSCALL;
        assert_eq!(awaited_stack(&bytes(&event)), None);
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever the stack ring hands over, decoding returns a stack or an error, and a
            /// stack's segments are never more than the record holds.
            #[test]
            fn decoding_arbitrary_stack_records_never_panics(
                mut bytes in proptest::collection::vec(any::<u8>(), 0..400),
                lens in (0u32..400, 0u32..4, 0u32..400),
            ) {
                // Most records worth trying are stack records with lengths near the truth.
                if bytes.len() >= StackHeader::SIZE {
                    let (len, flags, switched_len) = lens;
                    bytes[..4].copy_from_slice(&record_kind::STACK.to_ne_bytes());
                    bytes[40..44].copy_from_slice(&len.to_ne_bytes());
                    bytes[44..48].copy_from_slice(&flags.to_ne_bytes());
                    bytes[80..84].copy_from_slice(&switched_len.to_ne_bytes());
                }
                if let Ok((_, stack)) = decode_stack(&bytes) {
                    let switched = stack.switched.map_or(0, |s| s.bytes.len());
                    prop_assert!(stack.bytes.len() + switched + StackHeader::SIZE <= bytes.len());
                }
            }
        }
    }
}
