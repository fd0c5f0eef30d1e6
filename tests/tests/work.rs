//! Tie the leak to work: growth verdicts per stack, bytes retained per call,
//! time to detect. Root only; run through `cargo xtask test`.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use leak_tests::*;
use serde_json::Value;

/// The JSON stack whose frames include `function`.
fn stack_with<'a>(report: &'a Value, function: &str) -> &'a Value {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"] == function)
        })
        .unwrap_or_else(|| panic!("no stack with {function}"))
}

fn verdict(stack: &Value) -> &str {
    stack["growth"]["verdict"].as_str().unwrap_or("none")
}

/// A cache that fills then stops, a steady leak and heavy churn in one
/// process: the leak ranks first and is leaking at about its true rate, the
/// cache is steady, the churn is not growing.
#[test]
fn three_behaviours_in_one_process() {
    let bin = build_go("behaviours", "1.25.5", Variant::Plain);
    let dir = scratch("behaviours");
    let program = Program::start(&bin, &[]);
    let json = dir.join("report.json");
    let mut leak = LeakArgs::trace(&bin)
        .pid(program.pid())
        .opt("--rate", 65536)
        .opt("--duration", 60)
        .opt("--interval", 20)
        .out("--json", &json)
        .spawn(&dir);
    assert!(leak.wait(120).success(), "{}", leak.stderr_text());
    let report: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let (leak_s, cache, churn) = (
        stack_with(&report, "main.leakTick"),
        stack_with(&report, "main.fillCache"),
        stack_with(&report, "main.churn"),
    );
    let rate = leak_s["growth"]["bytes_per_sec"].as_f64().unwrap();
    eprintln!(
        "behaviours: leak {} at {rate:.0} B/s ({}); cache {} ({}); churn {} ({})",
        verdict(leak_s),
        leak_s["growth"]["reason"],
        verdict(cache),
        cache["growth"]["reason"],
        verdict(churn),
        churn["growth"]["reason"]
    );
    assert_eq!(verdict(leak_s), "leaking");
    assert!(
        (rate / 204800.0 - 1.0).abs() <= 0.25,
        "leak rate {rate} B/s vs 204800"
    );
    assert_eq!(verdict(cache), "steady");
    assert!(
        !matches!(verdict(churn), "leaking" | "growing"),
        "churn: {}",
        verdict(churn)
    );
    // Ranked first in the text report (sorted by growth).
    let out = leak.stdout_text();
    let final_report = out.rsplit("final report").next().unwrap();
    let first_row = final_report
        .lines()
        .skip_while(|l| !l.contains("CODE PATH"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_row.contains("LEAKING") && first_row.contains("main.leakTick"),
        "first row: {first_row}\n{final_report}"
    );
}

/// Sends `n` requests at about `per_sec` per second.
fn paced_requests(addr: &str, n: usize, per_sec: f64) {
    let start = Instant::now();
    for i in 0..n {
        get(addr, "/work");
        let due = Duration::from_secs_f64((i + 1) as f64 / per_sec);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
}

/// `--work` on the seed's handler: bytes retained per call within 10% of
/// 10,240 (the size class of a 10,000-byte slice), overall and for the
/// leaking stack. Sampling at 16 KiB keeps the estimate's noise (~3%) well
/// inside the tolerance.
#[test]
fn bytes_per_request() {
    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let dir = scratch("per-request");
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let json = dir.join("report.json");
    let mut leak = LeakArgs::trace(&bin)
        .pid(service.pid())
        .opt("--rate", 16384)
        .opt("--work", "main.main.func1")
        .out("--json", &json)
        .attach(&dir);
    paced_requests(&addr, 2000, 200.0);
    thread::sleep(Duration::from_secs(2));
    leak.stop(SIGINT);
    let report: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let calls = report["work"]["calls"].as_u64().unwrap();
    let overall = report["work"]["bytes_per_call"].as_f64().unwrap();
    let leak_stack = stack_with(&report, "bytes.Repeat");
    let per_call = leak_stack["growth"]["bytes_per_call"].as_f64().unwrap();
    eprintln!("per request: {calls} calls, overall {overall:.0} B/call, leaking stack {per_call:.0} B/call");
    assert_eq!(calls, 2000);
    assert!(
        (overall / 10240.0 - 1.0).abs() <= 0.10,
        "overall {overall} B/call"
    );
    assert!(
        (per_call / 10240.0 - 1.0).abs() <= 0.10,
        "stack {per_call} B/call"
    );
}

/// Seconds from the start of load until the seed's leaking stack is first
/// marked growing or leaking, with reports every second.
fn time_to_detect(rate: Option<&str>, limit_secs: u64) -> Option<f64> {
    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let dir = scratch(&format!("detect-{}", rate.unwrap_or("default")));
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    let mut args = LeakArgs::trace(&bin)
        .pid(service.pid())
        .opt("--interval", 1);
    if let Some(r) = rate {
        args = args.opt("--rate", r);
    }
    let mut leak = args.attach(&dir);
    let start = Instant::now();
    let load = {
        let addr = addr.clone();
        thread::spawn(move || paced_requests(&addr, 100 * limit_secs as usize, 100.0))
    };
    let mut found = None;
    while start.elapsed() < Duration::from_secs(limit_secs) {
        thread::sleep(Duration::from_millis(200));
        let out = leak.stdout_text();
        let marked = out.lines().any(|l| {
            l.contains("bytes.Repeat") && (l.contains("LEAKING") || l.contains(" growing "))
        });
        if marked {
            found = Some(start.elapsed().as_secs_f64());
            break;
        }
    }
    load.join().unwrap();
    leak.signal(SIGINT);
    leak.wait(60);
    found
}

/// At `--rate 4096` and 100 requests/s the leak is marked within 15 s.
#[test]
fn time_to_detect_fine_rate() {
    let t = time_to_detect(Some("4096"), 15);
    eprintln!("time to detect at --rate 4096: {t:?} s");
    assert!(t.is_some(), "leaking stack not marked growing within 15 s");
}

/// The same at Go's default rate (512 KiB: about 2 samples/s of this leak):
/// slower, but within a minute.
#[test]
fn time_to_detect_default_rate() {
    let t = time_to_detect(None, 60);
    eprintln!("time to detect at the default rate: {t:?} s");
    assert!(t.is_some(), "leaking stack not marked growing within 60 s");
}
