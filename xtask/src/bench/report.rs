//! What the bench writes: BENCHMARKS.md (figures, ratios against the
//! targets, the machine, the exact commands) and results.json (every run).
//! Hand-written analysis below a marker in BENCHMARKS.md survives reruns.

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Duration};

use serde_json::{json, Value};

use super::{
    stats::{self, Summary},
    tracer, Arm, Kit, Run, Sizes, Workload,
};
use crate::root;

/// Lines after this one in BENCHMARKS.md are kept when the bench rewrites it.
pub const KEEP_MARKER: &str =
    "<!-- Everything below this line is written by hand; `cargo xtask bench` keeps it. -->";

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

    /// Per round, seconds `arm` took beyond the untraced run.
    fn added_by_round(&self, w: Workload, arm: Arm) -> Vec<(usize, f64)> {
        stats::paired(
            &self.values(w, arm, "seconds"),
            &self.values(w, Arm::Untraced, "seconds"),
            |a, b| a - b,
        )
    }

    /// Per-round `arm / untraced` of a figure.
    fn ratio(&self, w: Workload, arm: Arm, key: &str) -> Option<Summary> {
        stats::summarize_rounds(&stats::paired(
            &self.values(w, arm, key),
            &self.values(w, Arm::Untraced, key),
            |a, b| a / b,
        ))
    }

    /// Per-round seconds added over the untraced run.
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

    fn workload_command(&self, w: Workload) -> String {
        let line = std::iter::once(format!("target/bench/bin/{}", w.program()))
            .chain(w.args(self.sizes))
            .collect::<Vec<_>>()
            .join(" ");
        if w == Workload::Service {
            format!(
                "{line}   # then: target/bench/bin/benchload -url http://$ADDR/work -n {} -c 8",
                self.sizes.service_requests
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
                "error": r.error,
            })
        })
        .collect();
    let mut commands = serde_json::Map::new();
    for w in Workload::ALL {
        commands.insert(
            format!("{} workload", w.name()),
            json!(doc.workload_command(w)),
        );
        for arm in w.arms(true) {
            if let Some(c) = doc.command(arm, &format!("target/bench/bin/{}", w.program())) {
                commands.insert(format!("{} {}", w.name(), arm.name()), json!(c));
            }
        }
    }
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

/// `1.23 (1.10–1.40)` with `digits` decimals, or `—`.
fn cell(s: Option<Summary>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits),
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "—".into(),
    }
}

/// `1.012×` for a ratio cell, or `—`.
fn ratio_cell(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.3}× ({:.3}–{:.3})", s.median, s.min, s.max),
        Some(s) => format!("{:.3}×", s.median),
        None => "—".into(),
    }
}

fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "n/a",
    }
}

/// BENCHMARKS.md. `previous` is the file as it was, whose hand-written part
/// (below [`KEEP_MARKER`]) is kept.
pub fn markdown(doc: &Document, previous: Option<&str>) -> String {
    let m = doc.machine;
    let s = doc.sizes;
    let mut o = String::new();
    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "What does tracing a Go program with `leak` cost, next to the program untraced and \
         next to the bpftrace one-liner people use today? Written by `cargo xtask bench`{} on \
         {} ({} rounds, {:.1} minutes); every run is in `{}`. Rerun it as root with \
         `cargo xtask bench` (`--rounds N`, `--quick` for a smaller run written under \
         `target/bench/`).\n",
        if doc.quick { " --quick" } else { "" },
        m.date,
        s.rounds,
        doc.took.as_secs_f64() / 60.0,
        doc.results_path.display()
    );
    let loads: Vec<f64> = doc.runs.iter().map(|r| r.loadavg).collect();
    let load = stats::summarize(&loads);
    let _ = writeln!(o, "## Machine\n");
    let _ = writeln!(
        o,
        "- {} cores: {}; {:.1} GiB memory",
        m.cores, m.cpu_model, m.memory_gib
    );
    let _ = writeln!(o, "- Linux {}", m.kernel);
    let _ = writeln!(
        o,
        "- {}; workloads built with it; {}",
        doc.kit.go_version, doc.kit.bpftrace_version
    );
    let _ = writeln!(o, "- leak: commit {}, release build", m.leak_commit);
    let _ = writeln!(
        o,
        "- 1-minute load average at the start of each run: {} — above about 1 on this \
         machine, other work (builds by people sharing it) competed for the cores and \
         the figures are noisier than on an idle host.\n",
        cell(load, 2)
    );
    if !doc.failures().is_empty() {
        let _ = writeln!(o, "## Failed runs\n");
        for r in doc.failures() {
            let _ = writeln!(
                o,
                "- round {}, {}, {}: {}",
                r.round + 1,
                r.workload.name(),
                r.arm.name(),
                r.error.as_deref().unwrap_or_default()
            );
        }
        o.push('\n');
    }

    targets(doc, &mut o);

    let _ = writeln!(
        o,
        "## Service: {} requests, concurrency 8\n\nA standard-library HTTP service \
         (`tests/go/benchservice`: decode a small JSON order, build 40 records, encode them) \
         under closed-loop load from `tests/go/benchload` (after 200 uncounted warm-up \
         requests). Time ratio = time for the fixed requests / the untraced run's in the \
         same round.\n",
        s.service_requests
    );
    let _ = writeln!(
        o,
        "| Arm | Throughput (req/s) | p99 (ms) | Time ratio | p99 ratio | Tracer CPU (% of one core) | Tracer peak RSS (MiB) | Samples/s |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let w = Workload::Service;
    for arm in w.arms(true) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            arm.name(),
            cell(doc.summary(w, arm, "rps"), 0),
            cell(doc.summary(w, arm, "p99_ms"), 2),
            ratio_cell(doc.ratio(w, arm, "seconds")),
            ratio_cell(doc.ratio(w, arm, "p99_ms")),
            cell(doc.summary(w, arm, "tracer_core_pct"), 2),
            cell(doc.summary(w, arm, "tracer_peak_rss_mib"), 1),
            cell(doc.summary(w, arm, "samples_per_s"), 1),
        );
    }
    o.push('\n');

    for (w, title) in [
        (
            Workload::BatchJson,
            format!(
                "JSON round trips of {} small records (`benchbatch -mode json`)",
                s.json_records
            ),
        ),
        (
            Workload::BatchLarge,
            format!(
                "{} large objects: a 256 KiB buffer, a 256-entry map of slices and 512 rows each (`benchbatch -mode large`)",
                s.large_objects
            ),
        ),
    ] {
        let _ = writeln!(o, "## Batch: {title}\n");
        let _ = writeln!(
            o,
            "| Arm | Wall (s) | Ratio | Added (s) | Tracer CPU attached (s) | Tracer CPU (% of one core) | Tracer peak RSS (MiB) | Samples/s | Dropped (allocs/frees/stacks) |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
        for arm in w.arms(true) {
            let dropped = if arm.is_leak_trace() {
                let d = |k| {
                    doc.values(w, arm, k)
                        .iter()
                        .map(|x| x.1)
                        .sum::<f64>()
                };
                format!(
                    "{}/{}/{}",
                    d("dropped_allocs"),
                    d("dropped_frees"),
                    d("dropped_stacks")
                )
            } else {
                "—".into()
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                arm.name(),
                cell(doc.summary(w, arm, "seconds"), 3),
                ratio_cell(doc.ratio(w, arm, "seconds")),
                if arm == Arm::Untraced {
                    "—".into()
                } else {
                    cell(doc.added(w, arm), 3)
                },
                cell(doc.summary(w, arm, "tracer_cpu_attached_s"), 2),
                cell(doc.summary(w, arm, "tracer_core_pct"), 2),
                cell(doc.summary(w, arm, "tracer_peak_rss_mib"), 1),
                cell(doc.summary(w, arm, "samples_per_s"), 1),
                dropped,
            );
        }
        o.push('\n');
    }

    let _ = writeln!(o, "## Added time: leak against bpftrace\n");
    let _ = writeln!(
        o,
        "Seconds each traced run took beyond the untraced run of its round (medians of the \
         per-round differences), and how many times more bpftrace adds. When leak's median \
         added time is not above zero it is below the noise, and the ratio has no finite value.\n"
    );
    let _ = writeln!(
        o,
        "| Workload | bpftrace adds (s) | leak adds (s) | bpftrace / leak | leak --rate 4096 adds (s) | bpftrace / leak --rate 4096 |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for w in [Workload::Service, Workload::BatchJson, Workload::BatchLarge] {
        let peer = doc.added(w, Arm::Bpftrace);
        let ratio = |arm| match (peer, doc.added(w, arm)) {
            (Some(p), Some(l)) => match stats::added_time_ratio(p.median, l.median) {
                Some(r) => format!("{r:.0}×"),
                None => "∞ (leak within noise)".into(),
            },
            _ => "—".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            w.name(),
            cell(peer, 3),
            cell(doc.added(w, Arm::Leak), 3),
            ratio(Arm::Leak),
            cell(doc.added(w, Arm::LeakRate4096), 3),
            ratio(Arm::LeakRate4096),
        );
    }
    o.push('\n');

    let _ = writeln!(o, "## Where leak's added time goes, per sample\n");
    let _ = writeln!(
        o,
        "Added time (over the untraced run of the round) divided by the samples leak handled \
         in that round. The \"sampling on\" arms run the workload with Go's heap sampler on at \
         the same rate and no tracer, so their share is what Go's own sampler costs \
         (`mProf_Malloc` walking the stack and hashing it into a bucket); the rest is the \
         uprobes on the sampler and free paths, the eBPF programs and leak waking up to \
         read the ring buffer. Leak's CPU per sample is its \
         own user and system time while attached. With few samples (the default rate) \
         these are dominated by noise.\n"
    );
    let _ = writeln!(
        o,
        "| Workload | Rate | Samples | Added per sample (µs) | of which Go's sampler (µs) | leak's CPU per sample (µs) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for w in [Workload::Service, Workload::BatchJson, Workload::BatchLarge] {
        for (rate, arm, sampler) in [
            ("512 KiB", Arm::Leak, Arm::GoSampler),
            ("4096", Arm::LeakRate4096, Arm::GoSampler4096),
        ] {
            let _ = writeln!(
                o,
                "| {} | {rate} | {} | {} | {} | {} |",
                w.name(),
                cell(doc.summary(w, arm, "samples"), 0),
                cell(doc.per_sample_us(w, arm, arm), 1),
                cell(doc.per_sample_us(w, sampler, arm), 1),
                cell(doc.tracer_cpu_per_sample_us(w, arm), 1),
            );
        }
    }
    o.push('\n');

    let w = Workload::Scale;
    let arm = Arm::LeakScale;
    let _ = writeln!(
        o,
        "## Scale: {} distinct allocation stacks\n\n`tests/go/benchscale` allocates one \
         128-byte object through each of 10^{} distinct call paths (chains of calls among ten \
         functions, one per decimal digit) and keeps them all. leak traces it with `--rate 1` \
         (every allocation sampled) and writes folded stacks, an SVG flame graph, a pprof \
         profile and JSON; stop time is from SIGINT until leak has written them all and exited.\n",
        10u64.pow(s.scale_depth),
        s.scale_depth
    );
    let _ = writeln!(o, "| Figure | Median (min–max) |\n|---|---|");
    for (label, key, digits) in [
        ("Folded lines (distinct stacks written)", "folded_lines", 0),
        ("Samples handled", "samples", 0),
        ("Dropped allocs", "dropped_allocs", 0),
        ("Dropped frees", "dropped_frees", 0),
        ("Stacks that failed", "dropped_stacks", 0),
        ("Tracer peak RSS (MiB)", "tracer_peak_rss_mib", 1),
        ("SIGINT → all outputs written (s)", "stop_s", 2),
        ("Tracer CPU, whole life (s)", "tracer_cpu_total_s", 2),
        ("Workload time (s)", "seconds", 3),
    ] {
        let _ = writeln!(
            o,
            "| {label} | {} |",
            cell(doc.summary(w, arm, key), digits)
        );
    }
    o.push('\n');

    let _ = writeln!(o, "## leak top: mmap/munmap cycles\n");
    if doc.kit.leak_top {
        let w = Workload::Mmap;
        let _ = writeln!(
            o,
            "{} anonymous 64 KiB mmap / touch / munmap cycles (`tests/go/benchmmap`).\n",
            s.mmap_cycles
        );
        let _ = writeln!(
            o,
            "| Arm | Wall (s) | Ratio | Tracer CPU (% of one core) | Tracer peak RSS (MiB) |\n|---|---|---|---|---|"
        );
        for arm in w.arms(true) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                arm.name(),
                cell(doc.summary(w, arm, "seconds"), 3),
                ratio_cell(doc.ratio(w, arm, "seconds")),
                cell(doc.summary(w, arm, "tracer_core_pct"), 2),
                cell(doc.summary(w, arm, "tracer_peak_rss_mib"), 1),
            );
        }
        o.push('\n');
    } else {
        let _ = writeln!(
            o,
            "n/a: `leak top --help` did not run, so `leak top` has not landed in this build. \
             The arm (`tests/go/benchmmap` untraced vs under `leak top`) runs by itself once it does.\n"
        );
    }

    let _ = writeln!(o, "## Commands\n");
    let _ = writeln!(
        o,
        "Each workload is started first; the tracer is attached to its pid and the run \
         starts once the tracer says so (leak: `leak: tracing` on stderr; bpftrace: \
         `Attaching 1 probe...`). Batch programs then get a line on stdin, do their work \
         and time it themselves; the service is loaded by benchload. Tracers are stopped \
         with SIGINT and reaped with `wait4`, which gives their CPU time and peak RSS; \
         \"% of one core\" is the tracer's CPU while attached / the time attached \
         (/proc/PID/stat). Samples/s is the final report's sample count / time attached. \
         Per round the arms run in this order, then the next workload:\n"
    );
    o.push_str("```sh\n");
    for w in Workload::ALL {
        if w.arms(doc.kit.leak_top).is_empty() {
            continue;
        }
        let _ = writeln!(o, "# {}\n{}", w.name(), doc.workload_command(w));
        for arm in w.arms(true) {
            if let Some(c) = doc.command(arm, &format!("target/bench/bin/{}", w.program())) {
                let _ = writeln!(o, "{c}");
            }
            if let Some(rate) = arm.own_sampling_rate() {
                let _ = writeln!(
                    o,
                    "# {}: the workload with -memprofilerate {rate}, no tracer",
                    arm.name()
                );
            }
        }
    }
    o.push_str("```\n\n");
    let _ = writeln!(
        o,
        "The workloads do not import `net/http/pprof` or `runtime/pprof`, so Go starts them \
         with heap sampling off and `leak trace` turns it on at Go's default rate (512 KiB): \
         the leak arms include the cost of Go's own sampler, not just the probes.\n"
    );

    o.push_str(KEEP_MARKER);
    o.push('\n');
    let kept = previous
        .and_then(|p| p.split_once(KEEP_MARKER))
        .map(|(_, rest)| rest.trim_start_matches('\n').to_string())
        .unwrap_or_else(|| "\n## Analysis\n\n(Not written yet.)\n".to_string());
    if !kept.starts_with('\n') {
        o.push('\n');
    }
    o.push_str(&kept);
    o
}

/// The targets of issue 6, each with the measured figure and whether it was met.
fn targets(doc: &Document, o: &mut String) {
    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(
        o,
        "Medians of per-round ratios; each traced run is compared with the untraced run of \
         its round. \"missed\" means the median is past the target, whatever the cause \
         (see the analysis at the end).\n"
    );
    let _ = writeln!(o, "| Target | Measured | |\n|---|---|---|");
    for w in [Workload::Service, Workload::BatchJson, Workload::BatchLarge] {
        let r = doc.ratio(w, Arm::Leak, "seconds");
        let _ = writeln!(
            o,
            "| default mode ≤ 1.02× on {} (time) | {} | {} |",
            w.name(),
            ratio_cell(r),
            status(r.map(|r| r.median <= 1.02))
        );
    }
    let r = doc.ratio(Workload::Service, Arm::Leak, "p99_ms");
    let _ = writeln!(
        o,
        "| default mode ≤ 1.02× on service p99 | {} | {} |",
        ratio_cell(r),
        status(r.map(|r| r.median <= 1.02))
    );
    for w in [Workload::Service, Workload::BatchJson, Workload::BatchLarge] {
        let (peer, leak) = (doc.added(w, Arm::Bpftrace), doc.added(w, Arm::Leak));
        let (text, met) = match (peer, leak) {
            (Some(p), Some(l)) => match stats::added_time_ratio(p.median, l.median) {
                Some(r) => (
                    format!("{r:.0}× ({:.3} s vs {:.3} s)", p.median, l.median),
                    Some(r >= 50.0),
                ),
                None => (
                    format!(
                        "leak adds {:.3} s (within noise), bpftrace {:.3} s",
                        l.median, p.median
                    ),
                    Some(true),
                ),
            },
            _ => ("—".into(), None),
        };
        let _ = writeln!(
            o,
            "| ≥ 50× less added time than bpftrace on {} | {text} | {} |",
            w.name(),
            status(met)
        );
    }
    for w in [Workload::Service, Workload::BatchJson, Workload::BatchLarge] {
        let c = doc.summary(w, Arm::Leak, "tracer_core_pct");
        let _ = writeln!(
            o,
            "| tracer ≤ 2% of one core on {} | {} % | {} |",
            w.name(),
            cell(c, 2),
            status(c.map(|c| c.median <= 2.0))
        );
    }
    let sc = |k| doc.summary(Workload::Scale, Arm::LeakScale, k);
    let stacks = 10u64.pow(doc.sizes.scale_depth);
    let _ = writeln!(
        o,
        "| {stacks} stacks: tracer peak RSS ≤ 150 MiB | {} MiB | {} |",
        cell(sc("tracer_peak_rss_mib"), 1),
        status(sc("tracer_peak_rss_mib").map(|s| s.median <= 150.0))
    );
    let _ = writeln!(
        o,
        "| {stacks} stacks: outputs written ≤ 5 s after SIGINT | {} s | {} |",
        cell(sc("stop_s"), 2),
        status(sc("stop_s").map(|s| s.median <= 5.0))
    );
    let dropped: f64 = ["dropped_allocs", "dropped_frees", "dropped_stacks"]
        .iter()
        .flat_map(|k| doc.values(Workload::Scale, Arm::LeakScale, k))
        .map(|x| x.1)
        .sum();
    let seen = sc("folded_lines");
    let _ = writeln!(
        o,
        "| {stacks} stacks: every stack written, drops counted | {} folded lines; {dropped} dropped in all runs | {} |",
        cell(seen, 0),
        status(seen.map(|s| s.min >= stacks as f64))
    );
    let top = doc.ratio(Workload::Mmap, Arm::LeakTop, "seconds");
    let _ = writeln!(
        o,
        "| leak top ≤ 1.03× on mmap/munmap | {} | {} |\n",
        if doc.kit.leak_top {
            ratio_cell(top)
        } else {
            "n/a (leak top not built yet)".into()
        },
        status(top.map(|t| t.median <= 1.03))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_show_median_and_range() {
        let s = stats::summarize(&[1.0, 2.0, 4.0]);
        assert_eq!(cell(s, 1), "2.0 (1.0–4.0)");
        assert_eq!(ratio_cell(s), "2.000× (1.000–4.000)");
        assert_eq!(cell(None, 1), "—");
        assert_eq!(cell(stats::summarize(&[3.0]), 0), "3");
    }
}
