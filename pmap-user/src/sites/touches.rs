//! `--faults`: which code first touched pages since the previous dump, and whose memory they
//! were. A sampled first touch carries the stack of the code that touched the page (copied by
//! the kernel at the fault), unwound and folded like a growth call's; the page's owner is the
//! site whose call mapped it. The two differ when an allocator hands out again memory it mapped
//! long before (jemalloc's purged pages, a reused arena): the owner is then the old call, or
//! "(mapped before tracing started)", and the code that used the memory is the toucher.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Origin, ShownStack, symbolize::SymbolFrame};

/// Owners listed under each toucher in text; JSON has them all.
const TEXT_OWNERS: usize = 3;
/// Frames shown per toucher in text.
const TEXT_FRAMES: usize = 8;

/// A stack as a report shows it, with its origin when it has no frames.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shown {
    pub frames: ShownStack,
    pub origin: Option<Origin>,
}

/// Code that first touched pages since the previous dump: how many bytes, and in whose memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TouchLine {
    pub touched: u64,
    pub toucher: Shown,
    /// The owners of the pages it touched, most touched first.
    pub owners: Vec<(u64, Shown)>,
}

/// The touchers of `touches` (bytes by toucher and owner), most touching first, at most
/// `top`; ties in the order of their frames' text.
pub fn rank_touchers(touches: HashMap<(Shown, Shown), u64>, top: usize) -> Vec<TouchLine> {
    let mut by_toucher: HashMap<Shown, Vec<(u64, Shown)>> = HashMap::new();
    for ((toucher, owner), bytes) in touches {
        by_toucher.entry(toucher).or_default().push((bytes, owner));
    }
    let mut lines: Vec<TouchLine> = by_toucher
        .into_iter()
        .map(|(toucher, mut owners)| {
            owners.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.frames.cmp(&b.1.frames)));
            TouchLine {
                touched: owners.iter().map(|(bytes, _)| bytes).sum(),
                toucher,
                owners,
            }
        })
        .collect();
    lines.sort_by(|a, b| {
        b.touched
            .cmp(&a.touched)
            .then_with(|| a.toucher.frames.cmp(&b.toucher.frames))
    });
    lines.truncate(top);
    lines
}

/// The text lines of a toucher ranking after its heading, `units` writing sizes.
pub fn text_lines(lines: &[TouchLine], units: fn(u64) -> String, out: &mut Vec<String>) {
    for line in lines {
        let head = format!("  {:>8}  ", units(line.touched));
        let indent = " ".repeat(head.len());
        for (i, frame) in line.toucher.frames.iter().take(TEXT_FRAMES).enumerate() {
            let text = frame.display();
            out.push(if i == 0 {
                format!("{head}{text}")
            } else {
                format!("{indent}< {text}")
            });
        }
        for (bytes, owner) in line.owners.iter().take(TEXT_OWNERS) {
            let site = owner
                .frames
                .first()
                .map_or_else(|| "?".to_string(), |frame| frame.display());
            out.push(format!("{indent}in memory of {} {site}", units(*bytes)));
        }
        if line.owners.len() > TEXT_OWNERS {
            out.push(format!(
                "{indent}in memory of {} more sites",
                line.owners.len() - TEXT_OWNERS
            ));
        }
    }
}

/// A toucher ranking as JSON: each entry the bytes it touched, its stack, and its owners.
pub fn json_lines(lines: &[TouchLine]) -> Vec<Value> {
    let shown = |shown: &Shown| -> Value {
        json!({
            "origin": shown.origin.map(Origin::describe),
            "frames": match shown.origin {
                Some(_) => Vec::new(),
                None => shown.frames.iter().map(|f| &**f).collect::<Vec<&SymbolFrame>>(),
            },
        })
    };
    lines
        .iter()
        .map(|line| {
            let mut entry = shown(&line.toucher);
            entry["touched_bytes"] = json!(line.touched);
            entry["owners"] = line
                .owners
                .iter()
                .map(|(bytes, owner)| {
                    let mut owner = shown(owner);
                    owner["touched_bytes"] = json!(bytes);
                    owner
                })
                .collect();
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A shown stack of one frame named `function`.
    fn named(function: &str, origin: Option<Origin>) -> Shown {
        Shown {
            frames: Arc::new([Arc::new(SymbolFrame {
                function: function.into(),
                file: None,
                line: None,
                module: None,
                inlined: false,
            })]),
            origin,
        }
    }

    fn units(bytes: u64) -> String {
        format!("{}K", bytes >> 10)
    }

    #[test]
    fn touchers_rank_by_what_they_touched_with_their_owners_beside() {
        let before = named(
            Origin::BeforeTracing.describe(),
            Some(Origin::BeforeTracing),
        );
        let (fill, parse, reserve) = (
            named("app::fill", None),
            named("app::parse", None),
            named("app::reserve", None),
        );
        let touches = HashMap::from([
            ((fill.clone(), before.clone()), 96 << 10),
            ((fill.clone(), reserve.clone()), 32 << 10),
            ((parse.clone(), reserve.clone()), 64 << 10),
            ((reserve.clone(), reserve.clone()), 4 << 10),
        ]);
        let lines = rank_touchers(touches, 2);
        assert_eq!(
            lines,
            [
                TouchLine {
                    touched: 128 << 10,
                    toucher: fill,
                    owners: vec![(96 << 10, before), (32 << 10, reserve.clone())],
                },
                TouchLine {
                    touched: 64 << 10,
                    toucher: parse,
                    owners: vec![(64 << 10, reserve)],
                },
            ]
        );
        let mut text = Vec::new();
        text_lines(&lines, units, &mut text);
        assert_eq!(
            text,
            [
                "      128K  app::fill",
                "            in memory of 96K (mapped before tracing started)",
                "            in memory of 32K app::reserve",
                "       64K  app::parse",
                "            in memory of 64K app::reserve",
            ]
        );
        let json = json_lines(&lines);
        assert_eq!(json[0]["touched_bytes"], 128 << 10);
        assert_eq!(json[0]["frames"][0]["function"], "app::fill");
        assert_eq!(
            json[0]["owners"][0]["origin"],
            "(mapped before tracing started)"
        );
        assert_eq!(json[0]["owners"][0]["frames"], json!([]));
        assert_eq!(json[0]["owners"][1]["touched_bytes"], 32 << 10);
    }
}
