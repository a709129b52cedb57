//! The `pmap-trace` binary as a user runs it: attach, dumps on request, launch mode, `--follow`,
//! JSON, lost records, signals, and bad input. Every test loads the real eBPF programs.

use std::{
    io::BufRead,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pmap_integration_tests::{
    END_MARKER, START_MARKER, Sleeper, Tracer, Workload, assert_same_text, attached_pid,
    pmap_trace_exe, real_pmap, require_root, without_site_summaries,
};
use serde_json::Value;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_pmap-workload");

/// The last dump block (from its `PID:` header on) of `text`, without the call-site summary
/// that follows it in the plain run.
fn last_dump(text: &str, pid: i32) -> String {
    let header = format!("{pid}:   ");
    let start = text
        .rfind(&header)
        .unwrap_or_else(|| panic!("no dump of {pid} in:\n{text}"));
    let dump = &text[start..];
    let end = dump
        .find(&format!("\nsites {pid}: "))
        .map_or(dump.len(), |at| at + 1);
    dump[..end].to_string()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// IDs of the pmap-trace programs loaded in the kernel now.
fn our_programs() -> std::collections::BTreeSet<u32> {
    let ours = [
        "mm_syscall_exit",
        "process_fork",
        "process_exec",
        "process_exit",
        "page_fault_user",
    ];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|name| ours.contains(&name)))
        .map(|p| p.id())
        .collect()
}

/// IDs of the BPF programs `pid` holds a descriptor of (a program, or a link to one), from
/// its `/proc/PID/fdinfo`.
fn programs_held_by(pid: i32) -> std::collections::BTreeSet<u32> {
    let mut held = std::collections::BTreeSet::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return held;
    };
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        held.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|id| id.trim().parse::<u32>().ok()),
        );
    }
    held
}

/// The live processes holding each BPF program (by PID), from every `/proc/PID/fdinfo`.
fn program_holders() -> std::collections::BTreeMap<u32, Vec<i32>> {
    let mut holders: std::collections::BTreeMap<u32, Vec<i32>> = Default::default();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return holders;
    };
    for pid in processes
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse().ok())
    {
        for id in programs_held_by(pid) {
            holders.entry(id).or_default().push(pid);
        }
    }
    holders
}

/// Whether `pid` is a process an exiting pmap-trace left to release its programs.
fn is_releaser(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == pmap_trace::capture::RELEASER_NAME.to_str().unwrap())
}

/// No pmap-trace program loaded since `before` is still loaded once the processes that exiting
/// pmap-traces leave to release their programs are done (waiting up to a minute for them),
/// unless another live process holds it: that is another tracer running beside the test (a
/// leaked program is held by nobody, since pmap-trace pins nothing).
fn assert_nothing_left_since(before: &std::collections::BTreeSet<u32>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holders = program_holders();
        let left: Vec<u32> = our_programs()
            .difference(before)
            .filter(|id| {
                holders
                    .get(id)
                    .is_none_or(|pids| pids.iter().all(|&p| is_releaser(p)))
            })
            .copied()
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs still loaded a minute after exit: ids {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pmap_trace_exits_at_once_and_a_detached_process_releases_the_programs() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let tracer = Tracer::attach(&["-p", &pid.to_string()]);
    let tracer_pid = tracer.child.id() as i32;
    let ours = programs_held_by(tracer_pid);
    assert!(ours.len() >= 4, "pmap-trace holds programs {ours:?}");
    let output_pipes: Vec<std::path::PathBuf> = [
        tracer.stdout.get_ref().as_raw_fd(),
        tracer.stderr.get_ref().as_raw_fd(),
    ]
    .iter()
    .map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap())
    .collect();
    tracer.signal(libc::SIGINT);
    // Its output ends, and it exits, before the kernel has detached every program: releasing
    // a link waits for RCU grace periods, tens of milliseconds each, one link after the other.
    let (code, out, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    assert_same_text("final dump", &real_pmap(&[], pid), &last_dump(&out, pid));
    let holders = program_holders();
    let still: Vec<u32> = our_programs().intersection(&ours).copied().collect();
    assert!(
        !still.is_empty(),
        "every program was released before pmap-trace exited: it waited for the release"
    );
    // Held by the releasing process alone, which has left pmap-trace's session (the
    // terminal's signals do not reach it) and closed everything else.
    for id in &still {
        let pids = &holders[id];
        assert!(
            pids.iter().all(|&p| is_releaser(p)),
            "program {id} held by {pids:?}"
        );
        for &releaser in pids {
            let stat =
                std::fs::read_to_string(format!("/proc/{releaser}/stat")).unwrap_or_default();
            let session = stat[stat.rfind(')').unwrap_or(0)..]
                .split_whitespace()
                .nth(4)
                .map(str::to_owned);
            if !stat.is_empty() {
                assert_eq!(session, Some(releaser.to_string()), "{stat}");
            }
            // Its eBPF objects, and the pipe whose end tells it pmap-trace is gone.
            let others: Vec<_> = std::fs::read_dir(format!("/proc/{releaser}/fd"))
                .map(|fds| {
                    fds.flatten()
                        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                        .filter(|target| !target.to_string_lossy().starts_with("anon_inode:"))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                others.len() <= 1
                    && others.iter().all(|target| {
                        target.to_string_lossy().starts_with("pipe:")
                            && !output_pipes.contains(target)
                    }),
                "the releasing process holds more than eBPF objects: {others:?} (pmap-trace's output: {output_pipes:?})"
            );
        }
    }
    assert_nothing_left_since(&loaded_before);
}

#[test]
fn dump_on_sigusr1_equals_pmap_and_target_exit_ends_the_session() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&["--no-events", "-p", &pid.to_string()]);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let dump = tracer.read_dump();
    assert_same_text("SIGUSR1 dump", &real_pmap(&[], pid), &dump);

    workload.resume();
    assert_eq!(workload.finish(), 0);
    let (code, rest, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    // Each dump of the plain run is followed by its call-site summary.
    assert!(
        rest.starts_with(&format!("sites {pid}: ")),
        "no summary after the dump:\n{rest}"
    );
    let rest = without_site_summaries(&rest);
    assert!(
        rest.starts_with(&format!("{pid}:   ")),
        "no final dump at exit:\n{rest}"
    );
    assert!(
        rest.trim_end().ends_with('K'),
        "final dump incomplete:\n{rest}"
    );
    assert_nothing_left_since(&loaded_before);
}

/// The event lines of the scripted workload's calls, from its start marker to its end marker,
/// without their time of day, under `pmap-trace ARGS -p WORKLOAD`; and the workload's log of
/// what it called (`name arg... = ret`).
fn scripted_event_lines(args: &[&str]) -> (i32, Vec<String>, Vec<String>) {
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&[args, &["-p", &pid.to_string()]].concat());
    workload.go();
    let log = workload.read_until_checkpoint();
    workload.wait_stopped();
    // The markers are calls that fail (EINVAL): nothing changes, and they are easy to find.
    let marker = |addr: u64| format!("munmap({addr:#x}, 0) = -1 EINVAL (Invalid argument)");
    // Read while the workload is stopped: a stack is unwound with the files the process maps,
    // opened through /proc when its first growth is applied, which needs the process alive.
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            tracer.stdout.read_line(&mut line).unwrap() > 0,
            "{lines:#?}"
        );
        let Some((_, event)) = line.trim_end().split_once(' ') else {
            continue;
        };
        if event.ends_with(&marker(START_MARKER)) {
            lines.clear();
        }
        lines.push(event.to_string());
        if event.ends_with(&marker(END_MARKER)) {
            break;
        }
    }
    workload.resume();
    assert_eq!(workload.finish(), 0);
    // The trace ends with its only target.
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "{err}");
    (pid, lines, log)
}

/// What the workload's call `i` returned, as its log says (`-errno` for a failure).
fn logged_ret(log: &[String], i: usize) -> i64 {
    log[i].rsplit(' ').next().unwrap().parse().unwrap()
}

/// The lines pmap-trace printed for the scripted workload's calls before call sites were on by
/// default, written out as a reader sees them; the addresses and results come from the
/// workload's log (some calls fail on some machines: a file opened write-only cannot be mapped
/// for reading, a guard page next to a fresh mapping may find it taken).
fn scripted_lines_without_sites(pid: i32, log: &[String]) -> Vec<String> {
    let result = |i: usize| match logged_ret(log, i) {
        -9 => "-1 EBADF (Bad file descriptor)".to_string(),
        -13 => "-1 EACCES (Permission denied)".to_string(),
        -17 => "-1 EEXIST (File exists)".to_string(),
        -22 => "-1 EINVAL (Invalid argument)".to_string(),
        ret if ret < 0 => panic!("add errno {} to the test", -ret),
        0 => "0".to_string(),
        ret => format!("{ret:#x}"),
    };
    let fd: i64 = log[4].split(' ').nth(5).unwrap().parse().unwrap();
    let [a, brk, b] = [1, 5, 8].map(|i| logged_ret(log, i) as u64);
    const P: u64 = 4096;
    // The path of a file mapping is known once it is mapped.
    let file = match logged_ret(log, 4) {
        ret if ret < 0 => String::new(),
        _ => format!(
            "<{}>",
            std::env::temp_dir()
                .join(format!("pmap-workload-{pid}.bin"))
                .display()
        ),
    };
    let rw_anon = "PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0";
    let calls = [
        format!("munmap({START_MARKER:#x}, 0)"),
        format!("mmap(NULL, 65536 (64K), {rw_anon})"),
        format!("mprotect({:#x}, 16384 (16K), PROT_READ)", a + 4 * P),
        format!("munmap({:#x}, 16384 (16K))", a + 12 * P),
        format!("mmap(NULL, 12288 (12K), PROT_READ, MAP_PRIVATE, {fd}{file}, 0x1000)"),
        "brk(NULL)".to_string(),
        format!("brk({:#x})", brk + 64 * P),
        format!("brk({:#x})", brk + 32 * P),
        format!("mmap(NULL, 8192 (8K), {rw_anon})"),
        format!(
            "mmap({:#x}, 4096 (4K), PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, \
             -1, 0x0)",
            b + 2 * P
        ),
        format!("mremap({b:#x}, 8192 (8K), 32768 (32K), MREMAP_MAYMOVE)"),
        format!("madvise({a:#x}, 4096 (4K), MADV_DONTFORK)"),
        format!("mlock({:#x}, 4096 (4K))", a + 8 * P),
        format!(
            "mmap({:#x}, 8192 (8K), PROT_READ, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0x0)",
            a + 9 * P
        ),
        format!("munmap({:#x}, 4096 (4K))", a + 1),
        "mmap(NULL, 4096 (4K), PROT_READ, MAP_PRIVATE, 999, 0x0)".to_string(),
        format!("munmap({END_MARKER:#x}, 0)"),
    ];
    assert_eq!(calls.len(), log.len(), "the script changed: {log:#?}");
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| format!("{pid}/{pid} pmap-workload {call} = {}", result(i)))
        .collect()
}

#[test]
fn no_sites_prints_the_event_lines_of_before_and_the_plain_run_names_each_growth_site() {
    if !require_root() {
        return;
    }
    let (pid, lines, log) = scripted_event_lines(&["--no-sites"]);
    assert_eq!(lines, scripted_lines_without_sites(pid, &log));

    // The plain run: the same lines, each call that grew anonymous memory ending with the
    // program's frame that made it (the workload calls `syscall` from `Script::call`; libc's
    // wrapper is folded away). A file mapping, a lowered break and a failure grew nothing.
    let (pid, lines, log) = scripted_event_lines(&[]);
    // The line of `Script::call` that makes the call, read from the workload's source so an
    // edit to it does not break this test.
    let source = include_str!("../src/bin/pmap-workload.rs");
    let call_line = 1 + source
        .lines()
        .position(|l| l.contains("let ret = unsafe { libc::syscall(nr,"))
        .expect("Script::call makes its call with libc::syscall");
    let site = format!(" <- pmap_workload::Script::call (pmap-workload.rs:{call_line})");
    // The anonymous mmaps, the raised break, the grown mremap; when they succeeded.
    let grew = |i: usize| [1, 6, 8, 9, 10, 13].contains(&i) && logged_ret(&log, i) >= 0;
    let expected: Vec<String> = scripted_lines_without_sites(pid, &log)
        .into_iter()
        .enumerate()
        .map(|(i, line)| if grew(i) { line + &site } else { line })
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn json_mode_streams_decoded_calls_and_dumps_with_pmap_totals() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&["--json", "-p", &pid.to_string()]);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    let expected = real_pmap(&[], pid);
    tracer.signal(libc::SIGUSR1);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(tracer.stdout.read_line(&mut line).unwrap() > 0);
        let value: Value = serde_json::from_str(&line).unwrap();
        let done = value["type"] == "dump";
        lines.push(value);
        if done {
            break;
        }
    }
    workload.resume();
    workload.finish();
    let (code, _, _) = tracer.finish();
    assert_eq!(code, 0);

    let dump = lines.last().unwrap();
    let total: u64 = expected
        .lines()
        .last()
        .and_then(|l| l.trim().strip_prefix("total"))
        .and_then(|t| t.trim().trim_end_matches('K').parse().ok())
        .unwrap();
    assert_eq!(dump["total_kbytes"], total);
    assert_eq!(dump["pid"], pid);
    let rows = dump["mappings"].as_array().unwrap();
    assert_eq!(rows.len(), expected.lines().count() - 2);
    let mprotect = lines
        .iter()
        .find(|l| l["call"] == "mprotect" && l["pid"] == pid)
        .expect("mprotect event");
    assert_eq!(mprotect["args"]["prot"], serde_json::json!(["PROT_READ"]));
    assert_eq!(mprotect["ret"], 0);
    assert_eq!(mprotect["errno"], Value::Null);
    let failed = lines
        .iter()
        .find(|l| l["call"] == "mmap" && l["args"]["fd"] == 999)
        .expect("failing mmap event");
    assert_eq!(failed["errno"], "EBADF");
    for field in ["time", "timestamp_ns", "pid", "tid", "comm", "type"] {
        assert!(!mprotect[field].is_null(), "missing {field}");
    }
}

#[test]
fn launch_mode_sees_the_loader_passes_stdio_through_and_returns_the_exit_status() {
    if !require_root() {
        return;
    }
    let log = std::env::temp_dir().join(format!("pmap-trace-launch-{}.jsonl", std::process::id()));
    let mut child = Command::new(pmap_trace_exe())
        .args(["--json", "-o"])
        .arg(&log)
        .args(["--", "sh", "-c", "read x; echo \"got $x\"; exit 7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The shell waits for its input, so it is alive while pmap-trace looks up the files it
    // mapped; give it the input once the loader's libc mapping is in the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("/libc.so.6")
    {
        assert!(Instant::now() < deadline, "no mmap of libc.so.6 logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    let lines = json_lines(&std::fs::read_to_string(&log).unwrap());
    std::fs::remove_file(&log).unwrap();
    assert_eq!(
        lines[0]["type"], "exec",
        "first record is the exec: {}",
        lines[0]
    );
    let loader_mapped_libc = lines.iter().any(|l| {
        l["call"] == "mmap"
            && l["args"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/libc.so.6"))
    });
    assert!(
        loader_mapped_libc,
        "the dynamic loader's mmap of libc was not seen"
    );
    // The last dump, then its call sites (a summary: no --sites N).
    let [.., dump, sites] = &lines[..] else {
        panic!("no dump")
    };
    assert_eq!(
        (&dump["type"], &sites["type"]),
        (&"dump".into(), &"sites".into())
    );
    assert_eq!(sites["summary"], true);
}

#[test]
fn follow_traces_forked_children_from_their_first_call() {
    if !require_root() {
        return;
    }
    let run = |follow: bool| {
        let mut args = vec!["--json"];
        if follow {
            args.push("-f");
        }
        args.extend(["--", "sh", "-c", "/bin/true; exit 0"]);
        let out = Command::new(pmap_trace_exe()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        json_lines(&String::from_utf8(out.stdout).unwrap())
    };
    let followed = run(true);
    let shell = followed[0]["pid"].clone();
    let child_exec = followed
        .iter()
        .find(|l| l["type"] == "exec" && l["pid"] != shell)
        .expect("the child's exec is traced with -f");
    let child = child_exec["pid"].clone();
    let fork = followed
        .iter()
        .find(|l| l["type"] == "fork")
        .expect("fork record");
    assert_eq!(fork["child"], child);
    let child_maps = followed
        .iter()
        .filter(|l| l["pid"] == child && l["call"] == "mmap")
        .count();
    assert!(
        child_maps >= 5,
        "the child's loader mmaps were missed ({child_maps})"
    );

    let alone = run(false);
    let shell = alone[0]["pid"].clone();
    assert!(
        alone
            .iter()
            .all(|l| l["pid"] == shell || l["type"] == "dump"),
        "without -f only the shell is traced"
    );
}

#[test]
fn follow_with_a_pid_takes_the_grandchildren_it_already_has() {
    if !require_root() {
        return;
    }
    // sh -> sh (a subshell) -> sleep, and sh -> sleep.
    let mut shell = Command::new("sh")
        .args(["-c", "(sleep 30 & wait) & sleep 30 & echo started; wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = String::new();
    std::io::BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut started)
        .unwrap();
    let pid = shell.id() as i32;
    let tree = |pid: i32| -> Vec<i32> {
        let mut all = Vec::new();
        let mut pending = vec![pid];
        while let Some(p) = pending.pop() {
            let children = pmap_trace::procfs::process::children_of(p);
            all.extend(&children);
            pending.extend(children);
        }
        all
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tree(pid).len() < 3 {
        assert!(Instant::now() < deadline, "the shell did not fork its tree");
        std::thread::sleep(Duration::from_millis(10));
    }
    let descendants = tree(pid);
    let tracer = Tracer::attach(&["-f", "-p", &pid.to_string()]);
    assert_eq!(
        tracer.attached.trim_end(),
        format!("pmap-trace: attached to {pid} (sh) and 3 descendants")
    );
    for &p in descendants.iter().chain([&pid]) {
        // SAFETY: signals to the processes this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    shell.wait().unwrap();
    let (code, out, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    for p in descendants {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!(" {p}/")) && l.ends_with("+++ exited +++")),
            "no exit of {p} in:\n{out}"
        );
        assert!(out.contains(&format!("\n{p}:   ")), "no final dump of {p}");
    }
}

#[test]
fn sigterm_and_sigint_give_a_final_dump_and_exit_zero() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let mut sleeper = Sleeper::start();
        let pid = sleeper.pid();
        let tracer = Tracer::attach(&["-p", &pid.to_string()]);
        tracer.signal(signal);
        let (code, out, err) = tracer.finish();
        assert_eq!(code, 0, "signal {signal}: {err}");
        assert_same_text("final dump", &real_pmap(&[], pid), &last_dump(&out, pid));
        sleeper.end();
        assert_nothing_left_since(&loaded_before);
    }
}

#[test]
fn sigquit_stops_as_the_other_stop_signals_do() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    // Attached: the final dump, and exit 0.
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let tracer = Tracer::attach(&["-p", &pid.to_string()]);
    tracer.signal(libc::SIGQUIT);
    let (code, out, err) = tracer.finish();
    assert_eq!(code, 0, "{err}");
    assert_same_text("final dump", &real_pmap(&[], pid), &last_dump(&out, pid));
    sleeper.end();

    // Launched: passed on to the command, whose death is the exit status.
    let mut command = Command::new(pmap_trace_exe());
    command.args(["--", "sleep", "30"]);
    let tracer = Tracer::attach_command(command);
    let pid: i32 = tracer.attached_pid();
    tracer.signal(libc::SIGQUIT);
    let (code, out, err) = finish_then_check_gone(tracer, pid);
    assert_eq!(code, 128 + libc::SIGQUIT, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&format!(" {pid}/")) && l.contains("+++ killed by SIGQUIT")),
        "{out}"
    );
    assert!(out.contains(&format!("\n{pid}:   ")), "final dump: {out}");
    assert_nothing_left_since(&loaded_before);
}

/// Counts the SIGINTs and SIGTERMs it gets (`got SIGNAL (N)` on stdout), after printing
/// `ready`. Given an argument, it keeps running; else, half a second after the first (time for
/// a second to come, and be counted), it dies of that signal. Each line is one write(2): the
/// counter shares its output with pmap-trace's in launch mode, and `print` writes a line and its
/// newline apart when PYTHONUNBUFFERED is set, so an event line could land between them
/// (`ready{"args":…}`, and the test waited for `ready` for ever).
const SIGNAL_COUNTER: &str = r#"
import os, signal, sys, time
got = []
def count(number, frame):
    got.append(number)
    os.write(1, f"got {signal.Signals(number).name} ({len(got)})\n".encode())
signal.signal(signal.SIGINT, count)
signal.signal(signal.SIGTERM, count)
os.write(1, b"ready\n")
while not got or len(sys.argv) > 1:
    time.sleep(0.01)
time.sleep(0.5)
signal.signal(got[0], signal.SIG_DFL)
os.kill(os.getpid(), got[0])
"#;

/// `pmap-trace --no-sites ARGS -- python3 -c SIGNAL_COUNTER COUNTER_ARGS`, once the counter is
/// ready: the tracer, the counter's PID and the output so far. The test reads no more output
/// until pmap-trace has ended, so python's start-up must fit the pipe: without call sites' line
/// suffixes it does (with them pmap-trace blocked on its output and never saw the signal).
fn launch_signal_counter(args: &[&str], counter_args: &[&str]) -> (Tracer, i32, String) {
    let mut command = Command::new(pmap_trace_exe());
    command
        .arg("--no-sites")
        .args(args)
        .args(["--", "/usr/bin/python3", "-c", SIGNAL_COUNTER])
        .args(counter_args);
    let mut tracer = Tracer::attach_command(command);
    let pid: i32 = tracer.attached_pid();
    let mut seen = String::new();
    while !seen.ends_with("ready\n") {
        let mut line = String::new();
        assert!(tracer.stdout.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    (tracer, pid, seen)
}

/// Waits (up to 20 s) for pmap-trace, which launched `command`, to exit, then checks that the
/// command is gone too: it shares pmap-trace's output, which ends only when both are gone
/// (a command left behind is killed, and the test fails). Exit code, stdout and stderr.
fn finish_then_check_gone(mut tracer: Tracer, command: i32) -> (i32, String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tracer.child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = tracer.child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let left_behind = !ends_soon(command);
    if left_behind {
        // SAFETY: a process this test started (through pmap-trace).
        unsafe { libc::kill(command, libc::SIGKILL) };
    }
    let finished = tracer.finish();
    assert!(
        !left_behind,
        "pmap-trace exited ({}) and left the command running; stderr: {}",
        finished.0, finished.2
    );
    finished
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet), waiting up to 5 s for it.
fn ends_soon(pid: i32) -> bool {
    ends_soon_within(pid, Duration::from_secs(5))
}

#[test]
fn a_signal_to_pmap_trace_alone_is_passed_on_to_the_command_whose_death_ends_the_trace() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let name = if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        let (tracer, pid, before) = launch_signal_counter(&[], &[]);
        tracer.signal(signal);
        let (code, out, err) = finish_then_check_gone(tracer, pid);
        let out = before + &out;
        assert_eq!(code, 128 + signal, "{name}: stderr: {err}\n{out}");
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("got "))
                .collect::<Vec<_>>(),
            [format!("got {name} (1)")],
            "the command gets the signal once"
        );
        assert!(
            out.lines().any(|l| l.contains(&format!(" {pid}/"))
                && l.ends_with(&format!("+++ killed by {name} +++"))),
            "{out}"
        );
        assert!(
            out.contains(&format!("\n{pid}:   ")) && out.trim_end().ends_with('K'),
            "final dump: {out}"
        );
    }

    // In JSON, the exit record says how it ended.
    let (tracer, pid, before) = launch_signal_counter(&["--json"], &[]);
    tracer.signal(libc::SIGINT);
    let (code, out, _) = finish_then_check_gone(tracer, pid);
    assert_eq!(code, 130);
    let lines = json_lines(
        &(before + &out)
            .replace("ready\n", "")
            .replace("got SIGINT (1)\n", ""),
    );
    let exit = lines
        .iter()
        .find(|l| l["type"] == "exit" && l["pid"] == pid)
        .expect("exit record");
    assert_eq!(exit["killed_by"], "SIGINT");
    assert_eq!(exit["exit_code"], Value::Null);
    assert_nothing_left_since(&loaded_before);
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once_and_pmap_trace_exits_with_its_death() {
    if !require_root() {
        return;
    }
    // `script` runs pmap-trace on a terminal of its own and relays our pipe into it: a ^C
    // written there is the terminal's SIGINT to its foreground process group, pmap-trace
    // and the command in it.
    let command = format!(
        "{} -- /usr/bin/python3 -c '{}'",
        pmap_trace_exe().display(),
        SIGNAL_COUNTER.replace('\'', "\"")
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(script.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("ready") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended early:\n{seen}"
        );
        seen.push_str(&line.replace('\r', ""));
    }
    let pid: i32 = seen[seen.find("attached to ").unwrap() + 12..]
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap();
    use std::io::{Read, Write};
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    drop(stdin);
    let status = script.wait().unwrap();
    let out = seen + &rest.replace('\r', "");
    assert_eq!(status.code(), Some(130), "{out}");
    // The terminal echoes the ^C before the command's line.
    assert_eq!(
        out.lines()
            .map(|l| l.trim_start_matches("^C"))
            .filter(|l| l.starts_with("got "))
            .collect::<Vec<_>>(),
        ["got SIGINT (1)"],
        "the terminal's SIGINT reaches the command once, not again from pmap-trace"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(&format!(" {pid}/")) && l.ends_with("+++ killed by SIGINT +++")),
        "{out}"
    );
    assert!(out.contains(&format!("\n{pid}:   ")), "final dump: {out}");
    assert!(ends_soon(pid), "the command was left behind");
}

#[test]
fn a_second_signal_stops_waiting_for_a_command_that_outlives_the_first_and_says_so() {
    if !require_root() {
        return;
    }
    let (tracer, pid, _) = launch_signal_counter(&["--no-events"], &["keep running"]);
    let _command = KilledOnDrop(pid);
    tracer.signal(libc::SIGTERM);
    // A repeat within a second is the same request (timeout(1) sends two).
    std::thread::sleep(Duration::from_millis(100));
    tracer.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        tracer.child.id() > 0 && !ends_soon_within(tracer.child.id() as i32, Duration::ZERO),
        "pmap-trace ended at a repeat of the first signal"
    );
    tracer.signal(libc::SIGTERM);
    // The command shares pmap-trace's output: it ends only when the command is gone too.
    let mut tracer = tracer;
    let code = tracer.child.wait().unwrap().code();
    // Left running, as said; the test ends it.
    assert!(!ends_soon_within(pid, Duration::ZERO));
    // SAFETY: a process this test started (through pmap-trace).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(ends_soon(pid));
    let (_, out, err) = tracer.finish();
    assert_eq!(code, Some(128 + libc::SIGTERM), "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("got "))
            .collect::<Vec<_>>(),
        ["got SIGTERM (1)"],
        "only the first is passed on"
    );
    assert!(out.contains(&format!("{pid}:   ")), "final dump: {out}");
    assert_eq!(
        err.trim_end(),
        format!(
            "pmap-trace: stopped waiting at a second SIGTERM: {pid} (python3) still running, no \
             longer traced"
        )
    );
}

/// A process the test started through pmap-trace, killed if the test ends before it does.
struct KilledOnDrop(i32);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        // SAFETY: signals a process this test started; a PID gone already is not reused this
        // soon.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Whether `pid` is gone (or a zombie) within `limit`.
fn ends_soon_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat[stat.rfind(')').unwrap() + 2..].starts_with('Z') => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn interval_dumps_repeat_and_output_can_go_to_a_file() {
    if !require_root() {
        return;
    }
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let path = std::env::temp_dir().join(format!("pmap-trace-interval-{}.txt", std::process::id()));
    let tracer = Tracer::attach(&[
        "--interval",
        "0.2",
        "-o",
        path.to_str().unwrap(),
        "-p",
        &pid.to_string(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let count_dumps = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .matches(" total ")
            .count()
    };
    while count_dumps() < 3 {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 interval dumps in 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tracer.signal(libc::SIGINT);
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    assert!(out.is_empty(), "with -o nothing goes to stdout: {out}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_same_text(
        "interval dump",
        &real_pmap(&[], pid),
        &last_dump(&text, pid),
    );
    std::fs::remove_file(&path).unwrap();
    sleeper.end();
}

#[test]
fn a_full_ring_is_counted_reported_and_the_table_resynchronised() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "churn", &["100000"]);
    let pid = workload.pid();
    assert_eq!(workload.read_line(), "ready");
    let mut tracer = Tracer::attach(&["--ring-size", "4K", "-p", &pid.to_string()]);
    workload.go();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let output = tracer.read_dump();
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("pmap-trace: ") && l.contains("records lost")),
        "lost records were not reported"
    );
    // Each re-read says what it changed: counts, then the lines themselves.
    let reread = format!("pmap-trace: re-read {pid}: ");
    let lines: Vec<&str> = output.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&reread))
        .unwrap_or_else(|| panic!("no re-read report:\n{output}"));
    let report = lines[at];
    let counts: Vec<usize> = report[reread.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let details: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("pmap-trace:   "))
        .copied()
        .collect();
    let listed = |label: &str| {
        details
            .iter()
            .filter(|l| l.starts_with(&format!("pmap-trace:   {label}")) && !l.contains(" more"))
            .count()
    };
    assert_eq!(counts.len(), 2, "{report}");
    assert_eq!(listed("stale:").min(10), counts[0].min(10), "{output}");
    assert_eq!(listed("missing:").min(10), counts[1].min(10), "{output}");
    assert_same_text(
        "dump after loss",
        &real_pmap(&[], pid),
        &last_dump(&output, pid),
    );
    workload.resume();
    workload.finish();
    assert_eq!(tracer.finish().0, 0);
}

#[test]
fn a_launched_command_whose_exit_record_was_lost_still_ends_the_trace() {
    if !require_root() {
        return;
    }
    // pmap-trace is stopped while the command fills the 4 KiB ring and exits: its exit record
    // finds no room. Its parent being pmap-trace, it stays a zombie until pmap-trace looks.
    let script = "import mmap, sys\nprint('ready', flush=True)\nsys.stdin.readline()\n\
                  for _ in range(500): mmap.mmap(-1, 4096).close()\n";
    let mut command = Command::new(pmap_trace_exe());
    command.args([
        "--no-sites",
        "--ring-size",
        "4K",
        "--no-events",
        "--",
        "/usr/bin/python3",
        "-c",
        script,
    ]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // The command's start fills the ring too: notices come first.
    let mut line = String::new();
    while line != "ready\n" {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0);
    }
    let tracer = child.id() as i32;
    let python = pmap_trace::procfs::process::children_of(tracer)[0];
    let _python = KilledOnDrop(python);
    // SAFETY: signals to processes this test started.
    unsafe { libc::kill(tracer, libc::SIGSTOP) };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pmap_trace::procfs::process::has_exited(python) {
        assert!(Instant::now() < deadline, "the command did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: as above.
    unsafe { libc::kill(tracer, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pmap-trace waits forever for the exit record it lost");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.contains("records lost"), "{rest}");
    assert!(
        rest.contains(&format!("{python}:   ")) && rest.trim_end().ends_with('K'),
        "final dump: {rest}"
    );
}

#[test]
fn debug_bpf_forwards_kernel_side_diagnostics() {
    if !require_root() {
        return;
    }
    let out = Command::new(pmap_trace_exe())
        .args([
            "--debug-bpf",
            "-f",
            "-o",
            "/dev/null",
            "--",
            "sh",
            "-c",
            "/bin/true; exit 0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forked"),
        "no kernel-side diagnostics on stderr:\n{err}"
    );
    let quiet = Command::new(pmap_trace_exe())
        .args([
            "-f",
            "-o",
            "/dev/null",
            "--",
            "sh",
            "-c",
            "/bin/true; exit 0",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("forked"));
}

#[test]
fn bad_input_gets_one_clear_line_and_a_nonzero_exit() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "abc"], "invalid PID 'abc'"),
        (&["-p", "2147483647"], "no such process: 2147483647"),
        (&["-p", "2"], "kernel thread"),
        (&[], "no target"),
        (&["--bogus"], "--bogus"),
        (&["-p", "1", "--", "true"], "cannot be combined"),
        (
            &["-p", "1", "-o", "/nonexistent-dir/out"],
            "cannot write output file",
        ),
        (&["-p", "1", "--ring-size", "3M"], "invalid --ring-size"),
        (&["-p", "1", "--interval", "0"], "invalid --interval"),
        (&["demo", "-p", "1"], "drop -p"),
        (
            &["--", "/nonexistent/program"],
            "cannot start /nonexistent/program",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(pmap_trace_exe()).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?} succeeded");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("pmap-trace: attached"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?} printed {} lines:\n{err}",
            lines.len()
        );
        assert!(lines[0].starts_with("pmap-trace: "), "{args:?}: {err}");
        assert!(
            lines[0].contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    assert_nothing_left_since(&loaded_before);
}

#[test]
fn a_key_press_on_the_terminal_dumps() {
    if !require_root() {
        return;
    }
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    // `script` gives pmap-trace a terminal on its stdin and relays our pipe into it.
    let command = format!("{} --no-events -p {pid}", pmap_trace_exe().display());
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(script.stdout.take().unwrap());
    let mut read_until = |marker: &str| {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "ended early:\n{seen}"
            );
            seen.push_str(&line.replace('\r', ""));
            if line.contains(marker) {
                return seen;
            }
        }
    };
    read_until("attached to");
    use std::io::Write;
    for key in ["d", "\n"] {
        stdin.write_all(key.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let dump = read_until(" total ");
        assert_same_text(
            "key press dump",
            &real_pmap(&[], pid),
            &last_dump(&dump, pid),
        );
    }
    sleeper.end();
    read_until(" total ");
    drop(stdin);
    assert!(script.wait().unwrap().success());
}

#[test]
fn a_closed_output_pipe_ends_the_trace_quietly() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    let mut tracer = Command::new(pmap_trace_exe())
        .args([
            "-f",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do /bin/true; done; sleep 1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(tracer.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let out = tracer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "only the attached line: {err}");
    assert_nothing_left_since(&loaded_before);
}

#[test]
fn a_closed_output_pipe_leaves_no_launched_command_behind_and_its_status_is_the_exit_status() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    // Calls after the reader has gone, then a second in which the command still runs.
    let script = "sleep 0.5; for i in 1 2 3; do /bin/true; done; sleep 1; exit 7";
    let mut tracer = Command::new(pmap_trace_exe())
        .args(["-f", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut attached = String::new();
    stderr.read_line(&mut attached).unwrap();
    let command: i32 = attached_pid(&attached);
    let mut stdout = std::io::BufReader::new(tracer.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let status = tracer.wait().unwrap();
    let left_behind = !ends_soon_within(command, Duration::ZERO);
    if left_behind {
        // SAFETY: a process this test started (through pmap-trace).
        unsafe { libc::kill(command, libc::SIGKILL) };
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    assert!(
        !left_behind,
        "pmap-trace exited ({status}) with the command still running"
    );
    assert_eq!(status.code(), Some(7), "stderr: {err}");
    assert_eq!(err, "", "nothing said after the attached line");
    assert_nothing_left_since(&loaded_before);
}

#[test]
fn a_zombie_is_refused() {
    if !require_root() {
        return;
    }
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .contains(") Z")
    {
        assert!(Instant::now() < deadline, "child did not become a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new(pmap_trace_exe())
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        err.trim_end(),
        format!(
            "pmap-trace: PID {pid} is a zombie: it has exited and has no address space left to trace"
        )
    );
    child.wait().unwrap();
}

#[test]
fn missing_capabilities_are_named() {
    if !require_root() {
        return;
    }
    let mut sleeper = Sleeper::start();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(pmap_trace_exe())
        .args(["-p", &sleeper.pid().to_string()])
        .output()
        .unwrap();
    sleeper.end();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        err.trim_end(),
        "pmap-trace: missing capabilities CAP_BPF and CAP_PERFMON: run pmap-trace as root (sudo) \
         or grant them with `setcap cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep`"
    );
}

#[test]
fn a_short_lived_process_still_names_the_files_it_mapped() {
    if !require_root() {
        return;
    }
    // The process maps a file and exits at once: by the time its events are handled the
    // mapping is gone, and the name comes from what the kernel recorded at the call.
    let name = format!("pmap-trace-short-{}.bin", std::process::id());
    let path = std::env::temp_dir().join(&name);
    std::fs::write(&path, vec![7u8; 8192]).unwrap();
    let script = format!(
        "import mmap; f = open({:?}, 'rb'); m = mmap.mmap(f.fileno(), 8192, prot=mmap.PROT_READ)",
        path.display()
    );
    let out = Command::new(pmap_trace_exe())
        .args(["--json", "--", "python3", "-c", &script])
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&String::from_utf8(out.stdout).unwrap());
    let mapped = lines
        .iter()
        .filter(|l| l["call"] == "mmap" && l["args"]["len"] == 8192)
        .filter_map(|l| l["args"]["path"].as_str())
        .collect::<Vec<_>>();
    assert!(
        mapped.iter().any(|p| *p == path.to_str().unwrap()),
        "the file was not named by its whole path: {mapped:?}"
    );
}

/// `pmap-trace snapshot PID` and `pmap PID` run by `wrapper` (a command line that execs
/// what follows it): pmap-trace's stderr, after checking that both were refused.
fn refused_snapshot(wrapper: &[&str], pid: i32) -> String {
    let run = |program: &std::path::Path, args: &[&str]| {
        Command::new(wrapper[0])
            .args(&wrapper[1..])
            .arg(program)
            .args(args)
            .arg(pid.to_string())
            .current_dir("/")
            .output()
            .unwrap()
    };
    let pmap = run(std::path::Path::new("/usr/bin/pmap"), &[]);
    assert_eq!(pmap.status.code(), Some(1), "pmap was not refused");
    let ours = run(&pmap_trace_exe(), &["snapshot"]);
    assert_eq!(ours.status.code(), Some(1));
    let err = String::from_utf8(ours.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "pmap-trace: cannot read /proc/{pid}/maps: permission denied (EACCES): "
        )),
        "{err}"
    );
    err
}

const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
];

#[test]
fn a_refused_snapshot_says_what_was_denied_and_why() {
    if !require_root() {
        return;
    }
    // Another user's process, without CAP_SYS_PTRACE.
    let sleeper = Sleeper::start();
    let err = refused_snapshot(AS_NOBODY, sleeper.pid());
    assert!(
        err.contains("the process runs as root (uid 0) and pmap-trace as nobody (uid 65534), without CAP_SYS_PTRACE: run pmap-trace as root (sudo), or grant it CAP_SYS_PTRACE"),
        "{err}"
    );

    // A process of the same user that made itself undumpable.
    let mut undumpable = Command::new("setpriv")
        .args(&AS_NOBODY[1..])
        .args([
            "/usr/bin/python3",
            "-c",
            "import ctypes, sys; ctypes.CDLL(None).prctl(4, 0); print('ready', flush=True); sys.stdin.readline()",
        ])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(undumpable.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    let err = refused_snapshot(AS_NOBODY, undumpable.id() as i32);
    drop(undumpable.stdin.take());
    undumpable.wait().unwrap();
    assert!(
        err.contains("the process is not dumpable (") && err.contains("no CAP_SYS_PTRACE"),
        "{err}"
    );

    // Root in a user namespace of its own: its capabilities do not reach the host's process.
    let err = refused_snapshot(&["unshare", "--user", "--map-root-user"], sleeper.pid());
    assert!(
        err.contains("the process is outside pmap-trace's user namespace"),
        "{err}"
    );

    // Root with CAP_SYS_PTRACE refused all the same: a security module or kernel policy (PID 1
    // of this test machine, whose kernel protects it; elsewhere root reads PID 1).
    let pmap_reads_init = Command::new("pmap")
        .arg("1")
        .output()
        .unwrap()
        .status
        .success();
    if !pmap_reads_init {
        let err = refused_snapshot(&["env"], 1);
        assert!(
            err.contains("pmap-trace has CAP_SYS_PTRACE, which passes the kernel's own ptrace rules, so a security module"),
            "{err}"
        );
    }
}

/// Maps one POSIX shared memory segment (shm_open, as glibc names it under /dev/shm) twice,
/// the first mapping unmapped at once and its address taken by anonymous memory, so that by
/// the time pmap-trace handles the call the kernel has nothing left to say about it; then the
/// same once the segment is unlinked.
const SHM_TWICE: &str = r#"
import mmap, os, sys, _posixshmem
name = sys.argv[1]
fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
os.ftruncate(fd, 1 << 20)
kept = []
for _ in range(2):
    first = mmap.mmap(fd, 1 << 20)
    first.close()
    kept.append(mmap.mmap(-1, 1 << 20))
    kept.append(mmap.mmap(fd, 1 << 20))
    if len(kept) == 2:
        _posixshmem.shm_unlink(name)
print("mapped", flush=True)
sys.stdin.readline()
"#;

#[test]
fn a_shared_memory_segment_has_one_name_whether_or_not_it_is_still_mapped() {
    if !require_root() {
        return;
    }
    let name = format!("pmap-trace-shm-{}", std::process::id());
    let mut tracer = Command::new(pmap_trace_exe())
        .args(["--json", "--", "/usr/bin/python3", "-c", SHM_TWICE])
        .arg(format!("/{name}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(tracer.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{lines:#?}");
        if line == "mapped\n" {
            break;
        }
        lines.push(line);
    }
    // Keep it running a while, so that the second mappings are live when they are handled.
    std::thread::sleep(Duration::from_millis(200));
    drop(tracer.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(tracer.wait().unwrap().code(), Some(0));
    let text = lines.concat() + &rest;
    let paths: Vec<String> = json_lines(&text)
        .iter()
        .filter(|l| l["call"] == "mmap" && l["args"]["flags"] == serde_json::json!(["MAP_SHARED"]))
        .filter_map(|l| l["args"]["path"].as_str().map(str::to_owned))
        .filter(|path| path.contains(&name))
        .collect();
    // Each as it was at the call: the second pair was mapped after the unlink.
    let live = format!("/dev/shm/{name}");
    let unlinked = format!("/dev/shm/{name} (deleted)");
    assert_eq!(
        paths,
        [&live, &live, &unlinked, &unlinked].map(String::as_str),
        "{text}"
    );
}

/// Runs pmap-trace as user nobody with exactly `caps` (setpriv names, e.g. "bpf").
fn as_nobody_with(caps: &[&str], args: &[&str]) -> Command {
    let list = caps
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(pmap_trace_exe())
        .args(args);
    command
}

#[test]
fn capabilities_without_root_are_enough_and_a_missing_one_is_named() {
    if !require_root() {
        return;
    }
    let mut sleeper = Sleeper::start();
    let pid = sleeper.pid();
    let pid_arg = pid.to_string();
    let enough = ["bpf", "perfmon", "sys_ptrace", "dac_read_search"];
    let mut tracer = as_nobody_with(&enough, &["--no-events", "-p", &pid_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("pmap-trace: attached to"), "{line}");
    // SAFETY: signal to our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let out = tracer.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_same_text(
        "dump without root",
        &real_pmap(&[], pid),
        &last_dump(&text, pid),
    );

    let out = as_nobody_with(&enough[..3], &["-p", &pid_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "pmap-trace: cannot read /sys/kernel/tracing (tracefs is readable by root only): run \
         pmap-trace as root or with CAP_DAC_READ_SEARCH"
    );
    sleeper.end();
}

#[test]
fn verify_confirms_the_table_and_raises_the_alarm_on_an_untraced_change() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&[
        "--no-sites",
        "--verify",
        "--no-events",
        "-p",
        &pid.to_string(),
    ]);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    tracer.read_dump();
    let mut line = String::new();
    tracer.stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with(&format!("pmap-trace: verify {pid}: the table matches")),
        "{line}"
    );
    workload.resume();
    workload.finish();
    tracer.finish();

    let mut workload = Workload::start(WORKLOAD, "untraced-merge", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&[
        "--no-sites",
        "--userfaultfd",
        "--verify",
        "--no-events",
        "-p",
        &pid.to_string(),
    ]);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    tracer.read_dump();
    // A second dump: what came between the two is the first one's report.
    tracer.signal(libc::SIGUSR1);
    let text = tracer.read_dump();
    let header = format!("{pid}:   ");
    let report: Vec<&str> = text[..text.find(&header).unwrap()].lines().collect();
    assert!(
        report[0].contains(&format!("verify {pid}: the table DIFFERS")),
        "{report:?}"
    );
    assert_eq!(
        report.iter().filter(|l| l.contains("table only:")).count(),
        3,
        "{report:?}"
    );
    assert_eq!(
        report.iter().filter(|l| l.contains("kernel only:")).count(),
        1,
        "{report:?}"
    );
    // Re-read, so the second dump is exact and verified.
    assert_same_text(
        "dump after the alarm",
        &real_pmap(&[], pid),
        &last_dump(&text, pid),
    );
    let mut line = String::new();
    tracer.stdout.read_line(&mut line).unwrap();
    assert!(line.contains("the table matches"), "{line}");
    workload.resume();
    workload.finish();
    tracer.finish();
}

#[test]
fn userfaultfd_registrations_are_traced_and_the_table_follows_them() {
    if !require_root() {
        return;
    }
    let mut workload = Workload::start(WORKLOAD, "userfaultfd", &[]);
    let pid = workload.pid();
    let mut tracer = Tracer::attach(&[
        "--no-sites",
        "--userfaultfd",
        "--verify",
        "-p",
        &pid.to_string(),
    ]);
    workload.go();
    let mut stream = String::new();
    // Registered middle; a refused mode and half unregistered; all unregistered.
    for step in 1..=3 {
        workload.read_until_checkpoint();
        workload.wait_stopped();
        tracer.signal(libc::SIGUSR1);
        let text = tracer.read_dump();
        let dump = last_dump(&text, pid);
        let kernel = real_pmap(&[], pid);
        assert_same_text(&format!("dump after step {step}"), &kernel, &dump);
        let mut verdict = String::new();
        tracer.stdout.read_line(&mut verdict).unwrap();
        assert!(
            verdict.contains("the table matches"),
            "step {step}: {verdict}"
        );
        stream.push_str(&text);
        workload.resume();
    }
    workload.finish();
    tracer.finish();
    let calls: Vec<&str> = stream.lines().filter(|l| l.contains(" ioctl(")).collect();
    assert_eq!(calls.len(), 4, "{calls:#?}");

    // Without --userfaultfd the ioctl tracepoint is left alone: no ioctl reaches the stream.
    let mut workload = Workload::start(WORKLOAD, "userfaultfd", &[]);
    let pid = workload.pid();
    let tracer = Tracer::attach(&["-p", &pid.to_string()]);
    workload.go();
    for _ in 1..=3 {
        workload.read_until_checkpoint();
        workload.wait_stopped();
        workload.resume();
    }
    workload.finish();
    let (code, out, _) = tracer.finish();
    assert_eq!(code, 0);
    assert!(!out.contains(" ioctl("), "{out}");
    assert!(
        calls[0].contains("UFFDIO_REGISTER, {range={start=0x")
            && calls[0].contains("len=8192 (8K)}, mode=UFFDIO_REGISTER_MODE_MISSING}) = 0"),
        "{}",
        calls[0]
    );
    assert!(
        calls[1].contains("mode=UFFDIO_REGISTER_MODE_MINOR}) = -1 EINVAL"),
        "{}",
        calls[1]
    );
    assert!(
        calls[2].contains("UFFDIO_UNREGISTER, {start=0x") && calls[2].ends_with(") = 0"),
        "{}",
        calls[2]
    );
}

/// Runs pmap-trace against `pid` and gives up (killing it) after `limit`: (exit status,
/// stdout, stderr), status None when it hung.
fn run_with_limit(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(pmap_trace_exe())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output().unwrap();
    (
        status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_pid_that_exits_during_attach_gets_one_line_and_no_hang() {
    if !require_root() {
        return;
    }
    let loaded_before = our_programs();
    // How long attaching takes here, to aim the targets' exits into it.
    let mut sleeper = Sleeper::start();
    let started = Instant::now();
    let tracer = Tracer::attach(&["--no-events", "-p", &sleeper.pid().to_string()]);
    let attach_time = started.elapsed();
    sleeper.end();
    tracer.finish();

    let mut during_attach = 0;
    for step in 1..=12u32 {
        let lifetime = attach_time * step / 12;
        // Odd steps: the test reaps the target at once (it vanishes); even steps: only after
        // pmap-trace is done (it stays a zombie meanwhile).
        let mut target = Command::new("sleep")
            .arg(format!("{:.3}", lifetime.as_secs_f64()))
            .spawn()
            .unwrap();
        let pid = target.id().to_string();
        let mut target_for_zombie = None;
        let reaper = if step % 2 == 1 {
            Some(std::thread::spawn(move || target.wait().map(drop)))
        } else {
            target_for_zombie = Some(target);
            None
        };
        let (status, out, err) =
            run_with_limit(&["--no-events", "-p", &pid], Duration::from_secs(20));
        let lines: Vec<&str> = err.lines().collect();
        match status {
            None => panic!("step {step}: pmap-trace hung on {pid}; stderr: {err}"),
            Some(0) => {
                assert_eq!(lines, [format!("pmap-trace: attached to {pid} (sleep)")]);
                assert!(
                    without_site_summaries(&out).trim_end().ends_with('K'),
                    "step {step}: {out}"
                );
            }
            Some(1) => {
                assert_eq!(lines.len(), 1, "step {step}: {err}");
                if lines[0].contains("exited while pmap-trace was attaching") {
                    during_attach += 1;
                } else {
                    // Gone before pmap-trace looked: refused as any dead PID is.
                    assert!(
                        lines[0].contains("no such process") || lines[0].contains("is a zombie"),
                        "step {step}: {err}"
                    );
                }
            }
            other => panic!("step {step}: exit status {other:?}; stderr: {err}"),
        }
        match reaper {
            Some(reaper) => reaper.join().unwrap().unwrap(),
            None => drop(
                target_for_zombie
                    .take()
                    .map(|mut t: std::process::Child| t.wait()),
            ),
        }
    }
    assert!(
        during_attach > 0,
        "no target exited during the attach ({attach_time:?})"
    );
    assert_nothing_left_since(&loaded_before);
}

/// pmap-trace run with `args` in a private mount namespace, after `prepare` (shell commands)
/// changed what that namespace shows of /sys, and with `caps_dropped` removed from its
/// capability bounding set (setpriv).
fn in_private_mounts(prepare: &str, caps_dropped: &str, args: &[&str]) -> std::process::Output {
    let drop = if caps_dropped.is_empty() {
        String::new()
    } else {
        format!("setpriv --inh-caps={caps_dropped} --bounding-set={caps_dropped} ")
    };
    let script = format!("{prepare} && exec {drop}\"$0\" \"$@\"");
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(pmap_trace_exe())
        .args(args)
        .output()
        .expect("run unshare")
}

#[test]
fn a_kernel_without_btf_and_an_unmounted_tracefs_are_handled() {
    if !require_root() {
        return;
    }
    let sleeper = Sleeper::start();
    let pid = sleeper.pid().to_string();
    let one_line = |out: &std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert_eq!(err.lines().count(), 1, "stderr: {err}");
        err
    };

    // As on a kernel built without BTF: nothing at /sys/kernel/btf/vmlinux.
    let out = in_private_mounts(
        "mount -t tmpfs none /sys/kernel/btf",
        "",
        &["--no-events", "-p", &pid],
    );
    assert_eq!(
        one_line(&out).trim_end(),
        "pmap-trace: the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): pmap-trace \
         needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    );

    // As at boot: tracefs not mounted. Without CAP_SYS_ADMIN pmap-trace cannot mount it.
    let unmount = "umount /sys/kernel/tracing 2>/dev/null; ! grep -q ' /sys/kernel/tracing ' \
                   /proc/self/mountinfo";
    let out = in_private_mounts(unmount, "-sys_admin", &["--no-events", "-p", &pid]);
    assert_eq!(
        one_line(&out).trim_end(),
        "pmap-trace: tracefs is not mounted at /sys/kernel/tracing: run pmap-trace as root so \
         it can mount it, or mount it with `sudo mount -t tracefs nodev /sys/kernel/tracing`"
    );

    // With it, pmap-trace mounts tracefs itself and traces (ended by SIGTERM: `$$` is the
    // shell that execs pmap-trace). The SIGTERM waits until pmap-trace takes it (blocked for its
    // signalfd, or caught): a loaded machine can take more than a second to start it.
    let takes_sigterm = "s=/proc/$$/status; \
                         m=$(( 0x$(sed -n 's/^SigBlk:\t//p' $s) | 0x$(sed -n 's/^SigCgt:\t//p' $s) )); \
                         [ $(( m & 0x4000 )) -ne 0 ]";
    let out = in_private_mounts(
        &format!(
            "{unmount} && {{ (i=0; until {takes_sigterm} || [ $i -ge 600 ]; do sleep 0.05; \
             i=$((i+1)); done; kill -TERM $$) & }}"
        ),
        "",
        &["--no-events", "-p", &pid],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert!(
        err.starts_with(&format!("pmap-trace: attached to {pid}")),
        "{err}"
    );
    assert!(
        without_site_summaries(&String::from_utf8_lossy(&out.stdout))
            .trim_end()
            .ends_with('K'),
        "no final dump"
    );
}

/// The nice value of process `pid` (field 19 of `/proc/PID/stat`).
fn nice_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(16)
        .and_then(|nice| nice.parse().ok())
        .unwrap_or_else(|| panic!("no nice value in {stat}"))
}

/// Waits up to 5 s for process `pid` to run at nice `wanted`; the value it has then.
fn nice_within(pid: i32, wanted: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let nice = nice_of(pid);
        if nice == wanted || Instant::now() > deadline {
            return nice;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// pmap-trace reads its rings at nice -10 so that it keeps up when the CPUs are busy
/// (docs/design.md); the command it launches keeps the priority pmap-trace was started with.
#[test]
fn the_reader_runs_at_a_raised_priority_and_a_launched_command_keeps_its_own() {
    if !require_root() {
        return;
    }
    let mut sleeper = Sleeper::start();
    let tracer = Tracer::attach(&["--no-events", "-p", &sleeper.pid().to_string()]);
    assert_eq!(nice_within(tracer.child.id() as i32, -10), -10);
    tracer.signal(libc::SIGINT);
    assert_eq!(tracer.finish().0, 0);
    sleeper.end();

    // Started at nice 5, the launched command stays there.
    let mut command = Command::new("nice");
    command
        .args(["-n", "5"])
        .arg(pmap_trace_exe())
        .args(["--no-events", "--", "sleep", "30"]);
    let tracer = Tracer::attach_command(command);
    let pid: i32 = tracer.attached_pid();
    assert_eq!(nice_within(tracer.child.id() as i32, -10), -10);
    assert_eq!(nice_of(pid), 5);
    tracer.signal(libc::SIGINT);
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 128 + libc::SIGINT, "{err}");
}
