//! `--sites` for real: a program built without frame pointers grows anonymous memory through
//! glibc's malloc from three functions by known amounts (large blocks: one mmap each; small and
//! medium blocks: the brk heap), then stops. Each amount must be attributed to a call site that
//! names its function (at least 95 % of it, at most 110 %), the site must start at the program's
//! own frame (allocator frames folded away), and `--full-stacks` keeps those frames. The same
//! holds for the program built with frame pointers, at a fixed address (not a PIE), and with a
//! grower inside a shared library; `--folded` and `--flamegraph` write the same attribution.
//! And ownership follows the memory to the page: partial munmap, brk down, an mremap that moves
//! and grows, and MAP_FIXED overlays (anonymous and file) move or release exactly their bytes;
//! `--faults` counts the part of a large reservation that was touched.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use pmap_integration_tests::{
    Tracer, Workload, functions, pmap_trace_exe, pmap_trace_release_exe, require_root,
};
use serde_json::Value;

const TARGET: &str = env!("ATTRIBUTION_TARGET");

/// The bytes each grower asks malloc for (see attribution-target/blocks.rs).
const LARGE_BYTES: u64 = 24 << 20;
const SMALL_BYTES: u64 = 4096 * 2040;
const MEDIUM_BYTES: u64 = 96 * ((64 << 10) - 8);

/// The target's functions and the bytes each asks malloc for.
const GROWERS: [(&str, u64); 3] = [
    ("attribution_target::grow_with_large_blocks", LARGE_BYTES),
    ("attribution_target::grow_with_small_blocks", SMALL_BYTES),
    ("attribution_target::grow_with_medium_blocks", MEDIUM_BYTES),
];

/// A build of the target and where each grower's site must start.
struct Build {
    exe: &'static str,
    /// (function, bytes asked, module of the site's first frame).
    growers: [(&'static str, u64, &'static str); 3],
}

fn build(exe: &'static str, module: &'static str) -> Build {
    Build {
        exe,
        growers: GROWERS.map(|(function, bytes)| (function, bytes, module)),
    }
}

/// Runs the target under `pmap-trace --sites 10 --rank live --json EXTRA...`, dumps once it has grown
/// everything, and returns the `sites` record of that dump.
fn sites_after_growth(exe: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--sites", "10", "--rank", "live"];
    args.extend_from_slice(extra);
    sites_at_checkpoint(exe, "grow", &args)
}

/// Runs the target's `mode` under `pmap-trace --no-events --json ARGS...`, dumps at its
/// checkpoint, and returns the `sites` record of that dump.
fn sites_at_checkpoint(exe: &str, mode: &str, extra: &[&str]) -> Value {
    sites_and_notices_at_checkpoint(exe, mode, extra).0
}

/// As [`sites_at_checkpoint`], with the notices printed before the record.
fn sites_and_notices_at_checkpoint(exe: &str, mode: &str, extra: &[&str]) -> (Value, Vec<String>) {
    let run = run_to_checkpoint(&pmap_trace_exe(), exe, &[mode], extra);
    (run.sites, run.notices)
}

/// What [`run_to_checkpoint`] saw.
struct Run {
    /// The `sites` record of the dump at the checkpoint.
    sites: Value,
    /// The notices printed before it.
    notices: Vec<String>,
    /// The lines the program printed before its checkpoint.
    lines: Vec<String>,
    /// pmap-trace's peak resident memory (`VmHWM`) at the checkpoint, in KiB.
    peak_kib: u64,
}

/// Runs `exe ARGS...` under `TRACER --no-events --json EXTRA...` and dumps at its checkpoint.
fn run_to_checkpoint(tracer: &Path, exe: &str, args: &[&str], extra: &[&str]) -> Run {
    let mut target = Workload::start(exe, args[0], &args[1..]);
    let pid = target.pid().to_string();
    let mut command = Command::new(tracer);
    command
        .args(["--no-events", "--json"])
        .args(extra)
        .args(["-p", &pid]);
    let mut tracer = Tracer::attach_command(command);
    target.go();
    let lines = target.read_until_checkpoint();
    target.wait_stopped();
    let peak_kib = peak_kib(tracer.child.id());
    tracer.signal(libc::SIGUSR1);
    let mut notices = Vec::new();
    let sites = loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut tracer.stdout, &mut line).unwrap();
        assert!(n > 0, "pmap-trace ended before its sites record");
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["type"] == "notice" {
            notices.push(value["message"].as_str().unwrap().to_string());
        }
        if value["type"] == "sites" {
            break value;
        }
    };
    target.resume();
    assert_eq!(target.finish(), 0);
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(sites["pid"].as_u64(), Some(pid.parse().unwrap()));
    Run {
        sites,
        notices,
        lines,
        peak_kib,
    }
}

/// `VmHWM` of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Each grower of `build` owns 95-110 % of what it asked for, in sites of its own that start
/// in its module and reach `main`; and every grower is in the first dump's growth ranking.
fn assert_attributed(build: &Build) {
    let sites = sites_after_growth(build.exe, &[]);
    let top = sites["top"].as_array().unwrap();
    for (function, asked, module) in build.growers {
        let naming: Vec<&Value> = top
            .iter()
            .filter(|site| functions(site).contains(&function))
            .collect();
        let owned: u64 = naming
            .iter()
            .map(|s| s["live_bytes"].as_u64().unwrap())
            .sum();
        let share = owned as f64 / asked as f64;
        assert!(
            (0.95..=1.10).contains(&share),
            "{}: {function} asked for {asked} bytes, its sites own {owned} ({:.1} %): {sites:#}",
            build.exe,
            share * 100.0
        );
        for site in naming {
            let frames = functions(site);
            // No site names two of the functions: each stack is its own.
            for (other, _, _) in build.growers.iter().filter(|(f, _, _)| *f != function) {
                assert!(
                    !frames.contains(other),
                    "{function} and {other} in one site: {frames:?}"
                );
            }
            // Folded: the site starts in the program (`allocate` is inlined into each
            // function), not in malloc or the C library's mmap/brk wrappers.
            assert_eq!(site["frames"][0]["module"], module, "unfolded: {frames:?}");
            assert!(
                frames.contains(&"attribution_target::main"),
                "the walk did not reach main: {frames:?}"
            );
        }
    }
    // The first dump's growth is everything traced so far.
    let growth: Vec<&str> = sites["by_growth"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(functions)
        .collect();
    for (function, _, _) in build.growers {
        assert!(
            growth.contains(&function),
            "{function} missing from growth: {sites:#}"
        );
    }
}

#[test]
fn each_function_owns_what_it_grew_through_malloc_without_frame_pointers() {
    if !require_root() {
        return;
    }
    assert_attributed(&build(TARGET, "attribution-target"));
}

#[test]
fn the_same_with_frame_pointers() {
    if !require_root() {
        return;
    }
    assert_attributed(&build(
        env!("ATTRIBUTION_TARGET_FP"),
        "attribution-target-fp",
    ));
}

#[test]
fn the_same_at_a_fixed_address_not_a_pie() {
    if !require_root() {
        return;
    }
    let exe = env!("ATTRIBUTION_TARGET_NOPIE");
    // The build is what this test is about: an executable linked at a fixed address.
    let elf = fs::read(exe).unwrap();
    const ET_EXEC: u16 = 2;
    assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), ET_EXEC, "{exe}");
    assert_attributed(&build(exe, "attribution-target-nopie"));
}

#[test]
fn the_same_with_a_call_site_inside_a_shared_library() {
    if !require_root() {
        return;
    }
    let mut library = build(
        env!("ATTRIBUTION_TARGET_LIBRARY"),
        "attribution-target-library",
    );
    library.growers[2] = (
        "attribution_library_grow_medium",
        MEDIUM_BYTES,
        "libattribution_grower.so",
    );
    assert_attributed(&library);
}

const WORKLOAD: &str = env!("CARGO_BIN_EXE_pmap-workload");

/// Two threads mapping and unmapping as fast as they can, at the default ring size: stack
/// copies go to their own ring and stop at each thread's stack top once an unwind has found
/// it, so none is lost and no call record either, with pmap-trace's own memory under 50 MB;
/// and the mappings each thread kept are its function's. Run with the optimised pmap-trace:
/// whether a reader keeps up is a question of its speed, and the unoptimised one's table and
/// attribution alone fall behind two such threads.
#[test]
fn two_threads_churning_lose_no_stack_copy_and_no_record_at_the_default_ring() {
    if !require_root() {
        return;
    }
    let run = run_to_checkpoint(
        &pmap_trace_release_exe(),
        WORKLOAD,
        &["thread-churn", "3"],
        &["--sites", "10", "--rank", "live"],
    );
    assert!(run.notices.is_empty(), "notices: {:#?}", run.notices);
    assert!(
        run.peak_kib * 1024 <= 50_000_000,
        "pmap-trace's peak memory (VmHWM): {} KiB",
        run.peak_kib
    );
    let kept: u64 = run
        .lines
        .iter()
        .find_map(|line| line.strip_prefix("kept "))
        .expect("the workload says what it kept")
        .parse()
        .unwrap();
    let owned: u64 = run.sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|site| functions(site).contains(&"pmap_workload::churn_mappings"))
        .map(|site| site["live_bytes"].as_u64().unwrap())
        .sum();
    // Owned to the byte. When one thread unmaps an address and the other maps it again at
    // once, their records can reach the ring in the other order than they took the mmap lock
    // (seen in about one 3-second run in two before the table repaired it: 64 KiB short of
    // 164 MiB; see `table/unmaps_in_flight.rs`).
    assert!(
        owned == kept,
        "the churning function owns {owned} bytes of the {kept} it kept: {:#}",
        run.sites
    );
}

/// Runs `program ARGS...` and fails the test unless it succeeds.
fn run_ok(program: &str, args: &[&std::ffi::OsStr]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|err| panic!("{program}: {err} (cargo xtask setup installs it)"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A path named exactly `name` (a module name reports show) in this test run's directory.
fn scratch_named(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmap-trace-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    path
}

/// Removes a file [`scratch_named`] gave, and its directory once empty.
fn remove_named(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_dir(path.parent().unwrap());
}

/// A copy of the target stripped of every symbol and all debug info, as distributions ship
/// programs, named `name` (its module name in the reports). The unwind tables stay.
fn stripped_target(name: &str) -> PathBuf {
    let copy = scratch_named(name);
    run_ok(
        "strip",
        &[
            "--strip-all".as_ref(),
            "-o".as_ref(),
            copy.as_os_str(),
            TARGET.as_ref(),
        ],
    );
    copy
}

#[test]
fn a_stripped_program_is_reported_once_as_having_no_symbols() {
    if !require_root() {
        return;
    }
    let exe = stripped_target("attribution-target-stripped");
    let sites = sites_after_growth(exe.to_str().unwrap(), &[]);
    assert_eq!(
        sites["modules_without_symbols"],
        serde_json::json!(["attribution-target-stripped"]),
        "{sites:#}"
    );
    // Its frames read module+offset: no grower is named.
    let named = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(functions)
        .any(|f| f.starts_with("attribution_target::"));
    assert!(!named, "{sites:#}");
    remove_named(&exe);
}

/// MiniDebugInfo as Fedora's find-debuginfo builds it: the stripped program with a
/// `.gnu_debugdata` section holding, xz-compressed, an ELF file with its symbol table.
#[test]
fn a_stripped_program_with_minidebuginfo_is_named_from_it() {
    if !require_root() {
        return;
    }
    const NAME: &str = "attribution-target-minidebuginfo";
    let stripped = stripped_target("attribution-target-stripped-for-mini");
    let (symbols, exe) = (scratch("minidebuginfo"), scratch_named(NAME));
    let xz = symbols.with_extension("xz");
    let _ = fs::remove_file(&xz);
    // Symbols only: no DWARF, no code.
    run_ok(
        "objcopy",
        &[
            "--only-keep-debug".as_ref(),
            TARGET.as_ref(),
            symbols.as_os_str(),
        ],
    );
    run_ok("strip", &["--strip-debug".as_ref(), symbols.as_os_str()]);
    run_ok("xz", &["--keep".as_ref(), symbols.as_os_str()]);
    let section = format!(".gnu_debugdata={}", xz.display());
    run_ok(
        "objcopy",
        &[
            "--add-section".as_ref(),
            section.as_ref(),
            stripped.as_os_str(),
            exe.as_os_str(),
        ],
    );
    // A file the test keeps for its whole run: `Build` names it for good.
    let path: &'static str = Box::leak(exe.to_str().unwrap().to_owned().into_boxed_str());
    assert_attributed(&build(path, NAME));
    for file in [symbols, xz] {
        let _ = fs::remove_file(file);
    }
    remove_named(&stripped);
    remove_named(&exe);
}

#[test]
fn ownership_moves_and_releases_exactly_the_bytes_each_call_touches() {
    if !require_root() {
        return;
    }
    const PAGE: u64 = 4096;
    // What each function of attribution-target/ownership.rs owns at the end (its table).
    let expected = [
        ("map_region", 36 * PAGE),
        ("overlay_anonymous", 8 * PAGE),
        ("map_movable", 16 * PAGE),
        ("grow_by_moving", 8 * PAGE),
        ("raise_break", 16 * PAGE),
        ("unmap_middle", 0),
        ("overlay_file", 0),
        ("lower_break", 0),
    ];
    let sites = sites_at_checkpoint(TARGET, "ownership", &["--sites", "100", "--rank", "live"]);
    let top = sites["top"].as_array().unwrap();
    assert!(
        top.len() < 100,
        "every site is listed, so absent means nothing owned"
    );
    for (function, bytes) in expected {
        let name = format!("attribution_target::ownership::{function}");
        let owned: u64 = top
            .iter()
            .filter(|site| functions(site).contains(&name.as_str()))
            .map(|site| site["live_bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(owned, bytes, "{name} owns {owned} bytes: {sites:#}");
    }
}

#[test]
fn faults_count_the_touched_quarter_of_a_large_reservation() {
    if !require_root() {
        return;
    }
    const RESERVED: u64 = 64 << 20;
    const TOUCHED: u64 = RESERVED / 4;
    // Every fault, then one in 8: the estimate is samples x 8 pages.
    for (flag, tolerance) in [("--faults", 0.0), ("--faults=8", 0.05)] {
        let sites =
            sites_at_checkpoint(TARGET, "touch", &["--sites", "20", "--rank", "live", flag]);
        let reserver = sites["top"]
            .as_array()
            .unwrap()
            .iter()
            .find(|site| functions(site).contains(&"attribution_target::touch::reserve_large"))
            .unwrap_or_else(|| panic!("no site for the reservation: {sites:#}"));
        assert_eq!(reserver["live_bytes"], RESERVED, "{sites:#}");
        let touched = reserver["touched_bytes"].as_u64().unwrap();
        let share = touched as f64 / TOUCHED as f64;
        assert!(
            (share - 1.0).abs() <= tolerance + 1e-9,
            "{flag}: {touched} bytes counted as touched of {TOUCHED}: {sites:#}"
        );
    }
    // Without --faults nothing is counted.
    let sites = sites_at_checkpoint(TARGET, "touch", &["--sites", "20", "--rank", "live"]);
    assert_eq!(sites["fault_period"], Value::Null);
    assert!(
        sites["top"]
            .as_array()
            .unwrap()
            .iter()
            .all(|site| site["touched_bytes"].is_null())
    );
}

#[test]
fn fault_samples_give_way_to_the_calls_when_the_ring_fills() {
    if !require_root() {
        return;
    }
    // 4096 first touches in a few milliseconds into a 16 KiB ring read every 25 ms: samples
    // stop at half the ring, and the calls' records still all arrive.
    let (sites, notices) = sites_and_notices_at_checkpoint(
        TARGET,
        "touch",
        &[
            "--sites",
            "20",
            "--rank",
            "live",
            "--faults",
            "--ring-size",
            "16K",
        ],
    );
    assert!(
        notices.iter().any(|n| n.contains("fault samples left out")),
        "{notices:?}"
    );
    assert!(
        !notices.iter().any(|n| n.contains("records lost")),
        "{notices:?}"
    );
    let reserver = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|site| functions(site).contains(&"attribution_target::touch::reserve_large"))
        .unwrap_or_else(|| panic!("no site for the reservation: {sites:#}"));
    assert_eq!(reserver["live_bytes"], 64u64 << 20, "{sites:#}");
    let touched = reserver["touched_bytes"].as_u64().unwrap();
    assert!(touched < 16 << 20, "{touched} bytes counted: {sites:#}");
}

/// A path in the test's temporary directory, removed first.
fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pmap-trace-{}-{name}", std::process::id()));
    let _ = fs::remove_file(&path);
    path
}

/// `--folded` lines as (stack, bytes).
fn folded_lines(path: &PathBuf) -> Vec<(String, u64)> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let (stack, bytes) = line.rsplit_once(' ').expect("STACK BYTES");
            (stack.to_string(), bytes.parse().expect("a byte count"))
        })
        .collect()
}

#[test]
fn folded_stacks_and_the_flame_graph_carry_the_same_attribution() {
    if !require_root() {
        return;
    }
    let (folded, svg) = (scratch("sites.folded"), scratch("sites.svg"));
    let mut target = Workload::start(TARGET, "grow", &[]);
    let pid = target.pid().to_string();
    // No --sites: the files alone ask for stacks, and no ranking is printed.
    let mut tracer = Tracer::attach(&[
        "--folded",
        folded.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
        "-p",
        &pid,
    ]);
    target.go();
    target.read_until_checkpoint();
    target.wait_stopped();
    tracer.signal(libc::SIGUSR1);
    let dump = tracer.read_dump();
    assert!(!dump.contains("sites "), "{dump}");
    let at_dump = folded_lines(&folded);
    for (function, asked) in GROWERS {
        // Outermost first: main before the grower, the grower last but for inlined code.
        let owned: u64 = at_dump
            .iter()
            .filter(|(stack, _)| {
                let frames: Vec<&str> = stack.split(';').collect();
                let at = frames.iter().position(|f| *f == function);
                let main = frames.iter().position(|f| *f == "attribution_target::main");
                matches!((main, at), (Some(m), Some(a)) if m < a)
            })
            .map(|(_, bytes)| bytes)
            .sum();
        let share = owned as f64 / asked as f64;
        assert!(
            (0.95..=1.10).contains(&share),
            "{function}: {owned} of {asked} bytes in {at_dump:#?}"
        );
    }
    let rendered = fs::read_to_string(&svg).unwrap();
    assert!(rendered.starts_with("<?xml") && rendered.trim_end().ends_with("</svg>"));
    for (function, _) in GROWERS {
        assert!(rendered.contains(function), "{function} not in the SVG");
    }
    // At its exit the files are rewritten with what it held when it ended: the growers'
    // stacks are still there, with the same bytes (nothing frees them).
    fs::remove_file(&folded).unwrap();
    target.resume();
    assert_eq!(target.finish(), 0);
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    let at_exit = folded_lines(&folded);
    let of_growers = |lines: &[(String, u64)]| -> Vec<(String, u64)> {
        lines
            .iter()
            .filter(|(stack, _)| GROWERS.iter().any(|(f, _)| stack.contains(f)))
            .cloned()
            .collect()
    };
    assert_eq!(of_growers(&at_exit), of_growers(&at_dump));
    // Written through temporary files renamed over them: none is left.
    let names = [folded.file_name(), svg.file_name()].map(|n| n.unwrap().to_owned());
    let leftovers: Vec<_> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|name| {
            let name = name.to_string_lossy();
            name.ends_with(".tmp") && names.iter().any(|n| name.contains(&*n.to_string_lossy()))
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    fs::remove_file(&folded).unwrap();
    fs::remove_file(&svg).unwrap();
}

#[test]
fn full_stacks_keep_the_allocator_frames_and_no_copy_means_no_site() {
    if !require_root() {
        return;
    }
    let sites = sites_after_growth(TARGET, &["--full-stacks", "--stack-bytes", "8K"]);
    let large = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|site| functions(site).contains(&GROWERS[0].0))
        .unwrap_or_else(|| panic!("no site for the large blocks: {sites:#}"));
    let frames = functions(large);
    assert_eq!(large["frames"][0]["module"], "libc.so.6", "{frames:?}");
    let malloc = frames
        .iter()
        .position(|f| f.contains("malloc"))
        .expect("malloc frame");
    let grower = frames.iter().position(|f| *f == GROWERS[0].0).unwrap();
    assert!(
        malloc < grower,
        "malloc is called by the grower: {frames:?}"
    );

    // Without a stack copy the growth is still counted, under an origin that says why.
    let sites = sites_after_growth(TARGET, &["--stack-bytes", "0"]);
    let uncopied: u64 = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|site| site["origin"] == "(no stack copied: --stack-bytes 0)")
        .map(|site| site["live_bytes"].as_u64().unwrap())
        .sum();
    let asked: u64 = GROWERS.iter().map(|(_, bytes)| bytes).sum();
    assert!(
        uncopied as f64 >= asked as f64 * 0.95,
        "{uncopied} of {asked} bytes under the no-copy origin: {sites:#}"
    );
}
