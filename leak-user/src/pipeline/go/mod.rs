//! The Go pipeline: uprobes on the runtime's own heap sampler
//! (`setprofilebucket`, the sweeper's `freeSpecial`, GC mark termination,
//! and `--work`'s function), outstanding bytes per call stack, the growth
//! series and verdicts, and the reports. The binary is a
//! [`crate::go::Program`] (the Go layer), [`attachments`] plans its probes,
//! [`processes`] follows the processes running it,
//! [`buckets`] maps Go's profile buckets to stacks, [`profile`] turns the
//! numbers into a report.

pub(crate) mod buckets;
pub(crate) mod core;
pub(crate) mod goroutines;
pub(crate) mod history;
pub(crate) mod launch;
pub(crate) mod processes;
pub(crate) mod profile;

use std::{
    io::{IsTerminal, Write},
    rc::Rc,
    time::{Duration, Instant},
};

use crate::error::{refuse, Context as _, Result};
use leak_common::{Counter, ProbeConfig};

use self::{
    core::{launched_pid, Core, ProbeSites, ProcHost},
    processes::RatePolicy,
    profile::{SortBy, SYMBOLIZE_BUDGET},
};
use crate::{
    aggregate::merged::MergedStacks,
    analysis::growth::GrowthTracker,
    event::{KernelCounters, Record},
    go::{GoBinary, GoError, Program},
    outputs::Outputs,
    probes::{
        self, census,
        go::{Attachment, GoMaps, GoProbes},
        Attached,
    },
    process,
    report::{
        self,
        chart::{ChartLine, LineKind},
        Losses,
    },
    sampling::guard::GuardProcess,
    session::{self, Pipeline, Stop, Timing},
    symbolize::Symbolizer,
};

/// Stacks whose history is kept for the growth verdict.
pub(crate) const TRACKED_STACKS: usize = 1024;
/// Points kept per stack (halved when full).
pub(crate) const SERIES_POINTS: usize = 360;
/// How often processes running the binary are looked for.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// How often each stack's growth series gets a point.
pub(crate) const GROWTH_EVERY: Duration = Duration::from_secs(1);
/// Records are read in batches this often; the kernel side wakes leak
/// early only when a quarter of the ring buffer waits.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// What `leak trace` on a Go program was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Options {
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
pub(crate) struct GoPipeline {
    options: Options,
    program: Rc<Program>,
    /// Records in, numbers kept: the part tested without a kernel.
    core: Core,
    /// The traced processes' goroutines over time.
    goroutines: goroutines::GoroutineTracker,
    symbols: Symbolizer<Rc<GoBinary>>,
    merged: MergedStacks,
    growth: GrowthTracker<u32>,
    /// Standard output is a terminal: reports redraw in place.
    terminal: bool,
    maps: Option<GoMaps>,
    started: Instant,
    previous_outstanding: Option<f64>,
    last_scan: Instant,
    last_growth: Instant,
}

/// Checks the request against the opened binary, then traces until told
/// to stop and writes every requested output.
pub(crate) fn run(program: Program, options: Options) -> Result<()> {
    if let Some(pid) = options.pid {
        match process::runs_binary(pid, program.id) {
            None => refuse!("{}", process::not_there(&pid)),
            Some(false) => {
                let exe = process::exe(pid)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "something else".into());
                refuse!(
                    "pid {pid} is not running {} (it runs {exe})",
                    program.path.display()
                );
            }
            Some(true) => {}
        }
    }
    session::block_on(trace(options, Rc::new(program)))
}

async fn trace(options: Options, program: Rc<Program>) -> Result<()> {
    let (config, attach) = attachments(&program, options.work.as_deref())?;
    let now = Instant::now();
    let mut p = GoPipeline {
        symbols: Symbolizer::new(program.bin.clone()),
        goroutines: goroutines::GoroutineTracker::new(Rc::clone(&program)),
        core: Core::new(
            ProbeSites::of(&program),
            Box::new(ProcHost(Rc::clone(&program))),
            launched_pid(&options),
        ),
        program,
        merged: MergedStacks::default(),
        growth: GrowthTracker::new(TRACKED_STACKS, SERIES_POINTS),
        terminal: std::io::stdout().is_terminal(),
        maps: None,
        started: now,
        previous_outstanding: None,
        last_scan: now,
        last_growth: now,
        options,
    };
    if !p.options.keep_rate {
        p.core.procs.guard_with(Box::new(GuardProcess::new()));
    }
    let traced = p.trace_session(config, &attach).await;
    // Whatever ended it (a signal, --duration, an error after a write), put
    // back the rates leak wrote first: detaching takes a while.
    if !p.options.keep_rate {
        p.core
            .procs
            .restore_rates(|pid| process::Identity::of_live(pid).map(|i| i.start_time));
    }
    let (stop, attached) = traced?;
    p.record_growth();
    let losses = p.losses();
    // Processes that exited since the last scan: held at their exit, and
    // gone from the kernel maps as any exit is (the census says whether).
    p.note_exits();
    if let Some(m) = &mut p.maps {
        census::log(&m.census());
    }
    // Detach before the slow part (symbolizing, writing files); the numbers
    // already read stay.
    p.maps = None;
    drop(attached);
    if stop == Stop::AllExited {
        eprintln!("leak: every traced process has exited");
    }
    p.finish(losses)
}

/// The probes for `program`'s Go version, and `--work`'s function: each
/// on its function just past the stack-growth check, by file offset.
pub(crate) fn attachments(
    program: &Program,
    work: Option<&str>,
) -> Result<(ProbeConfig, Vec<Attachment>), GoError> {
    let row = program.runtime;
    let probes = [
        ("go_alloc", row.probes.alloc_fn),
        ("go_free", row.probes.free_fn),
        ("go_gc_cycle", row.probes.gc_fn),
        ("go_start", row.probes.start_fn),
    ];
    let work = work.map(|f| ("work_call", f));
    let out = probes
        .into_iter()
        .chain(work)
        .map(|(name, function)| {
            Ok(Attachment {
                program: name,
                function: function.to_string(),
                file_offset: program.probe_offset(function)?,
            })
        })
        .collect::<Result<_, GoError>>()?;
    Ok((row.probe_config(), out))
}

impl Pipeline for GoPipeline {
    fn handle(&mut self, record: Record) {
        if let Some(pid) = self.core.handle(record) {
            self.start_launched(pid);
        }
        if !self.core.forgotten_buckets.is_empty() {
            let keys = std::mem::take(&mut self.core.forgotten_buckets);
            self.forget_buckets(keys);
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
        self.sample_goroutines(false);
        if self.last_scan.elapsed() >= SCAN_EVERY {
            self.last_scan = Instant::now();
            self.scan_processes()?;
            // With --pid, the one process is the trace; without, processes
            // started later are traced too, so leak keeps watching.
            if self.options.pid.is_some() && self.core.procs.all_exited() {
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
        let redraw = if self.terminal {
            // Redrawn in place, as `leak top` draws its table: home, clear.
            "\x1b[H\x1b[2J"
        } else {
            ""
        };
        writeln!(out, "{redraw}{text}")
            .and_then(|()| out.flush())
            .context(|| "cannot write the report".into())?;
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
        } = probes::go::attach(&self.program.file, self.options.pid, config, attach)?;
        self.maps = Some(maps);
        if let (true, Some(pid), Some(m)) =
            (self.options.launched, self.options.pid, self.maps.as_mut())
        {
            m.stop_at_start
                .insert(pid, 1, 0)
                .context(|| "cannot mark the program to stop at start".into())?;
            launch::resume(pid);
        }
        self.started = Instant::now();
        self.core.attached_at = process::boot_ticks();
        eprintln!(
            "leak: tracing {} ({}){}; Ctrl-C to stop",
            self.program.path.display(),
            self.program.version,
            match self.options.pid {
                Some(pid) => format!(", pid {pid}"),
                None => ", every process running it".to_string(),
            }
        );
        self.sample_goroutines(true);
        if !self.core.history.is_empty() {
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

    /// Finds processes running the binary, notes exits (and pids reused),
    /// and makes sure each one samples its heap.
    fn scan_processes(&mut self) -> Result<()> {
        let running = self.note_exits();
        let policy = self.rate_policy();
        let binary = self.program.path.display().to_string();
        for (pid, _) in running {
            if self.core.place(pid, None).is_some() {
                self.core.procs.check_rate(pid, &policy, &binary)?;
            }
        }
        self.print_notes();
        Ok(())
    }

    /// Notes the processes that exited (or called exec) since the last
    /// scan, here and in the kernel maps; the processes running the binary
    /// now, with their start times.
    fn note_exits(&mut self) -> Vec<(u32, u64)> {
        let pids = match self.options.pid {
            // A process that called exec runs another program now (a
            // launched one runs the shell until it execs the program).
            Some(pid)
                if !self.options.launched
                    && process::runs_binary(pid, self.program.id) == Some(false) =>
            {
                Vec::new()
            }
            Some(pid) => vec![pid],
            None => process::processes_running(self.program.id),
        };
        let running: Vec<(u32, u64)> = pids
            .into_iter()
            .filter_map(process::Identity::of_live)
            .map(|i| (i.pid, i.start_time))
            .collect();
        let exited = self.core.procs.update(&running).exited;
        for &pid in &exited {
            if let Some(other) = self.execd(pid) {
                eprintln!("leak: pid {pid} called exec and now runs {other}: its trace ends here");
            }
            let keys = self.core.process_gone(pid);
            self.forget_buckets(keys);
        }
        if let (false, Some(m)) = (exited.is_empty(), &mut self.maps) {
            // The kernel's entries leak never heard of (a sample lost, a
            // process that died before runtime.main).
            m.sweep_exited();
        }
        running
    }

    /// Forgets buckets of processes gone in the kernel's set of buckets
    /// whose stack was sent (the pid may be reused, and a new process's
    /// bucket at the same address must send its stack).
    fn forget_buckets(&mut self, keys: Vec<(u32, u64)>) {
        if let Some(m) = &mut self.maps {
            for key in keys {
                let _ = m.known_buckets.remove(&[key.0 as u64, key.1]);
            }
        }
    }

    /// What process `pid`, gone from the trace, runs now if it is still
    /// the process that was traced (the same start time): it called exec.
    fn execd(&self, pid: u32) -> Option<String> {
        let start = self.core.procs.get(pid)?.start_time;
        let now = process::Identity::of_live(pid)?;
        if now.start_time != start {
            return None;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        Some(exe.display().to_string())
    }

    /// Reads the live processes' goroutines if a read is due (`now`: at
    /// once), and says which cannot be read.
    fn sample_goroutines(&mut self, now: bool) {
        let pids = self.core.procs.live_pids();
        for note in self.goroutines.sample(&pids, now) {
            eprintln!("{note}");
        }
    }

    /// Prints the lines about processes placed since the last call.
    fn print_notes(&mut self) {
        for note in self.core.notes.drain(..) {
            eprintln!("{note}");
        }
    }

    /// What leak may do to a target's sampling rate.
    fn rate_policy(&self) -> RatePolicy {
        RatePolicy {
            addr: self.program.mem_profile_rate,
            requested: self.options.rate,
            read_only: self.options.read_only,
            through_one: !self.program.runtime.rate.change_noticed,
            keep: self.options.keep_rate,
            resume_after_one: None,
        }
    }

    /// Checks the sampling rate of processes whose start was just seen.
    fn check_started(&mut self) -> Result<()> {
        if self.core.started_pids.is_empty() {
            return Ok(());
        }
        let policy = self.rate_policy();
        let binary = self.program.path.display().to_string();
        for pid in std::mem::take(&mut self.core.started_pids) {
            if process::alive(pid) {
                self.core.procs.check_rate(pid, &policy, &binary)?;
            }
        }
        self.print_notes();
        Ok(())
    }

    /// Reads again the records of each process that finished a GC (`now`:
    /// without waiting for its sweep to settle).
    fn refresh_history(&mut self, now: bool) {
        for (pid, h) in self.core.history.iter_mut() {
            if let Some(p) = self.core.procs.get_mut(*pid) {
                let (rate, gc) = (p.rates.current(), p.gc_cycles);
                h.refresh(rate, gc, now, &mut self.core.agg);
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
        self.sample_goroutines(true);
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
            let meta = report::pprof::PprofMeta::ending_now(self.program.build_id(), elapsed);
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
                    kind: LineKind::Own,
                })
            })
            .collect();
        let title = format!(
            "leak trace: bytes held per stack, top {} of {}",
            lines.len(),
            self.program.path.display()
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
