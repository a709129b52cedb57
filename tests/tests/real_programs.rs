//! Real programs nobody here wrote, traced by the `pmap-trace` binary while they work: Debian's
//! python3 importing 140-odd standard modules (C extensions such as `_ssl`, `_sqlite3`, `_ctypes`
//! and `_decimal` among them, each loading its own libraries), and a multi-threaded redis-server
//! (I/O threads, background threads, jemalloc's purging thread) under a redis-benchmark load of
//! large values; and node, attached to by the id of one of its threads. Each is traced from its
//! launch and attached to mid-run. At quiescent moments —
//! every thread of the target stopped by SIGSTOP — a SIGUSR1 dump (which first applies every
//! record produced so far) must equal what `pmap` prints then, byte for byte, and `--verify`
//! must find the table equal to `/proc/PID/maps`.
//!
//! `cargo xtask setup` installs the programs (Debian packages python3, redis-server,
//! redis-tools and nodejs).

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pmap_integration_tests::{TempDir, Tracer, assert_same_text, real_pmap, require_root};

const PYTHON: &str = "/usr/bin/python3";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";

/// Imports the standard modules below, pausing PAUSE seconds after each, and stops itself with
/// SIGSTOP after every BATCH of them (BATCH 0: never) and once more after the last. Says
/// `importing` on stderr first. Exits 1 if a module cannot be imported. None of these modules
/// was removed in later Python versions.
const IMPORTER: &str = r#"
import importlib, os, signal, sys, time
MODULES = """json decimal sqlite3 ssl ctypes multiprocessing asyncio xml.etree.ElementTree
hashlib zlib bz2 lzma csv datetime fractions statistics random array struct select socket
selectors threading queue heapq bisect collections functools itertools operator re string
textwrap unicodedata codecs io pathlib tempfile shutil glob fnmatch stat filecmp tarfile
zipfile gzip pickle copyreg shelve dbm configparser logging logging.handlers argparse getopt
getpass curses platform errno ctypes.util concurrent.futures subprocess sched contextvars
email email.mime.text email.parser mailbox mimetypes base64 binascii quopri html html.parser
xml.dom.minidom xml.sax urllib.request urllib.parse http.client http.server ftplib poplib
imaplib smtplib uuid socketserver xmlrpc.client ipaddress wave colorsys gettext locale cmd
shlex typing pydoc doctest unittest unittest.mock timeit trace tracemalloc dataclasses enum
graphlib numbers math cmath abc atexit traceback gc inspect site code codeop pprint reprlib
weakref types copy dis pickletools ast symtable tokenize tabnanny py_compile compileall
zipimport pkgutil modulefinder runpy importlib.metadata sysconfig secrets hmac termios tty pty
fcntl resource grp pwd mmap readline rlcompleter""".split()
batch, pause = int(sys.argv[1]), float(sys.argv[2])
print("importing", file=sys.stderr, flush=True)
for done, name in enumerate(MODULES, 1):
    importlib.import_module(name)
    time.sleep(pause)
    if batch and done % batch == 0 and done < len(MODULES):
        os.kill(os.getpid(), signal.SIGSTOP)
os.kill(os.getpid(), signal.SIGSTOP)
"#;
/// How many modules [`IMPORTER`] imports.
const IMPORTED_MODULES: usize = 147;
/// C extensions the importer loads: their files must be in its last dump.
const EXTENSIONS: &[&str] = &["_ssl.", "_sqlite3.", "_ctypes.", "_decimal.", "_lzma."];

/// The state letter of each thread of `pid`; empty once the process is gone.
fn thread_states(pid: i32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            stat[stat.rfind(')')? + 2..].chars().next()
        })
        .collect()
}

/// What a wait for a quiescent moment found.
#[derive(Debug, PartialEq, Eq)]
enum Quiet {
    /// Every thread is stopped: nothing can change the address space.
    Stopped,
    /// The process has exited (a zombie, or reaped).
    Ended,
}

/// Waits until every thread of `pid` is stopped, or the process has ended.
fn wait_quiet(pid: i32) -> Quiet {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = thread_states(pid);
        if states.is_empty() || states.iter().all(|&s| s == 'Z' || s == 'X') {
            return Quiet::Ended;
        }
        if states.iter().all(|&s| s == 'T' || s == 't') {
            return Quiet::Stopped;
        }
        assert!(
            Instant::now() < deadline,
            "{pid} did not stop: thread states {states:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a process this test started (directly or through pmap-trace).
    unsafe { libc::kill(pid, signal) };
}

/// A child process the test started, killed and reaped if the test ends first.
struct Killed(Child);

impl Killed {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process `pmap-trace` launched: killed by its PID if the test ends before it does (its
/// parent, pmap-trace, reaps it).
struct Launched {
    pid: i32,
    ended: bool,
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.ended {
            signal(self.pid, libc::SIGKILL);
        }
    }
}

/// A running `pmap-trace --verify`, killed if the test ends first.
/// What `reader` holds now, without waiting for the end: in launch mode the command shares
/// pmap-trace's output, and a failing test would wait on it for as long as the server runs.
fn available<T: Read + std::os::fd::AsRawFd>(reader: &mut BufReader<T>) -> String {
    // SAFETY: fcntl on a descriptor the reader owns; only its blocking mode changes.
    unsafe {
        let fd = reader.get_ref().as_raw_fd();
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut text = Vec::new();
    let _ = reader.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

struct Tracing {
    tracer: Tracer,
    /// Whether it prints the traced calls (`--no-events` not given).
    events: bool,
    /// Format flags, given to `pmap` too.
    format: Vec<String>,
}

impl Tracing {
    /// `pmap-trace --verify FORMAT ARGS...`, once it says it is attached.
    fn start(format: &[&str], events: bool, args: &[&str]) -> Tracing {
        let mut command = Command::new(pmap_integration_tests::pmap_trace_exe());
        command.arg("--verify").args(format);
        if !events {
            command.arg("--no-events");
        }
        command.args(args);
        Tracing {
            tracer: Tracer::attach_command(command),
            events,
            format: format.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// Asks for a dump of `pid`, which is stopped, and checks it against `pmap` and the
    /// verification against the kernel. Returns the dump and the call lines printed before it.
    fn checkpoint(&mut self, pid: i32, what: &str) -> (String, Vec<String>) {
        self.tracer.signal(libc::SIGUSR1);
        let mut before = Vec::new();
        let mut dump = String::new();
        loop {
            let line = self.line(what);
            if dump.is_empty() && !line.starts_with(&format!("{pid}:   ")) {
                assert!(
                    self.events && !line.starts_with("pmap-trace:"),
                    "{what}: unexpected line before the dump: {line}"
                );
                before.push(line);
                continue;
            }
            dump.push_str(&line);
            if line.starts_with(" total ") || line.starts_with("total kB") {
                break;
            }
        }
        let flags: Vec<&str> = self.format.iter().map(String::as_str).collect();
        assert_same_text(what, &real_pmap(&flags, pid), &dump);
        let mut verdict = self.line(what);
        // The plain run's call-site summary (a heading, then a line a site, and the modules
        // without symbols in a line of its own) comes between the dump and the verdict.
        while verdict.starts_with(&format!("sites {pid}: ")) || verdict.starts_with("  ") {
            verdict = self.line(what);
        }
        if !verdict.starts_with(&format!(
            "pmap-trace: verify {pid}: the table matches /proc/{pid}/maps ("
        )) {
            self.tracer.signal(libc::SIGKILL);
            let rest = available(&mut self.tracer.stdout);
            panic!("{what}: --verify did not find the table equal:\n{verdict}{rest}");
        }
        (dump, before)
    }

    /// The next line of output, with its newline.
    fn line(&mut self, what: &str) -> String {
        let mut line = String::new();
        let n = self.tracer.stdout.read_line(&mut line).unwrap();
        if n == 0 {
            let err = available(&mut self.tracer.stderr);
            panic!("{what}: pmap-trace ended; stderr:\n{err}");
        }
        line
    }

    /// Waits for pmap-trace to exit; its exit status and the rest of its output.
    fn finish(&mut self) -> (i32, String) {
        let mut rest = String::new();
        self.tracer.stdout.read_to_string(&mut rest).unwrap();
        let status = self.tracer.child.wait().unwrap();
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.tracer.child.kill();
        let _ = self.tracer.child.wait();
    }
}

/// The number of mappings a dump lists.
fn rows(dump: &str) -> usize {
    dump.lines()
        .filter(|l| l.len() > 16 && l.as_bytes()[..16].iter().all(u8::is_ascii_hexdigit))
        .count()
}

#[test]
fn python_importing_the_standard_library_traced_from_launch_equals_pmap_at_each_stop() {
    if !require_root() {
        return;
    }
    // Stops itself after every 15 modules: 10 checkpoints.
    let mut tracing = Tracing::start(&[], false, &["--", PYTHON, "-c", IMPORTER, "15", "0"]);
    let mut python = Launched {
        pid: tracing.tracer.attached_pid(),
        ended: false,
    };
    let mut dumps = Vec::new();
    while wait_quiet(python.pid) == Quiet::Stopped {
        let what = format!("python3 launched, stop {}", dumps.len() + 1);
        dumps.push(tracing.checkpoint(python.pid, &what).0);
        signal(python.pid, libc::SIGCONT);
    }
    python.ended = true;
    let (code, rest) = tracing.finish();
    assert_eq!(
        code, 0,
        "python3 (whose status pmap-trace exits with) failed"
    );
    assert_eq!(dumps.len(), IMPORTED_MODULES.div_ceil(15), "stops");
    println!(
        "{} stops, {} to {} mappings",
        dumps.len(),
        rows(&dumps[0]),
        rows(dumps.last().unwrap())
    );
    let last = dumps.last().unwrap();
    for extension in EXTENSIONS {
        assert!(last.contains(extension), "{extension} not mapped:\n{last}");
    }
    assert!(
        rows(&dumps[0]) + 40 < rows(last),
        "the imports mapped too little to prove anything: {} then {} mappings",
        rows(&dumps[0]),
        rows(last)
    );
    assert!(
        rest.starts_with(&format!("{}:   ", python.pid)),
        "a final dump when python3 exits: {rest}"
    );
}

#[test]
fn python_importing_the_standard_library_attached_mid_run_equals_pmap_when_stopped() {
    if !require_root() {
        return;
    }
    // 20 ms after each module: 3 to 4 s of importing, most of it after pmap-trace attaches.
    let mut child = Command::new(PYTHON)
        .args(["-c", IMPORTER, "0", "0.02"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut said = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "importing\n");
    let mut python = Killed(child);
    let pid = python.pid();
    let mut tracing = Tracing::start(&["-x"], false, &["-p", &pid.to_string()]);
    let mut dumps = Vec::new();
    // Stopped by the test at random points of its imports, and at its end by itself; it is a
    // zombie, not reaped, once it has exited.
    loop {
        std::thread::sleep(Duration::from_millis(120));
        // It may have stopped itself after its last import; a second SIGSTOP changes nothing.
        signal(pid, libc::SIGSTOP);
        if wait_quiet(pid) == Quiet::Ended {
            break;
        }
        let what = format!("python3 attached, stop {} (-x)", dumps.len() + 1);
        dumps.push(tracing.checkpoint(pid, &what).0);
        signal(pid, libc::SIGCONT);
    }
    let status = python.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "python3 failed to import");
    let (code, _) = tracing.finish();
    assert_eq!(code, 0);
    println!(
        "{} stops, {} to {} mappings",
        dumps.len(),
        rows(&dumps[0]),
        rows(dumps.last().unwrap())
    );
    assert!(
        dumps.len() >= 5,
        "only {} stops while importing: pmap-trace attached too late",
        dumps.len()
    );
    assert!(
        rows(&dumps[0]) + 20 < rows(dumps.last().unwrap()),
        "too little was imported after attaching: {} then {} mappings",
        rows(&dumps[0]),
        rows(dumps.last().unwrap())
    );
}

const NODE: &str = "/usr/bin/node";

/// Allocates an 8 MiB buffer every 20 ms and keeps the last four: a steady stream of calls
/// from a process that runs a dozen threads (V8's platform workers, libuv's, the signal
/// thread).
const NODE_ALLOCATOR: &str = r#"
const kept = [];
setInterval(() => {
    kept.push(Buffer.alloc(8 << 20, 1));
    if (kept.length > 4) kept.shift();
}, 20);
console.log("ready");
"#;

#[test]
fn node_attached_by_the_id_of_one_of_its_threads_is_traced_as_its_process() {
    if !require_root() {
        return;
    }
    let mut child = Command::new(NODE)
        .args(["-e", NODE_ALLOCATOR])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut said = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "ready\n");
    let node = Killed(child);
    let pid = node.pid();
    let thread: i32 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
        .find(|&tid| tid != pid)
        .expect("node runs more than one thread");
    let mut tracing = Tracing::start(&[], true, &["-p", &thread.to_string()]);
    assert_eq!(
        tracing.tracer.attached.trim_end(),
        format!("pmap-trace: attached to {pid} (node) (thread {thread} given)")
    );
    for stop in 1..=3 {
        std::thread::sleep(Duration::from_millis(300));
        signal(pid, libc::SIGSTOP);
        assert_eq!(wait_quiet(pid), Quiet::Stopped);
        let (_, calls) = tracing.checkpoint(pid, &format!("node by thread {thread}, stop {stop}"));
        let own = format!(" {pid}/");
        assert!(
            calls.iter().any(|line| line.contains(&own)),
            "stop {stop}: no call of {pid} in {} lines before the dump",
            calls.len()
        );
        signal(pid, libc::SIGCONT);
    }
    drop(node);
    let (code, rest) = tracing.finish();
    assert_eq!(code, 0);
    assert!(
        rest.contains(&format!("{pid}/")) && rest.contains("+++ exited +++"),
        "the process's exit ends the trace: {rest}"
    );
}

const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The user postgres runs as: it refuses to run as root.
const NOBODY: &str = "65534";

/// A PostgreSQL server of its own, run as user nobody on a Unix socket in a temporary
/// directory, with autovacuum off so that the processes it runs stay the same while a test
/// looks: the postmaster and its checkpointer, background writer, WAL writer and logical
/// replication launcher. Shut down (fast) and reaped on drop.
struct Postgres {
    postmaster: Child,
    dir: TempDir,
}

impl Postgres {
    const CHILDREN: usize = 4;

    fn start(tag: &str) -> Postgres {
        let dir = TempDir::new("real", tag);
        let chown = Command::new("chown")
            .args([&format!("{NOBODY}:{NOBODY}"), dir.0.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(chown.success());
        let data = dir.0.join("data");
        let initdb = Self::as_nobody("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-N", "-U", "postgres"])
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let log = std::fs::File::create(dir.0.join("log")).unwrap();
        let postmaster = Self::as_nobody("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir.0)
            .args(["-c", "listen_addresses=", "-c", "autovacuum=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let server = Postgres { postmaster, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while seed_children(server.pid()).len() < Self::CHILDREN {
            assert!(
                Instant::now() < deadline,
                "postgres did not start its processes; its log:\n{}",
                std::fs::read_to_string(server.dir.0.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn as_nobody(program: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(Path::new(POSTGRES_BIN).join(program))
            .current_dir(std::env::temp_dir());
        command
    }

    fn pid(&self) -> i32 {
        self.postmaster.id() as i32
    }

    /// Fast shutdown: the postmaster ends its children, then itself.
    fn stop(&mut self) {
        signal(self.pid(), libc::SIGINT);
        let _ = self.postmaster.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.postmaster.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// The live children of `pid` (the backends' processes of a postmaster), from
/// `/proc/PID/task/*/children`; zombies left out.
fn seed_children(pid: i32) -> Vec<i32> {
    pmap_trace::procfs::process::children_of(pid)
        .into_iter()
        .filter(|&child| !pmap_trace::procfs::process::has_exited(child))
        .collect()
}

#[test]
fn follow_takes_the_processes_postgres_had_forked_before_the_attach() {
    if !require_root() {
        return;
    }
    let mut server = Postgres::start("follow");
    let postmaster = server.pid();
    let children = seed_children(postmaster);
    assert_eq!(children.len(), Postgres::CHILDREN, "{children:?}");
    let mut tracer = Tracer::attach(&["-f", "-p", &postmaster.to_string()]);
    assert_eq!(
        tracer.attached.trim_end(),
        format!(
            "pmap-trace: attached to {postmaster} (postgres) and {} descendants",
            Postgres::CHILDREN
        )
    );
    let mut all = vec![postmaster];
    all.extend(&children);
    for &pid in &all {
        signal(pid, libc::SIGSTOP);
    }
    for &pid in &all {
        assert_eq!(wait_quiet(pid), Quiet::Stopped);
    }
    // One block per process, in PID order, as one pmap run over them all prints them.
    tracer.signal(libc::SIGUSR1);
    let mut text = String::new();
    while text.matches("\n total ").count() < all.len() {
        text.push_str(&tracer.read_dump());
    }
    let dump = &text[text
        .find(&format!("{}:   ", all.iter().min().unwrap()))
        .unwrap()..];
    let mut pmap = Command::new("pmap");
    pmap.args(
        all.iter()
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|pid| pid.to_string()),
    );
    let expected = String::from_utf8(pmap.output().unwrap().stdout).unwrap();
    assert_same_text("postgres and its children", &expected, dump);
    for &pid in &all {
        signal(pid, libc::SIGCONT);
    }
    // Each child's exit is seen: the kernel traced it.
    server.stop();
    let (code, rest, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    for child in children {
        assert!(
            rest.lines()
                .any(|l| l.contains(&format!(" {child}/")) && l.ends_with("+++ exited +++")),
            "no exit of child {child} in:\n{rest}"
        );
    }
}

#[test]
fn postgres_parallel_query_segments_are_named_by_their_whole_path() {
    if !require_root() {
        return;
    }
    let mut server = Postgres::start("dsm");
    let postmaster = server.pid();
    let tracer = Tracer::attach(&["-f", "-p", &postmaster.to_string()]);
    // A parallel query: the backend creates dynamic shared memory segments (shm_open'd
    // files /dev/shm/PostgreSQL.N), its workers map them, and all unmap them within
    // milliseconds, often before pmap-trace handles the calls.
    let query = "set force_parallel_mode = on; set parallel_setup_cost = 0; \
                 set parallel_tuple_cost = 0; select count(*) from pg_class;";
    for _ in 0..3 {
        let psql = Postgres::as_nobody("psql")
            .arg("-h")
            .arg(&server.dir.0)
            .args(["-U", "postgres", "-d", "postgres", "-qAtc", query])
            .output()
            .expect("run psql");
        assert!(
            psql.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&psql.stderr)
        );
    }
    server.stop();
    let (code, out, err) = tracer.finish();
    assert_eq!(code, 0, "stderr: {err}");
    let segments: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" mmap(") && l.contains("PostgreSQL."))
        .collect();
    assert!(
        segments.len() >= 6,
        "too few segment mappings: {segments:#?}"
    );
    for line in segments {
        assert!(line.contains("</dev/shm/PostgreSQL."), "{line}");
    }
}

/// redis-server on a private Unix socket, nothing persisted, four I/O threads (reads too).
fn redis_args(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    [
        "--port",
        "0",
        "--unixsocket",
        &format!("{dir}/redis.sock"),
        "--unixsocketperm",
        "700",
        "--dir",
        dir,
        "--logfile",
        &format!("{dir}/redis.log"),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--io-threads",
        "4",
        "--io-threads-do-reads",
        "yes",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// redis-benchmark looping over SET, GET, LPUSH and LPOP of 32 KiB values from 32 clients over
/// `dir`'s socket, once the server listens there. The SETs of random keys among 100 000 keep the
/// data growing (up to 32 MiB a cycle) and each cycle builds and drains a list as large: the
/// allocator keeps mapping memory, from several of redis's threads, and purging it.
fn start_load(dir: &Path, server: i32) -> Killed {
    let socket = dir.join("redis.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline && !thread_states(server).is_empty(),
            "redis-server did not listen on {}; its log:\n{}",
            socket.display(),
            std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let child = Command::new(REDIS_BENCHMARK)
        .arg("-s")
        .arg(&socket)
        .args(["-c", "32", "-n", "1000", "-r", "100000", "-d", "32768"])
        .args(["-t", "set,get,lpush,lpop", "-l", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-benchmark");
    Killed(child)
}

/// Threads of `pid` by name (`/proc/PID/task/*/comm`).
fn thread_names(pid: i32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

/// Stops redis-server six times while the benchmark runs and compares each tracer's dump with
/// pmap; the address space must have kept changing meanwhile (the call lines of the tracers
/// that print them say so). (Which threads make the calls varies
/// from run to run: all of redis's threads, or only its main thread, allocate new extents.)
fn stop_under_load(tracers: &mut [Tracing], pid: i32, what: &str) {
    const CHECKPOINTS: usize = 6;
    let mut callers = BTreeSet::new();
    let mut calls = 0;
    for n in 1..=CHECKPOINTS {
        std::thread::sleep(Duration::from_millis(700));
        signal(pid, libc::SIGSTOP);
        assert_eq!(
            wait_quiet(pid),
            Quiet::Stopped,
            "{what}: redis-server ended"
        );
        if n == 1 {
            let names = thread_names(pid);
            assert!(
                ["io_thd_1", "io_thd_2", "io_thd_3", "jemalloc_bg_thd"]
                    .iter()
                    .all(|name| names.contains(*name)),
                "{what}: redis-server's threads are {names:?}"
            );
        }
        for tracing in tracers.iter_mut() {
            let what = format!("{what}, pmap {}, stop {n}", tracing.format.join(" "));
            let (_, lines) = tracing.checkpoint(pid, &what);
            if n > 1 {
                calls += lines.len();
                // "HH:MM:SS.micros PID/TID COMM call(...)"
                callers.extend(
                    lines
                        .iter()
                        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned)),
                );
            }
        }
        signal(pid, libc::SIGCONT);
    }
    println!("{what}: {calls} calls under load, from threads {callers:?}");
    assert!(
        calls >= 5,
        "{what}: only {calls} calls changed the address space under load"
    );
}

#[test]
fn redis_under_load_traced_from_launch_equals_pmap_at_each_stop() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("real", "launch");
    let mut args = vec!["--".to_owned(), REDIS_SERVER.to_owned()];
    args.extend(redis_args(&dir.0));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let launcher = Tracing::start(&["-x"], true, &args);
    let mut redis = Launched {
        pid: launcher.tracer.attached_pid(),
        ended: false,
    };
    // The default format from a second tracer, attached to the launched server.
    let attached = Tracing::start(&[], false, &["-p", &redis.pid.to_string()]);
    let mut tracers = [launcher, attached];
    let benchmark = start_load(&dir.0, redis.pid);
    stop_under_load(&mut tracers, redis.pid, "redis-server launched");
    drop(benchmark);
    signal(redis.pid, libc::SIGTERM);
    for tracing in &mut tracers {
        let (code, rest) = tracing.finish();
        assert_eq!(code, 0, "pmap-trace {:?}; output:\n{rest}", tracing.format);
    }
    redis.ended = true;
}

#[test]
fn redis_under_load_attached_mid_run_equals_pmap_at_each_stop() {
    if !require_root() {
        return;
    }
    let dir = TempDir::new("real", "attach");
    let mut redis = Killed(
        Command::new(REDIS_SERVER)
            .args(redis_args(&dir.0))
            .stdin(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let pid = redis.pid();
    let benchmark = start_load(&dir.0, pid);
    // Attached while the load runs.
    std::thread::sleep(Duration::from_millis(300));
    let pid_arg = pid.to_string();
    let mut tracers = [
        Tracing::start(&[], true, &["-p", &pid_arg]),
        Tracing::start(&["-x"], false, &["-p", &pid_arg]),
    ];
    stop_under_load(&mut tracers, pid, "redis-server attached");
    drop(benchmark);
    signal(pid, libc::SIGTERM);
    assert_eq!(redis.0.wait().unwrap().code(), Some(0), "redis-server");
    for tracing in &mut tracers {
        let (code, _) = tracing.finish();
        assert_eq!(code, 0, "pmap-trace {:?}", tracing.format);
    }
}
