//! `leak trace --pid` on native programs: malloc and free of the allocator
//! each process really uses, sampled by bytes in the kernel, stacks
//! unwound from `.eh_frame` (no frame pointers), held against the
//! program's own count of what it keeps. Root only; run through
//! `cargo xtask test`.

use std::{
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use leak_tests::*;

/// The stacks of a `leak trace --json` report whose frames include
/// `function` (a prefix of the demangled name), with what they hold.
fn stacks_through<'a>(doc: &'a serde_json::Value, function: &str) -> Vec<&'a serde_json::Value> {
    doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["function"].as_str().unwrap_or("").starts_with(function))
        })
        .collect()
}

fn sum(stacks: &[&serde_json::Value], field: &str) -> f64 {
    stacks.iter().map(|s| s[field].as_f64().unwrap()).sum()
}

/// Runs test program `bin` (which prints "ready pid N", waits for SIGUSR1,
/// works, then prints "done kept BYTES bytes …") under `leak trace --pid`
/// with `args`, and returns leak's JSON report, the bytes the program
/// says it kept, and leak's stdout.
fn traced_run(
    bin: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    name: &str,
) -> (serde_json::Value, u64, String) {
    traced_run_with(bin, env, args, name, None)
}

/// [`traced_run`], for a program started with `go_file` as its argument,
/// which waits for that file to exist instead of SIGUSR1.
fn traced_run_with(
    bin: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    name: &str,
    go_file: Option<&Path>,
) -> (serde_json::Value, u64, String) {
    let dir = scratch(name);
    let json = dir.join("trace.json");
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied());
    if let Some(f) = go_file {
        let _ = std::fs::remove_file(f);
        cmd.arg(f);
    }
    let mut program = Program::start_following_command(&mut cmd);
    let mut leak = LeakArgs::trace_any().pid(program.pid());
    for pair in args.chunks(2) {
        leak = leak.opt(pair[0], pair[1]);
    }
    let mut leak = leak.out("--json", &json).spawn(&dir);
    leak.wait_attached();
    match go_file {
        Some(f) => std::fs::write(f, b"go").unwrap(),
        None => program.signal(SIGUSR1),
    }
    let done = program
        .wait_line(Duration::from_secs(60), |l| l.starts_with("done kept "))
        .expect("the program never finished its work");
    let kept: u64 = done.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Let the last samples drain, then stop leak as a person would.
    thread::sleep(Duration::from_millis(1500));
    leak.stop(SIGINT);
    (read_json(&json), kept, leak.stdout_text())
}

/// The acceptance check: a C++ program built `-O2` without frame pointers
/// keeps 20,000 × 1,000 bytes through `operator new` in
/// `app::Session::remember`, called from a request handler, and churns a
/// 4 KiB vector per request in `app::churn`. At `--rate 4096` the leaking
/// stack holds the program's own count within 10 %, unwound through the
/// handler to `main`, demangled; the churn holds < 2 % of what it
/// allocated.
#[test]
fn cpp_leak_without_frame_pointers() {
    let bin = build_optimized("cppleak.cpp");
    let (doc, kept, text) = traced_run(&bin, &[], &["--rate", "4096"], "native-cpp");
    assert_eq!(doc["target"]["source"], "native", "{doc}");
    assert_eq!(doc["target"]["sampling_rate"], 4096);
    let leak = stacks_through(&doc, "app::Session::remember(");
    let leak: Vec<_> = leak
        .into_iter()
        .filter(|s| {
            s["frames"][0]["function"]
                .as_str()
                .unwrap()
                .starts_with("app::Session::remember(")
        })
        .collect();
    let held = sum(&leak, "outstanding_bytes");
    let dropped = &doc["dropped"];
    eprintln!(
        "app::Session::remember holds {held:.0} B by leak's count, {kept} B by the program's ({:.3}); dropped {dropped}",
        held / kept as f64
    );
    assert!(
        (held / kept as f64 - 1.0).abs() <= 0.10,
        "{held} vs {kept}\n{text}"
    );
    // Unwound through the handler to main.
    let top = leak[0]["frames"].as_array().unwrap();
    let names: Vec<&str> = top
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("app::handle_request(")),
        "{names:?}"
    );
    assert!(names.contains(&"main"), "{names:?}");
    // The churn: freed as fast as allocated.
    let churn = stacks_through(&doc, "app::churn(");
    let (held, allocated) = (
        sum(&churn, "outstanding_bytes"),
        sum(&churn, "allocated_bytes"),
    );
    eprintln!("app::churn holds {held:.0} B of {allocated:.0} B allocated");
    assert!(allocated > 40e6, "churn allocated {allocated}");
    assert!(held < 0.02 * allocated, "churn holds {held} of {allocated}");
}

/// The same program sampled every allocation (`--rate 1`): the leaking
/// stack holds exactly what the program keeps.
#[test]
fn every_allocation_at_rate_one() {
    let bin = build_optimized("cppleak.cpp");
    let started = Instant::now();
    let (doc, kept, _) = traced_run(&bin, &[], &["--rate", "1"], "native-rate1");
    let leak = stacks_through(&doc, "app::Session::remember(");
    let held: f64 = leak
        .iter()
        .filter(|s| {
            s["frames"][0]["function"]
                .as_str()
                .unwrap()
                .starts_with("app::Session::remember(")
        })
        .map(|s| s["outstanding_bytes"].as_f64().unwrap())
        .sum();
    let dropped = doc["dropped"]["allocs"].as_u64().unwrap();
    eprintln!(
        "rate 1: {held:.0} B held of {kept} B kept, {dropped} samples dropped ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    // Each sample lost in a burst is one block missing: the rest exact.
    assert!(held <= kept as f64, "{held} > {kept}");
    assert!(
        held >= kept as f64 - 1000.0 * dropped as f64 - 1.0,
        "{held} vs {kept}, {dropped} dropped"
    );
    assert!(held >= 0.5 * kept as f64, "{held} vs {kept}");
}

/// A process that maps no allocator at all (a static program without the
/// C library): one line that says so, a non-zero exit, no output file.
#[test]
fn no_allocator_is_one_line() {
    let dir = scratch("native-none");
    let bin = dir.join("nomalloc");
    let status = Command::new("cc")
        .args(["-static", "-nostdlib", "-O1", "-o"])
        .arg(&bin)
        .arg(root().join("tests/c/nomalloc.c"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(&bin).spawn().unwrap();
    thread::sleep(Duration::from_millis(200));
    let json = dir.join("none.json");
    let out = Command::new(leak_bin())
        .args([
            "trace",
            "--pid",
            &child.id().to_string(),
            "--duration",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("defines malloc"), "{err}");
    assert!(!json.exists(), "an output file was left");
}

/// The C twin with Debian's jemalloc preloaded: leak probes jemalloc's
/// malloc and free (not the C library's, which serve nothing), and finds
/// the leak within 10 % of the program's own count.
#[test]
fn c_leak_through_a_preloaded_jemalloc() {
    let jemalloc = debian_binary("libjemalloc2", "usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    let bin = build_optimized("cleak.c");
    let preload = jemalloc.to_str().unwrap();
    let (doc, kept, text) = traced_run(
        &bin,
        &[("LD_PRELOAD", preload)],
        &["--rate", "4096"],
        "native-jemalloc",
    );
    assert!(
        text.contains("libjemalloc.so.2"),
        "the report does not name jemalloc:\n{text}"
    );
    let held: f64 = stacks_through(&doc, "remember_request")
        .iter()
        // GCC may name its clone remember_request.constprop.0.
        .filter(|s| {
            s["frames"][0]["function"]
                .as_str()
                .unwrap()
                .starts_with("remember_request")
        })
        .map(|s| s["outstanding_bytes"].as_f64().unwrap())
        .sum();
    eprintln!(
        "jemalloc: remember_request holds {held:.0} B by leak's count, {kept} B by the program's ({:.3})",
        held / kept as f64
    );
    assert!(
        (held / kept as f64 - 1.0).abs() <= 0.10,
        "{held} vs {kept}\n{text}"
    );
    let churn = stacks_through(&doc, "churn");
    let (held, allocated) = (
        sum(&churn, "outstanding_bytes"),
        sum(&churn, "allocated_bytes"),
    );
    assert!(held < 0.02 * allocated, "churn holds {held} of {allocated}");
}

/// A Rust program built with `rustc -O` (no frame pointers) keeping
/// 20,000 × 1,000 bytes in a `Vec<Box<[u8]>>` through `Cache::remember`:
/// found by its demangled name, within 10 % of its own count, Rust's
/// allocator shims trimmed from the leaf.
#[test]
fn rust_leak_without_frame_pointers() {
    let dir = scratch("native-rust");
    let bin = dir.join("rleak");
    let status = Command::new("rustc")
        .args(["-O", "-o"])
        .arg(&bin)
        .arg(root().join("tests/rust/rleak.rs"))
        .status()
        .unwrap();
    assert!(status.success(), "rustc rleak.rs failed");
    let go = dir.join("go");
    let (doc, kept, text) =
        traced_run_with(&bin, &[], &["--rate", "4096"], "native-rust-run", Some(&go));
    let leak: Vec<_> = stacks_through(&doc, "rleak::Cache::remember")
        .into_iter()
        .filter(|s| s["frames"][0]["function"] == "rleak::Cache::remember")
        .collect();
    let held = sum(&leak, "outstanding_bytes");
    eprintln!(
        "rleak::Cache::remember holds {held:.0} B by leak's count, {kept} B by the program's ({:.3})",
        held / kept as f64
    );
    assert!(
        (held / kept as f64 - 1.0).abs() <= 0.10,
        "{held} vs {kept}\n{text}"
    );
    let names: Vec<&str> = leak[0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"rleak::handle_request"), "{names:?}");
    assert!(names.contains(&"rleak::main"), "{names:?}");
}

/// The C leaker (1 KiB a millisecond, for a minute) traced for 36 s at
/// `--rate 65536`: its stack, `leak_request_buffer`, is judged leaking from
/// its series of outstanding bytes, growing about as fast as the program
/// allocates.
#[test]
fn a_steady_native_leak_is_judged_leaking() {
    let dir = scratch("native-verdict");
    let leaker = Program::start(&build_c("leaker"), &["-t", "60"]);
    let json = dir.join("trace.json");
    let mut leak = LeakArgs::trace_any()
        .pid(leaker.pid())
        .opt("--rate", 65536)
        .opt("--duration", 36)
        .out("--json", &json)
        .attach(&dir);
    assert!(leak.wait(90).success(), "{}", leak.stderr_text());
    let doc = read_json(&json);
    let top = &doc["stacks"][0];
    let leaf = top["frames"][0]["function"].as_str().unwrap();
    let growth = &top["growth"];
    eprintln!(
        "top stack: {leaf}, {} B outstanding, growth {growth}",
        top["outstanding_bytes"]
    );
    assert_eq!(leaf, "leak_request_buffer", "{doc}");
    assert_eq!(growth["verdict"], "leaking", "{growth}");
    // 1 KiB a millisecond is at most 1 MiB/s; a loaded host sleeps longer.
    let rate = growth["bytes_per_sec"].as_f64().unwrap();
    assert!(rate > 0.3e6 && rate < 1.2e6, "{rate} B/s");
}
