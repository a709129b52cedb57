//! Resident, committed and reserved bytes per call site on real programs, read from the
//! process's pagemap at each dump: a JVM and a node process, checked against what
//! `/proc/PID/smaps` says of the same memory at the same moment (the process stopped); redis
//! after `FLUSHALL` + `MEMORY PURGE`, whose purged bytes must stop leading the ranking; and
//! `--faults` attached to a redis whose allocator hands out again memory it mapped before the
//! attach, whose first touches must go to the code that touched it.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_integration_tests::{
    Program, TempDir, Tracer, functions, pmap_trace_exe, pmap_trace_release_exe, require_root,
    sites_after_dump,
};
use serde_json::Value;

/// `pmap-trace --no-events --json --sites N EXTRA... -p PID`, the ranking left to its default.
fn attach(pid: u32, top: &str, extra: &[&str]) -> Tracer {
    attach_with(pmap_trace_exe(), pid, top, extra)
}

/// As [`attach`], with the pmap-trace at `exe`.
fn attach_with(exe: PathBuf, pid: u32, top: &str, extra: &[&str]) -> Tracer {
    let mut command = Command::new(exe);
    command.args(["--no-events", "--json", "--sites", top]);
    command.args(extra).arg("-p").arg(pid.to_string());
    Tracer::attach_command(command)
}

fn bytes(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field}: {value:#}"))
}

/// What smaps says of a process's private anonymous memory (as pmap-trace's ownership counts
/// it: no file, private, unnamed, `[heap]` or `[anon:…]`), in bytes.
#[derive(Debug, Default)]
struct Smaps {
    size: u64,
    rss: u64,
    swap: u64,
    writable: u64,
}

fn private_anon_smaps(pid: u32) -> Smaps {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut total = Smaps::default();
    let mut counted = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.contains('-') && !w.ends_with(':'))
        {
            let (perms, inode) = (words[1], words[4]);
            let name = words.get(5).copied().unwrap_or("");
            counted = inode == "0"
                && perms.ends_with('p')
                && (name.is_empty() || name == "[heap]" || name.starts_with("[anon:"));
            if counted && perms.as_bytes()[1] == b'w' {
                let (start, end) = words[0].split_once('-').unwrap();
                let len =
                    u64::from_str_radix(end, 16).unwrap() - u64::from_str_radix(start, 16).unwrap();
                total.writable += len;
            }
            continue;
        }
        if !counted {
            continue;
        }
        let kb = || words[1].parse::<u64>().unwrap() * 1024;
        match words[0] {
            "Size:" => total.size += kb(),
            "Rss:" => total.rss += kb(),
            "Swap:" => total.swap += kb(),
            _ => {}
        }
    }
    total
}

/// The sites record of a dump of `pid`, taken with the process stopped, and what smaps says
/// of its memory at the same moment.
fn sites_and_smaps(tracer: &mut Tracer, pid: u32) -> (Value, Smaps) {
    // SAFETY: signals to the test's own child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let sites = sites_after_dump(tracer);
    let smaps = private_anon_smaps(pid);
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    (sites, smaps)
}

/// The totals of a dump are smaps' for the same memory: every byte is resident, swapped or
/// reserved, and the committed bytes are the writable ones. The resident bytes may differ by
/// one huge page khugepaged collapsed between the two reads.
fn assert_totals_match_smaps(sites: &Value, smaps: &Smaps) {
    assert_eq!(sites["ranked_by"], "resident", "{sites:#}");
    assert_eq!(bytes(sites, "live_bytes"), smaps.size, "live: {smaps:?}");
    assert_eq!(bytes(sites, "committed_bytes"), smaps.writable, "{smaps:?}");
    assert_eq!(bytes(sites, "swapped_bytes"), smaps.swap, "{smaps:?}");
    let resident = bytes(sites, "resident_bytes");
    assert!(
        resident.abs_diff(smaps.rss) <= 2 << 20,
        "resident {resident}, smaps {smaps:?}"
    );
    assert_eq!(
        bytes(sites, "reserved_bytes"),
        smaps.size - resident - smaps.swap
    );
    // Each site's bytes add up, and the ranking is by resident bytes.
    let top = sites["top"].as_array().unwrap();
    for site in top {
        assert_eq!(
            bytes(site, "resident_bytes")
                + bytes(site, "swapped_bytes")
                + bytes(site, "reserved_bytes"),
            bytes(site, "live_bytes"),
            "{site:#}"
        );
    }
    let resident: Vec<u64> = top.iter().map(|s| bytes(s, "resident_bytes")).collect();
    assert!(resident.is_sorted_by(|a, b| a >= b), "{resident:?}");
}

/// The memory mapped before the attach (the runtime's reservations) is mostly reserved, and
/// the sites of `function`, which wrote every byte it grew (`grown`), hold it resident.
fn assert_reserved_before_and_resident_grown(sites: &Value, function: &str, grown: u64) {
    let top = sites["top"].as_array().unwrap();
    let before = top
        .iter()
        .find(|s| s["origin"] == "(mapped before tracing started)")
        .expect("the memory mapped before the attach");
    assert!(
        bytes(before, "reserved_bytes") > 4 * bytes(before, "resident_bytes"),
        "{before:#}"
    );
    let resident: u64 = top
        .iter()
        .filter(|s| functions(s).iter().any(|f| f.contains(function)))
        .map(|s| bytes(s, "resident_bytes"))
        .sum();
    let share = resident as f64 / grown as f64;
    assert!(
        (0.95..=1.10).contains(&share),
        "{function} wrote {grown} bytes, its sites hold {resident} resident: {sites:#}"
    );
    // The runtime reserves more than it uses: ranked by live bytes, its reservations would
    // lead; by resident bytes, what was written does.
    assert!(bytes(before, "live_bytes") > grown, "{sites:#}");
    assert!(
        functions(&top[0]).iter().any(|f| f.contains(function)),
        "{sites:#}"
    );
}

/// Writes `n` ByteBuffers of 32 MiB each step (a direct buffer is zeroed by the JDK: every
/// page is touched), after a warm-up that has the method compiled.
const JAVA_PROGRAM: &str = r#"
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.ArrayList;

public class Hold {
    static final ArrayList<ByteBuffer> kept = new ArrayList<>();

    static void fillBuffers(int n, int size) {
        for (int i = 0; i < n; i++) {
            kept.add(ByteBuffer.allocateDirect(size));
        }
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready");
        for (String line; !(line = in.readLine()).equals("end"); ) {
            fillBuffers(8, 32 << 20);
            System.out.println("grown");
        }
    }
}
"#;

#[test]
fn a_jvm_reserves_far_more_than_it_holds_and_its_totals_are_smaps() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("residency", "java");
    dir.compile_java("Hold", JAVA_PROGRAM);
    let mut command = Command::new("/usr/bin/java");
    command
        .args(["-XX:+PreserveFramePointer", "-XX:+UseSerialGC", "-cp"])
        .arg(dir.path())
        .arg("Hold");
    let mut java = Program::start(command);
    let mut tracer = attach(java.pid(), "50", &[]);
    java.step();
    let (sites, smaps) = sites_and_smaps(&mut tracer, java.pid());
    assert_totals_match_smaps(&sites, &smaps);
    // The JVM reserves its heap and its compressed class space (1 GiB) at start.
    assert!(bytes(&sites, "reserved_bytes") > 1 << 30, "{sites:#}");
    // Unnamed (no perf map), the JIT frames of fillBuffers are addresses: its sites are the
    // ones that grew since the attach.
    let grown: u64 = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["origin"].is_null())
        .map(|s| bytes(s, "resident_bytes"))
        .sum();
    assert!(grown >= 8 * (32 << 20), "{sites:#}");
    let top = &sites["top"][0];
    assert!(top["origin"].is_null(), "{sites:#}");
    let before = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["origin"] == "(mapped before tracing started)")
        .unwrap();
    assert!(
        bytes(before, "reserved_bytes") > 4 * bytes(before, "resident_bytes"),
        "{before:#}"
    );
}

/// Each step writes 64 ArrayBuffers of 4 MiB from `growBuffers`.
const NODE_SCRIPT: &str = r#"
const kept = [];
function growBuffers(n) {
  for (let i = 0; i < n; i++) {
    const buffer = new ArrayBuffer(4 << 20);
    new Uint8Array(buffer).fill(1);
    kept.push(buffer);
  }
}
const readline = require("readline").createInterface({ input: process.stdin });
readline.on("line", (line) => {
  if (line === "end") process.exit(0);
  growBuffers(64);
  console.log("grown");
});
console.log("ready");
"#;

#[test]
fn node_reserves_its_cage_and_holds_what_it_wrote_as_smaps_says() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("residency", "node");
    let script = dir.path().join("hold.js");
    fs::write(&script, NODE_SCRIPT).unwrap();
    let mut command = Command::new("/usr/bin/node");
    command
        .args(["--perf-basic-prof", "--interpreted-frames-native-stack"])
        .arg(&script)
        .current_dir(dir.path());
    let mut node = Program::start(command);
    let perf_map = PathBuf::from(format!("/tmp/perf-{}.map", node.pid()));
    let mut tracer = attach(node.pid(), "50", &[]);
    node.step();
    let (sites, smaps) = sites_and_smaps(&mut tracer, node.pid());
    let _ = fs::remove_file(perf_map);
    assert_totals_match_smaps(&sites, &smaps);
    assert_reserved_before_and_resident_grown(&sites, "growBuffers", 64 << 22);
}

/// redis-server with DEBUG allowed, on a private Unix socket, nothing persisted.
struct Redis {
    server: Child,
    socket: PathBuf,
    _dir: TempDir,
}

impl Redis {
    fn start(tag: &str) -> Redis {
        let dir = TempDir::new("residency", tag);
        let socket = dir.path().join("redis.sock");
        let server = Command::new("/usr/bin/redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .args(["--enable-debug-command", "yes", "--logfile", ""])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server (cargo xtask setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let redis = Redis {
            server,
            socket,
            _dir: dir,
        };
        while redis.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn pid(&self) -> u32 {
        self.server.id()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("/usr/bin/redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A million keys of 100-byte values: over 100 MB.
    fn populate(&self) {
        assert_eq!(
            self.cli(&["DEBUG", "POPULATE", "1000000", "key", "100"]),
            "OK"
        );
    }

    /// Drops every key and has jemalloc give the pages back (they stay mapped).
    fn flush_and_purge(&self) {
        assert_eq!(self.cli(&["FLUSHALL"]), "OK");
        assert_eq!(self.cli(&["MEMORY", "PURGE"]), "OK");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The site of `sites`' ranking with the same frames (or origin) as `site`.
fn same_site<'a>(sites: &'a Value, site: &Value) -> Option<&'a Value> {
    sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["frames"] == site["frames"] && s["origin"] == site["origin"])
}

#[test]
fn after_flushall_and_memory_purge_redis_ranks_by_what_it_still_holds() {
    if !require_root() {
        return;
    }
    let redis = Redis::start("purge");
    let mut tracer = attach(redis.pid(), "20", &[]);
    redis.populate();
    let full = sites_after_dump(&mut tracer);
    assert_eq!(full["ranked_by"], "resident");
    let holder = full["top"][0].clone();
    assert!(bytes(&holder, "resident_bytes") > 50 << 20, "{full:#}");
    assert!(holder["origin"].is_null(), "{full:#}");

    redis.flush_and_purge();
    let purged = sites_after_dump(&mut tracer);
    // The bytes are still mapped (jemalloc keeps them), no longer resident: the former top
    // holder keeps its live bytes, holds a tenth of its memory or less, and leads no more.
    let after = same_site(&purged, &holder).expect("the holder still owns its mappings");
    assert_eq!(bytes(after, "live_bytes"), bytes(&holder, "live_bytes"));
    assert!(
        bytes(after, "resident_bytes") * 10 <= bytes(&holder, "resident_bytes"),
        "{after:#}"
    );
    assert!(
        bytes(after, "reserved_bytes") >= bytes(&holder, "resident_bytes") * 9 / 10,
        "{after:#}"
    );
    let status = fs::read_to_string(format!("/proc/{}/status", redis.pid())).unwrap();
    let rss_anon: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        bytes(&purged, "resident_bytes") <= rss_anon * 1024 + (4 << 20),
        "resident {} with RssAnon {rss_anon} kB",
        bytes(&purged, "resident_bytes")
    );
}

#[test]
fn first_touches_of_memory_jemalloc_reuses_go_to_the_code_that_touched_it() {
    if !require_root() {
        return;
    }
    let redis = Redis::start("faults");
    // Mapped, used and given back before pmap-trace attaches: jemalloc keeps the extents.
    redis.populate();
    redis.flush_and_purge();
    // Optimised: the reader unwinds a stack per first touch, tens of thousands a second.
    let mut tracer = attach_with(pmap_trace_release_exe(), redis.pid(), "20", &["--faults"]);
    let _ = sites_after_dump(&mut tracer);
    redis.populate();
    let sites = sites_after_dump(&mut tracer);
    let touchers = sites["by_touches"].as_array().unwrap();
    let touched: u64 = touchers.iter().map(|t| bytes(t, "touched_bytes")).sum();
    assert!(touched > 50 << 20, "{sites:#}");
    // The code that touched the pages is named by its stack, not by an origin, and the pages
    // it touched are mostly the ones mapped before the attach, reused.
    let first = &touchers[0];
    assert!(first["origin"].is_null(), "{sites:#}");
    assert!(!functions(first).is_empty(), "{first:#}");
    let reused: u64 = touchers
        .iter()
        .filter(|t| t["origin"].is_null())
        .flat_map(|t| t["owners"].as_array().unwrap())
        .filter(|o| o["origin"] == "(mapped before tracing started)")
        .map(|o| bytes(o, "touched_bytes"))
        .sum();
    assert!(reused * 2 > touched, "{sites:#}");
    // Beside it, the owner: the pages of "(mapped before tracing started)" were touched.
    let before = sites["top"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["origin"] == "(mapped before tracing started)")
        .expect("the memory mapped before the attach");
    assert!(bytes(before, "touched_bytes") >= reused, "{before:#}");
}
