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

use super::top_go::GoReaders;
use crate::{
    mm::{
        group, json,
        kernel::{KernelView, Lost, MmProbes},
        table::{self, Header},
        watch::{merge_rss, CgroupView, Reading, Row, Watch},
    },
    outputs::{self, Outputs},
    probes::{census, mm::Programs},
    process::{self, cgroup, FileId, RssCounters},
    report::chart::{ChartLine, LineKind},
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
    /// What a row is.
    pub by: By,
    /// Only processes in this cgroup or container.
    pub filter: Filter,
    /// Files to write at the end.
    pub outputs: Outputs,
    /// The working programs, or empty ones for the benchmark's floor.
    pub programs: Programs,
}

/// What a row of the table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum By {
    /// A process.
    Process,
    /// A container's processes added up (a cgroup's, outside containers).
    Container,
}

/// Which processes to watch, by cgroup or container.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    /// Only processes in this cgroup (no trailing `/`) or below it.
    pub cgroup: Option<String>,
    /// Only processes of a container whose id starts with this.
    pub container: Option<String>,
}

impl Filter {
    /// Whether a process in `view` (`None`: its cgroup is unreadable) is
    /// watched.
    pub(crate) fn admits(&self, view: Option<&CgroupView>) -> bool {
        let cgroup = view.map(|v| &v.cgroup);
        let in_cgroup = self.cgroup.as_ref().is_none_or(|want| {
            cgroup.is_some_and(|c| {
                want.is_empty()
                    || c.path == *want
                    || c.path
                        .strip_prefix(want.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
        });
        let in_container = self.container.as_ref().is_none_or(|want| {
            cgroup
                .and_then(|c| c.container.as_ref())
                .is_some_and(|c| c.id.starts_with(want.as_str()))
        });
        in_cgroup && in_container
    }
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
    big_buffers_mapped();
    session::block_on(top(options))
}

/// Makes the C library's allocator give every buffer of 1 MiB and more its
/// own mapping, returned to the kernel when freed. `leak top` reads each Go
/// executable that starts whole (megabytes, for as long as one process
/// runs it): under the allocator's default, whose threshold rises to the
/// largest buffer freed so far, later ones come from the heap, and a burst
/// of Go processes leaves leak's RSS at the burst's peak for good, though
/// nothing is held.
fn big_buffers_mapped() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt changes a tunable; it has no memory preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
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
    /// Its pid in its own pid namespace, when that is not leak's.
    ns_pid: Option<u32>,
    /// The executable it ran at first sight: another one means it called
    /// exec, and is watched as a new process from then on.
    exe: Option<FileId>,
}

/// What leak has read of one memory cgroup.
struct CgroupTally {
    cgroup: cgroup::Cgroup,
    /// Its OOM kill count when first read.
    first_oom_kills: u64,
    /// Its memory at the latest reading.
    memory: Option<cgroup::Memory>,
}

struct Top {
    args: Options,
    /// The host's `MemAvailable` at the latest reading.
    host_available: Option<u64>,
    /// The memory cgroups of watched processes, by path (kept after their
    /// processes exit, so an OOM kill is still told).
    cgroups: HashMap<String, CgroupTally>,
    probes: MmProbes,
    watch: Watch,
    known: HashMap<u32, Known>,
    /// Kernel threads and other processes without memory, by start time.
    ignored: HashMap<u32, u64>,
    started: Instant,
    last_reading: f64,
    terminal: bool,
    /// Go processes' runtimes: their GC's figures and goroutine counts.
    go: GoReaders,
}

async fn top(args: Options) -> Result<()> {
    let probes = MmProbes::attach(args.programs)?;
    let mut top = Top {
        probes,
        cgroups: HashMap::new(),
        host_available: None,
        watch: Watch::new(),
        known: HashMap::new(),
        ignored: HashMap::new(),
        started: Instant::now(),
        last_reading: 0.0,
        terminal: std::io::stdout().is_terminal(),
        go: GoReaders::default(),
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
    census::log(&top.probes.census());
    // Detach before writing files.
    drop(top.probes);
    if let Some(path) = &top.args.outputs.json {
        let meta = json::Meta {
            duration_secs: top.last_reading,
            interval_secs: top.args.interval,
            scope: scope(&top.args),
            rss_events_unattributed: lost.rss_events_unattributed,
            stats_insert_failed: lost.stats_insert_failed,
        };
        outputs::write(path, |w| json::write(&meta, &rows, w))?;
    }
    let shown = rows.len().min(top.args.top);
    let lines = chart_lines(&rows[..shown]);
    let title = format!(
        "leak top: resident memory, top {shown} of {}",
        scope(&top.args)
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
        oom_kills_watched: 0,
    })
}

/// The chart's lines for `rows`: each process's RSS; beside it, in its
/// colour, a Go process's heap after GC; and each memory limit they race,
/// once.
fn chart_lines(rows: &[Row]) -> Vec<ChartLine> {
    let mut lines = Vec::new();
    let mut limits: Vec<(u64, String)> = Vec::new();
    for r in rows {
        let who = match r.members.len() {
            0 => format!("{} (pid {})", r.command, r.pid),
            n => format!("{} ({n} processes)", r.command),
        };
        lines.push(ChartLine {
            label: format!("{who}: {}", r.trend.verdict),
            points: r.series.clone(),
            kind: LineKind::Own,
        });
        if let Some(h) = &r.go_heap {
            lines.push(ChartLine {
                label: format!("{} (pid {}): Go heap after GC", r.command, r.pid),
                points: h.after_gc.clone(),
                kind: LineKind::Beside,
            });
        }
        let limit = r
            .cgroup
            .as_ref()
            .and_then(|c| Some((c.memory?.limit?, &c.cgroup.path)));
        if let Some((limit, path)) = limit {
            if !limits.iter().any(|(l, _)| *l == limit) {
                limits.push((limit, path.clone()));
            }
        }
    }
    let end = rows
        .iter()
        .filter_map(|r| r.series.last().map(|p| p.0))
        .fold(0.0, f64::max);
    for (limit, path) in limits {
        lines.push(ChartLine {
            label: format!("memory limit of {path}"),
            points: vec![(0.0, limit as f64), (end, limit as f64)],
            kind: LineKind::Limit,
        });
    }
    lines
}

/// One reading of a process: the kernel side's counters where it has them,
/// over what `/proc` said at first sight.
fn reading_of(known: &Known, kernel: Option<&KernelView>) -> Reading {
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
    reading
}

/// "every process", "pid 1, 2", with the filter: "every process in
/// cgroup /system.slice", "… of container 3f2a9c".
fn scope(options: &Options) -> String {
    let mut out = if options.pids.is_empty() {
        "every process".to_string()
    } else {
        let list: Vec<String> = options.pids.iter().map(u32::to_string).collect();
        format!("pid {}", list.join(", "))
    };
    if let Some(path) = &options.filter.cgroup {
        out += &format!(" in cgroup {}", if path.is_empty() { "/" } else { path });
    }
    if let Some(id) = &options.filter.container {
        out += &format!(" of container {id}");
    }
    if options.by == By::Container {
        out += ", by container";
    }
    out
}

impl CgroupTally {
    fn oom_kills_watched(&self) -> u64 {
        self.memory
            .map_or(0, |m| m.oom_kills.saturating_sub(self.first_oom_kills))
    }
}

impl Top {
    fn scope(&self) -> String {
        scope(&self.args)
    }

    /// Rows in ranking order: every process watched, with its cgroup's
    /// memory at the latest reading.
    fn rows(&self) -> Vec<Row> {
        let mut rows = self.watch.rows();
        for row in &mut rows {
            row.ns_pid = self.known.get(&row.pid).and_then(|k| k.ns_pid);
            row.host_available = self.host_available;
            let Some(mut view) = self.known.get(&row.pid).and_then(|k| k.cgroup.clone()) else {
                continue;
            };
            if let Some(t) = self.cgroups.get(&view.cgroup.path) {
                view.memory = t.memory;
                view.oom_kills_watched = t.oom_kills_watched();
            }
            row.cgroup = Some(view);
        }
        match self.args.by {
            By::Process => rows,
            By::Container => group::by_container(rows),
        }
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
        self.probes.sweep_exited();
        self.ignored.retain(|p, _| present.contains(p));
        for pid in scope {
            self.read_one(pid, secs, kernel.get(&pid));
        }
        self.read_cgroups();
        self.host_available = process::mem_available();
    }

    /// Reads the memory of every cgroup a watched process was seen in,
    /// each once: a cgroup whose processes are gone (OOM-killed) is still
    /// read, so its kill count is told.
    fn read_cgroups(&mut self) {
        for view in self.known.values().filter_map(|k| k.cgroup.as_ref()) {
            let c = &view.cgroup;
            if !self.cgroups.contains_key(&c.path) {
                let memory = c.memory();
                let tally = CgroupTally {
                    cgroup: c.clone(),
                    first_oom_kills: memory.map_or(0, |m| m.oom_kills),
                    memory: None,
                };
                self.cgroups.insert(c.path.clone(), tally);
            }
        }
        let mut removed = HashSet::new();
        for (path, tally) in &mut self.cgroups {
            // A cgroup removed since keeps its last figures.
            match tally.cgroup.memory() {
                Some(memory) => tally.memory = Some(memory),
                None => {
                    removed.insert(path.clone());
                }
            }
        }
        // Forgotten once it is removed, unless a watched process is still
        // in it or it has an OOM kill to tell: containers come and go, and
        // a long watch keeps no state for every one it saw.
        let in_use: HashSet<&str> = self
            .known
            .values()
            .filter_map(|k| Some(k.cgroup.as_ref()?.cgroup.path.as_str()))
            .collect();
        self.cgroups.retain(|path, t| {
            !removed.contains(path) || in_use.contains(path.as_str()) || t.oom_kills_watched() > 0
        });
    }

    /// The cgroups where the kernel OOM-killed a process while watched,
    /// with how many, by path.
    fn oom_kills(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .cgroups
            .iter()
            .map(|(path, t)| (path.clone(), t.oom_kills_watched()))
            .filter(|&(_, n)| n > 0)
            .collect();
        out.sort();
        out
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
        let exe = exe_of(pid);
        if self
            .known
            .get(&pid)
            .is_some_and(|k| k.start_time != start_time || (exe.is_some() && k.exe != exe))
        {
            self.forget(pid);
        }
        let in_kernel_maps = kernel.is_some_and(|k| k.stats.is_some());
        if !self.look_at(pid, start_time, in_kernel_maps) {
            return;
        }
        let Some(known) = self.known.get_mut(&pid) else {
            return;
        };
        known.in_kernel_maps = in_kernel_maps;
        let reading = reading_of(known, kernel);
        let command = known.command.clone();
        self.watch.record(pid, &command, secs, reading);
        let interval = Duration::from_secs_f64(self.args.interval);
        let go = self.go.read(pid, start_time, interval);
        if let Some(stats) = go.gc {
            self.watch.record_gc(pid, secs, stats);
        }
        if let Some(n) = go.goroutines {
            self.watch.record_goroutines(pid, secs, n);
        }
    }

    /// Reads `/proc` for `pid` on first sight, and again for a process that
    /// fell out of the kernel maps (evicted: its counters there are gone).
    /// False for a process not watched (no memory of its own, or outside
    /// the filter): it is ignored from then on.
    fn look_at(&mut self, pid: u32, start_time: u64, in_kernel_maps: bool) -> bool {
        let first_sight = !self.known.contains_key(&pid);
        let fell_out = self
            .known
            .get(&pid)
            .is_some_and(|k| k.in_kernel_maps && !in_kernel_maps);
        if !first_sight && !fell_out {
            return true;
        }
        let cgroup = cgroup_view(pid);
        let Some(baseline) = process::rss(pid).filter(|_| self.args.filter.admits(cgroup.as_ref()))
        else {
            self.ignored.insert(pid, start_time);
            return false;
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
                cgroup,
                ns_pid: process::ns_pid(pid),
                exe: exe_of(pid),
            },
        );
        true
    }

    /// Prints the table: redrawn in place on a terminal, appended as plain
    /// lines otherwise.
    fn show(&self, last: bool) -> std::io::Result<()> {
        let rows = self.rows();
        let lost = self.probes.lost();
        let header = Header {
            elapsed_secs: self.last_reading,
            scope: self.scope(),
            grouped: self.args.by == By::Container,
            oom_kills: self.oom_kills(),
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

/// The executable process `pid` runs.
fn exe_of(pid: u32) -> Option<FileId> {
    FileId::of(std::path::Path::new(&format!("/proc/{pid}/exe"))).ok()
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
