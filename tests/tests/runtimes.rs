//! `--sites` on real language runtimes nobody here wrote: node and the JVM, whose JIT-compiled
//! functions are named from the perf map each writes (`/tmp/perf-PID.map`), and Debian's
//! stripped python3, named from its installed debug file. Each grows memory from one function
//! of its own by a known amount; the sites naming that function must own 95-110 % of it,
//! with the runtime's allocation frames folded away. `cargo xtask setup` installs the
//! runtimes, the JDK's tools and python3.11-dbg.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use pmap_integration_tests::{Program, TempDir, Tracer, functions, require_root, sites_after_dump};
use serde_json::Value;

/// `pmap-trace --no-events --json --sites TOP --rank live EXTRA... -p PID`.
fn attach(pid: u32, top: &str, extra: &[&str]) -> Tracer {
    let pid = pid.to_string();
    let mut args = vec!["--no-events", "--json", "--sites", top, "--rank", "live"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-p", &pid]);
    Tracer::attach(&args)
}

/// The sites of the live ranking with a frame whose name contains `function`.
fn naming<'a>(sites: &'a Value, function: &str) -> Vec<&'a Value> {
    sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|site| functions(site).iter().any(|f| f.contains(function)))
        .collect()
}

/// The sites naming `function` own 95-110 % of `grown` bytes.
fn assert_owns(sites: &Value, function: &str, grown: u64) {
    let naming = naming(sites, function);
    let owned: u64 = naming
        .iter()
        .map(|s| s["live_bytes"].as_u64().unwrap())
        .sum();
    let share = owned as f64 / grown as f64;
    assert!(
        (0.95..=1.10).contains(&share),
        "{function} grew {grown} bytes, its sites own {owned} ({:.1} %): {sites:#}",
        share * 100.0
    );
}

/// As [`assert_owns`], and each of those sites holding at least one of its allocations
/// (`allocation` bytes) starts with `function`: the runtime's frames above it are folded away.
/// A smaller one may be bookkeeping of a garbage collection an allocation set off, in runtime
/// internals no rule folds (and not what the function asked for).
fn assert_owns_from(sites: &Value, function: &str, grown: u64, allocation: u64) {
    assert_owns(sites, function, grown);
    let holding = |site: &&Value| site["live_bytes"].as_u64().unwrap() >= allocation;
    for site in naming(sites, function).into_iter().filter(holding) {
        let first = site["frames"][0]["function"].as_str().unwrap();
        assert!(first.contains(function), "unfolded: {:?}", functions(site));
    }
}

/// Removes the perf map a runtime wrote, when the test is done with it.
struct PerfMapFile(PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Each step grows by ArrayBuffers of 4 MiB, from one function per step. node backs an
/// ArrayBuffer with calloc, which serves blocks this large with a fresh mmap each: they are
/// above glibc's mmap threshold, which only rises when such a block is freed (the script keeps
/// them all). `growMore` first runs in the second step, so V8 compiles it, and writes its perf
/// map line, after the first report read the file.
const NODE_SCRIPT: &str = r#"
const kept = [];
function growBuffers(n) {
  for (let i = 0; i < n; i++) {
    const buffer = new ArrayBuffer(4 << 20);
    new Uint8Array(buffer).fill(1);
    kept.push(buffer);
  }
}
function growMore(n) {
  for (let i = 0; i < n; i++) {
    const buffer = new ArrayBuffer(4 << 20);
    new Uint8Array(buffer).fill(2);
    kept.push(buffer);
  }
}
const steps = [() => growBuffers(64), () => growMore(32)];
const readline = require("readline").createInterface({ input: process.stdin });
readline.on("line", (line) => {
  if (line === "end") process.exit(0);
  steps.shift()();
  console.log("grown");
});
console.log("ready");
"#;

/// The size of each ArrayBuffer the node script allocates.
const BUFFER: u64 = 4 << 20;

/// `--sites` asks for more sites than node has: the ranking lists every one of them.
const EVERY_SITE: &str = "1000";

/// `sites` ranks every site: a function's bytes are summed over all the sites naming it, not
/// over the few that made some top N (worker threads' malloc arenas of 64 MiB each, made by
/// collections, can outrank part of what a function grew).
fn assert_complete(sites: &Value) {
    let ranked = sites["top"].as_array().unwrap().len() as u64;
    assert_eq!(ranked, sites["sites"].as_u64().unwrap(), "{sites:#}");
}

/// As [`assert_owns_from`], and one site holds what `function` allocated, whatever V8 tier
/// (interpreted, baseline, optimized) its code ran in when it did.
fn assert_one_site_owns(sites: &Value, function: &str, grown: u64) {
    assert_owns_from(sites, function, grown, BUFFER);
    let holding = naming(sites, function)
        .into_iter()
        .filter(|site| site["live_bytes"].as_u64().unwrap() >= BUFFER)
        .count();
    assert_eq!(holding, 1, "{function} is split across sites: {sites:#}");
}

/// The node script run from `dir` (its path is in the perf map's names, and node's own
/// JavaScript handles it before the script runs), traced from `ready` on.
fn node_grows_from(dir: &TempDir) {
    let script = dir.path().join("grow.js");
    fs::write(&script, NODE_SCRIPT).unwrap();
    let mut command = Command::new("/usr/bin/node");
    // --interpreted-frames-native-stack gives each interpreted function a code copy of its
    // own in the perf map; V8's log files go to the test's directory.
    command
        .args(["--perf-basic-prof", "--interpreted-frames-native-stack"])
        .arg(&script)
        .current_dir(dir.path());
    let mut node = Program::start(command);
    let perf_map = PerfMapFile(PathBuf::from(format!("/tmp/perf-{}.map", node.pid())));
    let mut tracer = attach(node.pid(), EVERY_SITE, &[]);

    node.step();
    let first = sites_after_dump(&mut tracer);
    assert_complete(&first);
    assert_one_site_owns(&first, "growBuffers", 64 * BUFFER);
    let written = fs::read_to_string(&perf_map.0).unwrap();
    assert!(
        !written.contains("growMore"),
        "growMore was compiled before it ran"
    );

    node.step();
    let second = sites_after_dump(&mut tracer);
    assert_complete(&second);
    assert_one_site_owns(&second, "growMore", 32 * BUFFER);
    assert_one_site_owns(&second, "growBuffers", 64 * BUFFER);
    node.finish();
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
}

/// From directories whose names differ only in length: the script's path changes how much
/// JavaScript node runs before the script (its module paths are built character by character),
/// so when V8 compiles `growMore` to baseline code: from `/tmp/pmap-trace-PID-node` it did
/// after about ten of its 32 buffers, every run, and its memory was in two sites, one per tier,
/// the smaller of them outside a top 5 (69.6 % of what it grew was found).
#[test]
fn node_functions_are_named_from_its_perf_map_and_own_what_they_grew() {
    if !require_root() {
        return;
    }
    let pid = std::process::id();
    for name in [
        format!("pmap-trace-{pid}-node"),
        format!("pmap-trace-runtimes-{pid}-node"),
        format!("pmap-trace-runtimes-{pid}-node-from-a-directory-with-a-longer-name"),
    ] {
        node_grows_from(&TempDir::named(&name));
    }
}

/// One step: `fillBuffers` allocates eight direct ByteBuffers of 32 MiB. Unsafe.allocateMemory
/// takes them from malloc, and glibc maps every request of 32 MiB or more with an mmap of its
/// own whatever its threshold (DEFAULT_MMAP_THRESHOLD_MAX). Before `ready` the same method
/// runs 20000 times with 1-byte buffers, so that with `-Xbatch` it is JIT-compiled (its
/// allocation path included, not left to the interpreter) before the step.
const JAVA_PROGRAM: &str = r#"
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.ArrayList;

public class Grow {
    static final ArrayList<ByteBuffer> kept = new ArrayList<>();

    static void fillBuffers(int n, int size) {
        for (int i = 0; i < n; i++) {
            kept.add(ByteBuffer.allocateDirect(size));
        }
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (int i = 0; i < 20000; i++) {
            fillBuffers(1, 1);
            kept.clear();
        }
        System.out.println("ready");
        for (String line; !(line = in.readLine()).equals("end"); ) {
            fillBuffers(8, 32 << 20);
            System.out.println("grown");
        }
    }
}
"#;

#[test]
fn java_methods_are_named_once_jcmd_writes_the_perf_map() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("runtimes", "java");
    dir.compile_java("Grow", JAVA_PROGRAM);
    let mut command = Command::new("/usr/bin/java");
    // Compiled Java frames keep frame pointers only with PreserveFramePointer: without it the
    // walk cannot pass them.
    command
        .args(["-Xbatch", "-XX:+PreserveFramePointer", "-cp"])
        .arg(dir.path())
        .arg("Grow");
    let mut java = Program::start(command);
    let perf_map = PerfMapFile(PathBuf::from(format!("/tmp/perf-{}.map", java.pid())));
    let _ = fs::remove_file(&perf_map.0);
    let mut tracer = attach(java.pid(), "5", &[]);
    java.step();

    // No perf map yet: the method's code is a bare address.
    let before = sites_after_dump(&mut tracer);
    assert!(naming(&before, "Grow.fillBuffers").is_empty(), "{before:#}");
    let status = Command::new("/usr/bin/jcmd")
        .args([&java.pid().to_string(), "Compiler.perfmap"])
        .stdout(Stdio::null())
        .status()
        .expect("run jcmd");
    assert!(status.success(), "jcmd failed");
    // The same sites, named at the next report.
    let after = sites_after_dump(&mut tracer);
    assert_owns(&after, "Grow.fillBuffers", 8 * ((32 << 20) + 4096));
    // HotSpot's C heap (os::malloc, Unsafe_AllocateMemory0) is folded: the sites start in
    // compiled Java code (the JDK's own Unsafe.allocateMemory, above the test's method).
    for site in naming(&after, "Grow.fillBuffers") {
        let module = site["frames"][0]["module"].as_str().unwrap();
        assert!(
            module.starts_with("perf-"),
            "unfolded: {:?}",
            functions(site)
        );
    }
    java.finish();
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
}

/// One step: four million floats in a list. pymalloc takes objects this small from pools in
/// 1 MiB arenas it maps with mmap (`_PyObject_ArenaMmap`, a static function of
/// Objects/obmalloc.c: only the debug file names it, Debian's python3.11 has no symbol table).
const PYTHON_SCRIPT: &str = r#"
import sys
kept = []
def grow_floats(n):
    for i in range(n):
        kept.append(float(i) + 0.5)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "end":
        break
    grow_floats(4_000_000)
    print("grown", flush=True)
"#;

/// The sites record of one step of the python script under `--sites 5 --rank live EXTRA...`.
fn python_sites(extra: &[&str]) -> Value {
    let mut command = Command::new("/usr/bin/python3");
    command.args(["-c", PYTHON_SCRIPT]);
    let mut python = Program::start(command);
    let mut tracer = attach(python.pid(), "5", extra);
    python.step();
    let sites = sites_after_dump(&mut tracer);
    python.finish();
    let (code, _, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    sites
}

#[test]
fn stripped_python_is_named_from_its_debug_file_and_obmalloc_folds() {
    if !require_root() {
        return;
    }
    let full = python_sites(&["--full-stacks"]);
    assert!(
        !full["modules_without_symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("python3")),
        "python3.11 has no symbols: is python3.11-dbg installed (cargo xtask setup)? {full:#}"
    );
    // The arenas: named down to the static functions, and at least the floats' 24 bytes each.
    let arenas = naming(&full, "_PyObject_ArenaMmap");
    let owned: u64 = arenas
        .iter()
        .map(|s| s["live_bytes"].as_u64().unwrap())
        .sum();
    assert!(owned >= 4_000_000 * 24, "{owned} bytes in arenas: {full:#}");
    assert!(
        arenas
            .iter()
            .all(|site| functions(site).contains(&"new_arena")),
        "{full:#}"
    );

    // Folded, the same memory starts at the interpreter code that allocated, named too.
    let folded = python_sites(&[]);
    let sites = folded["top"].as_array().unwrap();
    for site in sites.iter().filter(|site| site["origin"].is_null()) {
        let frames = functions(site);
        assert!(
            !frames.iter().any(|f| f.starts_with("python3.11+0x")),
            "a frame without a name: {frames:?}"
        );
        assert!(
            ![
                "_PyObject_ArenaMmap",
                "new_arena",
                "_PyObject_Malloc",
                "PyObject_Malloc"
            ]
            .contains(&frames[0]),
            "obmalloc not folded: {frames:?}"
        );
    }
}
