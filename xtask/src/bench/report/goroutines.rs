//! The goroutines section of BENCHMARKS.md and its rows in the targets
//! table: how long `leak goroutines` takes to read 10^5 goroutines, and
//! what the service pays while it is read every 100 ms, against the same
//! reads of another process.

use std::fmt::Write as _;

use super::{
    markdown::{cell, ratio_cell, status},
    Document,
};
use crate::bench::{
    records::READ_INTERVAL,
    stats::{self, Summary},
    Arm, Workload,
};

/// The goal for a read of every goroutine, in seconds.
const READ_GOAL_S: f64 = 1.0;
/// The goal for what being read costs the service beyond the reader's CPU.
const SERVICE_GOAL: f64 = 1.01;

/// Per round, the service read every 100 ms over the same reads of another
/// process: what reading the service itself adds beyond the reader's CPU.
fn reading_itself(doc: &Document, key: &str) -> Option<Summary> {
    let w = Workload::Service;
    stats::summarize_rounds(&stats::paired(
        &doc.values(w, Arm::GoroutinesLoop, key),
        &doc.values(w, Arm::GoroutinesOther, key),
        |a, b| a / b,
    ))
}

/// The rows of the targets table.
pub(super) fn targets(doc: &Document, o: &mut String) {
    let (w, arm) = (Workload::Goroutines, Arm::GoroutinesRead);
    let n = doc.sizes.goroutines;
    let read = doc.series(w, arm, "read_s");
    let _ = writeln!(
        o,
        "| {n} goroutines: `leak goroutines --json` reads them ≤ {READ_GOAL_S} s | {} s | {} |",
        cell(read, 2),
        status(read.map(|s| s.median <= READ_GOAL_S))
    );
    let failed = doc.failures().iter().filter(|r| r.arm == arm).count();
    let counted = doc.summary(w, arm, "goroutines_read");
    let _ = writeln!(
        o,
        "| {n} goroutines: every one read (the JSON's total = the program's own count) | {} in every read; {failed} failed runs | {} |",
        cell(counted, 0),
        // A failed run is a miss even when no run counted anything.
        status((failed > 0 || counted.is_some()).then_some(failed == 0))
    );
    for (what, key) in [("time", "seconds"), ("p99", "p99_ms")] {
        let r = reading_itself(doc, key);
        let _ = writeln!(
            o,
            "| leak goroutines every {} ms ≤ {SERVICE_GOAL}× on service {what} (against the same reads of another process) | {} | {} |",
            READ_INTERVAL.as_millis(),
            ratio_cell(r),
            status(r.map(|r| r.median <= SERVICE_GOAL))
        );
    }
}

/// The section: a read of 10^5 goroutines, then the service read.
pub(super) fn section(doc: &Document, o: &mut String) {
    let loads: Vec<f64> = doc
        .runs
        .iter()
        .filter(|r| r.arm.reads_goroutines())
        .map(|r| r.loadavg)
        .collect();
    let _ = writeln!(
        o,
        "## Goroutines: `leak goroutines` reads the program's goroutines\n\n\
         `leak goroutines --pid PID` reads every goroutine of a Go program (`runtime.allgs`, \
         each one's state, wait reason and stack) through `/proc/PID/mem` and groups them as \
         `/debug/pprof/goroutine?debug=1` does: no eBPF, no ptrace stop, the program never \
         paused. `leak trace` does the same read of the traced process every ~2 s. Each read \
         here is a `leak goroutines` process of its own, timed from spawn to exit by `wait4`, \
         which also gives its CPU time and peak RSS. Wall times are medians (min–max) over \
         every read of every round. 1-minute load average at the start of these runs: {}.\n",
        cell(stats::summarize(&loads), 2)
    );
    read_all(doc, o);
    read_loop(doc, o);
}

fn read_all(doc: &Document, o: &mut String) {
    let (w, arm) = (Workload::Goroutines, Arm::GoroutinesRead);
    let _ = writeln!(
        o,
        "### Reading {} goroutines\n\n`tests/go/benchgoroutines -n {}` parks {} goroutines \
         one to five calls deep, each blocked one of seven ways (channel send, channel \
         receive, select, `sync.Mutex`, `sync.RWMutex`, `sync.Cond`, `sync.WaitGroup`): 35 \
         groups, plus main. Once they are parked, `leak goroutines --json FILE` reads it {} \
         times per round; each read's JSON total must equal the program's own \
         `runtime.NumGoroutine()` or the run fails.\n",
        doc.sizes.goroutines, doc.sizes.goroutines, doc.sizes.goroutines, doc.sizes.goroutine_reads,
    );
    let read = doc.series(w, arm, "read_s");
    let per = match (read, doc.summary(w, arm, "goroutines_read")) {
        (Some(t), Some(n)) if n.median > 0.0 => format!("{:.2}", 1e6 * t.median / n.median),
        _ => "—".into(),
    };
    let _ = writeln!(o, "| Figure | Median (min–max) |\n|---|---|");
    let sm = |key: &str, digits: usize| cell(doc.summary(w, arm, key), digits);
    let se = |key: &str, digits: usize| cell(doc.series(w, arm, key), digits);
    let rows = [
        (
            "Goroutines the program holds (`runtime.NumGoroutine()`)",
            sm("goroutines", 0),
        ),
        (
            "Goroutines read (the JSON's `total`)",
            sm("goroutines_read", 0),
        ),
        (
            "… of those read with no stack (running or changing)",
            sm("unstable", 0),
        ),
        ("Groups", cell(doc.summary(w, arm, "groups"), 0)),
        ("`leak goroutines --json` wall time (s)", cell(read, 3)),
        (
            "… per goroutine, start-up included (µs, of the medians)",
            per,
        ),
        ("`leak goroutines --json` CPU (s)", se("read_cpu_s", 3)),
        (
            "`leak goroutines --json` peak RSS (MiB)",
            se("read_rss_mib", 1),
        ),
        (
            "The program's own CPU during a read (ms)",
            se("target_cpu_per_read_ms", 2),
        ),
        (
            "The program's time to start and park them (s)",
            sm("seconds", 3),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(o, "| {label} | {value} |");
    }
    o.push('\n');
}

fn read_loop(doc: &Document, o: &mut String) {
    let _ = writeln!(
        o,
        "### What the service pays while leak reads its goroutines\n\n`tests/go/benchservice` \
         (no tracer) under the service table's load ({} requests, concurrency 8), in the same \
         round as its untraced run: with `leak goroutines --pid PID` started every {} ms from \
         before the load until it ends (what `leak trace`'s reads would cost at their most \
         frequent; it reads every ~2 s), then with the same reads of another process, an idle \
         copy of `benchservice` started beside it (the same binary, whose symbols are most of \
         a small read's cost; it holds fewer goroutines). On two cores the reader's own CPU \
         competes with the service and benchload: the second run has that competition without \
         reading the service. Ratios are per round, against the untraced run.\n",
        doc.sizes.service_requests,
        READ_INTERVAL.as_millis()
    );
    let _ = writeln!(
        o,
        "| Arm | Throughput (req/s) | p99 (ms) | Time ratio | p99 ratio | Reads per run | Failed reads | Goroutines read | Read wall (ms) | Reader CPU (% of one core) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for arm in [Arm::Untraced, Arm::GoroutinesLoop, Arm::GoroutinesOther] {
        super::records::read_loop_row(
            o,
            doc,
            arm,
            arm != Arm::Untraced,
            ("seconds", "goroutines_read"),
        );
    }
    let _ = writeln!(
        o,
        "\nReading the service itself, beyond the reader's CPU (per round, reading it / \
         reading the other process): time for the requests {}, throughput {}, p99 {}.\n",
        ratio_cell(reading_itself(doc, "seconds")),
        ratio_cell(reading_itself(doc, "rps")),
        ratio_cell(reading_itself(doc, "p99_ms")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::{run, with_doc};

    #[test]
    fn the_service_read_is_priced_against_reading_another_process() {
        let mut runs = Vec::new();
        for (round, other) in [(0, 2.0), (1, 2.2), (2, 1.8)] {
            runs.push(run(round, Workload::Service, Arm::Untraced, 1.5));
            runs.push(run(round, Workload::Service, Arm::GoroutinesLoop, 2.0));
            runs.push(run(round, Workload::Service, Arm::GoroutinesOther, other));
        }
        let mut read = run(0, Workload::Goroutines, Arm::GoroutinesRead, 0.3);
        read.series.insert("read_s", vec![0.4, 1.2, 0.6]);
        read.metrics.insert("goroutines_read", 100_001.0);
        runs.push(read);
        with_doc(&runs, |doc| {
            let r = reading_itself(doc, "seconds").unwrap();
            assert_eq!((r.median, r.n), (1.0, 3));
            let md = super::super::markdown(doc, None);
            assert!(
                md.contains("| 100000 goroutines: `leak goroutines --json` reads them ≤ 1 s | 0.60 (0.40–1.20) s | met |"),
                "{md}"
            );
            assert!(md.contains("on service time (against the same reads of another process) | 1.000× (0.909–1.111) | met |"), "{md}");
            assert!(
                md.contains("| 100001 in every read; 0 failed runs | met |"),
                "{md}"
            );
            assert!(md.contains("### Reading 100000 goroutines"), "{md}");
        });
    }
}
