//! The session's loop without root: records and requests replayed through its seams
//! ([`replay`]), tables seeded from a child the test starts (its /proc needs no privilege),
//! and the output read back as the user would see it.

mod replay;

use std::{
    collections::BTreeMap,
    process::{Child, Command},
    time::Duration,
};

use clap::Parser as _;
use pmap_common::linux::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use serde_json::Value;

use self::replay::{Step, replay};
use super::{
    Session, SessionError,
    controls::Control,
    launch::{self, HeldChild, spawn_held},
    signals::Received,
};
use crate::{
    capture::Dropped,
    cli::Cli,
    config::{Config, Format, Targets},
    decode::{Call, Captured, ChildMemory, Event, EventKind, ExitMemory, Record},
    model::{Mapping, PAGE_SIZE, Perms},
    procfs::{maps, process},
    render::{
        events::Clock,
        maps_line,
        output::{Output, json::JsonOutput, text::TextOutput},
        pmap::{PmapOptions, ProcessView, write_default},
        sink::{Sink, memory::Written},
    },
};

/// Where the tests' calls map: far from anything `sleep` has.
const AT: u64 = 0x1000_0000_0000;

/// A PID no process can have (above the kernel's largest `pid_max`), for a forked child the
/// records alone describe.
const NO_SUCH_PID: u32 = 0x7fff_0000;

/// `sleep`, ended with the test.
struct Sleeper(Child);

impl Sleeper {
    /// Returns once it sleeps: its table is the one it keeps (the spawn returns as its exec
    /// begins, before the loader has mapped anything).
    fn start() -> Sleeper {
        let sleeper = Sleeper(Command::new("sleep").arg("1000").spawn().unwrap());
        let syscall = format!("/proc/{}/syscall", sleeper.pid());
        for _ in 0..1000 {
            let now = std::fs::read_to_string(&syscall).unwrap_or_default();
            if now.split_whitespace().next() == Some(&libc::SYS_clock_nanosleep.to_string()) {
                return sleeper;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("sleep did not go to sleep");
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills and reaps it: its PID is gone from /proc.
    fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.end();
    }
}

/// What a replayed session did.
struct Ran {
    code: Result<i32, SessionError>,
    out: String,
    err: String,
    /// The kernel filter it left.
    filter: BTreeMap<u32, bool>,
}

/// Runs `pmap-trace -p PID… ARGS` with `steps` replayed.
fn run(args: &[&str], steps: Vec<Step>) -> Ran {
    run_with(args, Sink::in_memory(), attach, steps)
}

fn attach(session: &mut Session, targets: Targets) -> Result<(), SessionError> {
    match targets {
        Targets::Pids(pids) => session.attach(&pids),
        Targets::Launch(_) => unreachable!("launched commands are started by the test"),
    }
}

/// Runs `pmap-trace ARGS -- CMD` with `steps` replayed, `child` (held before its exec) being
/// the command: the test knows its PID before the script is written.
fn run_launched(args: &[&str], child: HeldChild, steps: Vec<Step>) -> Ran {
    run_with(
        args,
        Sink::in_memory(),
        |session, _| session.launch(child),
        steps,
    )
}

/// Runs the session `args` configure, writing to `sink`, `start`ed, with `steps` replayed.
fn run_with(
    args: &[&str],
    (sink, written): (Sink, Written),
    start: impl FnOnce(&mut Session, Targets) -> Result<(), SessionError>,
    steps: Vec<Step>,
) -> Ran {
    let cli = Cli::try_parse_from(["pmap-trace"].iter().chain(args)).unwrap();
    let config = Config::from_args(&cli.trace, cli.launch).unwrap();
    let output: Box<dyn Output> = match config.format {
        Format::Text => Box::new(TextOutput::new(sink, Clock::now())),
        Format::Json => Box::new(JsonOutput::new(sink, Clock::now())),
    };
    let (source, controls, filter) = replay(steps);
    let targets = config.targets.clone();
    let mut session = Session::new(config, Box::new(source), Box::new(controls), output);
    start(&mut session, targets).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(session.run());
    let filter = filter.borrow().clone();
    Ran {
        code,
        out: written.out(),
        err: written.err(),
        filter,
    }
}

fn record(tgid: u32, kind: EventKind) -> Record {
    Record::Captured(Captured {
        event: Event {
            timestamp_ns: 0,
            tgid,
            tid: tgid,
            comm: b"sleep".to_vec(),
            kind,
            file: None,
        },
        stack: None,
        image: None,
    })
}

/// A private anonymous read-write `mmap` of `pages` that the kernel placed at `at`.
fn mmap(tgid: u32, at: u64, pages: u64) -> Record {
    let call = Call::Mmap {
        addr: 0,
        len: pages * PAGE_SIZE,
        prot: PROT_READ | PROT_WRITE,
        flags: MAP_PRIVATE | MAP_ANONYMOUS,
        fd: -1,
        offset: 0,
    };
    record(
        tgid,
        EventKind::Call {
            call,
            ret: at as i64,
        },
    )
}

fn munmap(tgid: u32, at: u64, pages: u64) -> Record {
    let call = Call::Munmap {
        addr: at,
        len: pages * PAGE_SIZE,
    };
    record(tgid, EventKind::Call { call, ret: 0 })
}

fn exit(tgid: u32) -> Record {
    let memory = ExitMemory::default();
    record(tgid, EventKind::Exit { memory })
}

fn records(records: Vec<Record>) -> Step {
    Step::Records(records, Dropped::default())
}

/// The kernel side lost `count` records.
fn lost(count: u64) -> Step {
    let lost = Dropped {
        records: count,
        ..Dropped::default()
    };
    Step::Records(Vec::new(), lost)
}

fn dump() -> Step {
    Step::Control(Control::Dump)
}

/// A stop signal sent by kill(2).
fn stop(signal: i32) -> Step {
    Step::Control(Control::Stop(Received {
        signal,
        code: libc::SI_USER,
        sender: 1,
    }))
}

/// The anonymous read-write mapping [`mmap`] makes.
fn anonymous(start: u64, end: u64) -> Mapping {
    Mapping {
        start,
        end,
        perms: Perms::parse(b"rw-p").unwrap(),
        offset: 0,
        device: Default::default(),
        inode: 0,
        name: Vec::new(),
    }
}

/// pmap's dump of `pid` as the kernel has it now, with `extra` mapped too.
fn expected_dump(pid: u32, extra: &[Mapping]) -> String {
    let pid = pid as i32;
    let mut mappings = maps::read_mappings(pid).unwrap();
    mappings.extend_from_slice(extra);
    mappings.sort_by_key(|m| m.start);
    let header = process::read_process_header(pid).unwrap();
    let view = ProcessView {
        pid,
        header: &header,
        start_stack: process::read_start_stack(pid).unwrap(),
        sysv_shm_minor: None,
        mappings: &mappings,
    };
    let mut text = Vec::new();
    write_default(&mut text, &view, &PmapOptions::default()).unwrap();
    String::from_utf8(text).unwrap()
}

/// Every dump of `pid` in a text output, each from its `PID:` line to its total.
fn dumps_of(out: &str, pid: u32) -> Vec<String> {
    let mut dumps = Vec::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if line.starts_with(&format!("{pid}:   ")) {
            current = Some(String::new());
        }
        if let Some(dump) = &mut current {
            dump.push_str(line);
            dump.push('\n');
            if line.starts_with(" total ") {
                dumps.extend(current.take());
            }
        }
    }
    dumps
}

/// The lines of a text output that are not dumps, each event line without its time of day.
fn other_lines(out: &str, pids: &[u32]) -> Vec<String> {
    let mut in_dump = false;
    let mut lines = Vec::new();
    for line in out.lines() {
        if pids
            .iter()
            .any(|pid| line.starts_with(&format!("{pid}:   ")))
        {
            in_dump = true;
        }
        if !in_dump {
            let time_of_day = |word: &str| {
                word.bytes()
                    .all(|b| b.is_ascii_digit() || b":.".contains(&b))
            };
            let event = line.split_once(' ').filter(|(time, _)| time_of_day(time));
            lines.push(event.map_or(line, |(_, rest)| rest).to_string());
        }
        if line.starts_with(" total ") {
            in_dump = false;
        }
    }
    lines
}

/// Waits (up to 10 s) until `pid` has forked a child.
fn wait_for_a_child_of(pid: i32) {
    let children = format!("/proc/{pid}/task/{pid}/children");
    for _ in 0..1000 {
        if !std::fs::read_to_string(&children)
            .unwrap()
            .trim()
            .is_empty()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{pid} started no child");
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_dump_request_dumps_the_tables_with_the_calls_applied_and_a_stop_dumps_them_last() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let ran = run(
        &["--no-sites", "-p", &p],
        vec![
            records(vec![mmap(pid, AT, 2)]),
            dump(),
            records(vec![munmap(pid, AT, 1)]),
            dump(),
            stop(libc::SIGTERM),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(ran.err, format!("pmap-trace: attached to {pid} (sleep)\n"));
    assert_eq!(
        other_lines(&ran.out, &[pid]),
        [
            format!(
                "{pid}/{pid} sleep mmap(NULL, 8192 (8K), PROT_READ|PROT_WRITE, \
                 MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x{AT:x}"
            ),
            format!("{pid}/{pid} sleep munmap(0x{AT:x}, 4096 (4K)) = 0"),
        ]
    );
    let mapped = expected_dump(pid, &[anonymous(AT, AT + 2 * PAGE_SIZE)]);
    let unmapped_one = expected_dump(pid, &[anonymous(AT + PAGE_SIZE, AT + 2 * PAGE_SIZE)]);
    assert_eq!(
        dumps_of(&ran.out, pid),
        [mapped, unmapped_one.clone(), unmapped_one]
    );
    // Attached processes stay in the filter: pmap-trace's exit removes it.
    assert_eq!(ran.filter, BTreeMap::from([(pid, false)]));
}

#[test]
fn call_sites_are_on_by_default_a_growth_names_its_site_and_each_dump_is_followed_by_a_summary() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    // Replayed records carry no stack copy: the growth is the ring's (a copy lost), and its
    // line says it does not know rather than naming anyone.
    let steps = || {
        vec![
            records(vec![mmap(pid, AT, 2)]),
            dump(),
            records(vec![munmap(pid, AT, 1)]),
            stop(libc::SIGTERM),
        ]
    };
    let ran = run(&["-p", &p], steps());
    assert_eq!(ran.code.unwrap(), 0);
    let lines = other_lines(&ran.out, &[pid]);
    assert_eq!(
        lines[0],
        format!(
            "{pid}/{pid} sleep mmap(NULL, 8192 (8K), PROT_READ|PROT_WRITE, \
             MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x{AT:x} <- ?"
        )
    );
    // After the dump, the summary: its heading, then one line a site, by resident bytes (read
    // from the sleeper's pagemap: nothing is mapped at AT there, so none).
    let summary_at = lines
        .iter()
        .position(|l| l.starts_with(&format!("sites {pid}: ")))
        .expect("a summary");
    assert!(
        lines[summary_at].ends_with(
            "call sites; holding or growing the most (live, growth since the previous dump, \
             resident):"
        ),
        "{}",
        lines[summary_at]
    );
    assert!(
        lines[summary_at + 1..summary_at + 3]
            .iter()
            .any(|l| l.ends_with("      8K       +8K        0  (stack copy lost: ring full)")),
        "{lines:#?}"
    );
    // A call that grows nothing has no site.
    assert!(lines.contains(&format!(
        "{pid}/{pid} sleep munmap(0x{AT:x}, 4096 (4K)) = 0"
    )));
    // The dumps are pmap's, as without call sites.
    let mapped = expected_dump(pid, &[anonymous(AT, AT + 2 * PAGE_SIZE)]);
    let unmapped_one = expected_dump(pid, &[anonymous(AT + PAGE_SIZE, AT + 2 * PAGE_SIZE)]);
    assert_eq!(dumps_of(&ran.out, pid), [mapped, unmapped_one]);

    // JSON: the event's stack (none here, and why), and the summary as a sites object.
    let ran = run(&["--json", "-p", &p], steps());
    let objects = json_lines(&ran.out);
    let grown = objects
        .iter()
        .find(|o| o["call"] == "mmap")
        .expect("the mmap");
    assert_eq!(grown["stack"], serde_json::json!([]));
    assert_eq!(grown["stack_unknown"], "(stack copy lost: ring full)");
    let sites = objects
        .iter()
        .find(|o| o["type"] == "sites")
        .expect("a sites object");
    assert_eq!(sites["summary"], true);
    let unmap = objects.iter().find(|o| o["call"] == "munmap").unwrap();
    assert_eq!(unmap.get("stack"), None);
}

#[test]
fn a_forked_child_is_traced_from_its_fork_and_gets_its_final_dump_at_its_exit() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    // The fork record counts the child's VMAs: the parent's, the gate page aside.
    let vmas = maps::read_mappings(pid as i32)
        .unwrap()
        .iter()
        .filter(|m| m.name != b"[vsyscall]")
        .count() as u32;
    let fork = EventKind::Fork {
        child: NO_SUCH_PID,
        memory: ChildMemory {
            vmas: Some(vmas),
            shared: false,
        },
    };
    let child = NO_SUCH_PID;
    let ran = run(
        &["--no-sites", "-f", "-p", &p],
        vec![
            records(vec![record(pid, fork), mmap(child, AT, 1)]),
            records(vec![exit(child)]),
            stop(libc::SIGINT),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(
        other_lines(&ran.out, &[pid, child]),
        [
            format!("{pid}/{pid} sleep +++ forked {child} +++"),
            format!(
                "{child}/{child} sleep mmap(NULL, 4096 (4K), PROT_READ|PROT_WRITE, \
                 MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x{AT:x}"
            ),
            format!("{child}/{child} sleep +++ exited +++"),
        ]
    );
    // The child's table is its parent's copy with its own call applied; its header is the
    // parent's, as a fork leaves it.
    let parent = expected_dump(pid, &[]);
    let child_dump = expected_dump(pid, &[anonymous(AT, AT + PAGE_SIZE)]).replacen(
        &format!("{pid}:"),
        &format!("{child}:"),
        1,
    );
    assert_eq!(dumps_of(&ran.out, child), [child_dump]);
    assert_eq!(dumps_of(&ran.out, pid), [parent]);
    // The child's dump comes at its exit, before the parent's final one.
    assert!(ran.out.find(&format!("{child}:")) < ran.out.find(&format!("\n{pid}:")));
    assert_eq!(ran.filter, BTreeMap::from([(pid, true)]));
}

#[test]
fn a_fork_whose_copy_is_uncertain_and_whose_child_is_gone_is_kept_with_a_notice() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    // No VMA count: a VMA the parent marked MADV_DONTFORK may be in the copy, and the child
    // cannot be read instead.
    let fork = EventKind::Fork {
        child: NO_SUCH_PID,
        memory: ChildMemory::default(),
    };
    let ran = run(
        &["--no-sites", "-f", "--no-events", "-p", &p],
        vec![
            records(vec![record(pid, fork)]),
            records(vec![exit(NO_SUCH_PID)]),
            stop(libc::SIGTERM),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(
        other_lines(&ran.out, &[pid, NO_SUCH_PID]),
        [format!(
            "pmap-trace: {NO_SUCH_PID} ended before it could be read: its table is its \
             parent's at the fork, which may show memory the parent marked MADV_DONTFORK \
             before it was traced"
        )]
    );
    assert_eq!(dumps_of(&ran.out, NO_SUCH_PID).len(), 1);
}

#[test]
fn lost_records_are_said_and_every_table_is_read_again() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let ran = run(
        &["--no-sites", "-p", &p],
        vec![
            records(vec![mmap(pid, AT, 2)]),
            lost(3),
            dump(),
            stop(libc::SIGTERM),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    // The table held a mapping the kernel has not (its munmap, say, was lost).
    let stale = maps_line(&anonymous(AT, AT + 2 * PAGE_SIZE));
    let stale = String::from_utf8_lossy(&stale[..stale.len() - 1]);
    let lines = other_lines(&ran.out, &[pid]);
    assert_eq!(
        lines[1..],
        [
            "pmap-trace: 3 records lost (ring full; raise --ring-size): mapping tables re-read \
             from /proc"
                .to_string(),
            format!("pmap-trace: re-read {pid}: 1 lines of its table were stale, 0 missing"),
            format!("pmap-trace:   stale:   {stale}"),
        ]
    );
    let now = expected_dump(pid, &[]);
    assert_eq!(dumps_of(&ran.out, pid), [now.clone(), now]);
}

#[test]
fn a_process_found_gone_after_lost_records_gets_its_last_dump_and_ends_the_trace() {
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let before = expected_dump(pid, &[]);
    let ran = run(
        &["--no-sites", "-p", &p],
        vec![Step::Act(Box::new(move || sleeper.end())), lost(1)],
    );
    // Nothing is left to trace.
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(
        other_lines(&ran.out, &[pid])[1..],
        [format!(
            "pmap-trace: {pid} ended while records were lost: its last dump may miss changes"
        )]
    );
    assert_eq!(dumps_of(&ran.out, pid), [before]);
    assert!(ran.filter.is_empty());
}

#[test]
fn a_process_whose_exit_record_was_lost_is_ended_once_found_gone() {
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let before = expected_dump(pid, &[]);
    let ran = run(
        &["--no-sites", "-p", &p],
        vec![
            lost(1),
            Step::Act(Box::new(move || sleeper.end())),
            records(vec![]),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(
        other_lines(&ran.out, &[pid])[1..],
        [
            format!("pmap-trace: re-read {pid}: 0 lines of its table were stale, 0 missing"),
            format!(
                "pmap-trace: {pid} ended and its exit record was lost: its last dump may miss \
                 changes"
            ),
        ]
    );
    assert_eq!(dumps_of(&ran.out, pid), [before]);
}

#[test]
fn verify_raises_the_alarm_on_a_table_that_differs_and_reads_it_again() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let ran = run(
        &["--no-sites", "--verify", "--no-events", "-p", &p],
        vec![
            records(vec![mmap(pid, AT, 1)]),
            dump(),
            dump(),
            stop(libc::SIGTERM),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    let only_in_table = maps_line(&anonymous(AT, AT + PAGE_SIZE));
    let only_in_table = String::from_utf8_lossy(&only_in_table[..only_in_table.len() - 1]);
    let count = maps::read_mappings(pid as i32).unwrap().len();
    let matches =
        format!("pmap-trace: verify {pid}: the table matches /proc/{pid}/maps ({count} mappings)");
    assert_eq!(
        other_lines(&ran.out, &[pid]),
        [
            format!(
                "pmap-trace: verify {pid}: the table DIFFERS from /proc/{pid}/maps (re-read \
                 from there now):"
            ),
            format!("pmap-trace:   table only:  {only_in_table}"),
            matches.clone(),
            matches,
        ]
    );
}

#[test]
fn a_stop_signal_is_passed_on_to_the_launched_command_whose_death_is_the_exit_status() {
    let child = spawn_held(&["sleep".into(), "1000".into()]).unwrap();
    let pid = child.pid() as u32;
    let ran = run_launched(
        &["--no-sites", "--", "sleep", "1000"],
        child,
        // Its exit record comes once the signal passed on has ended it.
        vec![stop(libc::SIGTERM), records(vec![exit(pid)])],
    );
    assert_eq!(ran.code.unwrap(), 128 + libc::SIGTERM);
    assert_eq!(ran.err, format!("pmap-trace: attached to {pid} (sleep)\n"));
    assert_eq!(
        other_lines(&ran.out, &[pid]),
        [format!("{pid}/{pid} sleep +++ killed by SIGTERM +++")]
    );
    assert_eq!(dumps_of(&ran.out, pid).len(), 1, "{}", ran.out);
    assert!(ran.filter.is_empty());
}

#[test]
fn a_second_stop_signal_stops_waiting_for_a_command_that_outlived_the_first() {
    // It ignores SIGTERM; the `true` keeps the shell from becoming `sleep`.
    let script = "trap '' TERM; sleep 1000; true";
    let child = spawn_held(&["sh".into(), "-c".into(), script.into()]).unwrap();
    let pid = child.pid();
    let ran = run_launched(
        &["--no-sites", "--no-events", "--", "sh"],
        child,
        vec![
            // Once the shell ignores SIGTERM: it has started `sleep`.
            Step::Act(Box::new(move || wait_for_a_child_of(pid))),
            stop(libc::SIGTERM),
            // A repeat within a second is the same request.
            stop(libc::SIGTERM),
            Step::Act(Box::new(|| std::thread::sleep(Duration::from_millis(1100)))),
            stop(libc::SIGTERM),
        ],
    );
    let still_running = !process::has_exited(pid);
    // Left running, as said: the test ends it, and the `sleep` it started.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    for child in children
        .split_whitespace()
        .map(|c| c.parse::<i32>().unwrap())
    {
        // SAFETY: a process this test started, through the shell.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    // SAFETY: the command this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    launch::wait_exit(pid);
    assert!(still_running);
    assert_eq!(ran.code.unwrap(), 128 + libc::SIGTERM);
    assert_eq!(
        ran.err.lines().collect::<Vec<_>>(),
        [
            format!("pmap-trace: attached to {pid} (sh)"),
            format!(
                "pmap-trace: stopped waiting at a second SIGTERM: {pid} (sh) still running, no \
                 longer traced"
            ),
        ]
    );
    // The final dump, of a process still traced.
    assert_eq!(dumps_of(&ran.out, pid as u32).len(), 1);
}

#[test]
fn attached_the_trace_ends_when_its_reader_goes_away() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let (sink, written) = Sink::reader_gone();
    let ran = run_with(
        &["--no-sites", "-p", &p],
        (sink, written),
        attach,
        // The script goes on, but not the trace: the first batch's output finds no reader.
        vec![records(vec![mmap(pid, AT, 1)]), dump(), dump()],
    );
    assert_eq!(ran.code.unwrap(), 0);
    assert_eq!(ran.err, format!("pmap-trace: attached to {pid} (sleep)\n"));
}

#[test]
fn a_launched_command_is_waited_for_when_the_reader_goes_away_and_its_status_is_the_exit_status() {
    let child = spawn_held(&["sleep".into(), "1000".into()]).unwrap();
    let pid = child.pid();
    let ran = run_with(
        &["--no-sites", "--", "sleep", "1000"],
        Sink::reader_gone(),
        |session, _| session.launch(child),
        vec![
            // Its output finds no reader: tracing goes on, without output.
            records(vec![mmap(pid as u32, AT, 1)]),
            dump(),
            // SAFETY: the command this test started; pmap-trace, its parent, reaps it.
            Step::Act(Box::new(move || unsafe {
                libc::kill(pid, libc::SIGKILL);
            })),
            records(vec![exit(pid as u32)]),
        ],
    );
    assert_eq!(ran.code.unwrap(), 128 + libc::SIGKILL);
    // Nothing said about it: a pipeline waits for its stages without a word.
    assert_eq!(ran.err, format!("pmap-trace: attached to {pid} (sleep)\n"));
}

#[test]
fn json_mode_gives_the_same_messages_as_objects() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let p = pid.to_string();
    let ran = run(
        &["--no-sites", "--json", "-p", &p],
        vec![
            records(vec![mmap(pid, AT, 2)]),
            lost(3),
            dump(),
            stop(libc::SIGTERM),
        ],
    );
    assert_eq!(ran.code.unwrap(), 0);
    // Standard error is the same in every format.
    assert_eq!(ran.err, format!("pmap-trace: attached to {pid} (sleep)\n"));
    let lines = json_lines(&ran.out);
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["call", "notice", "resync", "dump", "dump"]);
    assert_eq!(lines[0]["call"], "mmap");
    assert_eq!(lines[0]["ret"], AT);
    assert_eq!(
        lines[1]["message"],
        "3 records lost (ring full; raise --ring-size): mapping tables re-read from /proc"
    );
    let stale = maps_line(&anonymous(AT, AT + 2 * PAGE_SIZE));
    let stale = String::from_utf8_lossy(&stale[..stale.len() - 1]);
    assert_eq!(lines[2]["pid"], pid);
    assert_eq!(lines[2]["only_in_table"], serde_json::json!([stale]));
    assert_eq!(lines[2]["only_in_kernel"], serde_json::json!([]));
    let kernel = maps::read_mappings(pid as i32).unwrap();
    for dump in &lines[3..] {
        assert_eq!(dump["pid"], pid);
        assert_eq!(dump["format"], "default");
        assert_eq!(dump["mappings"].as_array().unwrap().len(), kernel.len());
    }
}
