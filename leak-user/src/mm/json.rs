//! `leak top --json`: every watched process's RSS series and verdict as one
//! document, in the table's order (leaking first, then by growth). Schema:
//!
//! ```text
//! {
//!   "duration_secs": number,         // time watched
//!   "interval_secs": number,         // time between readings
//!   "scope": string,                 // "every process" or "pid 1, 2"
//!   "processes": [                   // leaking first, then by growth
//!     {
//!       "pid": integer,              // --by container: its lowest pid
//!       "pids": [integer],           // --by container only: its processes
//!       "ns_pid": integer | null,    // pid in its own pid namespace (a container's)
//!       "command": string,           // /proc/PID/comm
//!       "verdict": string,           // leaking | growing | steady | shrinking
//!       "verdict_from": string,      // rss | go_heap_after_gc | goroutines
//!       "reason": string,            // why, in a few words
//!       "rss_bytes": integer,        // latest resident memory (anon+file+shmem)
//!       "change_bytes": integer,     // last reading minus first
//!       "growth_bytes_per_sec": number,  // slope of the troughs
//!       "trough_r2": number,         // how well a line fits the troughs
//!       "recent_growth_bytes_per_sec": number,  // troughs, last third
//!       "memory": {                  // latest reading, bytes
//!         "anon": integer, "file": integer, "shmem": integer, "swap": integer,
//!         "mapped": integer,         // net mmap−munmap±mremap while watched
//!         "brk_heap": integer | null,  // break minus heap start, once brk seen
//!         "advised_away": integer    // madvise(DONTNEED/FREE/REMOVE) while watched
//!       },
//!       "goroutines": integer | null,  // a Go process's goroutines now
//!       "go": {                      // a Go process whose GC leak reads, else null
//!         "heap_after_gc_bytes": integer,  // what survived the last GC
//!         "heap_in_use_bytes": integer,    // what the GC counts live now
//!         "gc_cycles": integer,            // GCs since the program started
//!         "gcs_watched": integer,          // of those, while watched
//!         "gogc": integer | null,          // GOGC (null: off)
//!         "memory_limit_bytes": integer | null,  // GOMEMLIMIT, if set
//!         "goroutines": integer | null,
//!         "heap_after_gc_growth_bytes_per_sec": number,
//!         "heap_after_gc_series": [[number, integer]]
//!       } | null,
//!       "cgroup": {…} | null,        // the memory cgroup: see the README
//!       "time_to_limit_secs": number | null,  // leaking/growing: until the limit
//!       "time_to_limit_of": "cgroup" | "host_available" | null,
//!       "series": [[number, integer]]  // [seconds since start, RSS bytes]
//!     }
//!   ],
//!   "lost": {                        // kernel side, nothing silent
//!     "rss_events_unattributed": integer,  // another mm, owner unknown
//!     "stats_insert_failed": integer       // per-process maps full
//!   }
//! }
//! ```

use std::io::{self, Write};

use leak_common::{RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP};
use serde::Serialize;

use super::watch::{CgroupView, GoHeapView, Row};

/// Run-wide facts for the document.
#[derive(Clone, Debug, Default)]
pub(crate) struct Meta {
    /// Time watched, seconds.
    pub duration_secs: f64,
    /// Time between readings, seconds.
    pub interval_secs: f64,
    /// What was watched.
    pub scope: String,
    /// rss_stat events for an mm whose owner was unknown.
    pub rss_events_unattributed: u64,
    /// Updates lost because the per-process maps were full.
    pub stats_insert_failed: u64,
}

#[derive(Serialize)]
struct Document<'a> {
    duration_secs: f64,
    interval_secs: f64,
    scope: &'a str,
    processes: Vec<Process<'a>>,
    lost: Lost,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    /// A container's row: its processes.
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    pids: &'a [u32],
    /// Its pid in its own pid namespace, when that is not leak's.
    ns_pid: Option<u32>,
    command: &'a str,
    verdict: &'static str,
    verdict_from: &'static str,
    reason: &'a str,
    rss_bytes: u64,
    change_bytes: i64,
    growth_bytes_per_sec: f64,
    trough_r2: f64,
    recent_growth_bytes_per_sec: f64,
    memory: Memory,
    /// A Go process's goroutines now (null for other programs).
    goroutines: Option<u64>,
    go: Option<GoJson>,
    cgroup: Option<CgroupJson<'a>>,
    /// Seconds until the cgroup's limit at the troughs' rate (leaking or
    /// growing processes in a cgroup with a limit).
    time_to_limit_secs: Option<f64>,
    /// Which limit: `cgroup` or `host_available`.
    time_to_limit_of: Option<&'static str>,
    series: Vec<(f64, u64)>,
}

#[derive(Serialize)]
struct GoJson {
    heap_after_gc_bytes: u64,
    heap_in_use_bytes: u64,
    gc_cycles: u32,
    gcs_watched: u32,
    gogc: Option<u32>,
    memory_limit_bytes: Option<u64>,
    goroutines: Option<u64>,
    heap_after_gc_growth_bytes_per_sec: f64,
    heap_after_gc_series: Vec<(f64, u64)>,
}

impl GoJson {
    fn new(h: &GoHeapView, goroutines: Option<u64>) -> Self {
        let s = &h.latest;
        Self {
            heap_after_gc_bytes: s.heap_marked,
            heap_in_use_bytes: s.heap_live,
            gc_cycles: s.gc_cycles,
            gcs_watched: h.gcs_watched,
            gogc: s.gc_percent,
            memory_limit_bytes: s.memory_limit,
            goroutines,
            heap_after_gc_growth_bytes_per_sec: h.trend.slope.round(),
            heap_after_gc_series: points(&h.after_gc),
        }
    }
}

#[derive(Serialize)]
struct CgroupJson<'a> {
    path: &'a str,
    container: Option<&'a str>,
    runtime: Option<&'static str>,
    pod_uid: Option<&'a str>,
    pod: Option<&'a str>,
    namespace: Option<&'a str>,
    limit_bytes: Option<u64>,
    usage_bytes: Option<u64>,
    unreclaimable_bytes: Option<u64>,
    oom_kills: Option<u64>,
    oom_kills_watched: u64,
}

impl<'a> From<&'a CgroupView> for CgroupJson<'a> {
    fn from(v: &'a CgroupView) -> Self {
        let c = &v.cgroup;
        let m = v.memory.as_ref();
        Self {
            path: &c.path,
            container: c.container.as_ref().map(|c| c.id.as_str()),
            runtime: c.container.as_ref().map(|c| c.runtime),
            pod_uid: c.pod_uid.as_deref(),
            pod: v.pod.as_ref().map(|p| p.0.as_str()),
            namespace: v.pod.as_ref().and_then(|p| p.1.as_deref()),
            limit_bytes: m.and_then(|m| m.limit),
            usage_bytes: m.map(|m| m.usage),
            unreclaimable_bytes: m.map(|m| m.unreclaimable),
            oom_kills: m.map(|m| m.oom_kills),
            oom_kills_watched: v.oom_kills_watched,
        }
    }
}

#[derive(Serialize)]
struct Memory {
    anon: u64,
    file: u64,
    shmem: u64,
    swap: u64,
    mapped: i64,
    brk_heap: Option<u64>,
    advised_away: u64,
}

#[derive(Serialize)]
struct Lost {
    rss_events_unattributed: u64,
    stats_insert_failed: u64,
}

/// Writes `rows` (already in ranking order) as a pretty-printed JSON
/// document and a newline.
pub(crate) fn write(meta: &Meta, rows: &[Row], w: &mut dyn Write) -> io::Result<()> {
    let doc = Document {
        duration_secs: round3(meta.duration_secs),
        interval_secs: meta.interval_secs,
        scope: &meta.scope,
        processes: rows
            .iter()
            .map(|r| Process {
                pid: r.pid,
                pids: &r.members,
                ns_pid: r.ns_pid,
                command: &r.command,
                verdict: r.trend.verdict.as_str(),
                verdict_from: r.verdict_from.as_str(),
                reason: &r.trend.reason,
                rss_bytes: r.latest.resident(),
                change_bytes: r.change_bytes.round() as i64,
                growth_bytes_per_sec: r.growth().round(),
                trough_r2: round3(r.trend.troughs.r2),
                recent_growth_bytes_per_sec: r.trend.recent_slope.round(),
                memory: Memory {
                    anon: r.latest.rss[RSS_ANON],
                    file: r.latest.rss[RSS_FILE],
                    shmem: r.latest.rss[RSS_SHMEM],
                    swap: r.latest.rss[RSS_SWAP],
                    mapped: r.latest.mapped_bytes,
                    brk_heap: r.latest.heap_bytes,
                    advised_away: r.latest.advised_away_bytes,
                },
                goroutines: r.goroutines.as_ref().map(|g| g.0),
                go: r
                    .go_heap
                    .as_ref()
                    .map(|h| GoJson::new(h, r.goroutines.as_ref().map(|g| g.0))),
                cgroup: r.cgroup.as_ref().map(CgroupJson::from),
                time_to_limit_secs: r.time_to_limit().map(round3),
                time_to_limit_of: r.limit_ahead().map(|(_, kind)| kind.as_str()),
                series: points(&r.series),
            })
            .collect(),
        lost: Lost {
            rss_events_unattributed: meta.rss_events_unattributed,
            stats_insert_failed: meta.stats_insert_failed,
        },
    };
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    writeln!(w)
}

/// `(seconds, bytes)` points as JSON pairs.
fn points(series: &[(f64, f64)]) -> Vec<(f64, u64)> {
    series
        .iter()
        .map(|&(t, b)| (round3(t), b.max(0.0) as u64))
        .collect()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::watch::{Reading, Watch};

    #[test]
    fn document_lists_processes_in_rank_order_with_series() {
        let mut w = Watch::new();
        for i in 0..=20 {
            let t = i as f64 * 2.0;
            let mut r = Reading::default();
            r.rss[RSS_ANON] = (1 << 20) * (10 + i);
            r.heap_bytes = Some(4096 * i);
            w.record(42, "leaker", t, r);
            r.rss[RSS_ANON] = 8 << 20;
            r.heap_bytes = None;
            w.record(7, "flat", t, r);
        }
        let meta = Meta {
            duration_secs: 40.0004,
            interval_secs: 2.0,
            scope: "every process".into(),
            ..Meta::default()
        };
        let mut rows = w.rows();
        rows[1].ns_pid = Some(1);
        let mut out = Vec::new();
        write(&meta, &rows, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["duration_secs"], 40.0);
        let procs = v["processes"].as_array().unwrap();
        assert_eq!(procs[0]["pid"], 42);
        assert_eq!(procs[0]["verdict"], "leaking");
        assert_eq!(procs[0]["change_bytes"], 20 << 20);
        assert_eq!(procs[0]["memory"]["brk_heap"], 4096 * 20);
        assert_eq!(procs[0]["series"].as_array().unwrap().len(), 21);
        assert_eq!(procs[0]["series"][1], serde_json::json!([2.0, 11 << 20]));
        assert_eq!(procs[1]["verdict"], "steady");
        assert!(procs[1]["memory"]["brk_heap"].is_null());
        assert!(procs[0]["ns_pid"].is_null());
        assert_eq!(procs[1]["ns_pid"], 1);
        assert_eq!(v["lost"]["stats_insert_failed"], 0);
    }
}
