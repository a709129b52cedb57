//! The kernel path for real: load the eBPF programs, trace the workload, and check that every
//! scripted call arrives exactly once with its arguments and result, and that the table built
//! from the events dumps exactly what `pmap` prints; and that a growth call's stack copy stops
//! at the top of the main thread's stack.

mod common;

use std::time::{Duration, Instant};

use pmap_integration_tests::{
    END_MARKER, START_MARKER, Workload, assert_same_text, real_pmap, require_root,
};
use pmap_trace::{
    decode::{Call, Event, EventKind, Record, UserStack},
    procfs::maps,
    render::pmap::{PmapOptions, write_default},
    session::traced::TracedProcess,
};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_pmap-workload");

/// The call as the workload reports it: `name arg... = ret`, arguments as signed integers.
fn signature(call: &Call, ret: i64) -> String {
    let args: Vec<String> = call
        .raw_args()
        .iter()
        .map(|&arg| (arg as i64).to_string())
        .collect();
    format!("{} {} = {ret}", call.name(), args.join(" "))
}

fn is_marker(event: &Event, marker: u64) -> bool {
    matches!(event.kind, EventKind::Call { call: Call::Munmap { addr, len: 0 }, .. } if addr == marker)
}

fn render(process: &TracedProcess) -> String {
    let mappings = process.mappings();
    let view = process.view(&mappings, maps::discover_shm_minor());
    let mut out = Vec::new();
    write_default(&mut out, &view, &PmapOptions::default()).unwrap();
    String::from_utf8(out).unwrap()
}

/// Applies `events` of `pid` to its table, in order.
/// Applies `events` of `pid` to its table, in order, as the session does: an exec re-seeds.
/// (`Command::spawn` returns once the child's exec has closed its close-on-exec descriptors,
/// which can be before the kernel has mapped the new image, so the first seed may see a
/// half-built address space and the exec record is what makes the table whole.)
fn apply_all(process: &mut TracedProcess, events: &[Event]) {
    let pid = process.pid as u32;
    for event in events.iter().filter(|e| e.tgid == pid) {
        match &event.kind {
            EventKind::Call { call, ret } => process.apply(call, *ret),
            EventKind::Exec => *process = TracedProcess::seed(pid as i32).unwrap(),
            _ => {}
        }
    }
}

#[test]
fn every_scripted_call_arrives_once_with_its_arguments_and_the_dump_equals_pmap() {
    if !require_root() {
        return;
    }
    common::runtime().block_on(async {
        let mut capture = common::load();
        let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
        let pid = workload.pid();
        capture.add_target(pid as u32, false).unwrap();
        let mut process = TracedProcess::seed(pid).unwrap();
        workload.go();
        let reported = workload.read_until_checkpoint();
        workload.wait_stopped();

        let mut events = Vec::new();
        capture.drain(&mut events).unwrap();
        assert_eq!(capture.dropped_total(), 0);
        let ours: Vec<&Event> = events.iter().filter(|e| e.tgid == pid as u32).collect();
        let start = ours
            .iter()
            .position(|e| is_marker(e, START_MARKER))
            .expect("start marker");
        let end = ours
            .iter()
            .position(|e| is_marker(e, END_MARKER))
            .expect("end marker");
        let traced: Vec<String> = ours[start..=end]
            .iter()
            .map(|e| match &e.kind {
                EventKind::Call { call, ret } => signature(call, *ret),
                other => panic!("unexpected {other:?} inside the script"),
            })
            .collect();
        assert_eq!(traced, reported);
        assert!(
            ours.iter()
                .all(|e| e.tid == pid as u32 && e.comm == b"pmap-workload")
        );

        apply_all(&mut process, &events);
        process.refresh_growing();
        assert_same_text(
            "dump at checkpoint",
            &real_pmap(&[], pid),
            &render(&process),
        );

        workload.resume();
        assert_eq!(workload.finish(), 0);
    });
}

#[test]
fn attaching_while_the_target_churns_loses_and_doubles_nothing() {
    if !require_root() {
        return;
    }
    common::runtime().block_on(async {
        let mut capture = common::load();
        let mut workload = Workload::start(WORKLOAD, "churn", &["300000"]);
        let pid = workload.pid();
        assert_eq!(workload.read_line(), "ready");
        workload.go();
        std::thread::sleep(Duration::from_millis(30));
        capture.add_target(pid as u32, false).unwrap();
        let mut process = TracedProcess::seed(pid).unwrap();

        let deadline = Instant::now() + Duration::from_secs(60);
        let mut applied = 0usize;
        let mut events = Vec::new();
        while !workload.is_stopped() {
            assert!(Instant::now() < deadline, "churn did not finish");
            let _ = tokio::time::timeout(Duration::from_millis(20), capture.readable()).await;
            events.clear();
            capture.drain(&mut events).unwrap();
            applied += events.len();
            apply_all(&mut process, &events);
        }
        events.clear();
        capture.drain(&mut events).unwrap();
        applied += events.len();
        apply_all(&mut process, &events);
        assert_eq!(
            capture.dropped_total(),
            0,
            "ring overflowed; the test needs a larger ring"
        );
        assert!(
            applied > 1000,
            "attached too late to see the churn ({applied} events)"
        );
        process.refresh_growing();
        assert_same_text("dump after churn", &real_pmap(&[], pid), &render(&process));
        workload.resume();
        assert_eq!(workload.finish(), 0);
    });
}

#[test]
fn a_main_thread_growth_copies_its_stack_only_up_to_the_stack_top() {
    if !require_root() {
        return;
    }
    common::runtime().block_on(async {
        // The largest copy allowed: without the bound every copy would run to the end of the
        // stack's mapping, above the top.
        let mut capture = common::load_with_stacks(64 << 10);
        let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
        let pid = workload.pid();
        capture.add_target(pid as u32, false).unwrap();
        let top = TracedProcess::seed(pid).unwrap().start_stack;
        workload.go();
        workload.read_until_checkpoint();
        workload.wait_stopped();
        let mut records = Vec::new();
        capture.drain_records(&mut records).unwrap();
        let stacks: Vec<&UserStack> = records
            .iter()
            .filter_map(|record| match record {
                Record::Captured(captured) if captured.event.tgid == pid as u32 => {
                    captured.stack.as_deref()
                }
                _ => None,
            })
            .collect();
        assert!(!stacks.is_empty(), "the script grows anonymous memory");
        for stack in stacks {
            let extent = top - stack.rsp;
            let copied = stack.bytes.len() as u64;
            // Up to the top, and at most one 64-byte grain past it.
            assert!(
                (extent..=extent + 64).contains(&copied),
                "{copied} bytes copied of a stack {extent} bytes deep: {stack:?}"
            );
        }
        workload.resume();
        assert_eq!(workload.finish(), 0);
    });
}
