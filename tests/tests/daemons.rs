//! Issue #12's acceptance on real programs: Debian 12's own Go daemons
//! (prometheus, caddy, etcd; go1.19.8, stripped, cgo on), fetched with
//! `apt-get download` and never installed, each started on 127.0.0.1 with
//! a private data directory and driven with real load for a few seconds.
//! Then, with the load stopped, `leak trace` (whose report starts from the
//! daemon's own records) and `leak heap` are held against the daemon's own
//! `/debug/pprof/heap`, and the daemon must still answer afterwards. Root
//! only; run through `cargo xtask test`. A package that cannot be
//! downloaded fails the test (it is not skipped).

use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use leak_tests::{goroutines::*, *};

/// The toolchain whose `go tool pprof` reads the daemons' profiles (the
/// newest; it reads go1.19's profiles as they are).
const PPROF_GO: &str = "1.27.3";
/// How long each daemon is driven.
const LOAD: Duration = Duration::from_secs(4);
/// Allowed difference for each of the top 5 functions: leak's report adds
/// what was sampled in its 3 s to the records.
const TOP_TOLERANCE: f64 = 0.10;
/// Allowed difference in total for `leak heap` (the same records).
const TOTAL_TOLERANCE: f64 = 0.03;
/// Targets prometheus scrapes (itself, each time under another label).
const SCRAPES: usize = 50;
/// Share of the frames of leak's stacks that must have a name.
const NAMED: f64 = 0.99;

/// (named, all) frames of the report's stacks; a frame without a name is
/// printed as its address ("0x…").
fn named_frames(report: &serde_json::Value) -> (usize, usize) {
    let mut named = 0;
    let mut all = 0;
    for s in report["stacks"].as_array().unwrap() {
        for f in s["frames"].as_array().unwrap() {
            let name = f["function"].as_str().unwrap_or("");
            all += 1;
            if !name.is_empty() && !name.starts_with("0x") {
                named += 1;
            }
        }
    }
    (named, all)
}

/// Calls `one` (given a running count) again and again for `LOAD`;
/// returns how many calls were made.
fn drive(mut one: impl FnMut(usize)) -> usize {
    let until = Instant::now() + LOAD;
    let mut n = 0;
    while Instant::now() < until {
        one(n);
        n += 1;
    }
    n
}

/// Where a daemon answers.
struct Endpoints<'a> {
    /// Host:port serving `/debug/pprof/`.
    pprof: &'a str,
    /// Host:port and path that answer 200 while it is healthy.
    health: (&'a str, &'a str),
}

/// The daemon's own heap profile (no `gc=1`: as of its last GC), saved as
/// `DIR/FILE` and read by `go tool pprof`: (function, flat, cum), sorted.
fn own_profile(at: &Endpoints, dir: &Path, file: &str) -> Vec<(String, u64, u64)> {
    let path = dir.join(file);
    fs::write(
        &path,
        request_ok(at.pprof, "GET", "/debug/pprof/heap", None),
    )
    .unwrap();
    let mut p = pprof_inuse(PPROF_GO, &path);
    p.sort();
    p
}

/// With the load stopped: `leak goroutines` against the daemon's own
/// `/debug/pprof/goroutine?debug=1`, taken around it: the same total and
/// the same five largest groups (the goroutines serving the profile
/// request itself left out; a goroutine may start or end between the two
/// reads, so it is read again, up to three times).
fn goroutines_against_own(name: &str, pid: u32, at: &Endpoints, dir: &Path) {
    let json = dir.join("goroutines.json");
    let mut last = String::new();
    for attempt in 1..=3 {
        let before = own_groups(&String::from_utf8_lossy(&request_ok(
            at.pprof,
            "GET",
            "/debug/pprof/goroutine?debug=1",
            None,
        )));
        let out = run_ok(
            Command::new(leak_bin())
                .args(["goroutines", "--pid", &pid.to_string(), "--json"])
                .arg(&json),
            &format!("{name}: leak goroutines"),
        );
        let report = read_json(&json);
        let ours = leak_groups(&report);
        // Goroutines with no stack in leak's read (on a CPU, or in a
        // syscall) count in its total, not in its groups.
        let total = report["goroutines"]["total"].as_u64().unwrap();
        let own_total: u64 = before.values().sum();
        let mut top: Vec<(&Stack, &u64)> = before.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let differ: Vec<String> = top
            .iter()
            .take(5)
            .filter(|(stack, n)| ours.get(*stack) != Some(n))
            .map(|(stack, n)| format!("{n} × {}: leak {:?}", stack[0], ours.get(*stack)))
            .collect();
        eprintln!(
            "{name}: goroutines: own {own_total} in {} groups, leak {total} (attempt {attempt}); top 5 {}",
            before.len(),
            if differ.is_empty() { "equal".to_string() } else { differ.join("; ") }
        );
        if differ.is_empty() && total == own_total {
            return;
        }
        last = format!(
            "{}
{differ:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    panic!("{name}: leak goroutines differs from the daemon's own profile:\n{last}");
}

/// With the load stopped: the daemon's own profile and `leak heap` right
/// after it (the same records, so the same total), then `leak trace` for
/// 3 s, held against that profile; the daemon must still answer. Should
/// a GC of the daemon complete in between (its records move; the two
/// profiles taken around a read differ), the read is held against the
/// profile taken after it instead, and says so.
fn hold_against_own(name: &str, bin: &Path, daemon: &mut Daemon, at: &Endpoints, dir: &Path) {
    let pid = daemon.pid();
    goroutines_against_own(name, pid, at, dir);
    let heap_json = dir.join("heap.json");
    let mut theirs = own_profile(at, dir, "own.pb.gz");
    for attempt in 1.. {
        run_ok(
            Command::new(leak_bin())
                .args(["heap", "--pid", &pid.to_string(), "--json"])
                .arg(&heap_json),
            &format!("{name}: leak heap"),
        );
        let after = own_profile(at, dir, "own-after-heap.pb.gz");
        if after == theirs || attempt == 3 {
            break;
        }
        eprintln!("{name}: a GC completed during leak heap; again");
        theirs = after;
    }
    let total: u64 = theirs.iter().map(|f| f.1).sum();
    assert!(total > 0, "{name}: its own profile holds nothing");
    let heap = read_json(&heap_json);
    let heap_total = heap["totals"]["outstanding_bytes"].as_f64().unwrap();
    let off = heap_total / total as f64 - 1.0;
    eprintln!(
        "{name}: own profile {total} B in use, leak heap {heap_total} B ({:+.1} %)",
        off * 100.0
    );
    assert!(
        off.abs() <= TOTAL_TOLERANCE,
        "{name}: leak heap total {heap_total} vs the daemon's own {total}"
    );

    let report = dir.join("leak.json");
    let started = Instant::now();
    let mut leak = LeakArgs::trace(bin)
        .pid(pid)
        .opt("--duration", 3)
        .out("--json", &report)
        .spawn(dir);
    let status = leak.wait(60);
    let took = started.elapsed().as_secs_f64();
    let err = leak.stderr_text();
    assert!(
        status.success(),
        "{name}: leak trace failed ({status}): {err}"
    );
    assert!(
        err.contains("history:"),
        "{name}: leak's report does not start from the daemon's records: {err}"
    );
    eprintln!("{name}: leak trace took {took:.1} s");

    // No crash: the daemon outlives leak and still answers.
    assert!(
        daemon.running(),
        "{name} died under leak:\n{}",
        daemon.log_tail()
    );
    let (addr, path) = at.health;
    request_ok(addr, "GET", path, None);

    // leak re-reads the records after each GC: if one moved them during
    // the trace, its report is as of that GC, like the profile after it.
    let after = own_profile(at, dir, "own-after-trace.pb.gz");
    if after != theirs {
        eprintln!("{name}: a GC completed during leak trace: held against the profile after it");
        theirs = after;
    }
    let total: u64 = theirs.iter().map(|f| f.1).sum();

    let v = read_json(&report);
    // leak's report starts from the same records the profile was cut from.
    let history = v["totals"]["history_bytes"]
        .as_f64()
        .unwrap_or_else(|| panic!("{name}: no history_bytes in leak's report"));
    let off = history / total as f64 - 1.0;
    eprintln!(
        "{name}: leak trace history {history} B ({:+.1} % of the own profile)",
        off * 100.0
    );
    assert!(
        off.abs() <= TOP_TOLERANCE,
        "{name}: leak trace history {history} vs the daemon's own {total}"
    );
    let mut top: Vec<&(String, u64, u64)> = theirs.iter().filter(|f| f.2 > 0).collect();
    top.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let mut failures = Vec::new();
    for (i, (function, _, want)) in top.into_iter().take(10).enumerate() {
        let got = sum_through(&v, function, "outstanding_bytes");
        let off = got / *want as f64 - 1.0;
        eprintln!(
            "{name}: #{:<2} {want:>10} B own  {got:>10} B leak  {:+6.1} %  {function}",
            i + 1,
            off * 100.0
        );
        if got <= 0.0 {
            failures.push(format!("{function}: not in leak's report (own {want} B)"));
        } else if i < 5 && off.abs() > TOP_TOLERANCE {
            failures.push(format!("{function}: leak {got} B vs own {want} B"));
        }
    }
    let (named, all) = named_frames(&v);
    let share = named as f64 / all.max(1) as f64;
    eprintln!(
        "{name}: {named} of {all} frames named ({:.2} %)",
        share * 100.0
    );
    assert!(all > 0, "{name}: leak's report has no frames");
    if share < NAMED {
        failures.push(format!("only {named} of {all} frames named"));
    }
    assert!(
        failures.is_empty(),
        "{name}: {}\nleak: {err}{}",
        failures.join("; "),
        leak.stdout_text()
    );
}

#[test]
fn daemon_prometheus() {
    let started = Instant::now();
    let bin = debian_binary("prometheus", "usr/bin/prometheus");
    let dir = scratch("daemon-prometheus");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("prometheus.yml");
    // It scrapes itself as SCRAPES targets (one label apart): as many
    // copies of its own series in the head block, which stays in memory.
    let global = "global:\n  scrape_interval: 1s\n";
    let mut yaml = format!("{global}scrape_configs:\n  - job_name: self\n    static_configs:\n");
    for i in 0..SCRAPES {
        yaml += &format!("      - targets: ['{addr}']\n        labels: {{copy: '{i}'}}\n");
    }
    fs::write(&config, yaml).unwrap();
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        // POST /-/reload, to stop the scrapes with the rest of the load.
        "--web.enable-lifecycle".to_string(),
    ];
    let mut daemon = Daemon::start(&bin, &args, &dir);
    daemon.wait_ready(&addr, "/-/ready", 30);
    // Its own scrapes (every second) and queries over what they stored.
    const QUERIES: &[&str] = &[
        "up",
        "rate(prometheus_http_requests_total%5B10s%5D)",
        "sum%20by%20(job)%20(go_memstats_heap_inuse_bytes)",
        "count(%7B__name__%3D~%22.%2B%22%7D)",
        "topk(5%2C%20prometheus_tsdb_head_series)",
    ];
    let n = drive(|i| {
        let q = QUERIES[i % QUERIES.len()];
        request_ok(&addr, "GET", &format!("/api/v1/query?query={q}"), None);
    });
    eprintln!("prometheus: {n} queries in {} s", LOAD.as_secs());
    // The load stops: no more scrapes (the series stay in the head), so
    // no GC moves the records between its profile and leak's reads.
    fs::write(&config, global).unwrap();
    request_ok(&addr, "POST", "/-/reload", None);
    thread::sleep(Duration::from_millis(500));
    let at = Endpoints {
        pprof: &addr,
        health: (&addr, "/-/healthy"),
    };
    hold_against_own("prometheus", &bin, &mut daemon, &at, &dir);
    eprintln!(
        "prometheus: test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn daemon_caddy() {
    let started = Instant::now();
    let bin = debian_binary("caddy", "usr/bin/caddy");
    let dir = scratch("daemon-caddy");
    let admin = format!("127.0.0.1:{}", free_port());
    let site = format!("127.0.0.1:{}", free_port());
    let config = dir.join("caddy.json");
    let storage = dir.join("data").display().to_string();
    let json = serde_json::json!({
        "admin": {"listen": admin},
        "storage": {"module": "file_system", "root": storage},
        "apps": {"http": {"servers": {"srv0": {
            "listen": [site],
            "automatic_https": {"disable": true},
            "routes": [{"handle": [{"handler": "static_response", "body": "hello from caddy\n"}]}]
        }}}}
    });
    fs::write(&config, json.to_string()).unwrap();
    let args = [
        "run".to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let mut daemon = Daemon::start(&bin, &args, &dir);
    daemon.wait_ready(&site, "/", 30);
    let n = drive(|i| {
        let body = request_ok(&site, "GET", &format!("/page/{i}?q={i}"), None);
        assert_eq!(body, b"hello from caddy\n");
    });
    eprintln!("caddy: {n} GETs in {} s", LOAD.as_secs());
    // Its admin endpoint serves /debug/pprof.
    let at = Endpoints {
        pprof: &admin,
        health: (&site, "/"),
    };
    hold_against_own("caddy", &bin, &mut daemon, &at, &dir);
    eprintln!("caddy: test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn daemon_etcd() {
    let started = Instant::now();
    let bin = debian_binary("etcd-server", "usr/bin/etcd");
    let dir = scratch("daemon-etcd");
    let client = format!("127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let args = [
        "--name=default".to_string(),
        format!("--data-dir={}", dir.join("data").display()),
        format!("--listen-client-urls=http://{client}"),
        format!("--advertise-client-urls=http://{client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--enable-pprof".to_string(),
    ];
    let mut daemon = Daemon::start(&bin, &args, &dir);
    daemon.wait_ready(&client, "/health", 30);
    // Transactions of 16 puts of 1 KiB each through the v3 JSON gateway;
    // the raft log keeps them in memory.
    let value = base64(&[b'v'; 1024]);
    let n = drive(|i| {
        let puts: Vec<String> = (0..16)
            .map(|j| {
                let key = base64(format!("key-{i}-{j}").as_bytes());
                format!(r#"{{"requestPut": {{"key": "{key}", "value": "{value}"}}}}"#)
            })
            .collect();
        let body = format!(r#"{{"success": [{}]}}"#, puts.join(","));
        request_ok(&client, "POST", "/v3/kv/txn", Some(body.as_bytes()));
    });
    eprintln!(
        "etcd: {n} transactions ({} puts) in {} s",
        n * 16,
        LOAD.as_secs()
    );
    let at = Endpoints {
        pprof: &client,
        health: (&client, "/health"),
    };
    hold_against_own("etcd", &bin, &mut daemon, &at, &dir);
    eprintln!("etcd: test took {:.1} s", started.elapsed().as_secs_f64());
}
