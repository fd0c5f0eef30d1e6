//! The `leak top` pipeline: which process is leaking? Resident memory of
//! every process (or of chosen ones) over time, from the `rss_stat` and
//! memory syscall tracepoints, with a verdict per process, as a table
//! refreshed in place, a JSON document and an SVG chart.

use std::{
    collections::{HashMap, HashSet},
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use crate::error::{refuse, Context as _, Result};

use super::top_go::GoroutineCounts;
use crate::{
    mm::{
        json,
        kernel::{KernelView, Lost, MmProbes},
        table::{self, Header},
        watch::{merge_rss, CgroupView, Reading, Row, Watch},
    },
    outputs::{self, Outputs},
    probes::mm::Programs,
    process::{self, cgroup, RssCounters},
    report::chart::ChartLine,
    session::{self, Pipeline, Stop, Timing},
};

/// What `leak top` was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Seconds between readings.
    pub interval: f64,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Rows shown (and lines charted).
    pub top: usize,
    /// Only these processes (all if empty).
    pub pids: Vec<u32>,
    /// Files to write at the end.
    pub outputs: Outputs,
    /// The working programs, or empty ones for the benchmark's floor.
    pub programs: Programs,
}

/// Checks the processes asked for, then watches until told to stop and
/// writes every requested output.
pub(crate) fn run(options: Options) -> Result<()> {
    for &pid in &options.pids {
        if !process::alive(pid) {
            refuse!("no process with pid {pid}");
        }
        if process::rss(pid).is_none() {
            refuse!("pid {pid} is a kernel thread: it has no memory of its own to watch");
        }
    }
    session::block_on(top(options))
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
    /// Its memory cgroup, container and pod (read at first sight).
    cgroup: Option<CgroupView>,
}

struct Top {
    args: Options,
    probes: MmProbes,
    watch: Watch,
    known: HashMap<u32, Known>,
    /// Kernel threads and other processes without memory, by start time.
    ignored: HashMap<u32, u64>,
    started: Instant,
    last_reading: f64,
    terminal: bool,
    /// Go processes' goroutine counts.
    go: GoroutineCounts,
}

async fn top(args: Options) -> Result<()> {
    let probes = MmProbes::attach(args.programs)?;
    let mut top = Top {
        probes,
        watch: Watch::new(),
        known: HashMap::new(),
        ignored: HashMap::new(),
        started: Instant::now(),
        last_reading: 0.0,
        terminal: std::io::stdout().is_terminal(),
        go: GoroutineCounts::default(),
        args,
    };
    // The first reading, from /proc: a point at 0 s for every process.
    top.read(0.0);
    eprintln!("leak: watching {}; Ctrl-C to stop", top.scope());
    let timing = Timing {
        report_every: Duration::from_secs_f64(top.args.interval),
        poll_every: None,
        duration: top.args.duration,
    };
    let stop = session::run(&mut top, None, timing).await?;
    let now = top.started.elapsed().as_secs_f64();
    if now - top.last_reading > 0.1 && stop != Stop::AllExited {
        top.read(now);
    }
    if stop == Stop::AllExited {
        eprintln!("leak: every watched process has exited");
    }
    if stop != Stop::ReaderGone {
        top.show(true).context(|| "cannot write the table".into())?;
    }
    let rows = top.rows();
    let lost = top.probes.lost();
    // Detach before writing files.
    drop(top.probes);
    if let Some(path) = &top.args.outputs.json {
        let meta = json::Meta {
            duration_secs: top.last_reading,
            interval_secs: top.args.interval,
            scope: scope(&top.args.pids),
            rss_events_unattributed: lost.rss_events_unattributed,
            stats_insert_failed: lost.stats_insert_failed,
        };
        outputs::write(path, |w| json::write(&meta, &rows, w))?;
    }
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
        scope(&top.args.pids)
    );
    top.args
        .outputs
        .write_chart(&title, "resident memory", &lines)
}

impl Pipeline for Top {
    /// One reading of every process in scope, then the table.
    fn report(&mut self) -> Result<Option<Stop>> {
        let now = self.started.elapsed().as_secs_f64();
        self.read(now);
        if !self.args.pids.is_empty() && self.watch.is_empty() {
            return Ok(Some(Stop::AllExited));
        }
        match self.show(false) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(Stop::ReaderGone)),
            Err(e) => Err(e).context(|| "cannot write the table".into()),
        }
    }
}

/// Process `pid`'s memory cgroup, and for a Kubernetes pod's container its
/// pod name (the container's `HOSTNAME`, which Kubernetes sets to it) and
/// namespace (its service account's), read without a runtime client.
fn cgroup_view(pid: u32) -> Option<CgroupView> {
    let cgroup = cgroup::of(pid)?;
    let pod = cgroup.pod_uid.as_ref().and_then(|_| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let name = environ
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(b"HOSTNAME="))
            .map(|v| String::from_utf8_lossy(v).into_owned())?;
        let namespace = std::fs::read_to_string(format!(
            "/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        ))
        .ok()
        .map(|n| n.trim().to_string());
        Some((name, namespace))
    });
    Some(CgroupView {
        cgroup,
        pod,
        memory: None,
    })
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
        scope(&self.args.pids)
    }

    /// Rows in ranking order: every process watched, with its cgroup's
    /// memory now (each cgroup's files read once).
    fn rows(&self) -> Vec<Row> {
        let mut read: HashMap<String, Option<cgroup::Memory>> = HashMap::new();
        let mut rows = self.watch.rows();
        for row in &mut rows {
            let Some(mut view) = self.known.get(&row.pid).and_then(|k| k.cgroup.clone()) else {
                continue;
            };
            view.memory = *read
                .entry(view.cgroup.path.clone())
                .or_insert_with(|| view.cgroup.memory());
            row.cgroup = Some(view);
        }
        rows
    }

    /// Takes one reading of every process in scope, `secs` after start, and
    /// forgets the ones that exited.
    fn read(&mut self, secs: f64) {
        self.last_reading = secs;
        let kernel = self.probes.read();
        // Every process but leak itself.
        let me = std::process::id();
        let present: HashSet<u32> = process::pids().into_iter().filter(|&p| p != me).collect();
        let mut scope: Vec<u32> = if self.args.pids.is_empty() {
            present.iter().copied().collect()
        } else {
            self.args
                .pids
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
        self.go.forget(pid);
        self.known.remove(&pid);
        self.probes.forget(pid);
    }

    /// Adds one reading of `pid`, or forgets it if it has exited (a zombie)
    /// or its pid now names another process.
    fn read_one(&mut self, pid: u32, secs: f64, kernel: Option<&KernelView>) {
        if self.ignored.contains_key(&pid) {
            return;
        }
        let Some((state, start_time)) = process::state(pid) else {
            self.forget(pid);
            return;
        };
        if process::is_dead(state) {
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
            let Some(baseline) = process::rss(pid) else {
                self.ignored.insert(pid, start_time);
                return;
            };
            let command = process::comm(pid).unwrap_or_else(|| "?".to_string());
            self.known.insert(
                pid,
                Known {
                    start_time,
                    command,
                    baseline,
                    start_brk: process::start_brk(pid),
                    in_kernel_maps,
                    cgroup: cgroup_view(pid),
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
        let command = known.command.clone();
        self.watch.record(pid, &command, secs, reading);
        let interval = Duration::from_secs_f64(self.args.interval);
        if let Some(n) = self.go.count(pid, start_time, interval) {
            self.watch.record_goroutines(pid, secs, n);
        }
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
