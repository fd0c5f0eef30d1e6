//! `leak top`: which process is leaking?

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use crate::{
    outputs::{Output, Outputs},
    pipeline::top::{self, By, Filter, Options},
    probes::{self, mm::Programs},
};

/// `leak top --help`: what it does, its columns, examples.
pub const LONG_ABOUT: &str = "\
Which process is leaking? Memory over time, per process, with a verdict.

leak follows every process's resident memory from the kernel
(the rss_stat tracepoint, plus mmap/munmap/brk/mremap/madvise), keeps
a series per process and judges it: leaking, growing, steady or
shrinking. A garbage collector's sawtooth that levels off is steady;
troughs that keep rising are a leak (the rule is in the README).

Each row also shows, where they apply: GO HEAP, a Go process's heap
after its last GC (read from its runtime; a Go process is judged on it
once 5 GCs over 20 s were seen); GOROUTINES; and TO LIMIT, how long until
a leaking process's memory cgroup reaches its limit (or, without one,
the host runs out: \"host\"). Processes in containers show their cgroup
in the JSON, and their pid in their own namespace (\"4321 (ns 1)\").

Examples:
  leak top                                  # every process, until Ctrl-C
  leak top --duration 120 --chart mem.svg   # two minutes, then a chart
  leak top --pid 4242 --pid 4243 --json top.json
  leak top --by container                   # a row per container
  leak top --container 3f2a9c --json c.json # one container's processes
  leak top --cgroup /system.slice           # everything under a cgroup";

/// The options of `leak top`.
#[derive(Args, Debug)]
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
    /// process is watched, including ones started later.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Vec<u32>,

    /// A row per process, or per container (its processes added up; a
    /// process outside any container counts under its memory cgroup).
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = ByArg::Process)]
    pub(crate) by: ByArg,

    /// Watch only processes in this memory cgroup or below it, as
    /// /proc/PID/cgroup names it (e.g. /system.slice/nginx.service, or
    /// /kubepods.slice for every pod).
    #[arg(long, value_name = "PATH")]
    pub(crate) cgroup: Option<String>,

    /// Watch only the processes of this container: its id, or the first
    /// characters of it (docker, containerd, cri-o, podman).
    #[arg(long, value_name = "ID")]
    pub(crate) container: Option<String>,

    #[command(flatten)]
    pub(crate) outputs: Outputs,

    /// For benchmarking only: attach programs that do nothing to the same
    /// hooks, to measure what the hooks themselves cost (the table then
    /// comes from /proc alone).
    #[arg(long, hide = true)]
    pub(crate) bench_empty_programs: bool,
}

/// What a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ByArg {
    /// One row per process.
    Process,
    /// One row per container (or cgroup, outside containers).
    Container,
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
    let filter = filter(args.cgroup, args.container)?;
    probes::require_root()?;
    top::run(Options {
        interval: args.interval,
        duration: args.duration,
        top: args.top,
        pids: args.pid,
        by: match args.by {
            ByArg::Process => By::Process,
            ByArg::Container => By::Container,
        },
        filter,
        outputs: args.outputs,
        programs: if args.bench_empty_programs {
            Programs::Empty
        } else {
            Programs::Working
        },
    })?;
    Ok(0)
}

/// The filter `--cgroup` and `--container` ask for, checked.
fn filter(cgroup: Option<String>, container: Option<String>) -> Result<Filter> {
    if let Some(path) = &cgroup {
        if !path.starts_with('/') {
            bail!("--cgroup {path}: a cgroup path starts with / (as /proc/PID/cgroup shows it)");
        }
    }
    if let Some(id) = &container {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("--container {id}: a container id is hexadecimal (e.g. 3f2a9c0d1e2b)");
        }
    }
    Ok(Filter {
        cgroup: cgroup.map(|p| p.trim_end_matches('/').to_string()),
        container: container.map(|c| c.to_ascii_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_normalised() {
        let f = filter(Some("/system.slice/".into()), Some("3F2A".into())).unwrap();
        assert_eq!(f.cgroup.as_deref(), Some("/system.slice"));
        assert_eq!(f.container.as_deref(), Some("3f2a"));
        assert!(filter(Some("system.slice".into()), None).is_err());
        assert!(filter(None, Some("nginx".into())).is_err());
        assert!(filter(None, Some(String::new())).is_err());
    }
}
