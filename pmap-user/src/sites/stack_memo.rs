//! Walks remembered, so that a stack like one seen before costs a few comparisons instead of
//! an unwind and an intern. A loop that grows memory makes its calls from the same place with
//! the same stack pointer, and its stacks differ only in words no unwind reads (locals).
//!
//! A walk is a function of the registers it starts from, the code the process maps and the
//! stack words it reads, each read's address following from the registers and the words read
//! before it. So a stack that starts from the same registers and holds the same value at every
//! address the remembered walk read (and cannot serve the reads that one could not) walks the
//! same frames, to the same site. The memory is per process, and forgotten whenever its code
//! mappings change.

use std::collections::HashMap;

use super::ownership::SiteId;
use crate::decode::UserStack;

/// Walks remembered per process at most; past that the memory starts over.
const REMEMBERED: usize = 4096;

/// Which copy of a [`UserStack`] a read was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The stack the call was made on.
    Call,
    /// The Go goroutine that had switched to it.
    Switched,
}

/// One stack word a walk asked for: its value, or `None` when the copy did not hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub segment: Segment,
    pub addr: u64,
    pub value: Option<u64>,
}

/// The word at `addr` of a copy of user memory that starts at `rsp`, if the copy holds it.
pub fn word_at(bytes: &[u8], rsp: u64, addr: u64) -> Option<u64> {
    let at = usize::try_from(addr.checked_sub(rsp)?).ok()?;
    let word = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(word.try_into().expect("8 bytes")))
}

/// The word of `stack`'s `segment` at `addr`.
fn read(stack: &UserStack, segment: Segment, addr: u64) -> Option<u64> {
    match segment {
        Segment::Call => word_at(&stack.bytes, stack.rsp, addr),
        Segment::Switched => {
            let switched = stack.switched.as_deref()?;
            word_at(&switched.bytes, switched.rsp, addr)
        }
    }
}

/// Where a stack's walk starts: the registers of each segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Start {
    call: [u64; 3],
    switched: Option<[u64; 3]>,
}

impl Start {
    fn of(stack: &UserStack) -> Start {
        Start {
            call: [stack.rip, stack.rsp, stack.rbp],
            switched: stack.switched.as_deref().map(|s| [s.rip, s.rsp, s.rbp]),
        }
    }
}

/// What a walk found that outlives it: the site, and what it says about the thread's stack
/// top (see `unwind::report_top`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked<T> {
    pub site: SiteId,
    pub top: T,
}

struct Remembered<T> {
    reads: Vec<Read>,
    walked: Walked<T>,
}

/// The walks of one process.
pub struct StackMemo<T> {
    walks: HashMap<Start, Remembered<T>>,
}

impl<T> Default for StackMemo<T> {
    fn default() -> Self {
        StackMemo {
            walks: HashMap::new(),
        }
    }
}

impl<T: Copy> StackMemo<T> {
    /// What the walk of a stack like `stack` found, if one was remembered.
    pub fn recall(&self, stack: &UserStack) -> Option<Walked<T>> {
        let remembered = self.walks.get(&Start::of(stack))?;
        remembered
            .reads
            .iter()
            .all(|r| read(stack, r.segment, r.addr) == r.value)
            .then_some(remembered.walked)
    }

    /// Remembers that walking `stack`, which read `reads`, found `walked`.
    pub fn remember(&mut self, stack: &UserStack, reads: Vec<Read>, walked: Walked<T>) {
        if self.walks.len() >= REMEMBERED {
            self.walks.clear();
        }
        self.walks
            .insert(Start::of(stack), Remembered { reads, walked });
    }

    /// The code changed: every walk may go elsewhere now.
    pub fn forget(&mut self) {
        self.walks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(words: &[u64]) -> UserStack {
        UserStack {
            tid: 7,
            rip: 0x401000,
            rsp: 0x7000,
            rbp: 0,
            bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            switched: None,
            learned_top: None,
            tops: None,
        }
    }

    fn reads(values: &[(u64, Option<u64>)]) -> Vec<Read> {
        values
            .iter()
            .map(|&(addr, value)| Read {
                segment: Segment::Call,
                addr,
                value,
            })
            .collect()
    }

    #[test]
    fn a_stack_alike_in_every_word_read_walks_to_the_same_site() {
        let mut memo = StackMemo::default();
        let walked = Walked {
            site: SiteId(42),
            top: (),
        };
        let seen = stack(&[1, 0x401234, 3]);
        // The walk read the return address at 0x7008 and failed one word past the copy.
        memo.remember(
            &seen,
            reads(&[(0x7008, Some(0x401234)), (0x7018, None)]),
            walked,
        );
        // Another local (the first word) changes nothing.
        assert_eq!(memo.recall(&stack(&[9, 0x401234, 3])), Some(walked));
        // Another return address is another walk.
        assert_eq!(memo.recall(&stack(&[1, 0x401999, 3])), None);
        // A longer copy serves the read the first one could not: it may walk further.
        assert_eq!(memo.recall(&stack(&[1, 0x401234, 3, 0x402000])), None);
        // Other registers: another walk.
        let mut moved = stack(&[1, 0x401234, 3]);
        moved.rsp += 8;
        assert_eq!(memo.recall(&moved), None);
        memo.forget();
        assert_eq!(memo.recall(&seen), None);
    }

    #[test]
    fn the_goroutines_segment_is_compared_too() {
        use crate::decode::StackSegment;

        let mut memo = StackMemo::default();
        let mut seen = stack(&[1]);
        seen.switched = Some(Box::new(StackSegment {
            rip: 0x402000,
            rsp: 0xc000,
            rbp: 0,
            bytes: 0x403000u64.to_le_bytes().to_vec(),
        }));
        let walked = Walked {
            site: SiteId(5),
            top: (),
        };
        let goroutine_read = Read {
            segment: Segment::Switched,
            addr: 0xc000,
            value: Some(0x403000),
        };
        memo.remember(&seen, vec![goroutine_read], walked);
        assert_eq!(memo.recall(&seen), Some(walked));
        let mut other = seen.clone();
        other.switched.as_mut().unwrap().bytes = 0x404000u64.to_le_bytes().to_vec();
        assert_eq!(memo.recall(&other), None);
        // Without the goroutine it is another start.
        assert_eq!(memo.recall(&stack(&[1])), None);
    }
}
