//! `leak goroutines`: a running Go program's goroutines, read from
//! outside, grouped as its own `/debug/pprof/goroutine?debug=1` groups
//! them, with no endpoint, no eBPF and no pause.

use anyhow::Result;
use clap::Args;

use crate::{
    go::{goroutines, GoProcess},
    outputs::Outputs,
    report::{
        self,
        goroutines::{GoroutineGroup, GoroutineReport},
    },
};

/// `leak goroutines --help`: what it does and how to start.
pub const LONG_ABOUT: &str = "\
Which goroutines does a Go program hold, where are they stuck, and who started them?

The most common Go leak is not a growing slice but goroutines that never end: a
send nobody receives after a timeout, a worker waiting on a channel nobody
closes. Each pins its stack and everything it references. leak reads every
goroutine of the process from outside, through /proc/PID/mem (the runtime's
allgs, each goroutine's state, wait reason and stack), and groups them as the
program's own /debug/pprof/goroutine?debug=1 would: no endpoint, no restart, no
eBPF, nothing written and the program never paused (Go's own profile stops the
world to take it). Stripped and PIE binaries work.

Each group shows how many goroutines share the stack, what they wait on, the
longest wait (as fine as the program's GC cadence: Go records a wait's start
lazily), the memory their stacks take, and the `go` statement that created them.
Goroutines that run while leak reads are shown with no stack, never guessed.

A leak shows as a group whose count keeps rising: read twice and compare, or run
`leak trace` on the program for a verdict per group over time.

Examples:
  leak goroutines --pid 4242
  leak goroutines --pid 4242 --top 5 --json g.json
  leak goroutines --pid 4242 --pprof g.pb.gz && go tool pprof -top g.pb.gz
  leak goroutines --pid 4242 --flamegraph g.svg";

/// Options of `leak goroutines`.
#[derive(Args, Debug)]
pub struct GoroutinesArgs {
    #[command(flatten)]
    pub(crate) read: super::OneShotArgs,
}

/// Runs `leak goroutines`: the Go layer reads and groups the goroutines,
/// the report renders them.
pub fn run(args: GoroutinesArgs) -> Result<u8> {
    args.read.check_outputs("leak goroutines")?;
    let super::OneShotArgs { pid, top, outputs } = args.read;
    let process = GoProcess::open_pid(pid)?;
    let snapshot = goroutines::read_once(&process)?;
    let groups = goroutines::group(&snapshot);
    let program = process.program();
    let mut report = GoroutineReport {
        binary: program.path.clone(),
        go_version: program.version.clone(),
        pid,
        total: snapshot.user().count(),
        unstable: snapshot.unstable(),
        groups: groups.into_iter().map(GoroutineGroup::from).collect(),
        failed_reads: 0,
    };
    report.sort();
    println!(
        "leak goroutines · {} ({}) · pid {}",
        report.binary.display(),
        report.go_version,
        report.pid
    );
    print!("{}", report.text(top));
    write_outputs(&outputs, &report, &process)?;
    Ok(0)
}

/// Every file asked for: the JSON section, and the groups as a goroutine
/// profile for pprof, folded stacks and the flame graph.
fn write_outputs(outputs: &Outputs, report: &GoroutineReport, process: &GoProcess) -> Result<()> {
    let profile = report.profile();
    if let Some(path) = &outputs.json {
        let doc = serde_json::json!({
            "target": {
                "binary": report.binary,
                "pid": report.pid,
                "go_version": report.go_version,
                "source": "go-goroutines",
            },
            "goroutines": report.json(),
        });
        crate::outputs::write(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &doc)?;
            writeln!(w)
        })?;
    }
    if let Some(path) = &outputs.folded {
        crate::outputs::write(path, |w| report::folded::write(&profile, w))?;
    }
    if let Some(path) = &outputs.flamegraph {
        crate::outputs::write(path, |w| report::flamegraph::write(&profile, w))?;
    }
    if let Some(path) = &outputs.pprof {
        let meta = report::pprof::PprofMeta::ending_now(
            process.program().build_id(),
            std::time::Duration::ZERO,
        );
        crate::outputs::write(path, |w| report::pprof::write(&profile, &meta, w))?;
    }
    Ok(())
}
