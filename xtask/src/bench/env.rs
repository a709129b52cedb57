//! The bench's environment: the tools it compares against, the workloads and bpftrace scripts it
//! writes under `target/bench`, and the pmap-trace it measures.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::process::{cargo, find_in_path, probe, run_cmd, run_cmd_ok, workspace_root};

/// A tool the bench compares against: its path, or why it is not there.
pub(super) type Tool = std::result::Result<PathBuf, String>;

pub(super) struct Env {
    pub(super) bench_dir: PathBuf,
    pub(super) pmap_trace: PathBuf,
    pub(super) workloads: PathBuf,
    pub(super) python: PathBuf,
    pub(super) churn_py: PathBuf,
    /// node for the JavaScript allocation loop (`cargo xtask setup` installs it).
    pub(super) node: Tool,
    pub(super) churn_js: PathBuf,
    /// redis-server, redis-benchmark and redis-cli (`cargo xtask setup` installs them).
    pub(super) redis: std::result::Result<Redis, String>,
    pub(super) pmap: PathBuf,
    pub(super) bpftrace: Tool,
    pub(super) strace: Tool,
    /// bpftrace script for launch mode (filters on `cpid`) and for a running PID (`$1`).
    pub(super) bt_launch: PathBuf,
    pub(super) bt_pid: PathBuf,
    /// bpftrace programs on the same tracepoints that do nothing but compare the PID.
    pub(super) bt_floor: PathBuf,
    pub(super) bt_script: String,
    pub(super) versions: Vec<(String, String)>,
}

impl Env {
    pub(super) fn prepare(pmap_trace: PathBuf, revision: String) -> Result<Env> {
        let root = workspace_root();
        let bench_dir = root.join("target/bench");
        fs::create_dir_all(&bench_dir)
            .with_context(|| format!("creating {}", bench_dir.display()))?;

        let gcc = ensure_tool("gcc", "gcc").map_err(|why| anyhow!("gcc is needed: {why}"))?;
        let workloads = bench_dir.join("workloads");
        run_cmd_ok(
            Command::new(&gcc)
                .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&workloads)
                .arg(root.join("xtask/bench/workloads.c")),
        )?;

        let python = python3()?;
        let node = installed("node");
        let redis = Redis::find();
        let pmap = find_in_path("pmap").context("pmap is not installed (cargo xtask setup)")?;
        let bpftrace = ensure_tool("bpftrace", "bpftrace");
        let strace = ensure_tool("strace", "strace");

        let probes = traced_tracepoints()?;
        let bt_launch = bench_dir.join("launch.bt");
        let bt_pid = bench_dir.join("pid.bt");
        let bt_floor = bench_dir.join("floor.bt");
        fs::write(&bt_launch, bpftrace_script(&probes, "pid == cpid"))?;
        fs::write(&bt_pid, bpftrace_script(&probes, "pid == $1"))?;
        fs::write(&bt_floor, floor_script(&probes))?;

        let mut versions = vec![
            ("pmap-trace".into(), revision),
            (
                "gcc".into(),
                first_line(Command::new(&gcc).arg("--version")),
            ),
            (
                "python".into(),
                format!(
                    "{} ({})",
                    first_line(Command::new(&python).arg("--version")),
                    python.display()
                ),
            ),
            ("pmap".into(), first_line(Command::new(&pmap).arg("-V"))),
        ];
        let node_version = match &node {
            Ok(path) => first_line(Command::new(path).arg("--version")),
            Err(why) => format!("not available: {why}"),
        };
        versions.push(("node".into(), node_version));
        let redis_version = match &redis {
            Ok(redis) => first_line(Command::new(&redis.server).arg("--version")),
            Err(why) => format!("not available: {why}"),
        };
        versions.push(("redis".into(), redis_version));
        for (name, tool, flag) in [
            ("bpftrace", &bpftrace, "--version"),
            ("strace", &strace, "-V"),
        ] {
            let version = match tool {
                Ok(path) => first_line(Command::new(path).arg(flag)),
                Err(why) => format!("not available: {why}"),
            };
            versions.push((name.into(), version));
        }

        Ok(Env {
            pmap_trace,
            churn_py: root.join("xtask/bench/churn.py"),
            node,
            churn_js: root.join("xtask/bench/churn.js"),
            redis,
            bench_dir,
            workloads,
            python,
            pmap,
            bpftrace,
            strace,
            bt_launch,
            bt_pid,
            bt_floor,
            bt_script: bpftrace_script(&probes, "pid == cpid"),
            versions,
        })
    }
}

/// The redis programs the server bench runs.
pub(super) struct Redis {
    pub(super) server: PathBuf,
    pub(super) benchmark: PathBuf,
    pub(super) cli: PathBuf,
}

impl Redis {
    fn find() -> std::result::Result<Redis, String> {
        Ok(Redis {
            server: installed("redis-server")?,
            benchmark: installed("redis-benchmark")?,
            cli: installed("redis-cli")?,
        })
    }
}

/// `name` on PATH, or why not: a program `cargo xtask setup` installs, so the bench does not
/// install it itself.
fn installed(name: &str) -> Tool {
    find_in_path(name).ok_or_else(|| {
        let why = format!("`{name}` is not on PATH (cargo xtask setup installs it)");
        println!("bench: {name}: NOT AVAILABLE ({why}); its measurements are left out");
        why
    })
}

/// The first line `cmd` prints, or "?".
fn first_line(cmd: &mut Command) -> String {
    probe(cmd)
        .and_then(|out| out.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The same tracepoints as pmap-trace, where this kernel has them, as bpftrace probes.
fn traced_tracepoints() -> Result<Vec<String>> {
    let probes: Vec<String> = pmap_common::TRACED_SYSCALLS
        .iter()
        .map(|&(name, _)| name)
        .filter(|name| {
            Path::new(&format!(
                "/sys/kernel/tracing/events/syscalls/sys_exit_{name}"
            ))
            .exists()
        })
        .map(|name| format!("tracepoint:syscalls:sys_exit_{name}"))
        .collect();
    if probes.is_empty() {
        bail!("no sys_exit_* tracepoints under /sys/kernel/tracing (is tracefs mounted?)");
    }
    Ok(probes)
}

/// The bpftrace script compared with pmap-trace: a count per call stack of the calls that
/// `filter` lets through.
fn bpftrace_script(probes: &[String], filter: &str) -> String {
    format!(
        "BEGIN {{ printf(\"READY\\n\"); }}\n{}\n/{filter}/\n{{\n  @calls[probe, ustack] = count();\n}}\n",
        probes.join(",\n")
    )
}

/// Programs that only compare the PID: what attaching to these tracepoints costs before any
/// work is done, the floor under every design that hooks them.
fn floor_script(probes: &[String]) -> String {
    format!("{}\n/pid == cpid/\n{{\n}}\n", probes.join(",\n"))
}

/// `name` on PATH, installed from Debian `package` with apt-get when missing. An error is the
/// reason it is not available, for the report.
fn ensure_tool(name: &str, package: &str) -> Tool {
    if let Some(path) = find_in_path(name) {
        println!("bench: {name}: already installed");
        return Ok(path);
    }
    let apt_get = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_cmd(&mut cmd)
            .map(|status| status.success())
            .unwrap_or(false)
    };
    let install = ["install", "-y", "--no-install-recommends", package];
    // A stale package list is the usual reason an install fails; refreshing it costs a network
    // round trip, so it happens only after a failed attempt.
    let installed = apt_get(&install) || (apt_get(&["update"]) && apt_get(&install));
    if !installed {
        let why = format!("`apt-get install {package}` failed");
        println!("bench: {name}: NOT AVAILABLE ({why}); its columns are left out");
        return Err(why);
    }
    match find_in_path(name) {
        Some(path) => {
            println!("bench: {name}: installed");
            Ok(path)
        }
        None => {
            let why = format!("installed {package}, but `{name}` is not on PATH");
            println!("bench: {name}: NOT AVAILABLE ({why}); its columns are left out");
            Err(why)
        }
    }
}

/// Debian's python3 (a program nobody here wrote), else whatever python3 PATH finds, resolved
/// through shims such as pyenv's to the real interpreter.
fn python3() -> Result<PathBuf> {
    let candidate = if Path::new("/usr/bin/python3").exists() {
        PathBuf::from("/usr/bin/python3")
    } else {
        find_in_path("python3").context("python3 is not installed")?
    };
    let real = probe(Command::new(&candidate).args(["-c", "import sys; print(sys.executable)"]))
        .context("python3 does not run")?;
    Ok(PathBuf::from(real.trim()))
}

/// Builds pmap-trace in release mode: the working tree, or with `rev` that commit, exported
/// (`git archive`) into target/bench/src and built there, so work in progress in the tree is not
/// what gets measured. Returns the binary and a description of what it was built from.
pub(super) fn build_pmap_trace(rev: Option<&str>) -> Result<(PathBuf, String)> {
    let root = workspace_root();
    let Some(rev) = rev else {
        run_cmd_ok(cargo().args(["build", "--release", "-p", "pmap-user"]))?;
        return Ok((
            root.join("target/release/pmap-trace"),
            working_tree_revision(),
        ));
    };
    let commit = probe(Command::new("git").current_dir(root).args([
        "rev-parse",
        "--short",
        "--verify",
        &format!("{rev}^{{commit}}"),
    ]))
    .map(|out| out.trim().to_owned())
    .with_context(|| format!("`{rev}` is not a commit of this repository"))?;
    let src = root.join("target/bench/src");
    if src.exists() {
        fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
    }
    fs::create_dir_all(&src)?;
    let archive = root.join("target/bench/src.tar");
    run_cmd_ok(
        Command::new("git")
            .current_dir(root)
            .args(["archive", "--format=tar", "-o"])
            .arg(&archive)
            .arg(&commit),
    )?;
    run_cmd_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&src),
    )?;
    let _ = fs::remove_file(&archive);
    // A target directory of its own that outlives the export, so a second run rebuilds little.
    let target = root.join("target/bench/target");
    run_cmd_ok(
        cargo()
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "-p", "pmap-user"]),
    )?;
    Ok((
        target.join("release/pmap-trace"),
        format!("commit {commit} (built from `git archive`)"),
    ))
}

/// The commit the working tree is at, and whether pmap-trace's sources had uncommitted changes.
fn working_tree_revision() -> String {
    let root = workspace_root();
    let head = probe(
        Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .map(|out| out.trim().to_owned())
    .unwrap_or_else(|| "unknown".into());
    let dirty = probe(Command::new("git").current_dir(root).args([
        "status",
        "--porcelain",
        "--",
        "pmap-common",
        "pmap-ebpf",
        "pmap-user",
    ]))
    .is_some_and(|out| !out.trim().is_empty());
    if dirty {
        format!("working tree at {head} + uncommitted changes in its sources")
    } else {
        format!("working tree at {head}")
    }
}

/// Other tracers running now would disturb every figure (an attached syscall tracepoint slows
/// every process): say so before measuring.
pub(super) fn warn_about_other_tracers() {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(comm) = fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim();
            if ["pmap-trace", "bpftrace", "strace", "perf"].contains(&comm) {
                found.push(format!("{comm} ({pid})"));
            }
        }
    }
    if !found.is_empty() {
        println!(
            "bench: WARNING: other tracers are running ({}); they slow every process and \
             distort the figures",
            found.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_scripts_list_the_probes_and_filter() {
        let probes = ["tracepoint:a".to_owned(), "tracepoint:b".to_owned()];
        assert_eq!(
            bpftrace_script(&probes, "pid == $1"),
            "BEGIN { printf(\"READY\\n\"); }\ntracepoint:a,\ntracepoint:b\n/pid == $1/\n\
             {\n  @calls[probe, ustack] = count();\n}\n"
        );
        assert_eq!(
            floor_script(&probes),
            "tracepoint:a,\ntracepoint:b\n/pid == cpid/\n{\n}\n"
        );
    }
}
