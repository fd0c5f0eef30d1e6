//! The tables of BENCHMARKS.md, one function each, in the order they appear.

use std::fmt::Write as _;

use super::{
    markdown::{cell, ratio_cell, status},
    Document,
};
use crate::bench::{stats, Arm, Workload};

/// The targets of issue 6, each with the measured figure and whether it was met.
pub(super) fn targets(doc: &Document, o: &mut String) {
    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(
        o,
        "Medians of per-round ratios; each traced run is compared with the untraced run of \
         its round on the same work (bpftrace's added time is scaled from its 1/{} of the \
         work to the full work: see Commands). \"missed\" means the median is past the \
         target, whatever the cause (see the analysis at the end).\n",
        doc.sizes.peer_share
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
    super::goroutines::targets(doc, o);
    super::native::targets(doc, o);
    leak_top_target(doc, o);
}

/// `leak top`'s target, with the floor of the same run beside it: empty
/// programs on the same hooks.
fn leak_top_target(doc: &Document, o: &mut String) {
    let top = doc.ratio(Workload::Mmap, Arm::LeakTop, "seconds");
    let floor = doc.ratio(Workload::Mmap, Arm::LeakTopEmpty, "seconds");
    let measured = if doc.kit.leak_top {
        format!(
            "{} (empty programs on the same hooks: {})",
            ratio_cell(top),
            ratio_cell(floor)
        )
    } else {
        "n/a (leak top not built yet)".into()
    };
    let _ = writeln!(
        o,
        "| leak top ≤ 1.08× on mmap/munmap | {measured} | {} |\n",
        status(top.map(|t| t.median <= 1.08))
    );
}

/// The service: throughput, p99 and their ratios, the tracer's cost.
pub(super) fn service(doc: &Document, o: &mut String) {
    let s = doc.sizes;
    let _ = writeln!(
        o,
        "## Service: {} requests, concurrency 8\n\nA standard-library HTTP service \
         (`tests/go/benchservice`: decode a small JSON order, build 40 records, encode them) \
         under closed-loop load from `tests/go/benchload` (after 200 uncounted warm-up \
         requests). Time ratio = time for the fixed requests / the untraced run's on the \
         same requests in the same round (bpftrace: {} requests, against an untraced run \
         of those).\n",
        s.service_requests,
        s.for_arm(Arm::Bpftrace).service_requests,
    );
    let _ = writeln!(
        o,
        "| Arm | Throughput (req/s) | p99 (ms) | Time ratio | p99 ratio | Tracer CPU (% of one core) | Tracer peak RSS (MiB) | Samples/s |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let w = Workload::Service;
    // The read loops have their own tables (records, goroutines).
    let reads = |a: &Arm| a.reads_records() || a.reads_goroutines();
    for arm in w.arms(true).into_iter().filter(|a| !reads(a)) {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            doc.label(arm),
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
}

/// The two batch workloads: wall time, ratio, added time, the tracer's cost.
pub(super) fn batches(doc: &Document, o: &mut String) {
    let s = doc.sizes;
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
            "| Arm | Wall (s) | Ratio | Added, full work (s) | Tracer CPU attached (s) | Tracer CPU (% of one core) | Tracer peak RSS (MiB) | Samples/s | Dropped (allocs/frees/stacks) |"
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
                doc.label(arm),
                cell(doc.summary(w, arm, "seconds"), 3),
                ratio_cell(doc.ratio(w, arm, "seconds")),
                if matches!(arm, Arm::Untraced | Arm::PeerBaseline) {
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
}

/// Added time of leak against the peer's.
pub(super) fn added_time(doc: &Document, o: &mut String) {
    let _ = writeln!(o, "## Added time: leak against bpftrace\n");
    let _ = writeln!(
        o,
        "Seconds each traced run took beyond the untraced run of its round on the same work \
         (medians of the per-round differences), and how many times more bpftrace adds. \
         bpftrace ran on 1/{n} of the work: its differences are multiplied by {n}, to the \
         full work leak's are measured on. When leak's median added time is not above zero \
         it is below the noise, and the ratio has no finite value.\n",
        n = doc.sizes.peer_share
    );
    let _ = writeln!(
        o,
        "| Workload | bpftrace adds ({}× its 1/{} run, s) | leak adds (s) | bpftrace / leak | leak --rate 4096 adds (s) | bpftrace / leak --rate 4096 |",
        doc.sizes.peer_share, doc.sizes.peer_share
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
}

/// Added time and leak's CPU per sample, against Go's own sampler.
pub(super) fn per_sample(doc: &Document, o: &mut String) {
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
}

/// The 100k-stack scale run.
pub(super) fn scale(doc: &Document, o: &mut String) {
    let s = doc.sizes;
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
}

/// `leak top` on mmap/munmap cycles.
pub(super) fn leak_top(doc: &Document, o: &mut String) {
    let s = doc.sizes;
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
        let above = doc.ratio_to(w, Arm::LeakTop, Arm::LeakTopEmpty, "seconds");
        let _ = writeln!(
            o,
            "\nThe floor is `leak top --bench-empty-programs` (hidden, for this table): programs \
             that return at once on the same two raw tracepoints (`rss_stat`, `sys_exit`), so \
             the kernel dispatches every event as under `leak top` and nothing is kept. \
             `leak top`'s own programs, per round against the floor: {}.\n",
            ratio_cell(above)
        );
    } else {
        let _ = writeln!(
            o,
            "n/a: `leak top --help` did not run, so `leak top` has not landed in this build. \
             The arm (`tests/go/benchmmap` untraced vs under `leak top`) runs by itself once it does.\n"
        );
    }
}
