//! What the bench writes: BENCHMARKS.md (figures, ratios against the
//! targets, the machine, the exact commands) and results.json (every run).
//! Hand-written analysis below a marker in BENCHMARKS.md survives reruns.
//!
//! Here: the machine, the figures drawn from the runs (per-round pairs
//! against each arm's baseline, medians) and results.json. `markdown` lays
//! out BENCHMARKS.md; `tables` writes its tables.

mod goroutines;
mod markdown;
mod native;
mod records;
mod tables;

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::{json, Value};

use super::{
    goroutines as goroutine_arms, records as arms,
    stats::{self, Summary},
    tracer, Arm, Kit, Run, Sizes, Workload,
};
use crate::root;

pub use markdown::markdown;

/// Facts about the host the figures were measured on.
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub leak_commit: String,
    pub date: String,
}

impl Machine {
    /// Reads /proc and asks git for the commit measured.
    pub fn probe(kit: &Kit) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(root())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let dirty = !git(&["status", "--porcelain", "--", "leak-user", "leak-ebpf"]).is_empty();
        let commit = git(&["rev-parse", "--short", "HEAD"]);
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model: field(&cpuinfo, "model name"),
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            leak_commit: if kit.leak_given {
                format!("? (binary given with --leak: {})", kit.leak.display())
            } else if dirty {
                format!("{commit} (with uncommitted changes to leak)")
            } else {
                commit
            },
            date: Command::new("date")
                .args(["-u", "+%Y-%m-%d %H:%M UTC"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Everything one report is made of.
pub struct Document<'a> {
    pub machine: &'a Machine,
    pub kit: &'a Kit,
    pub sizes: &'a Sizes,
    pub runs: &'a [Run],
    pub took: Duration,
    pub quick: bool,
    /// Where results.json goes, relative to the workspace root.
    pub results_path: PathBuf,
}

impl Document<'_> {
    /// `(round, value)` of one figure of one arm.
    fn values(&self, w: Workload, arm: Arm, key: &str) -> Vec<(usize, f64)> {
        self.runs
            .iter()
            .filter(|r| r.workload == w && r.arm == arm && r.error.is_none())
            .filter_map(|r| r.metrics.get(key).map(|v| (r.round, *v)))
            .collect()
    }

    fn summary(&self, w: Workload, arm: Arm, key: &str) -> Option<Summary> {
        stats::summarize_rounds(&self.values(w, arm, key))
    }

    /// Every value of one series of one arm, over all its runs.
    fn series(&self, w: Workload, arm: Arm, key: &str) -> Option<Summary> {
        let all: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.workload == w && r.arm == arm && r.error.is_none())
            .filter_map(|r| r.series.get(key))
            .flatten()
            .copied()
            .collect();
        stats::summarize(&all)
    }

    /// The untraced run `arm` is compared with: the one on the same work
    /// (the bpftrace arm runs on the peer's share of it), and for the read
    /// loop the run with sampling on at the same rate and no reader.
    fn baseline(arm: Arm) -> Arm {
        match arm {
            Arm::Bpftrace | Arm::PeerBaseline => Arm::PeerBaseline,
            Arm::HeapReadLoop | Arm::HeapReadOther => Arm::GoSampler,
            _ => Arm::Untraced,
        }
    }

    /// How many times the work `arm` gets the full work is.
    fn work_factor(&self, w: Workload, arm: Arm) -> f64 {
        w.units(self.sizes) as f64 / w.units(&self.sizes.for_arm(arm)) as f64
    }

    /// The arm's name in the tables, with its share of the work if partial.
    fn label(&self, arm: Arm) -> String {
        let share = self.sizes.peer_share;
        match arm {
            Arm::Bpftrace => format!("bpftrace, 1/{share} of the work"),
            Arm::PeerBaseline => format!("untraced, 1/{share} of the work"),
            _ => arm.name().to_string(),
        }
    }

    /// Per round, seconds `arm` took beyond its baseline, for the full work:
    /// an arm on a share of the work has its added time scaled up by the
    /// same factor (added time per unit of work, times the full work).
    fn added_by_round(&self, w: Workload, arm: Arm) -> Vec<(usize, f64)> {
        let factor = self.work_factor(w, arm);
        stats::paired(
            &self.values(w, arm, "seconds"),
            &self.values(w, Self::baseline(arm), "seconds"),
            |a, b| (a - b) * factor,
        )
    }

    /// Per-round `arm / baseline` of a figure.
    fn ratio(&self, w: Workload, arm: Arm, key: &str) -> Option<Summary> {
        self.ratio_to(w, arm, Self::baseline(arm), key)
    }

    /// Per-round `arm / base` of a figure.
    fn ratio_to(&self, w: Workload, arm: Arm, base: Arm, key: &str) -> Option<Summary> {
        stats::summarize_rounds(&stats::paired(
            &self.values(w, arm, key),
            &self.values(w, base, key),
            |a, b| a / b,
        ))
    }

    /// Per-round seconds added over the baseline, for the full work.
    fn added(&self, w: Workload, arm: Arm) -> Option<Summary> {
        stats::summarize_rounds(&self.added_by_round(w, arm))
    }

    /// Per round, microseconds of `arm`'s added time per sample leak
    /// handled in `sampled_by` (a leak arm at the same rate) that round.
    fn per_sample_us(&self, w: Workload, arm: Arm, sampled_by: Arm) -> Option<Summary> {
        stats::summarize_rounds(&stats::paired(
            &self.added_by_round(w, arm),
            &self.values(w, sampled_by, "samples"),
            |added, n| 1e6 * added / n,
        ))
    }

    /// Per round, microseconds of leak's own CPU per sample.
    fn tracer_cpu_per_sample_us(&self, w: Workload, arm: Arm) -> Option<Summary> {
        stats::summarize_rounds(&stats::paired(
            &self.values(w, arm, "tracer_cpu_attached_s"),
            &self.values(w, arm, "samples"),
            |cpu, n| 1e6 * cpu / n,
        ))
    }

    fn failures(&self) -> Vec<&Run> {
        self.runs.iter().filter(|r| r.error.is_some()).collect()
    }

    /// The commands of a records or goroutines arm with placeholders, as
    /// shell lines.
    fn records_commands(&self, arm: Arm) -> Vec<String> {
        let (leak, scratch) = ("target/release/leak", "target/bench/scratch");
        let mut lines = arms::commands(arm, self.sizes, leak, scratch);
        lines.extend(goroutine_arms::commands(arm, self.sizes, leak, scratch));
        lines
    }

    /// The command of an arm with placeholders, as a shell line.
    fn command(&self, arm: Arm, bin: &str) -> Option<String> {
        let argv = tracer::command_line(
            arm,
            "target/release/leak",
            "bpftrace",
            bin,
            "$PID",
            "target/bench/scratch",
        )?;
        Some(
            argv.iter()
                .map(|a| {
                    if a.contains(' ') || a.contains('"') {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    /// The workload's command line with the work `arm` gets.
    fn workload_command(&self, w: Workload, arm: Arm) -> String {
        let sizes = self.sizes.for_arm(arm);
        let line = std::iter::once(format!("target/bench/bin/{}", w.program()))
            .chain(w.args(&sizes))
            .collect::<Vec<_>>()
            .join(" ");
        if matches!(w, Workload::Service | Workload::Seed) {
            format!(
                "{line}   # then: target/bench/bin/benchload -url http://$ADDR/work -n {} -c 8",
                w.units(&sizes)
            )
        } else {
            line
        }
    }
}

/// results.json: the machine, the sizes, the commands and every run.
pub fn results_json(doc: &Document) -> String {
    let m = doc.machine;
    let runs: Vec<Value> = doc
        .runs
        .iter()
        .map(|r| {
            json!({
                "round": r.round,
                "workload": r.workload.name(),
                "arm": r.arm.name(),
                "loadavg_1m": finite(r.loadavg),
                "metrics": r.metrics,
                "series": r.series,
                "error": r.error,
            })
        })
        .collect();
    let mut commands = serde_json::Map::new();
    for w in Workload::ALL.into_iter().filter(|w| !w.is_native()) {
        commands.insert(
            format!("{} workload", w.name()),
            json!(doc.workload_command(w, Arm::Untraced)),
        );
        let arms = w.arms(true);
        if arms.contains(&Arm::Bpftrace) {
            commands.insert(
                format!("{} workload, peer's work", w.name()),
                json!(doc.workload_command(w, Arm::Bpftrace)),
            );
        }
        for arm in arms {
            if let Some(c) = doc.command(arm, &format!("target/bench/bin/{}", w.program())) {
                commands.insert(format!("{} {}", w.name(), arm.name()), json!(c));
            }
            let lines = doc.records_commands(arm);
            if !lines.is_empty() {
                commands.insert(format!("{} {}", w.name(), arm.name()), json!(lines));
            }
        }
    }
    commands.insert("native".into(), json!(native::command_lines(doc)));
    let n = &doc.sizes.native;
    let v = json!({
        "generated": m.date,
        "quick": doc.quick,
        "took_s": doc.took.as_secs_f64(),
        "machine": {
            "cores": m.cores,
            "cpu_model": m.cpu_model,
            "memory_gib": m.memory_gib,
            "kernel": m.kernel,
            "go": doc.kit.go_version,
            "bpftrace": doc.kit.bpftrace_version,
            "leak_commit": m.leak_commit,
        },
        "sizes": {
            "rounds": doc.sizes.rounds,
            "service_requests": doc.sizes.service_requests,
            "service_concurrency": 8,
            "json_records": doc.sizes.json_records,
            "large_objects": doc.sizes.large_objects,
            "scale_stacks": 10u64.pow(doc.sizes.scale_depth),
            "mmap_cycles": doc.sizes.mmap_cycles,
            "peer_share": doc.sizes.peer_share,
            "heap_reads": doc.sizes.heap_reads,
            "heap_read_interval_ms": arms::READ_INTERVAL.as_millis() as u64,
            "seed_pairs": arms::SEED_PAIRS,
            "seed_requests": doc.sizes.seed_requests,
            "goroutines": doc.sizes.goroutines,
            "goroutine_reads": doc.sizes.goroutine_reads,
            "native_pairs": n.pairs,
            "native_requests": n.requests,
            "native_stacks": n.stacks,
            "native_slow_share": n.slow_share,
        },
        "leak_top_available": doc.kit.leak_top,
        "commands": commands,
        "runs": runs,
    });
    serde_json::to_string_pretty(&v).expect("plain values serialize") + "\n"
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bench::Metrics;

    pub(super) fn run(round: usize, workload: Workload, arm: Arm, seconds: f64) -> Run {
        Run {
            round,
            workload,
            arm,
            loadavg: 0.5,
            metrics: Metrics::from([("seconds", seconds)]),
            series: Default::default(),
            error: None,
        }
    }

    pub(super) fn with_doc(runs: &[Run], check: impl FnOnce(&Document)) {
        let machine = Machine {
            cores: 2,
            cpu_model: "cpu".into(),
            memory_gib: 1.0,
            kernel: "6.18".into(),
            leak_commit: "abc".into(),
            date: "today".into(),
        };
        let kit = Kit {
            leak: "leak".into(),
            leak_given: false,
            bpftrace: "bpftrace".into(),
            bpftrace_version: "v0".into(),
            mallocgc: Default::default(),
            go_version: "go".into(),
            leak_top: true,
            bin_dir: "bin".into(),
            scratch: "scratch".into(),
            native: crate::bench::native::Tools::none(),
        };
        let doc = Document {
            machine: &machine,
            kit: &kit,
            sizes: &Sizes::FULL,
            runs,
            took: Duration::from_secs(60),
            quick: false,
            results_path: "bench/results.json".into(),
        };
        check(&doc);
    }

    #[test]
    fn the_peer_is_compared_on_its_share_and_priced_for_the_full_work() {
        let w = Workload::BatchJson;
        let runs = [
            run(0, w, Arm::Untraced, 1.0),
            run(0, w, Arm::Leak, 1.1),
            run(0, w, Arm::PeerBaseline, 0.125),
            run(0, w, Arm::Bpftrace, 3.125),
        ];
        with_doc(&runs, |doc| {
            let median = |s: Option<Summary>| s.unwrap().median;
            // 3 s more than the untraced run on an eighth of the work: 24 s
            // for the whole of it.
            assert_eq!(median(doc.added(w, Arm::Bpftrace)), 24.0);
            assert_eq!(median(doc.ratio(w, Arm::Bpftrace, "seconds")), 25.0);
            assert!((median(doc.added(w, Arm::Leak)) - 0.1).abs() < 1e-9);
            assert!((median(doc.ratio(w, Arm::Leak, "seconds")) - 1.1).abs() < 1e-9);
            let md = markdown(doc, None);
            assert!(md.contains("| bpftrace, 1/8 of the work | 3.125 | 25.000× | 24.000 |"));
            assert!(md.contains("| untraced, 1/8 of the work | 0.125 | 1.000× | — |"));
            assert!(md.contains("-mode json -n 15000"), "{md}");
        });
    }

    #[test]
    fn leak_top_is_shown_beside_its_floor() {
        let w = Workload::Mmap;
        let runs = [
            run(0, w, Arm::Untraced, 1.0),
            run(0, w, Arm::LeakTop, 1.08),
            run(0, w, Arm::LeakTopEmpty, 1.05),
        ];
        with_doc(&runs, |doc| {
            let md = markdown(doc, None);
            assert!(
                md.contains(
                    "| leak top ≤ 1.08× on mmap/munmap | 1.080× \
                     (empty programs on the same hooks: 1.050×) | met |"
                ),
                "{md}"
            );
            assert!(md.contains("| empty programs on the same hooks | 1.050 | 1.050× |"));
            assert!(md.contains("against the floor: 1.029×"), "{md}");
            assert!(md.contains("leak top --bench-empty-programs"));
        });
    }
}
