//! Reports: what a trace found, rendered as text for a person, as folded
//! stacks for flame graph tools, as an SVG flame graph, as pprof and as
//! JSON.
//!
//! Every renderer takes a [`Profile`], plain data with no kernel or process
//! behind it, so each format is tested on its own. A profile says where its
//! numbers came from ([`Source`]: the header lines, such as the Go version
//! and rate) and what they count ([`Unit`]: every other word a renderer
//! uses), so a C program's report carries no Go words and a count of
//! goroutines goes through the same renderers as a heap.

pub(crate) mod chart;
pub(crate) mod flamegraph;
pub(crate) mod folded;
pub(crate) mod goroutines;
pub(crate) mod json;
pub(crate) mod pprof;
pub(crate) mod text;
mod unit;

use std::{path::PathBuf, sync::Arc, time::Duration};

pub(crate) use crate::frame::Frame;
use crate::{aggregate::Totals, analysis::trend::Verdict};
pub(crate) use unit::Unit;

/// One call stack with what it holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StackProfile {
    /// Frames, leaf (the allocating function) first; shared with the
    /// tracer's own copy (100,000 stacks are not copied to be reported).
    pub frames: Arc<[Frame]>,
    /// Estimated bytes and objects.
    pub totals: Totals,
    /// How what it holds changes over time, once there is a series.
    pub growth: Option<StackGrowth>,
    /// Bytes it held in processes that have exited, when they exited (a
    /// short job's memory is gone with it, not freed: it is kept here).
    pub held_at_exit: f64,
    /// Which heap, when the report holds two (a Go program's Go and C
    /// heaps, `--native`); its frames then end in a root frame naming it.
    pub heap: Option<Heap>,
    /// Age of its oldest outstanding object, seconds (native traces).
    pub oldest_secs: Option<f64>,
}

/// The heap a stack's memory is on, in a report of a Go program's Go heap
/// and C heap (cgo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heap {
    /// Go's garbage-collected heap.
    Go,
    /// The C allocator's.
    C,
}

impl Heap {
    /// `go` or `c`, for machines.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Heap::Go => "go",
            Heap::C => "c",
        }
    }

    /// The root frame that marks a stack of this heap: flame graphs,
    /// folded stacks and pprof split at it.
    pub(crate) fn root(self) -> &'static str {
        match self {
            Heap::Go => "[Go heap]",
            Heap::C => "[C heap]",
        }
    }
}

/// What a report of a Go program's C heap (`--native`) shows of its Go
/// heap: the runtime's own heap profile records, read from its memory.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GoHeapPart {
    /// Go version, e.g. `go1.25.5`.
    pub go_version: String,
    /// `runtime.MemProfileRate`.
    pub rate: u64,
    /// GC cycles the records are as of.
    pub gc_cycles: u64,
    /// Bytes in use at the last GC, by the records.
    pub in_use_bytes: f64,
}

/// A stack's trend: is it a leak, a cache that filled, or churn?
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StackGrowth {
    /// The verdict (the same rule as `leak top`'s).
    pub verdict: Verdict,
    /// Why, in a few words.
    pub reason: String,
    /// Growth of outstanding bytes, bytes per second.
    pub bytes_per_sec: f64,
    /// Outstanding bytes gained per call of the `--work` function.
    pub bytes_per_call: Option<f64>,
    /// Outstanding bytes that have survived at least two GC cycles.
    pub survived_2_gcs: f64,
}

/// Calls of the `--work` function and what each leaves behind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WorkSummary {
    /// The function (as the user named it).
    pub function: String,
    /// Calls seen since attach.
    pub calls: u64,
    /// Heap retained per call (slope of the heap at the last GC against
    /// calls), once there are enough points.
    pub bytes_per_call: Option<f64>,
}

/// What was dropped or could not be matched; shown so no loss is silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Allocation samples (or brk/mmap calls) lost in the kernel: the ring
    /// buffer was full.
    pub allocs_dropped: u64,
    /// Frees lost in the kernel (ring buffer full).
    pub frees_dropped: u64,
    /// GC cycle markers lost in the kernel (ring buffer full).
    pub gc_dropped: u64,
    /// Samples whose stack could not be read (in the kernel) or never
    /// arrived (a bucket whose stack was lost).
    pub stacks_failed: u64,
    /// Samples of processes that exited before they could be placed.
    pub samples_without_process: u64,
}

impl Losses {}

/// Where a report's numbers come from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Source {
    /// Go's own heap sampler, seen through uprobes on the runtime: sampled
    /// objects, scaled as pprof scales them.
    GoSampler {
        /// Go version, e.g. `go1.25.5`.
        go_version: String,
        /// Sampling rate in bytes (`MemProfileRate`) of the traced processes.
        rate: u64,
        /// GC cycles seen.
        gc_cycles: u64,
        /// Sampled bytes that survived the last complete GC cycle (Go's "as
        /// of the last GC" view), once two cycles have been seen.
        in_use_at_last_gc: Option<f64>,
        /// Bytes held from before leak attached (from Go's own records,
        /// still in use as of the last GC), included in the stacks; `None`
        /// when no process had such a history.
        history_bytes: Option<f64>,
    },
    /// Go's own heap profile records, read from the process's memory: what
    /// `/debug/pprof/heap` serves, as of the last GC, since start-up.
    GoRecords {
        /// Go version, e.g. `go1.25.5`.
        go_version: String,
        /// `MemProfileRate` the records were scaled with.
        rate: u64,
        /// GC cycles the records have seen.
        gc_cycles: u64,
        /// Heap buckets read (one per stack and object size).
        buckets: usize,
    },
    /// brk and anonymous mmap/munmap of a process, whatever its language:
    /// where the heap grows, not each allocation.
    Syscalls,
    /// malloc and free of a native process (C, C++, Rust), sampled by bytes
    /// in the kernel: sampled blocks, scaled as pprof scales them.
    Native {
        /// The object whose allocator was probed (a C library, a jemalloc).
        allocator: String,
        /// Mean bytes between samples (1: every allocation).
        rate: u64,
        /// A Go program's Go heap beside its C heap (`--native`).
        go_heap: Option<GoHeapPart>,
        /// `--older`: outstanding counts objects at least this old, seconds.
        older: Option<f64>,
    },
    /// A Go process's goroutines, read from its memory: counted per stack,
    /// as `/debug/pprof/goroutine` counts them.
    GoGoroutines {
        /// Go version, e.g. `go1.25.5`.
        go_version: String,
    },
}

impl Source {
    /// Whether the numbers are one reading (Go's own records) with no
    /// series over time: no growth, no verdict.
    pub(crate) fn is_snapshot(&self) -> bool {
        matches!(self, Source::GoRecords { .. } | Source::GoGoroutines { .. })
    }

    /// Short name, as the JSON report spells it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Source::GoSampler { .. } => "go-sampler",
            Source::GoRecords { .. } => "go-records",
            Source::Syscalls => "syscalls",
            Source::Native { .. } => "native",
            Source::GoGoroutines { .. } => "go-goroutines",
        }
    }
}

/// Everything a report shows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Profile {
    /// The traced binary.
    pub binary: PathBuf,
    /// Where the numbers come from.
    pub source: Source,
    /// What they count.
    pub unit: Unit,
    /// Processes traced so far.
    pub pids: Vec<u32>,
    /// Time since attach.
    pub elapsed: Duration,
    /// Events that added to a stack: sampled allocations, brk/mmap calls.
    pub samples: u64,
    /// Events that took away: frees of sampled objects, munmaps.
    pub frees: u64,
    /// Sum over all stacks.
    pub total: Totals,
    /// Estimated outstanding bytes at the previous report (for the trend).
    pub previous_outstanding: Option<f64>,
    /// Stacks, most outstanding bytes first.
    pub stacks: Vec<StackProfile>,
    /// Losses.
    pub losses: Losses,
    /// The `--work` function's calls, if one was given.
    pub work: Option<WorkSummary>,
    /// The traced processes' goroutines, grouped, when they were read.
    pub goroutines: Option<goroutines::GoroutineReport>,
}

impl Profile {
    /// One reading of process `pid` of `binary` (no time span, no losses,
    /// no `--work`): `stacks` and their sum; `samples` and `frees` say how
    /// many events the reading counts.
    pub(crate) fn snapshot(
        binary: PathBuf,
        source: Source,
        unit: Unit,
        pid: u32,
        stacks: Vec<StackProfile>,
    ) -> Self {
        Profile {
            binary,
            source,
            unit,
            pids: vec![pid],
            elapsed: Duration::ZERO,
            samples: 0,
            frees: 0,
            total: stacks.iter().map(|s| s.totals).sum(),
            previous_outstanding: None,
            stacks,
            losses: Losses::default(),
            work: None,
            goroutines: None,
        }
    }

    /// Sorts stacks most held first (in the profile's unit), then most
    /// allocated.
    pub(crate) fn sort_by_outstanding(&mut self) {
        let unit = self.unit;
        self.stacks.sort_by(|a, b| {
            unit.held(&b.totals).total_cmp(&unit.held(&a.totals)).then(
                b.totals
                    .allocated_bytes
                    .total_cmp(&a.totals.allocated_bytes),
            )
        });
    }

    /// Bytes held from before attach (Go's own records), included in the
    /// stacks, when the numbers come from the Go sampler and a process had
    /// such a history.
    pub(crate) fn history_bytes(&self) -> Option<f64> {
        match self.source {
            Source::GoSampler { history_bytes, .. } => history_bytes,
            _ => None,
        }
    }

    /// The Go sampler's figures, if the numbers come from it.
    pub(crate) fn go(&self) -> Option<(&str, u64, u64, Option<f64>)> {
        match &self.source {
            Source::GoSampler {
                go_version,
                rate,
                gc_cycles,
                in_use_at_last_gc,
                ..
            } => Some((go_version, *rate, *gc_cycles, *in_use_at_last_gc)),
            Source::GoRecords {
                go_version,
                rate,
                gc_cycles,
                ..
            } => Some((
                go_version,
                *rate,
                *gc_cycles,
                Some(self.total.outstanding_bytes),
            )),
            Source::Syscalls | Source::Native { .. } | Source::GoGoroutines { .. } => None,
        }
    }
}

/// A small Go profile for the renderers' tests: `stacks` as given.
#[cfg(test)]
pub(crate) fn example(stacks: Vec<StackProfile>) -> Profile {
    let source = Source::GoSampler {
        go_version: "go1.25.5".into(),
        rate: 512 * 1024,
        gc_cycles: 3,
        in_use_at_last_gc: Some(20.0e6),
        history_bytes: None,
    };
    Profile {
        elapsed: Duration::from_secs(30),
        samples: 100,
        frees: 10,
        ..Profile::snapshot("/srv/seed".into(), source, Unit::Bytes, 4242, stacks)
    }
}

/// A small goroutine profile for the renderers' tests: 1,200 goroutines
/// parked in a worker's channel receive, 3 serving connections, and one
/// stack with none. Read from the runtime like Go's records, it is a
/// snapshot (the header lines are the source's; the rest is the unit's).
#[cfg(test)]
pub(crate) fn goroutine_example() -> Profile {
    let stack = |names: &[&str], goroutines: f64| StackProfile {
        heap: None,
        oldest_secs: None,
        frames: names.iter().map(|n| Frame::named(n)).collect(),
        totals: Totals {
            outstanding_objects: goroutines,
            ..Totals::default()
        },
        growth: None,
        held_at_exit: 0.0,
    };
    let mut p = example(vec![
        stack(
            &["runtime.gopark", "runtime.chanrecv", "main.worker"],
            1200.0,
        ),
        stack(&["runtime.gopark", "net/http.(*conn).serve"], 3.0),
        stack(&["main.main"], 0.0),
    ]);
    p.unit = Unit::Goroutines;
    p.source = Source::GoRecords {
        go_version: "go1.25.5".into(),
        rate: 512 * 1024,
        gc_cycles: 3,
        buckets: 0,
    };
    p
}
