//! The native pipeline: `leak trace --pid PID` on a program that is not
//! Go. By default its allocations: malloc, calloc, realloc and free of the
//! allocator it really uses, sampled by bytes in the kernel, outstanding
//! bytes per stack scaled as pprof scales them. With `--syscalls` (on any
//! program) where its heap grows: user stacks at every brk and anonymous
//! mmap, outstanding mapped bytes per stack (munmap and brk shrinking give
//! back); that sees the allocator asking the kernel for memory, not each
//! malloc. The same reports as the Go pipeline either way.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::error::{refuse, Context as _, Error, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use leak_common::{Counter, MapCall, MapEvent, NativeAlloc, NativeGoConfig};

use crate::{
    aggregate::{
        mapped::MappedBytes,
        merged::{MergedId, MergedStacks},
        sampled::Aggregator,
        StackId, Totals,
    },
    analysis::growth::GrowthTracker,
    event::{KernelCounters, Record},
    go::{
        cgo::{self, GoCode, GoHeapView, WithGo},
        GoProcess,
    },
    native::{
        allocator,
        elfsym::{follows_call, ProcessSymbols},
        stacks::{trim_allocator, trim_c_library, user_stack},
        unwind::ProcessUnwinder,
        work::{self, WorkProbe},
    },
    outputs::Outputs,
    pipeline::go::launch,
    pipeline::go::{profile::retained_per_call, GROWTH_EVERY, SERIES_POINTS, TRACKED_STACKS},
    probes::{
        self,
        heap::HeapProbes,
        native::{NativeLoad, NativeProbes},
        Attached,
    },
    process::{
        self,
        exe::exe_file,
        memory::{Memory, ProcessMemory},
        FileId,
    },
    report::{
        GoHeapPart, Heap, Losses, Profile, Source, StackGrowth, StackProfile, Unit, WorkSummary,
    },
    sampling::monotonic_ns,
    session::{self, Pipeline, Stop, Timing},
    symbolize::{end_at_goexit, Symbolizer},
};

/// How often leak checks that the process still runs.
const ALIVE_EVERY: Duration = Duration::from_millis(500);

/// What is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// malloc/free, sampled every `rate` bytes on average.
    Allocations {
        /// Mean bytes between samples (1: every allocation).
        rate: u64,
    },
    /// brk/mmap/munmap.
    Syscalls,
}

/// What `leak trace --pid` on a native program was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The process.
    pub pid: u32,
    /// What is followed.
    pub mode: Mode,
    /// Stacks in the text report.
    pub top: usize,
    /// Seconds between reports.
    pub interval: f64,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Files to write at the end.
    pub outputs: Outputs,
    /// `--work`: the function that marks a unit of work.
    pub work: Option<String>,
    /// `--older`: count only objects allocated at least this many seconds
    /// ago as outstanding.
    pub older: Option<f64>,
    /// Where separate debug files are looked for (`--debug-dir`).
    pub debug_dirs: Vec<PathBuf>,
}

/// Checks the process, then traces its heap growth until told to stop and
/// writes every requested output.
pub(crate) fn run(options: Options) -> Result<()> {
    if !process::alive(options.pid) {
        refuse!("{}", process::not_there(&options.pid));
    }
    session::block_on(trace(options, None))
}

/// `leak trace -- CMD` on a native program: starts it paused, lets it run
/// to its entry point (its libraries mapped, none of its code run), probes
/// the allocator it got, traces it until it exits and writes every output;
/// returns the program's exit status.
pub(crate) fn run_launched(
    mut options: Options,
    program: &std::path::Path,
    args: &[std::ffi::OsString],
) -> Result<u8> {
    let Mode::Allocations { rate } = options.mode else {
        refuse!("leak trace -- CMD follows allocations: --syscalls needs --pid");
    };
    let entry = entry_offset(program)?;
    let mut child = launch::spawn_paused(program, args)?;
    let pid = child.id();
    options.pid = pid;
    let prepared = stop_at_entry(pid, rate, program, entry).and_then(|mut load| {
        let allocator = allocator::of_process(pid).map_err(|e| Error::Refused(e.to_string()))?;
        load.attach_allocator(&allocator)?;
        if let Some(w) = work_probe(pid, options.work.as_deref())? {
            load.attach_work(&w)?;
        }
        Ok(Launched {
            probes: load.finish()?,
            allocator,
        })
    });
    let traced = prepared.and_then(|l| session::block_on(trace(options, Some(l))));
    if traced.is_err() {
        // Never left stopped, never run untraced: it goes with leak.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .context(|| "cannot wait for the program".into())?;
    traced?;
    Ok(launch::exit_code(status))
}

/// Loads the probes for `pid` (the paused shell that will exec `program`),
/// lets it exec, and waits until it stops at the program's entry point.
fn stop_at_entry(pid: u32, rate: u64, program: &std::path::Path, entry: u64) -> Result<NativeLoad> {
    let program_id =
        FileId::of(program).context(|| format!("cannot read {}", program.display()))?;
    let mut load = probes::native::load_for(pid, rate, NativeGoConfig::default())?;
    load.stop_at_entry(program, entry)?;
    launch::resume(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs_program = || FileId::of(&exe_file(pid)).is_ok_and(|id| id == program_id);
    loop {
        match process::state(pid) {
            // Stopped, and no longer the shell: at the entry point.
            Some(('T', _)) if runs_program() => return Ok(load),
            Some((s, _)) if !process::is_dead(s) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => refuse!(
                "{} did not reach its entry point (it exited, or could not be run)",
                program.display()
            ),
        }
    }
}

/// File offset of `program`'s entry point (ELF `e_entry`).
fn entry_offset(program: &std::path::Path) -> Result<u64> {
    let data = std::fs::read(program).context(|| format!("cannot read {}", program.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| Error::Refused(format!("{}: not an ELF program: {e}", program.display())))?;
    let entry = object::Object::entry(&file);
    object::Object::segments(&file)
        .find_map(|seg| {
            use object::ObjectSegment;
            let (off, size) = seg.file_range();
            let addr = seg.address();
            (entry >= addr && entry < addr + size).then(|| off + (entry - addr))
        })
        .ok_or_else(|| {
            Error::Refused(format!(
                "{}: its entry point is in no segment",
                program.display()
            ))
        })
}

/// Where `--work`'s function is in process `pid`, if one was given.
fn work_probe(pid: u32, work: Option<&str>) -> Result<Option<WorkProbe>> {
    work.map(|f| work::find(pid, f).map_err(Error::Refused))
        .transpose()
}

/// For a Go program (`--native`, its C heap): its Go heap, its code (to
/// name Go frames and join the two halves of a cgo stack), and where the
/// kernel side finds the goroutine that called into C. Says in one line
/// why a Go program's callers are not followed.
fn go_side(pid: u32) -> (Option<GoHeapView>, Option<GoCode>, NativeGoConfig) {
    let Ok(process) = GoProcess::open_pid(pid) else {
        return (None, None, NativeGoConfig::default());
    };
    let bin = process.program().bin.clone();
    let code = GoCode {
        bin: bin.clone(),
        bias: process.bias(),
    };
    let btf = std::path::Path::new(crate::mm::layout::VMLINUX_BTF);
    let config = crate::mm::layout::task_fsbase(btf)
        .map_err(|e| format!("the kernel's BTF: {e}"))
        .and_then(|fsbase| cgo::config(&bin, fsbase));
    let config = config.unwrap_or_else(|why| {
        eprintln!("leak: the Go callers of C code will not be shown: {why}");
        NativeGoConfig::default()
    });
    (Some(GoHeapView::new(process)), Some(code), config)
}

struct NativePipeline {
    options: Options,
    exe: PathBuf,
    memory: Option<ProcessMemory>,
    mapped: MappedBytes,
    /// Sampled allocations (`Mode::Allocations`); `mapped` holds brk/mmap
    /// (`Mode::Syscalls`). Each interns its own stacks.
    sampled: Aggregator,
    /// The object whose allocator is probed.
    allocator: Option<String>,
    /// Unwinds sampled allocations' stacks.
    unwinder: ProcessUnwinder,
    /// Each stack's outstanding bytes over time, for its verdict.
    growth: GrowthTracker<MergedId>,
    /// Growth readings taken (the tracker's "collections": native memory
    /// has no GC, each reading is exact).
    readings: u64,
    last_growth: Instant,
    symbols: Symbolizer<WithGo<RefCell<ProcessSymbols>>>,
    /// For a Go program: where the kernel side finds the goroutine that
    /// called into C (all 0 otherwise).
    go_config: NativeGoConfig,
    /// A Go program's Go heap, shown beside its C heap.
    go_heap: Option<GoHeapView>,
    /// Stacks symbolized when first seen (the process may be gone by the
    /// end), merged by what they read.
    merged: MergedStacks,
    /// Whether a code address on the stack is a return address.
    return_addresses: HashMap<u64, bool>,
    counters: Option<PerCpuArray<MapData, u64>>,
    /// Calls of `--work`'s function, per CPU.
    work_calls: Option<PerCpuArray<MapData, u64>>,
    started: Instant,
    /// `started` on the kernel's clock (`CLOCK_MONOTONIC`), nanoseconds.
    started_ns: u64,
    previous_outstanding: Option<f64>,
    last_alive_check: Instant,
    /// The process is one leak started (`leak trace -- CMD`).
    launched: bool,
}

/// A program leak started and stopped at its entry point, its allocator
/// already probed.
pub(crate) struct Launched {
    /// The attached probes.
    pub probes: NativeProbes,
    /// The allocator they are on.
    pub allocator: allocator::Allocator,
}

async fn trace(options: Options, launched: Option<Launched>) -> Result<()> {
    let pid = options.pid;
    let exe = process::exe(pid).map_err(|e| crate::error::Error::Refused(e.to_string()))?;
    let symbols = ProcessSymbols::with_debug_dirs(pid, &options.debug_dirs)
        .context(|| format!("cannot read the memory map of pid {pid}"))?;
    let (go_heap, go, go_config) = go_side(pid);
    let now = Instant::now();
    let mut p = NativePipeline {
        exe,
        memory: ProcessMemory::open(pid).ok(),
        mapped: MappedBytes::new(),
        sampled: Aggregator::new(),
        allocator: None,
        unwinder: ProcessUnwinder::new(pid),
        growth: GrowthTracker::exact(TRACKED_STACKS, SERIES_POINTS),
        readings: 0,
        last_growth: now,
        symbols: Symbolizer::native(WithGo {
            native: RefCell::new(symbols),
            go,
        }),
        go_config,
        go_heap,
        merged: MergedStacks::default(),
        return_addresses: HashMap::new(),
        counters: None,
        work_calls: None,
        started: now,
        started_ns: monotonic_ns(),
        previous_outstanding: None,
        last_alive_check: now,
        launched: false,
        options,
    };
    let launched_pid = launched.as_ref().map(|_| pid);
    let (ring, attached) = p.attach(launched)?;
    p.started = Instant::now();
    p.started_ns = monotonic_ns();
    let timing = Timing {
        report_every: Duration::from_secs_f64(p.options.interval),
        poll_every: Some(ALIVE_EVERY),
        duration: p.options.duration,
    };
    if let Some(pid) = launched_pid {
        p.launched = true;
        launch::resume(pid);
    }
    let stop = session::run(&mut p, Some(ring), timing).await?;
    let losses = p.losses();
    p.counters = None;
    drop(attached);
    if stop == Stop::AllExited {
        eprintln!("leak: the traced process has exited");
    }
    let mut profile = p.profile();
    profile.losses = losses;
    println!(
        "final report\n{}",
        crate::report::text::render(&profile, p.options.top, false)
    );
    p.options.outputs.write_profile(&profile)?;
    if let Some(path) = &p.options.outputs.pprof {
        let meta = crate::report::pprof::PprofMeta::ending_now(None, profile.elapsed);
        crate::outputs::write(path, |w| crate::report::pprof::write(&profile, &meta, w))?;
    }
    Ok(())
}

impl Pipeline for NativePipeline {
    fn handle(&mut self, record: Record) {
        match record {
            Record::Map(ev) => self.handle_map(&ev),
            Record::NativeAlloc(ev) if ev.tgid == self.options.pid => self.handle_alloc(&ev),
            Record::NativeFree(ev) if ev.tgid == self.options.pid => {
                self.sampled.free(ev.tgid, ev.addr);
            }
            _ => {}
        }
    }

    fn poll(&mut self) -> Result<Option<Stop>> {
        if self.last_growth.elapsed() >= GROWTH_EVERY {
            self.last_growth = Instant::now();
            self.record_growth();
        }
        if self.last_alive_check.elapsed() >= ALIVE_EVERY {
            self.last_alive_check = Instant::now();
            if !process::alive(self.options.pid) {
                return Ok(Some(Stop::AllExited));
            }
        }
        Ok(None)
    }

    fn on_signal(&mut self, name: &'static str) -> bool {
        !self.launched || launch::launched_signal_stops(self.options.pid, name)
    }

    fn report(&mut self) -> Result<Option<Stop>> {
        let profile = self.profile();
        println!(
            "{}",
            crate::report::text::render(&profile, self.options.top, false)
        );
        self.previous_outstanding = Some(profile.total.outstanding_bytes);
        Ok(None)
    }
}

impl NativePipeline {
    /// Attaches the probes of the mode (or takes those of a launched
    /// program) and says what is traced.
    fn attach(&mut self, launched: Option<Launched>) -> Result<(RingBuf<MapData>, Attached)> {
        let pid = self.options.pid;
        let exe = self.exe.display().to_string();
        match self.options.mode {
            Mode::Syscalls => {
                let HeapProbes {
                    events,
                    counters,
                    attached,
                } = probes::heap::attach(pid)?;
                // After attaching: a brk from here on is seen, so the break
                // read now is where growth starts.
                if let Some(brk) = process::maps::program_break(pid) {
                    self.mapped.set_break(brk);
                }
                self.counters = Some(counters);
                eprintln!(
                    "leak: tracing heap growth (brk, mmap, munmap) of pid {pid} ({exe}); Ctrl-C to stop"
                );
                Ok((events, attached))
            }
            Mode::Allocations { rate } => {
                let (probes, allocator) = match launched {
                    Some(l) => (l.probes, l.allocator),
                    None => {
                        let allocator = allocator::of_process(pid)
                            .map_err(|e| Error::Refused(e.to_string()))?;
                        (
                            probes::native::attach(
                                pid,
                                &allocator,
                                rate,
                                self.go_config,
                                work_probe(pid, self.options.work.as_deref())?.as_ref(),
                            )?,
                            allocator,
                        )
                    }
                };
                self.counters = Some(probes.counters);
                self.work_calls = Some(probes.work_calls);
                eprintln!(
                    "leak: tracing allocations ({} of {}) of pid {pid} ({exe}), {}; Ctrl-C to stop",
                    allocator.functions(),
                    allocator.name,
                    rate_words(rate),
                );
                self.allocator = Some(allocator.name);
                Ok((probes.events, probes.attached))
            }
        }
    }

    fn is_return_address(&mut self, addr: u64) -> bool {
        if let Some(known) = self.return_addresses.get(&addr) {
            return *known;
        }
        let mut symbols = self.symbols.source().native.borrow_mut();
        let yes = symbols.is_code(addr)
            && !symbols.starts_function(addr)
            && self
                .memory
                .as_ref()
                .and_then(|m| m.read_i64(addr.wrapping_sub(8)).ok())
                .is_some_and(|v| follows_call(v.to_le_bytes()));
        drop(symbols);
        self.return_addresses.insert(addr, yes);
        yes
    }

    fn stack_of(&mut self, ev: &MapEvent) -> StackId {
        let walk = &ev.stack[..ev.frames as usize];
        let words = &ev.stack_words[..ev.words as usize];
        let pcs = user_stack(walk, ev.sp, ev.bp, words, |a| self.is_return_address(a));
        log::debug!(
            "walk {:x?} sp {:#x} bp {:#x} → stack {:x?}",
            walk,
            ev.sp,
            ev.bp,
            pcs
        );
        // Symbolized now: the process may be gone by the end.
        let id = self.mapped.intern(&pcs);
        let (table, symbols) = (&self.mapped, &mut self.symbols);
        self.merged.catch_up(table.stack_count(), usize::MAX, |id| {
            trim_c_library(symbols.stack(table.stack(id)))
        });
        id
    }

    /// A sampled allocation: its stack unwound from the copy it carries,
    /// symbolized now (the process may be gone by the end), the allocator's
    /// own frames trimmed.
    fn handle_alloc(&mut self, ev: &NativeAlloc) {
        let words = &ev.stack[..ev.words as usize];
        let mut pcs = self.unwinder.unwind(ev.ip, ev.sp, ev.bp, words);
        if let Some(go) = &self.symbols.source().go {
            let callers = &ev.go_pcs[..ev.go_frames as usize];
            if !callers.is_empty() {
                pcs = cgo::join(&pcs, callers, |pc| go.is_go(pc));
            }
        }
        log::debug!(
            "native alloc ip {:#x} sp {:#x} words {} → {:x?}",
            ev.ip,
            ev.sp,
            words.len(),
            pcs
        );
        let stack = self.sampled.intern(&pcs);
        let (table, symbols) = (&self.sampled, &mut self.symbols);
        self.merged.catch_up(table.stack_count(), usize::MAX, |id| {
            end_at_goexit(trim_allocator(symbols.stack(table.stack(id))))
        });
        let rate = self.rate();
        self.sampled.set_clock(self.clock_ms(ev.time_ns));
        self.sampled.alloc(ev.tgid, ev.addr, ev.size, rate, stack);
    }

    fn handle_map(&mut self, ev: &MapEvent) {
        if ev.tgid != self.options.pid {
            return;
        }
        match ev.call {
            c if c == MapCall::Mmap as u32 => {
                let stack = self.stack_of(ev);
                self.mapped.mmap(ev.addr, ev.len, stack);
            }
            c if c == MapCall::Brk as u32 => {
                let stack = self.stack_of(ev);
                self.mapped.brk(ev.addr, stack);
            }
            c if c == MapCall::Munmap as u32 => self.mapped.munmap(ev.addr, ev.len),
            _ => {}
        }
    }

    fn losses(&self) -> Losses {
        let Some(counters) = &self.counters else {
            return Losses::default();
        };
        let c = KernelCounters::read(counters);
        match self.options.mode {
            Mode::Syscalls => Losses {
                allocs_dropped: c.get(Counter::MapDropped),
                stacks_failed: c.get(Counter::StackFailed),
                ..Losses::default()
            },
            Mode::Allocations { .. } => Losses {
                allocs_dropped: c.get(Counter::AllocDropped) + c.get(Counter::LiveFull),
                frees_dropped: c.get(Counter::FreeDropped),
                stacks_failed: c.get(Counter::StackFailed),
                ..Losses::default()
            },
        }
    }

    /// Each stack's totals now, by merged stack.
    fn merged_totals(&self) -> Vec<(MergedId, Totals)> {
        match self.options.mode {
            Mode::Syscalls => self
                .merged
                .totals(self.mapped.stacks_with_totals().map(|(id, t)| (id, *t))),
            Mode::Allocations { .. } => self
                .merged
                .totals(self.sampled.stacks().map(|(id, t)| (id, *t))),
        }
    }

    /// A reading of every stack's outstanding bytes for the verdicts.
    fn record_growth(&mut self) {
        self.readings += 1;
        let t = self.started.elapsed().as_secs_f64();
        let points: Vec<(MergedId, Totals, f64)> = self
            .merged_totals()
            .into_iter()
            .map(|(m, tot)| (m, tot, tot.outstanding_bytes))
            .collect();
        self.growth.record(t, &points, self.readings);
        if let Some(calls) = self.work_calls() {
            self.growth.record_work(t, calls);
        }
    }

    /// The `--work` function's calls and the bytes each leaves behind: the
    /// per-call growth of the stacks that are not churn (no GC here: what
    /// is held is held).
    fn work_summary(&self, stacks: &[StackProfile]) -> Option<WorkSummary> {
        let function = self.options.work.clone()?;
        let (growths, held): (Vec<StackGrowth>, Vec<f64>) = stacks
            .iter()
            .filter_map(|s| Some((s.growth.clone()?, s.totals.outstanding_bytes)))
            .unzip();
        Some(WorkSummary {
            function,
            calls: self.growth.calls(),
            bytes_per_call: retained_per_call(&growths, &held, 0),
        })
    }

    /// Calls of the `--work` function so far, if one was given.
    fn work_calls(&self) -> Option<u64> {
        self.options.work.as_ref()?;
        let m = self.work_calls.as_ref()?;
        Some(m.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0))
    }

    /// One stack's verdict, from its series.
    fn stack_growth(&self, m: MergedId) -> Option<StackGrowth> {
        let trend = self.growth.assess(&m)?;
        Some(StackGrowth {
            verdict: trend.verdict,
            reason: trend.reason,
            bytes_per_sec: trend.slope,
            bytes_per_call: self
                .growth
                .series(&m)
                .and_then(|s| self.growth.per_call(&s.current))
                .map(|fit| fit.slope),
            survived_2_gcs: 0.0,
        })
    }

    /// Milliseconds since attach at kernel time `ns` (`CLOCK_MONOTONIC`,
    /// as the kernel side stamps allocations): the clock sampled objects'
    /// ages are told by, however late their records are handled.
    fn clock_ms(&self, ns: u64) -> u32 {
        u32::try_from(ns.saturating_sub(self.started_ns) / 1_000_000).unwrap_or(u32::MAX)
    }

    /// Per merged stack, the bytes and objects old enough to count (all but
    /// those younger than `--older`) and the age of its oldest object.
    fn ages(&self) -> HashMap<MergedId, (f64, f64, Option<f64>)> {
        let now = self.clock_ms(monotonic_ns());
        let min_age = (self.options.older.unwrap_or(0.0) * 1000.0) as u32;
        let mut out: HashMap<MergedId, (f64, f64, Option<f64>)> = HashMap::new();
        for (i, (bytes, objects, born)) in self.sampled.ages(now, min_age).into_iter().enumerate() {
            let Some(m) = self.merged.of(crate::aggregate::StackId(i as u32)) else {
                continue;
            };
            let e = out.entry(m).or_insert((0.0, 0.0, None));
            e.0 += bytes;
            e.1 += objects;
            if born != u32::MAX {
                let age = f64::from(now.saturating_sub(born)) / 1000.0;
                e.2 = Some(e.2.map_or(age, |a: f64| a.max(age)));
            }
        }
        out
    }

    /// Mean bytes between samples (allocations mode).
    fn rate(&self) -> u64 {
        match self.options.mode {
            Mode::Allocations { rate } => rate,
            Mode::Syscalls => 1,
        }
    }

    /// A snapshot for the reports; stacks that symbolize alike are merged.
    fn profile(&mut self) -> Profile {
        match self.options.mode {
            Mode::Syscalls => self.profile_of(
                Source::Syscalls,
                (
                    self.mapped.calls(),
                    self.mapped.unmaps(),
                    self.mapped.total(),
                ),
            ),
            Mode::Allocations { rate } => {
                let mut profile = self.profile_of(
                    Source::Native {
                        allocator: self.allocator.clone().unwrap_or_default(),
                        rate,
                        go_heap: None,
                        older: self.options.older,
                    },
                    (
                        self.sampled.samples(),
                        self.sampled.frees(),
                        self.sampled.total(),
                    ),
                );
                if let Some((part, stacks)) = self.go_heap.as_mut().and_then(|v| v.read()) {
                    beside_go_heap(&mut profile, part, stacks);
                }
                profile
            }
        }
    }

    /// The profile of every stack, with `counts`: events in, events out,
    /// the total.
    fn profile_of(&self, source: Source, counts: (u64, u64, Totals)) -> Profile {
        let totals = self.merged_totals();
        let ages = match self.options.mode {
            Mode::Allocations { .. } => self.ages(),
            Mode::Syscalls => HashMap::new(),
        };
        let mut total = counts.2;
        if self.options.older.is_some() {
            total.outstanding_bytes = ages.values().map(|a| a.0).sum();
            total.outstanding_objects = ages.values().map(|a| a.1).sum();
        }
        let stacks: Vec<StackProfile> = totals
            .into_iter()
            .map(|(m, mut totals)| {
                let age = ages.get(&m);
                if let (Some(a), Some(_)) = (age, self.options.older) {
                    totals.outstanding_bytes = a.0;
                    totals.outstanding_objects = a.1;
                }
                (m, totals, age.and_then(|a| a.2))
            })
            .map(|(m, totals, oldest_secs)| StackProfile {
                heap: None,
                oldest_secs,
                held_at_exit: 0.0,
                frames: self.merged.frames(m).clone(),
                totals,
                growth: self.stack_growth(m),
            })
            .collect();
        let mut profile = Profile {
            binary: self.exe.clone(),
            source,
            unit: Unit::Bytes,
            pids: vec![self.options.pid],
            elapsed: self.started.elapsed(),
            samples: counts.0,
            frees: counts.1,
            total,
            previous_outstanding: self.previous_outstanding,
            work: self.work_summary(&stacks),
            stacks,
            losses: self.losses(),
            goroutines: None,
        };
        profile.sort_by_outstanding();
        profile
    }
}

/// `profile` of a Go program's C heap with its Go heap beside it: each
/// stack marked with its heap (and a root frame naming it), the Go heap's
/// stacks added.
fn beside_go_heap(profile: &mut Profile, part: &GoHeapPart, go_stacks: &[StackProfile]) {
    for s in &mut profile.stacks {
        s.heap = Some(Heap::C);
        s.frames = cgo::with_root(s.frames.to_vec(), Heap::C).into();
    }
    profile.stacks.extend_from_slice(go_stacks);
    if let Source::Native { go_heap, .. } = &mut profile.source {
        *go_heap = Some(part.clone());
    }
    profile.sort_by_outstanding();
}

/// "every allocation" or "one sample per 512 KiB on average".
fn rate_words(rate: u64) -> String {
    if rate <= 1 {
        "every allocation".to_string()
    } else {
        format!(
            "one sample per {} allocated on average",
            crate::units::human_bytes(rate as f64)
        )
    }
}
