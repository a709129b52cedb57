//! Running external programs, echoed so a CI log shows exactly what ran.

use std::{
    env,
    ffi::OsStr,
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// `cargo` in the workspace root; the cargo that runs xtask (`$CARGO`) so a `cargo +toolchain`
/// choice carries over to the nested builds.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as root: directly when we already are root, otherwise through sudo.
pub fn as_root(program: impl AsRef<OsStr>) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    let Some(sudo) = find_in_path("sudo") else {
        bail!(
            "`{}` must run as root, but this is not root and sudo is not installed; \
             run the xtask as root",
            program.as_ref().display()
        );
    };
    let mut cmd = Command::new(sudo);
    cmd.arg(program);
    Ok(cmd)
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `cmd` with inherited stdio after echoing it.
pub fn run_cmd(cmd: &mut Command) -> Result<ExitStatus> {
    let shown = show(cmd);
    println!("$ {shown}");
    cmd.status()
        .with_context(|| format!("failed to start `{shown}`"))
}

/// Like [`run_cmd`], but a non-zero exit is an error.
pub fn run_cmd_ok(cmd: &mut Command) -> Result<()> {
    let status = run_cmd(cmd)?;
    if !status.success() {
        bail!("`{}` failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` without echo and returns its stdout, or `None` when it cannot start or fails: for
/// probing whether something is installed.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The exit code a shell would report for `status`, so xtask exits the way its child did.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
