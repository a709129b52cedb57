//! `--diff`: what changed in a process's address space between two dumps.
//!
//! The two tables are compared byte range by byte range: a range mapped only now was added, one
//! mapped only before was removed, one that maps the same thing with other permissions was
//! re-protected, and one that maps something else now was removed and added. A mapping that kept
//! its contents and gained or lost only address space at its ends (the heap after `brk`, the
//! stack, an `mremap` in place, an `munmap` of a tail) was resized.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::{
    events::escape_bytes,
    pmap::{AddressRange, PmapFormat, PmapOptions, PmapRun, ProcessView, Table},
};
use crate::model::{Mapping, SmapsLayout};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    Resized,
    Reprotected,
}

impl ChangeKind {
    fn word(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Resized => "resized",
            ChangeKind::Reprotected => "reprotected",
        }
    }
}

/// One change: `now` is the range as it is (as it was, for a removal), `before` what it was for
/// a resize or re-protection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub now: Mapping,
    pub before: Option<Mapping>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub changes: Vec<Change>,
    /// Bytes of anonymous memory (mappings of no file: heap, stack, `[anon:…]`, unnamed) gained,
    /// negative when lost.
    pub anon_growth: i128,
}

/// `mapping` cut down to `start..end`, keeping the file position of each byte.
fn slice(mapping: &Mapping, start: u64, end: u64) -> Mapping {
    let mut piece = mapping.clone();
    if piece.inode != 0 {
        piece.offset = mapping.offset.wrapping_add(start - mapping.start);
    }
    piece.start = start;
    piece.end = end;
    piece
}

/// Whether `a` and `b` map the same thing at `addr`: the same file at the same position, or the
/// same kind of anonymous memory.
fn same_contents(a: &Mapping, b: &Mapping, addr: u64) -> bool {
    a.device == b.device
        && a.inode == b.inode
        && a.name == b.name
        && a.perms.shared == b.perms.shared
        && (a.inode == 0
            || a.offset.wrapping_add(addr - a.start) == b.offset.wrapping_add(addr - b.start))
}

/// What happened to one stretch of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Same(usize, usize),
    Reprotected(usize, usize),
    Added(usize),
    Removed(usize),
    Replaced(usize, usize),
}

fn anon_bytes(mappings: &[Mapping]) -> i128 {
    mappings
        .iter()
        .filter(|m| m.inode == 0)
        .map(|m| i128::from(m.end - m.start))
        .sum()
}

/// The changes from `before` to `after` (both sorted by address, without overlaps), in address
/// order.
pub fn diff(before: &[Mapping], after: &[Mapping]) -> Diff {
    let mut bounds: Vec<u64> = before
        .iter()
        .chain(after)
        .flat_map(|m| [m.start, m.end])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let covering = |list: &[Mapping], addr: u64| {
        let i = list.partition_point(|m| m.end <= addr);
        (i < list.len() && list[i].start <= addr).then_some(i)
    };
    // Consecutive stretches that fall in the same pair of mappings are one piece.
    let mut pieces: Vec<(u64, u64, Piece)> = Vec::new();
    for pair in bounds.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let piece = match (covering(before, start), covering(after, start)) {
            (None, None) => continue,
            (Some(b), None) => Piece::Removed(b),
            (None, Some(a)) => Piece::Added(a),
            (Some(b), Some(a)) if !same_contents(&before[b], &after[a], start) => {
                Piece::Replaced(b, a)
            }
            (Some(b), Some(a)) if before[b].perms == after[a].perms => Piece::Same(b, a),
            (Some(b), Some(a)) => Piece::Reprotected(b, a),
        };
        match pieces.last_mut() {
            Some((_, last_end, last)) if *last_end == start && *last == piece => *last_end = end,
            _ => pieces.push((start, end, piece)),
        }
    }

    // Added space next to an unchanged mapping is that mapping growing, and removed space
    // next to what is left of one is it shrinking.
    let mut changes = Vec::new();
    let grown = grown_mappings(&pieces, before, after);
    let shrunk = shrunk_mappings(&pieces, before, after);
    for &(start, end, piece) in &pieces {
        match piece {
            Piece::Same(..) => {}
            Piece::Added(a) if grown.iter().any(|&(_, g)| g == a) => {}
            Piece::Removed(b) if shrunk.iter().any(|&(s, _)| s == b) => {}
            Piece::Added(a) => changes.push(Change {
                kind: ChangeKind::Added,
                now: slice(&after[a], start, end),
                before: None,
            }),
            Piece::Removed(b) => changes.push(Change {
                kind: ChangeKind::Removed,
                now: slice(&before[b], start, end),
                before: None,
            }),
            Piece::Replaced(b, a) => {
                changes.push(Change {
                    kind: ChangeKind::Removed,
                    now: slice(&before[b], start, end),
                    before: None,
                });
                changes.push(Change {
                    kind: ChangeKind::Added,
                    now: slice(&after[a], start, end),
                    before: None,
                });
            }
            Piece::Reprotected(b, a) => changes.push(Change {
                kind: ChangeKind::Reprotected,
                now: slice(&after[a], start, end),
                before: Some(slice(&before[b], start, end)),
            }),
        }
    }
    for (b, a) in grown.into_iter().chain(shrunk) {
        changes.push(Change {
            kind: ChangeKind::Resized,
            now: after[a].clone(),
            before: Some(before[b].clone()),
        });
    }
    changes.sort_by_key(|c| (c.now.start, c.kind == ChangeKind::Added));
    Diff {
        changes,
        anon_growth: anon_bytes(after) - anon_bytes(before),
    }
}

/// `(before, after)` pairs where the new mapping is the old one, unchanged, plus added space.
fn grown_mappings(
    pieces: &[(u64, u64, Piece)],
    before: &[Mapping],
    after: &[Mapping],
) -> Vec<(usize, usize)> {
    (0..after.len())
        .filter_map(|a| {
            let mut old = None;
            let mut added = false;
            for &(_, _, piece) in pieces {
                match piece {
                    Piece::Same(b, x) if x == a && old.replace(b).is_some_and(|o| o != b) => {
                        return None;
                    }
                    Piece::Added(x) if x == a => added = true,
                    Piece::Reprotected(_, x) | Piece::Replaced(_, x) if x == a => return None,
                    _ => {}
                }
            }
            let b = old.filter(|_| added)?;
            // The old mapping must not have lost anything.
            let whole = before[b].start >= after[a].start && before[b].end <= after[a].end;
            whole.then_some((b, a))
        })
        .collect()
}

/// `(before, after)` pairs where the new mapping is what is left of the old one.
fn shrunk_mappings(
    pieces: &[(u64, u64, Piece)],
    before: &[Mapping],
    after: &[Mapping],
) -> Vec<(usize, usize)> {
    (0..before.len())
        .filter_map(|b| {
            let mut new = None;
            let mut removed = false;
            for &(_, _, piece) in pieces {
                match piece {
                    Piece::Same(x, a) if x == b && new.replace(a).is_some_and(|n| n != a) => {
                        return None;
                    }
                    Piece::Removed(x) if x == b => removed = true,
                    Piece::Reprotected(x, _) | Piece::Replaced(x, _) if x == b => return None,
                    _ => {}
                }
            }
            let a = new.filter(|_| removed)?;
            let inside = after[a].start >= before[b].start && after[a].end <= before[b].end;
            inside.then_some((b, a))
        })
        .collect()
}

/// The changes `opts.range` shows (those that overlap it), each with the pmap columns
/// (address, Kbytes, mode, mapping) of its range as it is now, and of its old range.
struct Shown<'d> {
    change: &'d Change,
    now: (Vec<u8>, Vec<u8>),
    before: Option<(Vec<u8>, Vec<u8>)>,
}

fn shown<'d>(view: &ProcessView, diff: &'d Diff, opts: &PmapOptions) -> Vec<Shown<'d>> {
    let range = opts.range;
    let changes: Vec<&Change> = diff
        .changes
        .iter()
        .filter(|c| c.now.end.wrapping_sub(1) >= range.low && c.now.start <= range.high)
        .collect();
    // Named as pmap names them, with the process's stack start and the options' -p.
    let mut pseudo = Vec::new();
    for c in &changes {
        pseudo.push(c.now.clone());
        pseudo.extend(c.before.clone());
    }
    let names_opts = PmapOptions {
        format: PmapFormat::Default,
        quiet: true,
        show_path: opts.show_path,
        range: AddressRange::default(),
    };
    let layout = SmapsLayout::default();
    let pseudo_view = ProcessView {
        mappings: &pseudo,
        ..*view
    };
    let dump = PmapRun::new(names_opts, &layout).process(&pseudo_view, &[]);
    let Table::Maps { rows, .. } = dump.table else {
        unreachable!("the default format prints maps rows")
    };
    let column = |index: usize| {
        let row = rows.iter().find(|r| r.mapping == index);
        row.map_or_else(Default::default, |r| (r.mode.clone(), r.name.clone()))
    };
    let mut next = 0;
    changes
        .into_iter()
        .map(|change| {
            let now = column(next);
            next += 1;
            let before = change.before.as_ref().map(|_| {
                next += 1;
                column(next - 1)
            });
            Shown {
                change,
                now,
                before,
            }
        })
        .collect()
}

/// The diff block: the `PID:` line, one line per change (its kind, then the range as pmap's
/// default format prints it, then what it was), and unless `-q` the anonymous memory growth.
pub fn write_diff(
    out: &mut impl Write,
    view: &ProcessView,
    diff: &Diff,
    opts: &PmapOptions,
) -> io::Result<()> {
    let mut text = format!("{}:   ", view.pid as u32).into_bytes();
    text.extend_from_slice(view.header);
    text.push(b'\n');
    for s in shown(view, diff, opts) {
        let m = &s.change.now;
        write!(
            text,
            "{:<11} {:016x} {:>6}K ",
            s.change.kind.word(),
            m.start,
            (m.end - m.start) >> 10
        )?;
        text.extend_from_slice(&s.now.0);
        text.push(b' ');
        text.extend_from_slice(&s.now.1);
        match (s.change.kind, &s.change.before, &s.before) {
            (ChangeKind::Resized, Some(old), _) => write!(
                text,
                " (was {:016x} {}K)",
                old.start,
                (old.end - old.start) >> 10
            )?,
            (ChangeKind::Reprotected, _, Some((mode, _))) => {
                text.extend_from_slice(b" (was ");
                text.extend_from_slice(mode);
                text.push(b')');
            }
            _ => {}
        }
        text.push(b'\n');
    }
    if !opts.quiet {
        writeln!(text, " anon {:+} bytes", diff.anon_growth)?;
    }
    out.write_all(&text)
}

/// The diff as one JSON object: `{"type":"diff","pid":…,"command":…,"changes":[…],
/// "anon_growth_bytes":…}`; each change has `change`, pmap's columns of its range (`address`,
/// `kbytes`, `mode`, `mapping`), its raw fields (`start`, `end`, `perms`, …) and for a resize
/// `old_start`/`old_end`, for a re-protection `old_mode`.
pub fn diff_json(view: &ProcessView, diff: &Diff, opts: &PmapOptions) -> Value {
    let changes: Vec<Value> = shown(view, diff, opts)
        .iter()
        .map(|s| {
            let m = &s.change.now;
            let mut object = Map::new();
            object.insert("change".into(), s.change.kind.word().into());
            object.insert("address".into(), format!("{:016x}", m.start).into());
            object.insert("kbytes".into(), ((m.end - m.start) >> 10).into());
            object.insert("mode".into(), String::from_utf8_lossy(&s.now.0).into());
            object.insert(
                "mapping".into(),
                escape_bytes(s.now.1.trim_ascii_start()).into(),
            );
            super::json::raw_fields(m, &mut object);
            match (s.change.kind, &s.change.before, &s.before) {
                (ChangeKind::Resized, Some(old), _) => {
                    object.insert("old_start".into(), old.start.into());
                    object.insert("old_end".into(), old.end.into());
                }
                (ChangeKind::Reprotected, _, Some((mode, _))) => {
                    object.insert("old_mode".into(), String::from_utf8_lossy(mode).into());
                }
                _ => {}
            }
            Value::Object(object)
        })
        .collect();
    json!({
        "type": "diff",
        "pid": view.pid,
        "command": escape_bytes(view.header),
        "changes": changes,
        "anon_growth_bytes": diff.anon_growth as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, Perms};

    fn m(start: u64, end: u64, perms: &str, inode: u64, offset: u64, name: &str) -> Mapping {
        Mapping {
            start,
            end,
            perms: Perms::parse(perms.as_bytes()).expect("a maps permission word"),
            offset,
            device: if inode == 0 {
                Device::default()
            } else {
                Device {
                    major: 0xfe,
                    minor: 0,
                }
            },
            inode,
            name: name.as_bytes().to_vec(),
        }
    }

    const K: u64 = 0x1000;

    fn kinds(d: &Diff) -> Vec<(ChangeKind, u64, u64)> {
        d.changes
            .iter()
            .map(|c| (c.kind, c.now.start, c.now.end))
            .collect()
    }

    #[test]
    fn nothing_changed() {
        let maps = [
            m(K, 4 * K, "rw-p", 0, 0, ""),
            m(8 * K, 9 * K, "r--p", 7, 0, "/f"),
        ];
        let d = diff(&maps, &maps);
        assert!(d.changes.is_empty());
        assert_eq!(d.anon_growth, 0);
    }

    #[test]
    fn a_protection_change_in_the_middle_is_one_reprotection() {
        let before = [m(K, 17 * K, "rw-p", 0, 0, "")];
        let after = [
            m(K, 5 * K, "rw-p", 0, 0, ""),
            m(5 * K, 9 * K, "r--p", 0, 0, ""),
            m(9 * K, 17 * K, "rw-p", 0, 0, ""),
        ];
        let d = diff(&before, &after);
        assert_eq!(kinds(&d), [(ChangeKind::Reprotected, 5 * K, 9 * K)]);
        assert_eq!(d.changes[0].before.as_ref().unwrap().perms, before[0].perms);
        assert_eq!(d.anon_growth, 0);
    }

    #[test]
    fn growth_and_shrinking_are_resizes() {
        let heap = m(K, 3 * K, "rw-p", 0, 0, "[heap]");
        let grown = m(K, 7 * K, "rw-p", 0, 0, "[heap]");
        let d = diff(std::slice::from_ref(&heap), std::slice::from_ref(&grown));
        assert_eq!(kinds(&d), [(ChangeKind::Resized, K, 7 * K)]);
        assert_eq!(d.changes[0].before, Some(heap.clone()));
        assert_eq!(d.anon_growth, 4 * K as i128);
        // The stack grows down.
        let stack = m(8 * K, 10 * K, "rw-p", 0, 0, "[stack]");
        let deeper = m(6 * K, 10 * K, "rw-p", 0, 0, "[stack]");
        assert_eq!(
            kinds(&diff(&[stack], &[deeper])),
            [(ChangeKind::Resized, 6 * K, 10 * K)]
        );
        let d = diff(&[grown], &[heap]);
        assert_eq!(kinds(&d), [(ChangeKind::Resized, K, 3 * K)]);
        assert_eq!(d.anon_growth, -4 * K as i128);
    }

    #[test]
    fn moves_and_replacements_are_removals_and_additions() {
        let before = [
            m(K, 3 * K, "rw-p", 0, 0, ""),
            m(8 * K, 10 * K, "r--p", 7, 0, "/lib/a.so"),
        ];
        let after = [
            m(4 * K, 8 * K, "rw-p", 0, 0, ""),
            // Another file over the same range.
            m(8 * K, 10 * K, "r--p", 9, 0, "/lib/b.so"),
        ];
        let d = diff(&before, &after);
        assert_eq!(
            kinds(&d),
            [
                (ChangeKind::Removed, K, 3 * K),
                (ChangeKind::Added, 4 * K, 8 * K),
                (ChangeKind::Removed, 8 * K, 10 * K),
                (ChangeKind::Added, 8 * K, 10 * K),
            ]
        );
        assert_eq!(d.anon_growth, 2 * K as i128);
        // The same file at another offset is other contents too.
        let shifted = [m(8 * K, 10 * K, "r--p", 7, K, "/lib/a.so")];
        assert_eq!(diff(&before[1..], &shifted).changes.len(), 2);
    }

    #[test]
    fn a_split_mapping_that_lost_its_middle_is_not_a_resize() {
        let before = [m(K, 10 * K, "rw-p", 0, 0, "")];
        let after = [
            m(K, 3 * K, "rw-p", 0, 0, ""),
            m(5 * K, 10 * K, "rw-p", 0, 0, ""),
        ];
        assert_eq!(
            kinds(&diff(&before, &after)),
            [(ChangeKind::Removed, 3 * K, 5 * K)]
        );
    }

    fn view(mappings: &[Mapping]) -> ProcessView<'_> {
        ProcessView {
            pid: 42,
            header: b"prog",
            start_stack: 9 * K + 16,
            sysv_shm_minor: None,
            mappings,
        }
    }

    #[test]
    fn the_text_block_names_ranges_as_pmap_does() {
        let before = [
            m(K, 3 * K, "rw-p", 0, 0, "[heap]"),
            m(4 * K, 6 * K, "r--p", 7, 0, "/lib/a.so"),
            m(8 * K, 10 * K, "rw-p", 0, 0, "[stack]"),
        ];
        let after = [
            m(K, 3 * K + 0x400, "rw-p", 0, 0, "[heap]"),
            m(8 * K, 10 * K, "r--p", 0, 0, "[stack]"),
        ];
        let mut out = Vec::new();
        let d = diff(&before, &after);
        write_diff(&mut out, &view(&after), &d, &PmapOptions::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "42:   prog\n\
             resized     0000000000001000      9K rw---   [ anon ] (was 0000000000001000 8K)\n\
             removed     0000000000004000      8K r---- a.so\n\
             reprotected 0000000000008000      8K r----   [ stack ] (was rw---)\n \
             anon +1024 bytes\n"
        );
        let opts = PmapOptions {
            quiet: true,
            show_path: true,
            range: AddressRange {
                low: 4 * K,
                high: 5 * K,
            },
            ..PmapOptions::default()
        };
        let mut out = Vec::new();
        write_diff(&mut out, &view(&after), &d, &opts).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "42:   prog\nremoved     0000000000004000      8K r---- /lib/a.so\n"
        );
        let json = diff_json(&view(&after), &d, &PmapOptions::default());
        assert_eq!(json["anon_growth_bytes"], 1024);
        assert_eq!(json["changes"][0]["change"], "resized");
        assert_eq!(json["changes"][0]["old_end"], 3 * K);
        assert_eq!(json["changes"][1]["mapping"], "a.so");
        assert_eq!(json["changes"][2]["old_mode"], "rw---");
        assert_eq!(json["changes"][2]["kbytes"], 8);
    }
}
