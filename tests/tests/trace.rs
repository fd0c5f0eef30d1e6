//! `leak trace` end to end: real probes on real Go programs built with real
//! Go toolchains, checked against the programs' own heap profiles or a known
//! leak size. Root only; run through `cargo xtask test`.

use std::{fs, path::Path, thread, time::Duration};

use leak_tests::*;

const SEED_REQUESTS: usize = 2000;
/// A 10,000-byte slice lives in the 10,240-byte size class.
const SEED_LEAK_PER_REQUEST: f64 = 10240.0;

/// The seed acceptance check for one build of the service: our top folded
/// stack is bytes.Repeat under (*RequestTracker).Track, and its bytes are
/// within 10% of what the service's own heap profile says bytes.Repeat holds.
/// Returns leak's text report.
fn seed_matches_pprof(version: &str, variant: Variant) -> String {
    let bin = build_go("seed", version, variant);
    let dir = scratch(&format!("seed-{version}-{variant:?}"));
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let folded = dir.join("seed.folded");
    let svg = dir.join("seed.svg");
    let mut leak = LeakArgs::trace(&bin)
        .pid(service.pid())
        .opt("--interval", 2)
        .out("--folded", &folded)
        .out("--flamegraph", &svg)
        .attach(&dir);
    send_requests(&addr, "/work", SEED_REQUESTS);
    let heap = dir.join("heap.pb.gz");
    fs::write(&heap, get(&addr, "/debug/pprof/heap?gc=1")).unwrap();
    // Let the frees of that GC's sweep reach leak.
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);

    let stacks = read_folded(&folded);
    let top = stacks.first().expect("no stacks in folded output");
    assert_eq!(top.leaf(), "bytes.Repeat", "top stack: {:?}", top.frames);
    assert_eq!(
        top.caller(),
        "main.(*RequestTracker).Track",
        "top stack: {:?}",
        top.frames
    );

    let truth = pprof_inuse(version, &heap)
        .into_iter()
        .find(|(f, _, _)| f == "bytes.Repeat")
        .map(|(_, _flat, cum)| cum)
        .expect("service's heap profile has no bytes.Repeat");
    let ratio = top.bytes as f64 / truth as f64;
    eprintln!(
        "seed {version} {variant:?}: leak {} B, pprof {truth} B, ratio {ratio:.3}, leak size {} B",
        top.bytes,
        SEED_REQUESTS as f64 * SEED_LEAK_PER_REQUEST
    );
    assert!(
        (ratio - 1.0).abs() <= 0.10,
        "leak {} B vs pprof {truth} B",
        top.bytes
    );
    assert_flamegraph(&svg, &["bytes.Repeat"]);
    let report = leak.stdout_text();
    assert!(report.contains("final report"), "{report}");
    report
}

/// Debian 12's Go (its daemons are go1.19.8, stripped).
#[test]
fn seed_go1_19() {
    seed_matches_pprof("1.19.8", Variant::Plain);
}

#[test]
fn seed_go1_19_stripped_pie() {
    seed_matches_pprof("1.19.8", Variant::StrippedPie);
}

/// Nothing in the file names the release: leak infers go1.19 from the
/// runtime's functions (its GC CPU limiter, and no 1.21 unwinder) and the
/// `.gopclntab` format, and traces with the 1.19 row.
#[test]
fn seed_go1_19_version_inferred() {
    let report = seed_matches_pprof("1.19.8", Variant::NoVersion);
    assert!(report.contains("(go1.19.0)"), "{report}");
}

#[test]
fn seed_go1_21() {
    seed_matches_pprof("1.21.13", Variant::Plain);
}

#[test]
fn seed_go1_25() {
    seed_matches_pprof("1.25.5", Variant::Plain);
}

#[test]
fn seed_go1_27() {
    seed_matches_pprof("1.27.3", Variant::Plain);
}

#[test]
fn seed_go1_27_stripped_pie() {
    seed_matches_pprof("1.27.3", Variant::StrippedPie);
}

/// A program that imports no profiling package runs with sampling off:
/// leak turns it on and finds the leak; with --read-only it refuses, saying
/// why.
fn sampling_off(version: &str) {
    let bin = build_go("seednoprof", version, Variant::Plain);
    let dir = scratch(&format!("sampling-off-{version}"));

    // --read-only: nothing can be seen, so leak says so and fails.
    let service = Program::start(&bin, &[]);
    let folded = dir.join("ro.folded");
    let mut ro = LeakArgs::trace(&bin)
        .pid(service.pid())
        .flag("--read-only")
        .out("--folded", &folded)
        .spawn(&dir);
    let status = ro.wait(30);
    assert!(
        !status.success(),
        "--read-only on a sampling-off program must fail"
    );
    let err = ro.stderr_text();
    assert!(
        err.contains("sampling off") && err.contains("--read-only"),
        "message should say why and what to do: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!folded.exists(), "no output file on failure");
    drop(service);

    // Default: leak enables sampling and finds the leak.
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let folded = dir.join("seed.folded");
    let mut leak = LeakArgs::trace(&bin)
        .pid(service.pid())
        .out("--folded", &folded)
        .attach(&dir);
    assert!(
        leak.stderr_text().contains("sampling was off"),
        "should say it turned sampling on: {}",
        leak.stderr_text()
    );
    let requests = 4000;
    send_requests(&addr, "/work", requests);
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);
    let stacks = read_folded(&folded);
    let top = stacks
        .first()
        .expect("no stacks: sampling was not turned on");
    assert_eq!(top.leaf(), "bytes.Repeat", "{:?}", top.frames);
    assert_eq!(
        top.caller(),
        "main.(*RequestTracker).Track",
        "{:?}",
        top.frames
    );
    // Sampled at 512 KiB: ~80 samples, so the estimate is within a few
    // standard deviations (~11% each) of the known leak.
    let truth = requests as f64 * SEED_LEAK_PER_REQUEST;
    let ratio = top.bytes as f64 / truth;
    eprintln!(
        "sampling off {version}: {} B vs {truth} B leaked, ratio {ratio:.3}",
        top.bytes
    );
    assert!(
        (0.6..=1.4).contains(&ratio),
        "estimate {} B vs leaked {truth} B",
        top.bytes
    );
}

#[test]
fn sampling_off_go1_19() {
    sampling_off("1.19.8");
}

#[test]
fn sampling_off_go1_21() {
    sampling_off("1.21.13");
}

#[test]
fn sampling_off_go1_27() {
    sampling_off("1.27.3");
}

/// Heavy allocation with a constant 32 MiB live set: the estimate stays
/// within 2x of the live set and does not climb.
#[test]
fn no_leak_steady_live_set() {
    let version = "1.25.5";
    let bin = build_go("steady", version, Variant::Plain);
    let dir = scratch("steady");
    let live = 32.0 * 1024.0 * 1024.0;
    let program = Program::start(&bin, &["-live", "33554432"]);
    // At Go's default rate about one 64 KiB buffer in eight is sampled
    // (~64 of 512): each report's estimate then moves by ±12 %, and means
    // of thirds differed by 26 % once (CI, 2026-12-04). At 64 KiB, most
    // are: the question here is the trend, not the default rate.
    let mut leak = LeakArgs::trace(&bin)
        .pid(program.pid())
        .opt("--rate", 65536)
        .opt("--interval", 2)
        .opt("--duration", 20)
        .spawn(&dir);
    assert!(leak.wait(60).success(), "{}", leak.stderr_text());
    let heap = heap_at_last_gc(&leak.stdout_text());
    eprintln!(
        "steady: heap at last GC per report (MiB): {:?}",
        heap.iter().map(|b| b / 1048576.0).collect::<Vec<_>>()
    );
    assert!(
        heap.len() >= 8,
        "expected ~10 reports: {}",
        leak.stdout_text()
    );
    let last = *heap.last().unwrap();
    assert!(
        last >= live / 2.0 && last <= live * 2.0,
        "estimate {last} B vs live set {live} B"
    );
    // No upward trend: the last third is not above the middle third by more
    // than noise.
    let third = heap.len() / 3;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let middle = mean(&heap[third..2 * third]);
    let end = mean(&heap[2 * third..]);
    assert!(
        end <= middle * 1.25,
        "climbing: middle {middle} B, end {end} B"
    );
}

/// Without --pid, a process started after leak is traced too.
#[test]
fn started_later() {
    let version = "1.25.5";
    let bin = build_go("seed", version, Variant::Plain);
    let dir = scratch("started-later");
    let folded = dir.join("later.folded");
    let mut leak = LeakArgs::trace(&bin).out("--folded", &folded).attach(&dir);
    let service = Program::start(&bin, &[]);
    send_requests(&service.addr(), "/work", 3000);
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGTERM);
    let stacks = read_folded(&folded);
    let top = stacks
        .first()
        .expect("allocations of the later process not seen");
    assert_eq!(top.leaf(), "bytes.Repeat", "{:?}", top.frames);
    let report = leak.stdout_text();
    assert!(
        report.contains(&format!("pid {}", service.pid())),
        "report should name the process: {report}"
    );
}

/// SIGINT mid-trace: complete outputs, probes detached, target unharmed.
#[test]
fn interrupted() {
    let version = "1.27.3";
    let bin = build_go("seed", version, Variant::Plain);
    let dir = scratch("interrupted");
    let mut service = Program::start(&bin, &[]);
    let addr = service.addr();
    let folded = dir.join("int.folded");
    let svg = dir.join("int.svg");
    let mut leak = LeakArgs::trace(&bin)
        .pid(service.pid())
        .opt("--duration", 600)
        .out("--folded", &folded)
        .out("--flamegraph", &svg)
        .attach(&dir);
    send_requests(&addr, "/work", 1500);
    leak.stop(SIGINT);
    let stacks = read_folded(&folded);
    assert!(!stacks.is_empty());
    assert_flamegraph(&svg, &[]);
    // No leftover temporary files.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".partial")), "{names:?}");
    // Probes are gone from the kernel and the target still serves.
    let uprobes = fs::read_to_string("/sys/kernel/debug/tracing/uprobe_events")
        .or_else(|_| fs::read_to_string("/sys/kernel/tracing/uprobe_events"))
        .unwrap_or_default();
    assert!(
        !uprobes.contains(bin.file_name().unwrap().to_str().unwrap()),
        "{uprobes}"
    );
    send_requests(&addr, "/work", 10);
    assert!(service.running(), "target died");
}

/// Runs leak with `args`, expecting failure with one line on stderr and no
/// output file.
fn expect_one_line_error(name: &str, args: &[&str], expect: &str) {
    let dir = scratch(name);
    let folded = dir.join("out.folded");
    let mut all: Vec<&str> = args.to_vec();
    let folded_s = folded.to_str().unwrap().to_string();
    all.extend(["--folded", &folded_s]);
    let mut leak = Leak::spawn(&dir, &all);
    let status = leak.wait(30);
    let err = leak.stderr_text();
    assert!(!status.success(), "{name}: should fail");
    assert_eq!(
        status.code(),
        Some(1),
        "{name}: exit code (a panic exits 101)"
    );
    assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
    assert!(err.contains(expect), "{name}: expected {expect:?} in {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    assert!(!folded.exists(), "{name}: output file left behind");
}

#[test]
fn bad_input() {
    let dir = scratch("bad-input-files");
    let not_elf = dir.join("notes.txt");
    fs::write(&not_elf, "just text\n").unwrap();
    expect_one_line_error(
        "missing",
        &["trace", "--uprobe", "/nonexistent/app"],
        "/nonexistent/app",
    );
    expect_one_line_error(
        "not-elf",
        &["trace", "--uprobe", not_elf.to_str().unwrap()],
        "not an ELF",
    );
    expect_one_line_error(
        "not-go",
        &["trace", "--uprobe", "/bin/ls"],
        "not a Go program",
    );

    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let bin_s = bin.to_str().unwrap();
    // A pid that runs something else: our own test process.
    let me = std::process::id().to_string();
    expect_one_line_error(
        "wrong-pid",
        &["trace", "--uprobe", bin_s, "--pid", &me],
        "is not running",
    );
    expect_one_line_error(
        "no-such-pid",
        &["trace", "--uprobe", bin_s, "--pid", "3999999"],
        "no process with pid 3999999",
    );
}

#[test]
fn not_root() {
    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let dir = scratch("not-root");
    // The output directory is writable by anyone, so the refusal is about
    // root, not the directory (which leak checks first).
    let anyone = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777);
    std::fs::set_permissions(&dir, anyone).unwrap();
    // The binary must be readable by the unprivileged user.
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(leak_bin())
        .args(["trace", "--uprobe"])
        .arg(&bin)
        .arg("--folded")
        .arg(dir.join("x.folded"))
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("needs root"), "{err}");
    assert!(!Path::new(&dir.join("x.folded")).exists());
}
