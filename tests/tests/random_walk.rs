//! Differential test of the live table against the kernel: `pmap-random-walk` makes thousands of
//! seeded random address-space calls (mmap of every kind and placement, partial munmap,
//! mprotect, mremap, brk, madvise, mlock*, mseal, anon names, System V shmat/shmdt, and calls
//! that fail part-way),
//! traced through the real eBPF programs, and the table built from the events must equal the
//! kernel's address space.
//!
//! Three ways of applying the events, because the table asks the kernel (PROCMAP_QUERY) what the
//! events cannot tell — a file's identity at the call, the rest when a dump settles it — and
//! *when* it asks decides what the answer can hide:
//! - `each call`: the walk stops after every call and its one event is applied then, so every
//!   answer describes the moment right after that call. The table must equal `/proc/PID/maps`
//!   (offsets, devices and inodes included) after every call, which names the first call that
//!   diverges; at checkpoints the dump must equal `pmap PID` line for line.
//! - `at checkpoints`: the walk stops only at checkpoints and everything since the last one is
//!   applied while it is stopped, as a dump of a stopped process is made. Every answer then
//!   describes the checkpoint, later than the call it is for.
//! - `live`: the walk paces itself and events are applied as they arrive while it runs, as
//!   pmap-trace does; answers come at whatever moment the tracer gets to them.
//!
//! A fourth test stops at checkpoints as `at checkpoints` does and compares the dump in every
//! pmap format — default, `-x`, `-X`, `-XX`, `-d`, `-q`, `-p` (pmap-trace's `--show-path`) and
//! `-A` ranges cutting through mappings — byte for byte with `pmap` given the same flags. The
//! smaps values (`-x`, `-X`, `-XX`) are read at the checkpoint as a dump reads them; `Pss`
//! divides each page among the processes mapping it, so the walk and `pmap` run on private
//! copies of their libraries ([`Isolated`]) and share no page with each other or with the
//! machine's other processes — but for the vdso, whose pages every process maps: a format whose
//! dump differs is compared again (up to 5 times), and a difference fails the walk when it is
//! there with the dump the same before and after pmap's run.
//!
//! Every walk prints how often the table asked the kernel, per call kind, so a model that leans
//! on the kernel shows up even while it passes.
//!
//! CI runs a fixed set of seeds; `PMAP_TRACE_WALK_SEEDS` (a seed, a range `A..B`, or a list
//! `A,B,C`) and `PMAP_TRACE_WALK_CALLS` run others, or more. A failure prints the seed, the
//! calls leading to it and the difference.

mod common;

use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_integration_tests::{Isolated, assert_same_text, output_of, real_pmap, require_root};
use pmap_trace::{
    capture::Capture,
    decode::{Call, Event, EventKind},
    model::{Mapping, SmapsLayout},
    procfs::{maps, procmap_query::VmaQuery, smaps},
    render::{
        maps_line,
        pmap::{PmapFormat, PmapOptions, PmapRun, parse_range, write_default},
    },
    session::traced::{KnownFiles, TracedProcess},
    table::{HiddenFlags, MergeRule, MergeTally, VmaOracle},
};

const WALK: &str = env!("CARGO_BIN_EXE_pmap-random-walk");
const PMAP: &str = "/usr/bin/pmap";
/// Calls between checkpoints.
const EVERY: u64 = 50;
/// Calls shown before a divergence.
const HISTORY: usize = 60;

/// When the test applies the walk's events (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    EachCall,
    AtCheckpoints,
    Live,
}

/// Seeds and calls per walk: the CI defaults unless the environment asks for more.
fn plan(default_seeds: std::ops::Range<u64>, default_calls: u64) -> (Vec<u64>, u64) {
    let seeds = match std::env::var("PMAP_TRACE_WALK_SEEDS") {
        Ok(spec) => parse_seeds(&spec).unwrap_or_else(|| {
            panic!("PMAP_TRACE_WALK_SEEDS={spec:?}: want a seed, A..B or A,B,C")
        }),
        Err(_) => default_seeds.collect(),
    };
    assert!(!seeds.is_empty(), "no seeds to walk");
    let calls = match std::env::var("PMAP_TRACE_WALK_CALLS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PMAP_TRACE_WALK_CALLS={n:?} is not a number")),
        Err(_) => default_calls,
    };
    (seeds, calls)
}

fn parse_seeds(spec: &str) -> Option<Vec<u64>> {
    if let Some((a, b)) = spec.split_once("..") {
        return Some((a.trim().parse().ok()?..b.trim().parse().ok()?).collect());
    }
    spec.split(',').map(|s| s.trim().parse().ok()).collect()
}

/// The oracle the table uses, counting the questions it asks per kind of call. Like
/// `TracedProcess::apply_with_file` (the session's path), it answers for the address a
/// file-backed mmap just returned with the kernel's record of the call's file when the live
/// mapping there is gone or is another file by now.
struct CountingOracle {
    query: VmaQuery,
    current: &'static str,
    mapped: Option<Mapping>,
    asked: BTreeMap<&'static str, u64>,
}

impl VmaOracle for CountingOracle {
    fn vma_at(&mut self, addr: u64) -> Option<Mapping> {
        *self.asked.entry(self.current).or_default() += 1;
        let live = self.query.vma_at(addr);
        match &self.mapped {
            Some(hint) if hint.start == addr => match live {
                Some(now) if now.inode == hint.inode && now.device == hint.device => Some(now),
                _ => Some(hint.clone()),
            },
            _ => live,
        }
    }

    fn shm_size(&mut self, shmid: i32) -> Option<u64> {
        *self.asked.entry(self.current).or_default() += 1;
        self.query.shm_size(shmid)
    }
}

/// How a wait for the walk ended.
enum Waited {
    Stopped,
    Exited(i32),
}

/// A running `pmap-random-walk`, killed if the test ends early so no stopped walk is left behind.
struct Walker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    reaped: bool,
}

impl Walker {
    /// Runs the walk on `libraries`' copies of its libraries when given.
    fn start(seed: u64, calls: u64, stop: &str, libraries: Option<&Isolated>) -> Walker {
        let mut command = match libraries {
            Some(libraries) => libraries.command(std::path::Path::new(WALK)),
            None => Command::new(WALK),
        };
        command
            .args([seed.to_string(), calls.to_string(), EVERY.to_string()])
            .arg(stop)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A process group of its own, whose only outside link is this test: when the
            // group the test runs in is orphaned (a shell that started it in the background
            // exits), the kernel sends its stopped members SIGHUP and SIGCONT
            // (kill_orphaned_pgrp()), which killed the walk (status 129) or, SIGHUP ignored
            // under nohup, continued it before its stop was seen (two calls at one stop).
            .process_group(0);
        // SAFETY: personality(2) is async-signal-safe. Without address randomization a seed
        // replays the same walk at the same addresses, so a reported failure reproduces.
        unsafe {
            command.pre_exec(|| {
                libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
                Ok(())
            })
        };
        let mut child = command.spawn().expect("start pmap-random-walk");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), "ready", "pmap-random-walk did not start");
        Walker {
            child,
            stdin,
            stdout,
            reaped: false,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the walk to stop itself or exit; with `block` false, returns `None` if it is
    /// still running.
    fn wait(&mut self, block: bool) -> Option<Waited> {
        let mut status = 0;
        let flags = libc::WUNTRACED | if block { 0 } else { libc::WNOHANG };
        // SAFETY: waiting for our own child.
        let pid = unsafe { libc::waitpid(self.pid(), &mut status, flags) };
        assert!(pid >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if pid == 0 {
            return None;
        }
        if libc::WIFSTOPPED(status) {
            return Some(Waited::Stopped);
        }
        self.reaped = true;
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        Some(Waited::Exited(code))
    }

    fn resume(&self) {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }
}

impl Drop for Walker {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
    }
}

/// What one walk did, for the summary line.
struct Summary {
    calls: u64,
    checkpoints: u64,
    asked: BTreeMap<&'static str, u64>,
    /// How often each merge rule of the table fired, from the table's own tally.
    merges: MergeTally,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.asked.values().sum();
        write!(
            f,
            "{} calls, {} checkpoints, kernel asked {total} times",
            self.calls, self.checkpoints
        )?;
        if total > 0 {
            let per: Vec<String> = self.asked.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write!(f, " ({})", per.join(", "))?;
        }
        write!(f, "\n  merge rules: {}", TallyLine(&self.merges))
    }
}

/// A merge tally as one line: `rule count, ...`.
struct TallyLine<'a>(&'a MergeTally);

impl std::fmt::Display for TallyLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per: Vec<String> = self
            .0
            .iter()
            .map(|(rule, n)| format!("{} {n}", rule.name()))
            .collect();
        write!(f, "{}", per.join(", "))
    }
}

/// One walk under test: the walker, the table fed from its events, and what went into it.
struct Run<'a> {
    seed: u64,
    mode: Mode,
    walker: Walker,
    process: TracedProcess,
    /// Paths of files seen mapped, to name a mapping from the kernel's record of its file.
    files: KnownFiles,
    oracle: CountingOracle,
    /// The last calls applied, with their index in the walk, for failure reports.
    history: VecDeque<(u64, String)>,
    /// Successful mmaps of a file or of shared memory: the calls whose identity the table may
    /// ask the kernel for, once each.
    identity_questions: u64,
    /// shmat calls: each may ask for the segment's size and the attach's identity.
    shmats: u64,
    calls: u64,
    checkpoints: u64,
    /// Set when checkpoints compare every format.
    every_format: Option<&'a EveryFormat>,
}

impl<'a> Run<'a> {
    fn start(
        capture: &mut Capture,
        seed: u64,
        calls: u64,
        mode: Mode,
        every_format: Option<&'a EveryFormat>,
    ) -> Run<'a> {
        let stop = match mode {
            Mode::EachCall => "each",
            Mode::AtCheckpoints => "checkpoint",
            Mode::Live => "paced",
        };
        let mut walker = Walker::start(seed, calls, stop, every_format.map(|e| &e.walk_libraries));
        let pid = walker.pid();
        capture.add_target(pid as u32, false).unwrap();
        let process = TracedProcess::seed(pid).unwrap();
        let mut files = KnownFiles::default();
        files.learn(process.table.mappings());
        let oracle = CountingOracle {
            query: VmaQuery::open(pid).unwrap(),
            current: "",
            mapped: None,
            asked: BTreeMap::new(),
        };
        walker.go();
        Run {
            seed,
            mode,
            walker,
            process,
            files,
            oracle,
            history: VecDeque::with_capacity(HISTORY),
            identity_questions: 0,
            shmats: 0,
            calls: 0,
            checkpoints: 0,
            every_format,
        }
    }

    /// Applies the walk's calls among `events`; returns how many there were.
    fn apply(&mut self, events: &[Event]) -> u64 {
        let pid = self.walker.pid() as u32;
        let mut applied = 0;
        for event in events.iter().filter(|e| e.tgid == pid) {
            let EventKind::Call { call, ret } = &event.kind else {
                // Only an exit can come: the wait reports how the walk ended.
                assert!(
                    matches!(event.kind, EventKind::Exit { .. }),
                    "seed {}",
                    self.seed
                );
                continue;
            };
            self.calls += 1;
            applied += 1;
            if let Call::Mmap { flags, fd, .. } = call
                && !(-4095..0).contains(ret)
                && (*fd >= 0 || flags & libc::MAP_SHARED as u64 != 0)
            {
                self.identity_questions += 1;
            }
            if let Call::Shmat { .. } = call {
                self.shmats += 1;
            }
            self.oracle.current = call.name();
            self.oracle.mapped = event
                .file
                .as_ref()
                .and_then(|f| self.files.mapping_for(call, *ret, f));
            let asked_before = self.oracle.asked.get("mremap").copied().unwrap_or(0);
            self.process.table.apply(call, *ret, &mut self.oracle);
            if self.oracle.asked.get("mremap").copied().unwrap_or(0) > asked_before {
                // Only a fixed move refused part-way may ask: with EPERM, whether memory the
                // table keeps apart pending the kernel's word was one VMA, refused as a whole;
                // with EFAULT, whether a VMA the kernel might have refused to move in a batch
                // (its userfaultfd state unknown to the table) moved.
                let refused_move = matches!(call, Call::Mremap { flags, .. }
                    if flags & libc::MREMAP_FIXED as u64 != 0)
                    && [libc::EPERM, libc::EFAULT].contains(&(-*ret as i32));
                assert!(
                    refused_move,
                    "{}applying this mremap asked the kernel",
                    self.failure("a question")
                );
            }
            if let Call::Mmap { fd, .. } = call
                && *fd >= 0
                && let Some(now) = self
                    .process
                    .table
                    .mappings()
                    .find(|m| m.start == *ret as u64 && !m.name.is_empty())
            {
                self.files.learn([now]);
            }
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history
                .push_back((self.calls, format!("{}", CallLine(call, *ret))));
        }
        applied
    }

    fn failure(&self, what: &str) -> String {
        let calls: Vec<String> = self
            .history
            .iter()
            .map(|(i, line)| format!("  #{i} {line}"))
            .collect();
        format!(
            "seed {} ({:?}): {what} after call #{}\nrerun: PMAP_TRACE_WALK_SEEDS={} cargo test -p \
             pmap-integration-tests --test random_walk -- --test-threads=1\nlast calls:\n{}\n",
            self.seed,
            self.mode,
            self.calls,
            self.seed,
            calls.join("\n")
        )
    }

    /// What a dump does first (`TracedProcess::refresh_growing`): settle what the table left
    /// to the kernel, through the counting oracle.
    fn settle(&mut self) {
        self.oracle.current = "dump";
        self.oracle.mapped = None;
        self.process
            .table
            .refresh_growing_mappings(&mut self.oracle);
    }

    /// The table must hold exactly the kernel's VMAs, every field of `/proc/PID/maps` included.
    fn check_maps(&mut self) {
        self.settle();
        let kernel = maps::read_mappings(self.walker.pid()).unwrap();
        let ours = self.process.mappings();
        if kernel == ours {
            self.check_hidden_flags(&ours);
            return;
        }
        let text = |ms: &[Mapping]| -> Vec<String> {
            ms.iter()
                .map(|m| {
                    String::from_utf8_lossy(&maps_line(m))
                        .trim_end()
                        .to_string()
                })
                .collect()
        };
        let (k, o) = (text(&kernel), text(&ours));
        let flags = vm_flags(self.walker.pid());
        let mut diff = String::new();
        for (m, line) in kernel.iter().zip(&k).filter(|(_, l)| !o.contains(l)) {
            let flags = flags.get(&m.start).map_or("?", String::as_str);
            diff.push_str(&format!("- {line}\n      VmFlags: {flags}\n"));
        }
        for (m, line) in ours.iter().zip(&o).filter(|(_, l)| !k.contains(l)) {
            let state = self
                .process
                .table
                .hidden_state_at(m.start)
                .unwrap_or_default();
            diff.push_str(&format!("+ {line}\n      {state}\n"));
        }
        panic!(
            "{}table differs from /proc/PID/maps (- kernel only, + table only):\n{diff}",
            self.failure("the table diverged")
        );
    }

    /// Every hidden flag the table claims to know must be the kernel's (`VmFlags` in smaps):
    /// a wrong one shows in the maps only calls later, when it decides a split or a merge.
    fn check_hidden_flags(&self, ours: &[Mapping]) {
        let flags = vm_flags(self.walker.pid());
        for m in ours {
            let Some(kernel) = flags.get(&m.start) else {
                continue;
            };
            for &(bit, mnemonic) in VM_FLAG_MNEMONICS {
                let Some(table) = self.process.table.hidden_flag_at(m.start, bit) else {
                    continue;
                };
                let has = kernel.split_whitespace().any(|f| f == mnemonic);
                if table != has {
                    let state = self
                        .process
                        .table
                        .hidden_state_at(m.start)
                        .unwrap_or_default();
                    panic!(
                        "{}the table has {mnemonic} {} at {:#x}, the kernel's VmFlags: {kernel}\n      {state}",
                        self.failure("a hidden flag diverged"),
                        if table { "set" } else { "clear" },
                        m.start
                    );
                }
            }
        }
    }

    /// The dump must equal what `pmap PID` prints now (in every format, for walks that ask).
    fn check_pmap(&mut self) {
        self.checkpoints += 1;
        self.settle();
        if let Some(every) = self.every_format {
            return self.check_every_format(every);
        }
        let mappings = self.process.mappings();
        let view = self.process.view(&mappings, maps::discover_shm_minor());
        let mut ours = Vec::new();
        write_default(&mut ours, &view, &PmapOptions::default()).unwrap();
        let expected = real_pmap(&[], self.walker.pid());
        let ours = String::from_utf8(ours).unwrap();
        if expected != ours {
            eprint!("{}", self.failure("the dump differs from pmap"));
        }
        assert_same_text("dump vs pmap", &expected, &ours);
    }

    /// Each format's dump, rendered as a dump renders it (smaps read now), must equal what
    /// `pmap` prints with the same flags.
    fn check_every_format(&self, every: &EveryFormat) {
        let pid = self.walker.pid();
        let mappings = self.process.mappings();
        let view = self.process.view(&mappings, maps::discover_shm_minor());
        // Ends inside mappings: from the middle of the mapping a third of the way up to the middle
        // of the one two thirds up; and one address alone, the middle of the middle mapping.
        let middle = |m: &Mapping| format!("{:x}", m.start + (m.end - m.start) / 2);
        let n = mappings.len();
        let through = format!(
            "{},{}",
            middle(&mappings[n / 3]),
            middle(&mappings[2 * n / 3])
        );
        let one = middle(&mappings[n / 2]);
        let mut formats: Vec<Vec<&str>> = FORMATS.iter().map(|f| f.to_vec()).collect();
        for flags in [&[][..], &["-d"], &["-q"]] {
            formats.push([flags, &["-A", &through]].concat());
        }
        formats.push(vec!["-A", &one]);
        for flags in formats {
            let opts = pmap_options(&flags);
            let dump = || {
                let smaps = if opts.format.needs_smaps() {
                    smaps::SmapsReader::open(pid)
                        .unwrap()
                        .map(|(_, entry)| entry)
                        .collect()
                } else {
                    Vec::new()
                };
                let text = PmapRun::new(opts, &every.layout)
                    .process(&view, &smaps)
                    .text;
                String::from_utf8_lossy(&text).into_owned()
            };
            let pmap = || {
                let mut pmap = every.pmap_libraries.command(std::path::Path::new(PMAP));
                pmap.args(&flags).arg(pid.to_string());
                String::from_utf8_lossy(&output_of(pmap)).into_owned()
            };
            // The vdso's pages are every process's: its Pss moves as the machine's other
            // processes come and go, and no copy of it can be made. A difference counts when
            // it stays while nothing else moved: the same dump before and after pmap's run.
            let mut matched = false;
            let mut stable_difference = None;
            for _ in 0..5 {
                let before = dump();
                let expected = pmap();
                if before == expected {
                    matched = true;
                    break;
                }
                if dump() == before {
                    stable_difference = Some((expected, before));
                }
            }
            if matched {
                continue;
            }
            let what = format!("dump vs pmap {}", flags.join(" "));
            eprint!("{}", self.failure(&format!("the {what} differs")));
            let (expected, ours) =
                stable_difference.unwrap_or_else(|| panic!("{what}: the walk never held still"));
            assert_same_text(&what, &expected, &ours);
        }
    }

    /// What the table asked while applying calls: only a new mapping's identity (and, where
    /// the kernel has anon names, what a naming did; for shmat, the segment's size). Everything else the events decide, or
    /// the dump settles; an answer about the past would hide a model that is wrong.
    fn check_questions(&self) {
        for (&call, &asked) in &self.oracle.asked {
            match call {
                // mremap is checked call by call as it is applied.
                "dump" | "prctl" | "mremap" => {}
                "mmap" => assert!(
                    asked <= self.identity_questions,
                    "seed {}: mmap asked the kernel {asked} times for {} new files",
                    self.seed,
                    self.identity_questions
                ),
                "shmat" => assert!(
                    asked <= 2 * self.shmats,
                    "seed {}: shmat asked the kernel {asked} times for {} calls",
                    self.seed,
                    self.shmats
                ),
                other => panic!(
                    "seed {}: applying {other} asked the kernel {asked} times",
                    self.seed
                ),
            }
        }
    }

    fn summary(&self) -> Summary {
        Summary {
            calls: self.calls,
            checkpoints: self.checkpoints,
            asked: self.oracle.asked.clone(),
            merges: self.process.table.merge_tally().clone(),
        }
    }
}

/// The `VmFlags` line of every VMA in `/proc/PID/smaps`, by start address: the hidden state
/// behind a divergence.
/// The table's hidden flags and their `VmFlags` mnemonics (`show_smap_vma_flags()`).
const VM_FLAG_MNEMONICS: &[(u32, &str)] = &[
    (HiddenFlags::LOCKED, "lo"),
    (HiddenFlags::HUGEPAGE, "hg"),
    (HiddenFlags::NOHUGEPAGE, "nh"),
    (HiddenFlags::DONTFORK, "dc"),
    (HiddenFlags::WIPEONFORK, "wf"),
    (HiddenFlags::MERGEABLE, "mg"),
    (HiddenFlags::DONTDUMP, "dd"),
    (HiddenFlags::NORESERVE, "nr"),
    (HiddenFlags::GROWSDOWN, "gd"),
    (HiddenFlags::SEALED, "sl"),
    (HiddenFlags::ACCOUNT, "ac"),
    (HiddenFlags::SEQ_READ, "sr"),
    (HiddenFlags::RAND_READ, "rr"),
    (HiddenFlags::MAYWRITE, "mw"),
    (HiddenFlags::UFFD_MISSING, "um"),
    (HiddenFlags::UFFD_WP, "uw"),
    (HiddenFlags::UFFD_MINOR, "ui"),
];

fn vm_flags(pid: i32) -> BTreeMap<u64, String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut flags = BTreeMap::new();
    let mut start = None;
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(start) = start.take() {
                flags.insert(start, rest.trim().to_string());
            }
        } else if let Some((range, _)) = line.split_once(' ')
            && let Some((from, _)) = range.split_once('-')
            && let Ok(addr) = u64::from_str_radix(from, 16)
        {
            start = Some(addr);
        }
    }
    flags
}

/// A call as a line of the failure report: `mmap(0x7ffff7ff0000, 0x3000, ...) = ret`.
struct CallLine<'a>(&'a Call, i64);

impl std::fmt::Display for CallLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let CallLine(call, ret) = *self;
        let args: Vec<String> = call.raw_args().iter().map(|a| format!("{a:#x}")).collect();
        let ret = if (-4095..0).contains(&ret) {
            format!("-{}", std::io::Error::from_raw_os_error(-ret as i32))
        } else {
            format!("{ret:#x}")
        };
        write!(f, "{}({}) = {ret}", call.name(), args.join(", "))
    }
}

/// Runs one walk in `mode` to its end, checking at every stop.
async fn walk(
    capture: &mut Capture,
    seed: u64,
    calls: u64,
    mode: Mode,
    every_format: Option<&EveryFormat>,
) -> Summary {
    let mut run = Run::start(capture, seed, calls, mode, every_format);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "seed {seed}: the walk hung");
        let waited = if mode == Mode::Live {
            // Apply what arrives while the walk runs, as pmap-trace does.
            match run.walker.wait(false) {
                Some(waited) => waited,
                None => {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(2), capture.readable()).await;
                    events.clear();
                    capture.drain(&mut events).unwrap();
                    run.apply(&events);
                    continue;
                }
            }
        } else {
            run.walker.wait(true).expect("blocking wait")
        };
        events.clear();
        capture.drain(&mut events).unwrap();
        let applied = run.apply(&events);
        match waited {
            Waited::Exited(code) => panic!(
                "{}pmap-random-walk ended early with status {code}",
                run.failure("the walk died")
            ),
            Waited::Stopped => {
                if mode == Mode::EachCall {
                    assert_eq!(
                        applied,
                        1,
                        "{}one call per stop expected",
                        run.failure("event count")
                    );
                }
                run.check_maps();
                if mode != Mode::EachCall || run.calls.is_multiple_of(EVERY) || run.calls == calls {
                    run.check_pmap();
                }
                run.walker.resume();
                if run.calls == calls {
                    break;
                }
            }
        }
    }
    // What it does after its last stop (cleaning up, exiting) is no part of the walk.
    assert!(
        matches!(run.walker.wait(true), Some(Waited::Exited(0))),
        "seed {seed}: pmap-random-walk did not exit cleanly"
    );
    events.clear();
    capture.drain(&mut events).unwrap();
    assert_eq!(capture.dropped_total(), 0, "ring overflowed");
    capture.remove_target(run.walker.pid() as u32);
    assert_eq!(run.calls, calls, "seed {seed}: calls traced");
    run.check_questions();
    run.summary()
}

/// pmap's flags for the formats `every format` walks compare at each checkpoint; `-A` ranges
/// through the mappings of the moment are added then.
const FORMATS: &[&[&str]] = &[
    &[],
    &["-x"],
    &["-X"],
    &["-XX"],
    &["-d"],
    &["-q"],
    &["-x", "-q"],
    &["-XX", "-q"],
    &["-p"],
    &["-x", "-p"],
];

/// The options pmap takes from `flags` (those of [`FORMATS`] and `-A`).
fn pmap_options(flags: &[&str]) -> PmapOptions {
    let mut opts = PmapOptions::default();
    let mut flags = flags.iter();
    while let Some(&flag) = flags.next() {
        match flag {
            "-x" => opts.format = PmapFormat::Extended,
            "-X" => opts.format = PmapFormat::Smaps,
            "-XX" => opts.format = PmapFormat::AllSmaps,
            "-d" => opts.format = PmapFormat::Device,
            "-q" => opts.quiet = true,
            "-p" => opts.show_path = true,
            "-A" => opts.range = parse_range(flags.next().expect("-A takes a range")).unwrap(),
            other => panic!("no pmap flag {other} here"),
        }
    }
    opts
}

/// What comparing every format needs: private copies of the libraries for the walk and for
/// pmap (see the module documentation), and the kernel's smaps layout.
struct EveryFormat {
    walk_libraries: Isolated,
    pmap_libraries: Isolated,
    layout: SmapsLayout,
}

/// What a walk test checks besides each walk against the kernel.
#[derive(Clone, Copy, Default)]
struct Checks {
    /// Every dump format at each checkpoint.
    every_format: bool,
    /// Over the CI seeds (no `PMAP_TRACE_WALK_*` variable set), every merge rule of the table
    /// fired at least once: a rule no walk reaches is a rule no walk tests.
    every_merge_rule: bool,
}

fn walk_seeds(mode: Mode, default_seeds: std::ops::Range<u64>, default_calls: u64, checks: Checks) {
    if !require_root() {
        return;
    }
    let (seeds, calls) = plan(default_seeds, default_calls);
    let every_format = checks.every_format.then(|| EveryFormat {
        walk_libraries: Isolated::new(&[std::path::Path::new(WALK)]),
        pmap_libraries: Isolated::new(&[std::path::Path::new(PMAP)]),
        layout: smaps::discover_smaps_layout(),
    });
    let totals = common::runtime().block_on(async {
        let mut capture = common::load();
        let mut totals = MergeTally::default();
        for &seed in &seeds {
            let summary = walk(&mut capture, seed, calls, mode, every_format.as_ref()).await;
            println!("seed {seed} ({mode:?}): {summary}");
            totals.add(&summary.merges);
        }
        totals
    });
    println!(
        "{} seeds ({mode:?}), merge rules: {}",
        seeds.len(),
        TallyLine(&totals)
    );
    let ci_set = ["PMAP_TRACE_WALK_SEEDS", "PMAP_TRACE_WALK_CALLS"]
        .iter()
        .all(|name| std::env::var_os(name).is_none());
    if checks.every_merge_rule && ci_set {
        let never: Vec<&str> = MergeRule::ALL
            .iter()
            .filter(|&&rule| totals.count(rule) == 0)
            .map(|rule| rule.name())
            .collect();
        assert!(
            never.is_empty(),
            "merge rules of the table that no walk of the CI set reached: {never:?}"
        );
    }
}

#[test]
fn every_call_of_random_walks_leaves_the_table_equal_to_the_kernel() {
    let checks = Checks {
        every_merge_rule: true,
        ..Checks::default()
    };
    walk_seeds(Mode::EachCall, 0..20, 2000, checks);
}

#[test]
fn random_walks_dumped_at_checkpoints_equal_pmap() {
    let checks = Checks {
        every_merge_rule: true,
        ..Checks::default()
    };
    walk_seeds(Mode::AtCheckpoints, 100..140, 2000, checks);
}

#[test]
fn random_walks_applied_live_equal_pmap_at_checkpoints() {
    walk_seeds(Mode::Live, 200..220, 2000, Checks::default());
}

#[test]
fn random_walks_dumped_at_checkpoints_equal_pmap_in_every_format() {
    let checks = Checks {
        every_format: true,
        ..Checks::default()
    };
    walk_seeds(Mode::AtCheckpoints, 300..306, 2000, checks);
}
