//! Compiles `attribution-target/main.rs` without frame pointers, as distro binaries are built,
//! for `tests/attribution.rs` (which finds it through `ATTRIBUTION_TARGET`). A per-binary
//! codegen flag is not something cargo profiles can give one `[[bin]]`, so rustc is run
//! directly: the program needs nothing but std.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let source = "attribution-target/main.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = out.join("attribution-target");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2024", "--crate-name", "attribution_target"])
        .args([
            "-C",
            "force-frame-pointers=no",
            "-C",
            "opt-level=2",
            "-C",
            "debuginfo=2",
        ])
        .arg("-o")
        .arg(&target)
        .arg(source)
        .status()
        .expect("run rustc");
    assert!(status.success(), "compiling {source} failed");
    println!("cargo:rustc-env=ATTRIBUTION_TARGET={}", target.display());
}
