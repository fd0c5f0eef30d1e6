//! Hostile and broken targets, end to end: an executable cut short or
//! built for arm64, a zombie (each one line on stderr and exit 1); a binary
//! replaced on disk while traced, a process that execs another program, a
//! target killed mid-trace and mid-read, memory changing under a read, a pid
//! reused within one run (each a full, right report or one line). Never a
//! panic. (Damaged tables are unit tests on real files, `go/refusals.rs`,
//! and fuzz targets.) Root only; run through `cargo xtask test`.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use leak_tests::*;

fn leak(args: &[&str]) -> Output {
    Command::new(leak_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run leak")
}

/// One line on stderr containing `says`, exit 1, no panic.
fn one_line(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(says), "{err}");
}

/// `leak trace --uprobe` on an executable cut in half, and on one built for
/// arm64.
#[test]
fn broken_executables_are_one_line() {
    let dir = scratch("hostile-executables");
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    let data = fs::read(&seed).unwrap();
    let half = dir.join("half");
    fs::write(&half, &data[..data.len() / 2]).unwrap();
    let path = half.to_str().unwrap();
    one_line(
        &leak(&["trace", "--uprobe", path, "--duration", "1"]),
        "half",
    );
    let arm = build_go("seed", "1.19.8", Variant::Arm64);
    let out = leak(&[
        "trace",
        "--uprobe",
        arm.to_str().unwrap(),
        "--duration",
        "1",
    ]);
    one_line(&out, "aarch64");
}

/// A Go program that has exited but whose parent has not reaped it: every
/// command says so in one line.
#[test]
fn a_zombie_is_one_line() {
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    // sh starts the program, then becomes sleep, which never reaps it.
    let parent = Program::start(
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "'{}' >/dev/null 2>&1 & echo $!; exec sleep 60",
                seed.display()
            ),
        ],
    );
    let pid: u32 = parent.first_line.trim().parse().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = || fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    while !state().contains(") Z ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(state().contains(") Z "), "not a zombie: {}", state());
    let p = pid.to_string();
    for args in [
        vec!["heap", "--pid", &p],
        vec!["goroutines", "--pid", &p],
        vec!["trace", "--pid", &p, "--duration", "1"],
    ] {
        one_line(&leak(&args), "has exited (a zombie");
    }
    drop(parent);
}

/// Bytes the seed keeps per `/work` request (10,000 asked, its size class).
const KEPT_PER_REQUEST: f64 = 10_240.0;
/// What the hostile program keeps in `main.keepForever`: 256 × 64 KiB.
const KEPT_FOREVER: f64 = (16 << 20) as f64;
/// Goroutines the hostile program parks in `main.parked`.
const PARKED: u64 = 100;

/// No panic in leak's stderr (RUST_BACKTRACE=1 is set for every leak the
/// tests start).
fn no_panic(err: &str) {
    assert!(!err.contains("panicked"), "{err}");
}

/// `a` within `share` of `b`.
fn near(a: f64, b: f64, share: f64) -> bool {
    (a - b).abs() <= share * b
}

/// The hostile program, ready, with `args`.
fn hostile_with(args: &[&str]) -> Program {
    let bin = build_go("hostile", "1.25.5", Variant::Plain);
    let p = Program::start(&bin, args);
    assert!(p.first_line.starts_with("ready"), "{}", p.first_line);
    p
}

/// The hostile program, churning if asked, ready.
fn hostile(churn: bool) -> Program {
    hostile_with(if churn { &["-churn"] } else { &[] })
}

/// A deploy while traced: the executable's path renamed over by another
/// program. The process still runs the old file, and leak keeps tracing it
/// and names its code, not the new file's.
#[test]
fn a_binary_replaced_on_disk_keeps_its_trace() {
    let dir = scratch("hostile-replaced");
    let bin = dir.join("svc");
    fs::copy(build_go("seed", "1.25.5", Variant::Plain), &bin).unwrap();
    let svc = Program::start(&bin, &[]);
    let addr = svc.addr();
    let json = dir.join("r.json");
    let mut leak = LeakArgs::trace(&bin)
        .pid(svc.pid())
        .opt("--rate", 4096)
        .out("--json", &json)
        .attach(&dir);
    send_requests(&addr, "/work", 200);
    let new = dir.join("svc.new");
    fs::copy(build_go("hostile", "1.25.5", Variant::Plain), &new).unwrap();
    fs::rename(&new, &bin).unwrap();
    send_requests(&addr, "/work", 200);
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);
    no_panic(&leak.stderr_text());
    let r = read_json(&json);
    let track = sum_through(&r, "main.(*RequestTracker).Track", "outstanding_bytes");
    let want = 400.0 * KEPT_PER_REQUEST;
    assert!(near(track, want, 0.25), "Track holds {track}, want {want}");
    let foreign = stacks_where(&r, |f| f.starts_with("main.") && !seed_function(f));
    assert!(foreign.is_empty(), "names from the new file: {foreign:?}");
}

/// The seed's own functions (its `main` package).
fn seed_function(f: &str) -> bool {
    f.starts_with("main.main") || f.starts_with("main.(*RequestTracker)")
}

/// A traced process that execs another program: the trace of it ends with
/// a line saying so, and the outputs are written.
#[test]
fn a_process_that_execs_ends_its_trace_with_a_line() {
    let dir = scratch("hostile-exec");
    let prog = hostile(false);
    let json = dir.join("e.json");
    let mut leak = LeakArgs::trace_any()
        .pid(prog.pid())
        .out("--json", &json)
        .opt("--duration", 60)
        .attach(&dir);
    prog.signal(SIGUSR1);
    let status = leak.wait(30);
    let err = leak.stderr_text();
    no_panic(&err);
    assert!(status.success(), "{err}");
    let said = format!("pid {} called exec and now runs", prog.pid());
    assert!(err.contains(&said) && err.contains("sleep"), "{err}");
    assert!(err.contains("every traced process has exited"), "{err}");
    let r = read_json(&json);
    assert!(!stacks_where(&r, |f| f == "main.keepForever").is_empty());
}

/// A target killed (SIGKILL) while traced: leak ends by itself, and its
/// report and folded stacks hold what the process held at its death.
#[test]
fn a_target_killed_mid_trace_leaves_a_full_report() {
    let dir = scratch("hostile-killed-trace");
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    let svc = Program::start(&seed, &[]);
    let (json, folded) = (dir.join("k.json"), dir.join("k.folded"));
    let mut leak = LeakArgs::trace(&seed)
        .pid(svc.pid())
        .opt("--rate", 4096)
        .out("--json", &json)
        .out("--folded", &folded)
        .attach(&dir);
    send_requests(&svc.addr(), "/work", 300);
    thread::sleep(Duration::from_secs(1));
    svc.signal(SIGKILL);
    let status = leak.wait(30);
    let err = leak.stderr_text();
    no_panic(&err);
    assert!(status.success(), "{err}");
    assert!(err.contains("every traced process has exited"), "{err}");
    let r = read_json(&json);
    let held = sum_through(&r, "main.(*RequestTracker).Track", "held_at_exit_bytes");
    let want = 300.0 * KEPT_PER_REQUEST;
    assert!(near(held, want, 0.25), "held at exit {held}, want {want}");
    // The folded stacks are what is outstanding: nothing, in a process
    // that is gone; written all the same.
    assert!(folded.is_file(), "no {}", folded.display());
    assert!(read_folded(&folded).is_empty());
    drop(svc);
}

/// `leak heap` and `leak goroutines` on a target killed at moments through
/// their read: each is a full report or one line and exit 1 with no output
/// file, never a panic.
#[test]
fn a_target_killed_mid_read_is_a_report_or_one_line() {
    let dir = scratch("hostile-killed-read");
    let (mut reports, mut lines) = (0, 0);
    for (i, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80, 160].into_iter().enumerate() {
        let command = if i % 2 == 0 { "heap" } else { "goroutines" };
        let prog = hostile(true);
        let json = dir.join(format!("{i}.json"));
        let child = Command::new(leak_bin())
            .args([command, "--pid", &prog.pid().to_string(), "--json"])
            .arg(&json)
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(delay_ms));
        prog.signal(SIGKILL);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let ctx = format!("leak {command}, target killed after {delay_ms} ms");
        no_panic(&err);
        if out.status.success() {
            reports += 1;
            let r = read_json(&json);
            if command == "heap" {
                let kept = sum_through(&r, "main.keepForever", "outstanding_bytes");
                assert!(near(kept, KEPT_FOREVER, 0.01), "{ctx}: keepForever {kept}");
            }
        } else {
            lines += 1;
            // Says which process is gone.
            one_line(&out, &format!("pid {}", prog.pid()));
            assert!(!json.exists(), "{ctx}: left {}", json.display());
        }
        drop(prog);
    }
    eprintln!("targets killed mid-read: {reports} full reports, {lines} one-line refusals");
}

/// A Go process whose goroutine list and heap profile records change as
/// fast as it can make them (goroutines start and end all the time; new
/// call stacks, GCs back to back): every read is right about what does not
/// change — exactly 100 goroutines parked in `main.parked`, exactly 16 MiB
/// kept by `main.keepForever` (every allocation is in its profile) — or,
/// for the heap records, one line when every read overlapped a GC. With
/// the GC off and the churn slower, the records still change under every
/// read (new stacks, new records) and every read must succeed.
#[test]
fn memory_changing_under_a_read_is_read_right() {
    let dir = scratch("hostile-churn");
    let json = dir.join("c.json");
    let mut read = [0, 0, 0];
    for (mode, args) in [
        ("hard", &["-churn"][..]),
        ("gentle", &["-churn", "-gentle"][..]),
    ] {
        let prog = hostile_with(args);
        let pid = prog.pid().to_string();
        for round in 0..5 {
            for command in ["heap", "goroutines"] {
                let ctx = format!("{mode} churn, round {round}, {command}");
                let _ = fs::remove_file(&json);
                let out = leak(&[command, "--pid", &pid, "--json", json.to_str().unwrap()]);
                let err = String::from_utf8_lossy(&out.stderr);
                no_panic(&err);
                if !out.status.success() {
                    // Reads are bounded: records that never hold still
                    // through a GC are said.
                    assert!(mode == "hard" && command == "heap", "{ctx}: {err}");
                    one_line(&out, "changing");
                    assert!(!json.exists());
                    continue;
                }
                // Reads that succeeded: heap (hard, gentle), goroutines.
                let slot = match (command, mode) {
                    ("heap", "hard") => 0,
                    ("heap", _) => 1,
                    _ => 2,
                };
                read[slot] += 1;
                let r = read_json(&json);
                if command == "heap" {
                    let kept = sum_through(&r, "main.keepForever", "outstanding_bytes");
                    assert!(near(kept, KEPT_FOREVER, 0.01), "{ctx}: keepForever {kept}");
                } else {
                    let groups = r["goroutines"]["groups"].as_array().unwrap();
                    let parked: u64 = groups
                        .iter()
                        .filter(|g| g["frames"].to_string().contains("\"main.parked\""))
                        .map(|g| g["count"].as_u64().unwrap())
                        .sum();
                    assert_eq!(parked, PARKED, "{ctx}: {groups:?}");
                }
            }
        }
    }
    eprintln!(
        "under churn: heap read {} of 5 (GCs back to back), {} of 5 (GC off); goroutines read {} of 10",
        read[0], read[1], read[2]
    );
}

/// A pid reused within one run: leak traces every process running a
/// binary; one is killed and a new one started with the same pid (the
/// kernel's `ns_last_pid` set just below it). The new process is another
/// process: what the first held is held at its exit, what the second holds
/// is its own.
#[test]
fn a_reused_pid_is_another_process() {
    let dir = scratch("hostile-pid-reuse");
    let bin = dir.join("svc");
    fs::copy(build_go("seed", "1.25.5", Variant::Plain), &bin).unwrap();
    let json = dir.join("p.json");
    let mut leak = LeakArgs::trace(&bin)
        .opt("--rate", 4096)
        .out("--json", &json)
        .attach(&dir);
    // Requests only once leak has set the process's rate (a line each).
    let rate_set = |leak: &Leak, pid: u32, times: usize| {
        let line = format!("pid {pid}: MemProfileRate 524288 → 4096");
        let deadline = Instant::now() + Duration::from_secs(10);
        while leak.stderr_text().matches(&line).count() < times {
            assert!(Instant::now() < deadline, "{}", leak.stderr_text());
            thread::sleep(Duration::from_millis(20));
        }
    };
    let first = Program::start(&bin, &[]);
    let pid = first.pid();
    rate_set(&leak, pid, 1);
    send_requests(&first.addr(), "/work", 300);
    thread::sleep(Duration::from_secs(1));
    drop(first);
    let mut second = None;
    for _ in 0..50 {
        // Other processes on the host may take the pid first: try again.
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let p = Program::start(&bin, &[]);
        if p.pid() == pid {
            second = Some(p);
            break;
        }
    }
    let Some(second) = second else {
        eprintln!("skipped: pid {pid} could not be had again in 50 tries");
        return;
    };
    rate_set(&leak, pid, 2);
    send_requests(&second.addr(), "/work", 100);
    thread::sleep(Duration::from_secs(1));
    leak.stop(SIGINT);
    no_panic(&leak.stderr_text());
    let r = read_json(&json);
    let track = |field| sum_through(&r, "main.(*RequestTracker).Track", field);
    let (held_now, held_at_exit) = (track("outstanding_bytes"), track("held_at_exit_bytes"));
    let (want_now, want_exit) = (100.0 * KEPT_PER_REQUEST, 300.0 * KEPT_PER_REQUEST);
    assert!(
        near(held_now, want_now, 0.3) && near(held_at_exit, want_exit, 0.25),
        "Track holds {held_now} (want {want_now}), held at exit {held_at_exit} (want {want_exit})"
    );
    drop(second);
}

/// No state is left for processes that have exited: after 20 short jobs
/// (a quarter killed early) under `leak trace --uprobe`, and under `leak
/// top` while they come and go, leak's census of its per-process kernel
/// maps at exit counts no entry of an exited process.
#[test]
fn no_kernel_map_entry_is_left_for_exited_processes() {
    let job = build_go("shortjob", "1.25.5", Variant::Plain);
    let dir = scratch("hostile-census");
    let job_path = job.to_str().unwrap();
    for (name, args) in [
        (
            "trace",
            vec!["trace", "--uprobe", job_path, "--duration", "10"],
        ),
        ("top", vec!["top", "--duration", "10", "--interval", "1"]),
    ] {
        let err_path = dir.join(format!("{name}.stderr"));
        let mut tracer = Command::new(leak_bin())
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "warn,leak_user::probes::census=debug")
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let err = || fs::read_to_string(&err_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !err().contains("leak: tracing") && !err().contains("leak: watching") {
            assert!(Instant::now() < deadline, "{name}: not attached: {}", err());
            thread::sleep(Duration::from_millis(50));
        }
        for i in 0..20 {
            let mut c = Command::new(&job).spawn().unwrap();
            if i % 4 == 0 {
                thread::sleep(Duration::from_millis(i * 2));
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        assert!(tracer.wait().unwrap().success(), "{name}: {}", err());
        let err = err();
        no_panic(&err);
        let census = err
            .lines()
            .find_map(|l| l.split_once("kernel maps by process at exit: "))
            .unwrap_or_else(|| panic!("{name}: no census: {err}"))
            .1;
        let maps: Vec<&str> = census.split(", ").collect();
        assert!(maps.len() >= 2, "{name}: {census}");
        for m in maps {
            assert!(m.ends_with("(0 of exited processes)"), "{name}: {census}");
        }
        eprintln!("{name}: {census}");
    }
}

/// `leak top` on a Go process that calls exec: from then on it is watched
/// as the program it runs now (its name, no Go heap read at the old
/// program's addresses).
#[test]
fn leak_top_follows_a_process_into_exec() {
    let dir = scratch("hostile-top-exec");
    let prog = hostile(false);
    let json = dir.join("t.json");
    let mut leak = LeakArgs::top()
        .pid(prog.pid())
        .opt("--interval", 1)
        .opt("--duration", 8)
        .out("--json", &json)
        .attach(&dir);
    thread::sleep(Duration::from_secs(3));
    prog.signal(SIGUSR1);
    let status = leak.wait(30);
    let err = leak.stderr_text();
    no_panic(&err);
    assert!(status.success(), "{err}");
    let r = read_json(&json);
    let row = &r["processes"][0];
    assert_eq!(row["pid"], prog.pid(), "{r}");
    assert_eq!(row["command"], "sleep", "{row}");
    assert!(row["go"].is_null(), "a Go heap read after exec: {row}");
    // Its heap is the new program's: no break measured from the old one's start.
    assert!(
        row["memory"]["brk_heap"]
            .as_u64()
            .is_none_or(|b| b < 1 << 30),
        "{row}"
    );
}
