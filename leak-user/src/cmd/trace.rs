//! `leak trace`: where in the code is memory held? Chooses the pipeline:
//! Go's heap sampler for a Go program, heap growth (brk/mmap) for any other.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::{
    go::{process::go_executable, Program},
    native::dwarf::DEFAULT_DEBUG_DIR,
    outputs::{Output, Outputs},
    pipeline::{
        go::{self, profile::SortBy},
        native,
    },
    probes,
    process::exe::ExePath,
};

/// `leak trace --help`: what it does and how to start.
pub const LONG_ABOUT: &str = "\
Where is memory held? Outstanding bytes per call stack of a running Go program.

leak puts entry uprobes on the Go runtime's own heap sampler (runtime.setprofilebucket,
where a sampled object is filed under its stack, and the sweeper's freeSpecial), so
it sees what `go tool pprof` would see, from outside, without a restart and at next
to no cost. Each sampled allocation is kept
with its call stack until the garbage collector frees it; what is never freed is
the leak. Each stack gets a verdict (leaking, growing, steady, churn) from its
history, and with --work, the bytes each unit of work leaves behind.

leak starts from history: at attach it reads what the runtime itself recorded since
the program started (Go's own heap profile records, the data behind
/debug/pprof/heap, read from /proc/PID/mem), so a service that has leaked for days
shows its leak in the first report, not after an hour of new samples. The report
says which part is history and which was seen live. A program that links no heap
profiler has sampling off and no history: leak turns sampling on and counts from
then. For a one-shot look without eBPF, see `leak heap`.

Examples:
  leak trace --uprobe /srv/api --pid 4242
  leak trace --uprobe /srv/api --work 'main.(*Server).handle' --duration 120
  leak trace --uprobe ./api --duration 60 --folded api.folded --flamegraph api.svg
  leak trace --uprobe ./api --pprof api.pb.gz && go tool pprof -top api.pb.gz
  leak trace --uprobe ./api --chart held.svg   # bytes held per stack over time
  leak trace --uprobe ./api --rate 4096      # finer sampling, faster answers
  leak trace --rate 4096 --json job.json -- ./job --input data  # start it under leak

The target's sampling rate (runtime.MemProfileRate) is the one thing leak writes:
when sampling is off (programs that import no profiling package) or with --rate.
When leak exits (Ctrl-C, SIGTERM, --duration, an error) it writes back the value
it found, in each process it wrote to that still runs, unless someone else
changed the rate since (then it leaves it and says so). If leak is killed
(SIGKILL, the OOM killer), a small guard process it started does the same.
--keep-rate leaves the written rate in place; --read-only writes nothing.

Any other program (C, C++, Rust, …): `leak trace --pid PID` follows malloc,
free and the rest of the family (calloc, realloc, posix_memalign, C++'s operator
new and delete where the allocator defines its own, …) of the allocator the
process really uses (its own, a preloaded jemalloc, or the C library's), sampled
by bytes in the kernel (--rate, default 512 KiB; --rate 1 sees every allocation):
outstanding bytes per stack, scaled as pprof scales them, unwound without frame
pointers, with each stack's oldest object; --older SECS counts only objects that
old, --work a native function's calls. --syscalls follows its heap growth
instead (the user stack at each brk and anonymous mmap, munmap gives back), on a
Go program too. --native on a Go program follows its C heap (cgo), with its Go
heap beside it and the C stacks carried on into the Go code that called them.
  leak trace --pid 4242 --duration 20 --folded heap.folded
  leak trace --pid 4242 --rate 4096 --pprof native.pb.gz
  leak trace --pid 4242 --work 'app::handle_request' --older 30
  leak trace --pid 4242 --native --flamegraph both-heaps.svg   # a Go program with cgo
  leak trace --json run.json -- ./server --port 8080   # any program, from its start

Native frames carry source file:line and the functions inlined into them where
the code has DWARF: its own, or a separate debug file found by build ID or debug
link under /usr/lib/debug (Debian's -dbgsym packages), or under --debug-dir.
  leak trace --pid 4242 --debug-dir /srv/app/debug --debug-dir /usr/lib/debug";

/// Options of `leak trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The Go executable to trace. Every process running it is traced,
    /// including ones started after leak, unless --pid narrows it to one.
    #[arg(long = "uprobe", value_name = "BINARY")]
    pub(crate) binary: Option<PathBuf>,

    /// Trace only this process (with --uprobe, it must be running BINARY).
    /// Alone: a Go program is traced through its heap sampler, any other
    /// through its allocator (malloc/free, sampled by bytes).
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<u32>,

    /// Follow heap growth (user stacks at brk and mmap, munmap subtracts)
    /// of --pid, whatever language it is written in.
    #[arg(long, conflicts_with = "binary", requires = "pid")]
    pub(crate) syscalls: bool,

    /// Follow the C heap (malloc/free) of --pid (or of `-- CMD`) even when
    /// it is a Go program: what its cgo code allocates, which Go's heap
    /// profile never sees. The Go heap is shown beside it (the runtime's
    /// own records), each stack marked with its heap, and C stacks go on
    /// into the Go code that called them.
    #[arg(long, conflicts_with_all = ["binary", "syscalls"], requires = "pid")]
    pub(crate) native: bool,

    /// Stop after this many seconds (default: run until Ctrl-C, or until every
    /// traced process has exited).
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,

    /// Print a report every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) interval: f64,

    /// Show the N stacks holding the most memory.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) top: usize,

    /// Order of stacks in the text report: growing stacks first, fastest
    /// first; or bytes still held; or bytes allocated since attach.
    #[arg(long, value_enum, default_value_t = SortBy::Growth)]
    pub(crate) sort: SortBy,

    /// Native traces: count as outstanding only objects allocated at least
    /// SECS seconds ago (what bcc memleak's --older does, in seconds), so
    /// short-lived buffers in flight drop out. Each stack also shows the
    /// age of its oldest outstanding object.
    #[arg(long, value_name = "SECS")]
    pub(crate) older: Option<f64>,

    /// A function that marks one unit of work, e.g. the request handler
    /// (`main.(*Server).handle`, `main.main.func1`; in a native program
    /// `app::handle_request` or a C symbol). leak counts its calls and
    /// reports the heap each call leaves behind, overall and per stack.
    #[arg(long, value_name = "SYMBOL")]
    pub(crate) work: Option<String>,

    /// Set the target's heap sampling rate (Go's runtime.MemProfileRate) to
    /// one sample per BYTES allocated. Smaller is finer and finds a leak
    /// sooner; Go's default is 524288. leak writes this one integer into the
    /// target's memory; it also does so, at the default rate, when the
    /// program runs with sampling off. On a native program: the mean bytes
    /// between sampled allocations, in the kernel (1: every allocation).
    #[arg(long, value_name = "BYTES", conflicts_with = "read_only",
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub(crate) rate: Option<u64>,

    /// Never write into the target's memory. A program that runs with heap
    /// sampling off then shows nothing, and leak says so and exits.
    #[arg(long)]
    pub(crate) read_only: bool,

    /// Leave the sampling rate leak wrote in place when it exits. By
    /// default leak writes back the value it found (and a guard process
    /// does so if leak is killed), unless someone else changed it since.
    #[arg(long, conflicts_with = "read_only")]
    pub(crate) keep_rate: bool,

    /// Where separate debug files of native code are looked for: by build
    /// ID (DIR/.build-id/ab/cdef….debug) and by debug link (DIR/ then the
    /// object's directory), in the traced process's root first, then on
    /// this host. Repeatable; replaces the default, /usr/lib/debug.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub(crate) debug_dirs: Vec<PathBuf>,

    #[command(flatten)]
    pub(crate) outputs: Outputs,

    /// Start this program under leak and trace it from its first
    /// allocation (`leak trace [OPTIONS] -- ./job ARGS…`). stdin, stdout
    /// and stderr are the program's; Ctrl-C goes to the program; the outputs
    /// are written when it exits, and its exit status is leak's.
    #[arg(last = true, value_name = "CMD", conflicts_with_all = ["pid", "binary", "syscalls"])]
    pub(crate) command: Vec<std::ffi::OsString>,
}

/// The pipeline a `leak trace` runs.
enum Mode {
    /// Go's heap sampler, on this executable.
    Go(ExePath),
    /// Go's heap sampler on a program leak starts: its path and arguments.
    Launch(PathBuf, Vec<std::ffi::OsString>),
    /// malloc/free of this process (`syscalls`: its brk/mmap instead).
    Native { pid: u32, syscalls: bool },
}

/// Mean bytes between sampled native allocations when --rate is not
/// given: Go's and tcmalloc's default, 512 KiB.
const DEFAULT_NATIVE_RATE: u64 = 512 * 1024;

/// Runs `leak trace`; its exit status is that of the program it ran, if
/// it ran one.
pub fn run(args: TraceArgs) -> Result<u8> {
    let mode = match (&args.binary, args.pid) {
        _ if !args.command.is_empty() => match go::launch::resolve(&args.command[0]) {
            Ok(program) => Mode::Launch(program, args.command[1..].to_vec()),
            Err(not_run) => {
                eprintln!("leak: {not_run}");
                return Ok(not_run.code);
            }
        },
        (_, Some(pid)) if args.syscalls || args.native => Mode::Native {
            pid,
            syscalls: args.syscalls,
        },
        // A process's binary may be a container's: found through its root.
        (Some(binary), Some(pid)) => Mode::Go(ExePath::seen_by(pid, binary)),
        (Some(binary), None) => Mode::Go(ExePath::host(binary)),
        (None, Some(pid)) => match go_executable(pid)? {
            Some(exe) => Mode::Go(exe),
            None => Mode::Native {
                pid,
                syscalls: false,
            },
        },
        (None, None) => {
            bail!("say what to trace: --uprobe BINARY (a Go program) or --pid PID (any process)")
        }
    };
    super::check_interval(args.interval)?;
    super::check_duration(args.duration)?;
    match mode {
        Mode::Launch(program, program_args)
            if args.native || crate::go::GoBinary::open(&program).is_err() =>
        {
            // Not Go, or a Go program's C heap (--native): traced through
            // its allocator.
            let options = native_options(&args, 0, false)?;
            probes::require_root()?;
            Ok(native::run_launched(options, &program, &program_args)?)
        }
        Mode::Launch(program, program_args) => {
            let target = Program::open(&program)?;
            check_go_outputs(&args.outputs)?;
            go_has_no_older(&args)?;
            probes::require_root()?;
            let child = go::launch::spawn_paused(&program, &program_args)?;
            Ok(go::launch::run_launched(target, go_options(&args), child)?)
        }
        Mode::Go(binary) => {
            let target = Program::open_exe(&binary)?;
            check_go_outputs(&args.outputs)?;
            go_has_no_older(&args)?;
            probes::require_root()?;
            go::run(target, go_options(&args))?;
            Ok(0)
        }
        Mode::Native { pid, syscalls } => {
            let options = native_options(&args, pid, syscalls)?;
            probes::require_root()?;
            native::run(options)?;
            Ok(0)
        }
    }
}

/// The options of a native trace of `pid` (0: a program leak starts),
/// checked: Go-only flags refused, the rate defaulted, each output path
/// checked before anything is attached.
fn native_options(args: &TraceArgs, pid: u32, syscalls: bool) -> Result<native::Options> {
    if args.keep_rate || args.read_only {
        bail!("--keep-rate and --read-only are about Go's heap sampler: use them with --uprobe on a Go program");
    }
    if args.work.is_some() && syscalls {
        bail!("--work measures allocations per call: drop --syscalls");
    }
    if let Some(secs) = args.older {
        if syscalls {
            bail!("--older ages sampled allocations: drop --syscalls");
        }
        if !(secs >= 0.0 && secs.is_finite()) {
            bail!("--older takes seconds, 0 or more (got {secs})");
        }
    }
    let mode = if syscalls {
        if args.rate.is_some() {
            bail!("--rate samples allocations; --syscalls follows every brk and mmap");
        }
        native::Mode::Syscalls
    } else {
        native::Mode::Allocations {
            rate: args.rate.unwrap_or(DEFAULT_NATIVE_RATE),
        }
    };
    let outputs: &[Output] = match mode {
        native::Mode::Syscalls => &[Output::Folded, Output::Flamegraph, Output::Json],
        native::Mode::Allocations { .. } => &[
            Output::Folded,
            Output::Flamegraph,
            Output::Json,
            Output::Pprof,
        ],
    };
    args.outputs.check(
        outputs,
        "native tracing",
        "--chart needs Go's heap sampler: use --uprobe on a Go program",
    )?;
    Ok(native::Options {
        pid,
        mode,
        top: args.top,
        interval: args.interval,
        duration: args.duration,
        outputs: args.outputs.clone(),
        work: args.work.clone(),
        older: args.older,
        debug_dirs: debug_dirs(&args.debug_dirs)?,
    })
}

/// The directories of `--debug-dir`, absolute (they are looked for in the
/// traced process's root too); `/usr/lib/debug` when none is given.
fn debug_dirs(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if given.is_empty() {
        return Ok(vec![PathBuf::from(DEFAULT_DEBUG_DIR)]);
    }
    Ok(given
        .iter()
        .map(std::path::absolute)
        .collect::<std::io::Result<_>>()?)
}

/// Every output a Go trace writes; each path checked before attaching.
fn check_go_outputs(outputs: &Outputs) -> Result<()> {
    Ok(outputs.check(
        &[
            Output::Folded,
            Output::Flamegraph,
            Output::Pprof,
            Output::Json,
            Output::Chart,
        ],
        "leak trace",
        "",
    )?)
}

/// The Go pipeline's options from the arguments.
/// `--older` is about native traces: Go's garbage collector frees what is
/// no longer reachable, and its heap is told "as of the last GC".
fn go_has_no_older(args: &TraceArgs) -> Result<()> {
    if args.older.is_some() {
        bail!("--older is for native traces (--pid on a C, C++ or Rust program, or --native): a Go heap is told as of the last GC");
    }
    Ok(())
}

fn go_options(args: &TraceArgs) -> go::Options {
    go::Options {
        pid: args.pid,
        work: args.work.clone(),
        rate: args.rate,
        read_only: args.read_only,
        keep_rate: args.keep_rate,
        top: args.top,
        sort: args.sort,
        interval: args.interval,
        duration: args.duration,
        outputs: args.outputs.clone(),
        launched: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--debug-dir` repeats, replaces the default, and is made absolute
    /// (it is looked for in the traced process's root too).
    #[test]
    fn debug_dirs_default_repeat_and_absolute() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            trace: TraceArgs,
        }
        use clap::Parser;
        let dirs = |args: &[&str]| {
            let cli = Cli::try_parse_from(["trace"].iter().chain(args)).unwrap();
            debug_dirs(&cli.trace.debug_dirs).unwrap()
        };
        assert_eq!(dirs(&[]), [PathBuf::from("/usr/lib/debug")]);
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            dirs(&["--debug-dir", "/srv/debug", "--debug-dir", "dbg"]),
            [PathBuf::from("/srv/debug"), cwd.join("dbg")]
        );
    }
}
