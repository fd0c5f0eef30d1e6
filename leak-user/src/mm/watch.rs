//! The processes `leak top` watches: one RSS series each, judged by
//! [`crate::analysis::trend`] and ranked by growth. Pure: readings come in as plain
//! values, with no kernel or `/proc` behind them.

use crate::go::gcstats::GcStats;
use crate::process::cgroup::{Cgroup, Memory as CgroupMemory};
use std::collections::BTreeMap;

#[cfg(test)]
use leak_common::RSS_SWAP;
use leak_common::{MmActivity, MmRssPending, MmStats, RSS_ANON, RSS_FILE, RSS_MEMBERS, RSS_SHMEM};

use crate::analysis::{
    series,
    trend::{self, Thresholds, Trend, Verdict},
};
use crate::process::RssCounters;

/// One look at a process's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// RSS counters in bytes, indexed like `kmem:rss_stat`'s (`RSS_*`).
    pub rss: RssCounters,
    /// Net bytes mapped by mmap/munmap/mremap since leak started watching.
    pub mapped_bytes: i64,
    /// Heap grown with `brk`: the current break minus the heap's start;
    /// `None` until the process calls `brk` while watched.
    pub heap_bytes: Option<u64>,
    /// Bytes given back with madvise since leak started watching.
    pub advised_away_bytes: u64,
}

impl Reading {
    /// Resident memory: anonymous, file-backed and shared (what `top` calls
    /// RES; swap not included).
    pub(crate) fn resident(&self) -> u64 {
        self.rss[RSS_ANON] + self.rss[RSS_FILE] + self.rss[RSS_SHMEM]
    }

    /// Swapped-out memory.
    #[cfg(test)]
    pub(crate) fn swap(&self) -> u64 {
        self.rss[RSS_SWAP]
    }
}

/// The RSS counters of a process from the kernel side's view: each counter
/// `kmem:rss_stat` has reported, and for the others (unchanged since leak
/// attached) what `/proc` said when the process was first seen.
pub(crate) fn merge_rss(stats: &MmStats, baseline: &RssCounters) -> RssCounters {
    let mut out = *baseline;
    for (m, slot) in out.iter_mut().enumerate().take(RSS_MEMBERS) {
        if stats.rss_seen & (1 << m) != 0 {
            *slot = stats.rss[m].max(0) as u64;
        }
    }
    out
}

/// Takes into `stats` each counter of a CPU's pending slot unless the map's
/// is later (of equal ticks, the pending one is taken). A slot of another mm
/// (the process has run exec since) is ignored.
pub(crate) fn take_pending_rss(stats: &mut MmStats, pending: &MmRssPending) {
    if stats.mm != pending.mm {
        return;
    }
    for m in 0..RSS_MEMBERS {
        let bit = 1 << m;
        let later = stats.rss_seen & bit == 0 || pending.stamp[m] >= stats.stamp[m];
        if pending.rss_seen & bit != 0 && later {
            stats.rss[m] = pending.rss[m];
            stats.stamp[m] = pending.stamp[m];
            stats.rss_seen |= bit;
        }
    }
}

/// A process's activity summed over CPUs.
pub(crate) fn sum_activity<'a>(per_cpu: impl IntoIterator<Item = &'a MmActivity>) -> MmActivity {
    per_cpu
        .into_iter()
        .fold(MmActivity::default(), |acc, a| add_pending(&acc, a))
}

/// `a` plus `b`: a CPU's pending sums added to what the map holds.
pub(crate) fn add_pending(a: &MmActivity, b: &MmActivity) -> MmActivity {
    MmActivity {
        mapped_bytes: a.mapped_bytes + b.mapped_bytes,
        advised_away_bytes: a.advised_away_bytes + b.advised_away_bytes,
        syscalls: a.syscalls + b.syscalls,
    }
}

/// Most points kept per series: past this, pairs of neighbouring points are
/// merged into the lower one (troughs are what the verdict reads), so a
/// day-long watch keeps bounded memory at coarser resolution.
pub(crate) const MAX_POINTS: usize = 4096;

/// One watched process.
#[derive(Clone, Debug)]
struct Watched {
    command: String,
    /// `(seconds since leak started, resident bytes)`.
    series: Vec<(f64, f64)>,
    latest: Reading,
    /// A Go process's goroutines over time: `(seconds, count)`.
    goroutines: Vec<(f64, f64)>,
    /// A Go process's heap as its GC reports it.
    go_heap: Option<GoHeap>,
}

/// A Go process's heap as its GC reports it, over time.
#[derive(Clone, Debug)]
struct GoHeap {
    latest: GcStats,
    /// The GC count at the first reading.
    first_gc: u32,
    /// `(seconds, bytes that survived the last GC)` at each reading: a
    /// staircase that steps at each GC, the troughs of the heap's sawtooth.
    after_gc: Vec<(f64, f64)>,
}

/// GCs that must run while watched before a Go process is judged on its
/// heap after GC rather than on its RSS: a line through fewer steps says
/// little.
pub(crate) const MIN_GCS: u32 = 3;

/// The line a process's verdict is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerdictFrom {
    /// Resident memory (the troughs of RSS).
    Rss,
    /// A Go process's heap after each GC (what its GC found live).
    GoHeapAfterGc,
    /// A Go process's goroutine count.
    Goroutines,
}

impl VerdictFrom {
    /// The JSON word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VerdictFrom::Rss => "rss",
            VerdictFrom::GoHeapAfterGc => "go_heap_after_gc",
            VerdictFrom::Goroutines => "goroutines",
        }
    }
}

/// A Go process's heap in a row: the GC's latest figures, the heap after
/// each GC over time and the verdict on it.
#[derive(Clone, Debug)]
pub(crate) struct GoHeapView {
    /// The GC's figures at the latest reading.
    pub latest: GcStats,
    /// GCs that ran while watched.
    pub gcs_watched: u32,
    /// `(seconds since leak started, bytes that survived the last GC)`.
    pub after_gc: Vec<(f64, f64)>,
    /// The verdict on `after_gc`.
    pub trend: Trend,
}

/// Every watched process and its series.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watch {
    procs: BTreeMap<u32, Watched>,
}

/// One row of the `leak top` table: a process, its series and the verdict.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// Process id.
    pub pid: u32,
    /// Its pid in its own pid namespace (a container's), when that is not
    /// leak's (filled in by the pipeline, which reads `/proc`).
    pub ns_pid: Option<u32>,
    /// Command name (`/proc/PID/comm`).
    pub command: String,
    /// The latest reading.
    pub latest: Reading,
    /// Resident bytes over time: `(seconds since leak started, bytes)`.
    pub series: Vec<(f64, f64)>,
    /// Last reading minus first, bytes.
    pub change_bytes: f64,
    /// The verdict, with its numbers: on `series`, or for a Go process on
    /// its heap after GC once enough GCs ran; a Go process whose goroutines
    /// keep rising is judged on them when that is worse.
    pub trend: Trend,
    /// The line `trend` is drawn from.
    pub verdict_from: VerdictFrom,
    /// The verdict on `series` alone (what races a memory limit).
    pub rss_trend: Trend,
    /// A Go process's heap as its GC reports it.
    pub go_heap: Option<GoHeapView>,
    /// A Go process's goroutine count now and the verdict on its series.
    pub goroutines: Option<(u64, Trend)>,
    /// Its memory cgroup and container, and what the kernel says of the
    /// cgroup's memory (filled in by the pipeline, which reads `/proc`).
    pub cgroup: Option<CgroupView>,
    /// The host's available memory (`MemAvailable`) at the latest reading,
    /// what a process outside any cgroup limit races.
    pub host_available: Option<u64>,
    /// For a row that adds up a group of processes (`--by container`):
    /// their pids, lowest first (`pid` is the first); empty for a process.
    pub members: Vec<u32>,
}

/// A process's memory cgroup as `leak top` shows it.
#[derive(Clone, Debug)]
pub(crate) struct CgroupView {
    /// The cgroup, its container and pod.
    pub cgroup: Cgroup,
    /// The pod's name and namespace, where the container says them.
    pub pod: Option<(String, Option<String>)>,
    /// The cgroup's memory now.
    pub memory: Option<CgroupMemory>,
    /// Processes the kernel OOM-killed in the cgroup while leak watched.
    pub oom_kills_watched: u64,
}

impl Row {
    /// Seconds until the memory this process races reaches its limit, at
    /// the rate its RSS troughs rise, for a process judged leaking or
    /// growing: its cgroup's unreclaimable memory against the cgroup's
    /// limit, or, in a cgroup with none, the host's available memory
    /// running out.
    pub(crate) fn time_to_limit(&self) -> Option<f64> {
        self.limit_ahead().map(|(secs, _)| secs)
    }

    /// [`Row::time_to_limit`] and which limit it is.
    pub(crate) fn limit_ahead(&self) -> Option<(f64, LimitKind)> {
        let rising = matches!(self.trend.verdict, Verdict::Leaking | Verdict::Growing);
        // The memory charged rises as RSS does (a Go heap grows to twice
        // what survives with GOGC=100, so not as fast as the heap after
        // GC): RSS's slope when it rises.
        let slope = if self.rss_trend.slope > 0.0 {
            self.rss_trend.slope
        } else {
            self.trend.slope
        };
        if !rising || slope <= 0.0 {
            return None;
        }
        let cgroup = self.cgroup.as_ref().and_then(|c| c.memory);
        let (room, kind) = match cgroup.and_then(|m| Some((m.limit?, m.unreclaimable))) {
            Some((limit, used)) => (limit.saturating_sub(used), LimitKind::Cgroup),
            None => (self.host_available?, LimitKind::HostAvailable),
        };
        Some((room as f64 / slope, kind))
    }
}

/// The limit a process's memory races.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitKind {
    /// Its memory cgroup's (or an ancestor's) limit.
    Cgroup,
    /// The host's available memory (`MemAvailable`), without a cgroup limit.
    HostAvailable,
}

impl LimitKind {
    /// The JSON word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitKind::Cgroup => "cgroup",
            LimitKind::HostAvailable => "host_available",
        }
    }
}

impl Row {
    /// Growth rate used for ranking, bytes per second: the trend of the
    /// troughs, the same line the verdict is drawn from.
    pub(crate) fn growth(&self) -> f64 {
        self.trend.slope
    }
}

impl Watch {
    /// An empty watch.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a reading of process `pid` taken `secs` after leak started.
    pub(crate) fn record(&mut self, pid: u32, command: &str, secs: f64, reading: Reading) {
        let w = self.procs.entry(pid).or_insert_with(|| Watched {
            command: command.to_string(),
            series: Vec::new(),
            latest: reading,
            goroutines: Vec::new(),
            go_heap: None,
        });
        w.series.push((secs, reading.resident() as f64));
        series::thin(&mut w.series, MAX_POINTS);
        w.latest = reading;
    }

    /// Adds a count of a Go process's goroutines, `secs` after leak
    /// started (a process not watched is ignored).
    pub(crate) fn record_goroutines(&mut self, pid: u32, secs: f64, count: usize) {
        if let Some(w) = self.procs.get_mut(&pid) {
            w.goroutines.push((secs, count as f64));
            series::thin(&mut w.goroutines, MAX_POINTS);
        }
    }

    /// Adds what a Go process's GC says of its heap, `secs` after leak
    /// started (a process not watched is ignored).
    pub(crate) fn record_gc(&mut self, pid: u32, secs: f64, stats: GcStats) {
        let Some(w) = self.procs.get_mut(&pid) else {
            return;
        };
        let heap = w.go_heap.get_or_insert_with(|| GoHeap {
            latest: stats,
            first_gc: stats.gc_cycles,
            after_gc: Vec::new(),
        });
        // A point per GC: between two, what survived the last is not
        // measured again, and repeating it would draw a plateau (a leak
        // whose GCs space out as its heap doubles would look levelled off).
        let new_gc = heap.after_gc.is_empty() || stats.gc_cycles != heap.latest.gc_cycles;
        heap.latest = stats;
        if new_gc {
            heap.after_gc.push((secs, stats.heap_marked as f64));
            series::thin(&mut heap.after_gc, MAX_POINTS);
        }
    }

    /// Drops a process (it exited, or its pid now names another process).
    pub(crate) fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Whether `pid` is watched.
    #[cfg(test)]
    pub(crate) fn contains(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// Whether nothing is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// One row per process: leaking first, then growing, each
    /// fastest-growing first; then steady and shrinking, biggest first (so
    /// the big quiet services a person looks for first are at the top until
    /// growth sorts them). Grouping keeps a process that grew a little over
    /// two readings (a start-up, a burst) below a confirmed leak.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .procs
            .iter()
            .map(|(&pid, w)| {
                let rss = trend::assess(&w.series, None, &Thresholds::PROCESS);
                let change_bytes = match (w.series.first(), w.series.last()) {
                    (Some(a), Some(b)) => b.1 - a.1,
                    _ => 0.0,
                };
                let goroutines = w.goroutines.last().map(|&(_, n)| {
                    let t = trend::assess(&w.goroutines, None, &Thresholds::GOROUTINES);
                    (n as u64, t)
                });
                let go_heap = w.go_heap.as_ref().map(GoHeap::view);
                let (base, from) = match &go_heap {
                    // Judged on the heap after GC once it has GCs enough
                    // to be conclusive on its own; RSS until then.
                    Some(h)
                        if h.gcs_watched >= MIN_GCS
                            && h.after_gc.len() >= Thresholds::HEAP_AFTER_GC.min_points =>
                    {
                        (
                            Trend {
                                reason: format!("Go heap after GC: {}", h.trend.reason),
                                ..h.trend.clone()
                            },
                            VerdictFrom::GoHeapAfterGc,
                        )
                    }
                    _ => (rss.clone(), VerdictFrom::Rss),
                };
                let (trend, verdict_from) = worse(base, from, goroutines.as_ref().map(|g| &g.1));
                Row {
                    pid,
                    ns_pid: None,
                    command: w.command.clone(),
                    latest: w.latest,
                    series: w.series.clone(),
                    change_bytes,
                    trend,
                    verdict_from,
                    rss_trend: rss,
                    go_heap,
                    goroutines,
                    cgroup: None,
                    host_available: None,
                    members: Vec::new(),
                }
            })
            .collect();
        rank(&mut rows);
        rows
    }
}

/// Puts rows in ranking order: leaking first, then growing, each
/// fastest-growing first; then steady and shrinking, biggest first.
pub(crate) fn rank(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let rising = severity(a.trend.verdict) < severity(Verdict::Steady);
        let within = if rising {
            b.growth()
                .total_cmp(&a.growth())
                .then(b.change_bytes.total_cmp(&a.change_bytes))
        } else {
            b.latest.resident().cmp(&a.latest.resident())
        };
        severity(a.trend.verdict)
            .cmp(&severity(b.trend.verdict))
            .then(within)
            .then(a.pid.cmp(&b.pid))
    });
}

impl GoHeap {
    fn view(&self) -> GoHeapView {
        GoHeapView {
            latest: self.latest,
            gcs_watched: self.latest.gc_cycles.wrapping_sub(self.first_gc),
            after_gc: self.after_gc.clone(),
            trend: trend::assess(&self.after_gc, None, &Thresholds::HEAP_AFTER_GC),
        }
    }
}

/// The memory verdict (drawn from `from`), or the goroutines' when they say
/// leaking or growing and the memory says less (Go rarely gives memory
/// back: a leak of goroutines can show in their count before it shows in
/// memory); the memory figures stay, the verdict and reason are the
/// goroutines'.
fn worse(memory: Trend, from: VerdictFrom, goroutines: Option<&Trend>) -> (Trend, VerdictFrom) {
    match goroutines {
        Some(g)
            if matches!(g.verdict, Verdict::Leaking | Verdict::Growing)
                && severity(g.verdict) < severity(memory.verdict) =>
        {
            let trend = Trend {
                verdict: g.verdict,
                reason: format!("goroutines: {}", g.reason),
                ..memory
            };
            (trend, VerdictFrom::Goroutines)
        }
        _ => (memory, from),
    }
}

/// Order of verdicts in the table: the ones that need a look first.
fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Leaking => 0,
        Verdict::Growing => 1,
        Verdict::Steady | Verdict::Churn => 2,
        Verdict::Shrinking => 3,
    }
}

/// How many rows carry each verdict, for a summary line.
#[cfg(test)]
pub(crate) fn verdict_counts(rows: &[Row]) -> Vec<(Verdict, usize)> {
    let mut out: Vec<(Verdict, usize)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(v, _)| *v == r.trend.verdict) {
            Some((_, n)) => *n += 1,
            None => out.push((r.trend.verdict, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    fn reading(resident: f64) -> Reading {
        let mut rss = [0u64; RSS_MEMBERS];
        rss[RSS_ANON] = resident as u64;
        Reading {
            rss,
            ..Reading::default()
        }
    }

    /// A CPU's pending counter replaces the map's unless read earlier, and
    /// never for another mm.
    #[test]
    fn pending_counters_are_taken_when_later() {
        let mut stats = MmStats {
            mm: 0xa000,
            rss_seen: 1 << RSS_ANON,
            ..MmStats::default()
        };
        stats.rss[RSS_ANON] = 100;
        stats.stamp[RSS_ANON] = 50;
        let mut pending = MmRssPending {
            mm: 0xa000,
            tgid: 7,
            rss_seen: (1 << RSS_ANON) | (1 << RSS_FILE),
            ..MmRssPending::default()
        };
        pending.rss[RSS_ANON] = 90;
        pending.stamp[RSS_ANON] = 40;
        pending.rss[RSS_FILE] = 30;
        pending.stamp[RSS_FILE] = 45;
        take_pending_rss(&mut stats, &pending);
        assert_eq!(
            stats.rss[RSS_ANON], 100,
            "an older value replaced a later one"
        );
        assert_eq!(stats.rss[RSS_FILE], 30, "a counter the map lacked");
        assert_eq!(stats.rss_seen, (1 << RSS_ANON) | (1 << RSS_FILE));

        pending.rss[RSS_ANON] = 120;
        pending.stamp[RSS_ANON] = 60;
        take_pending_rss(&mut stats, &pending);
        assert_eq!(stats.rss[RSS_ANON], 120);
        assert_eq!(stats.stamp[RSS_ANON], 60);

        // Read in the same tick: the pending value is taken.
        pending.rss[RSS_ANON] = 125;
        take_pending_rss(&mut stats, &pending);
        assert_eq!(stats.rss[RSS_ANON], 125);

        // After exec: the old mm's values are not the process's any more.
        pending.mm = 0xb000;
        pending.rss[RSS_ANON] = 999;
        pending.stamp[RSS_ANON] = 70;
        take_pending_rss(&mut stats, &pending);
        assert_eq!(stats.rss[RSS_ANON], 125);
    }

    /// Records `f(t)` every 2 s for a minute.
    fn feed(w: &mut Watch, pid: u32, name: &str, f: impl Fn(f64) -> f64) {
        for i in 0..=30 {
            let t = i as f64 * 2.0;
            w.record(pid, name, t, reading(f(t)));
        }
    }

    #[test]
    fn merge_takes_reported_counters_and_keeps_the_rest() {
        let mut stats = MmStats::default();
        stats.rss[RSS_ANON] = 5 << 20;
        stats.rss_seen = 1 << RSS_ANON;
        let mut baseline = [0u64; RSS_MEMBERS];
        baseline[RSS_ANON] = 1 << 20;
        baseline[RSS_FILE] = 3 << 20;
        let merged = merge_rss(&stats, &baseline);
        assert_eq!(merged[RSS_ANON], 5 << 20);
        assert_eq!(merged[RSS_FILE], 3 << 20);
        // A counter reported as 0 is 0, not the baseline.
        stats.rss_seen |= 1 << RSS_FILE;
        assert_eq!(merge_rss(&stats, &baseline)[RSS_FILE], 0);
    }

    #[test]
    fn activity_sums_over_cpus() {
        let cpus = [
            MmActivity {
                mapped_bytes: 8192,
                advised_away_bytes: 4096,
                syscalls: 2,
            },
            MmActivity {
                mapped_bytes: -4096,
                advised_away_bytes: 0,
                syscalls: 1,
            },
        ];
        let sum = sum_activity(&cpus);
        assert_eq!(sum.mapped_bytes, 4096);
        assert_eq!(sum.syscalls, 3);
    }

    #[test]
    fn leakers_rank_above_a_sawtooth_and_a_flat_process() {
        let mut w = Watch::new();
        // A GC'd service whose live set is constant: big sawtooth, flat troughs.
        feed(&mut w, 10, "steady", |t| {
            40.0 * MIB + 20.0 * MIB * ((t / 6.0).fract())
        });
        feed(&mut w, 20, "cleak", |t| 2.0 * MIB + MIB * t);
        feed(&mut w, 30, "seed", |t| {
            30.0 * MIB + 0.5 * MIB * t + 4.0 * MIB * ((t / 8.0).fract())
        });
        feed(&mut w, 40, "idle", |_| 9.0 * MIB);
        // Grew 2 MiB over its only two readings: fast, but unproven.
        w.record(50, "young", 56.0, reading(MIB));
        w.record(50, "young", 58.0, reading(3.0 * MIB));
        let rows = w.rows();
        let order: Vec<u32> = rows.iter().map(|r| r.pid).collect();
        assert_eq!(&order[..3], &[20, 30, 50], "{order:?}");
        let verdict = |pid| rows.iter().find(|r| r.pid == pid).unwrap().trend.verdict;
        assert_eq!(verdict(20), Verdict::Leaking);
        assert_eq!(verdict(30), Verdict::Leaking);
        assert_eq!(verdict(10), Verdict::Steady);
        assert_eq!(verdict(40), Verdict::Steady);
        assert!((rows[0].change_bytes - 60.0 * MIB).abs() < 1.0);
        assert_eq!(
            verdict_counts(&rows),
            vec![
                (Verdict::Leaking, 2),
                (Verdict::Growing, 1),
                (Verdict::Steady, 2)
            ]
        );
    }

    #[test]
    fn forgotten_processes_leave_no_row_and_quiet_big_ones_come_first() {
        let mut w = Watch::new();
        w.record(1, "small", 0.0, reading(MIB));
        w.record(2, "big", 0.0, reading(300.0 * MIB));
        w.record(3, "gone", 0.0, reading(MIB));
        w.forget(3);
        assert!(!w.contains(3));
        // Every process has a row, whether its memory moved or not: the
        // biggest first while none grows.
        let order: Vec<u32> = w.rows().iter().map(|r| r.pid).collect();
        assert_eq!(order, vec![2, 1]);
    }

    #[test]
    fn long_series_are_halved_keeping_troughs() {
        let mut w = Watch::new();
        // A sawtooth with a 4-reading period, rising slowly.
        let f = |i: usize| (i / 4) as f64 * 1024.0 + [0.0, 5.0, 9.0, 3.0][i % 4] * MIB;
        for i in 0..=MAX_POINTS {
            w.record(1, "long", i as f64, reading(f(i)));
        }
        let rows = w.rows();
        let series = &rows[0].series;
        assert_eq!(series.len(), MAX_POINTS / 2 + 1);
        // Pairs (0, 5 MiB) and (9 MiB, 3 MiB): the lower of each survives.
        assert_eq!(series[0], (0.0, 0.0));
        assert_eq!(series[1], (3.0, 3.0 * MIB));
        assert!(series.windows(2).all(|p| p[0].0 < p[1].0));
    }

    /// Go's GC figures: `marked` survived the last of `gcs` GCs.
    fn gc(marked: f64, gcs: u32) -> GcStats {
        GcStats {
            heap_marked: marked as u64,
            heap_live: marked as u64 * 2,
            gc_cycles: gcs,
            memory_limit: None,
            gc_percent: Some(100),
        }
    }

    /// A Go service whose RSS sits on a plateau (Go keeps what it got)
    /// while what survives each GC climbs: judged leaking, from its heap
    /// after GC, and said so. Its twin, whose heap after GC holds still,
    /// is steady.
    #[test]
    fn a_go_process_is_judged_on_its_heap_after_gc() {
        let mut w = Watch::new();
        for i in 0..=30u32 {
            let t = f64::from(i) * 2.0;
            w.record(1, "leaky", t, reading(200.0 * MIB));
            // A GC every 10 s; 1 MiB more survives each.
            w.record_gc(1, t, gc((50 + i / 5) as f64 * MIB, 10 + i / 5));
            w.record(2, "steady", t, reading(190.0 * MIB));
            w.record_gc(2, t, gc(50.0 * MIB, 10 + i / 5));
        }
        let rows = w.rows();
        let leaky = rows.iter().find(|r| r.pid == 1).unwrap();
        assert_eq!(leaky.verdict_from, VerdictFrom::GoHeapAfterGc);
        assert_eq!(
            leaky.trend.verdict,
            Verdict::Leaking,
            "{}",
            leaky.trend.reason
        );
        assert!(leaky.trend.reason.starts_with("Go heap after GC: "));
        assert_eq!(leaky.rss_trend.verdict, Verdict::Steady);
        let h = leaky.go_heap.as_ref().unwrap();
        assert_eq!(h.gcs_watched, 6);
        assert_eq!(h.latest.heap_marked, 56 << 20);
        let steady = rows.iter().find(|r| r.pid == 2).unwrap();
        assert_eq!(steady.verdict_from, VerdictFrom::GoHeapAfterGc);
        assert_eq!(steady.trend.verdict, Verdict::Steady);
        assert_eq!(rows[0].pid, 1, "the leak ranks first");
    }

    /// A leaking Go heap whose GCs space out as it doubles (GOGC=100): read
    /// every second, its heap after GC moves only at each GC. Judged on a
    /// point per GC it is leaking; the readings between GCs repeating the
    /// last value would have made it look levelled off.
    #[test]
    fn a_heap_whose_gcs_space_out_is_still_leaking() {
        let mut w = Watch::new();
        // GCs at 0, 4, 10, 18, 28, 40, 54 s; 2 MiB more survives each.
        let gc_times = [0.0, 4.0, 10.0, 18.0, 28.0, 40.0, 54.0];
        for t in 0..=70u32 {
            let t = f64::from(t);
            let done = gc_times.iter().filter(|&&g| g <= t).count() as u32;
            w.record(1, "seed", t, reading(200.0 * MIB));
            w.record_gc(
                1,
                t,
                gc(40.0 * MIB + f64::from(done) * 2.0 * MIB, 10 + done),
            );
        }
        let row = &w.rows()[0];
        let h = row.go_heap.as_ref().unwrap();
        assert_eq!(h.after_gc.len(), gc_times.len());
        assert_eq!(row.verdict_from, VerdictFrom::GoHeapAfterGc);
        assert_eq!(row.trend.verdict, Verdict::Leaking, "{}", row.trend.reason);
    }

    /// Too few GCs while watched to draw a line through: RSS decides.
    #[test]
    fn too_few_gcs_leave_the_verdict_to_rss() {
        let mut w = Watch::new();
        feed(&mut w, 1, "go", |t| 10.0 * MIB + t * MIB);
        for i in 0..=30u32 {
            let gcs = 4 + (i * (MIN_GCS - 1)) / 30;
            w.record_gc(1, f64::from(i) * 2.0, gc(8.0 * MIB, gcs));
        }
        let row = &w.rows()[0];
        assert_eq!(row.go_heap.as_ref().unwrap().gcs_watched, MIN_GCS - 1);
        assert_eq!(row.verdict_from, VerdictFrom::Rss);
        assert_eq!(row.trend.verdict, Verdict::Leaking);
    }

    /// A leak races its cgroup's limit when it has one (the room left
    /// being what the kernel cannot reclaim), else the host's available
    /// memory; a steady process races nothing.
    #[test]
    fn time_to_limit_is_the_room_left_over_the_rss_slope() {
        use crate::process::cgroup::{Cgroup, Memory};
        let mut w = Watch::new();
        feed(&mut w, 1, "leaker", |t| 10.0 * MIB + t * MIB);
        feed(&mut w, 2, "steady", |_| 10.0 * MIB);
        let mut rows = w.rows();
        for r in &mut rows {
            r.host_available = Some((600.0 * MIB) as u64);
        }
        let (leaker, steady) = (&mut rows[0].clone(), &rows[1]);
        assert_eq!(steady.limit_ahead(), None);
        let (secs, kind) = leaker.limit_ahead().unwrap();
        assert_eq!(kind, LimitKind::HostAvailable);
        assert!((secs - 600.0).abs() < 1.0, "{secs}");
        leaker.cgroup = Some(CgroupView {
            cgroup: Cgroup {
                path: "/leak".into(),
                v1: true,
                container: None,
                pod_uid: None,
            },
            pod: None,
            memory: Some(Memory {
                limit: Some((100.0 * MIB) as u64),
                usage: (90.0 * MIB) as u64,
                unreclaimable: (70.0 * MIB) as u64,
                oom_kills: 0,
            }),
            oom_kills_watched: 0,
        });
        let (secs, kind) = leaker.limit_ahead().unwrap();
        assert_eq!(kind, LimitKind::Cgroup);
        assert!((secs - 30.0).abs() < 0.5, "{secs}");
    }

    #[test]
    fn resident_is_anon_file_and_shmem() {
        let mut r = Reading::default();
        r.rss[RSS_ANON] = 1;
        r.rss[RSS_FILE] = 2;
        r.rss[RSS_SHMEM] = 4;
        r.rss[RSS_SWAP] = 8;
        assert_eq!(r.resident(), 7);
        assert_eq!(r.swap(), 8);
    }
}
