//! The stack tops of threads, as unwinding their copies found them, in the kernel's
//! `THREAD_TOPS` map: a thread's later copies stop there (see `pmap_common::THREAD_TOPS_MAP`).

use std::sync::Mutex;

use aya::maps::{HashMap, MapData};

use crate::decode::StackTops;

/// The kernel's map of thread tops, shared by every stack the capture hands out.
pub(super) struct ThreadTops(Mutex<HashMap<MapData, u32, u64>>);

impl ThreadTops {
    pub(super) fn new(map: HashMap<MapData, u32, u64>) -> ThreadTops {
        ThreadTops(Mutex::new(map))
    }
}

impl StackTops for ThreadTops {
    fn set(&self, tid: u32, top: Option<u64>) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        // A failed update leaves copies at the full size, which is always right.
        let _ = match top {
            Some(top) => map.insert(tid, top, 0),
            None => map.remove(&tid),
        };
    }
}
