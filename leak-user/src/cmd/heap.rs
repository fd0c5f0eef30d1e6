//! `leak heap`: a read-only snapshot of a running Go program's own heap
//! profile, with no eBPF.

use std::rc::Rc;

use anyhow::Result;
use clap::Args;

use crate::{
    go::{
        records::{self, Read},
        GoProcess,
    },
    report::{self, Profile, Source, StackProfile, Unit},
    symbolize::Symbolizer,
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
to read the process's memory (root, its own user, or CAP_SYS_PTRACE with
CAP_DAC_READ_SEARCH), so it works where BPF is not allowed.

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
    #[command(flatten)]
    pub(crate) read: super::OneShotArgs,

    /// Order the text report by bytes allocated since start-up, not bytes
    /// in use.
    #[arg(long)]
    pub(crate) by_allocated: bool,
}

/// Runs `leak heap`: the Go layer reads the records, the report renders
/// them.
pub fn run(args: HeapArgs) -> Result<u8> {
    args.read.check_outputs("leak heap")?;
    let super::OneShotArgs { pid, top, outputs } = args.read;
    let process = GoProcess::open_pid(pid)?;
    let read = records::read_once(&process)?;
    let mut profile = profile_of(&process, &read);
    if args.by_allocated {
        profile.stacks.sort_by(|a, b| {
            b.totals
                .allocated_bytes
                .total_cmp(&a.totals.allocated_bytes)
        });
    }
    print!("{}", report::text::render(&profile, top, args.by_allocated));
    if read.snapshot.before_first_gc {
        eprintln!("leak: pid {}: no GC has run yet, so \"in use\" counts every allocation (as Go's own profile does then)", pid);
    }
    outputs.write_profile(&profile)?;
    if let Some(path) = &outputs.pprof {
        let meta = report::pprof::PprofMeta::ending_now(
            process.program().build_id(),
            std::time::Duration::ZERO,
        );
        crate::outputs::write(path, |w| report::pprof::write(&profile, &meta, w))?;
    }
    Ok(0)
}

/// The records of `process` as a report: each bucket symbolized, stacks
/// that read alike summed.
fn profile_of(process: &GoProcess, read: &Read) -> Profile {
    let program = process.program();
    let mut symbols = Symbolizer::new(Rc::clone(&program.bin));
    let stacks: Vec<StackProfile> = records::stacks(read, process.bias(), &mut symbols)
        .into_iter()
        .map(|(frames, totals)| StackProfile {
            heap: None,
            oldest_secs: None,
            held_at_exit: 0.0,
            frames: frames.into(),
            totals,
            growth: None,
        })
        .collect();
    let buckets = &read.snapshot.buckets;
    let source = Source::GoRecords {
        go_version: program.version.clone(),
        rate: read.rate.max(0) as u64,
        gc_cycles: u64::from(read.snapshot.gc_cycles),
        buckets: buckets.len(),
    };
    Profile {
        samples: buckets.iter().map(|b| b.counts.allocs).sum(),
        frees: buckets.iter().map(|b| b.counts.frees).sum(),
        ..Profile::snapshot(
            program.path.clone(),
            source,
            Unit::Bytes,
            process.pid(),
            stacks,
        )
    }
}
