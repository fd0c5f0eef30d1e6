//! `leak top`: which process is leaking?

use anyhow::{bail, Result};
use clap::Args;

use crate::{
    outputs::{Output, Outputs},
    pipeline::top::{self, Options},
    probes::{self, mm::Programs},
};

/// Which process is leaking? Memory over time, per process, with a verdict.
///
/// leak follows every process's resident memory from the kernel
/// (the rss_stat tracepoint, plus mmap/munmap/brk/mremap/madvise), keeps
/// a series per process and judges it: leaking, growing, steady or
/// shrinking. A garbage collector's sawtooth that levels off is steady;
/// troughs that keep rising are a leak (the rule is in the README).
///
/// Examples:
///   leak top                                  # every process, until Ctrl-C
///   leak top --duration 120 --chart mem.svg   # two minutes, then a chart
///   leak top --pid 4242 --pid 4243 --json top.json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TopArgs {
    /// Read memory and redraw every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub(crate) interval: f64,

    /// Stop after this many seconds (default: run until Ctrl-C, or until
    /// every --pid has exited).
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,

    /// Show the first N processes of the ranking (leaking first, then by
    /// growth), and draw them in the chart.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub(crate) top: usize,

    /// Watch only this process (repeat for several). Without it, every
    /// process whose memory changes is watched, including ones started later.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Vec<u32>,

    #[command(flatten)]
    pub(crate) outputs: Outputs,

    /// For benchmarking only: attach programs that do nothing to the same
    /// hooks, to measure what the hooks themselves cost (the table then
    /// comes from /proc alone).
    #[arg(long, hide = true)]
    pub(crate) bench_empty_programs: bool,
}

/// Runs `leak top`.
pub fn run(args: TopArgs) -> Result<u8> {
    super::check_interval(args.interval)?;
    super::check_duration(args.duration)?;
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    args.outputs.check(
        &[Output::Json, Output::Chart],
        "leak top",
        "it writes --json and --chart; stacks come from `leak trace`",
    )?;
    probes::require_root()?;
    top::run(Options {
        interval: args.interval,
        duration: args.duration,
        top: args.top,
        pids: args.pid,
        outputs: args.outputs,
        programs: if args.bench_empty_programs {
            Programs::Empty
        } else {
            Programs::Working
        },
    })?;
    Ok(0)
}
