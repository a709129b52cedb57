//! Hostile targets, overload and abrupt ends, against the real kernel: names that try to forge
//! output, a thousand threads mapping at once, records of two threads in the other order than
//! they changed the address space, a target killed mid-trace, and a ring far too small for a
//! minute of churn.

use std::{
    io::BufRead,
    process::Command,
    time::{Duration, Instant},
};

use pmap_integration_tests::{Tracer, Workload, assert_same_text, real_pmap, require_root};
use serde_json::Value;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_pmap-workload");

fn wait_stopped(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat[stat.rfind(')').unwrap() + 2..].starts_with('T') {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Maps files whose names hold a newline, terminal escapes, invalid UTF-8 and text that looks
/// like a maps line, then stops itself.
const HOSTILE_SCRIPT: &str = r#"
import mmap, os, signal, tempfile
d = tempfile.mkdtemp(prefix="pmap-hostile-")
names = [b"a\nb", b"esc\x1b[31mred\x1b[0m", b"bad\xff\xfe", b"x (deleted)",
         b"7f00-7f01 rw-p 00000000 00:00 0 [heap]", b"tab\there"]
keep = []
for n in names:
    p = os.path.join(d.encode(), n)
    with open(p, "wb") as f:
        f.write(b"\0" * 4096)
    f = open(p, "rb")
    keep.append(mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ))
    f.close()
os.kill(os.getpid(), signal.SIGSTOP)
for n in names:
    os.unlink(os.path.join(d.encode(), n))
os.rmdir(d)
"#;

#[test]
fn hostile_file_names_cannot_forge_output_and_stay_valid_json() {
    if !require_root() {
        return;
    }
    for json in [false, true] {
        let mut args = vec![];
        if json {
            args.push("--json");
        }
        args.extend(["--", "python3", "-c", HOSTILE_SCRIPT]);
        let mut tracer = Tracer::attach(&args);
        let pid = tracer.attached_pid();
        wait_stopped(pid);
        let expected_dump = real_pmap(&[], pid);
        tracer.signal(libc::SIGUSR1);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(tracer.stdout.read_line(&mut line).unwrap() > 0);
            let done = if json {
                line.contains("\"type\":\"dump\"")
            } else {
                line.starts_with(" total ")
            };
            lines.push(line);
            if done {
                break;
            }
        }
        // SAFETY: continuing the stopped python child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let (code, _, err) = tracer.finish();
        assert_eq!(code, 0, "{err}");

        if json {
            for line in &lines {
                let value: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(value["type"].is_string());
            }
            let paths: Vec<String> = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["call"] == "mmap")
                .filter_map(|v| v["args"]["path"].as_str().map(str::to_owned))
                .collect();
            for escaped in [
                "a\\012b",
                "esc\\033[31mred\\033[0m",
                "bad\\377\\376",
                "tab\\011here",
            ] {
                assert!(
                    paths.iter().any(|p| p.ends_with(escaped)),
                    "{escaped} not in {paths:#?}"
                );
            }
        } else {
            let header = format!("{pid}:   ");
            let dump_start = lines
                .iter()
                .position(|l| l.starts_with(&header))
                .expect("dump header");
            // Every line before the dump is one event: it starts with a time stamp, and no name
            // broke it into more lines or slipped a raw escape into it.
            for line in &lines[..dump_start] {
                let stamp = line.as_bytes();
                assert!(
                    stamp.len() > 16 && stamp[2] == b':' && stamp[5] == b':' && stamp[8] == b'.',
                    "not an event line: {line:?}"
                );
                assert!(!line.contains('\x1b'), "raw escape in {line:?}");
            }
            assert!(lines[..dump_start].iter().any(|l| l.contains("a\\012b")));
            assert_same_text(
                "hostile dump",
                &expected_dump,
                &lines[dump_start..].concat(),
            );
        }
    }
}

#[test]
fn a_thousand_threads_mapping_at_once_leave_an_exact_table() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "threads", &["1000"]);
    let pid = workload.pid();
    assert_eq!(workload.read_line(), "ready");
    // Without call sites: the 16M ring is sized for the calls of 1000 threads, not for 1000
    // stack copies at once (each up to --stack-bytes: a thread's copy has no known top yet).
    let mut tracer = Tracer::attach(&[
        "--no-sites",
        "--no-events",
        "--ring-size",
        "16M",
        "-p",
        &pid.to_string(),
    ]);
    workload.go();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let output = tracer.read_dump();
    assert!(
        !output.contains("records lost"),
        "lost records with a 16M ring:\n{output}"
    );
    assert_same_text("1000 threads", &real_pmap(&[], pid), &output);
    workload.resume();
    assert_eq!(workload.finish(), 0);
    assert_eq!(tracer.finish().0, 0);
}

/// A thread's munmap frees a range and is held in the kernel (a userfaultfd unmap event waits to
/// be read) while the main thread maps the range again: the mmap's record reaches the ring
/// first, the munmap's after it. The dump holds the new mapping, as the kernel does.
#[test]
fn an_unmap_recorded_after_the_mapping_that_reused_its_range_leaves_that_mapping() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "late-unmap", &[]);
    let pid = workload.pid();
    assert_eq!(workload.read_line(), "ready");
    let mut tracer = Tracer::attach(&["--no-events", "-p", &pid.to_string()]);
    workload.go();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let output = tracer.read_dump();
    assert_same_text("late unmap", &real_pmap(&[], pid), &output);
    workload.resume();
    assert_eq!(workload.finish(), 0);
    assert_eq!(tracer.finish().0, 0);
}

#[test]
fn a_target_killed_mid_trace_ends_the_session_cleanly() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "churn-seconds", &["30"]);
    let pid = workload.pid();
    assert_eq!(workload.read_line(), "ready");
    // Without call sites: the churn's stack copies fill the default ring, and the notices
    // they give would come before the final dump this test looks at first.
    let tracer = Tracer::attach(&["--no-sites", "--no-events", "-p", &pid.to_string()]);
    workload.go();
    std::thread::sleep(Duration::from_millis(300));
    workload.child.kill().unwrap();
    workload.child.wait().unwrap();
    let started = Instant::now();
    let (code, out, err) = tracer.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to notice",
        started.elapsed()
    );
    assert!(
        out.starts_with(&format!("{pid}:   ")),
        "no final dump:\n{out}"
    );
    assert!(out.trim_end().ends_with('K'));
}

#[test]
fn a_minute_of_overload_is_counted_resynchronised_and_bounded() {
    if !require_root() {
        return;
    }
    let seconds = std::env::var("PMAP_TRACE_OVERLOAD_SECONDS").unwrap_or_else(|_| "60".into());
    let mut workload = Workload::start(WORKLOAD, "churn-seconds", &[&seconds]);
    let pid = workload.pid();
    assert_eq!(workload.read_line(), "ready");
    let mut tracer = Tracer::attach(&["--no-events", "--ring-size", "4K", "-p", &pid.to_string()]);
    let tracer_pid = tracer.child.id();
    workload.go();
    workload.wait_stopped_within(Duration::from_secs(seconds.parse::<u64>().unwrap() + 60));
    tracer.signal(libc::SIGUSR1);
    let output = tracer.read_dump();
    let notices: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("records lost"))
        .collect();
    assert!(!notices.is_empty(), "a 4K ring under churn lost nothing?");
    assert_same_text(
        "dump after overload",
        &real_pmap(&[], pid),
        &last_block(&output, pid),
    );
    let hwm = vm_hwm_kib(tracer_pid);
    assert!(hwm < 50 * 1024, "pmap-trace peaked at {hwm} KiB");
    workload.resume();
    workload.finish();
    assert_eq!(tracer.finish().0, 0);
}

fn last_block(text: &str, pid: i32) -> String {
    let header = format!("{pid}:   ");
    text[text.rfind(&header).expect("dump header")..].to_string()
}

#[test]
fn exec_replaces_the_table_and_the_stream_says_so() {
    if !require_root() {
        return;
    }
    let out = Command::new(pmap_integration_tests::pmap_trace_exe())
        .args(["--json", "--", "sh", "-c", "exec sleep 0.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let execs = lines.iter().filter(|v| v["type"] == "exec").count();
    assert_eq!(execs, 2, "sh's exec, then sleep's");
    // The last dump, then its call-site summary.
    let [.., dump, sites] = &lines[..] else {
        panic!("no dump")
    };
    assert_eq!(
        (&dump["type"], &sites["type"]),
        (&"dump".into(), &"sites".into())
    );
    assert_eq!(dump["command"], "sleep 0.5");
    let paths: Vec<&str> = dump["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["path"].as_str())
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/sleep")),
        "not the new image: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("/dash")),
        "the old image is left: {paths:?}"
    );
}
