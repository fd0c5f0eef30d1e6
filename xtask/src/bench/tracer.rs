//! The tracers an arm runs next to a workload: `leak trace` (default rate,
//! `--rate 4096`, and `--rate 1` with every output for the scale test),
//! the bpftrace peer, and `leak top`. Each is started against a running
//! process, awaited until it says it is attached, and stopped with SIGINT.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    process::{Running, Stream},
    Arm, Metrics,
};

/// The bpftrace peer: what people reach for today. Every `mallocgc` call
/// (Go 1.25 routes every heap allocation through it) adds its size to a map
/// keyed by the user stack.
pub fn bpftrace_program(bin: &str) -> String {
    format!(r#"uprobe:{bin}:runtime.mallocgc {{ @[ustack] = sum(reg("ax")); }}"#)
}

/// Where `runtime.mallocgc`, the peer's probe, starts in the Go program
/// `bin` (built as a plain executable, not PIE: the address is the one it
/// runs at), from `go tool nm`.
pub fn mallocgc_address(go: &Path, bin: &Path) -> Result<u64> {
    let out = Command::new(go)
        .args(["tool", "nm"])
        .arg(bin)
        .env("GOTOOLCHAIN", "local")
        .output()
        .context("cannot run go tool nm")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (addr, rest) = l.trim().split_once(' ')?;
            (rest == "T runtime.mallocgc").then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .with_context(|| format!("no runtime.mallocgc in {}", bin.display()))
}

/// Waits until a uprobe's breakpoint (int3, 0xCC) sits at `addr` in the
/// memory of process `pid`. bpftrace prints "Attaching 1 probe..." before
/// it attaches: a run started on that line alone is partly untraced, and
/// a SIGINT that comes while bpftrace is still attaching leaves it hung.
pub(super) fn wait_for_breakpoint(pid: u32, addr: u64, timeout: Duration) -> Result<()> {
    let mem = File::open(format!("/proc/{pid}/mem"))
        .with_context(|| format!("cannot open /proc/{pid}/mem"))?;
    let deadline = Instant::now() + timeout;
    let mut byte = [0u8];
    loop {
        mem.read_exact_at(&mut byte, addr)
            .with_context(|| format!("cannot read /proc/{pid}/mem at {addr:#x}"))?;
        if byte[0] == 0xCC {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no uprobe at {addr:#x} in pid {pid} within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Files the scale arm writes, under `dir`: folded, SVG, pprof, JSON.
pub fn scale_outputs(dir: &str) -> [String; 4] {
    ["scale.folded", "scale.svg", "scale.pb.gz", "scale.json"].map(|f| format!("{dir}/{f}"))
}

/// The program and arguments of an arm's tracer, or `None` for the
/// untraced arm. `leak` and `bpftrace` are the two programs' paths; `bin`,
/// `pid` and `out` are filled in (or are placeholders in the report).
pub fn command_line(
    arm: Arm,
    leak: &str,
    bpftrace: &str,
    bin: &str,
    pid: &str,
    out: &str,
) -> Option<Vec<String>> {
    let trace = |extra: &[&str]| {
        let mut v: Vec<String> = [leak, "trace", "--uprobe", bin, "--pid", pid]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    Some(match arm {
        Arm::Untraced
        | Arm::PeerBaseline
        | Arm::GoSampler
        | Arm::GoSampler4096
        | Arm::HeapRead
        | Arm::HeapReadLoop
        | Arm::HeapReadOther
        | Arm::HeapVsPprof
        | Arm::GoroutinesRead
        | Arm::GoroutinesLoop
        | Arm::GoroutinesOther => return None,
        // The native arms' tracers: `native::tracer_argv`.
        Arm::Heaptrack | Arm::Memleak | Arm::EmptyProbes | Arm::LeakBpfStats => return None,
        Arm::Leak => trace(&[]),
        Arm::LeakRate4096 => trace(&["--rate", "4096"]),
        Arm::LeakScale => {
            let [folded, svg, pprof, json] = scale_outputs(out);
            trace(&[
                "--rate",
                "1",
                "--folded",
                &folded,
                "--flamegraph",
                &svg,
                "--pprof",
                &pprof,
                "--json",
                &json,
            ])
        }
        Arm::Bpftrace => vec![
            bpftrace.to_string(),
            "-p".into(),
            pid.into(),
            "-e".into(),
            bpftrace_program(bin),
        ],
        Arm::LeakTop => vec![leak.to_string(), "top".into()],
        Arm::LeakTopEmpty => vec![
            leak.to_string(),
            "top".into(),
            "--bench-empty-programs".into(),
        ],
    })
}

/// A tracer that has attached.
pub struct Tracer {
    arm: Arm,
    process: Running,
    ready_at: Instant,
    cpu_at_ready: f64,
}

impl Tracer {
    /// Starts `argv` and waits until it is attached: leak says "leak:
    /// tracing", `leak top` "leak: watching"; bpftrace says "Attaching N
    /// probes" and is attached once its breakpoint is in the target:
    /// `probe` is the target's pid and the probed address.
    pub fn start(arm: Arm, argv: &[String], probe: Option<(u32, u64)>) -> Result<Tracer> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let process = Running::spawn(&mut cmd)?;
        process
            .wait_for(
                "sign of attaching",
                Duration::from_secs(60),
                |stream, line| match arm {
                    Arm::Bpftrace | Arm::Memleak | Arm::EmptyProbes => {
                        line.starts_with("Attaching")
                    }
                    Arm::LeakTop | Arm::LeakTopEmpty => {
                        stream == Stream::Stderr && line.starts_with("leak: watching")
                    }
                    _ => stream == Stream::Stderr && line.starts_with("leak: tracing"),
                },
            )
            .with_context(|| format!("{} did not attach", arm.name()))?;
        if let Some((pid, addr)) = probe {
            wait_for_breakpoint(pid, addr, Duration::from_secs(60))
                .with_context(|| format!("{} did not attach", arm.name()))?;
        }
        let cpu_at_ready = process.cpu_seconds_so_far()?;
        Ok(Tracer {
            arm,
            ready_at: Instant::now(),
            cpu_at_ready,
            process,
        })
    }

    /// The tracer's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Stops the tracer with SIGINT and records what it cost: CPU while
    /// attached (and over its whole life), peak RSS, time from SIGINT to
    /// exit (all outputs written), and for leak the samples it handled and
    /// any it dropped.
    pub fn stop(self, m: &mut Metrics) -> Result<()> {
        let cpu_now = self.process.cpu_seconds_so_far()?;
        let attached = self.ready_at.elapsed().as_secs_f64();
        let started = self.process.started;
        // bpftrace prints its whole map on exit (up to ~30 s seen here); a
        // tracer that takes four times that is stuck (seen once in ~40 runs).
        let (exit, stop) = self
            .process
            .signal_and_reap(libc::SIGINT, Duration::from_secs(120))
            .with_context(|| format!("stopping {}", self.arm.name()))?;
        if !exit.success {
            let last = exit.stderr.lines().last().unwrap_or("no message");
            bail!("{} failed: {last}", self.arm.name());
        }
        let traced_cpu = cpu_now - self.cpu_at_ready;
        m.insert("tracer_ready_s", (self.ready_at - started).as_secs_f64());
        m.insert("tracer_cpu_attached_s", traced_cpu);
        m.insert("tracer_core_pct", 100.0 * traced_cpu / attached);
        m.insert("tracer_cpu_total_s", exit.cpu_seconds);
        m.insert("tracer_peak_rss_mib", exit.peak_rss_kib as f64 / 1024.0);
        m.insert("stop_s", stop.as_secs_f64());
        if self.arm.is_leak_trace() {
            let counts = parse_final_report(&exit.stdout)
                .context("leak printed no final report with a samples line")?;
            m.insert("samples", counts.samples as f64);
            m.insert("frees", counts.frees as f64);
            m.insert("samples_per_s", counts.samples as f64 / attached);
            m.insert("dropped_allocs", counts.dropped_allocs as f64);
            m.insert("dropped_frees", counts.dropped_frees as f64);
            m.insert("dropped_stacks", counts.dropped_stacks as f64);
        }
        Ok(())
    }
}

/// Removes the scale arm's outputs of an earlier run, so only fresh ones count.
pub fn clear_scale_outputs(dir: &Path) {
    for f in scale_outputs(&dir.display().to_string()) {
        let _ = std::fs::remove_file(f);
    }
}

/// Counts from the samples line of leak's final report.
#[derive(Debug, PartialEq, Eq)]
pub struct LeakCounts {
    pub samples: u64,
    pub frees: u64,
    pub dropped_allocs: u64,
    pub dropped_frees: u64,
    pub dropped_stacks: u64,
}

/// Reads `samples: N allocations, N frees · … · dropped: N allocs, N frees,
/// N stacks` from the final report of `leak trace` (stdout).
pub fn parse_final_report(stdout: &str) -> Option<LeakCounts> {
    let last = &stdout[stdout.rfind("final report")?..];
    let line = last.lines().find(|l| l.starts_with("samples: "))?;
    let numbers = |text: &str| -> Vec<u64> {
        text.split(|c: char| !c.is_ascii_digit() && c != ',')
            .filter_map(|w| w.trim_matches(',').replace(',', "").parse().ok())
            .collect()
    };
    let (head, tail) = line.split_once("dropped:")?;
    let head_numbers = numbers(head.split('·').next()?);
    let tail_numbers = numbers(tail);
    Some(LeakCounts {
        samples: *head_numbers.first()?,
        frees: *head_numbers.get(1)?,
        dropped_allocs: *tail_numbers.first()?,
        dropped_frees: *tail_numbers.get(1)?,
        dropped_stacks: *tail_numbers.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_samples_line() {
        let out = "leak trace · x\nsamples: 1 allocations, 0 frees · allocated since attach: 1 MiB · dropped: 0 allocs, 0 frees, 0 stacks\n\
                   final report\nleak trace · x\nheap in use at last GC: 3 MiB\n\
                   samples: 12345 allocations, 678 frees · allocated since attach: 6.2 GiB · dropped: 3 allocs, 4 frees, 5 stacks\n";
        assert_eq!(
            parse_final_report(out),
            Some(LeakCounts {
                samples: 12345,
                frees: 678,
                dropped_allocs: 3,
                dropped_frees: 4,
                dropped_stacks: 5
            })
        );
    }

    #[test]
    fn no_final_report_is_none() {
        assert_eq!(parse_final_report("samples: 1 allocations, 0 frees"), None);
    }

    #[test]
    fn bpftrace_peer_is_the_issue_one_liner() {
        assert_eq!(
            bpftrace_program("/b"),
            r#"uprobe:/b:runtime.mallocgc { @[ustack] = sum(reg("ax")); }"#
        );
    }
}
