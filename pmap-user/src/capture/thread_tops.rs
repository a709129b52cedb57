//! The stack tops of threads, as unwinding their copies found them, in the kernel's
//! `THREAD_TOPS` map: a thread's later copies stop there (see `pmap_common::THREAD_TOPS_MAP`).

use std::{
    collections::HashMap as StdHashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData};

use crate::decode::StackTops;

/// The kernel's map of thread tops, shared by every stack the capture hands out, and what was
/// last written for each thread, and when: the stacks copied before a top was written all
/// report it again, and each write is a system call.
pub(super) struct ThreadTops(Mutex<Tops>);

struct Tops {
    map: HashMap<MapData, u32, u64>,
    written: StdHashMap<u32, (u64, Instant)>,
}

/// How long the same top is not written again for a thread: longer than the stacks already in
/// the ring when it was written take to drain; short enough that a thread id used again (the
/// kernel removes an exiting thread's entry) soon gets its own.
const REWRITE_AFTER: Duration = Duration::from_secs(1);

impl ThreadTops {
    pub(super) fn new(map: HashMap<MapData, u32, u64>) -> ThreadTops {
        ThreadTops(Mutex::new(Tops {
            map,
            written: StdHashMap::new(),
        }))
    }
}

impl StackTops for ThreadTops {
    fn set(&self, tid: u32, top: Option<u64>) {
        let Ok(mut tops) = self.0.lock() else {
            return;
        };
        let recent = tops
            .written
            .get(&tid)
            .is_some_and(|&(written, at)| Some(written) == top && at.elapsed() < REWRITE_AFTER);
        if recent {
            return;
        }
        // A failed update leaves copies at the full size, which is always right.
        let _ = match top {
            Some(top) => tops.map.insert(tid, top, 0),
            None => tops.map.remove(&tid),
        };
        match top {
            Some(top) => tops.written.insert(tid, (top, Instant::now())),
            None => tops.written.remove(&tid),
        };
    }
}
