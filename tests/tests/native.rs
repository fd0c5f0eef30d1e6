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
    stacks_where(doc, |f| f.starts_with(function))
}

/// The stacks whose leaf (the allocating function) starts with `function`
/// (GCC may name a clone `remember_request.constprop.0`).
fn leaf_stacks<'a>(doc: &'a serde_json::Value, function: &str) -> Vec<&'a serde_json::Value> {
    stacks_through(doc, function)
        .into_iter()
        .filter(|s| {
            s["frames"][0]["function"]
                .as_str()
                .unwrap_or("")
                .starts_with(function)
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
    // Options with a value, and flags without one.
    let mut i = 0;
    while i < args.len() {
        match args.get(i + 1) {
            Some(v) if !v.starts_with("--") => {
                leak = leak.opt(args[i], v);
                i += 2;
            }
            _ => {
                leak = leak.flag(args[i]);
                i += 1;
            }
        }
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
    let pprof = scratch("native-cpp-pprof").join("cpp.pb.gz");
    let pprof_arg = pprof.to_str().unwrap();
    let (doc, kept, text) = traced_run(
        &bin,
        &[],
        &["--rate", "4096", "--pprof", pprof_arg],
        "native-cpp",
    );
    let leak = assert_cpp_leak(&doc, kept, &text);
    // The pprof profile, read by Go's own tool, says the same.
    let flat: u64 = pprof_inuse("1.25.5", &pprof)
        .iter()
        .filter(|(f, _, _)| f.starts_with("app::Session::remember"))
        .map(|(_, flat, _)| *flat)
        .sum();
    let json_flat = sum(&leak, "outstanding_bytes");
    eprintln!("pprof: app::Session::remember flat {flat} B; JSON {json_flat:.0} B");
    assert!(
        (flat as f64 / json_flat - 1.0).abs() < 0.01,
        "{flat} vs {json_flat}"
    );
    assert_source_lines(&doc, &pprof);
}

/// The checks of the C++ program's report: the leaking stack of
/// `app::Session::remember` within 10 % of the program's count, unwound
/// through the handler to `main`; the churn holds < 2 % of what it
/// allocated. Returns the leaking stacks.
fn assert_cpp_leak<'a>(
    doc: &'a serde_json::Value,
    kept: u64,
    text: &str,
) -> Vec<&'a serde_json::Value> {
    assert_eq!(doc["target"]["source"], "native", "{doc}");
    assert_eq!(doc["target"]["sampling_rate"], 4096);
    let leak = leaf_stacks(doc, "app::Session::remember(");
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
    let churn = stacks_through(doc, "app::churn(");
    let (held, allocated) = (
        sum(&churn, "outstanding_bytes"),
        sum(&churn, "allocated_bytes"),
    );
    eprintln!("app::churn holds {held:.0} B of {allocated:.0} B allocated");
    assert!(allocated > 40e6, "churn allocated {allocated}");
    assert!(held < 0.02 * allocated, "churn holds {held} of {allocated}");
    leak
}

/// The C++ program with Debian's jemalloc preloaded: jemalloc serves
/// `operator new` and `delete` itself (its malloc is inlined into them, and
/// its `free` never sees a `delete`), so leak probes them in jemalloc; the
/// same checks hold: the leak within 10 %, the churn freed.
#[test]
fn cpp_leak_through_a_preloaded_jemalloc() {
    let jemalloc = debian_binary("libjemalloc2", "usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    let bin = build_optimized("cppleak.cpp");
    let preload = jemalloc.to_str().unwrap();
    let (doc, kept, text) = traced_run(
        &bin,
        &[("LD_PRELOAD", preload)],
        &["--rate", "4096"],
        "native-cpp-jemalloc",
    );
    assert!(text.contains("libjemalloc.so.2"), "{text}");
    assert_cpp_leak(&doc, kept, &text);
}

/// Every entry point of the C allocator family, each kept from its own
/// function (tests/c/family.c: 2,000 blocks each), sampled at `--rate 1`:
/// each function holds exactly what the program keeps through it, with the
/// C library's allocator and with jemalloc preloaded (which defines some of
/// them itself and leaves the others to the C library's, which call its
/// realloc).
#[test]
fn every_entry_of_the_allocator_family() {
    let bin = build_optimized("family.c");
    let kept = [
        ("keep_malloc", 100),
        ("keep_calloc", 200),
        ("keep_realloc_null", 300),
        ("keep_reallocarray", 400),
        ("keep_posix_memalign", 500),
        ("keep_aligned_alloc", 640),
        ("keep_memalign", 700),
        ("keep_valloc", 800),
        ("grow_realloc", 900),
    ];
    let jemalloc = debian_binary("libjemalloc2", "usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    let preload = jemalloc.to_str().unwrap();
    for (env, name) in [
        (vec![], "native-family"),
        (vec![("LD_PRELOAD", preload)], "native-family-jemalloc"),
    ] {
        let (doc, total, text) = traced_run(&bin, &env, &["--rate", "1"], name);
        assert_eq!(total, kept.iter().map(|(_, s)| s * 2000).sum::<u64>());
        for (function, size) in kept {
            let held = sum(&leaf_stacks(&doc, function), "outstanding_bytes");
            eprintln!(
                "{name}: {function} holds {held:.0} B, the program {} B",
                size * 2000
            );
            assert_eq!(held, (size * 2000) as f64, "{function}\n{text}");
        }
    }
}

/// The C++ leaker's DWARF (`-g`) names its source lines, in the JSON and
/// the pprof profile: the leak at `new` in `app::Session::remember`, and
/// the functions inlined there (the churn's `std::vector` constructor
/// inlined into `app::churn`, one pprof location of several lines).
fn assert_source_lines(doc: &serde_json::Value, pprof: &Path) {
    let new_line = marked_line("c/cppleak.cpp", "remember's new");
    let leaf = &leaf_stacks(doc, "app::Session::remember(")[0]["frames"][0];
    assert!(
        leaf["file"].as_str().unwrap().ends_with("/cppleak.cpp"),
        "{leaf}"
    );
    assert_eq!(
        (&leaf["line"], &leaf["inlined"]),
        (&new_line.into(), &false.into()),
        "{leaf}"
    );
    let churn_line = marked_line("c/cppleak.cpp", "churn's vector");
    let name = |f: &serde_json::Value| f["function"].as_str().unwrap_or("").to_string();
    let inlined_into_churn = stacks_through(doc, "app::churn(").iter().any(|s| {
        let frames = s["frames"].as_array().unwrap();
        frames.windows(2).any(|w| {
            name(&w[0]).starts_with("std::vector<char")
                && w[0]["inlined"] == true
                && name(&w[1]).starts_with("app::churn(")
                && (&w[1]["line"], &w[1]["inlined"]) == (&churn_line.into(), &false.into())
        })
    });
    assert!(
        inlined_into_churn,
        "no std::vector frame inlined into app::churn at line {churn_line}"
    );
    // In pprof (which shortens C++ names): the leak at its line, the
    // inlined constructor marked so.
    let lines = pprof_top("1.25.5", pprof, &["-sample_index=inuse_space", "-lines"]);
    let at_new = format!("/cppleak.cpp:{new_line}");
    let flat: u64 = lines
        .iter()
        .filter(|(e, _, _)| e.starts_with("app::Session::remember ") && e.ends_with(&at_new))
        .map(|(_, flat, _)| flat)
        .sum();
    let json_flat = sum(
        &leaf_stacks(doc, "app::Session::remember("),
        "outstanding_bytes",
    );
    assert!(
        (flat as f64 / json_flat - 1.0).abs() < 0.01,
        "{flat} at {at_new} vs {json_flat}: {lines:?}"
    );
    let allocated = pprof_top("1.25.5", pprof, &["-sample_index=alloc_space", "-lines"]);
    let inlined = allocated.iter().any(|(e, _, cum)| {
        e.starts_with("std::vector::vector ") && e.ends_with(" (inline)") && *cum > 40_000_000
    });
    assert!(inlined, "no inlined std::vector line: {allocated:?}");
}

/// The same program sampled every allocation (`--rate 1`): the leaking
/// stack holds exactly what the program keeps.
#[test]
fn every_allocation_at_rate_one() {
    let bin = build_optimized("cppleak.cpp");
    let started = Instant::now();
    let (doc, kept, _) = traced_run(&bin, &[], &["--rate", "1"], "native-rate1");
    let held = sum(
        &leaf_stacks(&doc, "app::Session::remember("),
        "outstanding_bytes",
    );
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
    let held = sum(&leaf_stacks(&doc, "remember_request"), "outstanding_bytes");
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

/// A Rust program built with `rustc -O -g` (no frame pointers) keeping
/// 20,000 × 1,000 bytes in a `Vec<Box<[u8]>>` through `Cache::remember`:
/// found by its demangled name, within 10 % of its own count, Rust's
/// allocator shims trimmed from the leaf.
#[test]
fn rust_leak_without_frame_pointers() {
    let dir = scratch("native-rust");
    let bin = dir.join("rleak");
    let status = Command::new("rustc")
        .args(["-O", "-g", "-o"])
        .arg(&bin)
        .arg(root().join("tests/rust/rleak.rs"))
        .status()
        .unwrap();
    assert!(status.success(), "rustc rleak.rs failed");
    let go = dir.join("go");
    let (doc, kept, text) =
        traced_run_with(&bin, &[], &["--rate", "4096"], "native-rust-run", Some(&go));
    let leak = leaf_stacks(&doc, "rleak::Cache::remember");
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
    // Built with -g: the alloc crate's frames inlined into it are trimmed
    // too, and the leaf is at the line of its vec![].
    let leaf = &leak[0]["frames"][0];
    let line = marked_line("rust/rleak.rs", "remember's vec");
    assert!(
        leaf["file"].as_str().unwrap().ends_with("/rleak.rs"),
        "{leaf}"
    );
    assert_eq!(leaf["line"], line, "{leaf}");
}

/// The C leaker (1 KiB a millisecond, for a minute) traced for 36 s at
/// `--rate 16384` (~2,000 samples: ±2 % of sampling noise) with `--work leak_request_buffer` (each call is one unit
/// of work): its stack, `leak_request_buffer`, is judged leaking from its
/// series of outstanding bytes, growing about as fast as the program
/// allocates, and each call leaves 1,024 bytes behind (its block), overall
/// and on the stack, within 10 %.
#[test]
fn a_steady_native_leak_is_judged_leaking() {
    let dir = scratch("native-verdict");
    let leaker = Program::start(&build_c("leaker"), &["-t", "60"]);
    let json = dir.join("trace.json");
    let mut leak = LeakArgs::trace_any()
        .pid(leaker.pid())
        .opt("--rate", 16384)
        .opt("--duration", 36)
        .opt("--work", "leak_request_buffer")
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
    let work = &doc["work"];
    eprintln!("work: {work}");
    assert_eq!(work["function"], "leak_request_buffer", "{work}");
    assert!(work["calls"].as_u64() > Some(10_000), "{work}");
    for per_call in [&work["bytes_per_call"], &growth["bytes_per_call"]] {
        let b = per_call.as_f64().unwrap_or(0.0);
        assert!(
            (b / 1024.0 - 1.0).abs() <= 0.10,
            "{b} B per call: {work} {growth}"
        );
    }
}

/// `--older 4` on the C leaker (1 KiB a millisecond, never freed), traced
/// 10 s at `--rate 1`: its stack counts as outstanding only what is 4 s
/// old or more at the final report (ages by the kernel's clock at each
/// allocation), 6/10 of what it allocated when the report comes at once,
/// up to 8/10 when the tracer drains a backlog first (a debug build on a
/// loaded host); its oldest object is as old as the trace.
#[test]
fn older_counts_only_old_objects() {
    let dir = scratch("native-older");
    let leaker = Program::start(&build_c("leaker"), &["-t", "30"]);
    let json = dir.join("trace.json");
    let mut leak = LeakArgs::trace_any()
        .pid(leaker.pid())
        .opt("--rate", 1)
        .opt("--duration", 10)
        .opt("--older", 4)
        .out("--json", &json)
        .attach(&dir);
    assert!(leak.wait(60).success(), "{}", leak.stderr_text());
    let doc = read_json(&json);
    assert_eq!(doc["target"]["older_secs"], 4.0, "{}", doc["target"]);
    let top = &doc["stacks"][0];
    assert_eq!(top["frames"][0]["function"], "leak_request_buffer", "{doc}");
    let (old, allocated) = (
        top["outstanding_bytes"].as_f64().unwrap(),
        top["allocated_bytes"].as_f64().unwrap(),
    );
    let oldest = top["oldest_secs"].as_f64().unwrap();
    eprintln!(
        "--older 4: {old} B of {allocated} B allocated count ({:.2}); oldest {oldest} s",
        old / allocated
    );
    let traced = doc["target"]["duration_secs"].as_f64().unwrap();
    assert!(
        (0.45..0.88).contains(&(old / allocated)),
        "{old} of {allocated}"
    );
    assert!(
        oldest >= 8.0 && oldest <= traced + 0.5,
        "oldest {oldest} s of {traced} s"
    );
}

/// A traced process that exits mid-trace (the C leaker, `-t 4`, traced with
/// `--pid` and a 60 s `--duration`) ends the trace at once and cleanly:
/// leak says so, exits 0, and writes every output, the leak in them.
#[test]
fn a_process_exiting_mid_trace_ends_it_with_outputs() {
    let dir = scratch("native-exit");
    let leaker = Program::start(&build_c("leaker"), &["-t", "4"]);
    let (json, pprof) = (dir.join("trace.json"), dir.join("trace.pb.gz"));
    let started = Instant::now();
    let mut leak = LeakArgs::trace_any()
        .pid(leaker.pid())
        .opt("--rate", 16384)
        .opt("--duration", 60)
        .out("--json", &json)
        .out("--pprof", &pprof)
        .attach(&dir);
    assert!(leak.wait(30).success(), "{}", leak.stderr_text());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "ran {took:?}");
    assert!(
        leak.stderr_text().contains("the traced process has exited"),
        "{}",
        leak.stderr_text()
    );
    let doc = read_json(&json);
    let held = sum(
        &leaf_stacks(&doc, "leak_request_buffer"),
        "outstanding_bytes",
    );
    eprintln!("exited after {took:?}: leak_request_buffer held {held:.0} B");
    assert!(held > 1e6, "{doc}");
    assert!(std::fs::metadata(&pprof).unwrap().len() > 100);
}

/// A connection to a redis server speaking RESP.
struct Redis(std::net::TcpStream);

impl Redis {
    fn connect(port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut r = Redis(s);
                if r.command(&[b"PING"]).starts_with(b"+PONG") {
                    return r;
                }
            }
            assert!(Instant::now() < deadline, "redis never answered PING");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command and reads its whole reply.
    fn command(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args);
        self.reply()
    }

    fn send(&mut self, args: &[&[u8]]) {
        use std::io::Write;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.0.write_all(&out).unwrap();
    }

    /// One reply: a line, or a bulk string with its body.
    fn reply(&mut self) -> Vec<u8> {
        use std::io::Read;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            self.0.read_exact(&mut b).unwrap();
            line.push(b[0]);
        }
        if line[0] == b'$' {
            let n: usize = String::from_utf8_lossy(&line[1..line.len() - 2])
                .parse()
                .unwrap();
            let mut body = vec![0u8; n + 2];
            self.0.read_exact(&mut body).unwrap();
            line.extend_from_slice(&body);
        }
        line
    }

    /// `used_memory` of `INFO memory`: the bytes redis counts it holds.
    fn used_memory(&mut self) -> u64 {
        let info = String::from_utf8(self.command(&[b"INFO", b"memory"])).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }
}

/// A real daemon: Debian's redis-server 7.0 (`-O2`, no frame pointers,
/// stripped, its allocator Debian's jemalloc), under a load of 5,000 SETs
/// of 4,000-byte values. What leak finds outstanding since attach is held
/// against redis's own count (`used_memory` grew by that much, within
/// 10 %), and the stacks reach redis's own code.
#[test]
fn redis_against_its_own_count() {
    let rdb = debian_binary("redis-tools", "usr/bin/redis-check-rdb");
    let lzf = debian_binary("liblzf1", "usr/lib/x86_64-linux-gnu/liblzf.so.1");
    let jemalloc = debian_binary("libjemalloc2", "usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
    let dir = scratch("native-redis");
    // The binary serves as redis-server when called by that name.
    let server = dir.join("redis-server");
    let _ = std::fs::remove_file(&server);
    std::os::unix::fs::symlink(&rdb, &server).unwrap();
    let libs = format!(
        "{}:{}",
        jemalloc.parent().unwrap().display(),
        lzf.parent().unwrap().display()
    );
    let port = free_port();
    let mut child = Command::new(&server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--daemonize", "no"])
        .env("LD_LIBRARY_PATH", libs)
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut redis = Redis::connect(port);
    let before = redis.used_memory();
    let json = dir.join("trace.json");
    let mut leak = LeakArgs::trace_any()
        .pid(child.id())
        .opt("--rate", 4096)
        .out("--json", &json)
        .spawn(&dir);
    leak.wait_attached();
    let value = vec![b'v'; 4000];
    for i in 0..5000 {
        redis.send(&[b"SET", format!("key:{i}").as_bytes(), &value]);
        if i % 100 == 99 {
            for _ in 0..100 {
                assert_eq!(redis.reply(), b"+OK\r\n");
            }
        }
    }
    let after = redis.used_memory();
    thread::sleep(Duration::from_millis(1500));
    leak.stop(SIGINT);
    let _ = child.kill();
    let _ = child.wait();
    let doc = read_json(&json);
    let held: f64 = doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outstanding_bytes"].as_f64().unwrap())
        .sum();
    let grew = after - before;
    eprintln!(
        "redis: used_memory grew {grew} B; leak finds {held:.0} B outstanding since attach ({:.3}); {}",
        held / grew as f64,
        leak.stdout_text().lines().find(|l| l.contains("native allocations")).unwrap_or("")
    );
    assert!((held / grew as f64 - 1.0).abs() <= 0.10, "{held} vs {grew}");
    // The biggest stack runs through redis's own code (stripped: named by
    // its file and offset, or by the symbol it exports).
    let top = &doc["stacks"][0]["frames"];
    let own = top.as_array().unwrap().iter().any(|f| {
        f["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("redis-check-rdb")
    });
    assert!(own, "the top stack never reaches redis: {top}");
}

/// `leak trace -- CMD` on a native program: leak starts it, stops it at its
/// entry point (its libraries mapped), probes its allocator, lets it run,
/// and writes the outputs when it exits, with the program's exit status.
#[test]
fn a_native_program_started_by_leak() {
    let bin = build_optimized("cleak.c");
    let dir = scratch("native-launch");
    let json = dir.join("trace.json");
    let out = Command::new(leak_bin())
        .args(["trace", "--rate", "4096", "--json"])
        .arg(&json)
        .arg("--")
        .arg(&bin)
        .arg("-x")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let done = stdout
        .lines()
        .find(|l| l.starts_with("done kept "))
        .unwrap_or_else(|| panic!("the program's output is missing: {stdout}"));
    let kept: f64 = done.split_whitespace().nth(2).unwrap().parse().unwrap();
    let doc = read_json(&json);
    let held = sum(&leaf_stacks(&doc, "remember_request"), "outstanding_bytes");
    eprintln!("launched: remember_request held {held:.0} B when it exited; it kept {kept} B");
    assert!(
        (held / kept - 1.0).abs() <= 0.10,
        "{held} vs {kept}\n{stderr}"
    );
}

/// A Go program that leaks on both heaps (tests/go/cgoleak): 1,000 bytes
/// a request from malloc in C (cgo), which Go's heap profile never sees,
/// and 512 bytes of Go heap. `--native` follows the C heap and shows the Go
/// heap beside it (the runtime's own records) in one report, each stack
/// marked with its heap. The C code runs on the thread's system stack; the
/// kernel side finds the goroutine that called it (the thread's `g` from
/// its TLS, `g.m.curg`), so the C stack is named from the C function down
/// through the Go callers to `main.main` (a program with its own C code is
/// linked by the system linker, PIE or not).
#[test]
fn cgo_leak_with_native() {
    for (version, variant) in [
        ("1.25.5", Variant::Plain),
        ("1.21.13", Variant::Pie),
        ("1.19.8", Variant::Plain),
    ] {
        let bin = build_go("cgoleak", version, variant);
        let name = format!("native-cgo-{version}");
        let (doc, kept, text) = traced_run(&bin, &[], &["--native", "--rate", "4096"], &name);
        assert_eq!(doc["target"]["source"], "native", "{doc}");
        let leaking = leaf_stacks(&doc, "c_remember");
        assert!(leaking.iter().all(|s| s["heap"] == "c"), "{text}");
        // The Go heap beside it: the runtime's records of rememberGo.
        let go_kept = 20_000.0 * 512.0;
        let go_held = sum(&leaf_stacks(&doc, "main.rememberGo"), "outstanding_bytes");
        eprintln!(
            "cgo {version}: the Go heap's main.rememberGo holds {go_held:.0} B, the program {go_kept} B ({:.3}); go_heap {}",
            go_held / go_kept,
            doc["target"]["go_heap"]
        );
        assert!((go_held / go_kept - 1.0).abs() <= 0.10, "{text}");
        assert!(
            leaf_stacks(&doc, "main.rememberGo")
                .iter()
                .all(|s| s["heap"] == "go"),
            "{text}"
        );
        assert!(doc["target"]["go_heap"]["in_use_bytes"].as_f64() >= Some(go_held));
        let held = sum(&leaking, "outstanding_bytes");
        eprintln!(
            "cgo {version} {variant:?}: c_remember holds {held:.0} B by leak's count, {kept} B by the program's ({:.3})",
            held / kept as f64
        );
        assert!(
            (held / kept as f64 - 1.0).abs() <= 0.10,
            "{held} vs {kept}\n{text}"
        );
        // Every sample of the leak reaches main.main through the Go
        // callers, in order.
        let callers = ["c_remember", "main.remember", "main.handle", "main.main"];
        let through: f64 = leaking
            .iter()
            .filter(|s| {
                let names: Vec<&str> = s["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["function"].as_str().unwrap())
                    .collect();
                let mut at = 0;
                callers.iter().all(|c| {
                    let found = names[at..].iter().position(|n| n.starts_with(c));
                    found.inspect(|i| at += i + 1).is_some()
                })
            })
            .map(|s| s["outstanding_bytes"].as_f64().unwrap())
            .sum();
        assert!(
            through >= 0.99 * held,
            "{through} of {held} B reach main.main through the Go callers\n{text}"
        );
        let main = leaking[0]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == "main.main")
            .unwrap();
        assert!(
            main["file"].as_str().unwrap().ends_with("main.go") && main["line"].as_u64() > Some(0),
            "{main}"
        );
    }
}
