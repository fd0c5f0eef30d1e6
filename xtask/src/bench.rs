//! `cargo xtask bench`: what does tracing cost? Runs Go workloads untraced,
//! under `leak trace` (default and `--rate 4096`) and under the bpftrace
//! peer, arm after arm in alternation for several rounds, and writes
//! BENCHMARKS.md (medians, ranges, ratios against the targets) and the raw
//! runs as JSON. Timings are reported, never asserted.
//!
//! Each workload is a Go program under `tests/go/bench*` that starts, waits
//! to be told to go (so the tracer attaches first), does a fixed amount of
//! work and times it itself; the service is loaded by `benchload`.
//!
//! bpftrace slows the workloads 8–70×, so it is given a share of the work
//! (`Sizes::peer_share`) next to an untraced run of the same share: its
//! ratios are against that run and its added time is scaled up to the
//! full work, which bounds the suite's time whatever the peer costs.
//!
//! The records arms (`records`) price the other way to see a heap: `leak
//! heap` reading the program's own profile records from outside, with no
//! probes: how long a read of 10^4–10^5 buckets takes, what a service pays
//! while it is read every 100 ms, and a read against the program's own
//! `/debug/pprof/heap`. The goroutines arms (`goroutines`) price `leak
//! goroutines` the same way: a read of 10^5 goroutines, and the service
//! read every 100 ms against the same reads of another process.

mod goroutines;
mod kit;
mod native;
mod process;
mod records;
mod report;
mod stats;
mod tracer;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::root;
pub use kit::Kit;
use process::{Running, Stream};
use tracer::Tracer;

/// The Go toolchain the workloads are built with.
pub const GO_VERSION: &str = "1.25.5";

/// Options of `cargo xtask bench`.
pub struct Options {
    /// Rounds; each runs every arm of every workload once.
    pub rounds: Option<usize>,
    /// Two rounds of smaller work, written under target/bench/.
    pub quick: bool,
    /// A leak binary to measure instead of a fresh release build.
    pub leak: Option<PathBuf>,
    /// Only these workloads (names, or a prefix before `-`: `native`,
    /// `batch`); the report then goes under target/bench/.
    pub only: Vec<String>,
}

/// A program and the fixed work it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// HTTP service under closed-loop load: throughput and p99.
    Service,
    /// JSON round trips of small records: wall time.
    BatchJson,
    /// Large objects: wall time.
    BatchLarge,
    /// 100,000 distinct allocation stacks: the tracer's memory and stop time.
    Scale,
    /// mmap/munmap cycles, for `leak top`.
    Mmap,
    /// The seed service (serves its own /debug/pprof/heap) after a load:
    /// `leak heap` against that endpoint.
    Seed,
    /// Goroutines parked a few frames deep: `leak goroutines` reads them.
    Goroutines,
    /// C: malloc/free pairs, the malloc and free phases timed apart.
    NativeChurn,
    /// C: requests of CPU work with a few allocations, a slow leak.
    NativeServer,
    /// C: 100,000 distinct native stacks, for the tracer's memory.
    NativeScale,
}

impl Workload {
    pub const ALL: [Workload; 10] = [
        Workload::Service,
        Workload::BatchJson,
        Workload::BatchLarge,
        Workload::Scale,
        Workload::Mmap,
        Workload::Seed,
        Workload::Goroutines,
        Workload::NativeChurn,
        Workload::NativeServer,
        Workload::NativeScale,
    ];

    /// Short name, as in results.json.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Service => "service",
            Workload::BatchJson => "batch-json",
            Workload::BatchLarge => "batch-large",
            Workload::Scale => "scale",
            Workload::Mmap => "mmap",
            Workload::Seed => "seed",
            Workload::Goroutines => "goroutines",
            Workload::NativeChurn => "native-churn",
            Workload::NativeServer => "native-server",
            Workload::NativeScale => "native-scale",
        }
    }

    /// The program (Go under tests/go, C under tests/c; built into
    /// target/bench/bin).
    pub fn program(self) -> &'static str {
        match self {
            Workload::Service => "benchservice",
            Workload::BatchJson | Workload::BatchLarge => "benchbatch",
            Workload::Scale => "benchscale",
            Workload::Mmap => "benchmmap",
            Workload::Seed => "seed",
            Workload::Goroutines => "benchgoroutines",
            Workload::NativeChurn | Workload::NativeServer | Workload::NativeScale => {
                native::PROGRAM
            }
        }
    }

    /// How much work `sizes` gives it: requests, records, objects, stacks
    /// or cycles.
    pub fn units(self, sizes: &Sizes) -> usize {
        match self {
            Workload::Service => sizes.service_requests,
            Workload::BatchJson => sizes.json_records,
            Workload::BatchLarge => sizes.large_objects,
            Workload::Scale => 10usize.pow(sizes.scale_depth),
            Workload::Mmap => sizes.mmap_cycles,
            Workload::Seed => sizes.seed_requests,
            Workload::Goroutines => sizes.goroutines,
            _ => native::units(self, &sizes.native),
        }
    }

    /// The program's arguments: its fixed amount of work (for the
    /// services, the work is benchload's request count: no arguments).
    pub fn args(self, sizes: &Sizes) -> Vec<String> {
        let (flags, n): (&[&str], String) = match self {
            Workload::Service | Workload::Seed => return vec![],
            Workload::BatchJson => (&["-mode", "json", "-n"], self.units(sizes).to_string()),
            Workload::BatchLarge => (&["-mode", "large", "-n"], self.units(sizes).to_string()),
            Workload::Scale => (&["-depth"], sizes.scale_depth.to_string()),
            Workload::Mmap | Workload::Goroutines => (&["-n"], self.units(sizes).to_string()),
            _ => return native::args(self, self.units(sizes)),
        };
        flags.iter().map(|f| f.to_string()).chain([n]).collect()
    }

    /// The arms this workload runs, in the order they alternate.
    pub fn arms(self, leak_top: bool) -> Vec<Arm> {
        match self {
            Workload::Service | Workload::BatchJson | Workload::BatchLarge => {
                let mut arms = vec![
                    Arm::Untraced,
                    Arm::Leak,
                    Arm::LeakRate4096,
                    Arm::PeerBaseline,
                    Arm::Bpftrace,
                    Arm::GoSampler,
                    Arm::GoSampler4096,
                ];
                if self == Workload::Service {
                    // Right after their baseline: sampling on, no reader.
                    arms.splice(6..6, [Arm::HeapReadLoop, Arm::HeapReadOther]);
                    arms.extend([Arm::GoroutinesLoop, Arm::GoroutinesOther]);
                }
                arms
            }
            Workload::Scale => vec![Arm::LeakScale, Arm::HeapRead],
            Workload::Mmap if leak_top => vec![Arm::Untraced, Arm::LeakTop, Arm::LeakTopEmpty],
            Workload::Mmap => vec![],
            Workload::Seed => vec![Arm::HeapVsPprof],
            Workload::Goroutines => vec![Arm::GoroutinesRead],
            _ => native::arms(self),
        }
    }

    /// A C program (tests/c), not a Go one.
    pub fn is_native(self) -> bool {
        matches!(
            self,
            Workload::NativeChurn | Workload::NativeServer | Workload::NativeScale
        )
    }

    /// Selected by `--only`: named, or named by the part before a `-`.
    fn selected(self, only: &[String]) -> bool {
        only.is_empty()
            || only.iter().any(|o| {
                self.name() == o
                    || self
                        .name()
                        .strip_prefix(o.as_str())
                        .is_some_and(|r| r.starts_with('-'))
            })
    }

    /// An HTTP service loaded by benchload (and killed), not a batch job.
    fn serves_http(self) -> bool {
        matches!(self, Workload::Service | Workload::Seed)
    }
}

/// What runs next to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arm {
    Untraced,
    /// `leak trace` at the program's own (or Go's default) sampling rate.
    Leak,
    LeakRate4096,
    /// `leak trace --rate 1` writing every output: each allocation sampled.
    LeakScale,
    /// No tracer, on the bpftrace arm's share of the work: its baseline.
    PeerBaseline,
    /// The bpftrace one-liner, on `Sizes::peer_share` of the work.
    Bpftrace,
    LeakTop,
    /// `leak top --bench-empty-programs`: programs that return at once on
    /// the same hooks, the floor `leak top`'s own programs add to.
    LeakTopEmpty,
    /// No tracer, but the program turns Go's heap sampling on itself at
    /// 512 KiB: the part of leak's cost that is Go's own sampler.
    GoSampler,
    /// The same at 4096 bytes, to set against `leak --rate 4096`.
    GoSampler4096,
    /// No tracer; the program samples every allocation itself (rate 1) and
    /// `leak heap` reads its records after the work.
    HeapRead,
    /// Sampling on at 512 KiB as in `GoSampler`, and `leak heap` reading
    /// the records every 100 ms during the load.
    HeapReadLoop,
    /// The same reads of another process (an idle copy of the program):
    /// the reader's CPU on the same cores, without reading the target.
    HeapReadOther,
    /// `leak heap` and a GET of the program's /debug/pprof/heap, in turn.
    HeapVsPprof,
    /// `leak goroutines --json` reading the program's goroutines after its
    /// work, checked against the program's own count.
    GoroutinesRead,
    /// No tracer; `leak goroutines` reading the service every 100 ms.
    GoroutinesLoop,
    /// The same reads of another process (a small benchgoroutines).
    GoroutinesOther,
    /// heaptrack on a native workload (`-p`, or starting it preloaded).
    Heaptrack,
    /// bpftrace doing what bcc's memleak does, on a native workload.
    Memleak,
    /// bpftrace with empty uprobes on malloc and free.
    EmptyProbes,
    /// `leak trace` at the default rate, the kernel counting the run time
    /// of its eBPF programs.
    LeakBpfStats,
}

impl Arm {
    /// Short name, as in results.json and the tables.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Untraced => "untraced",
            Arm::Leak => "leak",
            Arm::LeakRate4096 => "leak --rate 4096",
            Arm::LeakScale => "leak --rate 1",
            Arm::PeerBaseline => "untraced, peer's work",
            Arm::Bpftrace => "bpftrace",
            Arm::LeakTop => "leak top",
            Arm::LeakTopEmpty => "empty programs on the same hooks",
            Arm::GoSampler => "untraced, sampling on",
            Arm::GoSampler4096 => "untraced, sampling 4096",
            Arm::HeapRead => "leak heap",
            Arm::HeapReadLoop => "sampling on, leak heap every 100 ms",
            Arm::HeapReadOther => "sampling on, leak heap of another process every 100 ms",
            Arm::HeapVsPprof => "leak heap vs /debug/pprof/heap",
            Arm::GoroutinesRead => "leak goroutines",
            Arm::GoroutinesLoop => "leak goroutines every 100 ms",
            Arm::GoroutinesOther => "leak goroutines of another process every 100 ms",
            Arm::Heaptrack => "heaptrack",
            Arm::Memleak => "bpftrace, memleak's method",
            Arm::EmptyProbes => "bpftrace, empty probes",
            Arm::LeakBpfStats => "leak, eBPF run time counted",
        }
    }

    /// Reads the program's profile records with `leak heap` (no tracer).
    fn reads_records(self) -> bool {
        matches!(
            self,
            Arm::HeapRead | Arm::HeapReadLoop | Arm::HeapReadOther | Arm::HeapVsPprof
        )
    }

    /// Reads goroutines with `leak goroutines` (no tracer).
    fn reads_goroutines(self) -> bool {
        matches!(
            self,
            Arm::GoroutinesRead | Arm::GoroutinesLoop | Arm::GoroutinesOther
        )
    }

    /// Runs on the peer's share of the work, not the full work.
    fn on_peer_share(self) -> bool {
        matches!(self, Arm::Bpftrace | Arm::PeerBaseline)
    }

    fn is_leak_trace(self) -> bool {
        matches!(
            self,
            Arm::Leak | Arm::LeakRate4096 | Arm::LeakScale | Arm::LeakBpfStats
        )
    }

    /// The `-memprofilerate` the workload sets itself in this arm.
    fn own_sampling_rate(self) -> Option<u32> {
        match self {
            Arm::GoSampler | Arm::HeapReadLoop | Arm::HeapReadOther => Some(512 * 1024),
            Arm::GoSampler4096 => Some(4096),
            Arm::HeapRead => Some(1),
            _ => None,
        }
    }
}

/// How much work each workload gets, and how many rounds.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub rounds: usize,
    pub service_requests: usize,
    pub json_records: usize,
    pub large_objects: usize,
    /// 10^scale_depth distinct stacks.
    pub scale_depth: u32,
    pub mmap_cycles: usize,
    /// The bpftrace arm and its untraced baseline get 1/peer_share of the
    /// service's, batch-json's and batch-large's work.
    pub peer_share: usize,
    /// `leak heap` reads of each kind in one records run.
    pub heap_reads: usize,
    /// Requests the seed service gets before it is read (10 kB kept each).
    pub seed_requests: usize,
    /// Goroutines benchgoroutines parks for `leak goroutines` to read.
    pub goroutines: usize,
    /// `leak goroutines --json` reads in one goroutines run.
    pub goroutine_reads: usize,
    /// The native workloads' work.
    pub native: native::NativeSizes,
}

impl Sizes {
    /// Full runs: a second or two of work per untraced arm. bpftrace makes
    /// that 13–30 s plus up to 13 s to print its map (80 s a round, 3/4 of a
    /// 9-minute run); on an eighth of the work that run would take ~4 min.
    const FULL: Sizes = Sizes {
        rounds: 5,
        service_requests: 20_000,
        json_records: 120_000,
        large_objects: 3_000,
        scale_depth: 5,
        mmap_cycles: 200_000,
        peer_share: 8,
        heap_reads: 2,
        seed_requests: 2_000,
        goroutines: 100_000,
        goroutine_reads: 3,
        native: native::NativeSizes::FULL,
    };
    const QUICK: Sizes = Sizes {
        rounds: 2,
        service_requests: 3_000,
        json_records: 15_000,
        large_objects: 300,
        scale_depth: 4,
        mmap_cycles: 40_000,
        peer_share: 4,
        heap_reads: 3,
        seed_requests: 1_000,
        goroutines: 100_000,
        goroutine_reads: 2,
        native: native::NativeSizes::QUICK,
    };

    /// The sizes `arm` runs with: the peer's share of the work for the
    /// bpftrace arm and its baseline, the full work for the others.
    pub fn for_arm(&self, arm: Arm) -> Sizes {
        if !arm.on_peer_share() {
            return *self;
        }
        let share = |n: usize| n.div_ceil(self.peer_share);
        Sizes {
            service_requests: share(self.service_requests),
            json_records: share(self.json_records),
            large_objects: share(self.large_objects),
            ..*self
        }
    }
}

/// Named figures of one run (seconds, rps, tracer_peak_rss_mib, …).
pub type Metrics = BTreeMap<&'static str, f64>;

/// Named figures measured several times in one run (each `leak heap` read).
pub type Series = BTreeMap<&'static str, Vec<f64>>;

/// One arm of one workload in one round.
#[derive(Debug)]
pub struct Run {
    pub round: usize,
    pub workload: Workload,
    pub arm: Arm,
    /// 1-minute load average when the run started (other work on the host).
    pub loadavg: f64,
    pub metrics: Metrics,
    pub series: Series,
    pub error: Option<String>,
}

/// Runs the whole benchmark.
pub fn run(opts: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads eBPF programs: run `cargo xtask bench` as root");
    }
    let mut sizes = if opts.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    if let Some(r) = opts.rounds {
        if r == 0 {
            bail!("--rounds must be at least 1");
        }
        sizes.rounds = r;
    }
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| w.selected(&opts.only))
        .collect();
    if workloads.is_empty() {
        let names: Vec<&str> = Workload::ALL.map(Workload::name).to_vec();
        bail!(
            "--only matches no workload (workloads: {})",
            names.join(", ")
        );
    }
    let started = Instant::now();
    let kit = kit::prepare(opts.leak.clone(), &workloads)?;
    // A partial run never replaces the committed report.
    let scratch_report = opts.quick || !opts.only.is_empty();
    let out_dir = if scratch_report {
        root().join("target/bench")
    } else {
        root()
    };
    let results = if scratch_report {
        out_dir.join("results.json")
    } else {
        root().join("bench/results.json")
    };

    let machine = report::Machine::probe(&kit);
    let mut runs = Vec::new();
    for round in 0..sizes.rounds {
        for &workload in &workloads {
            for arm in kit.arms(workload) {
                let loadavg = report::loadavg();
                let t = Instant::now();
                let (metrics, series, error) = match measure(&kit, &sizes, workload, arm) {
                    Ok((m, series)) => (m, series, None),
                    Err(e) => {
                        let msg = e
                            .chain()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(": ");
                        (Metrics::new(), Series::new(), Some(msg))
                    }
                };
                eprintln!(
                    "bench: round {}/{} · {} · {}: {}",
                    round + 1,
                    sizes.rounds,
                    workload.name(),
                    arm.name(),
                    match &error {
                        Some(e) => format!("FAILED: {e}"),
                        None => format!("{:.1} s", t.elapsed().as_secs_f64()),
                    }
                );
                runs.push(Run {
                    round,
                    workload,
                    arm,
                    loadavg,
                    metrics,
                    series,
                    error,
                });
            }
        }
    }
    let took = started.elapsed();
    let doc = report::Document {
        machine: &machine,
        kit: &kit,
        sizes: &sizes,
        runs: &runs,
        took,
        quick: opts.quick,
        results_path: results
            .strip_prefix(root())
            .unwrap_or(&results)
            .to_path_buf(),
    };
    fs::create_dir_all(results.parent().expect("a file in a directory"))?;
    fs::write(&results, report::results_json(&doc))
        .with_context(|| format!("cannot write {}", results.display()))?;
    let md = out_dir.join("BENCHMARKS.md");
    let kept = fs::read_to_string(&md).ok();
    fs::write(&md, report::markdown(&doc, kept.as_deref()))
        .with_context(|| format!("cannot write {}", md.display()))?;
    eprintln!(
        "bench: {} runs in {:.1} min; wrote {} and {}",
        runs.len(),
        took.as_secs_f64() / 60.0,
        md.display(),
        results.display()
    );
    Ok(())
}

/// One run: start the workload, attach the arm's tracer (or start reading
/// its records), do the work, stop.
fn measure(kit: &Kit, sizes: &Sizes, workload: Workload, arm: Arm) -> Result<(Metrics, Series)> {
    if workload.is_native() {
        return native::measure(kit, sizes, workload, arm);
    }
    let sizes = &sizes.for_arm(arm);
    let mut args = workload.args(sizes);
    if let Some(rate) = arm.own_sampling_rate() {
        args.extend(["-memprofilerate".into(), rate.to_string()]);
    }
    let bin = kit.program(workload.program());
    let mut target = Running::spawn(Command::new(&bin).args(&args))?;
    let first = target.wait_for("start-up line", Duration::from_secs(30), |s, _| {
        s == Stream::Stdout
    })?;
    if workload == Workload::Scale {
        tracer::clear_scale_outputs(&kit.scratch);
    }
    let argv = tracer::command_line(
        arm,
        &kit.leak.display().to_string(),
        &kit.bpftrace.display().to_string(),
        &bin.display().to_string(),
        &target.pid.to_string(),
        &kit.scratch.display().to_string(),
    );
    let probe = (arm == Arm::Bpftrace).then(|| (target.pid, kit.mallocgc[workload.program()]));
    let tracer = argv
        .map(|argv| Tracer::start(arm, &argv, probe))
        .transpose()?;
    let reader = records::Reader::<records::Heap>::start(kit, arm, target.pid)?;
    let goroutines = records::Reader::<goroutines::Goroutines>::start(kit, arm, target.pid)?;

    let (mut m, mut series) = (Metrics::new(), Series::new());
    if workload.serves_http() {
        load_service(kit, workload.units(sizes), &first, &mut m)?;
    } else {
        if first != "ready" {
            bail!("{} said {first:?}, not ready", bin.display());
        }
        target.send_line("go")?;
        // Slow arms (bpftrace) may take a hundred times longer than untraced.
        let line = target.wait_for("result", Duration::from_secs(900), |s, l| {
            s == Stream::Stdout && l.starts_with('{')
        })?;
        let result: serde_json::Value = serde_json::from_str(&line)?;
        m.insert("seconds", result["seconds"].as_f64().context("no seconds")?);
        for key in ["objects", "parked", "goroutines"] {
            if let Some(n) = result[key].as_f64() {
                m.insert(key, n);
            }
        }
    }
    if let Some(t) = tracer {
        t.stop(&mut m)?;
    }
    reader.finish(kit, sizes, &first, &mut m, &mut series)?;
    goroutines.finish(kit, sizes, &mut m, &mut series)?;
    if arm == Arm::LeakScale {
        count_scale_outputs(kit, &mut m)?;
    }
    // The workload's own CPU time, start-up included (a service is killed).
    let exit = if workload.serves_http() {
        target
            .signal_and_reap(libc::SIGKILL, Duration::from_secs(30))?
            .0
    } else {
        target.close_and_reap(Duration::from_secs(30))?
    };
    m.insert("target_cpu_s", exit.cpu_seconds);
    Ok((m, series))
}

/// Runs benchload (`requests` requests) against the service that printed
/// `listening`.
fn load_service(kit: &Kit, requests: usize, listening: &str, m: &mut Metrics) -> Result<()> {
    let addr = listening
        .strip_prefix("listening on ")
        .context("the service did not say where it listens")?;
    let out = Command::new(kit.program("benchload"))
        .args(["-url", &format!("http://{addr}/work")])
        .args(["-n", &requests.to_string(), "-c", "8"])
        .output()
        .context("cannot run benchload")?;
    if !out.status.success() {
        bail!(
            "benchload failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let load: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("benchload printed no JSON result")?;
    for key in ["seconds", "rps", "p50_ms", "p99_ms"] {
        let v = load[key].as_f64().context("incomplete benchload result")?;
        m.insert(key, v);
    }
    Ok(())
}

/// Checks the scale arm wrote every output and counts the folded stacks.
fn count_scale_outputs(kit: &Kit, m: &mut Metrics) -> Result<()> {
    let outputs = tracer::scale_outputs(&kit.scratch.display().to_string());
    for f in &outputs {
        if !Path::new(f).is_file() {
            bail!("leak did not write {f}");
        }
    }
    let folded = fs::read_to_string(&outputs[0])?;
    let lines = folded.lines().filter(|l| !l.trim().is_empty()).count();
    m.insert("folded_lines", lines as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_and_its_baseline_get_a_share_of_the_work() {
        let full = Sizes::FULL;
        for arm in [Arm::Bpftrace, Arm::PeerBaseline] {
            let s = full.for_arm(arm);
            assert_eq!(
                (s.service_requests, s.json_records, s.large_objects),
                (2_500, 15_000, 375)
            );
            assert_eq!((s.scale_depth, s.mmap_cycles), (5, 200_000));
        }
        let s = full.for_arm(Arm::Leak);
        assert_eq!((s.json_records, s.large_objects), (120_000, 3_000));
        assert_eq!(
            Workload::BatchLarge.args(&full.for_arm(Arm::Bpftrace)),
            ["-mode", "large", "-n", "375"]
        );
    }
}
