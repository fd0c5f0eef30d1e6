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
use leak_common::{Counter, MapCall, MapEvent, NativeAlloc};

use crate::{
    aggregate::{
        mapped::MappedBytes,
        merged::{MergedId, MergedStacks},
        sampled::Aggregator,
        StackId, Totals,
    },
    analysis::growth::GrowthTracker,
    event::{KernelCounters, Record},
    native::{
        allocator,
        elfsym::{follows_call, ProcessSymbols},
        stacks::{trim_allocator, trim_c_library, user_stack},
        unwind::ProcessUnwinder,
    },
    outputs::Outputs,
    pipeline::go::launch,
    pipeline::go::{GROWTH_EVERY, SERIES_POINTS, TRACKED_STACKS},
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
    report::{Losses, Profile, Source, StackGrowth, StackProfile, Unit},
    session::{self, Pipeline, Stop, Timing},
    symbolize::Symbolizer,
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
        Ok(Launched {
            probes: load.finish()?,
            allocator: allocator.name,
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
    let mut load = probes::native::load_for(pid, rate)?;
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
    symbols: Symbolizer<RefCell<ProcessSymbols>>,
    /// Stacks symbolized when first seen (the process may be gone by the
    /// end), merged by what they read.
    merged: MergedStacks,
    /// Whether a code address on the stack is a return address.
    return_addresses: HashMap<u64, bool>,
    counters: Option<PerCpuArray<MapData, u64>>,
    started: Instant,
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
    /// The object whose allocator they are on.
    pub allocator: String,
}

async fn trace(options: Options, launched: Option<Launched>) -> Result<()> {
    let pid = options.pid;
    let exe = process::exe(pid).map_err(|e| crate::error::Error::Refused(e.to_string()))?;
    let symbols = ProcessSymbols::with_debug_dirs(pid, &options.debug_dirs)
        .context(|| format!("cannot read the memory map of pid {pid}"))?;
    let now = Instant::now();
    let mut p = NativePipeline {
        exe,
        memory: ProcessMemory::open(pid).ok(),
        mapped: MappedBytes::new(),
        sampled: Aggregator::new(),
        allocator: None,
        unwinder: ProcessUnwinder::new(pid),
        growth: GrowthTracker::new(TRACKED_STACKS, SERIES_POINTS),
        readings: 0,
        last_growth: now,
        symbols: Symbolizer::native(RefCell::new(symbols)),
        merged: MergedStacks::default(),
        return_addresses: HashMap::new(),
        counters: None,
        started: now,
        previous_outstanding: None,
        last_alive_check: now,
        launched: false,
        options,
    };
    let launched_pid = launched.as_ref().map(|_| pid);
    let (ring, attached) = p.attach(launched)?;
    p.started = Instant::now();
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
                            probes::native::attach(pid, &allocator, rate)?,
                            allocator.name,
                        )
                    }
                };
                self.counters = Some(probes.counters);
                eprintln!(
                    "leak: tracing allocations (malloc, calloc, realloc, free of {allocator}) of pid {pid} ({exe}), {}; Ctrl-C to stop",
                    rate_words(rate),
                );
                self.allocator = Some(allocator);
                Ok((probes.events, probes.attached))
            }
        }
    }

    fn is_return_address(&mut self, addr: u64) -> bool {
        if let Some(known) = self.return_addresses.get(&addr) {
            return *known;
        }
        let mut symbols = self.symbols.source().borrow_mut();
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
        let pcs = self.unwinder.unwind(ev.ip, ev.sp, ev.bp, words);
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
            trim_allocator(symbols.stack(table.stack(id)))
        });
        let rate = self.rate();
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
    }

    /// One stack's verdict, from its series.
    fn stack_growth(&self, m: MergedId) -> Option<StackGrowth> {
        let trend = self.growth.assess(&m)?;
        Some(StackGrowth {
            verdict: trend.verdict,
            reason: trend.reason,
            bytes_per_sec: trend.slope,
            bytes_per_call: None,
            survived_2_gcs: 0.0,
        })
    }

    /// Mean bytes between samples (allocations mode).
    fn rate(&self) -> u64 {
        match self.options.mode {
            Mode::Allocations { rate } => rate,
            Mode::Syscalls => 1,
        }
    }

    /// A snapshot for the reports; stacks that symbolize alike are merged.
    fn profile(&self) -> Profile {
        match self.options.mode {
            Mode::Syscalls => self.profile_of(
                Source::Syscalls,
                (
                    self.mapped.calls(),
                    self.mapped.unmaps(),
                    self.mapped.total(),
                ),
            ),
            Mode::Allocations { rate } => self.profile_of(
                Source::Native {
                    allocator: self.allocator.clone().unwrap_or_default(),
                    rate,
                },
                (
                    self.sampled.samples(),
                    self.sampled.frees(),
                    self.sampled.total(),
                ),
            ),
        }
    }

    /// The profile of every stack, with `counts`: events in, events out,
    /// the total.
    fn profile_of(&self, source: Source, counts: (u64, u64, Totals)) -> Profile {
        let totals = self.merged_totals();
        let stacks = totals
            .into_iter()
            .map(|(m, totals)| StackProfile {
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
            total: counts.2,
            previous_outstanding: self.previous_outstanding,
            stacks,
            losses: self.losses(),
            work: None,
            goroutines: None,
        };
        profile.sort_by_outstanding();
        profile
    }
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
