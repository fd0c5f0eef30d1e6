//! `leak top`: which process is leaking? Resident memory of every process
//! (or of chosen ones) over time, from the `kmem:rss_stat` and memory
//! syscall tracepoints, with a verdict per process, as a table refreshed in
//! place, a JSON document and an SVG chart.

use std::{
    collections::{HashMap, HashSet},
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    mm::{
        json,
        kernel::{KernelView, Lost, MmProbes},
        procfs::{self, RssCounters},
        table::{self, Header},
        watch::{merge_rss, Reading, Row, Watch},
    },
    probes, procs,
    report::{self, chart::ChartLine},
};

/// Which process is leaking? Memory over time, per process, with a verdict.
///
/// leak follows every process's resident memory from the kernel
/// (the kmem:rss_stat tracepoint, plus mmap/munmap/brk/mremap/madvise), keeps
/// a series per process and judges it: leaking, growing, steady or
/// shrinking. A garbage collector's sawtooth that levels off is steady;
/// troughs that keep rising are a leak (the rule is in the README).
///
/// Examples:
///   leak top                                  # every process, until Ctrl-C
///   leak top --duration 120 --chart mem.svg   # two minutes, then a chart
///   leak top --pid 4242 --pid 4243 --json top.json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TopArgs {
    /// Read memory and redraw every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub interval: f64,

    /// Stop after this many seconds (default: run until Ctrl-C, or until
    /// every --pid has exited).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Show the first N processes of the ranking (leaking first, then by
    /// growth), and draw them in the chart.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub top: usize,

    /// Watch only this process (repeat for several). Without it, every
    /// process whose memory changes is watched, including ones started later.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,

    /// On exit, write every watched process's series and verdict as JSON
    /// (schema in the README).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// On exit, write an SVG chart of resident memory over time of the top
    /// processes, verdicts in the legend.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

/// Runs `leak top`.
pub fn run(args: TopArgs) -> Result<()> {
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        bail!("--interval must be more than 0 seconds");
    }
    if let Some(d) = args.duration {
        if !(d >= 0.0 && d.is_finite()) {
            bail!("--duration must be 0 seconds or more");
        }
    }
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    for out in [&args.json, &args.chart].into_iter().flatten() {
        check_output_path(out)?;
    }
    probes::require_root()?;
    for &pid in &args.pid {
        if !procs::alive(pid) {
            bail!("no process with pid {pid}");
        }
        if procfs::rss(pid).is_none() {
            bail!("pid {pid} is a kernel thread: it has no memory of its own to watch");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(top(args))
}

/// Fails early, before any tracing, if an output file cannot be written.
fn check_output_path(out: &Path) -> Result<()> {
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

/// What leak remembers about a process between readings.
struct Known {
    /// With the pid, names the process (pids are reused).
    start_time: u64,
    command: String,
    /// RSS counters from `/proc` at first sight, for the counters the kernel
    /// side has not reported.
    baseline: RssCounters,
    start_brk: Option<u64>,
    /// Whether the kernel maps held it at the last reading.
    in_kernel_maps: bool,
}

/// Why the loop stopped.
enum Stop {
    Duration,
    /// Whoever read stdout went away (`leak top | head`).
    ReaderGone,
    Signal(&'static str),
    AllExited,
}

struct Top {
    args: TopArgs,
    probes: MmProbes,
    watch: Watch,
    known: HashMap<u32, Known>,
    /// Kernel threads and other processes without memory, by start time.
    ignored: HashMap<u32, u64>,
    started: Instant,
    last_reading: f64,
    terminal: bool,
}

async fn top(args: TopArgs) -> Result<()> {
    let probes = MmProbes::attach()?;
    let mut top = Top {
        probes,
        watch: Watch::new(),
        known: HashMap::new(),
        ignored: HashMap::new(),
        started: Instant::now(),
        last_reading: 0.0,
        terminal: std::io::stdout().is_terminal(),
        args,
    };
    // The first reading, from /proc: a point at 0 s for every process.
    top.read(0.0);
    eprintln!("leak: watching {}; Ctrl-C to stop", top.scope());

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let interval = Duration::from_secs_f64(top.args.interval);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let sleep_until_deadline = super::until_deadline(top.args.duration);
    tokio::pin!(sleep_until_deadline);

    let stop = loop {
        tokio::select! {
            // Biased: at the end of --duration, the deadline wins over a
            // tick due at the same instant.
            biased;
            _ = &mut sleep_until_deadline => break Stop::Duration,
            _ = sigint.recv() => break Stop::Signal("SIGINT"),
            _ = sigterm.recv() => break Stop::Signal("SIGTERM"),
            _ = tick.tick() => {
                let now = top.started.elapsed().as_secs_f64();
                top.read(now);
                if !top.args.pid.is_empty() && top.watch.is_empty() {
                    break Stop::AllExited;
                }
                if let Err(e) = top.show(false) {
                    match e.kind() {
                        std::io::ErrorKind::BrokenPipe => break Stop::ReaderGone,
                        _ => return Err(e.into()),
                    }
                }
            }
        }
    };
    let now = top.started.elapsed().as_secs_f64();
    if now - top.last_reading > 0.1 && !matches!(stop, Stop::AllExited) {
        top.read(now);
    }
    match stop {
        Stop::AllExited => eprintln!("leak: every watched process has exited"),
        Stop::Signal(s) => eprintln!("leak: {s}: stopping"),
        Stop::Duration | Stop::ReaderGone => {}
    }
    if !matches!(stop, Stop::ReaderGone) {
        top.show(true)?;
    }
    let rows = top.rows();
    let lost = top.probes.lost();
    // Detach before writing files.
    drop(top.probes);
    if let Some(path) = &top.args.json {
        let meta = json::Meta {
            duration_secs: top.last_reading,
            interval_secs: top.args.interval,
            scope: scope(&top.args.pid),
            rss_events_unattributed: lost.rss_events_unattributed,
            stats_insert_failed: lost.stats_insert_failed,
        };
        report::write_output(path, |w| json::write(&meta, &rows, w))?;
    }
    if let Some(path) = &top.args.chart {
        let lines: Vec<ChartLine> = rows
            .iter()
            .take(top.args.top)
            .map(|r| ChartLine {
                label: format!("{} (pid {}): {}", r.command, r.pid, r.trend.verdict),
                points: r.series.clone(),
            })
            .collect();
        let title = format!(
            "leak top: resident memory, top {} of {}",
            lines.len(),
            scope(&top.args.pid)
        );
        report::write_output(path, |w| report::chart::write(&title, &lines, w))?;
    }
    Ok(())
}

/// "every process" or "pid 1, 2".
fn scope(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "every process".to_string();
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    format!("pid {}", list.join(", "))
}

impl Top {
    fn scope(&self) -> String {
        scope(&self.args.pid)
    }

    /// Rows in ranking order: with `--pid`, every named process; otherwise
    /// those whose memory changed while watched.
    fn rows(&self) -> Vec<Row> {
        self.watch.rows(self.args.pid.is_empty())
    }

    /// Takes one reading of every process in scope, `secs` after start, and
    /// forgets the ones that exited.
    fn read(&mut self, secs: f64) {
        self.last_reading = secs;
        let kernel = self.probes.read();
        let present: HashSet<u32> = procfs::pids().into_iter().collect();
        let mut scope: Vec<u32> = if self.args.pid.is_empty() {
            present.iter().copied().collect()
        } else {
            self.args
                .pid
                .iter()
                .copied()
                .filter(|p| present.contains(p))
                .collect()
        };
        scope.sort_unstable();
        // Exits: gone quietly, from the table and from the kernel maps.
        let in_scope: HashSet<u32> = scope.iter().copied().collect();
        let gone: Vec<u32> = self
            .known
            .keys()
            .copied()
            .filter(|p| !in_scope.contains(p))
            .collect();
        for pid in gone {
            self.forget(pid);
        }
        for pid in kernel.keys().filter(|p| !present.contains(p)) {
            self.probes.forget(*pid);
        }
        self.ignored.retain(|p, _| present.contains(p));
        for pid in scope {
            self.read_one(pid, secs, kernel.get(&pid));
        }
    }

    fn forget(&mut self, pid: u32) {
        self.watch.forget(pid);
        self.known.remove(&pid);
        self.probes.forget(pid);
    }

    /// Adds one reading of `pid`, or forgets it if it has exited (a zombie)
    /// or its pid now names another process.
    fn read_one(&mut self, pid: u32, secs: f64, kernel: Option<&KernelView>) {
        if self.ignored.contains_key(&pid) {
            return;
        }
        let Some((state, start_time)) = procfs::state(pid) else {
            self.forget(pid);
            return;
        };
        if procfs::is_dead(state) {
            self.forget(pid);
            return;
        }
        if self
            .known
            .get(&pid)
            .is_some_and(|k| k.start_time != start_time)
        {
            self.forget(pid);
        }
        let in_kernel_maps = kernel.is_some_and(|k| k.stats.is_some());
        // /proc is read on first sight, and again for a process that fell
        // out of the kernel maps (evicted): its counters there are gone.
        let first_sight = !self.known.contains_key(&pid);
        let fell_out = self
            .known
            .get(&pid)
            .is_some_and(|k| k.in_kernel_maps && !in_kernel_maps);
        if first_sight || fell_out {
            let Some(baseline) = procfs::rss(pid) else {
                self.ignored.insert(pid, start_time);
                return;
            };
            let command = procs::comm(pid).unwrap_or_else(|| "?".to_string());
            self.known.insert(
                pid,
                Known {
                    start_time,
                    command,
                    baseline,
                    start_brk: procfs::start_brk(pid),
                    in_kernel_maps,
                },
            );
        }
        let Some(known) = self.known.get_mut(&pid) else {
            return;
        };
        known.in_kernel_maps = in_kernel_maps;
        let mut reading = Reading {
            rss: known.baseline,
            ..Reading::default()
        };
        if let Some(k) = kernel {
            if let Some(stats) = &k.stats {
                reading.rss = merge_rss(stats, &known.baseline);
                if stats.brk != 0 {
                    reading.heap_bytes = known.start_brk.map(|s| stats.brk.saturating_sub(s));
                }
            }
            reading.mapped_bytes = k.activity.mapped_bytes;
            reading.advised_away_bytes = k.activity.advised_away_bytes;
        }
        let active = kernel.is_some();
        let command = known.command.clone();
        self.watch.record(pid, &command, secs, reading, active);
    }

    /// Prints the table: redrawn in place on a terminal, appended as plain
    /// lines otherwise.
    fn show(&self, last: bool) -> std::io::Result<()> {
        let rows = self.rows();
        let lost = self.probes.lost();
        let header = Header {
            elapsed_secs: self.last_reading,
            scope: self.scope(),
            watched: rows.len(),
            lost: lost_total(&lost),
        };
        let width = if self.terminal {
            terminal_width()
        } else {
            None
        };
        let text = table::render(&header, &rows, self.args.top, width);
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Home, clear screen.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{text}")?;
        if !self.terminal || last {
            writeln!(out)?;
        }
        out.flush()?;
        Ok(())
    }
}

fn lost_total(lost: &Lost) -> u64 {
    lost.stats_insert_failed
}

/// Columns of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize; fd 1 is stdout.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0)
            .then_some(ws.ws_col as usize)
    }
}
