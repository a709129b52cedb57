//! Raw flags ([`crate::cli`]) validated into a settled [`Config`] before any work starts.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::{
    cli::{FormatArgs, SnapshotArgs, TraceArgs},
    render::pmap::{self, PmapFormat, PmapOptions},
    sites::{Listing, SitesSettings, residency::Rank},
};

/// Stack bytes copied per growth call without `--stack-bytes`: deep
/// enough for the frames of most programs from the allocator up to `main` (docs/call-sites.md gives
/// the measured cost).
pub const DEFAULT_STACK_BYTES: u32 = 16 << 10;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "no target: give -p PID to attach, a command after `--` to start one, or run \
         `pmap-trace demo`"
    )]
    NoTarget,
    #[error("cannot start {0}: no such program (give a path, or a name found in PATH)")]
    NoSuchProgram(String),
    #[error("-p/--pid and a command after `--` cannot be combined: use one or the other")]
    PidAndCommand,
    #[error("invalid PID '{0}': expected a positive process id such as 1234")]
    InvalidPid(String),
    #[error("no such process: {0} (check the PID with `ps -p {0}`)")]
    NoSuchProcess(i32),
    #[error("PID {0} is a kernel thread ({1}): it has no user address space to trace")]
    KernelThread(i32, String),
    #[error("PID {0} is a zombie: it has exited and has no address space left to trace")]
    Zombie(i32),
    #[error("PID {0} is pmap-trace itself: give the PID of another process")]
    SelfTarget(i32),
    #[error("invalid --ring-size '{0}': give a power of two of at least 4K, such as 4M or 16M")]
    InvalidRingSize(String),
    #[error("invalid --interval '{0}': give a positive number of seconds, such as 5 or 0.5")]
    InvalidInterval(String),
    #[error("cannot write output file {path}: {reason} (choose a writable path for -o)")]
    Output { path: String, reason: String },
    #[error("-x, -X/-XX and -d are different formats: give at most one of them")]
    ConflictingFormats,
    #[error(
        "invalid -A/--range '{0}': give LOW[,HIGH] as hexadecimal addresses, such as \
         7f0000000000,7fffffffffff"
    )]
    InvalidRange(String),
    #[error("no PID: give the process ids to print, such as `pmap-trace snapshot 1234`")]
    NoSnapshotPid,
    #[error("invalid --sites '{0}': give how many call sites to list, such as 10")]
    InvalidSites(String),
    #[error("invalid --stack-bytes '{0}': give 0, 4K, 8K, 16K, 32K or 64K")]
    InvalidStackBytes(String),
    #[error("{0} shapes call-site attribution, which --no-sites turns off: give one or the other")]
    SitesTurnedOff(&'static str),
    #[error("--faults counts touched memory for the --sites report: give it with --sites N")]
    FaultsWithoutSites,
    #[error("invalid --faults '{0}': give how many faults make one sample, such as --faults=10")]
    InvalidFaults(String),
    #[error("invalid {flag} '{value}': give resident, committed, reserved or live")]
    InvalidRank { flag: &'static str, value: String },
    #[error(
        "--folded-weight weighs the stacks of --folded and --flamegraph: give it with one of them"
    )]
    WeightWithoutStackFiles,
    #[error("--folded and --flamegraph name the same file {0}: give each its own")]
    SameStackFile(String),
    #[error("cannot write {flag} file {path}: {reason} (choose a path in a writable directory)")]
    StackFile {
        flag: &'static str,
        path: String,
        reason: String,
    },
}

impl ConfigError {
    /// Whether the command line itself is wrong (exit status 2, as for flags clap rejects),
    /// rather than the system state it names.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            ConfigError::NoSuchProcess(_)
                | ConfigError::NoSuchProgram(_)
                | ConfigError::KernelThread(..)
                | ConfigError::Zombie(_)
                | ConfigError::SelfTarget(_)
                | ConfigError::Output { .. }
                | ConfigError::StackFile { .. }
        )
    }
}

/// Where the traced processes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Attach to running processes.
    Pids(Vec<PidTarget>),
    /// Start this command (program and arguments) and trace it from its first instruction.
    Launch(Vec<OsString>),
}

/// A process to attach to, as `-p` named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidTarget {
    /// The process (thread group) traced: the kernel filter and the tables are by process.
    pub pid: i32,
    /// The id given, when it named another thread of the process than its main one.
    pub thread: Option<i32>,
}

impl PidTarget {
    /// The process itself, as given by its PID.
    pub fn process(pid: i32) -> PidTarget {
        PidTarget { pid, thread: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Everything a trace session needs, checked.
#[derive(Debug)]
pub struct Config {
    pub targets: Targets,
    pub follow: bool,
    pub format: Format,
    /// `None` is standard output.
    pub output: Option<PathBuf>,
    pub events: bool,
    pub interval: Option<Duration>,
    pub ring_size: u32,
    pub debug_bpf: bool,
    /// `--verify`: check every dump against /proc/PID/maps.
    pub verify: bool,
    /// `--userfaultfd`: hook ioctl for userfaultfd (un)registrations.
    pub userfaultfd: bool,
    /// Pressing Enter or `d` dumps (only when stdin is a terminal that no launched child uses).
    pub key_dumps: bool,
    pub dump: DumpSettings,
    /// Call-site attribution of anonymous memory, reported on event lines and with each dump
    /// (on unless `--no-sites`).
    pub sites: Option<SitesSettings>,
    /// `--folded`, `--flamegraph`: files rewritten with the call stacks at each dump.
    pub stack_files: StackFilePaths,
}

/// Where `--folded` and `--flamegraph` write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackFilePaths {
    pub folded: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
}

/// How dumps are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpSettings {
    /// pmap's format and options.
    pub pmap: PmapOptions,
    /// `--diff`: each dump of a process after its first lists the changes since the previous.
    pub diff: bool,
}

/// `pmap-trace snapshot`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// In the order given, repeats included, as pmap prints them.
    pub pids: Vec<i32>,
    pub pmap: PmapOptions,
    pub format: Format,
}

impl SnapshotConfig {
    pub fn from_args(args: &SnapshotArgs) -> Result<SnapshotConfig, ConfigError> {
        let pmap = pmap_options(&args.format)?;
        let pids = args
            .pids
            .iter()
            .chain(&args.more_pids)
            .map(|text| {
                // pmap also takes /proc/PID.
                let digits = text.trim();
                let digits = digits.strip_prefix("/proc/").unwrap_or(digits);
                digits
                    .parse::<i32>()
                    .ok()
                    .filter(|&pid| pid > 0)
                    .ok_or_else(|| ConfigError::InvalidPid(text.clone()))
            })
            .collect::<Result<Vec<i32>, _>>()?;
        if pids.is_empty() {
            return Err(ConfigError::NoSnapshotPid);
        }
        Ok(SnapshotConfig {
            pids,
            pmap,
            format: if args.json {
                Format::Json
            } else {
                Format::Text
            },
        })
    }
}

/// pmap's format flags, checked as pmap checks them: one format at most.
pub fn pmap_options(args: &FormatArgs) -> Result<PmapOptions, ConfigError> {
    let format = match (args.extended, args.smaps, args.device) {
        (false, 0, false) => PmapFormat::Default,
        (true, 0, false) => PmapFormat::Extended,
        (false, 1, false) => PmapFormat::Smaps,
        // pmap takes any count above one for -XX.
        (false, _, false) => PmapFormat::AllSmaps,
        (false, 0, true) => PmapFormat::Device,
        _ => return Err(ConfigError::ConflictingFormats),
    };
    let range = match &args.range {
        Some(text) => {
            pmap::parse_range(text).ok_or_else(|| ConfigError::InvalidRange(text.clone()))?
        }
        None => Default::default(),
    };
    Ok(PmapOptions {
        format,
        quiet: args.quiet,
        show_path: args.show_path,
        range,
    })
}

impl Config {
    pub fn from_args(args: &TraceArgs, launch: Vec<OsString>) -> Result<Config, ConfigError> {
        let targets = match (args.pids.is_empty(), launch.is_empty()) {
            (true, true) => return Err(ConfigError::NoTarget),
            (false, false) => return Err(ConfigError::PidAndCommand),
            (false, true) => Targets::Pids(parse_pids(&args.pids)?),
            (true, false) => {
                check_program(&launch[0])?;
                Targets::Launch(launch)
            }
        };
        let dump = DumpSettings {
            pmap: pmap_options(&args.format)?,
            diff: args.diff,
        };
        let ring_size = parse_ring_size(&args.ring_size)?;
        let stack_files = StackFilePaths {
            folded: args.folded.clone(),
            flamegraph: args.flamegraph.clone(),
        };
        let sites = parse_sites(args, &stack_files)?;
        let interval = args.interval.as_deref().map(parse_interval).transpose()?;
        if let Some(path) = &args.output {
            check_output(path)?;
        }
        // SAFETY: isatty has no preconditions.
        let stdin_is_tty = unsafe { libc::isatty(0) } == 1;
        Ok(Config {
            key_dumps: stdin_is_tty && matches!(targets, Targets::Pids(_)),
            targets,
            follow: args.follow,
            format: if args.json {
                Format::Json
            } else {
                Format::Text
            },
            output: args.output.clone(),
            events: !args.no_events,
            interval,
            ring_size,
            debug_bpf: args.debug_bpf,
            verify: args.verify,
            userfaultfd: args.userfaultfd,
            dump,
            sites,
            stack_files,
        })
    }
}

fn parse_pids(raw: &[String]) -> Result<Vec<PidTarget>, ConfigError> {
    let mut targets: Vec<PidTarget> = Vec::new();
    for text in raw.iter().map(|s| s.trim()) {
        let id: i32 = text
            .parse()
            .ok()
            .filter(|&pid| pid > 0)
            .ok_or_else(|| ConfigError::InvalidPid(text.to_string()))?;
        let target = resolve_thread(id)?;
        check_traceable(target.pid)?;
        if !targets.iter().any(|t| t.pid == target.pid) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// The process a thread id belongs to, as pmap and strace take it. The kernel filter holds
/// thread-group ids: a thread's own id there would match no call, and its table would never
/// change. `/proc/TID` answers for every thread although only processes are listed.
fn resolve_thread(id: i32) -> Result<PidTarget, ConfigError> {
    let status = fs::read_to_string(format!("/proc/{id}/status"))
        .map_err(|_| ConfigError::NoSuchProcess(id))?;
    let tgid = status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|value| value.trim().parse::<i32>().ok())
        .ok_or(ConfigError::NoSuchProcess(id))?;
    Ok(PidTarget {
        pid: tgid,
        thread: (tgid != id).then_some(id),
    })
}

const PF_KTHREAD: u64 = 0x0020_0000;

/// Refuses PIDs that cannot be traced, with the reason.
fn check_traceable(pid: i32) -> Result<(), ConfigError> {
    if pid as u32 == std::process::id() {
        return Err(ConfigError::SelfTarget(pid));
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|_| ConfigError::NoSuchProcess(pid))?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let (comm, rest) = match (stat.find('('), stat.rfind(')')) {
        (Some(open), Some(close)) => (&stat[open + 1..close], &stat[close + 1..]),
        _ => return Err(ConfigError::NoSuchProcess(pid)),
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return Err(ConfigError::Zombie(pid));
    }
    // Field 9 of stat (flags) is the 7th after the command name.
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    if flags & PF_KTHREAD != 0 {
        return Err(ConfigError::KernelThread(pid, comm.to_string()));
    }
    Ok(())
}

/// Refuses a command that exec could not find, before anything is loaded or forked.
fn check_program(program: &OsString) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &Path| {
        fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.as_encoded_bytes().contains(&b'/') {
        runnable(Path::new(program))
    } else {
        std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| runnable(&dir.join(program)))
        })
    };
    if found {
        Ok(())
    } else {
        Err(ConfigError::NoSuchProgram(
            program.to_string_lossy().into_owned(),
        ))
    }
}

/// The call-site settings: attribution is on unless `--no-sites`, which refuses the options
/// that only shape it.
fn parse_sites(
    args: &TraceArgs,
    files: &StackFilePaths,
) -> Result<Option<SitesSettings>, ConfigError> {
    if args.no_sites {
        let shaping = [
            ("--sites", args.sites.is_some()),
            ("--folded", files.folded.is_some()),
            ("--flamegraph", files.flamegraph.is_some()),
            ("--stack-bytes", args.stack_bytes.is_some()),
            ("--full-stacks", args.full_stacks),
            ("--faults", args.faults.is_some()),
            ("--rank", args.rank.is_some()),
            ("--folded-weight", args.folded_weight.is_some()),
        ];
        return match shaping.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(ConfigError::SitesTurnedOff(flag)),
            None => Ok(None),
        };
    }
    let listing = match args.sites.as_deref() {
        None => Listing::Summary,
        Some(top) => top
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .map(Listing::Sites)
            .ok_or_else(|| ConfigError::InvalidSites(top.to_string()))?,
    };
    let fault_period = args
        .faults
        .as_deref()
        .map(|n| {
            n.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| ConfigError::InvalidFaults(n.to_string()))
        })
        .transpose()?;
    if fault_period.is_some() && listing == Listing::Summary {
        return Err(ConfigError::FaultsWithoutSites);
    }
    let rank = parse_rank("--rank", args.rank.as_deref(), Rank::Resident)?;
    let folded_weight = parse_rank("--folded-weight", args.folded_weight.as_deref(), Rank::Live)?;
    if args.folded_weight.is_some() && files.folded.is_none() && files.flamegraph.is_none() {
        return Err(ConfigError::WeightWithoutStackFiles);
    }
    if let (Some(folded), Some(flamegraph)) = (&files.folded, &files.flamegraph)
        && same_file(folded, flamegraph)
    {
        return Err(ConfigError::SameStackFile(folded.display().to_string()));
    }
    for (flag, path) in [
        ("--folded", &files.folded),
        ("--flamegraph", &files.flamegraph),
    ] {
        if let Some(path) = path {
            crate::sites::folded::check_writable(path).map_err(|err| ConfigError::StackFile {
                flag,
                path: path.display().to_string(),
                reason: err.to_string(),
            })?;
        }
    }
    let stack_bytes = match args.stack_bytes.as_deref() {
        None => DEFAULT_STACK_BYTES,
        Some(text) => parse_bytes(text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n == 0 || pmap_common::STACK_SIZES.contains(&n))
            .ok_or_else(|| ConfigError::InvalidStackBytes(text.to_string()))?,
    };
    Ok(Some(SitesSettings {
        listing,
        stack_bytes,
        full_stacks: args.full_stacks,
        fault_period,
        rank,
        folded_weight,
    }))
}

/// `--rank`/`--folded-weight`: `default` when not given.
fn parse_rank(flag: &'static str, value: Option<&str>, default: Rank) -> Result<Rank, ConfigError> {
    match value {
        None => Ok(default),
        Some(value) => Rank::parse(value.trim()).ok_or_else(|| ConfigError::InvalidRank {
            flag,
            value: value.to_string(),
        }),
    }
}

/// Whether two paths name one file: the same text, or (when both exist) the same inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a == b
        || matches!(
            (fs::metadata(a), fs::metadata(b)),
            (Ok(x), Ok(y)) if (x.dev(), x.ino()) == (y.dev(), y.ino())
        )
}

/// Parses `4096`, `64K`, `4M`, `1G` into bytes.
fn parse_bytes(text: &str) -> Option<u64> {
    let trimmed = text.trim();
    let (digits, multiplier) = match trimmed.char_indices().last() {
        Some((i, 'k' | 'K')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&trimmed[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
}

/// Parses `4096`, `64K`, `4M`, `1G`: a power of two of at least one page.
fn parse_ring_size(text: &str) -> Result<u32, ConfigError> {
    let invalid = || ConfigError::InvalidRingSize(text.to_string());
    let bytes = parse_bytes(text).ok_or_else(invalid)?;
    if bytes < 4096 || !bytes.is_power_of_two() || bytes > (1 << 31) {
        return Err(invalid());
    }
    Ok(bytes as u32)
}

fn parse_interval(text: &str) -> Result<Duration, ConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ConfigError::InvalidInterval(text.to_string()))
}

/// Opens (creating) the output file once, so an unwritable path fails before tracing starts.
fn check_output(path: &PathBuf) -> Result<(), ConfigError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|err| ConfigError::Output {
            path: path.display().to_string(),
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pids: &[&str]) -> TraceArgs {
        TraceArgs {
            pids: pids.iter().map(|s| s.to_string()).collect(),
            ring_size: "4M".into(),
            ..TraceArgs::default()
        }
    }

    #[test]
    fn needs_exactly_one_kind_of_target() {
        assert_eq!(
            Config::from_args(&args(&[]), vec![]).unwrap_err(),
            ConfigError::NoTarget
        );
        let err = Config::from_args(&args(&["1"]), vec!["ls".into()]).unwrap_err();
        assert_eq!(err, ConfigError::PidAndCommand);
    }

    #[test]
    fn a_command_must_be_found_before_anything_starts() {
        assert!(Config::from_args(&args(&[]), vec!["sh".into()]).is_ok());
        assert!(Config::from_args(&args(&[]), vec!["/bin/sh".into()]).is_ok());
        for missing in [
            "/nonexistent/program",
            "no-such-program-here",
            "/etc/passwd",
        ] {
            assert_eq!(
                Config::from_args(&args(&[]), vec![missing.into()]).unwrap_err(),
                ConfigError::NoSuchProgram(missing.into())
            );
        }
    }

    #[test]
    fn rejects_bad_pids_with_the_reason() {
        assert_eq!(
            Config::from_args(&args(&["abc"]), vec![]).unwrap_err(),
            ConfigError::InvalidPid("abc".into())
        );
        assert_eq!(
            Config::from_args(&args(&["0"]), vec![]).unwrap_err(),
            ConfigError::InvalidPid("0".into())
        );
        let own = std::process::id().to_string();
        assert!(matches!(
            Config::from_args(&args(&[&own]), vec![]).unwrap_err(),
            ConfigError::SelfTarget(_)
        ));
        assert_eq!(
            Config::from_args(&args(&["2"]), vec![]).unwrap_err(),
            ConfigError::KernelThread(2, "kthreadd".into())
        );
        assert_eq!(
            Config::from_args(&args(&["2147483647"]), vec![]).unwrap_err(),
            ConfigError::NoSuchProcess(i32::MAX)
        );
    }

    #[test]
    fn accepts_comma_lists_and_removes_duplicates() {
        let config = Config::from_args(&args(&["1", "1"]), vec![]).unwrap();
        assert_eq!(config.targets, Targets::Pids(vec![PidTarget::process(1)]));
    }

    #[test]
    fn a_thread_id_names_its_process() {
        let (tid_sender, tid) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: no preconditions.
            tid_sender.send(unsafe { libc::gettid() }).unwrap();
            let _ = stopped.recv();
        });
        let tid = tid.recv().unwrap();
        let own = std::process::id() as i32;
        assert_eq!(
            resolve_thread(tid),
            Ok(PidTarget {
                pid: own,
                thread: Some(tid)
            })
        );
        assert_eq!(resolve_thread(own), Ok(PidTarget::process(own)));
        // A thread of pmap-trace is pmap-trace.
        assert_eq!(
            Config::from_args(&args(&[&tid.to_string()]), vec![]).unwrap_err(),
            ConfigError::SelfTarget(own)
        );
        stop.send(()).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn parses_ring_sizes_and_intervals() {
        assert_eq!(parse_ring_size("4M"), Ok(4 << 20));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("lots").is_err());
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("nan").is_err());
    }

    fn formats(set: impl FnOnce(&mut FormatArgs)) -> Result<PmapOptions, ConfigError> {
        let mut a = FormatArgs::default();
        set(&mut a);
        pmap_options(&a)
    }

    #[test]
    fn format_flags_choose_one_pmap_format() {
        assert_eq!(formats(|_| {}).unwrap().format, PmapFormat::Default);
        assert_eq!(
            formats(|a| a.extended = true).unwrap().format,
            PmapFormat::Extended
        );
        assert_eq!(formats(|a| a.smaps = 1).unwrap().format, PmapFormat::Smaps);
        assert_eq!(
            formats(|a| a.smaps = 3).unwrap().format,
            PmapFormat::AllSmaps
        );
        assert_eq!(
            formats(|a| a.device = true).unwrap().format,
            PmapFormat::Device
        );
        for conflict in [
            (|a: &mut FormatArgs| {
                a.extended = true;
                a.device = true
            }) as fn(&mut FormatArgs),
            |a| {
                a.smaps = 2;
                a.extended = true
            },
            |a| {
                a.smaps = 1;
                a.device = true
            },
        ] {
            let err = formats(conflict).unwrap_err();
            assert_eq!(err, ConfigError::ConflictingFormats);
            assert!(err.is_usage());
        }
        let range = formats(|a| a.range = Some("7f00,7fff".into()))
            .unwrap()
            .range;
        assert_eq!((range.low, range.high), (0x7f00, 0x7fff));
        let err = formats(|a| a.range = Some("7f00,zz".into())).unwrap_err();
        assert_eq!(err, ConfigError::InvalidRange("7f00,zz".into()));
    }

    #[test]
    fn snapshot_takes_pids_in_order_with_repeats() {
        let args = SnapshotArgs {
            pids: vec!["/proc/12".into(), "7".into()],
            more_pids: vec!["12".into()],
            ..SnapshotArgs::default()
        };
        assert_eq!(SnapshotConfig::from_args(&args).unwrap().pids, [12, 7, 12]);
        let none = SnapshotArgs::default();
        assert_eq!(
            SnapshotConfig::from_args(&none).unwrap_err(),
            ConfigError::NoSnapshotPid
        );
        let bad = SnapshotArgs {
            pids: vec!["x1".into()],
            ..SnapshotArgs::default()
        };
        assert_eq!(
            SnapshotConfig::from_args(&bad).unwrap_err(),
            ConfigError::InvalidPid("x1".into())
        );
    }

    #[test]
    fn sites_are_on_by_default_and_take_a_count_and_a_stack_size_from_the_supported_ones() {
        let mut a = args(&["1"]);
        let default = SitesSettings {
            listing: Listing::Summary,
            stack_bytes: DEFAULT_STACK_BYTES,
            full_stacks: false,
            fault_period: None,
            rank: Rank::Resident,
            folded_weight: Rank::Live,
        };
        assert_eq!(Config::from_args(&a, vec![]).unwrap().sites, Some(default));
        a.sites = Some("5".into());
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap().sites,
            Some(SitesSettings {
                listing: Listing::Sites(5),
                ..default
            })
        );
        a.stack_bytes = Some("64K".into());
        a.full_stacks = true;
        let sites = Config::from_args(&a, vec![]).unwrap().sites.unwrap();
        assert_eq!((sites.stack_bytes, sites.full_stacks), (65536, true));
        a.stack_bytes = Some("0".into());
        assert_eq!(
            Config::from_args(&a, vec![])
                .unwrap()
                .sites
                .unwrap()
                .stack_bytes,
            0
        );
        for bad in ["12K", "128K", "lots"] {
            a.stack_bytes = Some(bad.into());
            let err = Config::from_args(&a, vec![]).unwrap_err();
            assert_eq!(err, ConfigError::InvalidStackBytes(bad.into()));
            assert!(err.is_usage());
        }
        a.stack_bytes = None;
        for bad in ["0", "-1", "x"] {
            a.sites = Some(bad.into());
            assert_eq!(
                Config::from_args(&a, vec![]).unwrap_err(),
                ConfigError::InvalidSites(bad.into())
            );
        }
    }

    #[test]
    fn no_sites_turns_attribution_off_and_refuses_the_options_that_shape_it() {
        let mut a = args(&["1"]);
        a.no_sites = true;
        assert_eq!(Config::from_args(&a, vec![]).unwrap().sites, None);
        a.full_stacks = true;
        let err = Config::from_args(&a, vec![]).unwrap_err();
        assert_eq!(err, ConfigError::SitesTurnedOff("--full-stacks"));
        assert!(err.is_usage());
        a.full_stacks = false;
        a.stack_bytes = Some("4K".into());
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::SitesTurnedOff("--stack-bytes")
        );
        a.stack_bytes = None;
        a.sites = Some("3".into());
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::SitesTurnedOff("--sites")
        );
    }

    #[test]
    fn stack_files_check_their_paths() {
        let mut a = args(&["1"]);
        a.stack_bytes = Some("4K".into());
        let dir = std::env::temp_dir();
        let folded = dir.join(format!("pmap-trace-config-{}.folded", std::process::id()));
        a.folded = Some(folded.clone());
        let config = Config::from_args(&a, vec![]).unwrap();
        let sites = config.sites.unwrap();
        assert_eq!((sites.listing, sites.stack_bytes), (Listing::Summary, 4096));
        assert_eq!(config.stack_files.folded, Some(folded.clone()));
        // Checked, and nothing left behind.
        assert!(!folded.exists());
        a.flamegraph = Some(folded.clone());
        assert!(matches!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::SameStackFile(_)
        ));
        a.flamegraph = Some("/nonexistent-dir/out.svg".into());
        let err = Config::from_args(&a, vec![]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::StackFile {
                flag: "--flamegraph",
                ..
            }
        ));
        assert!(!err.is_usage());
    }

    #[test]
    fn rank_and_folded_weight_name_a_measure_and_need_what_they_order() {
        let mut a = args(&["1"]);
        a.rank = Some("committed".into());
        let sites = Config::from_args(&a, vec![]).unwrap().sites.unwrap();
        assert_eq!(
            (sites.rank, sites.folded_weight),
            (Rank::Committed, Rank::Live)
        );
        a.rank = Some("rss".into());
        let err = Config::from_args(&a, vec![]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidRank {
                flag: "--rank",
                value: "rss".into()
            }
        );
        assert!(err.is_usage());
        a.rank = None;
        a.folded_weight = Some("resident".into());
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::WeightWithoutStackFiles
        );
        a.folded = Some(
            std::env::temp_dir().join(format!("pmap-trace-weight-{}.folded", std::process::id())),
        );
        let sites = Config::from_args(&a, vec![]).unwrap().sites.unwrap();
        assert_eq!(
            (sites.rank, sites.folded_weight),
            (Rank::Resident, Rank::Resident)
        );
        a.folded = None;
        a.folded_weight = None;
        a.rank = Some("live".into());
        a.no_sites = true;
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::SitesTurnedOff("--rank")
        );
    }

    #[test]
    fn faults_take_a_sampling_period_and_need_the_sites_report() {
        let mut a = args(&["1"]);
        a.faults = Some("1".into());
        assert_eq!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::FaultsWithoutSites
        );
        a.sites = Some("10".into());
        let sites = Config::from_args(&a, vec![]).unwrap().sites.unwrap();
        assert_eq!(sites.fault_period, Some(1));
        a.faults = Some("16".into());
        let sites = Config::from_args(&a, vec![]).unwrap().sites.unwrap();
        assert_eq!(sites.fault_period, Some(16));
        for bad in ["0", "x", "-2"] {
            a.faults = Some(bad.into());
            let err = Config::from_args(&a, vec![]).unwrap_err();
            assert_eq!(err, ConfigError::InvalidFaults(bad.into()));
            assert!(err.is_usage());
        }
    }

    #[test]
    fn refuses_an_unwritable_output_path() {
        let mut a = args(&["1"]);
        a.output = Some("/nonexistent-dir/out.txt".into());
        assert!(matches!(
            Config::from_args(&a, vec![]).unwrap_err(),
            ConfigError::Output { .. }
        ));
    }
}
