//! `leak heap`: the program's own heap profile records, read from outside,
//! held against what the program serves at `/debug/pprof/heap` a moment
//! before. Root only; run through `cargo xtask test`.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    time::Instant,
};

use leak_tests::*;

/// Requests of 10,000 bytes each that the seed keeps forever.
const REQUESTS: usize = 3000;
/// Allowed difference, per stack and in total.
const TOLERANCE: f64 = 0.03;
/// Frames leak trims from the leaf and Go 1.27's own profile keeps
/// (runtime code reached by `go:linkname`): their bytes are their caller's.
const TRIMMED: &[&str] = &["internal/bytealg.MakeNoZero"];

fn leak_heap(args: &[&str]) -> Output {
    Command::new(leak_bin())
        .arg("heap")
        .args(args)
        .output()
        .expect("run leak heap")
}

fn close(a: u64, b: u64) -> bool {
    (a as f64 - b as f64).abs() <= TOLERANCE * (b as f64).max(1.0)
}

/// A service that leaked before anyone looked: leak heap's numbers are its
/// own profile's, stack by stack, with no eBPF and nothing written.
fn matches_own_profile(version: &str, variant: Variant) {
    let (_, prog, addr, dir) = leaked_service("seed", version, variant, REQUESTS);
    let own = dir.join("own.pb.gz");
    fs::write(&own, get(&addr, "/debug/pprof/heap")).unwrap();
    let ours = dir.join("leak.pb.gz");
    let json = dir.join("leak.json");
    let folded = dir.join("leak.folded");
    let started = Instant::now();
    let out = leak_heap(&[
        "--pid",
        &prog.pid().to_string(),
        "--pprof",
        ours.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--folded",
        folded.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&out.stdout);
    let ctx = format!("go{version} {variant:?}");
    assert!(
        out.status.success(),
        "{ctx}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{ctx}: leak heap answered in {:.2} s\n{report}",
        took.as_secs_f64()
    );

    let theirs = pprof_inuse(version, &own);
    let mine = pprof_inuse(version, &ours);
    let total = |p: &[(String, u64, u64)]| p.iter().map(|f| f.1).sum::<u64>();
    let (t_theirs, t_mine) = (total(&theirs), total(&mine));
    assert!(
        close(t_mine, t_theirs),
        "{ctx}: total in use {t_mine} vs the program's {t_theirs}"
    );
    let cum = |p: &[(String, u64, u64)], f: &str| p.iter().find(|x| x.0 == f).map(|x| x.2);
    let track = "main.(*RequestTracker).Track";
    let (Some(a), Some(b)) = (cum(&mine, track), cum(&theirs, track)) else {
        panic!("{ctx}: {track} missing: leak {mine:?}\nprogram {theirs:?}");
    };
    assert!(
        b > 1_000_000,
        "{ctx}: the program's own profile holds {b} B in {track}"
    );
    assert!(close(a, b), "{ctx}: {track}: {a} vs the program's {b}");
    // The top 10 functions of the program's own profile, by what their
    // stacks hold, each within 3 % in leak's.
    let mut top: Vec<&(String, u64, u64)> = theirs
        .iter()
        .filter(|f| !TRIMMED.contains(&f.0.as_str()))
        .collect();
    top.sort_by_key(|f| std::cmp::Reverse(f.2));
    for (function, _, want) in top.into_iter().take(10) {
        let got = cum(&mine, function).unwrap_or(0);
        assert!(
            close(got, *want),
            "{ctx}: {function}: leak {got} vs the program's {want}"
        );
    }

    let v: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["target"]["source"], "go-records", "{ctx}");
    let held = v["totals"]["outstanding_bytes"].as_f64().unwrap();
    assert!(close(held as u64, t_theirs), "{ctx}: JSON total {held}");
    let stacks = read_folded(&folded);
    assert!(
        stacks[0].frames.iter().any(|f| f == track),
        "{ctx}: top folded stack {:?}",
        stacks[0].frames
    );
}

#[test]
fn heap_matches_own_profile_go1_19() {
    matches_own_profile("1.19.8", Variant::Plain);
}

#[test]
fn heap_matches_own_profile_go1_19_stripped_pie() {
    matches_own_profile("1.19.8", Variant::StrippedPie);
}

#[test]
fn heap_matches_own_profile_go1_21() {
    matches_own_profile("1.21.13", Variant::Plain);
}

#[test]
fn heap_matches_own_profile_go1_21_stripped_pie() {
    matches_own_profile("1.21.13", Variant::StrippedPie);
}

#[test]
fn heap_matches_own_profile_go1_25() {
    matches_own_profile("1.25.5", Variant::Plain);
}

#[test]
fn heap_matches_own_profile_go1_25_stripped_pie() {
    matches_own_profile("1.25.5", Variant::StrippedPie);
}

#[test]
fn heap_matches_own_profile_go1_27() {
    matches_own_profile("1.27.3", Variant::Plain);
}

#[test]
fn heap_matches_own_profile_go1_27_stripped_pie() {
    matches_own_profile("1.27.3", Variant::StrippedPie);
}

/// One line on stderr, a non-zero exit, and no file left behind.
fn refused(args: &[&str], dir: &Path, says: &str) {
    let out_file = dir.join("never.pb.gz");
    let mut all = args.to_vec();
    all.extend(["--pprof", out_file.to_str().unwrap()]);
    let out = leak_heap(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.contains(says), "{args:?}: {err}");
    assert!(!out_file.exists(), "{args:?} left {}", out_file.display());
}

#[test]
fn heap_bad_input_is_one_line() {
    let dir = scratch("heap-bad-input");
    // A pid that has come and gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    refused(
        &["--pid", &gone_pid.to_string()],
        &dir,
        "no process with pid",
    );
    // Not a Go program.
    let sleeper = Program::start(Path::new("/bin/sh"), &["-c", "echo up; exec sleep 60"]);
    refused(
        &["--pid", &sleeper.pid().to_string()],
        &dir,
        "is not a Go program",
    );
    // A Go program with sampling off since start-up: no records, and why.
    let noprof = build_go("seednoprof", "1.25.5", Variant::Plain);
    let prog = Program::start(&noprof, &[]);
    send_requests(&prog.addr(), "/work", 100);
    refused(&["--pid", &prog.pid().to_string()], &dir, "sampling is off");
    // Stripped, and no heap profiler linked: the records cannot be located.
    let noprof = build_go("seednoprof", "1.25.5", Variant::StrippedPie);
    let prog = Program::start(&noprof, &[]);
    refused(
        &["--pid", &prog.pid().to_string()],
        &dir,
        "cannot locate Go's heap profile records",
    );
    // --chart needs a series.
    refused(&["--pid", "1", "--chart", "/tmp/x.svg"], &dir, "--chart");
}
