//! `--verify`: the table against the kernel's own `/proc/PID/maps`, line by line. A feature
//! for users who want proof, and pmap-trace's own alarm.

use std::collections::HashSet;

use crate::{model::Mapping, render::maps_line};

/// Where the table and the kernel disagree, as `/proc/PID/maps` lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Divergence {
    pub only_in_table: Vec<Vec<u8>>,
    pub only_in_kernel: Vec<Vec<u8>>,
}

impl Divergence {
    pub fn is_empty(&self) -> bool {
        self.only_in_table.is_empty() && self.only_in_kernel.is_empty()
    }
}

/// Compares two sorted lists of mappings line by line.
pub fn compare(table: &[Mapping], kernel: &[Mapping]) -> Divergence {
    let lines = |mappings: &[Mapping]| -> Vec<Vec<u8>> {
        mappings
            .iter()
            .map(|m| {
                let mut line = maps_line(m);
                line.pop();
                line
            })
            .collect()
    };
    let (ours, theirs) = (lines(table), lines(kernel));
    // Sets, not scans: tables of 100 000 mappings are compared.
    let (our_set, their_set): (HashSet<&[u8]>, HashSet<&[u8]>) = (
        ours.iter().map(Vec::as_slice).collect(),
        theirs.iter().map(Vec::as_slice).collect(),
    );
    Divergence {
        only_in_table: ours
            .iter()
            .filter(|l| !their_set.contains(l.as_slice()))
            .cloned()
            .collect(),
        only_in_kernel: theirs
            .iter()
            .filter(|l| !our_set.contains(l.as_slice()))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, Perms};

    fn anon(start: u64, end: u64, write: bool) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms {
                read: true,
                write,
                exec: false,
                shared: false,
            },
            offset: 0,
            device: Device::default(),
            inode: 0,
            name: Vec::new(),
        }
    }

    #[test]
    fn equal_lists_do_not_diverge() {
        let maps = [anon(0x1000, 0x3000, true), anon(0x5000, 0x6000, false)];
        assert!(compare(&maps, &maps).is_empty());
    }

    #[test]
    fn reports_the_lines_each_side_has_alone() {
        let table = [anon(0x1000, 0x3000, true)];
        let kernel = [anon(0x1000, 0x2000, true), anon(0x2000, 0x3000, false)];
        let divergence = compare(&table, &kernel);
        assert_eq!(
            divergence.only_in_table,
            vec![b"00001000-00003000 rw-p 00000000 00:00 0 ".to_vec()]
        );
        assert_eq!(divergence.only_in_kernel.len(), 2);
    }
}
