//! Everything pmap reads about a process, read at once for a one-shot dump.

use super::{
    SeedError,
    maps::read_mappings,
    open,
    process::{read_process_header, read_start_stack},
    smaps::read_smaps_file,
};
use crate::model::{Mapping, SmapsEntry};

/// Everything pmap reads about a process, for a one-shot dump.
pub struct Snapshot {
    /// The thread-group id, which pmap prints even when given a thread's id.
    pub pid: i32,
    pub header: Vec<u8>,
    pub start_stack: u64,
    /// The mappings and, if asked for, their smaps lines; or why they could not be read, after
    /// pmap has printed the `PID:` line.
    pub maps: Result<(Vec<Mapping>, Vec<SmapsEntry>), SeedError>,
}

/// Reads `pid` as pmap does: a thread's id names its process. With `smaps`, the mappings and
/// their smaps lines come from one read of `/proc/PID/smaps`, as pmap reads only that file.
pub fn read_snapshot(pid: i32, smaps: bool) -> Result<Snapshot, SeedError> {
    let status = open(pid)?
        .status()
        .map_err(|e| SeedError::from_proc(pid, "status", e))?;
    let pid = status.tgid;
    let maps = if smaps {
        read_smaps_file(pid).map(|entries| entries.into_iter().unzip())
    } else {
        read_mappings(pid).map(|mappings| (mappings, Vec::new()))
    };
    Ok(Snapshot {
        pid,
        header: read_process_header(pid)?,
        start_stack: read_start_stack(pid)?,
        maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::SmapsLayout, procfs::smaps::discover_smaps_layout};

    #[test]
    fn own_smaps_match_own_maps() {
        let pid = std::process::id() as i32;
        let (mappings, smaps) = read_snapshot(pid, true).unwrap().maps.unwrap();
        assert_eq!(mappings.len(), smaps.len());
        for (m, e) in mappings.iter().zip(&smaps) {
            assert_eq!((m.start, m.end), (e.start, e.end));
            assert_eq!(e.value("Size"), Some((m.end - m.start) >> 10));
        }
        assert_eq!(
            discover_smaps_layout(),
            SmapsLayout::from_details(&smaps[0].details)
        );
    }
}
