//! Every pmap format, byte for byte against procps-ng pmap 4.0.2: `pmap-trace snapshot` on live
//! processes of several kinds, and trace-mode dumps of the scripted workload at its stopped
//! checkpoint. Both programs run from private copies of their libraries ([`Isolated`]) so that
//! neither changes the target's Pss, which `-X` prints. Where pmap 4.0.2 has a known bug that
//! pmap-trace fixes as upstream does, the expected output is derived from pmap's own.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_integration_tests::{
    Isolated, Tracer, Workload, assert_same_output, output_of, pmap_trace_exe, require_root,
};
use serde_json::Value;

const PMAP: &str = "/usr/bin/pmap";
const WORKLOAD: &str = env!("CARGO_BIN_EXE_pmap-workload");

fn isolated() -> Isolated {
    Isolated::new(&[Path::new(PMAP), &pmap_trace_exe()])
}

/// pmap's flags and pmap-trace's for the same output (pmap's `-p` is `--show-path`).
const FORMATS: &[(&[&str], &[&str])] = &[
    (&[], &[]),
    (&["-x"], &["-x"]),
    (&["-d"], &["-d"]),
    (&["-X"], &["-X"]),
    (&["-XX"], &["-XX"]),
    (&["-q"], &["-q"]),
    (&["-x", "-q"], &["-x", "-q"]),
    (&["-d", "-q"], &["--device", "--quiet"]),
    (&["-X", "-q"], &["-X", "-q"]),
    (&["-XX", "-q"], &["-XX", "-q"]),
    (&["-p"], &["--show-path"]),
    (&["-x", "-p"], &["--extended", "--show-path"]),
    (&["-d", "-p"], &["-d", "--show-path"]),
    (&["-XX", "-p"], &["-XX", "--show-path"]),
];

fn pmap(iso: &Isolated, args: &[&str], pids: &[i32]) -> Vec<u8> {
    let mut command = iso.command(Path::new(PMAP));
    command.args(args).args(pids.iter().map(i32::to_string));
    output_of(command)
}

fn snapshot(iso: &Isolated, args: &[&str], pids: &[i32]) -> Vec<u8> {
    let mut command = iso.command(&pmap_trace_exe());
    command
        .arg("snapshot")
        .args(args)
        .args(pids.iter().map(i32::to_string));
    output_of(command)
}

/// Compares `pmap PMAP_ARGS PIDS` (through `expected`) with `pmap-trace snapshot OUR_ARGS PIDS`
/// until both give the same output twice running: the targets are stopped, but the machine's
/// other processes may map or unmap pages the targets share.
fn assert_snapshot(
    iso: &Isolated,
    (pmap_args, our_args): (&[&str], &[&str]),
    pids: &[i32],
    expected: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    let what = format!("pmap {} {pids:?}", pmap_args.join(" "));
    let mut last = None;
    for _ in 0..5 {
        let before = snapshot(iso, our_args, pids);
        let want = expected(pmap(iso, pmap_args, pids));
        let after = snapshot(iso, our_args, pids);
        if before == want {
            return;
        }
        if before == after {
            last = Some((want, before));
        }
    }
    let (want, got) = last.unwrap_or_else(|| panic!("{what}: the targets never held still"));
    assert_same_output(&what, &want, &got);
}

fn same(text: Vec<u8>) -> Vec<u8> {
    text
}

/// A child process that sets itself up, says `ready`, and is then stopped; killed on drop.
struct Target(Child);

impl Target {
    fn python(script: &str) -> Target {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "{script}\nimport sys, time\nprint('ready', flush=True)\ntime.sleep(600)"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the python target failed");
        let target = Target(child);
        target.stop();
        target
    }

    fn sleep() -> Target {
        // Caught sleeping in sleep(1) itself, not in the dynamic loader.
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let target = Target(child);
        let exe = format!("/proc/{}/exe", target.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(std::fs::read_link(&exe).is_ok_and(|p| p.ends_with("sleep"))
            && state(target.pid()) == Some('S'))
        {
            assert!(Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        target.stop();
        target
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn stop(&self) {
        // SAFETY: signals our own child, which is not reaped before drop.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while state(self.pid()) != Some('T') {
            assert!(Instant::now() < deadline, "target did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The whitespace-separated words of each line.
fn words(text: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// `pmap -X`'s rows (words) with the start and end of each, by the Address and Size columns.
fn smaps_rows(lines: &[Vec<String>]) -> Vec<(u64, u64, Vec<String>)> {
    lines
        .iter()
        .filter(|w| w.len() > 5 && u64::from_str_radix(&w[0], 16).is_ok() && w[1].len() == 4)
        .map(|w| {
            let start = u64::from_str_radix(&w[0], 16).unwrap();
            let size: u64 = w[5].parse().unwrap();
            (start, start + (size << 10), w.clone())
        })
        .collect()
}

/// Checks `-X`/`-XX` with `-A` against pmap, which ignores `-A` there (fixed upstream in 2025):
/// the rows are pmap's unranged rows that overlap the range, the totals their sums. Column
/// widths follow from the totals, so the comparison is word by word. As [`assert_snapshot`]
/// does, a difference counts only while our output holds still around pmap's run: `Pss` moves
/// whenever another process on the machine maps or unmaps a page the target shares.
fn assert_smaps_range(iso: &Isolated, flag: &str, pid: i32, low: u64, high: u64) {
    let range = format!("{low:x},{high:x}");
    let mut last = None;
    for _ in 0..5 {
        let before = snapshot(iso, &[flag, "-A", &range], &[pid]);
        let theirs = words(&pmap(iso, &[flag], &[pid]));
        let after = snapshot(iso, &[flag, "-A", &range], &[pid]);
        let Err(difference) = ranged_smaps_difference(&words(&before), &theirs, low, high) else {
            return;
        };
        if before == after {
            last = Some(difference);
        }
    }
    let difference =
        last.unwrap_or_else(|| panic!("{flag} -A {range}: the target never held still"));
    panic!("{flag} -A {range}: {difference}");
}

/// Where our ranged `-X`/`-XX` (`ours`) differs from pmap's unranged one (`theirs`) cut to
/// `low..=high`.
fn ranged_smaps_difference(
    ours: &[Vec<String>],
    theirs: &[Vec<String>],
    low: u64,
    high: u64,
) -> Result<(), String> {
    if ours[..2] != theirs[..2] {
        return Err(format!(
            "PID and heading lines: {:?} != {:?}",
            &ours[..2],
            &theirs[..2]
        ));
    }
    let shown: Vec<Vec<String>> = smaps_rows(theirs)
        .into_iter()
        .filter(|(start, end, _)| *end > low && *start <= high)
        .map(|(_, _, w)| w)
        .collect();
    assert!(shown.len() >= 2, "the range shows several mappings");
    assert!(
        shown.len() < smaps_rows(theirs).len(),
        "the range leaves some out"
    );
    let rows = &ours[2..ours.len() - 2];
    if rows != &shown[..] {
        return Err(format!("rows\n  ours: {rows:?}\n  pmap: {shown:?}"));
    }
    let columns = ours[ours.len() - 2].len();
    let sums: Vec<String> = (0..columns)
        .map(|c| {
            shown
                .iter()
                .map(|w| w[5 + c].parse::<u64>().unwrap())
                .sum::<u64>()
                .to_string()
        })
        .chain(["KB".to_owned()])
        .collect();
    if ours[ours.len() - 1] != sums {
        return Err(format!("totals {:?} != {sums:?}", ours[ours.len() - 1]));
    }
    Ok(())
}

/// pmap 4.0.2's `-x -A` total line adds up the RSS and Dirty of the mappings below the range;
/// the fixed one leaves out those the unranged `pmap -x` lists below it.
fn fixed_extended_totals(unranged: &[u8], low: u64) -> impl Fn(Vec<u8>) -> Vec<u8> {
    let (mut rss, mut dirty) = (0u64, 0u64);
    for w in words(unranged) {
        let Ok(start) = u64::from_str_radix(w.first().map_or("", String::as_str), 16) else {
            continue;
        };
        if w.len() < 6 || w[0].len() != 16 {
            continue;
        }
        let end = start.wrapping_add(w[1].parse::<u64>().unwrap() << 10);
        if end.wrapping_sub(1) < low {
            rss += w[2].parse::<u64>().unwrap();
            dirty += w[3].parse::<u64>().unwrap();
        }
    }
    move |text: Vec<u8>| {
        let text = String::from_utf8(text).unwrap();
        let (rows, total) = text.trim_end().rsplit_once('\n').unwrap();
        let t: Vec<u64> = total
            .split_whitespace()
            .skip(2)
            .map(|n| n.parse().unwrap())
            .collect();
        format!(
            "{rows}\n{:<16} {:>7} {:>7} {:>7}\n",
            "total kB",
            t[0],
            t[1] - rss,
            t[2] - dirty
        )
        .into_bytes()
    }
}

/// A range whose ends fall inside mappings: from the middle of the process's third mapping to
/// the middle of its third-last.
fn range_through(pid: i32) -> (u64, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let bounds: Vec<(u64, u64)> = maps
        .lines()
        .map(|l| {
            let (start, end) = l
                .split_whitespace()
                .next()
                .unwrap()
                .split_once('-')
                .unwrap();
            (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
            )
        })
        .collect();
    let mid = |(s, e): (u64, u64)| s + (e - s) / 2;
    (mid(bounds[2]), mid(bounds[bounds.len() - 3]))
}

/// Every format, and `-A` through the middle of mappings, for one stopped process.
fn assert_all_formats(iso: &Isolated, pid: i32) {
    for &format in FORMATS {
        assert_snapshot(iso, format, &[pid], same);
    }
    let (low, high) = range_through(pid);
    let range = format!("{low:x},{high:x}");
    for flag in [None, Some("-d"), Some("-q")] {
        let args: Vec<&str> = flag.into_iter().chain(["-A", &range]).collect();
        assert_snapshot(iso, (&args, &args), &[pid], same);
    }
    let unranged = pmap(iso, &["-x"], &[pid]);
    let args = ["-x", "-A", &range];
    assert_snapshot(
        iso,
        (&args, &args),
        &[pid],
        fixed_extended_totals(&unranged, low),
    );
    assert_smaps_range(iso, "-X", pid, low, high);
    assert_smaps_range(iso, "-XX", pid, low, high);
}

#[test]
fn snapshot_matches_pmap_for_sleep() {
    let iso = isolated();
    let target = Target::sleep();
    assert_all_formats(&iso, target.pid());
}

#[test]
fn snapshot_matches_pmap_for_python() {
    let iso = isolated();
    let target = Target::python("import json, decimal");
    assert_all_formats(&iso, target.pid());
}

#[test]
fn snapshot_matches_pmap_for_a_threaded_process_and_one_of_its_threads() {
    let iso = isolated();
    let target = Target::python(
        "import threading, time\n\
         for _ in range(8): threading.Thread(target=time.sleep, args=(600,), daemon=True).start()",
    );
    assert_all_formats(&iso, target.pid());
    // Given a thread's id, pmap prints its process.
    let tid: i32 = std::fs::read_dir(format!("/proc/{}/task", target.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .find(|&tid| tid != target.pid())
        .expect("a thread");
    let text = pmap(&iso, &["-x"], &[tid]);
    assert!(text.starts_with(format!("{}:", target.pid()).as_bytes()));
    assert_snapshot(&iso, (&["-x"], &["-x"]), &[tid], same);
}

#[test]
fn snapshot_matches_pmap_for_a_deleted_mapped_file() {
    let iso = isolated();
    let dir = std::env::temp_dir().join(format!("pmap-formats-deleted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = Target::python(&format!(
        "import mmap, os\n\
         path = {:?}\n\
         open(path, 'wb').write(b'x' * 65536)\n\
         fd = os.open(path, os.O_RDWR)\n\
         keep = [mmap.mmap(fd, 65536), mmap.mmap(fd, 8192, mmap.MAP_PRIVATE)]\n\
         keep[1][0] = 1\n\
         os.close(fd)\n\
         os.unlink(path)",
        dir.join("gone.bin").to_str().unwrap()
    ));
    let text = pmap(&iso, &[], &[target.pid()]);
    assert!(
        String::from_utf8_lossy(&text).contains(" gone.bin (deleted)\n"),
        "the fixture maps a deleted file"
    );
    assert_all_formats(&iso, target.pid());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshot_matches_pmap_for_thousands_of_mappings() {
    let iso = isolated();
    // Neighbours with different protections cannot merge.
    let target = Target::python(
        "import mmap\n\
         keep = [mmap.mmap(-1, 4096 * (1 + i % 3), prot=mmap.PROT_READ | (mmap.PROT_WRITE if i % 2 else 0)) for i in range(3000)]\n\
         for m in keep[1::2]: m[0] = 1",
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid())).unwrap();
    assert!(
        maps.lines().count() > 3000,
        "{} mappings",
        maps.lines().count()
    );
    assert_all_formats(&iso, target.pid());
}

#[test]
fn snapshot_matches_pmap_for_kernel_threads_and_zombies() {
    let iso = isolated();
    let mut zombie = Command::new("true").spawn().unwrap();
    let pid = zombie.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(pid) != Some('Z') {
        assert!(Instant::now() < deadline, "no zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Outside a PID namespace, PID 2 is kthreadd.
    let kthreadd = std::fs::read("/proc/2/comm").ok().as_deref() == Some(b"kthreadd\n");
    let pids: Vec<i32> = if kthreadd { vec![pid, 2] } else { vec![pid] };
    for &format in FORMATS {
        assert_snapshot(&iso, format, &pids, same);
    }
    let text = pmap(&iso, &["-x"], &[pid]);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        format!(
            "{pid}:   [true] <defunct>\n\
             Address           Kbytes     RSS   Dirty Mode  Mapping\n\
             ---------------- ------- ------- ------- \n\
             total kB               0       0       0\n"
        )
    );
    zombie.wait().unwrap();
}

#[test]
fn several_pids_print_in_pmaps_order_and_layout() {
    let iso = isolated();
    let a = Target::sleep();
    let b = Target::python("pass");
    let pids = [b.pid(), a.pid(), b.pid()];
    for &format in FORMATS
        .iter()
        .filter(|(p, _)| !p.contains(&"-X") && !p.contains(&"-XX"))
    {
        assert_snapshot(&iso, format, &pids, same);
    }
    // -X keeps its columns across processes, but pmap 4.0.2 also kept adding to the totals
    // (fixed upstream in 2023): each process's totals are its own.
    for flag in ["-X", "-XX"] {
        // Pss depends on the pages other processes share with the targets: compare again when
        // something else on the machine moved it between the two runs.
        let mut failure = None;
        for _ in 0..5 {
            failure = compare_multi_pid_smaps_table(&iso, flag, &pids, a.pid(), b.pid()).err();
            if failure.is_none() {
                break;
            }
        }
        if let Some(why) = failure {
            panic!("{why}");
        }
    }
}

/// `-X`/`-XX` of several PIDs: every line as pmap prints it, except that each process's totals
/// are its own (pmap 4.0.2 kept adding to them; fixed upstream in 2023).
fn compare_multi_pid_smaps_table(
    iso: &Isolated,
    flag: &str,
    pids: &[i32],
    a: i32,
    b: i32,
) -> Result<(), String> {
    let theirs = words(&pmap(iso, &[flag], pids));
    let ours = words(&snapshot(iso, &[flag], pids));
    if ours.len() != theirs.len() {
        return Err(format!(
            "{flag}: {} lines, pmap {}",
            ours.len(),
            theirs.len()
        ));
    }
    let totals: Vec<usize> = (0..ours.len())
        .filter(|&i| ours[i].last().is_some_and(|w| w == "KB"))
        .collect();
    if totals.len() != 3 {
        return Err(format!("{flag}: {} footers for 3 processes", totals.len()));
    }
    // pmap sizes the columns over the whole run, its wrongly summed totals included: where
    // those gain a digit, its `=====` rules are wider than ours (the words of every other line
    // are the same whatever the padding).
    let rule = |line: &[String]| line.iter().all(|w| w.chars().all(|c| c == '='));
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        let same = if rule(o) && rule(t) {
            o.len() == t.len() && o.iter().zip(t).all(|(a, b)| a.len() <= b.len())
        } else {
            o == t
        };
        if !totals[1..].contains(&i) && !same {
            return Err(format!("{flag}: line {i}: {o:?} but pmap {t:?}"));
        }
    }
    let own = |pid| words(&pmap(iso, &[flag], &[pid])).pop().unwrap();
    for (which, line, pid) in [("second", totals[1], a), ("third", totals[2], b)] {
        let expected = own(pid);
        if ours[line] != expected {
            return Err(format!(
                "{flag}: {which} process's totals {:?}, its own pmap {expected:?}",
                ours[line]
            ));
        }
    }
    Ok(())
}

#[test]
fn snapshot_reports_missing_processes_as_pmap_does() {
    let iso = isolated();
    let a = Target::sleep();
    let missing = i32::MAX.to_string();
    let args = [a.pid().to_string(), missing.clone()];
    let mut ours = iso.command(&pmap_trace_exe());
    ours.arg("snapshot").args(&args);
    let ours = ours.output().unwrap();
    let theirs = iso.command(Path::new(PMAP)).args(&args).output().unwrap();
    assert_same_output("missing PID", &theirs.stdout, &ours.stdout);
    assert_eq!(theirs.status.code(), Some(42));
    assert_eq!(ours.status.code(), Some(42));
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr),
        format!("pmap-trace: no such process: {missing}\n")
    );
}

#[test]
fn bad_format_flags_get_one_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["snapshot", "-x", "-d", "1"], "different formats"),
        (&["snapshot", "-X", "-x", "1"], "different formats"),
        (
            &["snapshot", "-A", "12,zz", "1"],
            "invalid -A/--range '12,zz'",
        ),
        (&["snapshot"], "no PID"),
        (&["snapshot", "--diff", "1"], "--diff"),
        (&["-XX", "-d", "-p", "1"], "different formats"),
        (&["-A", "0x", "-p", "1"], "invalid -A/--range"),
    ];
    for (args, expected) in cases {
        let out = Command::new(pmap_trace_exe()).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("pmap-trace: ") && err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
    }
}

/// A tracer on `pid` that writes its dumps in `format` to a file. It runs with `--no-sites`:
/// what it writes after a dump request is compared with pmap's output whole, and the plain
/// run's call-site summary after each dump is no part of pmap's format (cli.rs checks the plain
/// run's dumps against pmap).
struct FileTracer {
    tracer: Tracer,
    path: std::path::PathBuf,
}

impl FileTracer {
    fn start(iso: &Isolated, format: &[&str], pid: i32, tag: usize) -> FileTracer {
        let path = std::env::temp_dir().join(format!(
            "pmap-formats-trace-{}-{tag}.out",
            std::process::id()
        ));
        let mut command = iso.command(&pmap_trace_exe());
        command
            .args(["--no-events", "--no-sites"])
            .args(format)
            .arg("-o")
            .arg(&path)
            .args(["-p", &pid.to_string()]);
        FileTracer {
            tracer: Tracer::attach_command(command),
            path,
        }
    }

    fn output(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap_or_default()
    }

    /// Asks for a dump and waits until at least `len` more bytes are out; returns them.
    fn dump(&self, len: usize) -> Vec<u8> {
        let seen = self.output().len();
        self.tracer.signal(libc::SIGUSR1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.output().len() < seen + len {
            assert!(Instant::now() < deadline, "no dump from the tracer");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The dump is written whole; give a longer one the chance to show.
        std::thread::sleep(Duration::from_millis(100));
        self.output()[seen..].to_vec()
    }

    /// Dumps until a dump equals what pmap prints just before and just after it: the workload
    /// is stopped, but other processes of the machine change its Pss when they map or unmap
    /// the pages it shares.
    fn assert_dump(&self, what: &str, pmap: impl Fn() -> Vec<u8>) {
        let mut last = None;
        for _ in 0..5 {
            let before = pmap();
            let dump = self.dump(before.len());
            let after = pmap();
            if dump == before {
                return;
            }
            if before == after {
                last = Some((before, dump));
            }
        }
        let (want, got) = last.unwrap_or_else(|| panic!("{what}: the workload never held still"));
        assert_same_output(what, &want, &got);
    }

    /// Stops tracing (which dumps once more) and returns everything written.
    fn finish(self) -> Vec<u8> {
        self.tracer.signal(libc::SIGINT);
        let (code, _) = self.tracer.finish_bytes();
        assert_eq!(code, 0);
        let out = std::fs::read(&self.path).unwrap();
        std::fs::remove_file(&self.path).unwrap();
        out
    }
}

#[test]
fn trace_mode_dumps_match_pmap_at_the_workload_checkpoint() {
    if !require_root() {
        return;
    }
    let iso = isolated();
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let mut formats: Vec<(Vec<&str>, Vec<&str>)> = FORMATS
        .iter()
        .map(|(p, o)| (p.to_vec(), o.to_vec()))
        .collect();
    // The workload's own mappings lie between its binary and the libraries.
    formats.push((
        vec!["-d", "-A", "10000,7f0000000000"],
        vec!["-d", "-A", "10000,7f0000000000"],
    ));
    let tracers: Vec<FileTracer> = formats
        .iter()
        .enumerate()
        .map(|(i, (_, ours))| FileTracer::start(&iso, ours, pid, i))
        .collect();
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    for ((theirs, _), tracer) in formats.iter().zip(tracers) {
        let what = format!("pmap {}", theirs.join(" "));
        tracer.assert_dump(&format!("SIGUSR1 dump, {what}"), || {
            pmap(&iso, theirs, &[pid])
        });
        // The dump at the end of tracing is the same again.
        let dumped = tracer.output().len();
        let before = pmap(&iso, theirs, &[pid]);
        let all = tracer.finish();
        let last = &all[dumped..];
        if last != before {
            assert_same_output(
                &format!("final dump, {what}"),
                &pmap(&iso, theirs, &[pid]),
                last,
            );
        }
    }
    workload.resume();
    assert_eq!(workload.finish(), 0);
}

#[test]
fn trace_mode_json_dumps_carry_the_extended_columns() {
    if !require_root() {
        return;
    }
    let iso = isolated();
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let tracer = FileTracer::start(&iso, &["--json", "-x"], pid, 100);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    let text = pmap(&iso, &["-x", "-q"], &[pid]);
    let dump = tracer.dump(1);
    let line = String::from_utf8(dump).unwrap();
    let json: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(json["type"], "dump");
    assert_eq!(json["format"], "extended");
    let rows: Vec<Vec<String>> = words(&text)[1..].to_vec();
    let mappings = json["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), rows.len());
    for (m, row) in mappings.iter().zip(&rows) {
        assert_eq!(m["address"], row[0]);
        assert_eq!(m["kbytes"].to_string(), row[1]);
        assert_eq!(m["rss"].to_string(), row[2]);
        assert_eq!(m["dirty"].to_string(), row[3]);
        assert_eq!(m["mode"], row[4]);
    }
    let total = words(&pmap(&iso, &["-x"], &[pid])).pop().unwrap();
    assert_eq!(json["total_kbytes"].to_string(), total[2]);
    assert_eq!(json["total_rss_kbytes"].to_string(), total[3]);
    assert_eq!(json["total_dirty_kbytes"].to_string(), total[4]);
    tracer.finish();
    workload.resume();
    workload.finish();
}

/// `[start, end)` ranges of `/proc/PID/maps`, with whether each is anonymous (inode 0) and its
/// permissions.
fn proc_maps(pid: i32) -> Vec<(u64, u64, bool, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (s, e) = f[0].split_once('-').unwrap();
            (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
                f[4] == "0",
                f[1].to_owned(),
            )
        })
        .collect()
}

fn mapped(maps: &[(u64, u64, bool, String)], start: u64, end: u64) -> bool {
    // Every byte of start..end lies in some mapping.
    let mut at = start;
    for &(s, e, _, _) in maps {
        if s <= at && at < e {
            at = e;
        }
    }
    at >= end
}

fn unmapped(maps: &[(u64, u64, bool, String)], start: u64, end: u64) -> bool {
    maps.iter().all(|&(s, e, _, _)| e <= start || s >= end)
}

#[test]
fn diff_dumps_list_what_the_workload_changed() {
    if !require_root() {
        return;
    }
    let iso = isolated();
    let mut workload = Workload::start(WORKLOAD, "scripted", &[]);
    let pid = workload.pid();
    let tracer = FileTracer::start(&iso, &["--diff"], pid, 200);
    // The workload waits for `go`: its first dump is the full table of this state.
    let before = proc_maps(pid);
    let want = pmap(&iso, &[], &[pid]);
    let first = tracer.dump(want.len());
    assert_same_output("first --diff dump", &want, &first);
    workload.go();
    workload.read_until_checkpoint();
    workload.wait_stopped();
    let after = proc_maps(pid);
    let text = String::from_utf8(tracer.dump(1)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(&format!("{pid}:   ")), "{text}");
    let anon = |maps: &[(u64, u64, bool, String)]| -> i128 {
        maps.iter()
            .filter(|m| m.2)
            .map(|m| i128::from(m.1 - m.0))
            .sum()
    };
    assert_eq!(
        lines.last().unwrap(),
        &format!(" anon {:+} bytes", anon(&after) - anon(&before)),
        "{text}"
    );
    let mut kinds = Vec::new();
    for line in &lines[1..lines.len() - 1] {
        let w: Vec<&str> = line.split_whitespace().collect();
        let start = u64::from_str_radix(w[1], 16).unwrap();
        let end = start + (w[2].trim_end_matches('K').parse::<u64>().unwrap() << 10);
        match w[0] {
            "added" => assert!(
                mapped(&after, start, end) && unmapped(&before, start, end),
                "{line}"
            ),
            "removed" => assert!(
                mapped(&before, start, end) && unmapped(&after, start, end),
                "{line}"
            ),
            "resized" | "reprotected" => {
                assert!(mapped(&after, start, end), "{line}");
                let mode = after
                    .iter()
                    .find(|m| m.0 <= start && start < m.1)
                    .map(|m| m.3.clone())
                    .unwrap();
                assert_eq!(&w[3][..3], &mode[..3], "{line}");
            }
            other => panic!("unknown change {other}: {line}"),
        }
        kinds.push(w[0]);
    }
    // The script maps new memory and files.
    assert!(kinds.contains(&"added"), "{text}");
    tracer.finish();
    workload.resume();
    workload.finish();
}
