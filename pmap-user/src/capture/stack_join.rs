//! Each growth call's record joined to its stack copy. The copies come through a ring of their
//! own (see `pmap_common::STACKS_MAP`): the kernel writes a call's stack before the call's
//! record, so when the record is read its stack is in the stack ring, at worst behind a record
//! another CPU has reserved and not yet committed.

use std::{
    collections::{HashMap, VecDeque},
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

/// Stacks read before their calls' records. Most are taken by the next record or the one
/// after (another CPU's record comes first); those whose call record the full event ring lost
/// wait until a later stack of their thread is taken, or until there are [`MAX_WAITING`].
const MAX_WAITING: usize = 16_384;

/// Stacks read from the stack ring whose call records have not been read yet, per thread in
/// the order of its calls (a thread's stacks are written in that order).
#[derive(Default)]
pub(super) struct StackJoin {
    waiting: HashMap<u32, VecDeque<(u64, UserStack)>>,
    count: usize,
}

impl StackJoin {
    /// The stack of the call `key`, read from `source` as far as needed. Stacks are read only
    /// when a record asks for one, so a stack is held in memory only while its record is
    /// behind another CPU's. Stacks of the same thread from before it are dropped: their
    /// calls' records were lost (a thread's records are written in the order of its calls).
    /// `None` when it does not come.
    pub(super) fn take(
        &mut self,
        key: StackKey,
        source: &mut impl StackSource,
    ) -> Result<Option<UserStack>, DecodeError> {
        let mut started = None;
        loop {
            match self.take_waiting(key) {
                Taken::Found(stack) => return Ok(Some(stack)),
                Taken::Gone => return Ok(None),
                Taken::NotYet => {}
            }
            match source.next_stack() {
                Some(stack) => {
                    let (read, stack) = stack?;
                    if read == key {
                        self.drop_before(key);
                        return Ok(Some(stack));
                    }
                    self.insert(read, stack);
                }
                None => {
                    let started = *started.get_or_insert_with(Instant::now);
                    if started.elapsed() > COMMIT_WAIT {
                        return Ok(None);
                    }
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Whether `key`'s stack is waiting; its thread's earlier stacks are dropped.
    fn take_waiting(&mut self, key: StackKey) -> Taken {
        self.drop_before(key);
        let Some(queue) = self.waiting.get_mut(&key.tid) else {
            return Taken::NotYet;
        };
        match queue.front() {
            Some((at, _)) if *at == key.timestamp_ns => {
                let (_, stack) = queue.pop_front().expect("a front");
                self.count -= 1;
                if queue.is_empty() {
                    self.waiting.remove(&key.tid);
                }
                Taken::Found(stack)
            }
            // A later stack of the thread was read first: this one was never written.
            Some(_) => Taken::Gone,
            None => Taken::NotYet,
        }
    }

    /// Drops the stacks of `key`'s thread from before it.
    fn drop_before(&mut self, key: StackKey) {
        let Some(queue) = self.waiting.get_mut(&key.tid) else {
            return;
        };
        while queue.front().is_some_and(|(at, _)| *at < key.timestamp_ns) {
            queue.pop_front();
            self.count -= 1;
        }
        if queue.is_empty() {
            self.waiting.remove(&key.tid);
        }
    }

    fn insert(&mut self, key: StackKey, stack: UserStack) {
        self.waiting
            .entry(key.tid)
            .or_default()
            .push_back((key.timestamp_ns, stack));
        self.count += 1;
        if self.count > MAX_WAITING {
            self.drop_oldest_half();
        }
    }

    /// Stacks waiting for their calls' records.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.count
    }

    fn drop_oldest_half(&mut self) {
        let mut times: Vec<u64> = self
            .waiting
            .values()
            .flat_map(|queue| queue.iter().map(|(at, _)| *at))
            .collect();
        let middle = times.len() / 2;
        let (_, &mut cut, _) = times.select_nth_unstable(middle);
        for queue in self.waiting.values_mut() {
            queue.retain(|(at, _)| *at >= cut);
        }
        self.waiting.retain(|_, queue| !queue.is_empty());
        self.count = self.waiting.values().map(VecDeque::len).sum();
    }
}

/// What the stacks already read say about a call's stack.
enum Taken {
    Found(UserStack),
    /// A later stack of its thread was read: it was never written.
    Gone,
    NotYet,
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
    fn a_calls_stack_is_read_as_far_as_needed_and_earlier_ones_kept_for_their_records() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        ring.records
            .extend([(0, key(1, 10)), (0, key(2, 11)), (0, key(1, 12))]);
        // Thread 2's record came first (another CPU): thread 1's stack waits for its own.
        assert_eq!(join.take(key(2, 11), &mut ring).unwrap().unwrap().rip, 11);
        assert_eq!(join.waiting(), 1);
        // Thread 1's stack at 10 had no record (lost): dropped when the later one is taken,
        // which is read from the ring only now.
        assert_eq!(join.take(key(1, 12), &mut ring).unwrap().unwrap().rip, 12);
        assert_eq!(join.waiting(), 0);
        assert!(ring.records.is_empty());
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
        // A later stack of the same thread says at once that this one will not come.
        ring.records.push_back((0, key(2, 9)));
        let started = Instant::now();
        assert!(join.take(key(2, 7), &mut ring).unwrap().is_none());
        assert!(started.elapsed() < COMMIT_WAIT);
        assert!(join.take(key(2, 9), &mut ring).unwrap().is_some());
    }

    #[test]
    fn stacks_whose_records_were_lost_do_not_pile_up() {
        let mut join = StackJoin::default();
        let mut ring = Queue::default();
        for i in 0..=MAX_WAITING as u64 {
            ring.records.push_back((0, key(1000 + i as u32, i)));
        }
        let newest = key(1000 + MAX_WAITING as u32 + 1, MAX_WAITING as u64 + 1);
        ring.records.push_back((0, newest));
        assert!(join.take(newest, &mut ring).unwrap().is_some());
        assert!(join.waiting() <= MAX_WAITING / 2 + 1);
        // The newest of those stay.
        let kept = key(1000 + MAX_WAITING as u32, MAX_WAITING as u64);
        assert!(join.take(kept, &mut ring).unwrap().is_some());
    }
}
