//! `/proc/PID/smaps`: the `Key: value` lines the kernel prints under each mapping, which `-x`,
//! `-X` and `-XX` print, read one mapping at a time; and the layout of those lines on this
//! kernel.

use std::{fs::File, io};

use super::{SeedError, maps::parse_maps_line, open};
use crate::model::{Mapping, SmapsEntry, SmapsLayout};

/// Every mapping of `/proc/PID/smaps` and the lines under it, in address order.
pub(super) fn read_smaps_file(pid: i32) -> Result<Vec<(Mapping, SmapsEntry)>, SeedError> {
    let mut reader = SmapsReader::open(pid)?;
    let entries = reader.by_ref().collect();
    match reader.error {
        Some(err) => Err(err),
        None => Ok(entries),
    }
}

/// `/proc/PID/smaps` read line by line, one mapping and the lines under it at a time: what
/// `-x`, `-X` and `-XX` print besides the mappings. With many mappings the file is large (72 MB
/// for 100 000), and a dump that prints each mapping as it comes holds only one. The iteration
/// ends at the end of the file or at the first error, which is kept.
pub struct SmapsReader<R = io::BufReader<File>> {
    pid: i32,
    input: R,
    /// The header line of the next mapping, read while looking for the end of the last one.
    next_header: Vec<u8>,
    pub error: Option<SeedError>,
}

impl SmapsReader {
    pub fn open(pid: i32) -> Result<SmapsReader, SeedError> {
        let file = open(pid)?
            .open_relative("smaps")
            .map_err(|e| SeedError::from_proc(pid, "smaps", e))?;
        Ok(SmapsReader::new(
            pid,
            io::BufReader::with_capacity(1 << 16, file),
        ))
    }
}

impl<R: io::BufRead> SmapsReader<R> {
    /// Reads the smaps text of `pid` (named in errors) from `input`.
    fn new(pid: i32, input: R) -> SmapsReader<R> {
        let mut reader = SmapsReader {
            pid,
            input,
            next_header: Vec::new(),
            error: None,
        };
        reader.read_line_into_header();
        if reader
            .next_header
            .first()
            .is_some_and(u8::is_ascii_uppercase)
        {
            reader.fail("a value line before any mapping".to_string());
        }
        reader
    }

    /// Reads the next line into `next_header` (empty at the end or on an error).
    fn read_line_into_header(&mut self) {
        self.next_header.clear();
        if let Err(err) = self.input.read_until(b'\n', &mut self.next_header) {
            self.next_header.clear();
            self.error = Some(SeedError::from_io(self.pid, "smaps", err));
        }
    }

    fn fail(&mut self, detail: String) {
        self.next_header.clear();
        self.error = Some(SeedError::Malformed {
            pid: self.pid,
            file: "smaps",
            detail,
        });
    }
}

impl<R: io::BufRead> Iterator for SmapsReader<R> {
    type Item = (Mapping, SmapsEntry);

    fn next(&mut self) -> Option<(Mapping, SmapsEntry)> {
        if self.next_header.is_empty() {
            return None;
        }
        let Some(mapping) = parse_maps_line(&self.next_header) else {
            let line = String::from_utf8_lossy(&self.next_header).into_owned();
            self.fail(format!("bad line {line:?}"));
            return None;
        };
        let mut details = Vec::new();
        loop {
            self.read_line_into_header();
            if !self.next_header.first().is_some_and(u8::is_ascii_uppercase) {
                break;
            }
            details.extend_from_slice(&self.next_header);
        }
        details.shrink_to_fit();
        let entry = SmapsEntry {
            start: mapping.start,
            end: mapping.end,
            details,
        };
        Some((mapping, entry))
    }
}

/// The keys this kernel prints in smaps, from this process's own smaps (the built-in Linux 6.x
/// layout when it cannot be read): what a mapping without smaps lines is given.
pub fn discover_smaps_layout() -> SmapsLayout {
    File::open("/proc/self/smaps")
        .ok()
        .and_then(|file| {
            let pid = std::process::id() as i32;
            SmapsReader::new(pid, io::BufReader::new(file)).next()
        })
        .map(|(_, first)| SmapsLayout::from_details(&first.details))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_lines_go_under_their_mapping() {
        let text: &[u8] = b"55b32b6bd000-55b32b6ec000 r--p 00000000 fe:00 247003                     /usr/bin/bash\n\
Size:                188 kB\n\
VmFlags: rd mr mw me \n\
7ff71f67a000-7ff71f73e000 rw-p 00000000 00:00 0 \n\
Rss:                   4 kB\n";
        let mut reader = SmapsReader::new(1, text);
        let entries: Vec<_> = reader.by_ref().collect();
        assert!(reader.error.is_none());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.name, b"/usr/bin/bash");
        assert_eq!(
            entries[0].1.details,
            b"Size:                188 kB\nVmFlags: rd mr mw me \n"
        );
        assert_eq!(entries[1].1.start, 0x7ff71f67a000);
        assert_eq!(entries[1].1.value("Rss"), Some(4));
        let mut orphan = SmapsReader::new(1, &b"Rss: 4 kB\n"[..]);
        assert!(orphan.next().is_none());
        assert!(orphan.error.is_some());
    }
}
