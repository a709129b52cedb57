//! Every traced process gets its last dump: `pmap-trace -f` over a shell loop that starts
//! hundreds of short-lived children prints one final dump for each, equal to the real `pmap`
//! of that child taken while it was held stopped just before its exit.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use pmap_integration_tests::{
    Tracer, assert_same_text, pmap_trace_exe, real_pmap, require_root, without_site_summaries,
};
use serde_json::Value;

const STOPPER: &str = env!("CARGO_BIN_EXE_pmap-stop-before-exit");

/// What the test saw of one child while it was stopped before its exit.
struct Stopped {
    pmap: String,
    maps: String,
}

/// A finished `pmap-trace -f --no-events [extra] -o FILE -- bash -c 'for ...'` over
/// `children` runs of the stopper: its output, the shell's PID, and each child as seen stopped.
struct LoopRun {
    output: String,
    shell: i32,
    script: String,
    stopped: BTreeMap<i32, Stopped>,
}

fn run_loop(children: usize, extra: &[&str]) -> LoopRun {
    run_loop_of(children, STOPPER, extra)
}

/// As [`run_loop`], each child running `child` (a command line).
fn run_loop_of(children: usize, child: &str, extra: &[&str]) -> LoopRun {
    let dir = std::env::temp_dir().join(format!("pmap-trace-last-dumps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let script = format!("for i in $(seq {children}); do {child}; done");
    let mut command = Command::new(pmap_trace_exe());
    command
        .args(["-f", "--no-events"])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .args(["--", "bash", "-c", &script]);
    let mut tracer = Tracer::attach_command(command);
    let shell: i32 = tracer.attached_pid();
    let mut stopped = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60 + children as u64 / 5);
    while tracer.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the loop did not finish");
        let mut idle = true;
        for child in children_of(shell) {
            if stopped.contains_key(&child) || state(child) != Some('T') {
                continue;
            }
            let seen = Stopped {
                pmap: real_pmap(&[], child),
                maps: std::fs::read_to_string(format!("/proc/{child}/maps")).unwrap(),
            };
            stopped.insert(child, seen);
            // SAFETY: signal to a grandchild the test holds stopped.
            unsafe { libc::kill(child, libc::SIGCONT) };
            idle = false;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    let output = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stopped.len(), children, "children seen stopped");
    LoopRun {
        output,
        shell,
        script,
        stopped,
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The text dumps in `output` by PID, each from its `PID:` header through its ` total` line
/// (the call-site summary that follows each is left out).
fn text_dumps(output: &str) -> BTreeMap<i32, String> {
    let mut dumps = BTreeMap::new();
    let mut current: Option<(i32, String)> = None;
    for line in without_site_summaries(output).lines() {
        if let Some((pid, text)) = &mut current {
            text.push_str(line);
            text.push('\n');
            if line.starts_with(" total ") {
                let previous = dumps.insert(*pid, std::mem::take(text));
                assert!(previous.is_none(), "two final dumps of {pid}");
                current = None;
            }
            continue;
        }
        assert!(!line.starts_with("pmap-trace:"), "notice: {line}");
        let pid = line.split_once(":   ").and_then(|(p, _)| p.parse().ok());
        let pid = pid.unwrap_or_else(|| panic!("not a dump header: {line:?}"));
        current = Some((pid, format!("{line}\n")));
    }
    assert!(current.is_none(), "a dump was cut short");
    dumps
}

/// The shell and `seq` are headed by their command lines; every child's dump is the real
/// `pmap`'s.
fn check_text(run: &LoopRun) {
    let dumps = text_dumps(&run.output);
    assert_eq!(
        dumps.len(),
        run.stopped.len() + 2,
        "final dumps: one for the shell, seq and every child"
    );
    let header = |pid: i32| dumps[&pid].lines().next().unwrap().to_string();
    assert_eq!(
        header(run.shell),
        format!("{}:   bash -c {}", run.shell, run.script)
    );
    let seq = dumps
        .keys()
        .find(|&&pid| pid != run.shell && !run.stopped.contains_key(&pid))
        .expect("seq's dump");
    assert_eq!(header(*seq), format!("{seq}:   seq {}", run.stopped.len()));
    for (pid, seen) in &run.stopped {
        assert_same_text(&format!("final dump of {pid}"), &seen.pmap, &dumps[pid]);
    }
}

#[test]
fn every_short_lived_child_gets_its_final_dump_as_pmap_saw_it() {
    if !require_root() {
        return;
    }
    for _ in 0..3 {
        check_text(&run_loop(200, &[]));
    }
}

#[test]
fn a_thousand_children_get_a_thousand_final_dumps() {
    if !require_root() {
        return;
    }
    check_text(&run_loop(1000, &[]));
}

#[test]
fn a_child_whose_stack_grew_ends_with_the_stack_it_grew() {
    if !require_root() {
        return;
    }
    // A megabyte of stack, well past the 132K exec sets up: the kernel grows the stack on the
    // faults, and only the exit record tells how far.
    let run = run_loop_of(20, &format!("{STOPPER} 1024"), &[]);
    for seen in run.stopped.values() {
        let stack = seen
            .pmap
            .lines()
            .find(|l| l.ends_with("[ stack ]"))
            .unwrap();
        assert!(!stack.contains(" 132K "), "the stack did not grow: {stack}");
    }
    check_text(&run);
}

#[test]
fn the_launched_commands_exit_ends_nothing_while_its_children_live() {
    if !require_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pmap-trace-orphans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, pids) = (dir.join("out"), dir.join("pids"));
    // The shell leaves five children behind, stopped before their exit, and exits 3.
    let script = format!(
        "for i in 1 2 3 4 5; do {STOPPER} & echo $! >> {}; done; exit 3",
        pids.display()
    );
    let mut command = Command::new(pmap_trace_exe());
    command
        .args(["-f", "--no-events", "-o"])
        .arg(&out)
        .args(["--", "bash", "-c", &script]);
    let mut tracer = Tracer::attach_command(command);
    let deadline = Instant::now() + Duration::from_secs(30);
    let children: Vec<i32> = loop {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        let found: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        if found.len() == 5 && found.iter().all(|&pid| state(pid) == Some('T')) {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the children did not stop: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // The shell is gone; pmap-trace goes on for its children.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        tracer.child.try_wait().unwrap().is_none(),
        "pmap-trace ended"
    );
    let mut stopped = BTreeMap::new();
    for &child in &children {
        stopped.insert(child, real_pmap(&[], child));
        // SAFETY: signal to a process the test started through the shell.
        unsafe { libc::kill(child, libc::SIGCONT) };
    }
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 3, "the shell's exit status; stderr: {err}");
    let dumps = text_dumps(&std::fs::read_to_string(&out).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(dumps.len(), 6, "the shell and its five children");
    for (pid, pmap) in &stopped {
        assert_same_text(&format!("final dump of {pid}"), pmap, &dumps[pid]);
    }
}

#[test]
fn lost_records_give_notices_by_pid_and_never_a_wait() {
    if !require_root() {
        return;
    }
    // An 8 KiB ring holds two or three exec records: a thousand children overflow it.
    let script = "for i in $(seq 1000); do /bin/true; done";
    let out = Command::new(pmap_trace_exe())
        .args([
            "-f",
            "--no-events",
            "--ring-size",
            "8K",
            "--",
            "bash",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(" records lost (ring full"),
        "nothing was lost"
    );
    let mut dumped = std::collections::BTreeSet::new();
    let mut undumped = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(notice) = line.strip_prefix("pmap-trace: ") {
            if notice.ends_with("no dump for it") {
                let pid: i32 = notice.split_whitespace().next().unwrap().parse().unwrap();
                undumped.insert(pid);
            }
            continue;
        }
        let Some((pid, header)) = line.split_once(":   ") else {
            continue;
        };
        let pid: i32 = pid.parse().unwrap();
        assert!(dumped.insert(pid), "two final dumps of {pid}");
        // Headed by a command line, never by a name read after the process was gone.
        assert!(
            ["/bin/true", "seq 1000", &format!("bash -c {script}")].contains(&header),
            "{line}"
        );
    }
    assert!(dumped.is_disjoint(&undumped), "a dump and a no-dump notice");
    assert!(dumped.len() > 100, "{} dumps", dumped.len());
}

/// Fields of one `/proc/PID/maps` line, as the JSON dump's raw fields name them.
fn maps_fields(line: &str) -> Value {
    let mut words = line.split_whitespace();
    let (range, perms, offset, device, inode) = (
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
        words.next().unwrap(),
    );
    let path = words.collect::<Vec<_>>().join(" ");
    let (start, end) = range.split_once('-').unwrap();
    let hex = |text: &str| u64::from_str_radix(text, 16).unwrap();
    serde_json::json!({
        "start": hex(start),
        "end": hex(end),
        "perms": perms,
        "offset": hex(offset),
        "device": device,
        "inode": inode.parse::<u64>().unwrap(),
        "path": path,
    })
}

/// Every child's JSON dump has the real `pmap`'s header, rows and total, and the
/// `/proc/PID/maps` fields (full paths included) the child had.
fn check_json(run: &LoopRun) {
    let mut dumps = BTreeMap::new();
    for line in run.output.lines() {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        // Each dump is followed by its call-site summary.
        if value["type"] == "sites" {
            continue;
        }
        assert_eq!(value["type"], "dump", "{line}");
        let pid = value["pid"].as_i64().unwrap() as i32;
        assert!(
            dumps.insert(pid, value).is_none(),
            "two final dumps of {pid}"
        );
    }
    assert_eq!(dumps.len(), run.stopped.len() + 2);
    assert_eq!(
        dumps[&run.shell]["command"],
        format!("bash -c {}", run.script)
    );
    for (pid, seen) in &run.stopped {
        let dump = &dumps[pid];
        let lines: Vec<&str> = seen.pmap.lines().collect();
        let (header, rows, total) = (lines[0], &lines[1..lines.len() - 1], lines[lines.len() - 1]);
        assert_eq!(
            dump["command"],
            header.split_once(":   ").unwrap().1,
            "{pid}"
        );
        let total: u64 = total
            .trim()
            .trim_start_matches("total")
            .trim()
            .trim_end_matches('K')
            .parse()
            .unwrap();
        assert_eq!(dump["total_kbytes"], total, "{pid}");
        let mappings = dump["mappings"].as_array().unwrap();
        assert_eq!(mappings.len(), rows.len(), "{pid}: {dump}");
        let maps: Vec<&str> = seen.maps.lines().collect();
        assert_eq!(maps.len(), rows.len(), "{pid}");
        for ((row, mapping), maps_line) in rows.iter().zip(mappings).zip(maps) {
            let mut words = row.split_whitespace();
            let (address, kbytes, mode) = (
                words.next().unwrap(),
                words.next().unwrap(),
                words.next().unwrap(),
            );
            let name = words.collect::<Vec<_>>().join(" ");
            assert_eq!(mapping["address"], address, "{pid}: {row}");
            assert_eq!(
                mapping["kbytes"],
                kbytes.trim_end_matches('K').parse::<u64>().unwrap(),
                "{pid}: {row}"
            );
            assert_eq!(mapping["mode"], mode, "{pid}: {row}");
            assert_eq!(mapping["mapping"], name, "{pid}: {row}");
            let expected = maps_fields(maps_line);
            for (field, value) in expected.as_object().unwrap() {
                assert_eq!(&mapping[field], value, "{pid}: {field} of {maps_line}");
            }
        }
    }
}

#[test]
fn json_final_dumps_of_short_lived_children_match_pmap_and_proc_maps() {
    if !require_root() {
        return;
    }
    for children in [200, 200, 1000] {
        check_json(&run_loop(children, &["--json"]));
    }
}
