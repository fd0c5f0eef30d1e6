//! `leak trace` starts from what the program held before leak attached,
//! read from its own heap profile records, and agrees with the program's
//! own `/debug/pprof/heap` taken just before. Root only; run through
//! `cargo xtask test`.

use std::{fs, time::Instant};

use leak_tests::*;

/// Requests of 10,000 bytes each that the seed keeps forever.
const REQUESTS: usize = 3000;
/// Allowed difference from the program's own profile.
const TOLERANCE: f64 = 0.03;
const TRACK: &str = "main.(*RequestTracker).Track";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * b.max(1.0)
}

/// A service that leaked 30 MB before leak attached, then no load.
fn leak_before_attach(version: &str, variant: Variant) {
    let (bin, prog, addr, dir) = leaked_service("seed", version, variant, REQUESTS);
    let own = dir.join("own.pb.gz");
    fs::write(&own, get(&addr, "/debug/pprof/heap")).unwrap();
    let report = dir.join("leak.json");
    let started = Instant::now();
    let mut leak = LeakArgs::trace(&bin)
        .pid(prog.pid())
        .opt("--duration", 2)
        .out("--json", &report)
        .spawn(&dir);
    let status = leak.wait(60);
    let ctx = format!("go{version} {variant:?}");
    assert!(status.success(), "{ctx}: {}", leak.stderr_text());
    let out = leak.stdout_text();
    let err = leak.stderr_text();
    eprintln!(
        "{ctx}: exited {:.1} s after start\n{err}{out}",
        started.elapsed().as_secs_f64()
    );

    let theirs = pprof_inuse(version, &own);
    let cum = |f: &str| theirs.iter().find(|x| x.0 == f).map(|x| x.2 as f64);
    let total: f64 = theirs.iter().map(|f| f.1 as f64).sum();
    let want = cum(TRACK).unwrap_or_else(|| panic!("{ctx}: no {TRACK} in {theirs:?}"));
    assert!(
        want > 1e6,
        "{ctx}: the program's own profile holds {want} B"
    );

    // The first report, printed at attach, already holds the history.
    let first = out.split("final report").next().unwrap();
    assert!(
        first.contains("from before attach (Go's own records)"),
        "{ctx}: {out}"
    );
    assert!(err.contains("history:"), "{ctx}: {err}");

    let v = read_json(&report);
    let got = sum_through(&v, TRACK, "outstanding_bytes");
    assert!(
        close(got, want),
        "{ctx}: {TRACK} holds {got} in leak's report, {want} in the program's"
    );
    let held = v["totals"]["outstanding_bytes"].as_f64().unwrap();
    assert!(
        close(held, total),
        "{ctx}: total {held} vs the program's {total}"
    );
    let history = v["totals"]["history_bytes"]
        .as_f64()
        .expect("history_bytes");
    assert!(
        history >= want * (1.0 - TOLERANCE),
        "{ctx}: history {history}"
    );
}

#[test]
fn history_go1_19() {
    leak_before_attach("1.19.8", Variant::Plain);
}

#[test]
fn history_go1_19_stripped_pie() {
    leak_before_attach("1.19.8", Variant::StrippedPie);
}

#[test]
fn history_go1_21() {
    leak_before_attach("1.21.13", Variant::Plain);
}

#[test]
fn history_go1_21_stripped_pie() {
    leak_before_attach("1.21.13", Variant::StrippedPie);
}

#[test]
fn history_go1_25() {
    leak_before_attach("1.25.5", Variant::Plain);
}

#[test]
fn history_go1_25_stripped_pie() {
    leak_before_attach("1.25.5", Variant::StrippedPie);
}

#[test]
fn history_go1_27() {
    leak_before_attach("1.27.3", Variant::Plain);
}

#[test]
fn history_go1_27_stripped_pie() {
    leak_before_attach("1.27.3", Variant::StrippedPie);
}

/// Sampling off since start-up: leak says there is no history and why,
/// and the numbers start when it turns sampling on.
#[test]
fn history_none_when_sampling_was_off() {
    let bin = build_go("seednoprof", "1.25.5", Variant::Plain);
    let prog = Program::start(&bin, &[]);
    let addr = prog.addr();
    send_requests(&addr, "/work", 1000);
    let dir = scratch("history-none");
    let report = dir.join("leak.json");
    let mut leak = LeakArgs::trace(&bin)
        .pid(prog.pid())
        .opt("--rate", 4096)
        .out("--json", &report)
        .attach(&dir);
    send_requests(&addr, "/work", 1000);
    leak.stop(SIGINT);
    let err = leak.stderr_text();
    assert!(
        err.contains("no history: Go heap sampling is off"),
        "says why: {err}"
    );
    let v = read_json(&report);
    assert!(v["totals"]["history_bytes"].is_null(), "{v}");
    // 1,000 requests after the turn-on, 10,000 bytes each; the 1,000
    // before are not invented.
    let got = sum_through(&v, TRACK, "outstanding_bytes");
    assert!(
        (5e6..15e6).contains(&got),
        "{TRACK}: {got} B, expected about 10 MB from the turn-on"
    );
}
