//! Developer tasks for pmap-trace: `cargo xtask <setup|demo|test|docs|bench>`.

mod bench;
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
    /// Measure pmap-trace's overhead against bpftrace and strace, its event rate, dump latency
    /// and memory, and its effect on untraced processes (root; about 10 minutes).
    Bench {
        /// A shorter run (fewer rounds, shorter loops): under 3 minutes.
        #[arg(long)]
        quick: bool,
        /// Replace the results section of BENCHMARKS.md with this run's.
        #[arg(long)]
        write: bool,
        /// Alternating rounds per configuration [default: 7, or 3 with --quick].
        #[arg(long, value_name = "N")]
        rounds: Option<usize>,
        /// Measure pmap-trace as committed at REV (exported and built under target/bench)
        /// instead of the working tree.
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
        /// Run only these parts, to check a change by hand (the results cannot be written).
        #[arg(long, value_name = "PART", value_enum, conflicts_with = "write")]
        only: Vec<bench::Part>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Task::Demo { args } => demo::run(&args),
        Task::Test => test::run(),
        Task::Docs { out } => docs::run(out),
        Task::Bench {
            quick,
            write,
            rounds,
            rev,
            only,
        } => bench::run(bench::Options {
            quick,
            write,
            rounds,
            rev,
            only,
        }),
    };
    result.unwrap_or_else(|err| {
        eprintln!("xtask: error: {err:#}");
        ExitCode::FAILURE
    })
}
