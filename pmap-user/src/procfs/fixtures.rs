//! Processes with unusual mappings and command lines, for tests that compare against `/proc`
//! and procps.

use std::{
    ffi::OsStr,
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// A unified-style diff of `want` and `got` by lines (longest common subsequence), with
/// three lines of context around each change; bytes outside printable ASCII are escaped.
pub fn line_diff(want: &[u8], got: &[u8]) -> String {
    let want: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    let got: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    // common[i][j]: length of the longest common subsequence of want[i..] and got[j..].
    let mut common = vec![vec![0u32; got.len() + 1]; want.len() + 1];
    for i in (0..want.len()).rev() {
        for j in (0..got.len()).rev() {
            common[i][j] = if want[i] == got[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        if i < want.len() && j < got.len() && want[i] == got[j] {
            lines.push((' ', want[i]));
            (i, j) = (i + 1, j + 1);
        } else if j == got.len() || (i < want.len() && common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', want[i]));
            i += 1;
        } else {
            lines.push(('+', got[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        lines[k.saturating_sub(3)..(k + 4).min(lines.len())]
            .iter()
            .any(|(tag, _)| *tag != ' ')
    };
    let mut out = String::from("--- expected (procps pmap)\n+++ got\n");
    let mut skipped = false;
    for (k, (tag, line)) in lines.iter().enumerate() {
        if near_change(k) {
            out += &format!("{tag}{}\n", line.escape_ascii());
            skipped = false;
        } else if !skipped {
            out += "@@\n";
            skipped = true;
        }
    }
    out
}

/// A directory of test files, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Canonical, because the kernel prints mapped files by their canonical path.
        let base = fs::canonicalize(std::env::temp_dir()).unwrap();
        let path = base.join(format!("pmap-trace-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed and reaped on drop.
pub struct Child(std::process::Child);

impl Child {
    pub fn spawn(mut command: Command) -> Child {
        Child(command.spawn().unwrap())
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Its stdin, which the command must have piped.
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.0.stdin.take().expect("stdin is piped")
    }

    /// Its stdout, which the command must have piped.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.0.stdout.take().expect("stdout is piped")
    }

    /// Stops the child (SIGSTOP) and waits until the kernel reports it stopped, so that its
    /// mappings hold still while they are compared.
    pub fn stop(&self) {
        // SAFETY: signals our own child, which is not reaped before drop.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
        wait_for_state(self.pid(), |state| state == 'T');
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state letter of `/proc/PID/stat`.
pub fn state(pid: i32) -> Option<char> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.iter().rposition(|&b| b == b')')? + 2;
    stat.get(after).map(|&b| b as char)
}

pub fn wait_for_state(pid: i32, want: impl Fn(char) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state(pid).is_some_and(&want) {
        assert!(
            Instant::now() < deadline,
            "process {pid} stuck in state {:?}",
            state(pid)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `sleep 600`, stopped once it sleeps.
pub fn sleeper() -> Child {
    let mut command = Command::new("sleep");
    command.arg("600");
    let child = Child::spawn(command);
    let exe = Path::new("/proc").join(child.pid().to_string()).join("exe");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Sleeping in sleep(1) itself, not in the forked test binary or the dynamic loader.
    while !(fs::read_link(&exe).is_ok_and(|p| p.ends_with("sleep"))
        && state(child.pid()) == Some('S'))
    {
        assert!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.stop();
    child
}

const MAPPER: &str = r#"
import ctypes, mmap, os, sys, time
keep = []
for path in sys.stdin.buffer.read().split(b"\0"):
    if not path:
        continue
    fd = os.open(path, os.O_RDWR)
    base = os.path.basename(path)
    keep.append(mmap.mmap(fd, 4096, mmap.MAP_SHARED if b"shared" in base else mmap.MAP_PRIVATE))
    os.close(fd)
    if b"deleted" in base:
        os.unlink(path)
libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
shmid = libc.shmget(0, 8192, 0o1600)
libc.shmat(shmid, None, 0)
libc.shmctl(shmid, 0, None)
memfd = os.memfd_create("pmap test memfd")
os.ftruncate(memfd, 4096)
keep.append(mmap.mmap(memfd, 4096))
keep.append(mmap.mmap(-1, 1 << 40, flags=mmap.MAP_PRIVATE | 0x4000, prot=0))
print("ready", flush=True)
time.sleep(600)
"#;

/// A stopped `python3 -c` that maps each of `files` (shared when the file name contains
/// "shared", then unlinked when it contains "deleted"), an attached-and-removed SysV segment,
/// a memfd and a 1 TiB reservation. `argv0` and `extra_args` end up in its command line.
pub fn mapper(argv0: &[u8], extra_args: &[&[u8]], files: &[PathBuf]) -> Child {
    let mut command = Command::new("python3");
    command
        .arg0(OsStr::from_bytes(argv0))
        .arg("-c")
        .arg(MAPPER)
        .args(extra_args.iter().map(|a| OsStr::from_bytes(a)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = Child(command.spawn().unwrap());
    let mut list = Vec::new();
    for file in files {
        list.extend_from_slice(file.as_os_str().as_bytes());
        list.push(0);
    }
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(&list).unwrap();
    drop(stdin);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n", "the python mapper failed");
    child.stop();
    child
}

fn create(path: &Path) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, [b'x'; 4096]).unwrap();
    path.to_path_buf()
}

/// Files whose names exercise the kernel's and pmap's escaping and naming.
pub fn odd_files(dir: &Path) -> Vec<PathBuf> {
    let names: &[&[u8]] = &[
        b"plain.bin",
        b"with space shared.bin",
        b"gone deleted.bin",
        b"fake (deleted)",
        b"tab\there",
        b"new\nline",
        b"utf8-\xc3\xa9.bin",
        b"invalid-\xff\xfe",
        b"del\x7f",
        b"back\\slash",
        b"[brackets]",
        b"SYSV00000000 (deleted)",
    ];
    names
        .iter()
        .map(|n| create(&dir.join(OsStr::from_bytes(n))))
        .collect()
}

/// Where pmap's 1023-byte `fgets` splits a maps line whose fixed columns are padded to the
/// name column: 73 bytes of columns, then this many bytes of path.
pub const PATH_BYTES_IN_FIRST_RECORD: usize = 1023 - 73;

/// A file whose path has `tail` starting at byte `at`, the rest made of long components.
pub fn long_file(dir: &Path, tag: &str, at: usize, tail: &str) -> PathBuf {
    let mut path = dir.join(tag).into_os_string().into_vec();
    path.push(b'/');
    let slash_before_tail = !tail.starts_with('/');
    loop {
        let room = at - path.len();
        if slash_before_tail && room <= 201 {
            path.extend(std::iter::repeat_n(b'a', room - 1));
            path.push(b'/');
            break;
        }
        if !slash_before_tail && room <= 200 {
            path.extend(std::iter::repeat_n(b'a', room));
            break;
        }
        path.extend(std::iter::repeat_n(b'a', 100));
        path.push(b'/');
    }
    assert_eq!(path.len(), at);
    path.extend_from_slice(tail.as_bytes());
    create(Path::new(OsStr::from_bytes(&path)))
}

/// Files whose maps lines are longer than pmap's line buffer, with continuations that pmap's
/// `sscanf` reads as fields in various ways. `shm_minor` lets one continuation pass for a
/// SysV segment.
pub fn long_files(dir: &Path, shm_minor: u32) -> Vec<PathBuf> {
    let at = PATH_BYTES_IN_FIRST_RECORD;
    vec![
        long_file(dir, "rescan", at, "bc-def rw-s 10 3:4 99 zzz/end"),
        // The line is exactly 1023 bytes: its newline is a record of its own.
        long_file(dir, "exact", at - 1, "z"),
        long_file(dir, "slash", at, "/slashstart"),
        long_file(dir, "negative", at, "-12 x"),
        long_file(dir, "hexprefix", at, "0xg/q"),
        long_file(dir, "twice-shared", at, "qqq"),
        long_file(
            dir,
            "overflow",
            at,
            "fffffffffffffffffffff-1 r x/short-perms",
        ),
        long_file(
            dir,
            "spoof",
            at,
            &format!("1000-2000 rw-s 0 0:{shm_minor:x} 77 /SYSVx"),
        ),
        // Continuations that start with a capital are smaps keys to pmap, even in maps.
        long_file(dir, "capital-rss", at, "Rss: 77 kB/counted"),
        long_file(dir, "capital-swap", at, "Swap: 1/swapped"),
        long_file(
            dir,
            "three-records",
            at,
            &format!(
                "c/{}/{}/{}/{}/{}/1ab-2 rw-p 0 0:0 0 k",
                "d".repeat(200),
                "e".repeat(200),
                "f".repeat(200),
                "g".repeat(200),
                "h".repeat(200)
            ),
        ),
    ]
}

/// A private anonymous mapping of this test process, without huge pages (a run of 2 MiB would
/// be resident whatever the test touched), unmapped when dropped.
pub struct Anon {
    at: *mut u8,
    len: usize,
}

impl Anon {
    pub fn new(pages: usize, prot: i32) -> Anon {
        let len = pages * crate::model::PAGE_SIZE as usize;
        // SAFETY: a fresh anonymous mapping, nothing else refers to it.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        // SAFETY: the mapping just made.
        assert_eq!(unsafe { libc::madvise(at, len, libc::MADV_NOHUGEPAGE) }, 0);
        Anon { at: at.cast(), len }
    }

    /// The address of page `n`.
    pub fn page(&self, n: usize) -> u64 {
        self.at as u64 + (n as u64) * crate::model::PAGE_SIZE
    }

    pub fn end(&self) -> u64 {
        self.at as u64 + self.len as u64
    }

    pub fn write(&self, n: usize) {
        assert!(n * (crate::model::PAGE_SIZE as usize) < self.len);
        // SAFETY: inside the mapping, which is writable when a test writes it.
        unsafe { (self.page(n) as *mut u8).write_volatile(1) };
    }

    pub fn read(&self, n: usize) -> u8 {
        assert!(n * (crate::model::PAGE_SIZE as usize) < self.len);
        // SAFETY: inside the mapping.
        unsafe { (self.page(n) as *const u8).read_volatile() }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.at.cast(), self.len) };
    }
}
