//! The native arms: what following malloc and free costs a C program
//! (`tests/c/nbench.c`, built `-O2 -fomit-frame-pointer`), under `leak
//! trace --pid` and under the tools people use today. Three workloads:
//!
//! - `NativeChurn`: malloc/free pairs of 16–527 bytes, 64 mallocs then 64
//!   frees, each phase timed apart, so a tracer's cost per malloc and per
//!   free can be told apart;
//! - `NativeServer`: "requests" that each hash a 16 KiB body and make five
//!   allocations (one more kept every 8th request): allocation is a small
//!   share of the time, as in a server;
//! - `NativeScale`: 10^5 allocations from 10^5 distinct stacks, all kept,
//!   under `leak trace --rate 1`: the tracer's peak RSS.
//!
//! The arms: untraced; leak at its default rate; leak `--rate 1`;
//! heaptrack (attached with `-p` where gdb can inject it, else started
//! with its preload, see [`tools`]); bpftrace doing what bcc's memleak does
//! (a uprobe on malloc for the size, a uretprobe keying the size and the
//! user stack by the address, a uprobe on free deleting it); bpftrace with
//! empty uprobes on malloc and free (the floor of that placement); and leak
//! at its default rate with the kernel counting its eBPF programs' run time
//! (`BPF_ENABLE_STATS`), which splits its cost into the probes' traps and
//! its programs.
//!
//! On the churn, the slow arms (`--rate 1` and both bpftrace arms) run on a
//! share of the work (`NativeSizes::slow_share`). Every figure is per unit of work (a
//! pair, a request), so arms on different amounts of work compare: the
//! loops are the same loop whatever their length.

mod peers;
pub mod tools;

use std::{process::Command, time::Duration};

use anyhow::{bail, Context, Result};

use super::{
    process::{Running, Stream},
    tracer::Tracer,
    Arm, Kit, Metrics, Series, Sizes, Workload,
};
pub use tools::Tools;

/// The native workload program, under tests/c and target/bench/bin.
pub const PROGRAM: &str = "nbench";

/// How much work the native workloads get.
#[derive(Clone, Copy, Debug)]
pub struct NativeSizes {
    /// malloc/free pairs of `NativeChurn`.
    pub pairs: usize,
    /// Requests of `NativeServer`.
    pub requests: usize,
    /// Distinct stacks (and allocations) of `NativeScale`, at most 10^5.
    pub stacks: usize,
    /// The slow arms get 1/slow_share of the churn's work.
    pub slow_share: usize,
}

impl NativeSizes {
    /// About 0.03 s untraced for the churn, 1 s for the server; leak at
    /// its default rate ~2.5 s on the churn; the slow arms 2–5 s each.
    pub const FULL: NativeSizes = NativeSizes {
        pairs: 2_000_000,
        requests: 40_000,
        stacks: 100_000,
        slow_share: 8,
    };
    pub const QUICK: NativeSizes = NativeSizes {
        pairs: 400_000,
        requests: 8_000,
        stacks: 100_000,
        slow_share: 8,
    };
}

/// The workload's `-mode`.
fn mode(w: Workload) -> &'static str {
    match w {
        Workload::NativeChurn => "churn",
        Workload::NativeServer => "server",
        _ => "stacks",
    }
}

/// The arms of a native workload, in the order they alternate.
pub fn arms(w: Workload) -> Vec<Arm> {
    match w {
        Workload::NativeChurn => vec![
            Arm::Untraced,
            Arm::Leak,
            Arm::LeakScale,
            Arm::Heaptrack,
            Arm::Memleak,
            Arm::EmptyProbes,
            Arm::LeakBpfStats,
        ],
        Workload::NativeServer => vec![
            Arm::Untraced,
            Arm::Leak,
            Arm::LeakScale,
            Arm::Heaptrack,
            Arm::Memleak,
            Arm::EmptyProbes,
        ],
        Workload::NativeScale => vec![Arm::LeakScale],
        _ => vec![],
    }
}

/// Runs on 1/slow_share of the work: on the churn, where they are a
/// hundred times slower than leak's default mode. On the server they are
/// 2–4× slower, and a share of its work would be too short to time.
pub fn is_slow(w: Workload, arm: Arm) -> bool {
    w == Workload::NativeChurn && matches!(arm, Arm::LeakScale | Arm::Memleak | Arm::EmptyProbes)
}

/// The full work of `w`: pairs, requests or stacks.
pub fn units(w: Workload, sizes: &NativeSizes) -> usize {
    match w {
        Workload::NativeChurn => sizes.pairs,
        Workload::NativeServer => sizes.requests,
        _ => sizes.stacks,
    }
}

/// The work `arm` gets on `w`.
pub fn work(w: Workload, sizes: &NativeSizes, arm: Arm) -> usize {
    let n = units(w, sizes);
    if is_slow(w, arm) {
        n.div_ceil(sizes.slow_share)
    } else {
        n
    }
}

/// The program's arguments for `n` units of work.
pub fn args(w: Workload, n: usize) -> Vec<String> {
    ["-mode", mode(w), "-n", &n.to_string()]
        .map(String::from)
        .to_vec()
}

/// Files `leak --rate 1` writes for workload `w`, under `dir`: folded,
/// SVG, pprof, JSON.
pub fn outputs(dir: &str, w: Workload) -> [String; 4] {
    ["folded", "svg", "pb.gz", "json"].map(|ext| format!("{dir}/{}.{ext}", w.name()))
}

/// The tracer's command line for `arm` (`None`: untraced or heaptrack,
/// which starts the program itself when it cannot attach). `libc` is the
/// C library the target maps, for bpftrace's probes.
pub fn tracer_argv(
    arm: Arm,
    w: Workload,
    leak: &str,
    bpftrace: &str,
    pid: &str,
    libc: &str,
    scratch: &str,
) -> Option<Vec<String>> {
    let mut v: Vec<String> = [leak, "trace", "--pid", pid].map(String::from).to_vec();
    match arm {
        Arm::Leak | Arm::LeakBpfStats => {}
        Arm::LeakScale => {
            let [folded, svg, pprof, json] = outputs(scratch, w);
            let flags = ["--rate", "1", "--folded", &folded, "--flamegraph", &svg];
            v.extend(flags.map(String::from));
            v.extend(["--pprof", &pprof, "--json", &json].map(String::from));
        }
        Arm::Memleak | Arm::EmptyProbes => {
            let script = peers::bpftrace_script(arm, libc, pid);
            v = [bpftrace, "-p", pid, "-e", &script]
                .map(String::from)
                .to_vec();
        }
        _ => return None,
    }
    Some(v)
}

/// One run of a native workload under one arm.
pub fn measure(kit: &Kit, sizes: &Sizes, w: Workload, arm: Arm) -> Result<(Metrics, Series)> {
    let n = work(w, &sizes.native, arm);
    let bin = kit.program(PROGRAM);
    if arm == Arm::Heaptrack {
        return peers::heaptrack_run(kit, &bin, &args(w, n));
    }
    let mut target = Running::spawn(Command::new(&bin).args(args(w, n)))?;
    let first = target.wait_for("ready", Duration::from_secs(30), |s, _| s == Stream::Stdout)?;
    if first != "ready" {
        bail!("{} said {first:?}, not ready", bin.display());
    }
    let scratch = kit.scratch.display().to_string();
    for f in outputs(&scratch, w) {
        let _ = std::fs::remove_file(f);
    }
    let stats = (arm == Arm::LeakBpfStats)
        .then(peers::BpfStats::enable)
        .transpose()?;
    let tracer = start_tracer(kit, w, arm, target.pid)?;
    let mut m = run_work(&mut target, n)?;
    if let (Some(stats), Some(t)) = (&stats, &tracer) {
        stats.read(t.pid(), &mut m)?;
    }
    if let Some(t) = tracer {
        t.stop(&mut m)?;
    }
    if arm == Arm::LeakScale {
        count_outputs(&scratch, w, &mut m)?;
    }
    let exit = target.close_and_reap(Duration::from_secs(30))?;
    m.insert("target_cpu_s", exit.cpu_seconds);
    Ok((m, Series::new()))
}

/// Starts `arm`'s tracer on `pid` and waits until it has attached: leak
/// says so; bpftrace has once both its breakpoints are in the program.
fn start_tracer(kit: &Kit, w: Workload, arm: Arm, pid: u32) -> Result<Option<Tracer>> {
    let bpftrace = matches!(arm, Arm::Memleak | Arm::EmptyProbes);
    let probed = bpftrace.then(|| peers::libc_probes(pid)).transpose()?;
    let argv = tracer_argv(
        arm,
        w,
        &kit.leak.display().to_string(),
        &kit.bpftrace.display().to_string(),
        &pid.to_string(),
        probed.as_ref().map_or("", |p| p.path.as_str()),
        &kit.scratch.display().to_string(),
    );
    let Some(argv) = argv else {
        return Ok(None);
    };
    let tracer = Tracer::start(arm, &argv, probed.as_ref().map(|p| (pid, p.free)))?;
    if let Some(p) = &probed {
        super::tracer::wait_for_breakpoint(pid, p.malloc, Duration::from_secs(60))?;
    }
    Ok(Some(tracer))
}

/// Tells the program to go and reads its result line: seconds, the
/// malloc and free phases' seconds (churn), calls made, and each figure
/// per unit of work (`n` units).
fn run_work(target: &mut Running, n: usize) -> Result<Metrics> {
    target.send_line("go")?;
    // The slow arms take a few hundred times longer than untraced.
    let line = target.wait_for("result", Duration::from_secs(900), |s, l| {
        s == Stream::Stdout && l.starts_with('{')
    })?;
    result_metrics(&line, n)
}

/// The figures of nbench's result line, for `n` units of work.
pub fn result_metrics(line: &str, n: usize) -> Result<Metrics> {
    let result: serde_json::Value =
        serde_json::from_str(line).context("nbench printed no JSON result")?;
    let mut m = Metrics::new();
    let seconds = result["seconds"].as_f64().context("no seconds")?;
    m.insert("seconds", seconds);
    m.insert("units", n as f64);
    m.insert("per_unit_us", 1e6 * seconds / n as f64);
    for key in [
        "malloc_seconds",
        "free_seconds",
        "mallocs",
        "frees",
        "kept_bytes",
    ] {
        if let Some(v) = result[key].as_f64() {
            m.insert(key, v);
        }
    }
    if let Some(mallocs) = m.get("mallocs") {
        m.insert("mallocs_per_unit", mallocs / n as f64);
    }
    let per = |key: &str, calls: &str| Some(1e6 * m.get(key)? / m.get(calls)?);
    if let (Some(a), Some(f)) = (
        per("malloc_seconds", "mallocs"),
        per("free_seconds", "frees"),
    ) {
        m.insert("per_malloc_us", a);
        m.insert("per_free_us", f);
    }
    Ok(m)
}

/// Which outputs `leak --rate 1` wrote (`wrote_folded`, … as 0 or 1; the
/// report names any missing) and how many stacks its folded file holds.
/// Without the folded file the run fails: it is what is counted.
fn count_outputs(scratch: &str, w: Workload, m: &mut Metrics) -> Result<()> {
    let files = outputs(scratch, w);
    let keys = ["wrote_folded", "wrote_svg", "wrote_pprof", "wrote_json"];
    for (f, key) in files.iter().zip(keys) {
        let written = std::path::Path::new(f).is_file();
        m.insert(key, if written { 1.0 } else { 0.0 });
    }
    let folded = std::fs::read_to_string(&files[0])
        .with_context(|| format!("leak did not write {}", files[0]))?;
    let lines = folded.lines().filter(|l| !l.trim().is_empty()).count();
    m.insert("folded_lines", lines as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_arms_get_a_share_and_figures_are_per_unit() {
        let s = NativeSizes::FULL;
        assert_eq!(work(Workload::NativeChurn, &s, Arm::Memleak), 250_000);
        assert_eq!(work(Workload::NativeChurn, &s, Arm::Leak), 2_000_000);
        assert_eq!(work(Workload::NativeServer, &s, Arm::Memleak), 40_000);
        assert_eq!(work(Workload::NativeScale, &s, Arm::LeakScale), 100_000);
        assert_eq!(
            args(Workload::NativeServer, 5_000),
            ["-mode", "server", "-n", "5000"]
        );
        let m = result_metrics(
            r#"{"seconds": 2.0, "malloc_seconds": 0.5, "free_seconds": 1.0, "mallocs": 1000, "frees": 1000}"#,
            1000,
        )
        .unwrap();
        assert_eq!(m["per_unit_us"], 2000.0);
        assert_eq!((m["per_malloc_us"], m["per_free_us"]), (500.0, 1000.0));
    }

    #[test]
    fn tracer_command_lines() {
        let argv = |arm| {
            tracer_argv(
                arm,
                Workload::NativeChurn,
                "leak",
                "bpftrace",
                "$PID",
                "/libc.so.6",
                "s",
            )
            .map(|v| v.join(" "))
        };
        assert_eq!(argv(Arm::Leak).unwrap(), "leak trace --pid $PID");
        assert!(argv(Arm::LeakScale)
            .unwrap()
            .starts_with("leak trace --pid $PID --rate 1 --folded s/native-churn.folded"));
        assert!(argv(Arm::Memleak)
            .unwrap()
            .starts_with("bpftrace -p $PID -e uprobe:/libc.so.6:malloc"));
        assert_eq!(argv(Arm::Untraced), None);
        assert_eq!(argv(Arm::Heaptrack), None);
    }
}
