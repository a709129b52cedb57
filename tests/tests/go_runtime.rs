//! `--sites` on a Go program (Debian's Go, built by `tests/build.rs` from `runtimes/go/`): Go
//! grows its heap on the thread's system stack, so each growth's stack reaches the program's
//! function only across `runtime.systemstack`, back in the goroutine that switched. Two
//! functions grow the heap, each in a goroutine of its own, one after the other; what each grew
//! is read from the process's mappings at the checkpoint after it. Each must own 95-110 % of it
//! in sites that start at the function once the runtime's frames are folded away; and with
//! `--full-stacks`, no stack may run past a stack switch into anything but the goroutine that
//! switched. Built by Go's linker and by the system linker (cgo). The plain run names the same
//! grower on each growth's event line and in the summary after a dump.
//!
//! What a grower grew is what the attribution gives a call: the address space it mapped, less
//! what a later call mapped again. Go reserves its heap in 64 MiB arenas (`PROT_NONE`) and
//! maps parts of them readable as it needs them; the part the second grower maps of an arena
//! the first one reserved is the second's. So a grower's bytes are those its phase made
//! anonymous or changed the protection of, and that the later phase did not change again.

use pmap_integration_tests::{Tracer, Workload, functions, require_root};
use serde_json::Value;

const GO_GROWER: &str = env!("GO_GROWER");
const GO_GROWER_CGO: &str = env!("GO_GROWER_CGO");

/// The program's growers, in the order it runs them.
const GROWERS: [&str; 2] = ["main.growSlices", "main.growMaps"];

/// The program's function that starts each grower's goroutine: its `go` statement has the
/// runtime allocate for it (`runtime.newproc`; a thread to run the goroutine when the others
/// are busy, `persistentalloc`'s 256 KiB chunks), a small growth that is rightly its own.
const STARTER: &str = "main.inGoroutine";

/// The path `tests/build.rs` built a Go program at; empty when `go` could not build it.
fn built(path: &'static str) -> &'static str {
    assert!(
        !path.is_empty(),
        "the Go test program was not built (no `go` when the tests were built): run `cargo \
         xtask setup`, which installs golang-go, then build the tests again"
    );
    path
}

/// `pid`'s private mappings no file backs, what the attribution owns (a Go program has no brk
/// heap), page by page: start page → protection.
type Anonymous = std::collections::BTreeMap<u64, String>;

const PAGE: u64 = 4096;

fn anonymous_pages(pid: i32) -> Anonymous {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut pages = Anonymous::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 || fields[4] != "0" || !fields[1].ends_with('p') {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        for page in (start..end).step_by(PAGE as usize) {
            pages.insert(page, fields[1].to_string());
        }
    }
    pages
}

/// The pages `after` has that `before` had not, or had with another protection: the pages a
/// phase mapped.
fn mapped_between(before: &Anonymous, after: &Anonymous) -> std::collections::BTreeSet<u64> {
    after
        .iter()
        .filter(|(page, perms)| before.get(page) != Some(perms))
        .map(|(page, _)| *page)
        .collect()
}

/// Runs the program under `pmap-trace --no-events --json --sites 100 --rank live EXTRA... -p PID`; returns
/// what each grower grew (mappings before and after it) and the sites record of a dump taken
/// after both.
fn grow(exe: &str, extra: &[&str]) -> ([u64; 2], Value) {
    let mut args = vec!["--no-events", "--json", "--sites", "100", "--rank", "live"];
    args.extend_from_slice(extra);
    let (grown, mut records) = grow_traced(exe, &args);
    (grown, records.pop().expect("the sites record"))
}

/// Runs the program under `pmap-trace ARGS... -p PID` (ARGS with `--json`); returns what each
/// grower grew and every record up to the sites record of a dump taken after both, that one
/// last.
fn grow_traced(exe: &str, base_args: &[&str]) -> ([u64; 2], Vec<Value>) {
    let mut target = Workload::start(exe, "grow", &[]);
    let pid = target.pid();
    let pid_arg = pid.to_string();
    let mut args = base_args.to_vec();
    args.extend_from_slice(&["-p", &pid_arg]);
    let mut tracer = Tracer::attach(&args);
    let mut snapshots = vec![anonymous_pages(pid)];
    target.go();
    for i in 0..GROWERS.len() {
        target.read_until_checkpoint();
        target.wait_stopped();
        snapshots.push(anonymous_pages(pid));
        if i + 1 < GROWERS.len() {
            target.resume();
        }
    }
    let first = mapped_between(&snapshots[0], &snapshots[1]);
    let second = mapped_between(&snapshots[1], &snapshots[2]);
    let grown = [
        first.difference(&second).count() as u64 * PAGE,
        second.len() as u64 * PAGE,
    ];
    for (grower, bytes) in GROWERS.iter().zip(grown) {
        assert!(bytes > 16 << 20, "{grower} grew only {bytes} bytes");
    }
    tracer.signal(libc::SIGUSR1);
    let mut records = Vec::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut tracer.stdout, &mut line).unwrap();
        assert!(n > 0, "pmap-trace ended before its sites record");
        let value: Value = serde_json::from_str(&line).unwrap();
        let is_sites = value["type"] == "sites";
        records.push(value);
        if is_sites {
            break;
        }
    }
    target.resume();
    assert_eq!(target.finish(), 0);
    tracer.signal(libc::SIGINT);
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    (grown, records)
}

/// Each grower owns 95-110 % of what it grew, in sites that start at it.
fn assert_attributed(exe: &str) {
    let (grown, sites) = grow(exe, &[]);
    assert_owned(exe, grown, &sites);
}

/// Each grower owns 95-110 % of what it grew in `sites`' ranking by live bytes, in sites that
/// start at it.
fn assert_owned(exe: &str, grown: [u64; 2], sites: &Value) {
    let top = sites["top"].as_array().unwrap();
    for (grower, grew) in GROWERS.iter().zip(grown) {
        let naming: Vec<&Value> = top
            .iter()
            .filter(|site| functions(site).contains(grower))
            .collect();
        let owned: u64 = naming
            .iter()
            .map(|s| s["live_bytes"].as_u64().unwrap())
            .sum();
        let share = owned as f64 / grew as f64;
        eprintln!("{exe}: {grower} grew {grew} bytes, its sites own {owned}");
        assert!(
            (0.95..=1.10).contains(&share),
            "{exe}: {grower} grew {grew} bytes, its sites own {owned} ({:.1} %): {sites:#}",
            share * 100.0
        );
        for site in naming {
            assert_eq!(
                functions(site)[0],
                *grower,
                "the runtime's frames fold down to the program's: {site:#}"
            );
        }
    }
}

/// The Go runtime's functions that switch a thread to its system stack.
const SWITCHES: [&str; 4] = [
    "runtime.systemstack",
    "runtime.mcall",
    "runtime.morestack",
    "runtime.asmcgocall",
];

/// With every frame kept, each stack goes from a frame that switched stacks straight into the
/// goroutine that switched (for `systemstack`: the `systemstack_switch` its `g.sched` names),
/// and the growers' stacks reach them that way.
fn assert_followed_across_the_switch(exe: &str) {
    let (_, sites) = grow(exe, &["--full-stacks"]);
    let top = sites["top"].as_array().unwrap();
    for site in top.iter().filter(|site| site["origin"].is_null()) {
        let frames = functions(site);
        for pair in frames.windows(2) {
            if pair[0] == "runtime.systemstack" {
                assert_eq!(
                    pair[1], "runtime.systemstack_switch",
                    "a stack ran past the switch into another caller: {site:#}"
                );
            }
            assert!(
                !pair[1].starts_with("0x"),
                "a frame outside any code: {site:#}"
            );
        }
        assert!(
            !frames.iter().any(|f| f.starts_with("[cut")),
            "a stack cut at a switch the kernel side could have followed: {site:#}"
        );
    }
    for grower in GROWERS {
        let reached = top.iter().any(|site| {
            let frames = functions(site);
            let at = frames.iter().position(|f| *f == grower);
            let switch = frames.iter().position(|f| SWITCHES.contains(f));
            matches!((switch, at), (Some(switch), Some(at)) if switch < at)
        });
        assert!(
            reached,
            "no stack reaches {grower} across a stack switch: {sites:#}"
        );
    }
}

/// The plain run (events and the summary after each dump, as JSON): a growth's event names
/// the same innermost frame a report does, the grower (or the starter, for what its `go`
/// statement made the runtime allocate), and a stack cut at a switch names no function of the
/// program at all: never one read from the goroutine's stale frames.
fn assert_plain_run_names_the_growers(exe: &str) {
    let (grown, records) = grow_traced(exe, &["--json"]);
    let (sites, events) = records.split_last().unwrap();
    assert_eq!(sites["summary"], true, "{sites:#}");
    assert_owned(exe, grown, sites);
    let mut named = Vec::new();
    for event in events.iter().filter(|e| e.get("stack").is_some()) {
        let Some(innermost) = event["stack"][0]["function"].as_str() else {
            continue;
        };
        if innermost.starts_with("main.") && innermost != STARTER {
            assert!(
                GROWERS.contains(&innermost),
                "a growth named for a function that grows nothing: {event:#}"
            );
            named.push(innermost);
        }
    }
    for grower in GROWERS {
        assert!(
            named.contains(&grower),
            "no event line named {grower}: {named:?}"
        );
    }
}

#[test]
fn the_plain_run_names_each_grower_on_its_event_lines_and_in_the_summary() {
    if !require_root() {
        return;
    }
    assert_plain_run_names_the_growers(built(GO_GROWER));
    assert_plain_run_names_the_growers(built(GO_GROWER_CGO));
}

#[test]
fn each_goroutine_grower_owns_what_it_grew_across_the_system_stack_switch() {
    if !require_root() {
        return;
    }
    assert_attributed(built(GO_GROWER));
}

#[test]
fn no_stack_runs_past_the_switch_into_a_wrong_caller() {
    if !require_root() {
        return;
    }
    assert_followed_across_the_switch(built(GO_GROWER));
}

#[test]
fn the_same_for_a_program_linked_with_cgo() {
    if !require_root() {
        return;
    }
    assert_attributed(built(GO_GROWER_CGO));
    assert_followed_across_the_switch(built(GO_GROWER_CGO));
}
