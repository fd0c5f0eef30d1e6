//! BENCHMARKS.md as a whole: the header, the machine, the tables (from
//! `tables`), the commands and method, and the hand-written part kept from
//! the previous file.

use std::fmt::Write as _;

use super::{goroutines, native, records, tables, Document};
use crate::bench::{
    stats::{self, Summary},
    Arm, Workload,
};

/// Lines after this one in BENCHMARKS.md are kept when the bench rewrites it.
pub const KEEP_MARKER: &str =
    "<!-- Everything below this line is written by hand; `cargo xtask bench` keeps it. -->";

/// `1.23 (1.10–1.40)` with `digits` decimals, or `—`.
pub(super) fn cell(s: Option<Summary>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits),
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "—".into(),
    }
}

/// `1.012×` for a ratio cell, or `—`.
pub(super) fn ratio_cell(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.3}× ({:.3}–{:.3})", s.median, s.min, s.max),
        Some(s) => format!("{:.3}×", s.median),
        None => "—".into(),
    }
}

pub(super) fn status(met: Option<bool>) -> &'static str {
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
         next to the bpftrace one-liner people use today, what does reading its own heap \
         profile records with `leak heap` cost instead (Records), and reading its goroutines \
         with `leak goroutines` (Goroutines, at the end)? Written by \
         `cargo xtask bench`{} on \
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

    tables::targets(doc, &mut o);
    tables::service(doc, &mut o);
    tables::batches(doc, &mut o);
    tables::added_time(doc, &mut o);
    tables::per_sample(doc, &mut o);
    tables::scale(doc, &mut o);
    tables::leak_top(doc, &mut o);
    records::section(doc, &mut o);
    goroutines::section(doc, &mut o);
    native::section(doc, &mut o);

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
    // The native workloads' commands are in their section.
    for w in Workload::ALL.into_iter().filter(|w| !w.is_native()) {
        if w.arms(doc.kit.leak_top).is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "# {}\n{}",
            w.name(),
            doc.workload_command(w, Arm::Untraced)
        );
        for arm in w.arms(true) {
            if arm.reads_records() || arm.reads_goroutines() {
                for line in doc.records_commands(arm) {
                    let _ = writeln!(o, "{line}");
                }
                continue;
            }
            if arm == Arm::PeerBaseline {
                let _ = writeln!(
                    o,
                    "# {}, no tracer: {}",
                    doc.label(arm),
                    doc.workload_command(w, arm)
                );
            }
            if let Some(c) = doc.command(arm, &format!("target/bench/bin/{}", w.program())) {
                if arm.on_peer_share() {
                    let _ = writeln!(o, "{c}   # on the same 1/{} of the work", s.peer_share);
                } else {
                    let _ = writeln!(o, "{c}");
                }
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
    let peer = s.for_arm(Arm::Bpftrace);
    let _ = writeln!(
        o,
        "bpftrace's work is bounded: it makes these workloads 8–70× slower, so it runs \
         on 1/{n} of each workload's work ({} requests, {} JSON records, {} large objects), \
         right after an untraced run of that same 1/{n} in the same round (\"untraced, 1/{n} \
         of the work\"). Its time and p99 ratios are against that run. Its added time is \
         its difference from that run times {n}, the factor between its work and the \
         full work: added time per unit of work, priced for the full work the leak arms \
         do, since bpftrace's cost (a uprobe trap and a stack walk on every `mallocgc` \
         call) grows with the work. Its own CPU, peak RSS and the time it takes to print \
         its map on exit (in no figure) are those of the smaller run.\n",
        peer.service_requests,
        peer.json_records,
        peer.large_objects,
        n = s.peer_share,
    );
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
