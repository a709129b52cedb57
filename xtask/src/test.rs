//! `cargo xtask test`: everything CI checks. Steps keep running after a failure so one run reports
//! every problem; the exit status is non-zero if any step failed.

use std::{
    env,
    io::{BufRead, BufReader},
    process::{Command, ExitCode, ExitStatus, Stdio},
};

use anyhow::{Result, bail};

use crate::{
    process::{cargo, is_root},
    setup,
};

const SKIP_PRIVILEGED: &str = "PMAP_TRACE_SKIP_PRIVILEGED";

pub fn run() -> Result<ExitCode> {
    let skip_privileged = env::var_os(SKIP_PRIVILEGED).is_some_and(|value| value == "1");
    // Checked before anything is built, so a mistaken invocation fails in seconds.
    if !is_root() && !skip_privileged {
        bail!(
            "the eBPF integration tests load programs into the kernel and need root: run \
             `cargo xtask test` as root (e.g. through sudo), or set {SKIP_PRIVILEGED}=1 to run \
             everything else"
        );
    }
    setup::run()?;

    // xtask/docs builds the docs generator, so it is linted and its unit test runs.
    let mut steps = vec![
        ("rustfmt", cargo_with(&["fmt", "--all", "--", "--check"])),
        ("build", cargo_with(&["build", "-p", "pmap-user", "--bins"])),
        // The tests of whether the reader keeps up run the optimised binary.
        (
            "build release",
            cargo_with(&["build", "--release", "-p", "pmap-user", "--bins"]),
        ),
        (
            "build tests",
            cargo_with(&[
                "test",
                "--workspace",
                "--exclude",
                "pmap-ebpf",
                "--features",
                "xtask/docs",
                "--no-run",
            ]),
        ),
        (
            "clippy",
            cargo_with(&[
                "clippy",
                "--workspace",
                "--exclude",
                "pmap-ebpf",
                "--all-targets",
                "--features",
                "xtask/docs",
                "--",
                "-D",
                "warnings",
            ]),
        ),
        ("docs", rustdoc_denying_warnings()),
        (
            "unit tests",
            cargo_with(&[
                "test",
                "--no-fail-fast",
                "--workspace",
                "--exclude",
                "pmap-ebpf",
                "--exclude",
                "pmap-integration-tests",
                "--features",
                "xtask/docs",
            ]),
        ),
    ];
    if !skip_privileged {
        // The integration tests attach eBPF programs system-wide, so parallel tests would see
        // each other's events.
        steps.push((
            "integration tests",
            // Every suite runs even after one fails: a CI run reports all its failures.
            cargo_with(&[
                "test",
                "--no-fail-fast",
                "-p",
                "pmap-integration-tests",
                "--",
                "--test-threads=1",
            ]),
        ));
    }

    let total = steps.len();
    let mut failed = Vec::new();
    let mut counts = TestCounts::default();
    for (name, mut cmd) in steps {
        println!("==> {name}");
        let passed = match run_counting(&mut cmd, &mut counts) {
            Ok(status) => status.success(),
            Err(err) => {
                eprintln!("xtask: {err:#}");
                false
            }
        };
        if !passed {
            failed.push(name);
        }
    }
    let skipped = if skip_privileged {
        format!("; integration tests skipped ({SKIP_PRIVILEGED}=1)")
    } else {
        String::new()
    };
    if failed.is_empty() {
        println!("xtask test: all {total} steps passed{skipped}");
    } else {
        println!(
            "xtask test: FAILED: {} ({} of {total} steps passed){skipped}",
            failed.join(", "),
            total - failed.len()
        );
    }
    // The closing line counts every test binary's tests, so a reader of the log need not add
    // them up.
    println!("tests: {} passed, {} failed", counts.passed, counts.failed);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Tests passed and failed, summed over every `test result:` line cargo printed.
#[derive(Default)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    /// Adds the counts of a libtest summary such as
    /// `test result: ok. 62 passed; 0 failed; 0 ignored; ...`.
    fn add_summary(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(number), Some(word)) = (words.next(), words.next()) {
                let Ok(number) = number.parse::<u64>() else {
                    continue;
                };
                match word {
                    "passed" => self.passed += number,
                    "failed" => self.failed += number,
                    _ => {}
                }
            }
        }
    }
}

/// Runs `cmd`, passing its output through while counting libtest's summaries.
fn run_counting(cmd: &mut Command, counts: &mut TestCounts) -> Result<ExitStatus> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        counts.add_summary(&line);
    }
    Ok(child.wait()?)
}

/// `cargo doc` of the host crates with every rustdoc warning an error: a broken intra-doc link
/// (an item renamed or moved) fails the run instead of leaving a dead link in the docs.
fn rustdoc_denying_warnings() -> Command {
    let mut cmd = cargo_with(&[
        "doc",
        "--no-deps",
        "--workspace",
        "--exclude",
        "pmap-ebpf",
        "--features",
        "xtask/docs",
    ]);
    cmd.env("RUSTDOCFLAGS", "-D warnings");
    cmd
}

fn cargo_with(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_summaries() {
        let mut counts = TestCounts::default();
        counts.add_summary("test result: ok. 62 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.39s");
        counts.add_summary("test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured");
        counts.add_summary("running 3 tests");
        assert_eq!((counts.passed, counts.failed), (69, 2));
    }
}
