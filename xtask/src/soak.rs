//! `cargo xtask soak`: leak run for a long time against churn (root).
//!
//! 1. `leak trace` on a service (the seed, Go 1.25.5) under steady load
//!    whose `/work` handler keeps 10,000 bytes a request (a slow leak among
//!    the request churn): tracer RSS after warm-up and at the end, drops,
//!    and whether the leak is still found (top stack leaking, in
//!    `RequestTracker.Track`).
//! 2. `leak trace --uprobe shortjob` (no pid) while 200 instances of a
//!    60 ms job start, a random third of them killed early: tracer RSS,
//!    processes placed, drops.
//! 3. `leak top` host-wide while processes come and go (jobs one after
//!    another, and every 5 minutes 16 distinct Go executables for 20 s):
//!    tracer RSS.
//!
//! Each phase runs `--minutes` (30 by default), one after another or, with
//! `--together`, at the same time; `--phase` picks some. The figures are
//! printed, with the entries of leak's kernel maps keyed by process left
//! at its exit (and how many of them name a process that has exited), from
//! the line leak logs at debug level for its census module.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{build, go_bin, root, run_cmd};

/// The Go release the soak programs are built with.
const GO_VERSION: &str = "1.25.5";
/// Requests a second to the service's leaking handler.
const REQUESTS_PER_SEC: u64 = 20;
/// Short-lived jobs started during phase 2.
const JOBS: usize = 200;
/// Distinct Go executables started together, every 5 minutes, in phase 3.
const BURST: usize = 16;

/// A phase of the soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// `leak trace` on the leaking service under load.
    Service,
    /// `leak trace --uprobe` while short-lived jobs come and go.
    Jobs,
    /// `leak top` host-wide while processes come and go.
    Top,
}

/// Options of `cargo xtask soak`.
pub struct Options {
    /// Minutes per phase.
    pub minutes: u64,
    /// Soak this leak binary instead of building one.
    pub leak: Option<PathBuf>,
    /// The phases to run (all if empty).
    pub phases: Vec<Phase>,
    /// Run them at the same time.
    pub together: bool,
}

/// Runs the three phases and prints their figures.
pub fn run(opts: Options) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak loads eBPF programs: run `cargo xtask soak` as root");
    }
    let leak = match opts.leak {
        Some(p) => p,
        None => build(false)?,
    };
    let dir = root().join("target/soak");
    fs::create_dir_all(&dir)?;
    let go = |p: &str| build_go(p, &dir);
    let (seed, shortjob) = (go("seed")?, go("shortjob")?);
    let span = Duration::from_secs(opts.minutes * 60);
    let phases = if opts.phases.is_empty() {
        vec![Phase::Service, Phase::Jobs, Phase::Top]
    } else {
        opts.phases
    };
    let phase = |p: Phase| match p {
        Phase::Service => trace_service(&leak, &seed, &dir, span),
        Phase::Jobs => trace_jobs(&leak, &shortjob, &dir, span),
        Phase::Top => top(&leak, (&shortjob, &seed), &dir, span),
    };
    let lines: Vec<Result<String>> = if opts.together {
        thread::scope(|s| {
            let running: Vec<_> = phases.iter().map(|&p| s.spawn(move || phase(p))).collect();
            running
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("a soak phase panicked")))
                .collect()
        })
    } else {
        phases.iter().map(|&p| phase(p)).collect()
    };
    eprintln!(
        "soak: {} min a phase{}",
        opts.minutes,
        if opts.together { ", together" } else { "" }
    );
    let mut failed = 0;
    for (p, l) in phases.iter().zip(lines) {
        match l {
            Ok(l) => eprintln!("  {l}"),
            Err(e) => {
                failed += 1;
                eprintln!("  {p:?}: failed: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} soak phase(s) failed");
    }
    Ok(())
}

/// Builds test program `name` into `dir`.
fn build_go(name: &str, dir: &Path) -> Result<PathBuf> {
    let out = dir.join(name);
    run_cmd(
        Command::new(go_bin(GO_VERSION))
            .args(["build", "-o"])
            .arg(&out)
            .arg(format!("./{name}"))
            .current_dir(root().join("tests/go"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", root().join("target/gocache")),
    )
    .with_context(|| format!("building {name}"))?;
    Ok(out)
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts leak with `args`, its stderr to `dir/NAME.stderr`.
fn spawn_leak(leak: &Path, args: &[&str], dir: &Path, name: &str) -> Result<Killed> {
    let err = fs::File::create(dir.join(format!("{name}.stderr")))?;
    let child = Command::new(leak)
        .args(args)
        // The census of its per-process kernel maps at exit, alone.
        .env("RUST_LOG", "warn,leak_user::probes::census=debug")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .context("starting leak")?;
    Ok(Killed(child))
}

/// What leak's census said of its per-process kernel maps at exit (from
/// `dir/NAME.stderr`), and whether no entry of an exited process was left.
fn census(dir: &Path, name: &str) -> String {
    const LINE: &str = "kernel maps by process at exit: ";
    let text = fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap_or_default();
    match text.lines().find_map(|l| l.split_once(LINE)) {
        Some((_, maps)) => format!("kernel maps at exit: {maps}"),
        None => "no census of the kernel maps at exit (an older leak?)".to_string(),
    }
}

/// Resident memory of `pid`, KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    v.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Tracer RSS seen while `work` runs until `span` is over: after the first
/// minute's warm-up (or a tenth of the span), half way, at the end, and the
/// peak.
struct Rss {
    warm: u64,
    mid: u64,
    end: u64,
    peak: u64,
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tracer RSS {} KiB after warm-up, {} KiB half way, {} KiB at end (peak {})",
            self.warm, self.mid, self.end, self.peak
        )
    }
}

/// Runs `step` every 100 ms for `span`, sampling `pid`'s RSS each second;
/// a sample a minute goes to `series` (`seconds KiB` lines).
fn watch(pid: u32, span: Duration, series: &Path, mut step: impl FnMut(Duration)) -> Rss {
    let mut series = fs::File::create(series).ok();
    let start = Instant::now();
    let warm_at = (span / 10).min(Duration::from_secs(60));
    let mut rss = Rss {
        warm: 0,
        mid: 0,
        end: 0,
        peak: 0,
    };
    let mut next_sample = start;
    let mut next_line = start;
    while start.elapsed() < span {
        step(start.elapsed());
        if Instant::now() >= next_sample {
            if let Some(r) = rss_kib(pid) {
                if start.elapsed() >= warm_at && rss.warm == 0 {
                    rss.warm = r;
                }
                if start.elapsed() >= span / 2 && rss.mid == 0 {
                    rss.mid = r;
                }
                rss.end = r;
                rss.peak = rss.peak.max(r);
                if Instant::now() >= next_line {
                    if let Some(f) = series.as_mut() {
                        let _ = writeln!(f, "{} {r}", start.elapsed().as_secs());
                    }
                    next_line += Duration::from_secs(60);
                }
            }
            next_sample += Duration::from_secs(1);
        }
        thread::sleep(Duration::from_millis(100));
    }
    rss
}

/// Waits for leak to exit (it was given `--duration`) and reads its JSON.
fn finish(mut leak: Killed, json: &Path) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while leak.0.try_wait()?.is_none() {
        if Instant::now() > deadline {
            bail!("leak did not exit after its --duration");
        }
        thread::sleep(Duration::from_millis(200));
    }
    let text = fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// `dropped` of a trace report, summed.
fn drops(report: &serde_json::Value) -> u64 {
    report["dropped"]
        .as_object()
        .map(|o| o.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

/// Phase 1: the service.
fn trace_service(leak: &Path, seed: &Path, dir: &Path, span: Duration) -> Result<String> {
    let mut svc = Command::new(seed).stdout(Stdio::piped()).spawn()?;
    let mut first = [0u8; 64];
    let n = svc.stdout.as_mut().unwrap().read(&mut first)?;
    let svc = Killed(svc);
    let line = String::from_utf8_lossy(&first[..n]).to_string();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .context("seed's address")?
        .to_string();
    let json = dir.join("service.json");
    let secs = span.as_secs().to_string();
    let pid = svc.0.id().to_string();
    let args = [
        "trace",
        "--pid",
        &pid,
        "--duration",
        &secs,
        "--interval",
        "30",
    ];
    let leak_args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--json", json.to_str().unwrap()])
        .collect();
    let tracer = spawn_leak(leak, &leak_args, dir, "service")?;
    let mut sent = 0u64;
    let rss = watch(tracer.0.id(), span, &dir.join("service.rss"), |t| {
        while sent < t.as_millis() as u64 * REQUESTS_PER_SEC / 1000 {
            let _ = get(&addr, "/work");
            sent += 1;
        }
    });
    let report = finish(tracer, &json)?;
    let top = &report["stacks"][0];
    let found = top["growth"]["verdict"].as_str().unwrap_or("?").to_string();
    let by = top["frames"]
        .as_array()
        .map(|f| {
            f.iter()
                .any(|fr| fr["function"].as_str().is_some_and(|s| s.contains("Track")))
        })
        .unwrap_or(false);
    drop(svc);
    Ok(format!(
        "trace service: {sent} requests; {rss}; drops {}; top stack {found}{}; {}",
        drops(&report),
        if by {
            " in RequestTracker.Track"
        } else {
            ", NOT the leak"
        },
        census(dir, "service")
    ))
}

/// Phase 2: short-lived jobs, a third killed early.
fn trace_jobs(leak: &Path, job: &Path, dir: &Path, span: Duration) -> Result<String> {
    let json = dir.join("jobs.json");
    let secs = span.as_secs().to_string();
    let bin = job.to_str().unwrap();
    let args = [
        "trace",
        "--uprobe",
        bin,
        "--duration",
        &secs,
        "--json",
        json.to_str().unwrap(),
    ];
    let tracer = spawn_leak(leak, &args, dir, "jobs")?;
    thread::sleep(Duration::from_secs(3));
    let (mut started, mut completed) = (0usize, 0usize);
    let mut children: Vec<Child> = Vec::new();
    let every = span.saturating_sub(Duration::from_secs(10)) / JOBS as u32;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let rss = watch(
        tracer.0.id(),
        span.saturating_sub(Duration::from_secs(3)),
        &dir.join("jobs.rss"),
        |t| {
            while started < JOBS && t >= every * started as u32 {
                started += 1;
                let Ok(mut c) = Command::new(job).stdout(Stdio::null()).spawn() else {
                    continue;
                };
                // A third are killed within their first 50 ms.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(3) {
                    thread::sleep(Duration::from_millis(x % 50));
                    let _ = c.kill();
                }
                children.push(c);
            }
            children.retain_mut(|c| match c.try_wait() {
                Ok(Some(status)) => {
                    completed += usize::from(status.success());
                    false
                }
                _ => true,
            });
        },
    );
    for mut c in children {
        completed += usize::from(c.wait().is_ok_and(|s| s.success()));
    }
    let report = finish(tracer, &json)?;
    let placed = report["target"]["pids"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "trace {JOBS} short-lived jobs: {completed} ran to the end, {placed} processes placed (killed ones may die before the runtime starts); {rss}; drops {}; {}",
        drops(&report),
        census(dir, "jobs")
    ))
}

/// Phase 3: `leak top` while jobs come and go.
fn top(leak: &Path, (job, service): (&Path, &Path), dir: &Path, span: Duration) -> Result<String> {
    // Distinct executables (a deployment's new builds): leak top reads
    // each one a process runs.
    let builds: Vec<PathBuf> = (0..BURST)
        .map(|i| {
            let to = dir.join(format!("build-{i}"));
            fs::copy(service, &to).map(|_| to)
        })
        .collect::<std::io::Result<_>>()?;
    let mut burst: Vec<Killed> = Vec::new();
    let secs = span.as_secs().to_string();
    let json = dir.join("top.json");
    let args = [
        "top",
        "--duration",
        &secs,
        "--interval",
        "5",
        "--json",
        json.to_str().unwrap(),
    ];
    let tracer = spawn_leak(leak, &args, dir, "top")?;
    let mut jobs = 0usize;
    let (mut bursts, mut bursting) = (0usize, false);
    let rss = watch(tracer.0.id(), span, &dir.join("top.rss"), |t| {
        if let Ok(mut c) = Command::new(job).stdout(Stdio::null()).spawn() {
            jobs += 1;
            let _ = c.wait();
        }
        // Every 5 minutes, the builds run for 20 s, then are stopped.
        let in_burst = t.as_secs() % 300 >= 150 && t.as_secs() % 300 < 170;
        if in_burst && !bursting {
            bursts += 1;
            burst = builds
                .iter()
                .filter_map(|b| Command::new(b).stdout(Stdio::null()).spawn().ok())
                .map(Killed)
                .collect();
            jobs += burst.len();
        } else if !in_burst && bursting {
            burst.clear();
        }
        bursting = in_burst;
    });
    drop(burst);
    let report = finish(tracer, &json)?;
    let lost = &report["lost"];
    let lost = format!(
        "{} rss events unattributed, {} updates lost to full maps",
        lost["rss_events_unattributed"], lost["stats_insert_failed"]
    );
    Ok(format!(
        "top with {jobs} processes come and gone ({bursts} bursts of {BURST} distinct Go executables, 20 s each): {rss}; {} processes in the last reading; {lost}; {}",
        report["processes"].as_array().map_or(0, Vec::len),
        census(dir, "top")
    ))
}

/// A GET over HTTP/1.0; its body length.
fn get(addr: &str, path: &str) -> Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}
