//! `cargo xtask test`: everything CI checks. Steps keep running after a failure so one run reports
//! every problem; the exit status is non-zero if any step failed.

use std::{
    env,
    process::{Command, ExitCode},
};

use anyhow::{Result, bail};

use crate::{
    process::{cargo, is_root, run_cmd},
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
        (
            "unit tests",
            cargo_with(&[
                "test",
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
            cargo_with(&[
                "test",
                "-p",
                "pmap-integration-tests",
                "--",
                "--test-threads=1",
            ]),
        ));
    }

    let total = steps.len();
    let mut failed = Vec::new();
    for (name, mut cmd) in steps {
        println!("==> {name}");
        let passed = match run_cmd(&mut cmd) {
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
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "xtask test: FAILED: {} ({} of {total} steps passed){skipped}",
            failed.join(", "),
            total - failed.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn cargo_with(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(args);
    cmd
}
