//! `--verify`: the table against the kernel's own `/proc/PID/maps`, line by line. A feature
//! for users who want proof, and pmap-trace's own alarm.

use std::collections::HashSet;

use crate::model::Mapping;

/// Where the table and the kernel disagree: the mappings (each a `/proc/PID/maps` line) only
/// one of them has.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Divergence {
    pub only_in_table: Vec<Mapping>,
    pub only_in_kernel: Vec<Mapping>,
}

impl Divergence {
    pub fn is_empty(&self) -> bool {
        self.only_in_table.is_empty() && self.only_in_kernel.is_empty()
    }
}

/// Compares two sorted lists of mappings line by line: a mapping's every field is printed in
/// its line, so equal mappings are equal lines.
pub fn compare(table: &[Mapping], kernel: &[Mapping]) -> Divergence {
    // Sets, not scans: tables of 100 000 mappings are compared.
    let (ours, theirs): (HashSet<&Mapping>, HashSet<&Mapping>) =
        (table.iter().collect(), kernel.iter().collect());
    let only = |list: &[Mapping], other: &HashSet<&Mapping>| -> Vec<Mapping> {
        list.iter()
            .filter(|m| !other.contains(m))
            .cloned()
            .collect()
    };
    Divergence {
        only_in_table: only(table, &theirs),
        only_in_kernel: only(kernel, &ours),
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
        assert_eq!(divergence.only_in_table, table);
        assert_eq!(divergence.only_in_kernel, kernel);
    }
}
