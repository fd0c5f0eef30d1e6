//! The native section of BENCHMARKS.md and its rows in the targets table:
//! what following malloc and free costs a C program under leak, next to
//! heaptrack and to bpftrace doing what bcc's memleak does; what each
//! probe costs; the tracer's memory at 10^5 stacks.
//!
//! Every figure is per unit of work (a malloc/free pair, a request), paired
//! by round with the untraced run: the slow arms run on a share of the work.

use std::fmt::Write as _;

use super::{
    markdown::{cell, status},
    Document,
};
use crate::bench::{
    native::{self, tools::HeaptrackMode},
    stats, Arm, Workload,
};

/// leak's default mode adds at most this share of bpftrace's added time.
const PEER_SHARE_GOAL: f64 = 0.2;
/// Tracer peak RSS at 10^5 native stacks, MiB.
const RSS_GOAL_MIB: f64 = 200.0;

/// Per round, µs `arm` adds per unit of work (pair, request) over the
/// untraced run; `key` is a per-unit figure (`per_unit_us`,
/// `per_malloc_us`, `per_free_us`).
fn added(doc: &Document, w: Workload, arm: Arm, key: &str) -> Vec<(usize, f64)> {
    stats::paired(
        &doc.values(w, arm, key),
        &doc.values(w, Arm::Untraced, key),
        |a, b| a - b,
    )
}

/// Per round, µs added per malloc/free pair (per unit / mallocs a unit).
fn added_per_pair(doc: &Document, w: Workload, arm: Arm) -> Vec<(usize, f64)> {
    stats::paired(
        &added(doc, w, arm, "per_unit_us"),
        &doc.values(w, arm, "mallocs_per_unit"),
        |a, per| a / per,
    )
}

/// The median of `arm`'s per-round added time over the median of
/// `peer`'s (a per-round quotient swings wildly when the server's added
/// time is within its noise).
fn share_of(doc: &Document, w: Workload, arm: Arm, peer: Arm) -> Option<f64> {
    let median = |a| Some(stats::summarize_rounds(&added(doc, w, a, "per_unit_us"))?.median);
    let (a, p) = (median(arm)?, median(peer)?);
    (p > 0.0).then(|| a / p)
}

/// Why an arm did not run here, if it did not.
fn skipped(doc: &Document, arm: Arm) -> Option<String> {
    doc.kit.native.skipped(arm)
}

/// `0.21 (0.19–0.24): 2.40 µs vs 11.6 µs a pair`, or why there is none.
fn share_cell(doc: &Document, w: Workload, peer: Arm, goal: f64) -> (String, Option<bool>) {
    if let Some(why) = skipped(doc, peer) {
        return (format!("n/a ({} skipped: {why})", peer.name()), None);
    }
    let s = share_of(doc, w, Arm::Leak, peer);
    let a = |arm| stats::summarize_rounds(&added_per_pair(doc, w, arm));
    let text = match (s, a(Arm::Leak), a(peer)) {
        (Some(s), Some(l), Some(p)) => format!(
            "{s:.2} (medians): {} µs vs {} µs a malloc/free pair",
            cell(Some(l), 2),
            cell(Some(p), 2)
        ),
        _ => "—".into(),
    };
    (text, s.map(|s| s <= goal))
}

/// The rows of the targets table (none if no native workload ran).
pub(super) fn targets(doc: &Document, o: &mut String) {
    if !doc.runs.iter().any(|r| r.workload.is_native()) {
        return;
    }
    for w in [Workload::NativeChurn, Workload::NativeServer] {
        let (text, met) = share_cell(doc, w, Arm::Memleak, PEER_SHARE_GOAL);
        let _ = writeln!(
            o,
            "| {}: leak's default mode adds ≤ 1/5 of bpftrace's (memleak's method) added time | {text} | {} |",
            w.name(),
            status(met)
        );
    }
    let (text, met) = share_cell(doc, Workload::NativeServer, Arm::Heaptrack, 1.0);
    let _ = writeln!(
        o,
        "| native-server: leak's default mode adds no more time than heaptrack | {text} | {} |",
        status(met)
    );
    let (w, arm) = (Workload::NativeScale, Arm::LeakScale);
    let n = doc.sizes.native.stacks;
    let rss = doc.summary(w, arm, "tracer_peak_rss_mib");
    let _ = writeln!(
        o,
        "| native-scale: {n} native stacks at `--rate 1`, tracer peak RSS ≤ {RSS_GOAL_MIB} MiB | {} MiB | {} |",
        cell(rss, 1),
        status(rss.map(|r| r.median <= RSS_GOAL_MIB))
    );
    let lines = doc.summary(w, arm, "folded_lines");
    let dropped: f64 = doc
        .values(w, arm, "dropped_allocs")
        .iter()
        .map(|v| v.1)
        .sum();
    let _ = writeln!(
        o,
        "| native-scale: every one of the {n} stacks written, drops counted | {} folded lines; {dropped} allocations dropped in all runs | {} |",
        cell(lines, 0),
        status(lines.map(|l| l.min >= n as f64))
    );
}

/// The section: the method, each workload's table, the probes' costs,
/// the scale run, the commands.
pub(super) fn section(doc: &Document, o: &mut String) {
    if !doc.kit.native.wanted && !doc.runs.iter().any(|r| r.workload.is_native()) {
        return;
    }
    intro(doc, o);
    for w in [Workload::NativeChurn, Workload::NativeServer] {
        arms_table(doc, w, o);
    }
    probes_table(doc, o);
    scale_table(doc, o);
    commands(doc, o);
}

fn intro(doc: &Document, o: &mut String) {
    let t = &doc.kit.native;
    let s = &doc.sizes.native;
    let loads: Vec<f64> = doc
        .runs
        .iter()
        .filter(|r| r.workload.is_native())
        .map(|r| r.loadavg)
        .collect();
    let heaptrack = match &t.heaptrack {
        HeaptrackMode::Attach => "attached with `heaptrack -p PID` (gdb injects it)".to_string(),
        HeaptrackMode::Preload(why) => format!(
            "started by heaptrack with its library preloaded (`heaptrack PROGRAM`: the same \
             hooks as `-p`, whose gdb injection fails here: {why})"
        ),
        HeaptrackMode::Missing(why) => format!("skipped: {why}"),
    };
    let _ = writeln!(
        o,
        "## Native allocations: a C program under leak, heaptrack and bpftrace\n\n\
         `tests/c/nbench.c`, built `-O2 -fomit-frame-pointer` ({}), against glibc's malloc: \
         **native-churn**, {} malloc/free pairs of 16–527 bytes (64 mallocs, then 64 frees, \
         each phase timed apart); **native-server**, {} requests that each hash a 16 KiB \
         body and make five allocations (one more kept every 8th request: a slow leak), so \
         allocation is a small share of the time. The program waits for a line on stdin, \
         so every tracer attaches first, and times its work itself. Arms: untraced; `leak \
         trace --pid` at its default rate (512 KiB) and at `--rate 1`; heaptrack ({}, {}); \
         bpftrace ({}) doing what bcc's memleak does (a uprobe on malloc keeps the size per \
         thread, a uretprobe keys size, time and `ustack` by the address, a uprobe on free \
         deletes it), and the same two uprobes empty: that placement's floor. bpftrace \
         0.17 puts a library's uprobes in every process that maps it (its `-p` is for \
         USDT), so its probes keep to the target with `/pid == PID/`; each call in the \
         target pays the same trap. `--rate 1` and both bpftrace arms run on 1/{} of the \
         work; every figure is per unit of work, against the untraced run of the same \
         round. 1-minute load average at the start of these runs: {}.\n",
        t.cc,
        s.pairs,
        s.requests,
        t.heaptrack_version,
        heaptrack,
        t.bpftrace.as_deref().unwrap_or("missing"),
        s.slow_share,
        cell(stats::summarize(&loads), 2),
    );
    let skipped: Vec<String> = [Arm::Heaptrack, Arm::Memleak, Arm::LeakBpfStats]
        .into_iter()
        .filter_map(|a| Some(format!("{} ({})", a.name(), skipped(doc, a)?)))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(o, "Skipped here: {}.\n", skipped.join("; "));
    }
}

/// What one unit of `w`'s work is called.
fn unit(w: Workload) -> &'static str {
    match w {
        Workload::NativeChurn => "pair",
        Workload::NativeServer => "request",
        _ => "stack",
    }
}

/// Each arm's time, per unit, against the untraced run (and on the
/// server, per malloc/free pair of its requests).
fn arms_table(doc: &Document, w: Workload, o: &mut String) {
    let u = unit(w);
    let server = w == Workload::NativeServer;
    let pair = if server {
        " µs added a malloc/free pair |"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "### {}: {} {u}s\n\n| Arm | Work ({u}s) | Time (s) | µs a {u} | Ratio to untraced | µs added a {u} |{pair} Tracer CPU attached (s) | Tracer peak RSS (MiB) | Samples |\n|---|---|---|---|---|---|{}---|---|---|",
        w.name(),
        native::units(w, &doc.sizes.native),
        if server { "---|" } else { "" },
    );
    for arm in native::arms(w) {
        if let Some(why) = skipped(doc, arm) {
            let _ = writeln!(o, "| {} | skipped: {why} |", arm.name());
            continue;
        }
        let _ = writeln!(o, "{}", arm_row(doc, w, arm, server));
    }
    o.push('\n');
}

/// One row of [`arms_table`].
fn arm_row(doc: &Document, w: Workload, arm: Arm, per_pair: bool) -> String {
    let sm = |key: &str, digits: usize| cell(doc.summary(w, arm, key), digits);
    let ratio = stats::paired(
        &doc.values(w, arm, "per_unit_us"),
        &doc.values(w, Arm::Untraced, "per_unit_us"),
        |a, b| a / b,
    );
    let pair = if per_pair {
        let p = stats::summarize_rounds(&added_per_pair(doc, w, arm));
        format!(" {} |", cell(p, 3))
    } else {
        String::new()
    };
    format!(
        "| {} | {} | {} | {} | {}× | {} |{pair} {} | {} | {} |",
        arm.name(),
        native::work(w, &doc.sizes.native, arm),
        sm("seconds", 3),
        sm("per_unit_us", 3),
        cell(stats::summarize_rounds(&ratio), 2),
        cell(
            stats::summarize_rounds(&added(doc, w, arm, "per_unit_us")),
            3
        ),
        sm("tracer_cpu_attached_s", 3),
        sm("tracer_peak_rss_mib", 1),
        sm("samples", 0),
    )
}

/// The churn's malloc and free phases apart: what each probe adds a call,
/// and leak's eBPF programs' own run time.
fn probes_table(doc: &Document, o: &mut String) {
    let w = Workload::NativeChurn;
    let _ = writeln!(
        o,
        "### What each probe costs a call (native-churn)\n\nThe malloc phases and the free \
         phases of the churn, each over its calls; added = the arm's µs a call minus the \
         untraced run's, per round. leak's malloc pays its entry probe and its return \
         probe; bpftrace's memleak method the same two; the empty probes sit on the \
         functions' first instructions.\n\n| Arm | malloc: µs a call | added a malloc | free: µs a call | added a free |\n|---|---|---|---|---|"
    );
    for arm in native::arms(w)
        .into_iter()
        .filter(|&a| skipped(doc, a).is_none())
    {
        let per = |key| stats::summarize_rounds(&added(doc, w, arm, key));
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            arm.name(),
            cell(doc.summary(w, arm, "per_malloc_us"), 3),
            cell(per("per_malloc_us"), 3),
            cell(doc.summary(w, arm, "per_free_us"), 3),
            cell(per("per_free_us"), 3),
        );
    }
    o.push('\n');
    bpf_run_time(doc, o);
}

/// leak's eBPF programs' run time a call, counted by the kernel.
fn bpf_run_time(doc: &Document, o: &mut String) {
    let (w, arm) = (Workload::NativeChurn, Arm::LeakBpfStats);
    if let Some(why) = skipped(doc, arm) {
        let _ = writeln!(o, "leak's eBPF programs' run time: not measured ({why}).\n");
        return;
    }
    let sm = |key: &str, digits: usize| cell(doc.summary(w, arm, key), digits);
    let _ = writeln!(
        o,
        "leak's eBPF programs' own run time a call, counted by the kernel during the \
         \"{}\" arm (`BPF_ENABLE_STATS`, which adds two clock reads a program run): \
         `native_malloc` {} ns over {} calls, `native_alloc_return` {} ns over {} calls, \
         `native_free` {} ns over {} calls. The rest of what a call adds is the uprobe's \
         trap into the kernel and back (two for a malloc: its entry and its return).\n",
        arm.name(),
        sm("bpf_malloc_ns", 0),
        sm("bpf_malloc_calls", 0),
        sm("bpf_return_ns", 0),
        sm("bpf_return_calls", 0),
        sm("bpf_free_ns", 0),
        sm("bpf_free_calls", 0),
    );
}

/// The tracer's memory and stop time at 10^5 distinct stacks.
fn scale_table(doc: &Document, o: &mut String) {
    let (w, arm) = (Workload::NativeScale, Arm::LeakScale);
    let n = doc.sizes.native.stacks;
    let _ = writeln!(
        o,
        "### native-scale: {n} distinct native stacks at `--rate 1`\n\nEach allocation (64 \
         bytes, all kept) comes through five frames chosen among ten functions, its own \
         stack; `leak trace --pid PID --rate 1` with every output asked for, stopped with \
         SIGINT after the work.\n\n| Figure | Median (min–max) |\n|---|---|"
    );
    let sm = |key: &str, digits: usize| cell(doc.summary(w, arm, key), digits);
    let rows = [
        ("Allocations the program made", sm("mallocs", 0)),
        ("Stacks in the folded output", sm("folded_lines", 0)),
        ("Samples leak counted", sm("samples", 0)),
        (
            "Allocations dropped (ring buffer full)",
            sm("dropped_allocs", 0),
        ),
        ("Tracer peak RSS (MiB)", sm("tracer_peak_rss_mib", 1)),
        ("Tracer CPU, whole life (s)", sm("tracer_cpu_total_s", 2)),
        ("SIGINT to exit, outputs written (s)", sm("stop_s", 2)),
        ("The program's time for its work (s)", sm("seconds", 3)),
        ("Outputs written", written(doc)),
    ];
    for (label, value) in rows {
        let _ = writeln!(o, "| {label} | {value} |");
    }
    o.push('\n');
}

/// Which of the scale run's four outputs leak wrote in every run.
fn written(doc: &Document) -> String {
    let (w, arm) = (Workload::NativeScale, Arm::LeakScale);
    let names = [
        ("wrote_folded", "folded"),
        ("wrote_svg", "SVG"),
        ("wrote_pprof", "pprof"),
        ("wrote_json", "JSON"),
    ];
    let (mut yes, mut no) = (vec![], vec![]);
    for (key, name) in names {
        match doc.summary(w, arm, key) {
            Some(s) if s.min >= 1.0 => yes.push(name),
            Some(_) => no.push(name),
            None => {}
        }
    }
    match (yes.is_empty(), no.is_empty()) {
        (true, true) => "—".into(),
        (_, true) => yes.join(", "),
        _ => format!("{}; **not** {}", yes.join(", "), no.join(", ")),
    }
}

/// The native arms' command lines, with placeholders.
fn commands(doc: &Document, o: &mut String) {
    let _ = writeln!(
        o,
        "### Native commands\n\nPer round, in this order (`$PID` the program's, `$LIBC` the \
         C library it maps; the program is told to go once the tracer has attached):\n\n```sh"
    );
    for line in command_lines(doc) {
        let _ = writeln!(o, "{line}");
    }
    o.push_str("```\n\n");
}

/// The lines of [`commands`], also results.json's.
pub(super) fn command_lines(doc: &Document) -> Vec<String> {
    let s = &doc.sizes.native;
    let mut lines = vec![];
    for w in [
        Workload::NativeChurn,
        Workload::NativeServer,
        Workload::NativeScale,
    ] {
        lines.push(format!("# {}", w.name()));
        for arm in native::arms(w) {
            let n = native::work(w, s, arm);
            let program = format!(
                "target/bench/bin/{} {}",
                native::PROGRAM,
                native::args(w, n).join(" ")
            );
            let argv = native::tracer_argv(
                arm,
                w,
                "target/release/leak",
                "bpftrace",
                "$PID",
                "$LIBC",
                "target/bench/scratch",
            );
            lines.push(match (arm, argv) {
                (Arm::Heaptrack, _) => match &doc.kit.native.heaptrack {
                    HeaptrackMode::Attach => format!("{program} & heaptrack -p $PID"),
                    _ => format!("heaptrack {program}"),
                },
                (_, Some(argv)) => format!("{program} & {}   # {}", shell(&argv), arm.name()),
                (_, None) => format!("{program}   # {}", arm.name()),
            });
        }
    }
    lines
}

/// `argv` as a shell line, quoting words with spaces.
fn shell(argv: &[String]) -> String {
    let quote = |a: &String| {
        if a.contains(' ') || a.contains('"') {
            format!("'{a}'")
        } else {
            a.clone()
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        native::Tools,
        report::{tests::run, Machine},
        Kit, Run, Sizes,
    };

    /// A document of `runs` whose tools were all found.
    fn with_native_doc(runs: &[Run], check: impl FnOnce(&Document)) {
        let machine = Machine {
            cores: 2,
            cpu_model: "cpu".into(),
            memory_gib: 1.0,
            kernel: "6.18".into(),
            leak_commit: "abc".into(),
            date: "today".into(),
        };
        let native = Tools {
            wanted: true,
            cc: "cc 12".into(),
            heaptrack: HeaptrackMode::Preload("gdb cannot call".into()),
            heaptrack_version: "heaptrack 1.4.0".into(),
            bpftrace: Ok("bpftrace v0.17.0".into()),
            bpftool: true,
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
            native,
        };
        let doc = Document {
            machine: &machine,
            kit: &kit,
            sizes: &Sizes::FULL,
            runs,
            took: std::time::Duration::from_secs(60),
            quick: false,
            results_path: "bench/results.json".into(),
        };
        check(&doc);
    }

    /// A run of `w` whose program took `per_unit` µs a unit, `mallocs` a unit.
    fn per_unit(round: usize, w: Workload, arm: Arm, per_unit: f64, mallocs: f64) -> Run {
        let mut r = run(round, w, arm, 1.0);
        r.metrics.insert("per_unit_us", per_unit);
        r.metrics.insert("mallocs_per_unit", mallocs);
        r
    }

    #[test]
    fn leak_is_priced_against_bpftrace_and_heaptrack_per_unit() {
        let mut runs = vec![];
        for round in 0..3 {
            let (c, s) = (Workload::NativeChurn, Workload::NativeServer);
            runs.push(per_unit(round, c, Arm::Untraced, 0.01, 1.0));
            runs.push(per_unit(round, c, Arm::Leak, 2.01, 1.0));
            runs.push(per_unit(round, c, Arm::Memleak, 12.01, 1.0));
            runs.push(per_unit(round, s, Arm::Untraced, 25.0, 5.0));
            runs.push(per_unit(round, s, Arm::Leak, 30.0, 5.0));
            runs.push(per_unit(round, s, Arm::Memleak, 75.0, 5.0));
            runs.push(per_unit(round, s, Arm::Heaptrack, 27.5, 5.0));
        }
        let mut scale = run(0, Workload::NativeScale, Arm::LeakScale, 1.0);
        scale.metrics.insert("tracer_peak_rss_mib", 150.0);
        scale.metrics.insert("folded_lines", 100_001.0);
        runs.push(scale);
        with_native_doc(&runs, |doc| {
            let mut o = String::new();
            targets(doc, &mut o);
            assert!(o.contains("| native-churn: leak's default mode adds ≤ 1/5 of bpftrace's (memleak's method) added time | 0.17 (medians): 2.00 (2.00–2.00) µs vs 12.00 (12.00–12.00) µs a malloc/free pair | met |"), "{o}");
            assert!(o.contains("| native-server: leak's default mode adds ≤ 1/5 of bpftrace's (memleak's method) added time | 0.10 (medians): 1.00 (1.00–1.00) µs vs 10.00 (10.00–10.00) µs a malloc/free pair | met |"), "{o}");
            assert!(
                o.contains("no more time than heaptrack | 2.00 (medians)"),
                "{o}"
            );
            assert!(o.contains("| **missed** |"), "{o}");
            assert!(
                o.contains("tracer peak RSS ≤ 200 MiB | 150.0 MiB | met |"),
                "{o}"
            );
            let md = crate::bench::report::markdown(doc, None);
            assert!(md.contains("### native-server: 40000 requests"), "{md}");
            assert!(
                md.contains("heaptrack target/bench/bin/nbench -mode server -n 40000"),
                "{md}"
            );
        });
    }
}
