//! Programs the runtime tests drive a step at a time, and the directories they write in.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// A program (a runtime running a test script) that says `ready`, then does one step per line
/// it reads and says `grown` after each, and ends on `end`. Killed on drop if still running.
pub struct Program {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Program {
    pub fn start(mut command: Command) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the runtime (cargo xtask setup installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut program = Program {
            child,
            stdin,
            stdout,
        };
        program.expect("ready");
        program
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the program's next line, which must be `said`.
    pub fn expect(&mut self, said: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), said, "the program's output");
    }

    /// Asks for the next step and waits until it is done.
    pub fn step(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.stdin.flush().unwrap();
        self.expect("grown");
    }

    /// Asks the program to end, and checks that it ended well.
    pub fn finish(mut self) {
        writeln!(self.stdin, "end").unwrap();
        self.stdin.flush().unwrap();
        assert!(self.child.wait().unwrap().success(), "the program failed");
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory for one test's files, named after its suite, the test process and `tag`,
/// removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(suite: &str, tag: &str) -> TempDir {
        TempDir::named(&format!("pmap-trace-{suite}-{}-{tag}", std::process::id()))
    }

    /// A fresh directory `name` in the temporary directory, removed on drop.
    pub fn named(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `source` as `CLASS.java` here and compiles it with javac into this directory, the
    /// class path of a `java CLASS` run.
    pub fn compile_java(&self, class: &str, source: &str) {
        let file = self.0.join(format!("{class}.java"));
        fs::write(&file, source).unwrap();
        let status = Command::new("/usr/bin/javac")
            .arg("-d")
            .arg(&self.0)
            .arg(&file)
            .status()
            .expect("run javac (cargo xtask setup installs it)");
        assert!(status.success(), "javac failed");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
