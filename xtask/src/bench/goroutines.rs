//! The goroutines arms: `leak goroutines` reading a Go program's
//! goroutines (`runtime.allgs`, each one's state and stack) through
//! /proc/PID/mem, with no eBPF and no pause. One arm per question:
//!
//! - `GoroutinesRead` (benchgoroutines, 10^5 parked goroutines): how long
//!   `leak goroutines --json` takes to read them all with their stacks,
//!   what it costs leak (CPU, peak RSS) and the program (its CPU during a
//!   read); each read's JSON total must equal the program's own count
//!   (`runtime.NumGoroutine()`: the parked ones and main), or the run fails;
//! - `GoroutinesLoop` (service, no tracer): what the service pays while
//!   `leak goroutines` reads it every 100 ms, what `leak trace`'s reads
//!   (every ~2 s) would cost at their most frequent; `GoroutinesOther` runs
//!   the same reads of another process, so the reader's CPU on the same two
//!   cores can be told from reading the service itself. That process is an
//!   idle copy of the service, not a small benchgoroutines: most of a small
//!   read is leak loading the binary's symbols, and reading benchservice
//!   (8.6 MB) took the reader about three times the CPU of reading
//!   benchgoroutines (2.9 MB), which would count as the service's cost.
//!
//! Each read is a `leak goroutines` process of its own, timed from spawn to
//! reap by `wait4` (as the records arms time `leak heap`).

use anyhow::{bail, Context, Result};

use super::{
    process::cpu_seconds_of,
    records::{run_timed, LoopOf, Reader, READ_INTERVAL},
    Arm, Kit, Metrics, Series, Sizes,
};

/// `leak goroutines --pid PID` and `extra`.
pub fn goroutines_argv(leak: &str, pid: &str, extra: &[&str]) -> Vec<String> {
    [leak, "goroutines", "--pid", pid]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// Where `GoroutinesRead` writes its JSON, under `dir`.
pub fn json_path(dir: &str) -> String {
    format!("{dir}/goroutines.json")
}

/// The commands of a goroutines arm, as shell lines and comments, with
/// placeholders (`$PID`, `$OTHER`) where the report shows them.
pub fn commands(arm: Arm, sizes: &Sizes, leak: &str, scratch: &str) -> Vec<String> {
    match arm {
        Arm::GoroutinesRead => vec![
            format!(
                "# {}: after the program has parked its goroutines, {} times:",
                arm.name(),
                sizes.goroutine_reads
            ),
            goroutines_argv(leak, "$PID", &["--json", &json_path(scratch)]).join(" "),
        ],
        Arm::GoroutinesLoop => vec![
            format!(
                "# {}: the workload, no tracer; during the load a read starts every {} ms:",
                arm.name(),
                READ_INTERVAL.as_millis()
            ),
            goroutines_argv(leak, "$PID", &[]).join(" "),
        ],
        Arm::GoroutinesOther => vec![
            format!(
                "# {}: the same, but the reads are of an idle target/bench/bin/benchservice started beside it ($OTHER):",
                arm.name(),
            ),
            goroutines_argv(leak, "$OTHER", &[]).join(" "),
        ],
        _ => vec![],
    }
}

/// The goroutines' reads.
pub struct Goroutines;

impl Reader<Goroutines> {
    /// Starts the read loop if `arm` reads during the load (of `pid`, or of
    /// an idle copy of the service started here); otherwise only remembers
    /// what to do in [`Reader::finish`].
    pub fn start(kit: &Kit, arm: Arm, pid: u32) -> Result<Self> {
        let of = match arm {
            Arm::GoroutinesLoop => LoopOf::Program,
            Arm::GoroutinesOther => LoopOf::IdleService(&[]),
            _ => LoopOf::Nothing,
        };
        Self::with_loop(kit, arm, pid, of, "goroutines-loop", |leak, pid| {
            goroutines_argv(leak, pid, &[])
        })
    }

    /// Once the work (or load) is done: stops the loop, or does the arm's
    /// reads. `m` holds the program's result line (`goroutines`).
    pub fn finish(
        self,
        kit: &Kit,
        sizes: &Sizes,
        m: &mut Metrics,
        series: &mut Series,
    ) -> Result<()> {
        match self.arm {
            Arm::GoroutinesLoop | Arm::GoroutinesOther => {
                let looping = self.looping.expect("started with the run");
                let last = looping.stop(m, series)?;
                if let Some((total, groups)) = parse_text(&last) {
                    m.insert("goroutines_read", total as f64);
                    m.insert("groups", groups as f64);
                }
                Ok(())
            }
            Arm::GoroutinesRead => {
                for _ in 0..sizes.goroutine_reads {
                    read_all(kit, self.pid, m, series)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// One `leak goroutines --json` of `pid`: its wall time, CPU and peak RSS,
/// the program's CPU meanwhile, and the JSON's total, which must be the
/// program's own count (`m["goroutines"]`) or the run fails.
fn read_all(kit: &Kit, pid: u32, m: &mut Metrics, series: &mut Series) -> Result<()> {
    let expected = m
        .get("goroutines")
        .copied()
        .context("the program printed no goroutine count")?;
    let json = json_path(&kit.scratch.display().to_string());
    let _ = std::fs::remove_file(&json);
    let argv = goroutines_argv(
        &kit.leak.display().to_string(),
        &pid.to_string(),
        &["--json", &json],
    );
    let target_cpu = cpu_seconds_of(pid)?;
    let t = run_timed(&argv, &kit.scratch, "goroutines")?.ok()?;
    let target_ms = 1e3 * (cpu_seconds_of(pid)? - target_cpu);
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("leak goroutines wrote no {json}"))?;
    let (total, unstable, groups) = parse_json(&text)?;
    if total as f64 != expected {
        bail!(
            "leak goroutines read {total} goroutines, the program holds {expected}: \
             a read that misses goroutines measures nothing"
        );
    }
    m.insert("goroutines_read", total as f64);
    m.insert("unstable", unstable as f64);
    m.insert("groups", groups as f64);
    series.entry("read_s").or_default().push(t.wall_s);
    series.entry("read_cpu_s").or_default().push(t.cpu_s);
    series
        .entry("read_rss_mib")
        .or_default()
        .push(t.peak_rss_mib);
    series
        .entry("target_cpu_per_read_ms")
        .or_default()
        .push(target_ms);
    Ok(())
}

/// `goroutines.total`, `.unstable` and the number of groups from `leak
/// goroutines --json`.
pub fn parse_json(text: &str) -> Result<(u64, u64, usize)> {
    let doc: serde_json::Value =
        serde_json::from_str(text).context("leak goroutines wrote no JSON")?;
    let g = &doc["goroutines"];
    let total = g["total"].as_u64().context("no goroutines.total")?;
    let unstable = g["unstable"].as_u64().context("no goroutines.unstable")?;
    let groups = g["groups"]
        .as_array()
        .context("no goroutines.groups")?
        .len();
    Ok((total, unstable, groups))
}

/// Reads `goroutines: 100,001 in 37 groups …` from the text report.
pub fn parse_text(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with("goroutines: "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| words.get(i)?.replace(',', "").parse().ok();
    (words.get(2) == Some(&"in") && words.get(4) == Some(&"groups"))
        .then_some(())
        .and_then(|_| Some((number(1)?, number(3)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_from_the_text_and_the_json() {
        let out = "leak goroutines · /b (go1.25.5) · pid 1\n\
                   goroutines: 100,001 in 37 groups · 1 read with no stack (running, or changing under the read)\n";
        assert_eq!(parse_text(out), Some((100_001, 37)));
        assert_eq!(parse_text("goroutines: 3 in 1 groups\n"), Some((3, 1)));
        assert_eq!(parse_text("nothing"), None);
        let json =
            r#"{"target": {}, "goroutines": {"total": 17, "unstable": 1, "groups": [{}, {}]}}"#;
        assert_eq!(parse_json(json).unwrap(), (17, 1, 2));
        assert!(parse_json(r#"{"goroutines": {}}"#).is_err());
    }

    #[test]
    fn goroutines_commands_name_the_pid_and_the_json() {
        let lines = commands(Arm::GoroutinesRead, &Sizes::QUICK, "leak", "s");
        assert_eq!(
            lines[1],
            "leak goroutines --pid $PID --json s/goroutines.json"
        );
        let other = commands(Arm::GoroutinesOther, &Sizes::QUICK, "leak", "s");
        assert_eq!(other[1], "leak goroutines --pid $OTHER");
        assert!(commands(Arm::HeapRead, &Sizes::QUICK, "leak", "s").is_empty());
    }
}
