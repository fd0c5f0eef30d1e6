//! `leak goroutines`: a Go program's goroutines read from outside, held
//! against what the program serves at `/debug/pprof/goroutine?debug=1`
//! (the same groups, with the same counts), on every toolchain the tests
//! build, plain and stripped+PIE; and its refusals. Root only; run through
//! `cargo xtask test`.

use std::process::Command;

use leak_tests::{goroutines::*, *};

fn leak_goroutines(pid: u32, json: &std::path::Path) -> std::process::Output {
    Command::new(leak_bin())
        .args(["goroutines", "--pid", &pid.to_string(), "--json"])
        .arg(json)
        .output()
        .expect("run leak goroutines")
}

/// The program parks goroutines a dozen ways and then holds still: leak's
/// groups are its own profile's, stack for stack and count for count.
fn same_groups_as_own_profile(version: &str, variant: Variant) {
    let bin = build_go("goroutines", version, variant);
    let prog = Program::start(&bin, &[]);
    let addr = prog.addr();
    let dir = scratch(&format!("goroutines-{version}-{variant:?}"));
    let json = dir.join("g.json");
    let ctx = format!("go{version} {variant:?}");
    let mut last = String::new();
    // A goroutine of the previous request may still be exiting: read again.
    for attempt in 1..=3 {
        let own = own_groups(&String::from_utf8_lossy(&get(
            &addr,
            "/debug/pprof/goroutine?debug=1",
        )));
        let out = leak_goroutines(prog.pid(), &json);
        assert!(
            out.status.success(),
            "{ctx}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = leak_groups(&read_json(&json));
        assert!(
            own.len() >= 10,
            "{ctx}: only {} groups in {own:?}",
            own.len()
        );
        if ours == own {
            eprintln!(
                "{ctx}: {} groups, {} goroutines, equal (attempt {attempt})\n{}",
                own.len(),
                own.values().sum::<u64>(),
                String::from_utf8_lossy(&out.stdout)
            );
            return;
        }
        last = format!("own {own:#?}\nleak {ours:#?}");
    }
    panic!("{ctx}: leak's groups differ from the program's own:\n{last}");
}

#[test]
fn same_groups_as_own_profile_go1_19() {
    same_groups_as_own_profile("1.19.8", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_19_stripped_pie() {
    same_groups_as_own_profile("1.19.8", Variant::StrippedPie);
}

#[test]
fn same_groups_as_own_profile_go1_21() {
    same_groups_as_own_profile("1.21.13", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_25_stripped_pie() {
    same_groups_as_own_profile("1.25.5", Variant::StrippedPie);
}

#[test]
fn same_groups_as_own_profile_go1_27() {
    same_groups_as_own_profile("1.27.3", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_27_stripped_pie() {
    same_groups_as_own_profile("1.27.3", Variant::StrippedPie);
}

/// Each refusal is one line and a non-zero exit, with no output file.
#[test]
fn bad_input_is_one_line() {
    let dir = scratch("goroutines-bad");
    let json = dir.join("g.json");
    let c = build_c("leaker");
    let native = Program::start(&c, &[]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--pid".into(), "4194300".into()],
            "no process with pid 4194300",
        ),
        (
            vec!["--pid".into(), native.pid().to_string()],
            "is not a Go program",
        ),
        (
            vec![
                "--pid".into(),
                native.pid().to_string(),
                "--chart".into(),
                "x.svg".into(),
            ],
            "--chart is not written by leak goroutines",
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(leak_bin())
            .arg("goroutines")
            .args(&args)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!json.exists(), "{args:?} left {}", json.display());
    }
}

/// Requests leaked before leak attaches.
const BEFORE: usize = 500;
/// Requests a second while traced, and for how long.
const PER_SEC: u64 = 50;
const LOAD_SECS: u64 = 30;

/// `args` (a leak command) run on `prog` for the load and 2 s more, while
/// `paced_load` sends it; then leak's JSON and the program's own groups.
fn under_load(
    args: LeakArgs,
    prog: &Program,
    addr: &str,
    dir: &std::path::Path,
) -> (
    Leak,
    serde_json::Value,
    std::collections::BTreeMap<Stack, u64>,
) {
    let json = dir.join("leak.json");
    let mut leak = args
        .pid(prog.pid())
        .opt("--duration", LOAD_SECS + 2)
        .out("--json", &json)
        .attach(dir);
    paced_load(addr);
    assert!(leak.wait(60).success(), "{}", leak.stderr_text());
    let own = own_groups(&String::from_utf8_lossy(&get(
        addr,
        "/debug/pprof/goroutine?debug=1",
    )));
    (leak, read_json(&json), own)
}

/// `PER_SEC` requests a second to `/work` for `LOAD_SECS`, on time.
fn paced_load(addr: &str) {
    let started = std::time::Instant::now();
    for i in 0..PER_SEC * LOAD_SECS {
        let due = std::time::Duration::from_millis(i * 1000 / PER_SEC);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        get(addr, "/work");
    }
}

/// The leaking group's count in a goroutine JSON section (its leaf is
/// `main.compute`), and the pool's (`main.worker`): count and verdict.
fn group_of<'a>(goroutines: &'a serde_json::Value, leaf: &str) -> &'a serde_json::Value {
    goroutines["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["frames"][0]["function"] == leaf)
        .unwrap_or_else(|| panic!("no group with leaf {leaf}: {goroutines:#}"))
}

/// A service leaking one goroutine per request, 500 before leak looks and
/// 1,500 while it traces, beside a pool of 8 that holds still: leak counts
/// the leak as the program's own profile does at the end, judges it
/// leaking (growing, if the window is short), and the pool steady.
fn leaking_group_judged(version: &str, variant: Variant) {
    let (bin, prog, addr, dir) = leaked_service("gorleak", version, variant, BEFORE);
    let (leak, report, own) = under_load(
        LeakArgs::trace(&bin).opt("--interval", 10),
        &prog,
        &addr,
        &dir,
    );
    let own_count = |leaf: &str| -> u64 {
        own.iter()
            .filter(|(stack, _)| stack[0].starts_with(&format!("{leaf}:")))
            .map(|(_, n)| n)
            .sum()
    };
    let g = &report["goroutines"];
    let (leaked, pool) = (group_of(g, "main.compute"), group_of(g, "main.worker"));
    let ctx = format!("go{version} {variant:?}");
    eprintln!(
        "{ctx}: leaked {} ({}, {:.1}/s) vs own {}; pool {} ({}) vs own {}",
        leaked["count"],
        leaked["growth"]["verdict"],
        leaked["growth"]["per_sec"].as_f64().unwrap_or(0.0),
        own_count("main.compute"),
        pool["count"],
        pool["growth"]["verdict"],
        own_count("main.worker")
    );
    let want = own_count("main.compute") as f64;
    let got = leaked["count"].as_f64().unwrap();
    assert!(
        (got / want - 1.0).abs() <= 0.02,
        "{ctx}: leak counts {got} leaked goroutines, the program's own profile {want}"
    );
    assert!(
        matches!(
            leaked["growth"]["verdict"].as_str(),
            Some("leaking" | "growing")
        ),
        "{ctx}: {leaked:#}"
    );
    assert_eq!(pool["count"], 8, "{ctx}: {pool:#}");
    assert_eq!(own_count("main.worker"), 8, "{ctx}");
    assert_eq!(pool["growth"]["verdict"], "steady", "{ctx}: {pool:#}");
    // The text report shows the leaking group first.
    let text = leak.stdout_text();
    let table = text.rsplit("goroutines:").next().unwrap();
    let first_row = table.lines().find(|l| l.contains("main.")).unwrap_or("");
    assert!(first_row.contains("main.compute"), "{ctx}: {table}");
}

#[test]
fn leaking_group_judged_go1_19() {
    leaking_group_judged("1.19.8", Variant::Plain);
}

#[test]
fn leaking_group_judged_go1_21_stripped_pie() {
    leaking_group_judged("1.21.13", Variant::StrippedPie);
}

#[test]
fn leaking_group_judged_go1_25() {
    leaking_group_judged("1.25.5", Variant::Plain);
}

#[test]
fn leaking_group_judged_go1_27_stripped_pie() {
    leaking_group_judged("1.27.3", Variant::StrippedPie);
}

/// `leak top` on the same leaking service: the goroutine count of the Go
/// process is the program's own at the end, and the process is judged
/// leaking.
#[test]
fn top_counts_goroutines_of_go_processes() {
    let (_, prog, addr, dir) = leaked_service("gorleak", "1.25.5", Variant::StrippedPie, BEFORE);
    let (leak, report, own) = under_load(LeakArgs::top().opt("--interval", 2), &prog, &addr, &dir);
    let own: u64 = own.values().sum();
    let p = &report["processes"][0];
    let counted = p["goroutines"].as_f64().unwrap();
    eprintln!(
        "leak top: {counted} goroutines vs own {own}; {} ({})",
        p["verdict"], p["reason"]
    );
    assert!(
        (counted / own as f64 - 1.0).abs() <= 0.02,
        "leak top counts {counted} goroutines, the program's own profile {own}"
    );
    assert_eq!(p["verdict"], "leaking", "{p:#}");
    assert!(leak.stdout_text().contains("GOROUTINES"));
}
