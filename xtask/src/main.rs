//! Developer tasks for pmap-trace: `cargo xtask <setup|demo|test|docs>`.

mod demo;
mod docs;
mod process;
mod setup;
mod test;

use std::{ffi::OsString, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for pmap-trace"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the eBPF build and the tests need (nightly rust-src, bpf-linker 0.10.0, pmap).
    Setup,
    /// Build pmap-trace in release mode and run `pmap-trace demo ARGS...` as root.
    // Without clap's own --help, `cargo xtask demo --help` reaches pmap-trace's help instead.
    #[command(disable_help_flag = true)]
    Demo {
        /// Arguments passed on to `pmap-trace demo`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Run formatting and clippy checks, unit tests and (as root) the eBPF integration tests.
    Test,
    /// Generate the man pages and bash/zsh/fish completions of pmap-trace.
    Docs {
        /// Output directory [default: target/docs in the workspace].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Task::Demo { args } => demo::run(&args),
        Task::Test => test::run(),
        Task::Docs { out } => docs::run(out),
    };
    result.unwrap_or_else(|err| {
        eprintln!("xtask: error: {err:#}");
        ExitCode::FAILURE
    })
}
