//! Compiles the attribution target (`attribution-target/`) the ways `tests/attribution.rs`
//! attributes it, each found through an environment variable:
//!
//! - `ATTRIBUTION_TARGET`: without frame pointers, as distro binaries are built; a PIE;
//! - `ATTRIBUTION_TARGET_NOPIE`: the same at a fixed address (`relocation-model=static`);
//! - `ATTRIBUTION_TARGET_FP`: with frame pointers;
//! - `ATTRIBUTION_TARGET_LIBRARY`: one grower in `libattribution_grower.so`, found next to the
//!   program through its run path and loaded by the dynamic loader at start.
//!
//! And the Go subject of `tests/go_runtime.rs` (`runtimes/go/`), built with `go build` as
//! `GO_GROWER` (linked by Go's own linker) and `GO_GROWER_CGO` (with cgo, linked by the system
//! linker). Without `go` (`cargo xtask setup` installs Debian's) both are empty and the tests
//! that run them say so.
//!
//! Per-binary codegen flags are not something cargo profiles can give one `[[bin]]`, so rustc
//! is run directly: the programs need nothing but std.
use std::{
    env,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

const MAIN: &str = "attribution-target/main.rs";
const LIBRARY: &str = "attribution-target/library.rs";
const BLOCKS: &str = "attribution-target/blocks.rs";
const OWNERSHIP: &str = "attribution-target/ownership.rs";
const TOUCH: &str = "attribution-target/touch.rs";
const GO_SOURCES: &str = "runtimes/go";

fn rustc(out: &Path, flags: &[&str], crate_name: &str, source: &str, output: &Path) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2024", "--crate-name", crate_name])
        .args(["-C", "opt-level=2", "-C", "debuginfo=2"])
        .args(flags)
        .arg("-L")
        .arg(OsStr::new(&format!("native={}", out.display())))
        .arg("-o")
        .arg(output)
        .arg(source)
        .status()
        .expect("run rustc");
    assert!(status.success(), "compiling {source} ({flags:?}) failed");
}

fn main() {
    for source in [MAIN, LIBRARY, BLOCKS, OWNERSHIP, TOUCH] {
        println!("cargo:rerun-if-changed={source}");
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let no_fp = ["-C", "force-frame-pointers=no"];
    let builds: [(&str, &str, Vec<&str>); 3] = [
        ("ATTRIBUTION_TARGET", "attribution-target", no_fp.to_vec()),
        (
            "ATTRIBUTION_TARGET_NOPIE",
            "attribution-target-nopie",
            [&no_fp[..], &["-C", "relocation-model=static"]].concat(),
        ),
        (
            "ATTRIBUTION_TARGET_FP",
            "attribution-target-fp",
            vec!["-C", "force-frame-pointers=yes"],
        ),
    ];
    for (variable, name, flags) in builds {
        let target = out.join(name);
        rustc(&out, &flags, "attribution_target", MAIN, &target);
        println!("cargo:rustc-env={variable}={}", target.display());
    }

    let library = out.join("libattribution_grower.so");
    rustc(
        &out,
        &[&no_fp[..], &["--crate-type", "cdylib"]].concat(),
        "attribution_grower",
        LIBRARY,
        &library,
    );
    let target = out.join("attribution-target-library");
    rustc(
        &out,
        &[
            &no_fp[..],
            &[
                "--cfg",
                "library_site",
                "-l",
                "dylib=attribution_grower",
                "-C",
                "link-arg=-Wl,-rpath,$ORIGIN",
            ],
        ]
        .concat(),
        "attribution_target",
        MAIN,
        &target,
    );
    println!(
        "cargo:rustc-env=ATTRIBUTION_TARGET_LIBRARY={}",
        target.display()
    );
    go_builds(&out);
}

/// Builds the Go subject twice, or leaves its variables empty when `go` cannot build it (the
/// tests then fail and say why). Go's caches stay under `out`.
fn go_builds(out: &Path) {
    for file in ["go.mod", "main.go", "cgo.go"] {
        println!("cargo:rerun-if-changed={GO_SOURCES}/{file}");
    }
    // Built again when `go` appears or changes: a build before `cargo xtask setup` installed it
    // would otherwise keep its failure (and the Go tests theirs) until the sources change.
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed={}", go_program().display());
    for (variable, name, cgo) in [
        ("GO_GROWER", "go-grower", false),
        ("GO_GROWER_CGO", "go-grower-cgo", true),
    ] {
        let program = out.join(name);
        let mut go = Command::new("go");
        go.current_dir(GO_SOURCES)
            .env("GOCACHE", out.join("go-cache"))
            .env("GOPATH", out.join("go-path"))
            .env("GOFLAGS", "-buildvcs=false")
            .env("CGO_ENABLED", if cgo { "1" } else { "0" })
            .arg("build");
        if cgo {
            go.args(["-tags", "with_cgo"]);
        }
        let built = go
            .arg("-o")
            .arg(&program)
            .arg(".")
            .status()
            .is_ok_and(|status| status.success());
        let path = if built {
            program.display().to_string()
        } else {
            println!("cargo:warning=`go build` of {GO_SOURCES} failed: the Go tests will fail");
            String::new()
        };
        println!("cargo:rustc-env={variable}={path}");
    }
}

/// Where `go` is on PATH, or where `cargo xtask setup` installs it (Debian's golang-go) when it
/// is not there yet.
fn go_program() -> PathBuf {
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("go"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/go"))
}
