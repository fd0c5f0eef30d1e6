//! `leak heap`: a read-only snapshot of a running Go program's own heap
//! profile, with no eBPF.

use anyhow::Result;
use clap::Args;

use crate::{
    outputs::{Output, Outputs},
    pipeline::{
        go::{history, target::Target},
        heap,
    },
};

/// `leak heap --help`: what it does and how to start.
pub const LONG_ABOUT: &str = "\
What does a Go program's heap hold, and where was it allocated? Read from the
program's own heap profile records, since it started.

The Go runtime keeps a record per allocating call stack from start-up (the data
behind /debug/pprof/heap). leak reads those records from outside, through
/proc/PID/mem: no endpoint, no restart, no eBPF, nothing written and the program
never paused. The numbers are Go's own, \"as of the last GC\", scaled as pprof
scales them, so `go tool pprof` on leak's --pprof file and on the program's
/debug/pprof/heap show the same stacks with the same bytes. Needs only the right
to read the process's memory (root, or its user where ptrace is allowed), so it
works where BPF is not allowed.

A leak shows as a stack whose in-use bytes keep rising from one snapshot to the
next: take two and diff them (go tool pprof -base old.pb.gz new.pb.gz), or run
`leak trace` for verdicts over time.

Examples:
  leak heap --pid 4242
  leak heap --pid 4242 --top 25 --flamegraph heap.svg
  leak heap --pid 4242 --pprof a.pb.gz; sleep 600; leak heap --pid 4242 --pprof b.pb.gz
  go tool pprof -top -base a.pb.gz b.pb.gz

A program that links no heap profiler (no net/http/pprof or runtime/pprof) runs
with sampling off and has no records: `leak trace` can turn sampling on.";

/// Options of `leak heap`.
#[derive(Args, Debug)]
pub struct HeapArgs {
    /// The Go process to read.
    #[arg(long, value_name = "PID")]
    pub pid: u32,

    /// Show the N stacks holding the most memory.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Order the text report by bytes allocated since start-up, not bytes
    /// in use.
    #[arg(long)]
    pub by_allocated: bool,

    #[command(flatten)]
    pub outputs: Outputs,
}

/// Runs `leak heap`.
pub fn run(args: HeapArgs) -> Result<()> {
    args.outputs.check(
        &[
            Output::Folded,
            Output::Flamegraph,
            Output::Pprof,
            Output::Json,
        ],
        "leak heap",
        "--chart draws memory over time: use it with leak trace or leak top",
    )?;
    let exe = history::go_process(args.pid)?;
    let target = Target::open(&exe)?;
    heap::run(
        target,
        heap::Options {
            pid: args.pid,
            top: args.top,
            by_allocated: args.by_allocated,
            outputs: args.outputs,
        },
    )
}
