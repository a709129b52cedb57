//! One-time machine setup for the eBPF build and the tests. Every step first checks whether its
//! work is already done, so running setup again costs a few process spawns.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::process::{as_root, cargo, find_in_path, probe, run_cmd, run_cmd_ok};

/// bpf-linker 0.11 and later need LLVM 23, which these machines cannot install.
const BPF_LINKER_VERSION: &str = "0.10.0";

pub fn run() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    pmap()?;
    Ok(())
}

/// aya-build compiles the eBPF crate with `-Z build-std=core`, which needs nightly's sources.
fn rust_src() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("failed to run rustup; is rustup installed?")?;
    if !installed.status.success() {
        bail!(
            "`rustup component list --toolchain nightly` failed (is the nightly toolchain \
             installed? `rustup toolchain install nightly`): {}",
            String::from_utf8_lossy(&installed.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == "rust-src")
    {
        println!("setup: rust-src (nightly): already installed");
        return Ok(());
    }
    run_cmd_ok(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    println!("setup: rust-src (nightly): installed");
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let found = bpf_linker_version();
    if found.as_deref() == Some(BPF_LINKER_VERSION) {
        println!("setup: bpf-linker {BPF_LINKER_VERSION}: already installed");
        return Ok(());
    }
    run_cmd_ok(cargo().args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
    ]))?;
    // Another bpf-linker earlier in PATH, or cargo's bin directory missing from PATH, would still
    // leave aya-build with the wrong (or no) linker.
    let now = bpf_linker_version();
    if now.as_deref() != Some(BPF_LINKER_VERSION) {
        bail!(
            "installed bpf-linker {BPF_LINKER_VERSION}, but `bpf-linker --version` on PATH \
             reports {}; put cargo's bin directory (~/.cargo/bin) first in PATH",
            now.as_deref().unwrap_or("nothing")
        );
    }
    match found {
        Some(old) => {
            println!("setup: bpf-linker {BPF_LINKER_VERSION}: installed (replacing {old})")
        }
        None => println!("setup: bpf-linker {BPF_LINKER_VERSION}: installed"),
    }
    Ok(())
}

/// The version `bpf-linker --version` reports ("bpf-linker 0.10.0"), if one is on PATH.
fn bpf_linker_version() -> Option<String> {
    probe(Command::new("bpf-linker").arg("--version"))?
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

/// The integration tests check pmap-trace's dumps against procps' `pmap`.
fn pmap() -> Result<()> {
    if find_in_path("pmap").is_some() {
        println!("setup: pmap (procps): already installed");
        return Ok(());
    }
    let apt_get = |args: &[&str]| -> Result<Command> {
        let mut cmd = as_root("apt-get")?;
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        Ok(cmd)
    };
    let install = ["install", "-y", "--no-install-recommends", "procps"];
    // An empty or stale package list is what makes the install fail; refreshing it is a network
    // round trip, so it happens only when the list does not know procps or the install failed.
    let listed = probe(Command::new("apt-cache").args(["show", "procps"])).is_some();
    if !(listed && run_cmd(&mut apt_get(&install)?)?.success()) {
        run_cmd_ok(&mut apt_get(&["update"])?)?;
        run_cmd_ok(&mut apt_get(&install)?)?;
    }
    if find_in_path("pmap").is_none() {
        bail!("installed procps, but `pmap` is still not on PATH");
    }
    println!("setup: pmap (procps): installed");
    Ok(())
}
