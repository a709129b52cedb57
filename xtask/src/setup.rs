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
    packages()?;
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

/// A program the integration tests run, and the Debian package that installs it.
struct Needed {
    /// Found on PATH by name, or at this exact path when it starts with `/`.
    program: &'static str,
    package: &'static str,
    why: &'static str,
}

/// What the integration tests run besides pmap-trace: the reference `pmap`, and real programs
/// nobody here wrote, traced under load (Debian's own python3, not another one PATH may find
/// first; a multi-threaded redis driven by redis-benchmark).
const NEEDED: &[Needed] = &[
    Needed {
        program: "pmap",
        package: "procps",
        why: "the reference every dump is compared with",
    },
    Needed {
        program: "/usr/bin/python3",
        package: "python3",
        why: "a real program traced while it imports",
    },
    Needed {
        program: "redis-server",
        package: "redis-server",
        why: "a real multi-threaded server traced under load",
    },
    Needed {
        program: "redis-benchmark",
        package: "redis-tools",
        why: "the load on that server",
    },
    Needed {
        program: "/usr/lib/postgresql/15/bin/postgres",
        package: "postgresql-15",
        why: "a real server whose processes are followed",
    },
    Needed {
        program: "/usr/bin/node",
        package: "nodejs",
        why: "a real multi-threaded runtime attached to by one of its thread ids",
    },
    Needed {
        program: "/usr/bin/go",
        package: "golang-go",
        why: "builds the Go program whose stacks cross the runtime's system stack",
    },
    Needed {
        program: "/usr/bin/javac",
        package: "openjdk-17-jdk-headless",
        why: "a Java program compiled, run and asked for its perf map (jcmd)",
    },
    Needed {
        program: "/usr/bin/python3.11-dbg",
        package: "python3.11-dbg",
        why: "the debug file that names the stripped python3.11's functions (its version is \
              python3.11's)",
    },
    Needed {
        program: "objcopy",
        package: "binutils",
        why: "stripped copies of a program, one with MiniDebugInfo",
    },
    Needed {
        program: "xz",
        package: "xz-utils",
        why: "the compressed symbol table of MiniDebugInfo",
    },
];

fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        std::path::Path::new(program).is_file()
    } else {
        find_in_path(program).is_some()
    }
}

/// Installs the packages of the programs that are missing, all in one apt-get run.
fn packages() -> Result<()> {
    let missing: Vec<&Needed> = NEEDED.iter().filter(|n| !installed(n.program)).collect();
    for needed in NEEDED.iter().filter(|n| installed(n.program)) {
        println!(
            "setup: {} ({}): already installed",
            needed.program, needed.package
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    let apt_get = |args: &[&str]| -> Result<Command> {
        let mut cmd = as_root("apt-get")?;
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        Ok(cmd)
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(missing.iter().map(|n| n.package));
    // An empty or stale package list is what makes the install fail; refreshing it is a network
    // round trip, so it happens only when the list does not know a package or the install failed.
    let listed = missing
        .iter()
        .all(|n| probe(Command::new("apt-cache").args(["show", n.package])).is_some());
    if !(listed && run_cmd(&mut apt_get(&install)?)?.success()) {
        run_cmd_ok(&mut apt_get(&["update"])?)?;
        run_cmd_ok(&mut apt_get(&install)?)?;
    }
    for needed in missing {
        if !installed(needed.program) {
            bail!(
                "installed {}, but `{}` ({}) is still not there",
                needed.package,
                needed.program,
                needed.why
            );
        }
        println!("setup: {} ({}): installed", needed.program, needed.package);
    }
    Ok(())
}
