//! Symbols and exports end to end: inlined frames, the pprof file read by
//! Go's own tool, `-base` diffs. Root only; run through `cargo xtask test`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use leak_tests::*;

/// Stacks printed by `go tool pprof -traces`, leaf first, "(inline)" marks
/// removed, each with its first value line.
fn pprof_traces(version: &str, profile: &Path) -> Vec<Vec<String>> {
    let out = run_ok(
        Command::new(go(version))
            .args(["tool", "pprof", "-traces", "-sample_index=inuse_space"])
            .arg(profile)
            .env("GOTOOLCHAIN", "local"),
        "go tool pprof -traces",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut traces = Vec::new();
    for block in text.split("-----------+-------------------------------------------------------") {
        let mut frames = Vec::new();
        for line in block.lines() {
            let line = line.trim();
            if line.is_empty() || line.contains("bytes:") || !line.contains('.') {
                continue;
            }
            // The first frame line starts with the value ("6.58MB   main.f").
            let name = match line.split_once("   ") {
                Some((v, rest)) if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                    rest.trim()
                }
                _ => line,
            };
            frames.push(name.trim_end_matches(" (inline)").to_string());
        }
        if !frames.is_empty() && !frames[0].starts_with("File:") {
            traces.push(frames);
        }
    }
    traces
}

/// The trace holding `function`.
fn trace_with(traces: &[Vec<String>], function: &str) -> Vec<String> {
    traces
        .iter()
        .find(|t| t.iter().any(|f| f == function))
        .unwrap_or_else(|| panic!("no trace with {function}: {traces:#?}"))
        .clone()
}

/// What one traced run of the `inlined` service gives: Go's own heap
/// profile and leak's outputs, after `requests` calls of `path`.
struct Run {
    theirs: PathBuf,
    folded: PathBuf,
    pprof: PathBuf,
}

/// Traces the `inlined` service of Go `version` (folded and pprof outputs)
/// while it serves `requests` calls of `path`, then saves its own heap
/// profile.
fn trace_inlined(version: &str, name: &str, path: &str, requests: usize) -> Run {
    let bin = build_go("inlined", version, Variant::Plain);
    let dir = scratch(name);
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let run = Run {
        theirs: dir.join("service.pb.gz"),
        folded: dir.join("ours.folded"),
        pprof: dir.join("ours.pb.gz"),
    };
    let mut leak = LeakArgs::trace(&bin)
        .pid(service.pid())
        .out("--folded", &run.folded)
        .out("--pprof", &run.pprof)
        .attach(&dir);
    send_requests(&addr, path, requests);
    fs::write(&run.theirs, get(&addr, "/debug/pprof/heap?gc=1")).unwrap();
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);
    run
}

/// The top stack of a folded file, leaf first.
fn top_folded(folded: &Path) -> Vec<String> {
    let top = read_folded(folded).into_iter().next().expect("no stacks");
    top.frames.iter().rev().cloned().collect()
}

/// A leak inside a function the compiler inlines: our stack equals the
/// program's own heap profile trace frame for frame, inlined frame included
/// — in the folded output and in our pprof file.
fn inlined_leak_site(version: &str) {
    let run = trace_inlined(version, &format!("inlined-{version}"), "/work", 1500);
    // (Add's own `append` may be sampled too: pick the leak's trace.)
    let want = trace_with(&pprof_traces(version, &run.theirs), "main.newRecord");
    assert_eq!(
        want[..2],
        ["main.newRecord", "main.(*Store).Add"],
        "Go's own trace: {want:?}"
    );
    assert_eq!(
        top_folded(&run.folded),
        want,
        "folded stack vs Go's heap profile"
    );
    let from_pprof = trace_with(&pprof_traces(version, &run.pprof), "main.newRecord");
    assert_eq!(from_pprof, want, "our pprof trace vs Go's heap profile");
}

#[test]
fn inlined_leak_site_go1_21() {
    inlined_leak_site("1.21.13");
}

#[test]
fn inlined_leak_site_go1_27() {
    inlined_leak_site("1.27.3");
}

/// A leak 150 calls deep: Go keeps its first 128 frames (go1.23+ default
/// `profstackdepth`), more than the 127 a kernel stack walk gives, and our
/// stack is Go's, frame for frame.
#[test]
fn deep_stack_as_deep_as_gos() {
    let version = "1.27.3";
    let run = trace_inlined(version, "deep", "/deep", 1000);
    let want = trace_with(&pprof_traces(version, &run.theirs), "main.(*Store).AddDeep");
    assert!(
        want.len() > 127,
        "Go kept only {} frames: {want:?}",
        want.len()
    );
    let got = top_folded(&run.folded);
    assert_eq!(
        got.len(),
        want.len(),
        "frames: ours {} vs Go's {}",
        got.len(),
        want.len()
    );
    assert_eq!(got, want, "folded stack vs Go's heap profile");
}

/// `go tool pprof -top` of our file lists the same top functions as the
/// service's own profile, values within 10%. leak attaches before the
/// service starts, so it sees every sample Go's profile holds.
#[test]
fn pprof_round_trip() {
    let version = "1.25.5";
    let bin = build_go("seed", version, Variant::Plain);
    let dir = scratch("pprof-round-trip");
    let ours = dir.join("ours.pb.gz");
    let mut leak = LeakArgs::trace(&bin).out("--pprof", &ours).attach(&dir);
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    send_requests(&addr, "/work", 2000);
    let theirs = dir.join("service.pb.gz");
    fs::write(&theirs, get(&addr, "/debug/pprof/heap?gc=1")).unwrap();
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);

    let top3 = |p: &Path| -> Vec<(String, u64)> {
        pprof_inuse(version, p)
            .into_iter()
            .filter(|(_, flat, _)| *flat > 0)
            .take(3)
            .map(|(f, flat, _)| (f, flat))
            .collect()
    };
    let (want, got) = (top3(&theirs), top3(&ours));
    eprintln!("pprof round trip: service {want:?}\n                  leak    {got:?}");
    assert_eq!(
        got.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        want.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        "top 3 functions"
    );
    for ((f, g), (_, w)) in got.iter().zip(&want) {
        let ratio = *g as f64 / *w as f64;
        assert!((ratio - 1.0).abs() <= 0.10, "{f}: ours {g} B vs Go's {w} B");
    }
}

/// `go tool pprof -base A B` of two of our profiles taken 1,000 requests
/// apart shows the 1,000 requests' leak: about 10.24 MB in bytes.Repeat.
#[test]
fn pprof_base_diff() {
    let version = "1.25.5";
    let bin = build_go("seed", version, Variant::Plain);
    let dir = scratch("pprof-base");
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let (a, b) = (dir.join("a.pb.gz"), dir.join("b.pb.gz"));
    // Finer sampling than the default, so 1,000 requests are ~600 samples
    // and the check is not at the mercy of sampling noise. --keep-rate: the
    // first leak to exit would otherwise put Go's default back under the
    // second (which follows it, but on ~20 samples).
    let spawn = |name: &str, out: &Path| {
        let sub = dir.join(name);
        fs::create_dir_all(&sub).unwrap();
        LeakArgs::trace(&bin)
            .pid(service.pid())
            .opt("--rate", 16384)
            .flag("--keep-rate")
            .out("--pprof", out)
            .attach(&sub)
    };
    let mut leak_a = spawn("a", &a);
    let mut leak_b = spawn("b", &b);
    send_requests(&addr, "/work", 1000);
    get(&addr, "/debug/pprof/heap?gc=1");
    thread::sleep(Duration::from_secs(1));
    leak_a.stop(SIGINT);
    send_requests(&addr, "/work", 1000);
    get(&addr, "/debug/pprof/heap?gc=1");
    thread::sleep(Duration::from_secs(1));
    leak_b.stop(SIGINT);

    let out = Command::new(go(version))
        .args([
            "tool",
            "pprof",
            "-top",
            "-sample_index=inuse_space",
            "-unit=B",
            "-base",
        ])
        .arg(&a)
        .arg(&b)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let growth: u64 = text
        .lines()
        .find(|l| l.trim_end().ends_with(" bytes.Repeat"))
        .and_then(|l| l.split_whitespace().next()?.strip_suffix('B')?.parse().ok())
        .unwrap_or_else(|| panic!("no bytes.Repeat in the diff:\n{text}"));
    let expected = 1000.0 * 10240.0;
    eprintln!("pprof -base: bytes.Repeat grew {growth} B, expected {expected} B");
    assert!(
        (growth as f64 / expected - 1.0).abs() <= 0.15,
        "growth {growth} B vs {expected} B:\n{text}"
    );
}
