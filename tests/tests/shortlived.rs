//! Short-lived processes: a job that lives about 60 ms, run 20 times while
//! `leak trace --uprobe BIN` watches, is seen every time and no sample is
//! left out because the process was gone before leak read /proc. Root only;
//! run through `cargo xtask test`.

use std::{fs, process::Command, thread, time::Duration};

use leak_tests::*;

const RUNS: usize = 20;
/// What each run keeps in `main.keep`: 32 × 64 KiB.
const KEPT_PER_RUN: f64 = 32.0 * 64.0 * 1024.0;

/// Bytes allocated by the stacks whose leaf is `function`, in a JSON report.
fn allocated_by_leaf(report: &serde_json::Value, function: &str) -> f64 {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["frames"][0]["function"] == function)
        .map(|s| s["allocated_bytes"].as_f64().unwrap())
        .sum()
}

/// Bytes the stacks whose leaf is `function` held in processes when they
/// exited.
fn held_at_exit_by_leaf(report: &serde_json::Value, function: &str) -> f64 {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["frames"][0]["function"] == function)
        .map(|s| s["held_at_exit_bytes"].as_f64().unwrap())
        .sum()
}

/// The processes a JSON report says were traced.
fn pids_seen(report: &serde_json::Value) -> Vec<u64> {
    report["target"]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

/// 20 runs of the job under one `leak trace`: every run seen, none left out,
/// what each held at exit kept. Returns what `main.keep` allocated.
fn batch(version: &str, variant: Variant, attempt: usize) -> f64 {
    let bin = build_go("shortjob", version, variant);
    let dir = scratch(&format!("shortlived-{version}-{variant:?}-{attempt}"));
    let report = dir.join("leak.json");
    let mut leak = LeakArgs::trace(&bin).out("--json", &report).attach(&dir);
    let mut pids = Vec::new();
    for _ in 0..RUNS {
        let mut child = Command::new(&bin).spawn().expect("run the job");
        pids.push(child.id());
        assert!(child.wait().unwrap().success());
    }
    // Let the last records drain (leak reads the ring buffer every 100 ms).
    thread::sleep(Duration::from_millis(500));
    leak.stop(SIGINT);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let ctx = format!("go{version} {variant:?}");
    let seen = pids_seen(&v);
    let found = pids
        .iter()
        .filter(|p| seen.contains(&u64::from(**p)))
        .count();
    assert!(
        found >= RUNS - 1,
        "{ctx}: {found} of {RUNS} runs in target.pids {seen:?} (runs {pids:?})\n{}",
        leak.stderr_text()
    );
    assert_eq!(
        v["dropped"]["no_process"], 0,
        "{ctx}: samples left out: {v}"
    );
    let allocated = allocated_by_leaf(&v, "main.keep");
    // Each run keeps everything it allocates there until it exits: what
    // exited processes held is kept in the report (the last run's exit may
    // come after leak's last look).
    let held = held_at_exit_by_leaf(&v, "main.keep");
    assert!(
        held <= allocated + 1.0 && held >= 0.8 * allocated,
        "{ctx}: main.keep held {held} B at exit, allocated {allocated} B"
    );
    eprintln!("{ctx}: {found}/{RUNS} runs seen, main.keep allocated {allocated:.0} B");
    allocated
}

/// The job's 2 MiB × 20 is found within 30 % at Go's default rate. About 75
/// samples make the estimate's spread about ±11 %, with a tail past 30 %
/// in roughly one batch of twenty seen here; a second batch is run then. A
/// systematic loss or double count fails both.
fn every_run_seen(version: &str, variant: Variant) {
    let want = RUNS as f64 * KEPT_PER_RUN;
    let within = |a: f64| (a - want).abs() <= 0.3 * want;
    let first = batch(version, variant, 1);
    if within(first) {
        return;
    }
    eprintln!("go{version} {variant:?}: {first} B is outside 30 % of {want}: a second batch");
    let second = batch(version, variant, 2);
    assert!(
        within(second),
        "go{version} {variant:?}: main.keep allocated {first} B, then {second} B; {want} B expected within 30 %"
    );
}

#[test]
fn short_job_every_run_seen() {
    every_run_seen("1.25.5", Variant::Plain);
}

#[test]
fn short_job_every_run_seen_stripped_pie() {
    every_run_seen("1.25.5", Variant::StrippedPie);
}

/// Go 1.19's start probe is `runtime.gcenable` (its rate is set by the
/// runtime's init, inside `runtime.main`).
#[test]
fn short_job_every_run_seen_go1_19_stripped_pie() {
    every_run_seen("1.19.8", Variant::StrippedPie);
}

/// `leak trace -- CMD`: leak starts a job that links no heap profiler, so
/// Go starts it with sampling off; leak turns sampling on before
/// `main.main` and finds all it keeps; the job's exit status is leak's.
fn launched(version: &str) {
    let bin = build_go("shortjobnoprof", version, Variant::Plain);
    let dir = scratch(&format!("launched-{version}"));
    let report = dir.join("leak.json");
    let mut leak = LeakArgs::trace_any()
        .opt("--rate", 4096)
        .out("--json", &report)
        .flag("--")
        .flag(bin.to_str().unwrap())
        .opt("-exit", 3)
        .spawn(&dir);
    let status = leak.wait(60);
    assert_eq!(
        status.code(),
        Some(3),
        "go{version}: {}",
        leak.stderr_text()
    );
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let kept = allocated_by_leaf(&v, "main.keep");
    eprintln!("go{version}: main.keep {kept:.0} B of {KEPT_PER_RUN}");
    assert!(
        (kept - KEPT_PER_RUN).abs() <= 0.1 * KEPT_PER_RUN,
        "go{version}: main.keep allocated {kept} B, {KEPT_PER_RUN} expected within 10 %: {}",
        leak.stderr_text()
    );
    assert_eq!(v["dropped"]["no_process"], 0);
}

#[test]
fn launched_job_traced_from_its_start() {
    launched("1.25.5");
}

#[test]
fn launched_job_traced_from_its_start_go1_21() {
    launched("1.21.13");
}

/// Stopped at `runtime.gcenable`, after the runtime's init has set the
/// rate to 0 (no profiler linked): a rate set at `runtime.main` would be
/// overwritten.
#[test]
fn launched_job_traced_from_its_start_go1_19() {
    launched("1.19.8");
}

/// A command that is not there or cannot be run: one line, a shell's status.
#[test]
fn launch_bad_command_is_a_shells_error() {
    let dir = scratch("launch-bad");
    for (cmd, code, says) in [
        ("/no/such/job", 127, "command not found"),
        ("no-such-job-in-path", 127, "command not found"),
        ("/etc/passwd", 126, "permission denied"),
    ] {
        let mut leak = LeakArgs::trace_any().flag("--").flag(cmd).spawn(&dir);
        let status = leak.wait(30);
        let err = leak.stderr_text();
        assert_eq!(status.code(), Some(code), "{cmd}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{cmd}: {err}");
        assert!(err.contains(says), "{cmd}: {err}");
    }
}

/// esbuild (the stripped npm binary, somebody else's Go program) run five
/// times under `leak trace --uprobe`: every run seen, none left out.
#[test]
fn esbuild_every_run_seen() {
    let bin = esbuild();
    let dir = scratch("esbuild");
    let input = dir.join("big.js");
    let source: String = (0..20_000)
        .map(|i| {
            format!(
                "export function f{i}(a, b) {{ return [a + {i}, b * {i}, 's{i}'.repeat(2)]; }}\n"
            )
        })
        .collect();
    fs::write(&input, source).unwrap();
    let report = dir.join("leak.json");
    let mut leak = LeakArgs::trace(&bin).out("--json", &report).attach(&dir);
    let mut pids = Vec::new();
    for _ in 0..5 {
        let mut child = Command::new(&bin)
            .arg(&input)
            .args(["--bundle", "--minify", "--log-level=warning"])
            .arg(format!("--outfile={}", dir.join("out.js").display()))
            .spawn()
            .expect("run esbuild");
        pids.push(child.id());
        assert!(child.wait().unwrap().success());
    }
    thread::sleep(Duration::from_millis(500));
    leak.stop(SIGINT);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let seen = pids_seen(&v);
    for pid in &pids {
        assert!(
            seen.contains(&u64::from(*pid)),
            "run {pid} not in {seen:?}: {}",
            leak.stderr_text()
        );
    }
    assert_eq!(v["dropped"]["no_process"], 0, "{v}");
    let stacks = v["stacks"].as_array().unwrap();
    assert!(!stacks.is_empty(), "no stack from five esbuild runs");
    eprintln!("esbuild: {} runs seen, {} stacks", pids.len(), stacks.len());
}

/// `leak trace -- CMD` on a service: SIGINT to leak is passed to the
/// program, leak writes its outputs when the program has exited, and exits
/// as a shell reports a program killed by SIGINT (130).
#[test]
fn launched_service_ends_on_sigint() {
    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let dir = scratch("launched-service");
    let report = dir.join("leak.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut leak = LeakArgs::trace_any()
        .opt("--rate", 4096)
        .out("--json", &report)
        .flag("--")
        .flag(bin.to_str().unwrap())
        .opt("-addr", &addr)
        .spawn(&dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            leak.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    send_requests(&addr, "/work", 200);
    leak.signal(SIGINT);
    let status = leak.wait(60);
    assert_eq!(status.code(), Some(130), "{}", leak.stderr_text());
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let track = sum_through(&v, "main.(*RequestTracker).Track", "allocated_bytes");
    // 200 requests of 10,240 bytes, sampled at 4 KiB.
    assert!(
        (track / 2_048_000.0 - 1.0).abs() <= 0.2,
        "Track allocated {track} B of 2,048,000"
    );
}
