//! `leak trace`: where in the code is memory held? Uprobes on the Go
//! runtime's heap sampler, outstanding bytes per call stack, reports.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap as AyaHashMap, MapData, PerCpuArray, RingBuf};
use clap::Args;
use leak_common::{Counter, ProbeConfig, ALLOC_HAS_STACK};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    aggregate::{Aggregator, StackId, Totals},
    collect::{self, KernelCounters, Record},
    growth::GrowthTracker,
    probes::{self, Attachment},
    procs::{self, FileId, Segment},
    report::{self, Frame, Losses, Profile, StackGrowth, StackProfile, WorkSummary},
    sampling::{self, RateAction, RateHistory},
    symbolize::{SymbolSource, Symbolizer},
    target::{self, GoBinary, RuntimeProbes},
    trend::Verdict,
};

/// Stacks whose history is kept for the growth verdict.
const TRACKED_STACKS: usize = 1024;
/// Stacks symbolized per tick of the event loop (a few ms of work).
const SYMBOLIZE_BUDGET: usize = 2000;
/// Points kept per stack (thinned by half when full).
const SERIES_POINTS: usize = 360;

/// `leak trace --help`: what it does and how to start.
pub const LONG_ABOUT: &str = "\
Where is memory held? Outstanding bytes per call stack of a running Go program.

leak puts entry uprobes on the Go runtime's own heap sampler (runtime.mProf_Malloc,
and the sweeper's free path), so it sees what `go tool pprof` would see, from
outside, without a restart and at next to no cost. Each sampled allocation is kept
with its call stack until the garbage collector frees it; what is never freed is
the leak. Each stack gets a verdict (leaking, growing, steady, churn) from its
history, and with --work, the bytes each unit of work leaves behind.

Examples:
  leak trace --uprobe /srv/api --pid 4242
  leak trace --uprobe /srv/api --work 'main.(*Server).handle' --duration 120
  leak trace --uprobe ./api --duration 60 --folded api.folded --flamegraph api.svg
  leak trace --uprobe ./api --pprof api.pb.gz && go tool pprof -top api.pb.gz
  leak trace --uprobe ./api --rate 4096      # finer sampling, faster answers

Any other program (C, C++, Rust, …): `leak trace --pid PID` follows its heap
growth instead: the user stack at each brk and anonymous mmap, outstanding mapped
bytes per stack (munmap gives back). --syscalls asks for this on a Go program too.
  leak trace --pid 4242 --duration 20 --folded heap.folded";

/// Options of `leak trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The Go executable to trace. Every process running it is traced,
    /// including ones started after leak, unless --pid narrows it to one.
    #[arg(long = "uprobe", value_name = "BINARY")]
    pub binary: Option<PathBuf>,

    /// Trace only this process (with --uprobe, it must be running BINARY).
    /// Alone: a Go program is traced through its heap sampler, any other
    /// through its heap growth (brk/mmap stacks).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Follow heap growth (user stacks at brk and mmap, munmap subtracts)
    /// of --pid, whatever language it is written in.
    #[arg(long, conflicts_with = "binary", requires = "pid")]
    pub syscalls: bool,

    /// Stop after this many seconds (default: run until Ctrl-C, or until every
    /// traced process has exited).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Print a report every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub interval: f64,

    /// Show the N stacks holding the most memory.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// On exit, write folded stacks (flamegraph.pl / inferno input):
    /// frames root first joined by ';', a space, outstanding bytes.
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,

    /// On exit, write an SVG flame graph of outstanding bytes.
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,

    /// On exit, write a gzipped pprof heap profile (read it with
    /// `go tool pprof`; `-base` diffs two of them).
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,

    /// On exit, write the report as JSON (schema in the README).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Order of stacks in the text report: growing stacks first, fastest
    /// first; or bytes still held; or bytes allocated since attach.
    #[arg(long, value_enum, default_value_t = SortBy::Growth)]
    pub sort: SortBy,

    /// A function that marks one unit of work, e.g. the request handler
    /// (`main.(*Server).handle`, `main.main.func1`). leak counts its calls
    /// and reports the heap each call leaves behind, overall and per stack.
    #[arg(long, value_name = "SYMBOL")]
    pub work: Option<String>,

    /// Set the target's heap sampling rate (Go's runtime.MemProfileRate) to
    /// one sample per BYTES allocated. Smaller is finer and finds a leak
    /// sooner; Go's default is 524288. leak writes this one integer into the
    /// target's memory; it also does so, at the default rate, when the
    /// program runs with sampling off.
    #[arg(long, value_name = "BYTES", conflicts_with = "read_only",
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub rate: Option<u64>,

    /// Never write into the target's memory. A program that runs with heap
    /// sampling off then shows nothing, and leak says so and exits.
    #[arg(long)]
    pub read_only: bool,
}

/// Order of stacks in the text report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Leaking and growing stacks first, by growth rate.
    Growth,
    /// Bytes allocated and not yet freed.
    Outstanding,
    /// Bytes allocated since attach.
    Allocated,
}

/// What leak knows about the traced binary.
struct Target {
    path: PathBuf,
    id: FileId,
    bin: Rc<GoBinary>,
    version: String,
    /// Probes and argument positions for this Go version.
    runtime: &'static RuntimeProbes,
    segments: Vec<Segment>,
    /// Link-time address of `runtime.MemProfileRate`, if found.
    mem_profile_rate: Option<u64>,
}

impl SymbolSource for Rc<GoBinary> {
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
        let frames = self.pclntab().frames(pc);
        if frames.is_empty() {
            return None;
        }
        Some(
            frames
                .into_iter()
                .filter(|f| !f.wrapper)
                .map(report_frame)
                .collect(),
        )
    }

    fn innermost_at(&self, pc: u64) -> Option<Option<Frame>> {
        let f = self.pclntab().frames(pc).into_iter().next()?;
        Some((!f.wrapper).then(|| report_frame(f)))
    }
}

fn report_frame(f: target::pclntab::Frame) -> Frame {
    Frame::new(f.function, f.file, f.line, f.inlined)
}

/// Per-process state.
struct Process {
    /// Runtime address minus file address of the binary (PIE).
    bias: u64,
    rates: RateHistory,
    /// Scans left in which to re-check the sampling rate: a process found
    /// right after exec may not have run the runtime's start-up yet.
    rate_checks_left: u8,
    gc_cycles: u64,
    alive: bool,
    /// Exit noticed (and its buckets forgotten).
    gone: bool,
}

/// Runs `leak trace`.
pub fn run(args: TraceArgs) -> Result<()> {
    let binary = match (&args.binary, args.pid) {
        _ if args.syscalls => return super::heapgrowth::run(args),
        (Some(binary), _) => binary.clone(),
        (None, Some(pid)) => match go_executable(pid)? {
            Some(exe) => exe,
            None => return super::heapgrowth::run(args),
        },
        (None, None) => {
            bail!("say what to trace: --uprobe BINARY (a Go program) or --pid PID (any process)")
        }
    };
    let target = open_target(&binary)?;
    for out in [&args.folded, &args.flamegraph, &args.pprof, &args.json]
        .into_iter()
        .flatten()
    {
        check_output_path(out)?;
    }
    if args.interval <= 0.0 {
        bail!("--interval must be more than 0 seconds");
    }
    probes::require_root()?;
    if let Some(pid) = args.pid {
        match procs::runs_binary(pid, target.id) {
            None => bail!("no process with pid {pid}"),
            Some(false) => {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "something else".into());
                bail!(
                    "pid {pid} is not running {} (it runs {exe})",
                    target.path.display()
                );
            }
            Some(true) => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(trace(args, target))
}

/// The executable of process `pid` if it is a Go program.
fn go_executable(pid: u32) -> Result<Option<PathBuf>> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("no process with pid {pid}"),
        _ => anyhow::anyhow!("cannot read the executable of pid {pid}: {e}"),
    })?;
    Ok(GoBinary::open(&exe).is_ok().then_some(exe))
}

/// Opens and checks the binary, and resolves everything the probes need.
fn open_target(path: &Path) -> Result<Target> {
    let bin = GoBinary::open(path)?;
    let (version, _source) = bin.go_version();
    let runtime = target::probes_for(&version)?;
    let id = FileId::of(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let segments = bin
        .load_segments()
        .iter()
        .map(|s| Segment {
            vaddr: s.vaddr,
            offset: s.file_offset,
            filesz: s.file_size,
        })
        .collect();
    let mem_profile_rate = target::mem_profile_rate_addr(&bin)
        .ok()
        .map(|(addr, _)| addr);
    let path = std::fs::canonicalize(path)?;
    Ok(Target {
        version: version.to_string(),
        runtime,
        mem_profile_rate,
        path,
        id,
        bin: Rc::new(bin),
        segments,
    })
}

/// Fails early, before any tracing, if an output file cannot be written.
pub(crate) fn check_output_path(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if out.is_dir() {
        bail!("cannot write {}: it is a directory", out.display());
    }
    Ok(())
}

/// The probes for this binary's Go version, by file offset.
fn attachments(target: &Target, work: Option<&str>) -> Result<(ProbeConfig, Vec<Attachment>)> {
    let row = target.runtime;
    let config = row.probe_config();
    let mut out = Vec::new();
    for (program, function) in [
        ("go_alloc", row.alloc_fn),
        ("go_free", row.free_fn),
        ("go_gc_cycle", row.gc_fn),
    ] {
        let entry = target.bin.require_function(function)?.entry;
        // Past the stack-growth check, so a call that grows its stack (and
        // re-runs from the entry) is seen once.
        let entry = target::prologue::probe_address(&target.bin, entry);
        let file_offset = target.bin.vaddr_to_file_offset(entry).with_context(|| {
            format!("{function} at {entry:#x} is outside every loadable segment")
        })?;
        out.push(Attachment {
            program,
            function: function.to_string(),
            file_offset,
        });
    }
    if let Some(function) = work {
        // Clear error with near matches if the name does not exist.
        let entry = target.bin.require_function(function)?.entry;
        let entry = target::prologue::probe_address(&target.bin, entry);
        let file_offset = target
            .bin
            .vaddr_to_file_offset(entry)
            .with_context(|| format!("{function} is outside every loadable segment"))?;
        out.push(Attachment {
            program: "go_work_call",
            function: function.to_string(),
            file_offset,
        });
    }
    Ok((config, out))
}

/// Why the loop stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Duration,
    Signal(&'static str),
    AllExited,
}

struct Tracer {
    args: TraceArgs,
    target: Target,
    agg: Aggregator,
    symbols: Symbolizer<Rc<GoBinary>>,
    /// Each interned stack's symbolized form, as an index into `merged`:
    /// stacks that symbolize alike are one stack in every report.
    merged_of: Vec<u32>,
    merged: Vec<Arc<[Frame]>>,
    /// By content; foldhash, not SipHash: hashing 100,000 stacks of
    /// names was most of the time spent symbolizing them.
    merged_index: HashMap<Arc<[Frame]>, u32, foldhash::fast::RandomState>,
    growth: GrowthTracker<u32>,
    procs: BTreeMap<u32, Process>,
    started: Instant,
    previous_outstanding: Option<f64>,
    samples_without_process: u64,
    /// Each profile bucket's stack, by (tgid, bucket address): the kernel
    /// sends a bucket's stack with its first sample only.
    buckets: HashMap<(u32, u64), StackId>,
    /// The kernel's set of buckets whose stack was sent, to forget a
    /// process's buckets when it exits (its pid may be reused).
    known_buckets: Option<AyaHashMap<MapData, [u64; 2], u8>>,
    /// Samples that named a bucket whose stack never arrived.
    samples_without_stack: u64,
}

async fn trace(args: TraceArgs, target: Target) -> Result<()> {
    let (config, attach) = attachments(&target, args.work.as_deref())?;
    let mut tracer = Tracer {
        symbols: Symbolizer::new(target.bin.clone()),
        buckets: HashMap::new(),
        known_buckets: None,
        samples_without_stack: 0,
        target,
        agg: Aggregator::new(),
        merged_of: Vec::new(),
        merged: Vec::new(),
        merged_index: HashMap::default(),
        growth: GrowthTracker::new(TRACKED_STACKS, SERIES_POINTS),
        procs: BTreeMap::new(),
        started: Instant::now(),
        previous_outstanding: None,
        samples_without_process: 0,
        args,
    };
    // Before attaching: a process that cannot be seen fails now, not later.
    tracer.scan_processes()?;

    let mut ebpf = probes::load_and_attach(&tracer.target.path, tracer.args.pid, config, &attach)?;
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("no COUNTERS map")?)?;
    tracer.known_buckets = Some(AyaHashMap::try_from(
        ebpf.take_map("KNOWN_BUCKETS")
            .context("no KNOWN_BUCKETS map")?,
    )?);
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    let work_calls: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("WORK_CALLS").context("no WORK_CALLS map")?)?;
    let read_calls = |m: &PerCpuArray<MapData, u64>| -> u64 {
        m.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    };
    #[allow(deprecated)] // AsyncFd::register needs a newer tokio API than this MSRV set
    let mut ring = AsyncFd::new(ring)?;
    tracer.started = Instant::now();
    eprintln!(
        "leak: tracing {} ({}){}; Ctrl-C to stop",
        tracer.target.path.display(),
        tracer.target.version,
        match tracer.args.pid {
            Some(pid) => format!(", pid {pid}"),
            None => ", every process running it".to_string(),
        }
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let interval = Duration::from_secs_f64(tracer.args.interval);
    let mut report_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut scan_tick = tokio::time::interval(Duration::from_millis(500));
    // Growth series: one point per stack per second.
    let mut growth_tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel side wakes us only when a quarter of the ring buffer
    // waits; otherwise records are read on this tick, in batches.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(100));
    let sleep_until_deadline = super::until_deadline(tracer.args.duration);
    tokio::pin!(sleep_until_deadline);

    let stop = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                tracer.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = report_tick.tick() => {
                let losses = tracer.losses(&KernelCounters::read(&counters));
                let profile = tracer.profile(losses, false);
                println!("{}", tracer.render(&profile));
                tracer.previous_outstanding = Some(profile.total.outstanding_bytes);
            }
            _ = drain_tick.tick() => {
                tracer.drain(ring.get_mut());
                tracer.symbolize_pending(SYMBOLIZE_BUDGET / 10);
            }
            _ = growth_tick.tick() => {
                let calls = tracer.args.work.is_some().then(|| read_calls(&work_calls));
                tracer.record_growth(calls);
            }
            _ = scan_tick.tick() => {
                tracer.scan_processes()?;
                if tracer.all_exited() {
                    break Stop::AllExited;
                }
            }
            _ = &mut sleep_until_deadline => break Stop::Duration,
            _ = sigint.recv() => break Stop::Signal("SIGINT"),
            _ = sigterm.recv() => break Stop::Signal("SIGTERM"),
        }
    };
    // Whatever the kernel already queued still counts.
    tracer.drain(ring.get_mut());
    let calls = tracer.args.work.is_some().then(|| read_calls(&work_calls));
    tracer.record_growth(calls);
    let losses = tracer.losses(&KernelCounters::read(&counters));
    // Detach before the slow part (symbolizing, writing files).
    drop(ring);
    drop(work_calls);
    drop(ebpf);
    match stop {
        Stop::AllExited => eprintln!("leak: every traced process has exited"),
        Stop::Signal(s) => eprintln!("leak: {s}: stopping"),
        Stop::Duration => {}
    }
    let profile = tracer.profile(losses, true);
    println!("final report\n{}", tracer.render(&profile));
    if tracer.samples_without_process > 0 {
        eprintln!(
            "leak: {} samples from processes that exited before they could be read were left out",
            tracer.samples_without_process
        );
    }
    super::write_profile_outputs(&tracer.args, &profile)?;
    // The pprof profile is its own snapshot (as of the last GC): let go of
    // this one first, so the two are never in memory together.
    let elapsed = profile.elapsed;
    drop(profile);
    if let Some(path) = tracer.args.pprof.clone() {
        let meta = report::pprof::PprofMeta {
            build_id: tracer
                .target
                .bin
                .build_id()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
                .or_else(|| tracer.target.bin.go_build_id()),
            time_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64 - elapsed.as_nanos() as i64)
                .unwrap_or(0),
            duration_nanos: elapsed.as_nanos() as i64,
        };
        let gc_view = tracer.profile_as_of_last_gc(losses);
        report::write_output(&path, |w| report::pprof::write(&gc_view, &meta, w))?;
    }
    Ok(())
}

impl Tracer {
    fn losses(&self, c: &KernelCounters) -> Losses {
        Losses {
            allocs_dropped: c.get(Counter::AllocDropped),
            frees_dropped: c.get(Counter::FreeDropped),
            stacks_failed: self.samples_without_stack,
        }
    }

    /// Handles every record waiting in the ring buffer.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            let Some(record) = collect::decode(&item) else {
                continue;
            };
            drop(item);
            self.handle(record);
        }
    }

    fn handle(&mut self, record: Record) {
        match record {
            Record::Alloc(ev) => {
                let Some(proc_) = self.process(ev.tgid) else {
                    self.samples_without_process += 1;
                    return;
                };
                let bias = proc_.bias;
                let rate = proc_.rates.at(ev.timestamp_ns);
                // Go's own stack for the bucket, logical pcs, relocated.
                let key = (ev.tgid, ev.bucket);
                let stack = if ev.flags & ALLOC_HAS_STACK != 0 {
                    let n = (ev.frames as usize).min(ev.stack.len());
                    let pcs: Vec<u64> = ev.stack[..n]
                        .iter()
                        .map(|pc| pc.wrapping_sub(bias))
                        .collect();
                    let id = self.agg.intern(&pcs);
                    self.buckets.insert(key, id);
                    id
                } else if let Some(&id) = self.buckets.get(&key) {
                    id
                } else {
                    self.samples_without_stack += 1;
                    self.agg.intern(&[])
                };
                self.agg.alloc(ev.tgid, ev.addr, ev.size, rate, stack);
            }
            Record::Free(ev) => {
                self.agg.free(ev.tgid, ev.addr);
            }
            Record::GcCycle(ev) => {
                if let Some(p) = self.process(ev.tgid) {
                    p.gc_cycles += 1;
                    self.agg.gc_cycle(ev.tgid);
                }
            }
        }
    }

    /// State of process `tgid`, created on first sight.
    fn process(&mut self, tgid: u32) -> Option<&mut Process> {
        if !self.procs.contains_key(&tgid) {
            let bias = procs::process_load_bias(tgid, self.target.id.ino, &self.target.segments)?;
            let rate = self
                .read_rate(tgid, bias)
                .unwrap_or(sampling::DEFAULT_RATE as i64);
            self.procs.insert(
                tgid,
                Process {
                    bias,
                    rates: RateHistory::starting_at(rate.max(0) as u64),
                    rate_checks_left: 3,
                    gc_cycles: 0,
                    alive: true,
                    gone: false,
                },
            );
        }
        self.procs.get_mut(&tgid)
    }

    fn read_rate(&self, pid: u32, bias: u64) -> Option<i64> {
        let addr = self.target.mem_profile_rate?.wrapping_add(bias);
        procs::read_i64(pid, addr).ok()
    }

    /// Finds processes running the binary, notes exits, and makes sure each
    /// one samples its heap.
    fn scan_processes(&mut self) -> Result<()> {
        let pids = match self.args.pid {
            Some(pid) => {
                if procs::alive(pid) {
                    vec![pid]
                } else {
                    vec![]
                }
            }
            None => procs::processes_running(self.target.id),
        };
        for p in self.procs.values_mut() {
            p.alive = false;
        }
        for pid in pids {
            if self.process(pid).is_none() {
                continue;
            }
            if let Some(p) = self.procs.get_mut(&pid) {
                p.alive = true;
            }
            self.check_rate(pid)?;
        }
        let exited: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.alive)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in exited {
            // Keep the process in the report, but its memory is gone.
            self.agg.process_exited(pid);
            if self.procs.get(&pid).is_some_and(|p| !p.gone) {
                self.forget_buckets(pid);
            }
            if let Some(p) = self.procs.get_mut(&pid) {
                p.rate_checks_left = 0;
                p.gone = true;
            }
        }
        Ok(())
    }

    /// Forgets the buckets of an exited process, here and in the kernel: a
    /// new process given the same pid has buckets of its own.
    fn forget_buckets(&mut self, pid: u32) {
        let gone: Vec<(u32, u64)> = self
            .buckets
            .keys()
            .filter(|k| k.0 == pid)
            .copied()
            .collect();
        for key in gone {
            self.buckets.remove(&key);
            if let Some(known) = &mut self.known_buckets {
                let _ = known.remove(&[key.0 as u64, key.1]);
            }
        }
    }

    fn check_rate(&mut self, pid: u32) -> Result<()> {
        let Some(p) = self.procs.get(&pid) else {
            return Ok(());
        };
        if p.rate_checks_left == 0 {
            return Ok(());
        }
        let bias = p.bias;
        let Some(addr) = self.target.mem_profile_rate.map(|a| a.wrapping_add(bias)) else {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.rate_checks_left = 0;
                p.gone = true;
            }
            eprintln!(
                "leak: cannot find runtime.MemProfileRate in {}: assuming Go's default sampling rate",
                self.target.path.display()
            );
            return Ok(());
        };
        let Ok(current) = procs::read_i64(pid, addr) else {
            return Ok(()); // gone meanwhile
        };
        let action = sampling::decide(current, self.args.rate, self.args.read_only);
        let p = self.procs.get_mut(&pid).expect("checked above");
        p.rate_checks_left -= 1;
        match action {
            RateAction::Keep => {
                if p.rates.current() != current as u64 {
                    p.rates.change(sampling::monotonic_ns(), current as u64);
                }
            }
            RateAction::Implausible => {
                p.rate_checks_left = 0;
                eprintln!(
                    "leak: pid {pid}: runtime.MemProfileRate reads {current}, not a sampling rate; leaving it alone"
                );
            }
            RateAction::Blind => bail!(
                "pid {pid} runs with Go heap sampling off (runtime.MemProfileRate = 0) and --read-only forbids turning it on: \
                 nothing can be seen. Run without --read-only to let leak set the rate (one integer written), \
                 or import net/http/pprof or runtime/pprof in the program"
            ),
            RateAction::Enable(rate) | RateAction::Change(rate) => {
                let (one_at, rate_at) =
                    sampling::set_rate(pid, addr, current, rate, !self.target.runtime.rate_change_noticed)
                        .with_context(|| format!("pid {pid}: cannot set runtime.MemProfileRate"))?;
                if let Some(t) = one_at {
                    p.rates.change(t, 1);
                }
                p.rates.change(rate_at, rate);
                if matches!(action, RateAction::Enable(_)) {
                    eprintln!(
                        "leak: pid {pid}: Go heap sampling was off (MemProfileRate=0); turned it on at {rate} bytes (--read-only forbids this)"
                    );
                } else {
                    eprintln!("leak: pid {pid}: MemProfileRate {current} → {rate} (--rate)");
                }
            }
        }
        Ok(())
    }

    fn all_exited(&self) -> bool {
        !self.procs.is_empty() && self.procs.values().all(|p| !p.alive)
    }

    /// The text report, stacks in the order `--sort` asks for.
    fn render(&self, profile: &Profile) -> String {
        let mut p = profile.clone();
        match self.args.sort {
            SortBy::Outstanding => {}
            SortBy::Allocated => p.stacks.sort_by(|a, b| {
                b.totals
                    .allocated_bytes
                    .total_cmp(&a.totals.allocated_bytes)
            }),
            SortBy::Growth => p.stacks.sort_by(|a, b| {
                growth_rank(a)
                    .cmp(&growth_rank(b))
                    .then(growth_rate(b).total_cmp(&growth_rate(a)))
                    .then(
                        b.totals
                            .outstanding_bytes
                            .total_cmp(&a.totals.outstanding_bytes),
                    )
            }),
        }
        report::text::render(&p, self.args.top, self.args.sort == SortBy::Allocated)
    }

    /// Records every stack's totals (and the work counter) for the growth
    /// verdicts. Outstanding bytes are taken "as of the last GC": garbage
    /// allocated since the last collection is left out, so a stack that only
    /// churns does not look like it grows when collections space out as the
    /// heap grows.
    fn record_growth(&mut self, calls: Option<u64>) {
        self.symbolize_pending(SYMBOLIZE_BUDGET);
        let t = self.started.elapsed().as_secs_f64();
        let now: HashMap<u32, f64> = self
            .merged_totals(self.agg.stacks().map(|(id, t)| (id, *t)).collect())
            .into_iter()
            .map(|(m, t)| (m, t.outstanding_bytes))
            .collect();
        let points: Vec<(u32, Totals, f64)> = self
            .merged_totals(self.agg.stacks_as_of_last_gc())
            .into_iter()
            .map(|(m, t)| (m, t, now.get(&m).copied().unwrap_or(0.0)))
            .collect();
        let gc_cycles = self.procs.values().map(|p| p.gc_cycles).sum();
        self.growth.record(t, &points, gc_cycles);
        if let Some(calls) = calls {
            self.growth.record_work(t, calls);
        }
    }

    /// Symbolizes up to `budget` stacks not yet symbolized, oldest first.
    /// The event loop spends a bounded slice of time on it per tick, so a
    /// program with 100,000 new stacks does not stall the ring buffer.
    fn symbolize_pending(&mut self, budget: usize) {
        let mut left = budget;
        while left > 0 && self.merged_of.len() < self.agg.stack_count() {
            let next = StackId(self.merged_of.len() as u32);
            let frames: Arc<[Frame]> = self.symbols.logical_stack(self.agg.stack(next)).into();
            let m = match self.merged_index.get(&frames) {
                Some(m) => *m,
                None => {
                    let m = self.merged.len() as u32;
                    self.merged_index.insert(frames.clone(), m);
                    self.merged.push(frames);
                    m
                }
            };
            self.merged_of.push(m);
            left -= 1;
        }
    }

    /// Totals per merged stack, over the stacks symbolized so far.
    fn merged_totals(&self, ids: Vec<(StackId, Totals)>) -> Vec<(u32, Totals)> {
        let mut sums: HashMap<u32, Totals> = HashMap::new();
        for (id, t) in ids {
            let Some(&m) = self.merged_of.get(id.0 as usize) else {
                continue; // symbolized on a later tick
            };
            let e = sums.entry(m).or_default();
            e.outstanding_bytes += t.outstanding_bytes;
            e.outstanding_objects += t.outstanding_objects;
            e.allocated_bytes += t.allocated_bytes;
            e.allocated_objects += t.allocated_objects;
        }
        sums.into_iter().collect()
    }

    /// A snapshot for the reports; stacks that symbolize alike are merged.
    /// `complete`: every stack symbolized first (the final report), else
    /// only as many as one tick's budget allows.
    fn profile(&mut self, losses: Losses, complete: bool) -> Profile {
        self.symbolize_pending(if complete {
            usize::MAX
        } else {
            SYMBOLIZE_BUDGET
        });
        let ids: Vec<(StackId, Totals)> = self.agg.stacks().map(|(id, t)| (id, *t)).collect();
        self.profile_of(ids, losses)
    }

    /// The same snapshot with outstanding bytes "as of the last GC", as Go's
    /// heap profile counts them (for `--pprof`).
    fn profile_as_of_last_gc(&mut self, losses: Losses) -> Profile {
        self.symbolize_pending(usize::MAX);
        let ids = self.agg.stacks_as_of_last_gc();
        let mut p = self.profile_of(ids, losses);
        p.total.outstanding_bytes = p.stacks.iter().map(|s| s.totals.outstanding_bytes).sum();
        p.total.outstanding_objects = p.stacks.iter().map(|s| s.totals.outstanding_objects).sum();
        p
    }

    fn profile_of(&mut self, ids: Vec<(StackId, Totals)>, losses: Losses) -> Profile {
        let survived = self.agg.survived_per_stack(2);
        let mut survived_merged: HashMap<u32, f64> = HashMap::new();
        for (i, b) in survived.iter().enumerate() {
            if let (true, Some(&m)) = (*b > 0.0, self.merged_of.get(i)) {
                *survived_merged.entry(m).or_default() += b;
            }
        }
        let gc_cycles: u64 = self.procs.values().map(|p| p.gc_cycles).sum();
        let mut retained_per_call = 0.0;
        let mut any_per_call = false;
        let mut stacks: Vec<StackProfile> = self
            .merged_totals(ids)
            .into_iter()
            .map(|(m, totals)| {
                let growth = self.growth.assess(&m).map(|trend| {
                    let per_call = self
                        .growth
                        .series(&m)
                        .and_then(|s| self.growth.per_call(&s.current))
                        .map(|fit| fit.slope);
                    let survived = survived_merged.get(&m).copied().unwrap_or(0.0);
                    if let Some(b) = per_call {
                        any_per_call = true;
                        // What the program keeps per call: stacks whose
                        // memory outlives collections. Per-request garbage
                        // also piles up between (rare) GCs, but none of it
                        // survives two; until two GCs are seen, every stack
                        // that is not churn counts.
                        let keeps = gc_cycles < 2 || survived >= 0.05 * totals.outstanding_bytes;
                        if b > 0.0 && trend.verdict != Verdict::Churn && keeps {
                            retained_per_call += b;
                        }
                    }
                    StackGrowth {
                        verdict: trend.verdict,
                        reason: trend.reason,
                        bytes_per_sec: trend.slope,
                        bytes_per_call: per_call,
                        survived_2_gcs: survived,
                    }
                });
                StackProfile {
                    frames: self.merged[m as usize].clone(),
                    totals,
                    growth,
                }
            })
            .collect();
        stacks.sort_by(|a, b| {
            b.totals
                .outstanding_bytes
                .total_cmp(&a.totals.outstanding_bytes)
                .then(
                    b.totals
                        .allocated_bytes
                        .total_cmp(&a.totals.allocated_bytes),
                )
        });
        let work = self.args.work.clone().map(|function| WorkSummary {
            function,
            calls: self.growth.calls(),
            bytes_per_call: any_per_call.then_some(retained_per_call),
        });
        let rates: Vec<u64> = self.procs.values().map(|p| p.rates.current()).collect();
        Profile {
            binary: self.target.path.clone(),
            go_version: self.target.version.clone(),
            pids: self.procs.keys().copied().collect(),
            rate: rates
                .iter()
                .copied()
                .max()
                .unwrap_or(sampling::DEFAULT_RATE),
            elapsed: self.started.elapsed(),
            gc_cycles: self.procs.values().map(|p| p.gc_cycles).sum(),
            samples: self.agg.samples(),
            frees: self.agg.frees(),
            total: self.agg.total(),
            in_use_at_last_gc: self.agg.in_use_at_last_gc(),
            previous_outstanding: self.previous_outstanding,
            stacks,
            losses,
            work,
        }
    }
}

/// Leaking first, then growing, then the rest.
fn growth_rank(s: &StackProfile) -> u8 {
    match s.growth.as_ref().map(|g| g.verdict) {
        Some(Verdict::Leaking) => 0,
        Some(Verdict::Growing) => 1,
        _ => 2,
    }
}

fn growth_rate(s: &StackProfile) -> f64 {
    s.growth.as_ref().map(|g| g.bytes_per_sec).unwrap_or(0.0)
}
