//! Raw command-line flags as clap parses them. [`crate::config`] validates them into a settled
//! [`crate::config::Config`] before any work starts.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  sudo pmap-trace -p 1234                 stream mapping changes of PID 1234, each growth with its
                                          call site; Enter or SIGUSR1 dumps, then the top 5 sites
  sudo pmap-trace --no-sites -p 1234      the same without call sites (no stack copies)
  sudo pmap-trace -p 1234,5678 --no-events --interval 5
                                          a pmap-style dump of both processes every 5 seconds
  sudo pmap-trace -f -- make -j2          start `make -j2`, trace it and every child it forks
  sudo pmap-trace --json -o trace.jsonl -p 1234
                                          JSON lines (events and dumps) into trace.jsonl
  sudo pmap-trace -x --diff -p 1234       dumps as `pmap -x`; each after the first lists what changed
  pmap-trace snapshot -XX 1234 5678       `pmap -XX 1234 5678`, without tracing
  sudo pmap-trace --sites 10 --no-events -p 1234
                                          with each dump, the 10 call sites holding the most
                                          anonymous memory and the 10 that grew it most
  sudo pmap-trace --folded mem.folded --flamegraph mem.svg -- ./server
                                          anonymous memory by call stack, as collapsed stacks
                                          and a flame graph, rewritten at each dump
  sudo pmap-trace demo                    trace a built-in demo program";

#[derive(Debug, Parser)]
#[command(
    name = "pmap-trace",
    version,
    about = "Live tracer of a process's memory mappings: every mmap/munmap/brk/mremap/mprotect as \
             it happens, and pmap-style dumps of the address space on demand",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub trace: TraceArgs,

    /// Command to start and trace from its first instruction (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub launch: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace a built-in demo program that maps memory along a few distinct paths, then exits.
    Demo(Box<TraceArgs>),
    /// Print the processes' address spaces once, as procps pmap does, without tracing.
    Snapshot(SnapshotArgs),
    /// Internal: the demo program itself (started by `pmap-trace demo`).
    #[command(hide = true, name = "demo-target")]
    DemoTarget,
}

#[derive(Debug, Args, Clone, Default)]
pub struct TraceArgs {
    /// Process id(s) to attach to; repeat the flag or give a comma-separated list.
    #[arg(short = 'p', long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<String>,

    /// Also trace the children the targets fork, from their first instruction.
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// Print every output line (events and dumps) as a JSON object.
    #[arg(long)]
    pub json: bool,

    /// Write output to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Do not print events; print dumps only.
    #[arg(long)]
    pub no_events: bool,

    /// Dump every SECONDS seconds (fractions allowed).
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<String>,

    /// Size of the kernel-to-user ring buffer: a power of two of at least 4K (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", default_value = "4M")]
    pub ring_size: String,

    /// Print the eBPF programs' own diagnostics (aya-log) to standard error.
    #[arg(long)]
    pub debug_bpf: bool,

    /// At each dump, compare the table with /proc/PID/maps and report any difference.
    #[arg(long)]
    pub verify: bool,

    /// Also trace userfaultfd registrations (ioctl UFFDIO_REGISTER/UNREGISTER), which split and
    /// merge mappings. This hooks the ioctl syscall of every process on the machine, which then
    /// costs each ioctl about twice as much while tracing; without it, --verify reports the
    /// splits they make.
    #[arg(long)]
    pub userfaultfd: bool,

    /// Each dump after the first lists what changed since the previous one instead.
    #[arg(long)]
    pub diff: bool,

    /// With each dump, the N call sites holding the most anonymous memory and the N that grew
    /// it most since the previous dump, with whole stacks (by default: a summary of the 5
    /// holding or growing the most, one line each). The kernel copies the caller's stack at
    /// every call that grows anonymous memory; it is unwound with the binaries' unwind tables.
    #[arg(long, value_name = "N", help_heading = SITES_HEADING)]
    pub sites: Option<String>,

    /// Turn call-site attribution off: no stack copies, no ` <- SITE` at the end of event
    /// lines, no summary after dumps.
    #[arg(long, help_heading = SITES_HEADING)]
    pub no_sites: bool,

    /// Write the call stacks holding anonymous memory to FILE at each dump and when a process
    /// ends, as collapsed stacks for flame graph tools (`outer;...;inner BYTES`, live bytes).
    /// Captures stacks as --sites does.
    #[arg(long, value_name = "FILE", help_heading = SITES_HEADING)]
    pub folded: Option<PathBuf>,

    /// The same stacks as a flame graph (SVG) in FILE, rewritten when --folded would be.
    #[arg(long, value_name = "FILE.svg", help_heading = SITES_HEADING)]
    pub flamegraph: Option<PathBuf>,

    /// Bytes of user stack copied at most at each growth call: 0 (none), 4K, 8K, 16K (the
    /// default), 32K or 64K. Deeper stacks need more; the main thread's copy stops at the top
    /// of its stack.
    #[arg(long, value_name = "BYTES", help_heading = SITES_HEADING)]
    pub stack_bytes: Option<String>,

    /// Keep the allocator's frames (malloc internals, the C library's mmap/brk wrappers, the
    /// loader) in call stacks instead of starting each at the first frame of the program, and
    /// the start-up frames below `main` (`_start`, `__libc_start_main`, Rust's `lang_start`).
    #[arg(long, help_heading = SITES_HEADING)]
    pub full_stacks: bool,

    /// What the call-site rankings order sites by: resident (the default: pages in memory, read from
    /// /proc/PID/pagemap at each dump), committed (writable bytes), reserved (address space
    /// with no memory behind it) or live (all of it; pagemap is not read).
    #[arg(long, value_name = "WHAT", help_heading = SITES_HEADING)]
    pub rank: Option<String>,

    /// What --folded and --flamegraph weigh each stack by: live (the default), resident,
    /// committed or reserved bytes.
    #[arg(long, value_name = "WHAT", help_heading = SITES_HEADING)]
    pub folded_weight: Option<String>,

    /// With --sites N: also count first touches of pages (page faults on pages not yet present)
    /// for the call site owning each page, sampling one fault in N (default: every fault), and
    /// show the bytes each site had touched since the previous dump: who used memory, not only
    /// who reserved it.
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1",
        help_heading = SITES_HEADING
    )]
    pub faults: Option<String>,

    #[command(flatten)]
    pub format: FormatArgs,
}

/// The help section of the call-site options.
const SITES_HEADING: &str = "Call sites of anonymous memory";

/// The help section of the format options (set on each: a section set for the whole struct would
/// also take the arguments that follow it in `Cli`).
const FORMAT_HEADING: &str = "Dump format (as procps pmap)";

/// pmap's format options, shared by tracing and `snapshot`. pmap's `-p` (show paths) is
/// `--show-path` here, since `-p` is the PID.
#[derive(Debug, Args, Clone, Default)]
pub struct FormatArgs {
    /// Extended format: resident and dirty kB of each mapping (pmap -x).
    #[arg(short = 'x', long = "extended", help_heading = FORMAT_HEADING)]
    pub extended: bool,

    /// The smaps values of each mapping (pmap -X); -XX for every value and the VmFlags.
    #[arg(short = 'X', action = ArgAction::Count, help_heading = FORMAT_HEADING)]
    pub smaps: u8,

    /// Device format: file offset and device of each mapping (pmap -d).
    #[arg(short = 'd', long = "device", help_heading = FORMAT_HEADING)]
    pub device: bool,

    /// No headings and no footer (pmap -q).
    #[arg(short = 'q', long = "quiet", help_heading = FORMAT_HEADING)]
    pub quiet: bool,

    /// A mapped file's whole path rather than its base name (pmap -p).
    #[arg(long = "show-path", help_heading = FORMAT_HEADING)]
    pub show_path: bool,

    /// Only the mappings that overlap LOW..HIGH, hexadecimal addresses (pmap -A); one address
    /// alone shows the mapping that holds it.
    #[arg(
        short = 'A',
        long = "range",
        value_name = "LOW[,HIGH]",
        help_heading = FORMAT_HEADING
    )]
    pub range: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SnapshotArgs {
    /// Process id(s) to print.
    #[arg(value_name = "PID")]
    pub pids: Vec<String>,

    /// More process ids, as for tracing; repeat the flag or give a comma-separated list.
    #[arg(short = 'p', long = "pid", value_name = "PID", value_delimiter = ',')]
    pub more_pids: Vec<String>,

    /// Print each process as a JSON object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub format: FormatArgs,
}
