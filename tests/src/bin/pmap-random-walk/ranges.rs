//! Page ranges, and the ranges the kernel placed for the walk outside its arena ([`Loose`]):
//! the walk aims calls at them too, and must forget what it unmaps or moves away so it never
//! aims at memory it no longer owns.

pub const PAGE: u64 = 4096;
/// Most loose ranges the walk keeps; it gives one back before a call could overflow them.
pub const LOOSE_CAPACITY: usize = 48;

/// A range of pages, `[start, start + len)`.
#[derive(Clone, Copy)]
pub struct Range {
    pub start: u64,
    pub len: u64,
}

impl Range {
    pub fn end(self) -> u64 {
        self.start + self.len
    }
}

/// Ranges the kernel placed for the walk outside the arena, kept sorted and disjoint in a
/// fixed-capacity vector (allocated before `go`, never grown after).
pub struct Loose(pub Vec<Range>);

impl Loose {
    pub fn add(&mut self, r: Range) {
        if r.len == 0 {
            return;
        }
        self.remove(r);
        let at = self.0.partition_point(|x| x.start < r.start);
        self.0.insert(at, r);
        assert!(self.0.len() < LOOSE_CAPACITY, "loose list full");
    }

    /// Forgets `r` (unmapped, or moved away), splitting ranges it cuts.
    pub fn remove(&mut self, r: Range) {
        let mut i = 0;
        while i < self.0.len() {
            let x = self.0[i];
            if x.end() <= r.start || x.start >= r.end() {
                i += 1;
                continue;
            }
            self.0.remove(i);
            if x.start < r.start {
                self.0.insert(
                    i,
                    Range {
                        start: x.start,
                        len: r.start - x.start,
                    },
                );
                i += 1;
            }
            if x.end() > r.end() {
                self.0.insert(
                    i,
                    Range {
                        start: r.end(),
                        len: x.end() - r.end(),
                    },
                );
                i += 1;
            }
        }
    }
}
