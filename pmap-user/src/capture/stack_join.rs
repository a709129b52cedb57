//! Each growth call's record joined to its stack copy. The copies come through a ring of their
//! own (see `pmap_common::STACKS_MAP`): the kernel writes a call's stack before the call's
//! record, so when the record is read its stack is in the stack ring, at worst behind a record
//! another CPU has reserved and not yet committed.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};

use crate::decode::{DecodeError, StackKey, UserStack, decode_stack};

/// Where stack records come from: the stack ring, or a list in tests.
pub(super) trait StackSource {
    /// The next committed stack record, if there is one now.
    fn next_stack(&mut self) -> Option<Result<(StackKey, UserStack), DecodeError>>;
}

impl StackSource for RingBuf<MapData> {
    fn next_stack(&mut self) -> Option<Result<(StackKey, UserStack), DecodeError>> {
        self.next().map(|item| decode_stack(&item))
    }
}

/// Longest a call's record waits for its stack to be committed: the kernel commits it within
/// the same program run, with preemption off, so this only guards against a stack that never
/// comes.
const COMMIT_WAIT: Duration = Duration::from_millis(20);

/// Stacks read before their calls' records. Most wait only within one drain; those whose call
/// record the full event ring lost wait until a later stack of their thread is taken, or
/// until there are [`MAX_WAITING`].
const MAX_WAITING: usize = 16_384;

/// Stacks read from the stack ring whose call records have not been read yet.
#[derive(Default)]
pub(super) struct StackJoin {
    waiting: BTreeMap<StackKey, UserStack>,
}

impl StackJoin {
    /// Takes every stack the ring holds now.
    pub(super) fn pull(&mut self, source: &mut impl StackSource) -> Result<(), DecodeError> {
        while let Some(stack) = source.next_stack() {
            let (key, stack) = stack?;
            self.waiting.insert(key, stack);
        }
        if self.waiting.len() > MAX_WAITING {
            self.drop_oldest_half();
        }
        Ok(())
    }

    /// The stack of the call `key`, read from `source` if it has not been yet. Stacks of the
    /// same thread from before it are dropped: their calls' records were lost (a thread's
    /// records are written in the order of its calls). `None` when it does not come.
    pub(super) fn take(
        &mut self,
        key: StackKey,
        source: &mut impl StackSource,
    ) -> Result<Option<UserStack>, DecodeError> {
        let started = Instant::now();
        let stack = loop {
            if let Some(stack) = self.waiting.remove(&key) {
                break Some(stack);
            }
            self.pull(source)?;
            if self.waiting.contains_key(&key) {
                continue;
            }
            if started.elapsed() > COMMIT_WAIT {
                break None;
            }
            std::thread::yield_now();
        };
        let from = StackKey {
            tid: key.tid,
            timestamp_ns: 0,
        };
        let orphans: Vec<StackKey> = self.waiting.range(from..key).map(|(k, _)| *k).collect();
        for orphan in orphans {
            self.waiting.remove(&orphan);
        }
        Ok(stack)
    }

    /// Stacks waiting for their calls' records.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn drop_oldest_half(&mut self) {
        let mut times: Vec<u64> = self.waiting.keys().map(|k| k.timestamp_ns).collect();
        let middle = times.len() / 2;
        let (_, &mut cut, _) = times.select_nth_unstable(middle);
        self.waiting.retain(|key, _| key.timestamp_ns >= cut);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A stack ring in a test: records, and how many `next_stack` calls find nothing
    /// committed before each record becomes readable.
    #[derive(Default)]
    struct Queue {
        records: VecDeque<(usize, StackKey)>,
    }

    impl StackSource for Queue {
        fn next_stack(&mut self) -> Option<Result<(StackKey, UserStack), DecodeError>> {
            let (busy, _) = self.records.front_mut()?;
            if *busy > 0 {
                *busy -= 1;
                return None;
            }
            let (_, key) = self.records.pop_front()?;
            Some(Ok((key, stack(key))))
        }
    }

    fn key(tid: u32, timestamp_ns: u64) -> StackKey {
        StackKey { tid, timestamp_ns }
    }

    fn stack(key: StackKey) -> UserStack {
        UserStack {
            tid: key.tid,
            rip: key.timestamp_ns,
            rsp: 0,
            rbp: 0,
            bytes: Vec::new(),
            switched: None,
            learned_top: None,
            tops: None,
        }
    }

    #[test]
    fn a_calls_stack_is_found_before_or_after_it_was_pulled() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        ring.records.extend([(0, key(1, 10)), (0, key(2, 11))]);
        join.pull(&mut ring).unwrap();
        assert_eq!(join.waiting(), 2);
        ring.records.push_back((0, key(1, 12)));
        assert_eq!(join.take(key(2, 11), &mut ring).unwrap().unwrap().rip, 11);
        // Not pulled yet: read from the ring.
        assert_eq!(join.take(key(1, 12), &mut ring).unwrap().unwrap().rip, 12);
        // Thread 1's stack at 10 had no record (lost): dropped with the later one taken.
        assert_eq!(join.waiting(), 0);
    }

    #[test]
    fn a_stack_behind_an_uncommitted_record_is_waited_for() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        // Three polls find the ring's head not committed yet.
        ring.records.push_back((3, key(1, 10)));
        assert!(join.take(key(1, 10), &mut ring).unwrap().is_some());
    }

    #[test]
    fn a_stack_that_never_comes_is_given_up() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        ring.records.push_back((0, key(2, 5)));
        assert!(join.take(key(1, 10), &mut ring).unwrap().is_none());
        // Another thread's stack stays for its own record.
        assert_eq!(join.waiting(), 1);
    }

    #[test]
    fn stacks_whose_records_were_lost_do_not_pile_up() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        for i in 0..=MAX_WAITING as u64 {
            ring.records.push_back((0, key(1000 + i as u32, i)));
        }
        join.pull(&mut ring).unwrap();
        assert!(join.waiting() <= MAX_WAITING / 2 + 1);
        // The newest stay.
        let newest = key(1000 + MAX_WAITING as u32, MAX_WAITING as u64);
        assert!(join.take(newest, &mut ring).unwrap().is_some());
    }
}
