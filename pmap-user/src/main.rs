//! `pmap-trace`: a thin binary over the `pmap_trace` library. Flags are parsed, validated into a
//! settled configuration, and only then is anything loaded or started.

use std::{
    ffi::OsString,
    io::{self, Write as _},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use pmap_trace::{
    capture::{
        Capture, CaptureOptions, check_fault_tracepoint, check_machine, raise_reader_priority,
    },
    cli::{Cli, Command, SnapshotArgs, TraceArgs},
    config::{Config, ConfigError, Format, SnapshotConfig, Targets},
    demo,
    procfs::{maps, smaps, snapshot},
    render::{
        events::Clock,
        json::dump_json,
        output::{Output, json::JsonOutput, text::TextOutput},
        pmap::{PmapRun, ProcessView},
        sink::Sink,
    },
    session::{Session, SessionError, controls::LiveControls, launch::spawn_held},
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
        Some(Command::Demo(args)) => demo_command(*args),
        Some(Command::Snapshot(args)) => snapshot(args),
        None => trace(cli.trace, cli.launch),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("pmap-trace: {}", one_line(&err));
            // A wrong command line exits as one clap rejects.
            if err
                .downcast_ref::<ConfigError>()
                .is_some_and(ConfigError::is_usage)
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
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

/// pmap's exit status bits: a process it could not read, PIDs that are not there.
const UNREADABLE: i32 = 1;
const MISSING: i32 = 42;

/// `pmap-trace snapshot`: pmap itself, reading /proc once. The output is pmap's; where pmap
/// silently skips a PID that is not there, or stops after the `PID:` line of a process whose
/// mappings it cannot read, a line on stderr says why, and the exit status is pmap's.
fn snapshot(args: SnapshotArgs) -> anyhow::Result<i32> {
    let config = SnapshotConfig::from_args(&args)?;
    let layout = smaps::discover_smaps_layout();
    let sysv_shm_minor = maps::discover_shm_minor();
    let mut run = PmapRun::new(config.pmap, &layout);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut status = 0;
    for &pid in &config.pids {
        let snapshot = match snapshot::read_snapshot(pid, config.pmap.format.needs_smaps()) {
            Ok(snapshot) => snapshot,
            Err(err) => {
                eprintln!("pmap-trace: {err}");
                status |= MISSING;
                continue;
            }
        };
        let (mappings, smaps) = match snapshot.maps {
            Ok(maps) => maps,
            Err(err) => {
                let mut line = format!("{}:   ", snapshot.pid as u32).into_bytes();
                line.extend_from_slice(&snapshot.header);
                line.push(b'\n');
                if let Err(err) = out.write_all(&line).and_then(|()| out.flush()) {
                    return closed_pipe_is_the_end(err);
                }
                eprintln!("pmap-trace: {err}");
                status |= UNREADABLE;
                continue;
            }
        };
        let view = ProcessView {
            pid: snapshot.pid,
            header: &snapshot.header,
            start_stack: snapshot.start_stack,
            sysv_shm_minor,
            mappings: &mappings,
        };
        let written = match config.format {
            Format::Text => run.write_process(&mut out, &view, &smaps),
            Format::Json => {
                let dump = run.process(&view, &smaps);
                writeln!(out, "{}", dump_json(&view, config.pmap.format, &dump))
            }
        };
        if let Err(err) = written {
            return closed_pipe_is_the_end(err);
        }
    }
    match out.flush() {
        Ok(()) => Ok(status),
        Err(err) => closed_pipe_is_the_end(err),
    }
}

/// Output into a closed pipe (`| head -1`) ends quietly; any other write error is one.
fn closed_pipe_is_the_end(err: io::Error) -> anyhow::Result<i32> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(anyhow::Error::new(err).context("cannot write output"))
    }
}

fn trace(args: TraceArgs, launch: Vec<OsString>) -> anyhow::Result<i32> {
    let config = Config::from_args(&args, launch)?;
    let syscalls = check_machine()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async move {
        let stack_bytes = config.sites.map_or(0, |sites| sites.stack_bytes);
        let fault_period = config.sites.and_then(|sites| sites.fault_period);
        if fault_period.is_some() {
            check_fault_tracepoint()?;
        }
        let mut capture = Capture::load_with_stacks(
            CaptureOptions {
                syscalls,
                ring_size: config.ring_size,
                debug_bpf: config.debug_bpf,
                fault_period,
                userfaultfd: config.userfaultfd,
            },
            stack_bytes,
        )?;
        // The shell prompt comes back as soon as the final dump is out.
        capture.release_in_background_when_dropped();
        let sink = Sink::open(config.output.as_deref()).with_context(|| {
            format!(
                "cannot open output file {}",
                config
                    .output
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
        })?;
        let controls = LiveControls::install(config.key_dumps, config.interval)
            .map_err(SessionError::Signals)?;
        let clock = Clock::now();
        let output: Box<dyn Output> = match config.format {
            Format::Text => Box::new(TextOutput::new(sink, clock)),
            Format::Json => Box::new(JsonOutput::new(sink, clock)),
        };
        let targets = config.targets.clone();
        let mut session = Session::new(config, Box::new(capture), Box::new(controls), output);
        match targets {
            Targets::Pids(pids) => session.attach(&pids)?,
            Targets::Launch(argv) => session.launch(spawn_held(&argv)?)?,
        }
        // After the fork: the command keeps the priority pmap-trace was started with. Without
        // the right to raise it, pmap-trace runs as it is (losses, if any, are reported).
        raise_reader_priority();
        Ok(session.run().await?)
    })
}
