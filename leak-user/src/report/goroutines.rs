//! A Go process's goroutines as a person and a script read them: groups of
//! goroutines that share a stack, as `/debug/pprof/goroutine?debug=1`
//! groups them, with what Go's own profile leaves out of `debug=1` (their
//! state and wait, who created them, what their stacks take) and, over
//! time, whether a group keeps growing.
//!
//! The text table and the JSON section are here; pprof, folded stacks and
//! the flame graph go through the common renderers, as a [`Profile`] whose
//! [`Unit`] is goroutines ([`GoroutineReport::profile`]).
//!
//! JSON (`--json`), documented in the README:
//!
//! ```text
//! "goroutines": {
//!   "total": integer,                 // user goroutines (pprof's count)
//!   "unstable": integer,              // of those, read with no stack
//!   "failed_reads": integer,          // reads that failed (leak trace)
//!   "groups": [{                      // most goroutines first
//!     "frames": [{"function", "file", "line", "inlined"}],  // leaf first
//!     "created_by": {"function", "file", "line"} | null,
//!     "state": string,                // "chan send", "running", …
//!     "wait_reason": string | null,
//!     "count": integer,
//!     "oldest_wait_secs": number | null,  // as fine as the GC cadence
//!     "stack_bytes": integer,
//!     "proven_leaked": integer,       // marked leaked by Go's own leak profile
//!     "growth": {"verdict": string, "per_sec": number} | null
//!   }]
//! }
//! ```

use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use serde_json::{json, Value};

use super::{Profile, Source, StackProfile, Unit};
use crate::{
    aggregate::Totals,
    analysis::trend::Verdict,
    frame::Frame,
    go::goroutines::Group,
    units::{human_bytes, human_secs, thousands},
};

/// Goroutines that share a stack.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GoroutineGroup {
    /// The stack, leaf first; empty for goroutines read with no stack.
    pub frames: Vec<Frame>,
    /// The `go` statement that started them.
    pub created_by: Option<Frame>,
    /// Their state as Go prints it (`chan send`, `running`).
    pub state: String,
    /// Why they wait, in the target's words, if they wait.
    pub wait_reason: Option<String>,
    /// Goroutines in the group.
    pub count: usize,
    /// The longest any of them has waited.
    pub oldest_wait: Option<Duration>,
    /// Bytes their stacks take.
    pub stack_bytes: u64,
    /// Read with no stack (running, or changing under the read).
    pub unstable: bool,
    /// Of them, how many Go's own goroutine leak profile proved leaked.
    pub proven_leaked: usize,
    /// How the group's count moves over time, once there is a series.
    pub growth: Option<GroupGrowth>,
}

impl From<Group> for GoroutineGroup {
    /// A group of the Go layer as the report shows it (no verdict yet).
    fn from(g: Group) -> Self {
        Self {
            wait_reason: g.wait_reason,
            frames: g.frames,
            created_by: g.created_by,
            state: g.state,
            count: g.count,
            oldest_wait: g.oldest_wait,
            stack_bytes: g.stack_bytes,
            unstable: g.unstable,
            proven_leaked: g.proven_leaked,
            growth: None,
        }
    }
}

/// A group's count over time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupGrowth {
    /// The verdict (the shared trend rule, on counts).
    pub verdict: Verdict,
    /// Goroutines gained per second.
    pub per_sec: f64,
    /// Why, in a few words.
    pub reason: String,
}

/// Every group of one process at one reading.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GoroutineReport {
    /// The program.
    pub binary: PathBuf,
    /// Its Go release, e.g. `go1.25.5`.
    pub go_version: String,
    /// The process.
    pub pid: u32,
    /// User goroutines (the runtime's own left out, as pprof does).
    pub total: usize,
    /// Of those, read with no stack.
    pub unstable: usize,
    /// Groups, leaking first, then most goroutines.
    pub groups: Vec<GoroutineGroup>,
    /// Reads that failed (a process exiting or its list moving mid-read),
    /// over a trace: their points are missing, and said so.
    pub failed_reads: u64,
}

impl GoroutineReport {
    /// Orders the groups: leaking, then growing, then by count.
    pub(crate) fn sort(&mut self) {
        let rank = |g: &GoroutineGroup| match g.growth.as_ref().map(|g| g.verdict) {
            Some(Verdict::Leaking) => 0,
            Some(Verdict::Growing) => 1,
            _ => 2,
        };
        self.groups
            .sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.count.cmp(&a.count)));
    }

    /// The groups as a profile whose unit is goroutines, for pprof, folded
    /// stacks and the flame graph.
    pub(crate) fn profile(&self) -> Profile {
        let stacks: Vec<StackProfile> = self
            .groups
            .iter()
            .map(|g| StackProfile {
                heap: None,
                oldest_secs: None,
                frames: Arc::from(profile_frames(g)),
                totals: count_totals(g.count),
                growth: None,
                held_at_exit: 0.0,
            })
            .collect();
        let source = Source::GoGoroutines {
            go_version: self.go_version.clone(),
        };
        Profile {
            samples: self.total as u64,
            ..Profile::snapshot(
                self.binary.clone(),
                source,
                Unit::Goroutines,
                self.pid,
                stacks,
            )
        }
    }

    /// The JSON section (schema in the module's comment).
    pub(crate) fn json(&self) -> Value {
        json!({
            "total": self.total,
            "unstable": self.unstable,
            "failed_reads": self.failed_reads,
            "groups": self.groups.iter().map(group_json).collect::<Vec<_>>(),
        })
    }

    /// The text table of the first `top` groups.
    pub(crate) fn text(&self, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "goroutines: {} in {} groups{}",
            thousands(self.total as u64),
            self.groups.len(),
            match self.unstable {
                0 => String::new(),
                n => format!(" · {n} read with no stack (running, or changing under the read)"),
            }
        );
        if self.failed_reads > 0 {
            let _ = writeln!(
                out,
                "  {} reads failed (a process exiting, or its goroutine list moving under the read)",
                self.failed_reads
            );
        }
        if self.groups.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\n  COUNT  STATE                 OLDEST WAIT   STACKS    VERDICT   CODE PATH (innermost function first)"
        );
        for g in self.groups.iter().take(top) {
            group_rows(&mut out, g);
        }
        if self.groups.len() > top {
            let rest: usize = self.groups[top..].iter().map(|g| g.count).sum();
            let _ = writeln!(
                out,
                "  … {} more groups ({} goroutines): --top shows more",
                self.groups.len() - top,
                thousands(rest as u64)
            );
        }
        out
    }
}

/// A group's stack for the common renderers: its frames, or for a group
/// read with no stack its start function, so it is not lost from a flame
/// graph.
fn profile_frames(g: &GoroutineGroup) -> Vec<Frame> {
    if !g.frames.is_empty() {
        return g.frames.clone();
    }
    let label = format!("[{}]", g.state);
    vec![Frame::named(&label)]
}

/// A goroutine count as totals: goroutines are the objects a stack holds.
fn count_totals(count: usize) -> Totals {
    Totals {
        outstanding_objects: count as f64,
        ..Totals::default()
    }
}

/// One group's lines: the figures and the leaf, then its callers, then who
/// created it.
fn group_rows(out: &mut String, g: &GoroutineGroup) {
    let wait = g
        .oldest_wait
        .map(|d| human_secs(d.as_secs_f64()))
        .unwrap_or_else(|| "-".into());
    let verdict = match (&g.growth, g.proven_leaked) {
        (_, 1..) => "LEAKED".to_string(),
        (Some(v), 0) => v.verdict.as_str().to_uppercase(),
        (None, 0) => "-".to_string(),
    };
    let mut frames = g.frames.iter();
    let leaf = match frames.next() {
        Some(f) => describe(f),
        None => String::from("(no stack in this read)"),
    };
    let _ = writeln!(
        out,
        "{:>7}  {:<20}  {:>11}  {:>9}  {:<8}  {leaf}",
        thousands(g.count as u64),
        clip(&g.state, 20),
        wait,
        human_bytes(g.stack_bytes as f64),
        verdict,
    );
    for f in frames {
        let _ = writeln!(out, "{:>66}← {}", "", describe(f));
    }
    if let Some(c) = &g.created_by {
        let _ = writeln!(out, "{:>68}created by {}", "", describe(c));
    }
    if g.proven_leaked > 0 {
        let _ = writeln!(
            out,
            "{:>68}{} proven leaked by Go's own goroutine leak profile",
            "",
            thousands(g.proven_leaked as u64)
        );
    }
    // The reason is worth a line where the count moves; a steady group's
    // verdict says it all.
    if let Some(growth) = g.growth.as_ref().filter(|v| v.verdict != Verdict::Steady) {
        let _ = writeln!(out, "{:>68}{}", "", growth.reason);
    }
}

/// `main.handle (main.go:31)`.
fn describe(f: &Frame) -> String {
    if f.line == 0 || f.file.is_empty() {
        return f.function.to_string();
    }
    let file = f.file.rsplit('/').next().unwrap_or(&f.file);
    format!("{} ({file}:{})", f.function, f.line)
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('…');
    t
}

fn frame_json(f: &Frame) -> Value {
    json!({"function": &*f.function, "file": &*f.file, "line": f.line, "inlined": f.inlined})
}

fn group_json(g: &GoroutineGroup) -> Value {
    json!({
        "frames": g.frames.iter().map(frame_json).collect::<Vec<_>>(),
        "created_by": g.created_by.as_ref().map(|c| json!({
            "function": &*c.function, "file": &*c.file, "line": c.line,
        })),
        "state": g.state,
        "wait_reason": g.wait_reason,
        "count": g.count,
        "oldest_wait_secs": g.oldest_wait.map(|d| d.as_secs_f64()),
        "stack_bytes": g.stack_bytes,
        "proven_leaked": g.proven_leaked,
        "growth": g.growth.as_ref().map(|v| json!({
            "verdict": v.verdict.as_str(), "per_sec": v.per_sec,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: u32) -> Frame {
        Frame::new(function, "/src/app/main.go", line, false)
    }

    fn report() -> GoroutineReport {
        let leaked = GoroutineGroup {
            frames: vec![frame("main.handle.func1", 31), frame("main.worker", 20)],
            created_by: Some(frame("main.handle", 29)),
            state: "chan send".into(),
            wait_reason: Some("chan send".into()),
            count: 2000,
            oldest_wait: Some(Duration::from_secs(310)),
            stack_bytes: 2000 * 8192,
            unstable: false,
            proven_leaked: 0,
            growth: Some(GroupGrowth {
                verdict: Verdict::Leaking,
                per_sec: 50.0,
                reason: "count rises 50/s".into(),
            }),
        };
        let pool = GoroutineGroup {
            frames: vec![frame("main.pool", 40)],
            created_by: Some(frame("main.main", 12)),
            state: "chan receive".into(),
            wait_reason: Some("chan receive".into()),
            count: 8,
            oldest_wait: None,
            stack_bytes: 8 * 8192,
            unstable: false,
            proven_leaked: 0,
            growth: None,
        };
        let running = GoroutineGroup {
            frames: vec![],
            created_by: None,
            state: "running".into(),
            wait_reason: None,
            count: 1,
            oldest_wait: None,
            stack_bytes: 8192,
            unstable: true,
            proven_leaked: 0,
            growth: None,
        };
        GoroutineReport {
            binary: "/srv/app".into(),
            go_version: "go1.25.5".into(),
            pid: 42,
            total: 2009,
            unstable: 1,
            groups: vec![pool, running, leaked],
            failed_reads: 0,
        }
    }

    #[test]
    fn leaking_groups_come_first_then_the_biggest() {
        let mut r = report();
        r.sort();
        let counts: Vec<usize> = r.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, [2000, 8, 1]);
    }

    #[test]
    fn the_table_names_state_wait_creator_and_verdict() {
        let mut r = report();
        r.sort();
        let text = r.text(10);
        assert!(text.starts_with("goroutines: 2,009 in 3 groups · 1 read with no stack"));
        let row = text
            .lines()
            .find(|l| l.contains("main.handle.func1"))
            .unwrap();
        for part in ["2,000", "chan send", "5m10s", "15.6 MiB", "LEAKING"] {
            assert!(row.contains(part), "{part} not in {row:?}");
        }
        assert!(text.contains("← main.worker (main.go:20)"));
        assert!(text.contains("created by main.handle (main.go:29)"));
        assert!(text.contains("(no stack in this read)"));
        let short = r.text(1);
        assert!(short.contains("… 2 more groups (9 goroutines)"), "{short}");
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = report().json();
        assert_eq!(v["total"], 2009);
        let g = &v["groups"][2];
        assert_eq!(g["count"], 2000);
        assert_eq!(g["frames"][0]["function"], "main.handle.func1");
        assert_eq!(g["created_by"]["line"], 29);
        assert_eq!(g["wait_reason"], "chan send");
        assert_eq!(g["oldest_wait_secs"], 310.0);
        assert_eq!(g["stack_bytes"], 2000 * 8192);
        assert_eq!(g["growth"]["verdict"], "leaking");
        assert!(v["groups"][0]["growth"].is_null());
    }

    #[test]
    fn as_a_profile_each_group_is_a_stack_counted_in_goroutines() {
        let p = report().profile();
        assert_eq!(p.unit, Unit::Goroutines);
        assert_eq!(p.total.outstanding_objects, 2009.0);
        let counts: Vec<f64> = p
            .stacks
            .iter()
            .map(|s| s.totals.outstanding_objects)
            .collect();
        assert_eq!(counts, [8.0, 1.0, 2000.0]);
        // A group with no stack keeps its place in a flame graph.
        assert_eq!(&*p.stacks[1].frames[0].function, "[running]");
        let mut folded = Vec::new();
        crate::report::folded::write(&p, &mut folded).unwrap();
        let folded = String::from_utf8(folded).unwrap();
        assert!(
            folded.contains("main.worker;main.handle.func1 2000"),
            "{folded}"
        );
    }
}
