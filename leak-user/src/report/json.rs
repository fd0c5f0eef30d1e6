//! JSON: the whole report as one document, for scripts and dashboards.
//!
//! Bytes and objects are estimates rounded to integers. The figures of the
//! totals and of each stack are named by the profile's unit: the four below
//! for bytes, one `"goroutines": integer` for goroutines. Schema:
//!
//! ```text
//! {
//!   "target": {
//!     "binary": string,              // path of the traced binary
//!     "pids": [integer],             // processes traced so far
//!     "source": string,              // "go-sampler" | "go-records" (leak heap) | "native" | "syscalls"
//!                                    // | "syscalls" (brk/mmap)
//!     "unit": string,                // "bytes" | "goroutines"
//!     "go_version": string | null,   // e.g. "go1.25.5"; null unless go-sampler
//!     "sampling_rate": integer | null, // MemProfileRate, bytes; likewise
//!     "duration_secs": number,       // time since attach
//!     "older_secs": number,          // only with --older: outstanding counts
//!                                    // objects at least this old
//!     "go_heap": {                   // only with --native on a Go program
//!       "go_version": string, "sampling_rate": integer,
//!       "gc_cycles": integer, "in_use_bytes": integer
//!     }
//!   },
//!   "totals": {                      // sum over all stacks
//!     "outstanding_bytes": integer,  // allocated and not yet freed (held now,
//!                                    // history included)
//!     "outstanding_objects": integer,
//!     "allocated_bytes": integer,    // allocated, freed or not
//!     "allocated_objects": integer,
//!     "in_use_at_last_gc_bytes": integer | null  // survived the last GC;
//!                                    // null until two GC cycles are seen
//!     "history_bytes": integer | null  // of outstanding_bytes, what was held
//!                                    // before attach (Go's own records);
//!                                    // null when there is no history
//!   },
//!   "gc_cycles": integer | null,     // GC cycles seen (go-sampler)
//!   "samples": integer,              // sampled allocations (brk/mmap calls) seen
//!   "frees": integer,                // frees of sampled objects (munmaps) seen
//!   "stacks": [                      // most outstanding bytes first
//!     {
//!       "frames": [                  // leaf (the allocating function) first
//!         {
//!           "function": string,      // as Go spells it
//!           "file": string,          // "" if unknown
//!           "line": integer,         // 0 if unknown
//!           "inlined": bool          // inlined into the next frame
//!         }
//!       ],
//!       "outstanding_bytes": integer,
//!       "outstanding_objects": integer,
//!       "allocated_bytes": integer,
//!       "allocated_objects": integer,
//!       "held_at_exit_bytes": integer, // held by processes that exited, at
//!                                    // their exit (their memory is gone,
//!                                    // not freed)
//!       "oldest_secs": number,       // native traces: age of its oldest
//!                                    // outstanding object
//!       "heap": "go" | "c",          // only in a report of both (--native on
//!                                    // a Go program): the Go heap's stacks
//!                                    // are the runtime's own records, in use
//!                                    // at the last GC since start; frames
//!                                    // end in a root "[Go heap]"/"[C heap]"
//!       "growth": {                  // null until the stack has a series
//!         "verdict": string,         // leaking|growing|steady|shrinking|churn
//!         "reason": string,          // why, in a few words
//!         "bytes_per_sec": number,   // growth of outstanding bytes
//!         "bytes_per_call": number | null,  // per --work call
//!         "survived_2_gcs_bytes": integer   // held through 2+ GC cycles
//!       } | null
//!     }
//!   ],
//!   "work": {                        // null without --work
//!     "function": string,
//!     "calls": integer,
//!     "bytes_per_call": number | null  // heap retained per call
//!   } | null,
//!   "dropped": {
//!     "allocs": integer,             // allocation samples lost in the kernel
//!     "frees": integer,              // frees lost in the kernel
//!     "stacks": integer,             // samples whose stack could not be read
//!     "gc_cycles": integer,          // GC cycle markers lost in the kernel
//!     "no_process": integer          // samples of processes gone too soon
//!   }
//! }
//! ```

use std::io::{self, Write};

use serde::{ser::SerializeMap, Serialize};

use super::{Frame, Profile, StackProfile, Unit};
use crate::aggregate::Totals;

/// Writes `profile` as a pretty-printed JSON document and a newline.
pub(crate) fn write(profile: &Profile, w: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, &Report::from(profile))?;
    writeln!(w)
}

#[derive(Serialize)]
struct Report<'a> {
    target: Target<'a>,
    totals: ReportTotals<'a>,
    gc_cycles: Option<u64>,
    samples: u64,
    frees: u64,
    /// Serialized one stack at a time: 100,000 stacks are never copied.
    stacks: Stacks<'a>,
    work: Option<Work<'a>>,
    dropped: Dropped,
    /// The goroutine groups (`report::goroutines`), when they were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    goroutines: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Work<'a> {
    function: &'a str,
    calls: u64,
    bytes_per_call: Option<f64>,
}

#[derive(Serialize)]
struct Growth<'a> {
    verdict: &'static str,
    reason: &'a str,
    bytes_per_sec: f64,
    bytes_per_call: Option<f64>,
    survived_2_gcs_bytes: u64,
}

#[derive(Serialize)]
struct Target<'a> {
    binary: String,
    pids: &'a [u32],
    source: &'static str,
    unit: &'static str,
    go_version: Option<&'a str>,
    sampling_rate: Option<u64>,
    duration_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    go_heap: Option<GoHeap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    older_secs: Option<f64>,
}

#[derive(Serialize)]
struct GoHeap<'a> {
    go_version: &'a str,
    sampling_rate: u64,
    gc_cycles: u64,
    in_use_bytes: u64,
}

#[derive(Serialize)]
struct ReportTotals<'a> {
    #[serde(flatten)]
    totals: Counts<'a>,
    in_use_at_last_gc_bytes: Option<u64>,
    history_bytes: Option<u64>,
}

/// The figures of `totals` the unit names, under its field names, rounded.
struct Counts<'a> {
    unit: Unit,
    totals: &'a Totals,
}

impl Serialize for Counts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let counts = self.unit.json_counts();
        let mut map = s.serialize_map(Some(counts.len()))?;
        for c in counts {
            map.serialize_entry(c.field, &round((c.value)(self.totals)))?;
        }
        map.end()
    }
}

struct Stacks<'a>(&'a [StackProfile], Unit);

impl Serialize for Stacks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|stack| Stack::new(stack, self.1)))
    }
}

struct Frames<'a>(&'a [Frame]);

impl Serialize for Frames<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(StackFrame::from))
    }
}

#[derive(Serialize)]
struct Stack<'a> {
    frames: Frames<'a>,
    #[serde(flatten)]
    totals: Counts<'a>,
    held_at_exit_bytes: u64,
    growth: Option<Growth<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heap: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_secs: Option<f64>,
}

#[derive(Serialize)]
struct StackFrame<'a> {
    function: &'a str,
    file: &'a str,
    line: u32,
    inlined: bool,
}

#[derive(Serialize)]
struct Dropped {
    allocs: u64,
    frees: u64,
    stacks: u64,
    gc_cycles: u64,
    no_process: u64,
}

/// Estimates are never negative; `as` saturates anything odd to 0.
fn round(v: f64) -> u64 {
    v.round() as u64
}

impl<'a> From<&'a Frame> for StackFrame<'a> {
    fn from(f: &'a Frame) -> Self {
        Self {
            function: &f.function,
            file: &f.file,
            line: f.line,
            inlined: f.inlined,
        }
    }
}

impl<'a> Stack<'a> {
    /// `s`, its figures counted in `unit`.
    fn new(s: &'a StackProfile, unit: Unit) -> Self {
        Stack {
            frames: Frames(&s.frames),
            totals: Counts {
                unit,
                totals: &s.totals,
            },
            held_at_exit_bytes: round(s.held_at_exit),
            heap: s.heap.map(|h| h.key()),
            oldest_secs: s.oldest_secs,
            growth: s.growth.as_ref().map(|g| Growth {
                verdict: g.verdict.as_str(),
                reason: &g.reason,
                bytes_per_sec: g.bytes_per_sec,
                bytes_per_call: g.bytes_per_call,
                survived_2_gcs_bytes: round(g.survived_2_gcs),
            }),
        }
    }
}

impl<'a> From<&'a Profile> for Report<'a> {
    fn from(p: &'a Profile) -> Self {
        let go = p.go();
        Self {
            target: Target {
                binary: p.binary.to_string_lossy().into_owned(),
                pids: &p.pids,
                source: p.source.name(),
                unit: p.unit.name(),
                go_version: go.map(|g| g.0),
                sampling_rate: match &p.source {
                    crate::report::Source::Native { rate, .. } => Some(*rate),
                    _ => go.map(|g| g.1),
                },
                duration_secs: p.elapsed.as_secs_f64(),
                go_heap: match &p.source {
                    crate::report::Source::Native {
                        go_heap: Some(g), ..
                    } => Some(GoHeap {
                        go_version: &g.go_version,
                        sampling_rate: g.rate,
                        gc_cycles: g.gc_cycles,
                        in_use_bytes: round(g.in_use_bytes),
                    }),
                    _ => None,
                },
                older_secs: match &p.source {
                    crate::report::Source::Native { older, .. } => *older,
                    _ => None,
                },
            },
            totals: ReportTotals {
                totals: Counts {
                    unit: p.unit,
                    totals: &p.total,
                },
                in_use_at_last_gc_bytes: go.and_then(|g| g.3).map(round),
                history_bytes: p.history_bytes().map(round),
            },
            gc_cycles: go.map(|g| g.2),
            samples: p.samples,
            frees: p.frees,
            stacks: Stacks(&p.stacks, p.unit),
            work: p.work.as_ref().map(|w| Work {
                function: &w.function,
                calls: w.calls,
                bytes_per_call: w.bytes_per_call,
            }),
            dropped: Dropped {
                allocs: p.losses.allocs_dropped,
                frees: p.losses.frees_dropped,
                stacks: p.losses.stacks_failed,
                gc_cycles: p.losses.gc_dropped,
                no_process: p.losses.samples_without_process,
            },
            goroutines: p.goroutines.as_ref().map(|g| g.json()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{Losses, Source, Unit};

    fn profile() -> Profile {
        Profile {
            goroutines: None,
            work: Some(crate::report::WorkSummary {
                function: "main.(*RequestTracker).Track".into(),
                calls: 2000,
                bytes_per_call: Some(10240.5),
            }),
            binary: "/srv/seed".into(),
            source: Source::GoSampler {
                go_version: "go1.25.5".into(),
                rate: 524288,
                gc_cycles: 3,
                in_use_at_last_gc: Some(10240000.5),
                history_bytes: None,
            },
            unit: Unit::Bytes,
            pids: vec![42, 43],
            elapsed: Duration::from_millis(30500),
            samples: 100,
            frees: 20,
            total: Totals {
                outstanding_bytes: 20484096.6,
                outstanding_objects: 20004.4,
                allocated_bytes: 40968193.2,
                allocated_objects: 40008.0,
            },
            previous_outstanding: Some(1.0),
            stacks: vec![StackProfile {
                heap: None,
                oldest_secs: None,
                held_at_exit: 0.0,
                growth: Some(crate::report::StackGrowth {
                    verdict: crate::analysis::trend::Verdict::Leaking,
                    reason: "troughs rise".into(),
                    bytes_per_sec: 204800.0,
                    bytes_per_call: Some(10240.5),
                    survived_2_gcs: 10240000.4,
                }),
                frames: vec![
                    Frame::new("bytes.Repeat", "/go/src/bytes/bytes.go", 595, false),
                    Frame::new(
                        "main.(*RequestTracker).Track",
                        "/src/seed/main.go",
                        30,
                        true,
                    ),
                    Frame::named("main.main"),
                ]
                .into(),
                totals: Totals {
                    outstanding_bytes: 20480000.4,
                    outstanding_objects: 20000.0,
                    allocated_bytes: 40960000.8,
                    allocated_objects: 40000.0,
                },
            }],
            losses: Losses {
                allocs_dropped: 1,
                frees_dropped: 2,
                stacks_failed: 3,
                ..Losses::default()
            },
        }
    }

    const GOLDEN: &str = r#"{
  "target": {
    "binary": "/srv/seed",
    "pids": [
      42,
      43
    ],
    "source": "go-sampler",
    "unit": "bytes",
    "go_version": "go1.25.5",
    "sampling_rate": 524288,
    "duration_secs": 30.5
  },
  "totals": {
    "outstanding_bytes": 20484097,
    "outstanding_objects": 20004,
    "allocated_bytes": 40968193,
    "allocated_objects": 40008,
    "in_use_at_last_gc_bytes": 10240001,
    "history_bytes": null
  },
  "gc_cycles": 3,
  "samples": 100,
  "frees": 20,
  "stacks": [
    {
      "frames": [
        {
          "function": "bytes.Repeat",
          "file": "/go/src/bytes/bytes.go",
          "line": 595,
          "inlined": false
        },
        {
          "function": "main.(*RequestTracker).Track",
          "file": "/src/seed/main.go",
          "line": 30,
          "inlined": true
        },
        {
          "function": "main.main",
          "file": "",
          "line": 0,
          "inlined": false
        }
      ],
      "outstanding_bytes": 20480000,
      "outstanding_objects": 20000,
      "allocated_bytes": 40960001,
      "allocated_objects": 40000,
      "held_at_exit_bytes": 0,
      "growth": {
        "verdict": "leaking",
        "reason": "troughs rise",
        "bytes_per_sec": 204800.0,
        "bytes_per_call": 10240.5,
        "survived_2_gcs_bytes": 10240000
      }
    }
  ],
  "work": {
    "function": "main.(*RequestTracker).Track",
    "calls": 2000,
    "bytes_per_call": 10240.5
  },
  "dropped": {
    "allocs": 1,
    "frees": 2,
    "stacks": 3,
    "gc_cycles": 0,
    "no_process": 0
  }
}
"#;

    #[test]
    fn golden_report() {
        let mut out = Vec::new();
        write(&profile(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), GOLDEN);
    }

    #[test]
    fn goroutines_are_one_count_per_stack() {
        let mut out = Vec::new();
        write(&crate::report::goroutine_example(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["target"]["unit"], "goroutines");
        assert_eq!(v["totals"]["goroutines"], 1203);
        assert!(v["totals"].get("outstanding_bytes").is_none(), "{v}");
        let stack = &v["stacks"][0];
        assert_eq!(stack["goroutines"], 1200);
        assert_eq!(stack["frames"][2]["function"], "main.worker");
        for bytes in ["outstanding_bytes", "allocated_objects"] {
            assert!(stack.get(bytes).is_none(), "{bytes} in {stack}");
        }
    }

    #[test]
    fn unknown_in_use_at_last_gc_is_null() {
        let mut p = profile();
        if let Source::GoSampler {
            in_use_at_last_gc, ..
        } = &mut p.source
        {
            *in_use_at_last_gc = None;
        }
        p.stacks.clear();
        let mut out = Vec::new();
        write(&p, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["totals"]["in_use_at_last_gc_bytes"].is_null());
        assert_eq!(v["stacks"], serde_json::json!([]));
        // A native report has no Go figures at all.
        p.source = Source::Syscalls;
        let mut out = Vec::new();
        write(&p, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["target"]["source"], "syscalls");
        assert!(v["target"]["go_version"].is_null() && v["gc_cycles"].is_null());
    }
}
