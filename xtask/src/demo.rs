//! `cargo xtask demo`: the quickest way to see pmap-trace work.

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;

use crate::{
    process::{as_root, cargo, exit_code, run_cmd, run_cmd_ok, workspace_root},
    setup,
};

pub fn run(args: &[OsString]) -> Result<ExitCode> {
    // Loading eBPF programs needs root; known before spending a release build on it.
    let mut demo = as_root(workspace_root().join("target/release/pmap-trace"))?;
    demo.arg("demo").args(args);
    setup::run()?;
    run_cmd_ok(cargo().args(["build", "--release", "-p", "pmap-user"]))?;
    // Ctrl-C reaches the whole foreground process group. pmap-trace shuts down cleanly on SIGINT;
    // xtask has to outlive it to report its exit status, so it catches (rather than ignores, which
    // the child would inherit) the signal.
    catch_sigint();
    let status = run_cmd(&mut demo)?;
    Ok(exit_code(status))
}

fn catch_sigint() {
    extern "C" fn on_sigint(_: libc::c_int) {}
    // SAFETY: the handler does nothing, so it is async-signal-safe; a caught signal's handler is
    // reset to the default in the exec'd child.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}
