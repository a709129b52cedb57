//! `pmap-trace`: a thin binary over the `pmap_trace` library. Flags are parsed, validated into a
//! settled configuration, and only then is anything loaded or started.

use std::{ffi::OsString, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use pmap_trace::{
    capture::{Capture, CaptureOptions, check_machine},
    cli::{Cli, Command, TraceArgs},
    config::{Config, Targets},
    demo,
    launch::spawn_held,
    session::Session,
    sink::Sink,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!(
                "pmap-trace: {} (see pmap-trace --help)",
                first_line(&err.to_string())
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(Command::DemoTarget) => Ok(demo::run_target()),
        Some(Command::Demo(args)) => demo_command(args),
        None => trace(cli.trace, cli.launch),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("pmap-trace: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line)
}

/// The error and its causes on one line, without repeating a cause the message already holds.
fn one_line(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn demo_command(args: TraceArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.pids.is_empty(),
        "the demo traces its own target: drop -p, or run `pmap-trace -p PID` instead"
    );
    let exe = std::env::current_exe().context("cannot find the pmap-trace executable")?;
    trace(
        args,
        vec![exe.into_os_string(), OsString::from("demo-target")],
    )
}

fn trace(args: TraceArgs, launch: Vec<OsString>) -> anyhow::Result<i32> {
    let config = Config::from_args(&args, launch)?;
    let syscalls = check_machine()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async move {
        let capture = Capture::load(CaptureOptions {
            syscalls,
            ring_size: config.ring_size,
            debug_bpf: config.debug_bpf,
        })?;
        let sink = Sink::open(config.output.as_deref()).with_context(|| {
            format!(
                "cannot open output file {}",
                config
                    .output
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
        })?;
        let targets = config.targets.clone();
        let mut session = Session::new(config, capture, sink)?;
        match targets {
            Targets::Pids(pids) => session.attach(&pids)?,
            Targets::Launch(argv) => session.launch(spawn_held(&argv)?)?,
        }
        Ok(session.run().await?)
    })
}
