//! The traced processes' goroutines over time: every few seconds each
//! live process's goroutines are read from its memory (the Go layer's
//! reader: no pause, nothing written), grouped as pprof groups them, and
//! each group's count gets a point; the shared trend rule judges each
//! group's series (a group whose count keeps rising is leaking, a pool
//! that holds still is steady). Reads are spaced so they never take more
//! than a twentieth of the time, however many goroutines there are.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    analysis::{
        series::thin,
        trend::{assess, Thresholds},
    },
    frame::Frame,
    go::{
        goroutines::{self, Goroutines, Group},
        GoProcess, Program,
    },
    report::goroutines::{GoroutineGroup, GoroutineReport, GroupGrowth},
};

/// Shortest time between two reads.
const EVERY: Duration = Duration::from_secs(2);
/// A read may take at most this share of the time between reads.
const DUTY: u32 = 20;
/// Points kept per group (thinned, troughs kept, when full).
const POINTS: usize = 360;

/// What makes goroutines of several processes one group: the stack, or
/// for goroutines read with no stack their state and function.
type Key = (Vec<Frame>, String);

/// One traced process, opened for reading its goroutines.
struct Watched {
    process: GoProcess,
    goroutines: Goroutines,
}

/// Goroutine groups of every traced process, and their counts over time.
pub(crate) struct GoroutineTracker {
    program: Rc<Program>,
    watched: BTreeMap<u32, Watched>,
    /// Processes whose goroutines cannot be read (said once).
    refused: BTreeSet<u32>,
    /// Per group: `(seconds since the start, count)`.
    series: HashMap<Key, Vec<(f64, f64)>>,
    /// The groups of the last read, summed over processes.
    latest: Vec<Group>,
    /// Goroutines of the last read, and of those read with no stack.
    total: usize,
    unstable: usize,
    /// Reads that failed (a process exiting mid-read, memory moving).
    failed_reads: u64,
    started: Instant,
    next: Instant,
}

impl GoroutineTracker {
    /// A tracker for the processes of `program`, reading from now.
    pub(crate) fn new(program: Rc<Program>) -> Self {
        let now = Instant::now();
        Self {
            program,
            watched: BTreeMap::new(),
            refused: BTreeSet::new(),
            series: HashMap::new(),
            latest: Vec::new(),
            total: 0,
            unstable: 0,
            failed_reads: 0,
            started: now,
            next: now,
        }
    }

    /// Reads every live process in `pids` if a read is due (`now`: at
    /// once): their groups, and a point per group. Returns lines for the
    /// user about processes whose goroutines cannot be read.
    pub(crate) fn sample(&mut self, pids: &[u32], now: bool) -> Vec<String> {
        if !now && Instant::now() < self.next {
            return Vec::new();
        }
        let began = Instant::now();
        let notes = self.watch(pids);
        let mut groups: HashMap<Key, Group> = HashMap::new();
        let (mut total, mut unstable) = (0, 0);
        for w in self.watched.values() {
            let Ok(snapshot) = w.goroutines.read(&w.process) else {
                self.failed_reads += 1;
                continue;
            };
            total += snapshot.user().count();
            unstable += snapshot.unstable();
            for g in goroutines::group(&snapshot) {
                merge(&mut groups, g);
            }
        }
        self.record(groups, total, unstable);
        let took = began.elapsed();
        self.next = Instant::now() + EVERY.max(took * DUTY);
        notes
    }

    /// Opens the processes not yet watched; forgets the ones gone.
    fn watch(&mut self, pids: &[u32]) -> Vec<String> {
        self.watched.retain(|pid, _| pids.contains(pid));
        self.refused.retain(|pid| pids.contains(pid));
        let mut notes = Vec::new();
        for &pid in pids {
            if self.watched.contains_key(&pid) || self.refused.contains(&pid) {
                continue;
            }
            let opened = GoProcess::open(Rc::clone(&self.program), pid).and_then(|process| {
                let goroutines = Goroutines::locate(&process)?;
                Ok(Watched {
                    process,
                    goroutines,
                })
            });
            match opened {
                Ok(w) => {
                    self.watched.insert(pid, w);
                }
                Err(e) => {
                    // A process that exited meanwhile (a short job) needs
                    // no word: its exit is the news.
                    if crate::process::alive(pid) {
                        notes.push(format!("leak: pid {pid}: no goroutines: {e}; heap only"));
                    }
                    self.refused.insert(pid);
                }
            }
        }
        notes
    }

    /// Takes one read: the groups now, and a point for every group seen so
    /// far (0 for those gone).
    fn record(&mut self, groups: HashMap<Key, Group>, total: usize, unstable: usize) {
        let t = self.started.elapsed().as_secs_f64();
        for series in self.series.values_mut() {
            series.push((t, 0.0));
        }
        for (key, g) in &groups {
            let series = self.series.entry(key.clone()).or_default();
            match series.last_mut() {
                Some(last) if last.0 == t => last.1 = g.count as f64,
                _ => series.push((t, g.count as f64)),
            }
        }
        for series in self.series.values_mut() {
            thin(series, POINTS);
        }
        self.latest = groups.into_values().collect();
        self.total = total;
        self.unstable = unstable;
    }

    /// The last read's groups, each judged on its series, leaking first;
    /// `None` before any read succeeded.
    pub(crate) fn report(&self, pids: Vec<u32>) -> Option<GoroutineReport> {
        if self.watched.is_empty() && self.latest.is_empty() {
            return None;
        }
        let groups = self
            .latest
            .iter()
            .map(|g| {
                let series = self.series.get(&key_of(g));
                judged(g.clone(), series.map(Vec::as_slice))
            })
            .collect();
        let mut report = GoroutineReport {
            binary: self.program.path.clone(),
            go_version: self.program.version.clone(),
            pid: pids.first().copied().unwrap_or(0),
            total: self.total,
            unstable: self.unstable,
            groups,
            failed_reads: self.failed_reads,
        };
        report.sort();
        Some(report)
    }
}

fn key_of(g: &Group) -> Key {
    let label = if g.frames.is_empty() {
        let start = g.start.as_ref().map(|f| f.function.to_string());
        format!("{} {}", g.state, start.unwrap_or_default())
    } else {
        String::new()
    };
    (g.frames.clone(), label)
}

/// Adds `g` (one process's group) to the groups of every process.
fn merge(groups: &mut HashMap<Key, Group>, g: Group) {
    match groups.get_mut(&key_of(&g)) {
        Some(into) => {
            into.count += g.count;
            into.stack_bytes += g.stack_bytes;
            into.oldest_wait = into.oldest_wait.max(g.oldest_wait);
            into.proven_leaked += g.proven_leaked;
            into.goids.extend(g.goids);
        }
        None => {
            groups.insert(key_of(&g), g);
        }
    }
}

/// A group as the report shows it, with its verdict once it has a series.
fn judged(g: Group, series: Option<&[(f64, f64)]>) -> GoroutineGroup {
    let growth = series.filter(|s| s.len() >= 2).map(|s| {
        let trend = assess(s, None, &Thresholds::GOROUTINES);
        GroupGrowth {
            verdict: trend.verdict,
            per_sec: trend.slope,
            reason: trend.reason,
        }
    });
    GoroutineGroup {
        growth,
        ..GoroutineGroup::from(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::trend::Verdict;

    fn group(function: &str, count: usize) -> Group {
        Group {
            frames: vec![Frame::named(function)],
            count,
            state: "chan send".into(),
            wait_reason: Some("chan send".into()),
            created_by: None,
            start: None,
            oldest_wait: None,
            stack_bytes: 8192 * count as u64,
            unstable: false,
            proven_leaked: 0,
            goids: (0..count as u64).collect(),
        }
    }

    #[test]
    fn a_group_that_keeps_growing_is_leaking_and_a_pool_is_steady() {
        let mut series: HashMap<Key, Vec<(f64, f64)>> = HashMap::new();
        let leak = group("main.handle.func1", 0);
        let pool = group("main.worker", 8);
        for i in 0..21 {
            let t = i as f64 * 2.0;
            series
                .entry(key_of(&leak))
                .or_default()
                .push((t, 500.0 + 100.0 * t));
            series.entry(key_of(&pool)).or_default().push((t, 8.0));
        }
        let g = judged(
            group("main.handle.func1", 4500),
            series.get(&key_of(&leak)).map(Vec::as_slice),
        );
        assert_eq!(g.growth.as_ref().unwrap().verdict, Verdict::Leaking);
        assert!((g.growth.unwrap().per_sec - 100.0).abs() < 1e-6);
        let g = judged(pool.clone(), series.get(&key_of(&pool)).map(Vec::as_slice));
        assert_eq!(g.growth.unwrap().verdict, Verdict::Steady);
        // One point is no series yet.
        assert!(judged(pool, Some(&[(0.0, 8.0)])).growth.is_none());
    }

    #[test]
    fn groups_of_several_processes_add_up() {
        let mut groups = HashMap::new();
        merge(&mut groups, group("main.worker", 8));
        merge(&mut groups, group("main.worker", 8));
        merge(&mut groups, group("main.other", 1));
        let g = &groups[&key_of(&group("main.worker", 0))];
        assert_eq!((g.count, g.stack_bytes), (16, 16 * 8192));
        assert_eq!(groups.len(), 2);
    }
}
