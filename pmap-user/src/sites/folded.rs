//! `--folded FILE` and `--flamegraph FILE.svg`: the call stacks holding anonymous memory, as
//! the collapsed-stack text flame graph tools read (`outer;...;inner BYTES`, one line per
//! stack) and as a flame graph rendered from it with inferno. Each stack weighs its live bytes,
//! or what `--folded-weight` asks (resident, committed or reserved bytes).
//!
//! Each file is rewritten whole at every dump and when a process ends, through a temporary file
//! renamed over it, so a reader (a viewer reloading the SVG, a script) never sees half a file.
//! Every process traced so far counts: a live one as at its latest dump, one that has ended
//! with what it held when it ended, as its final dump shows.

use std::{
    borrow::Borrow,
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use inferno::flamegraph::{self, Options, color::BasicPalette, color::Palette};
use thiserror::Error;

use super::{ShownStack, SiteLine, residency::Rank, symbolize::SymbolFrame};

#[derive(Debug, Error)]
#[error("cannot write {flag} file {path}: {source}")]
pub struct StackFileError {
    pub flag: &'static str,
    pub path: String,
    pub source: io::Error,
}

/// The `--folded` and `--flamegraph` outputs and what each process last contributed.
#[derive(Debug)]
pub struct StackFiles {
    folded: Option<PathBuf>,
    flamegraph: Option<PathBuf>,
    /// What a stack weighs.
    weight: Rank,
    /// Bytes by stack, per process. The stacks are shared with the sites report and
    /// collapsed only to write the files: thousands of distinct stacks would otherwise be held
    /// twice, once as text.
    by_pid: BTreeMap<u32, Vec<(ShownStack, u64)>>,
}

impl StackFiles {
    /// `None` when neither file was asked for.
    pub fn new(
        folded: Option<PathBuf>,
        flamegraph: Option<PathBuf>,
        weight: Rank,
    ) -> Option<StackFiles> {
        (folded.is_some() || flamegraph.is_some()).then(|| StackFiles {
            folded,
            flamegraph,
            weight,
            by_pid: BTreeMap::new(),
        })
    }

    /// Replaces what process `pid` holds with `sites` (every site of its latest report). A
    /// report whose pages could not be read (the process has ended) leaves a weight other than
    /// live bytes as the last report that read them gave it.
    pub fn update(&mut self, pid: u32, sites: &[SiteLine]) {
        let stacks: Option<Vec<(ShownStack, u64)>> = sites
            .iter()
            .filter(|site| site.live > 0)
            .map(|site| {
                let bytes = self.weight.weight(site.live, site.footprint.as_ref())?;
                Some((site.frames.clone(), bytes))
            })
            .filter(|stack| stack.as_ref().is_none_or(|(_, bytes)| *bytes > 0))
            .collect();
        if let Some(stacks) = stacks {
            self.by_pid.insert(pid, stacks);
        }
    }

    /// The collapsed lines over every process, stacks in text order.
    pub fn lines(&self) -> Vec<String> {
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        for stacks in self.by_pid.values() {
            for (stack, bytes) in stacks {
                *total.entry(collapsed_stack(stack)).or_insert(0) += bytes;
            }
        }
        total
            .into_iter()
            .map(|(stack, bytes)| format!("{stack} {bytes}"))
            .collect()
    }

    /// Rewrites both files from the current state.
    pub fn write(&self) -> Result<(), StackFileError> {
        let lines = self.lines();
        if let Some(path) = &self.folded {
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            write_atomically(path, text.as_bytes()).map_err(|source| StackFileError {
                flag: "--folded",
                path: path.display().to_string(),
                source,
            })?;
        }
        if let Some(path) = &self.flamegraph
            // inferno refuses an empty graph; the previous one stays until there is memory.
            && !lines.is_empty()
        {
            let svg = render_flamegraph(&lines, self.weight);
            svg.and_then(|svg| write_atomically(path, &svg))
                .map_err(|source| StackFileError {
                    flag: "--flamegraph",
                    path: path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// A site's frames (innermost first) as one collapsed stack, outermost first. Frame names
/// cannot hold the separators of the format: `;` becomes `:` and line breaks spaces.
pub fn collapsed_stack(frames: &[impl Borrow<SymbolFrame>]) -> String {
    frames
        .iter()
        .rev()
        .map(|frame| {
            frame
                .borrow()
                .function
                .replace(';', ":")
                .replace(['\n', '\r'], " ")
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn render_flamegraph(lines: &[String], weight: Rank) -> io::Result<Vec<u8>> {
    let weight = weight.name();
    let mut options = Options::default();
    options.title = format!("pmap-trace: {weight} anonymous memory by call site");
    options.count_name = "bytes".into();
    options.colors = Palette::Basic(BasicPalette::Mem);
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)?;
    Ok(svg)
}

/// Writes `bytes` to a temporary file next to `path` and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    let written = fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_data()
    });
    match written.and_then(|()| fs::rename(&temporary, path)) {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = fs::remove_file(&temporary);
            Err(err)
        }
    }
}

/// `DIR/.NAME.pmap-trace-PID.tmp`: in the same directory, so the rename cannot cross file
/// systems; hidden, and named after this process so two runs do not share it.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.pmap-trace-{}.tmp", std::process::id()))
}

/// Checks that `path` can be written the way [`write_atomically`] writes it, leaving nothing
/// behind, so a bad path fails before tracing starts.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    let temporary = temporary_path(path);
    fs::File::create(&temporary)?;
    fs::remove_file(&temporary)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn frame(function: &str) -> SymbolFrame {
        SymbolFrame {
            function: function.into(),
            file: None,
            line: None,
            module: Some("app".into()),
            inlined: false,
        }
    }

    fn site(functions: &[&str], live: u64) -> SiteLine {
        SiteLine {
            live,
            growth: 0,
            origin: None,
            frames: functions.iter().map(|f| Arc::new(frame(f))).collect(),
            touched: None,
            footprint: None,
        }
    }

    #[test]
    fn stacks_read_outermost_first_and_sum_over_processes() {
        let mut files = StackFiles::new(Some("/unused".into()), None, Rank::Live).unwrap();
        files.update(
            10,
            &[
                site(&["app::load", "main"], 4096),
                site(&["odd;name", "main"], 8192),
                site(&["app::gone", "main"], 0),
            ],
        );
        files.update(11, &[site(&["app::load", "main"], 100)]);
        assert_eq!(files.lines(), ["main;app::load 4196", "main;odd:name 8192"]);
        // A process's new report replaces its old one.
        files.update(10, &[site(&["app::load", "main"], 1)]);
        assert_eq!(files.lines(), ["main;app::load 101"]);
    }

    #[test]
    fn another_weight_counts_from_the_footprint_and_outlasts_a_report_without_one() {
        use crate::sites::residency::Footprint;

        let mut files = StackFiles::new(Some("/unused".into()), None, Rank::Resident).unwrap();
        let paged = |functions: &[&str], live: u64, resident: u64| SiteLine {
            footprint: Some(Footprint {
                resident,
                reserved: live - resident,
                ..Footprint::default()
            }),
            ..site(functions, live)
        };
        files.update(
            10,
            &[
                paged(&["app::reserve", "main"], 1 << 30, 0),
                paged(&["app::load", "main"], 8192, 4096),
            ],
        );
        // A stack holding nothing resident is left out, as one holding no live bytes is.
        assert_eq!(files.lines(), ["main;app::load 4096"]);
        // The process ended: its last report read no pages, and the previous weights stay.
        files.update(10, &[site(&["app::load", "main"], 8192)]);
        assert_eq!(files.lines(), ["main;app::load 4096"]);
    }

    #[test]
    fn files_are_replaced_whole_and_the_flame_graph_is_an_svg() {
        let dir = std::env::temp_dir().join(format!("pmap-trace-folded-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (folded, svg) = (dir.join("out.folded"), dir.join("out.svg"));
        let mut files =
            StackFiles::new(Some(folded.clone()), Some(svg.clone()), Rank::Live).unwrap();
        files.update(1, &[site(&["app::load", "main"], 4096)]);
        files.write().unwrap();
        assert_eq!(
            fs::read_to_string(&folded).unwrap(),
            "main;app::load 4096\n"
        );
        let rendered = fs::read_to_string(&svg).unwrap();
        assert!(rendered.contains("<svg") && rendered.contains("app::load"));
        files.update(1, &[site(&["app::grow", "main"], 1)]);
        files.write().unwrap();
        assert_eq!(fs::read_to_string(&folded).unwrap(), "main;app::grow 1\n");
        // Only the two files: no temporary left behind.
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["out.folded", "out.svg"]);
        assert!(check_writable(&folded).is_ok());
        assert!(check_writable(&dir).is_err());
        assert!(check_writable(&dir.join("missing/out.svg")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
