//! leak on containerized targets: programs in their own mount and pid
//! namespace (`unshare`), run from a binary on a tmpfs mounted inside that
//! namespace only (its path names nothing on the host), some in memory
//! cgroups of the test's own with a limit. They share the host's network,
//! so their own profiles are reached as usual. Root only; run through
//! `cargo xtask test`.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use leak_tests::{goroutines::*, *};

/// Requests of 10,000 bytes each that the seed keeps forever.
const SEED_REQUESTS: usize = 2000;

/// `leak SUBCOMMAND ARGS…`, run to the end.
fn leak(args: &[&str]) -> Output {
    Command::new(leak_bin())
        .args(args)
        .output()
        .expect("run leak")
}

/// What `go tool pprof -top` says `function` holds (cum), in a profile.
fn held_by(version: &str, profile: &Path, function: &str) -> u64 {
    pprof_inuse(version, profile)
        .into_iter()
        .find(|f| f.0 == function)
        .map(|f| f.2)
        .unwrap_or_else(|| panic!("{} has no {function}", profile.display()))
}

/// `leak trace --pid` with no binary, on the seed in a container: the
/// executable is found through /proc/PID/exe, named as the container sees
/// it, and the leak tops the report with the bytes the program's own
/// profile gives it (within 10 %, as outside: tests/tests/trace.rs).
fn trace_finds_the_leak(svc: &Contained, version: &str, dir: &Path) {
    let folded = dir.join("trace.folded");
    let mut trace = LeakArgs::trace_any()
        .pid(svc.pid)
        .opt("--interval", 2)
        .out("--folded", &folded)
        .attach(dir);
    send_requests(&svc.addr(), "/work", SEED_REQUESTS);
    let own = dir.join("own-gc.pb.gz");
    fs::write(&own, get(&svc.addr(), "/debug/pprof/heap?gc=1")).unwrap();
    thread::sleep(Duration::from_secs(1));
    trace.stop(SIGINT);
    let said = format!("tracing {}", svc.path.display());
    assert!(
        trace.stderr_text().contains(&said),
        "{}",
        trace.stderr_text()
    );
    let stacks = read_folded(&folded);
    let top = stacks.first().expect("no stacks in folded output");
    assert_eq!(top.leaf(), "bytes.Repeat", "top stack: {:?}", top.frames);
    assert_eq!(
        top.caller(),
        "main.(*RequestTracker).Track",
        "{:?}",
        top.frames
    );
    let truth = held_by(version, &own, "bytes.Repeat");
    let ratio = top.bytes as f64 / truth as f64;
    eprintln!(
        "leak trace --pid: {} B, own profile {truth} B, ratio {ratio:.3}",
        top.bytes
    );
    assert!(
        (ratio - 1.0).abs() <= 0.10,
        "leak {} B vs pprof {truth} B",
        top.bytes
    );
}

/// `leak heap --pid` on it: Go's own records, the same totals and the same
/// bytes under the leak as the program's /debug/pprof/heap (within 3 %,
/// as outside: tests/tests/heap.rs).
fn heap_finds_the_leak(svc: &Contained, version: &str, dir: &Path) {
    let own = dir.join("own.pb.gz");
    fs::write(&own, get(&svc.addr(), "/debug/pprof/heap")).unwrap();
    let ours = dir.join("heap.pb.gz");
    let out = leak(&[
        "heap",
        "--pid",
        &svc.pid.to_string(),
        "--pprof",
        ours.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&svc.path.display().to_string()), "{text}");
    let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= 0.03 * b as f64;
    let total = |p: &Path| pprof_inuse(version, p).iter().map(|f| f.1).sum::<u64>();
    let (mine, theirs) = (total(&ours), total(&own));
    assert!(
        close(mine, theirs),
        "in use: leak heap {mine} vs own {theirs}"
    );
    let track = "main.(*RequestTracker).Track";
    let (mine, theirs) = (
        held_by(version, &ours, track),
        held_by(version, &own, track),
    );
    eprintln!("leak heap --pid: {track} {mine} B, own profile {theirs} B");
    assert!(
        theirs > 10_000_000,
        "own profile holds {theirs} B in {track}"
    );
    assert!(
        close(mine, theirs),
        "{track}: leak heap {mine} vs own {theirs}"
    );
}

/// `leak goroutines --pid` on it: the same goroutines as its own profile.
fn goroutines_are_read(svc: &Contained, dir: &Path) {
    let json = dir.join("goroutines.json");
    let out = leak(&[
        "goroutines",
        "--pid",
        &svc.pid.to_string(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let own = own_groups(&String::from_utf8_lossy(&get(
        &svc.addr(),
        "/debug/pprof/goroutine?debug=1",
    )));
    let ours = leak_groups(&read_json(&json));
    assert_eq!(ours, own, "leak goroutines vs the program's own profile");
}

/// The seed in a container: `leak trace --pid`, `leak heap --pid` and
/// `leak goroutines --pid` find what they find outside; `--uprobe` with the
/// path the container sees works too, and with a copy of the binary on the
/// host (another file, the same bytes) it is refused in one line.
#[test]
fn trace_heap_and_goroutines_see_into_a_container() {
    let version = "1.27.3";
    let dir = scratch("containers-seed");
    let bin = build_go("seed", version, Variant::StrippedPie);
    let svc = Contained::start(&bin, &[], &dir.join("private"), None);
    assert_eq!(svc.ns_pid(), Some(1), "pid 1 of its namespace");
    trace_finds_the_leak(&svc, version, &dir);
    heap_finds_the_leak(&svc, version, &dir);
    goroutines_are_read(&svc, &dir);

    let pid = svc.pid.to_string();
    let seen = leak(&[
        "trace",
        "--uprobe",
        svc.path.to_str().unwrap(),
        "--pid",
        &pid,
        "--duration",
        "1",
    ]);
    assert!(
        seen.status.success(),
        "{}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let copy = leak(&[
        "trace",
        "--uprobe",
        bin.to_str().unwrap(),
        "--pid",
        &pid,
        "--duration",
        "1",
    ]);
    let err = String::from_utf8_lossy(&copy.stderr);
    assert!(!copy.status.success(), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("pid {pid} is not running")), "{err}");
    assert!(svc.running(), "the service died");
}

/// A C program in a container: `leak trace --pid` follows its allocations
/// (the container's own C library probed, through the process's root), its
/// own functions named from the binary only the container can see.
#[test]
fn native_heap_growth_in_a_container() {
    let dir = scratch("containers-c");
    let leaker = Contained::start(
        &build_c("leaker"),
        &["-t", "60"],
        &dir.join("private"),
        None,
    );
    let folded = dir.join("leaker.folded");
    let mut trace = LeakArgs::trace_any()
        .pid(leaker.pid)
        .opt("--duration", 8)
        .out("--folded", &folded)
        .attach(&dir);
    assert!(trace.wait(60).success(), "{}", trace.stderr_text());
    let stacks = read_folded(&folded);
    let top = stacks.first().expect("no stacks in folded output");
    eprintln!("top stack ({} B): {}", top.bytes, top.frames.join(";"));
    assert!(
        top.frames.iter().any(|f| f == "leak_request_buffer"),
        "top stack: {:?}",
        top.frames
    );
}

/// A C program in a container, its DWARF in a separate debug file beside
/// it that only the container sees (found by its debug link, through the
/// process's root): the leak's frame carries leaker.c and the line of its
/// malloc.
#[test]
fn native_debug_file_in_a_container() {
    let dir = scratch("containers-c-debug");
    let (bin, debug) = (dir.join("leaker"), dir.join("leaker.debug"));
    let source = root().join("tests/c/leaker.c");
    let tool = |name: &str, args: &[&std::ffi::OsStr]| {
        run_ok(Command::new(name).args(args), name);
    };
    tool(
        "cc",
        &[
            "-O2".as_ref(),
            "-g".as_ref(),
            "-o".as_ref(),
            bin.as_ref(),
            source.as_ref(),
        ],
    );
    tool(
        "objcopy",
        &["--only-keep-debug".as_ref(), bin.as_ref(), debug.as_ref()],
    );
    tool("strip", &["--strip-debug".as_ref(), bin.as_ref()]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    tool("objcopy", &[link.as_ref(), bin.as_ref()]);
    let private = dir.join("private");
    let leaker = Contained::start_with(&bin, &[&debug], &["-t", "60"], &private, None);
    assert!(
        !private.join("leaker.debug").exists(),
        "the debug file is on the host"
    );
    let json = dir.join("trace.json");
    let mut trace = LeakArgs::trace_any()
        .pid(leaker.pid)
        .opt("--duration", 8)
        .out("--json", &json)
        .attach(&dir);
    assert!(trace.wait(60).success(), "{}", trace.stderr_text());
    let doc = read_json(&json);
    let frames: Vec<&serde_json::Value> = doc["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["frames"].as_array().unwrap())
        .filter(|f| f["function"] == "leak_request_buffer")
        .collect();
    let line = marked_line("c/leaker.c", "leak's malloc");
    eprintln!("leak_request_buffer frames: {frames:?}");
    assert!(!frames.is_empty(), "{doc}");
    assert!(
        frames
            .iter()
            .all(|f| f["file"].as_str().unwrap().ends_with("/leaker.c") && f["line"] == line),
        "want leaker.c:{line}: {frames:?}"
    );
}

/// Sends GETs of `/work` to `addr` at `rate` a second from a thread of its
/// own, until stopped or the service is gone.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
}

impl Load {
    fn start(addr: String, rate: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / rate);
            let (mut next, mut sent) = (Instant::now(), 0);
            while !flag.load(Ordering::Relaxed) {
                if request(&addr, "GET", "/work", None).is_err() {
                    break;
                }
                sent += 1;
                next += period;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(d);
                }
            }
            sent
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; the requests sent.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The process `pid` of a `leak top --json` document.
fn process(doc: &serde_json::Value, pid: u32) -> &serde_json::Value {
    doc["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| panic!("pid {pid} not in leak top's JSON"))
}

/// The seed leaking about 1 MB/s (100 requests a second of 10,000 bytes)
/// in a container, in a memory cgroup limited to 300 MiB; its
/// well-behaved twin under the same load in a sibling cgroup with the same
/// limit. 32 s in, `leak top` shows each one's cgroup and limit and its pid
/// in its namespace; the seed is leaking and the limit comes, it says, when
/// the kernel's OOM killer does (within 30 %); the twin is steady, with no
/// time until the limit.
#[test]
fn oom_kill_in_a_container_comes_when_leak_top_says() {
    const LIMIT: u64 = 300 << 20;
    const RATE: f64 = 100.0;
    let dir = scratch("containers-oom");
    let me = std::process::id();
    let leaky_cg = MemoryCgroup::new(&format!("leak-test-{me}-leaky"), LIMIT);
    let steady_cg = MemoryCgroup::new(&format!("leak-test-{me}-steady"), LIMIT);
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    let twin = build_go("steadysvc", "1.25.5", Variant::Plain);
    let leaky = Contained::start(&seed, &[], &dir.join("leaky"), Some(&leaky_cg));
    let steady = Contained::start(&twin, &[], &dir.join("steady"), Some(&steady_cg));
    // The twin has been up a while: its live set is full.
    send_requests(&steady.addr(), "/work", 3000);
    let steady_load = Load::start(steady.addr(), RATE);
    let load = Load::start(leaky.addr(), RATE);
    let started = Instant::now();

    let json = dir.join("top.json");
    let mut top = LeakArgs::top()
        .pid(leaky.pid)
        .pid(steady.pid)
        .opt("--duration", 32)
        .opt("--interval", 1)
        .out("--json", &json)
        .spawn(&dir);
    assert!(top.wait(90).success(), "{}", top.stderr_text());
    let at = started.elapsed().as_secs_f64();
    let doc = read_json(&json);
    let (p, s) = (process(&doc, leaky.pid), process(&doc, steady.pid));
    let row = format!("\n{:>7} (ns 1)  seed", leaky.pid);
    assert!(top.stdout_text().contains(&row), "{}", top.stdout_text());
    for (q, cg) in [(p, &leaky_cg), (s, &steady_cg)] {
        assert_eq!(q["ns_pid"], 1, "{q:#}");
        assert_eq!(q["cgroup"]["path"], cg.path(), "{q:#}");
        assert_eq!(q["cgroup"]["limit_bytes"], LIMIT, "{q:#}");
        // Its Go runtime is read through /proc/PID/exe, though its binary's
        // path means nothing on the host.
        assert!(q["go"]["heap_after_gc_bytes"].as_u64() > Some(0), "{q:#}");
        assert!(q["goroutines"].as_u64() > Some(0), "{q:#}");
    }
    assert_eq!(p["verdict"], "leaking", "{p:#}");
    assert_eq!(s["verdict"], "steady", "{s:#}");
    assert!(s["time_to_limit_secs"].is_null(), "{s:#}");
    let predicted = at + p["time_to_limit_secs"].as_f64().expect("no time to limit");

    while leaky.running() && started.elapsed() < Duration::from_secs(600) {
        thread::sleep(Duration::from_millis(100));
    }
    let killed = started.elapsed().as_secs_f64();
    let sent = load.finish();
    let steady_sent = steady_load.finish();
    eprintln!(
        "leak top at {at:.1} s: limit in {predicted:.1} s; killed at {killed:.1} s \
         ({sent} requests; the twin {steady_sent}); oom_kill {}",
        leaky_cg.oom_kills()
    );
    assert!(!leaky.running(), "not killed in 600 s");
    assert!(leaky_cg.oom_kills() >= 1, "died, but not by the OOM killer");
    assert!(steady.running(), "the steady twin died");
    assert_eq!(steady_cg.oom_kills(), 0);
    assert!(
        (predicted / killed - 1.0).abs() <= 0.30,
        "predicted {predicted:.1} s, killed at {killed:.1} s"
    );
}
