//! Unmaps whose records arrive after the mapping that reused their memory.
//!
//! Records reach the ring when each call's exit tracepoint runs, not when the call changed the
//! address space under the mmap lock. Thread A's munmap lets the lock go before it returns
//! (`vms_complete_munmap_vmas()` downgrades it and drops it, and `__vm_munmap()` still has its
//! way back to the exit tracepoint), so thread B's mmap can take the freed range
//! (`get_unmapped_area()` finds it free) and reach its exit first: the ring then holds B's mmap
//! before A's munmap. Applied in ring order, A's unmap would
//! remove B's new mapping, which the kernel keeps.
//!
//! A mapping placed by the kernel (mmap without `MAP_FIXED`; `MAP_FIXED_NOREPLACE` also refuses
//! to replace) proves its range was free when it was made. What the table still holds there was
//! therefore unmapped by a call whose record is still on its way: that range is kept here, and
//! the first unmap from another thread that covers it leaves it alone (its own thread's calls
//! reach the ring in order, so the late record is never one of them). An entry lasts a second of
//! the kernel's clock, far longer than a runnable thread waits on these machines; one that
//! outlives it came from a table already wrong, which a re-read corrects.

use crate::decode::Call;
use crate::model::{page_align_up, syscall_failed};
use pmap_common::linux::MAP_FIXED;

use super::AddressSpace;

/// How long (in `CLOCK_MONOTONIC` nanoseconds) a range waits for its late unmap.
const WAIT_NS: u64 = 1_000_000_000;

/// The ranges a kernel-placed mapping showed to be already unmapped, awaiting their records.
#[derive(Clone, Debug, Default)]
pub struct UnmapsInFlight {
    ranges: Vec<InFlight>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    start: u64,
    end: u64,
    /// The thread whose mapping showed it: its own later unmaps are not the late one.
    shown_by: u32,
    shown_at_ns: u64,
}

impl UnmapsInFlight {
    /// Called before `call` (completed by thread `tid` at `at_ns`, returning `ret`) is applied to
    /// `table`. Returns the unmaps to apply in its place when part of it was already applied by
    /// the kernel before a mapping the table has seen; `None`: apply the call as recorded.
    pub fn before_apply(
        &mut self,
        table: &AddressSpace,
        tid: u32,
        at_ns: u64,
        call: &Call,
        ret: i64,
    ) -> Option<Vec<Call>> {
        if syscall_failed(ret) {
            return None;
        }
        self.ranges
            .retain(|r| at_ns.saturating_sub(r.shown_at_ns) <= WAIT_NS);
        match *call {
            Call::Mmap { len, flags, .. } if flags & MAP_FIXED == 0 => {
                let start = ret as u64;
                let end = start.saturating_add(page_align_up(len));
                for (start, end) in table.mapped_within(start, end) {
                    self.ranges.push(InFlight {
                        start,
                        end,
                        shown_by: tid,
                        shown_at_ns: at_ns,
                    });
                }
                None
            }
            Call::Munmap { addr, len } if !self.ranges.is_empty() => {
                let end = addr.saturating_add(page_align_up(len));
                self.take_applied(tid, addr, end).map(|left| {
                    left.into_iter()
                        .map(|(start, end)| Call::Munmap {
                            addr: start,
                            len: end - start,
                        })
                        .collect()
                })
            }
            _ => None,
        }
    }

    /// Removes from the waiting ranges what `[start, end)`, unmapped by thread `tid`, covers,
    /// and returns the pieces of it the table still has to unmap; `None` when it covers none.
    fn take_applied(&mut self, tid: u32, start: u64, end: u64) -> Option<Vec<(u64, u64)>> {
        let mut applied: Vec<(u64, u64)> = Vec::new();
        let mut waiting = Vec::with_capacity(self.ranges.len());
        for range in self.ranges.drain(..) {
            let (from, to) = (range.start.max(start), range.end.min(end));
            if range.shown_by == tid || from >= to {
                waiting.push(range);
                continue;
            }
            applied.push((from, to));
            for (piece_start, piece_end) in [(range.start, from), (to, range.end)] {
                if piece_start < piece_end {
                    waiting.push(InFlight {
                        start: piece_start,
                        end: piece_end,
                        ..range
                    });
                }
            }
        }
        self.ranges = waiting;
        if applied.is_empty() {
            return None;
        }
        applied.sort_unstable();
        let mut left = Vec::new();
        let mut from = start;
        for (applied_start, applied_end) in applied {
            if from < applied_start {
                left.push((from, applied_start));
            }
            from = from.max(applied_end);
        }
        if from < end {
            left.push((from, end));
        }
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::NoOracle;
    use crate::table::test_support::{P as PAGE, PRIVATE_ANON, RW};

    const BASE: u64 = 0x7f00_0000_0000;
    const A: u32 = 101;
    const B: u32 = 102;

    fn mmap(pages: u64) -> Call {
        Call::Mmap {
            addr: 0,
            len: pages * PAGE,
            prot: RW,
            flags: PRIVATE_ANON,
            fd: -1,
            offset: 0,
        }
    }

    fn munmap(addr: u64, pages: u64) -> Call {
        Call::Munmap {
            addr,
            len: pages * PAGE,
        }
    }

    /// Applies `calls` (thread, time, call, return) in the order given, as the session does.
    fn replay(calls: &[(u32, u64, Call, i64)]) -> AddressSpace {
        let mut table = AddressSpace::default();
        let mut in_flight = UnmapsInFlight::default();
        for (tid, at, call, ret) in calls {
            match in_flight.before_apply(&table, *tid, *at, call, *ret) {
                Some(pieces) => {
                    for piece in pieces {
                        table.apply(&piece, 0, &mut NoOracle);
                    }
                }
                None => table.apply(call, *ret, &mut NoOracle),
            }
        }
        table
    }

    fn spans(table: &AddressSpace) -> Vec<(u64, u64)> {
        table.mappings().map(|m| (m.start, m.end)).collect()
    }

    #[test]
    fn an_unmap_reaching_the_ring_after_the_mapping_that_reused_its_range_leaves_it() {
        // A maps 3 pages and unmaps them; B is given the same range, and B's record comes first.
        let table = replay(&[
            (A, 1, mmap(3), BASE as i64),
            (B, 3, mmap(3), BASE as i64),
            (A, 4, munmap(BASE, 3), 0),
        ]);
        assert_eq!(spans(&table), [(BASE, BASE + 3 * PAGE)]);
    }

    #[test]
    fn only_the_reused_part_of_a_late_unmap_is_skipped() {
        // A's 4 pages were freed; B's 2-page mapping took the first two. A's late unmap still
        // removes the other two, and a mapping beyond A's range is untouched.
        let table = replay(&[
            (A, 1, mmap(4), BASE as i64),
            (A, 2, mmap(1), (BASE + 4 * PAGE) as i64),
            (B, 3, mmap(2), BASE as i64),
            (A, 4, munmap(BASE, 4), 0),
        ]);
        assert_eq!(
            spans(&table),
            [(BASE, BASE + 2 * PAGE), (BASE + 4 * PAGE, BASE + 5 * PAGE)]
        );
    }

    #[test]
    fn the_mapping_threads_own_unmap_is_applied() {
        // Unmaps by the thread that saw the reuse come after its mapping in the ring: they
        // unmap it. The other thread's late unmap then finds nothing left to do.
        let calls = [
            (A, 1, mmap(2), BASE as i64),
            (B, 3, mmap(2), BASE as i64),
            (B, 4, munmap(BASE, 2), 0),
            (A, 5, munmap(BASE, 2), 0),
        ];
        assert_eq!(spans(&replay(&calls[..3])), []);
        assert_eq!(spans(&replay(&calls)), []);
    }

    #[test]
    fn a_late_unmap_is_consumed_once() {
        // After A's late unmap arrived, a later unmap of B's mapping by a third thread counts.
        let table = replay(&[
            (A, 1, mmap(2), BASE as i64),
            (B, 3, mmap(2), BASE as i64),
            (A, 4, munmap(BASE, 2), 0),
            (103, 5, munmap(BASE, 2), 0),
        ]);
        assert_eq!(spans(&table), []);
    }

    #[test]
    fn a_range_waits_a_second_at_most() {
        let table = replay(&[
            (A, 1, mmap(2), BASE as i64),
            (B, 3, mmap(2), BASE as i64),
            (A, 3 + WAIT_NS + 1, munmap(BASE, 2), 0),
        ]);
        assert_eq!(spans(&table), []);
    }

    #[test]
    fn fixed_mappings_replace_and_show_nothing() {
        // MAP_FIXED replaces what was there: the unmap that follows is an ordinary one.
        let fixed = Call::Mmap {
            addr: BASE,
            len: 2 * PAGE,
            prot: RW,
            flags: PRIVATE_ANON | MAP_FIXED,
            fd: -1,
            offset: 0,
        };
        let table = replay(&[
            (A, 1, mmap(2), BASE as i64),
            (B, 2, fixed, BASE as i64),
            (A, 3, munmap(BASE, 2), 0),
        ]);
        assert_eq!(spans(&table), []);
    }
}
