//! The Go pipeline: uprobes on the runtime's own heap sampler
//! (`setprofilebucket`, the sweeper's `freeSpecial`, GC mark termination,
//! and `--work`'s function), outstanding bytes per call stack, the growth
//! series and verdicts, and the reports. [`target`] opens the binary and
//! plans the probes, [`processes`] follows the processes running it,
//! [`buckets`] maps Go's profile buckets to stacks, [`profile`] turns the
//! numbers into a report.

pub mod buckets;
pub mod history;
pub mod launch;
pub mod processes;
pub mod profile;
pub mod target;

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, RingBuf};
use leak_common::{Counter, ProbeConfig, ALLOC_HAS_STACK};

use self::{
    buckets::BucketStacks,
    history::ProcessHistory,
    processes::{Process, Processes, RatePolicy},
    profile::{SortBy, SYMBOLIZE_BUDGET},
    target::Target,
};
use crate::{
    aggregate::{merged::MergedStacks, sampled::Aggregator},
    analysis::growth::GrowthTracker,
    event::{self, KernelCounters, Record},
    outputs::Outputs,
    probes::{
        self,
        go::{Attachment, GoMaps, GoProbes},
        Attached,
    },
    process::{self, memory::ProcessMemory},
    report::{self, chart::ChartLine, Losses},
    sampling::{self, guard::GuardProcess},
    session::{self, Pipeline, Stop, Timing},
    symbolize::Symbolizer,
    target::GoBinary,
};

/// Stacks whose history is kept for the growth verdict.
const TRACKED_STACKS: usize = 1024;
/// Points kept per stack (halved when full).
const SERIES_POINTS: usize = 360;
/// How often processes running the binary are looked for.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// How often each stack's growth series gets a point.
const GROWTH_EVERY: Duration = Duration::from_secs(1);
/// Records are read in batches this often; the kernel side wakes leak
/// early only when a quarter of the ring buffer waits.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// What `leak trace` on a Go program was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only this process (it must run the binary).
    pub pid: Option<u32>,
    /// `--work`: the function that marks a unit of work.
    pub work: Option<String>,
    /// `--rate`.
    pub rate: Option<u64>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--keep-rate`: leave the rate leak wrote in place at exit.
    pub keep_rate: bool,
    /// Stacks in the text report.
    pub top: usize,
    /// Their order.
    pub sort: SortBy,
    /// Seconds between reports.
    pub interval: f64,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Files to write at the end.
    pub outputs: Outputs,
    /// `leak trace -- CMD`: `pid` is the program leak started, paused
    /// before its exec; it is stopped again at `runtime.main` and let go
    /// once its rate is set.
    pub launched: bool,
}

/// The state of one `leak trace` of a Go binary.
pub struct GoPipeline {
    options: Options,
    target: Target,
    agg: Aggregator,
    symbols: Symbolizer<Rc<GoBinary>>,
    merged: MergedStacks,
    growth: GrowthTracker<u32>,
    procs: Processes,
    buckets: BucketStacks,
    /// What each process held before leak saw it, from its own records.
    history: BTreeMap<u32, ProcessHistory>,
    /// Lines for the user about processes placed, printed once the scan
    /// that placed them has gone through.
    notes: Vec<String>,
    /// Standard output is a terminal: reports redraw in place.
    terminal: bool,
    /// Processes whose start was seen since the last poll: their sampling
    /// rate is checked then.
    started_pids: Vec<u32>,
    /// When the probes were attached, in clock ticks since boot (the unit
    /// of a process's start time); `None` before.
    attached_at: Option<u64>,
    maps: Option<GoMaps>,
    started: Instant,
    previous_outstanding: Option<f64>,
    samples_without_process: u64,
    last_scan: Instant,
    last_growth: Instant,
}

/// Checks the request against the opened binary, then traces until told
/// to stop and writes every requested output.
pub fn run(target: Target, options: Options) -> Result<()> {
    if let Some(pid) = options.pid {
        match process::runs_binary(pid, target.id) {
            None => bail!("no process with pid {pid}"),
            Some(false) => {
                let exe = process::exe(pid)
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
    session::block_on(trace(options, target))
}

async fn trace(options: Options, target: Target) -> Result<()> {
    let (config, attach) = target.attachments(options.work.as_deref())?;
    let now = Instant::now();
    let mut p = GoPipeline {
        symbols: Symbolizer::new(target.bin.clone()),
        target,
        agg: Aggregator::new(),
        merged: MergedStacks::default(),
        growth: GrowthTracker::new(TRACKED_STACKS, SERIES_POINTS),
        procs: Processes::default(),
        buckets: BucketStacks::default(),
        history: BTreeMap::new(),
        notes: Vec::new(),
        terminal: std::io::stdout().is_terminal(),
        started_pids: Vec::new(),
        attached_at: None,
        maps: None,
        started: now,
        previous_outstanding: None,
        samples_without_process: 0,
        last_scan: now,
        last_growth: now,
        options,
    };
    if !p.options.keep_rate {
        p.procs.guard_with(Box::new(GuardProcess::new()));
    }
    let traced = p.trace_session(config, &attach).await;
    // Whatever ended it (a signal, --duration, an error after a write), put
    // back the rates leak wrote first: detaching takes a while.
    if !p.options.keep_rate {
        p.procs.restore_rates(|pid| {
            process::state(pid)
                .filter(|(s, _)| !process::is_dead(*s))
                .map(|(_, start)| start)
        });
    }
    let (stop, attached) = traced?;
    p.record_growth();
    let losses = p.losses();
    // Detach before the slow part (symbolizing, writing files); the numbers
    // already read stay.
    p.maps = None;
    drop(attached);
    if stop == Stop::AllExited {
        eprintln!("leak: every traced process has exited");
    }
    p.finish(losses)
}

impl Pipeline for GoPipeline {
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            let record = event::decode(&item);
            drop(item);
            if let Some(record) = record {
                self.handle(record);
            }
        }
    }

    fn poll(&mut self) -> Result<Option<Stop>> {
        self.check_started()?;
        if let (true, Some(pid)) = (self.options.launched, self.options.pid) {
            if !process::alive(pid) {
                return Ok(Some(Stop::AllExited));
            }
        }
        self.symbolize_pending(SYMBOLIZE_BUDGET / 10);
        if self.last_growth.elapsed() >= GROWTH_EVERY {
            self.last_growth = Instant::now();
            self.refresh_history(false);
            self.record_growth();
        }
        if self.last_scan.elapsed() >= SCAN_EVERY {
            self.last_scan = Instant::now();
            self.scan_processes()?;
            // With --pid, the one process is the trace; without, processes
            // started later are traced too, so leak keeps watching.
            if self.options.pid.is_some() && self.procs.all_exited() {
                return Ok(Some(Stop::AllExited));
            }
        }
        Ok(None)
    }

    fn on_signal(&mut self, name: &'static str) -> bool {
        self.signal_stops(name)
    }

    fn report(&mut self) -> Result<Option<Stop>> {
        let mut profile = self.profile(false);
        self.previous_outstanding = Some(profile.total.outstanding_bytes);
        profile::sort_for_text(&mut profile, self.options.sort);
        let text = self.render(&profile);
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Redrawn in place, as `leak top` draws its table: home, clear.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        writeln!(out, "{text}")?;
        out.flush()?;
        Ok(None)
    }
}

impl GoPipeline {
    /// Finds the processes, attaches, and traces until told to stop: the
    /// span in which leak may write into a target. Returns why it stopped,
    /// and the probes, still attached.
    async fn trace_session(
        &mut self,
        config: ProbeConfig,
        attach: &[Attachment],
    ) -> Result<(Stop, Attached)> {
        // Before attaching: a process that cannot be seen fails now, not later.
        self.scan_processes()?;
        let GoProbes {
            events: ring,
            maps,
            attached,
        } = probes::go::attach(&self.target.path, self.options.pid, config, attach)?;
        self.maps = Some(maps);
        if let (true, Some(pid), Some(m)) =
            (self.options.launched, self.options.pid, self.maps.as_mut())
        {
            m.stop_at_start
                .insert(pid, 1, 0)
                .context("cannot mark the program to stop at start")?;
            launch::resume(pid);
        }
        self.started = Instant::now();
        self.attached_at = process::boot_ticks();
        eprintln!(
            "leak: tracing {} ({}){}; Ctrl-C to stop",
            self.target.path.display(),
            self.target.version,
            match self.options.pid {
                Some(pid) => format!(", pid {pid}"),
                None => ", every process running it".to_string(),
            }
        );
        if !self.history.is_empty() {
            // What the processes held before: the first report, now.
            session::Pipeline::report(self)?;
        }
        let timing = Timing {
            report_every: Duration::from_secs_f64(self.options.interval),
            poll_every: Some(DRAIN_EVERY),
            duration: self.options.duration,
        };
        let stop = session::run(self, Some(ring), timing).await?;
        Ok((stop, attached))
    }

    fn render(&self, profile: &report::Profile) -> String {
        report::text::render(
            profile,
            self.options.top,
            self.options.sort == SortBy::Allocated,
        )
    }

    fn handle(&mut self, record: Record) {
        match record {
            Record::Alloc(ev) => {
                let seen_bias = (ev.ip != 0).then(|| self.target.bias_from_ip(ev.ip));
                let Some(p) = self.place(ev.tgid, seen_bias) else {
                    self.samples_without_process += 1;
                    return;
                };
                let (bias, rate) = (p.bias, p.rates.at(ev.timestamp_ns));
                let carried = (ev.flags & ALLOC_HAS_STACK != 0)
                    .then(|| &ev.stack[..(ev.frames as usize).min(ev.stack.len())]);
                let stack = self
                    .buckets
                    .stack_of(ev.tgid, ev.bucket, carried, bias, &mut self.agg);
                self.agg.alloc(ev.tgid, ev.addr, ev.size, rate, stack);
            }
            Record::Free(ev) => {
                self.agg.free(ev.tgid, ev.addr);
            }
            Record::GcCycle(ev) => {
                if let Some(p) = self.place(ev.tgid, None) {
                    p.gc_cycles += 1;
                    self.agg.gc_cycle(ev.tgid);
                }
            }
            Record::Start(ev) => {
                // Placed now, while it runs; its rate is checked at the
                // next poll (a tenth of a second), not the next scan.
                let bias = self.target.bias_from_start_ip(ev.addr);
                if self.place(ev.tgid, Some(bias)).is_some() {
                    if self.options.launched && self.options.pid == Some(ev.tgid) {
                        self.start_launched(ev.tgid);
                    } else {
                        self.started_pids.push(ev.tgid);
                    }
                }
            }
            Record::Map(_) => {}
        }
    }

    /// Process `tgid`, placed on first sight: its load bias, its memory,
    /// the sampling rate in force. `seen_bias` is the bias a record's
    /// instruction pointer gives: with it, a process that has already
    /// exited (a short job) is placed all the same, with the rate of the
    /// others, and no sample of it is lost.
    fn place(&mut self, tgid: u32, seen_bias: Option<u64>) -> Option<&mut Process> {
        if !self.procs.contains(tgid) {
            let bias = match seen_bias {
                Some(b) => b,
                None => self.target.load_bias(tgid)?,
            };
            let Some((_, start_time)) = process::state(tgid) else {
                let gone = Process::new(bias, 0, None, self.procs.rate());
                self.procs.insert(tgid, gone);
                return self.procs.get_mut(tgid);
            };
            let memory = ProcessMemory::open(tgid).ok();
            let rate = match (&memory, self.target.mem_profile_rate) {
                (Some(m), Some(addr)) => {
                    use crate::process::memory::Memory;
                    m.read_i64(addr.wrapping_add(bias)).ok()
                }
                _ => None,
            }
            .unwrap_or(sampling::DEFAULT_RATE as i64);
            let memory = memory.map(|m| Box::new(m) as Box<dyn process::memory::MemoryMut>);
            self.procs.insert(
                tgid,
                Process::new(bias, start_time, memory, rate.max(0) as u64),
            );
            // Only a process that ran before leak attached has a history
            // (one started since is seen live from its start: its records
            // hold nothing leak has not seen). Read before leak changes the
            // rate: the records are scaled with it.
            let ran_before = self.attached_at.is_none_or(|at| start_time < at);
            if !ran_before {
                return self.procs.get_mut(tgid);
            }
            match ProcessHistory::open(&self.target, tgid, &mut self.agg) {
                Ok(h) => {
                    self.notes.push(format!(
                        "leak: pid {tgid}: history: {} held before leak attached, in {} stacks (Go's own heap profile records, as of its last GC)",
                        crate::units::human_bytes(h.held()),
                        h.part().len()
                    ));
                    self.history.insert(tgid, h);
                }
                Err(why) => self.notes.push(format!(
                    "leak: pid {tgid}: no history: {why}; counting from now"
                )),
            }
        }
        self.procs.get_mut(tgid)
    }

    /// Finds processes running the binary, notes exits (and pids reused),
    /// and makes sure each one samples its heap.
    fn scan_processes(&mut self) -> Result<()> {
        let pids = match self.options.pid {
            Some(pid) => vec![pid],
            None => process::processes_running(self.target.id),
        };
        let running: Vec<(u32, u64)> = pids
            .into_iter()
            .filter_map(|pid| match process::state(pid) {
                Some((s, start)) if !process::is_dead(s) => Some((pid, start)),
                _ => None,
            })
            .collect();
        for pid in self.procs.update(&running).exited {
            // Kept in the report, but its memory is gone; so are its
            // buckets, here and in the kernel.
            self.agg.process_exited(pid);
            self.history.remove(&pid);
            for key in self.buckets.forget(pid) {
                if let Some(m) = &mut self.maps {
                    let _ = m.known_buckets.remove(&[key.0 as u64, key.1]);
                }
            }
        }
        let policy = self.rate_policy();
        let binary = self.target.path.display().to_string();
        for (pid, _) in running {
            if self.place(pid, None).is_some() {
                self.procs.check_rate(pid, &policy, &binary)?;
            }
        }
        self.print_notes();
        Ok(())
    }

    /// Prints the lines about processes placed since the last call.
    fn print_notes(&mut self) {
        for note in self.notes.drain(..) {
            eprintln!("{note}");
        }
    }

    /// What leak may do to a target's sampling rate.
    fn rate_policy(&self) -> RatePolicy {
        RatePolicy {
            addr: self.target.mem_profile_rate,
            requested: self.options.rate,
            read_only: self.options.read_only,
            through_one: !self.target.runtime.rate_change_noticed,
            keep: self.options.keep_rate,
            resume_after_one: None,
        }
    }

    /// Checks the sampling rate of processes whose start was just seen.
    fn check_started(&mut self) -> Result<()> {
        if self.started_pids.is_empty() {
            return Ok(());
        }
        let policy = self.rate_policy();
        let binary = self.target.path.display().to_string();
        for pid in std::mem::take(&mut self.started_pids) {
            if process::alive(pid) {
                self.procs.check_rate(pid, &policy, &binary)?;
            }
        }
        self.print_notes();
        Ok(())
    }

    /// Reads again the records of each process that finished a GC (`now`:
    /// without waiting for its sweep to settle).
    fn refresh_history(&mut self, now: bool) {
        for (pid, h) in self.history.iter_mut() {
            if let Some(p) = self.procs.get_mut(*pid) {
                let (rate, gc) = (p.rates.current(), p.gc_cycles);
                h.refresh(&self.target, rate, gc, now, &mut self.agg);
            }
        }
    }

    /// Calls of the `--work` function so far, if one was given.
    fn work_calls(&self) -> Option<u64> {
        self.options.work.as_ref()?;
        let m = self.maps.as_ref()?;
        Some(m.work_calls.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0))
    }

    /// Losses counted in the kernel, while the maps are there.
    fn kernel_losses(&self) -> Losses {
        self.maps
            .as_ref()
            .map(|m| kernel_losses(&KernelCounters::read(&m.counters)))
            .unwrap_or_default()
    }

    /// The final report and every requested output, after detaching.
    fn finish(mut self, losses: Losses) -> Result<()> {
        self.refresh_history(true);
        let mut profile = self.profile(true);
        profile.losses = losses;
        let mut shown = profile.clone();
        profile::sort_for_text(&mut shown, self.options.sort);
        println!("final report\n{}", self.render(&shown));
        self.options.outputs.write_profile(&profile)?;
        self.write_chart(&shown)?;
        drop(shown);
        // The pprof profile is its own snapshot (as of the last GC): let go
        // of this one first, so the two are never in memory together.
        let elapsed = profile.elapsed;
        drop(profile);
        if let Some(path) = self.options.outputs.pprof.clone() {
            let meta = report::pprof::PprofMeta {
                build_id: self.target.build_id(),
                time_nanos: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64 - elapsed.as_nanos() as i64)
                    .unwrap_or(0),
                duration_nanos: elapsed.as_nanos() as i64,
            };
            let mut gc_view = self.profile_as_of_last_gc();
            gc_view.losses = losses;
            crate::outputs::write(&path, |w| report::pprof::write(&gc_view, &meta, w))?;
        }
        Ok(())
    }

    /// `--chart`: bytes held by the report's top stacks over time.
    fn write_chart(&self, shown: &report::Profile) -> Result<()> {
        if self.options.outputs.chart.is_none() {
            return Ok(());
        }
        let lines: Vec<ChartLine> = shown
            .stacks
            .iter()
            .take(self.options.top)
            .filter_map(|s| {
                let m = self.merged.id_of(&s.frames)?;
                let series = self.growth.series(&m)?;
                let verdict = s.growth.as_ref().map(|g| g.verdict.as_str()).unwrap_or("-");
                let leaf = s
                    .frames
                    .first()
                    .map(|f| f.function.to_string())
                    .unwrap_or_default();
                Some(ChartLine {
                    label: format!("{leaf}: {verdict}"),
                    points: series.current.clone(),
                })
            })
            .collect();
        let title = format!(
            "leak trace: bytes held per stack, top {} of {}",
            lines.len(),
            self.target.path.display()
        );
        self.options
            .outputs
            .write_chart(&title, "bytes held", &lines)
    }
}

/// The Go probes' losses, from the kernel's counters.
fn kernel_losses(c: &KernelCounters) -> Losses {
    Losses {
        allocs_dropped: c.get(Counter::AllocDropped),
        frees_dropped: c.get(Counter::FreeDropped),
        gc_dropped: c.get(Counter::GcDropped),
        stacks_failed: c.get(Counter::StackFailed),
        samples_without_process: 0,
    }
}
