//! `cargo xtask demo`: the README's first command. Builds leak and a small
//! Go service that leaks 10,000 bytes per request (like the seed article's),
//! loads it, traces it, and leaves the outputs under target/demo/.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{build, go_bin, root, run_cmd};

/// Requests sent during the demo.
const REQUESTS: usize = 4000;
/// How long leak traces: long enough (30 s of load) for a leaking verdict.
const TRACE_SECS: u64 = 40;

/// Runs the demo.
pub fn run() -> Result<()> {
    let leak = build(false)?;
    let out = root().join("target/demo");
    fs::create_dir_all(&out)?;
    let seed = out.join("seed");
    run_cmd(
        Command::new(go_bin("1.25.5"))
            .args(["build", "-o"])
            .arg(&seed)
            .arg("./seed")
            .current_dir(root().join("tests/go"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", root().join("target/gocache")),
    )
    .context("building the demo service")?;

    let mut service = Command::new(&seed)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the demo service")?;
    let mut line = String::new();
    BufReader::new(service.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .context("demo service did not start")?
        .to_string();
    println!(
        "demo: service {} (pid {}) on {addr}",
        seed.display(),
        service.id()
    );

    let folded = out.join("seed.folded");
    let svg = out.join("seed.svg");
    let pprof = out.join("seed.pb.gz");
    let json = out.join("seed.json");
    let mut tracer = Command::new(&leak)
        .args(["trace", "--uprobe"])
        .arg(&seed)
        .args(["--pid", &service.id().to_string()])
        .args(["--duration", &TRACE_SECS.to_string()])
        .args(["--interval", "10", "--top", "3"])
        // The handler: one call per request.
        .args(["--work", "main.main.func1"])
        .arg("--folded")
        .arg(&folded)
        .arg("--flamegraph")
        .arg(&svg)
        .arg("--pprof")
        .arg(&pprof)
        .arg("--json")
        .arg(&json)
        .spawn()
        .context("starting leak")?;
    // Let the probes attach, then load the service steadily.
    thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    // Load until just before leak stops.
    let pace = Duration::from_secs(TRACE_SECS - 3) / REQUESTS as u32;
    for i in 0..REQUESTS {
        get(&addr, "/work").with_context(|| format!("request {i}"))?;
        if let Some(wait) = (pace * (i as u32 + 1)).checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
    }
    println!("demo: sent {REQUESTS} requests to /work");
    let status = tracer.wait()?;
    let _ = service.kill();
    let _ = service.wait();
    if !status.success() {
        bail!("leak exited with {status}");
    }
    println!(
        "demo: wrote {}, {}, {} and {}\n      (try: go tool pprof -top {})",
        folded.display(),
        svg.display(),
        pprof.display(),
        json.display(),
        pprof.display()
    );
    Ok(())
}

/// A minimal HTTP/1.0 GET; returns the body.
pub fn get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    if !resp.starts_with("HTTP/1.") || !resp.contains(" 200 ") {
        bail!("unexpected response: {}", resp.lines().next().unwrap_or(""));
    }
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
