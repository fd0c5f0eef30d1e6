//! The `leak top` table as text: one line per process with its RSS, a Go
//! process's heap after its last GC and goroutines, time until its
//! cgroup's limit, change over the window, growth rate, a sparkline and
//! the verdict. Pure: takes
//! rows, returns a string, with no terminal control codes (the caller adds
//! those when it redraws a terminal).

use std::fmt::Write as _;

use super::watch::{LimitKind, Row};
use crate::units::{human_bytes, human_secs, thousands};

/// Eight levels, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Characters of the sparkline column.
pub(crate) const SPARK_WIDTH: usize = 16;

/// What the line above the table says.
#[derive(Clone, Debug, Default)]
pub(crate) struct Header {
    /// Seconds since leak started watching.
    pub elapsed_secs: f64,
    /// What is watched: "every process" or "pid 1, 2".
    pub scope: String,
    /// Processes shown out of how many watched.
    pub watched: usize,
    /// Kernel-side events that could not be credited to a process, or
    /// processes the kernel maps had no room for; shown when non-zero.
    pub lost: u64,
    /// Rows are containers (their processes added up), not processes.
    pub grouped: bool,
    /// Cgroups where the kernel OOM-killed processes while watched, with
    /// how many: a line each under the table.
    pub oom_kills: Vec<(String, u64)>,
}

/// Draws `values` as a sparkline of at most `width` characters (the mean
/// of each slice), scaled from their lowest to their highest. A series that
/// moves by less than `min_range` is drawn flat, so noise does not look like
/// a trend.
pub(crate) fn sparkline(values: &[f64], width: usize, min_range: f64) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let n = values.len().min(width);
    let slices: Vec<f64> = (0..n)
        .map(|i| {
            let (a, b) = (i * values.len() / n, (i + 1) * values.len() / n);
            let part = &values[a..b.max(a + 1)];
            part.iter().sum::<f64>() / part.len() as f64
        })
        .collect();
    let lo = slices.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = slices.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(hi - lo >= min_range && hi > lo) {
        return BARS[0].to_string().repeat(n);
    }
    slices
        .iter()
        .map(|v| BARS[(((v - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize])
        .collect()
}

/// A growth rate for people, per minute: `+1.2 MiB/min`, `-300 KiB/min`,
/// `0 B/min`.
pub(crate) fn rate_per_min(bytes_per_sec: f64) -> String {
    let per_min = bytes_per_sec * 60.0;
    if per_min.abs() < 0.5 {
        return "0 B/min".to_string();
    }
    format!("{}/min", signed(per_min))
}

/// A byte change with its sign.
pub(crate) fn signed(bytes: f64) -> String {
    if bytes > 0.0 {
        format!("+{}", human_bytes(bytes))
    } else {
        human_bytes(bytes)
    }
}

/// Widths of the columns that vary: the in-namespace pid after PID, and
/// the command (container ids and cgroup paths need more room).
struct Widths {
    ns: usize,
    command: usize,
}

/// Renders the header and the first `top` rows. Lines are cut to `width`
/// characters when given (a terminal's width).
pub(crate) fn render(header: &Header, rows: &[Row], top: usize, width: Option<usize>) -> String {
    let mut out = String::new();
    let rows = &rows[..rows.len().min(top)];
    title_line(&mut out, header, rows.len());
    let widths = Widths {
        ns: ns_width(rows),
        command: if header.grouped { 28 } else { 15 },
    };
    column_titles(&mut out, header.grouped, &widths);
    for r in rows {
        row_line(&mut out, r, &widths);
    }
    for (path, n) in &header.oom_kills {
        let s = if *n == 1 { "" } else { "es" };
        let _ = writeln!(
            out,
            "OOM: the kernel killed {n} process{s} in cgroup {path} while watched"
        );
    }
    match width {
        Some(w) => {
            out.lines()
                .map(|l| truncate(l, w))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        None => out,
    }
}

/// The line above the table: time, scope, how many shown of how many.
fn title_line(out: &mut String, header: &Header, shown: usize) {
    let noun = if header.grouped {
        "containers"
    } else {
        "processes"
    };
    let _ = write!(
        out,
        "leak top · {} · {} · {shown} of {} {noun}, leaking first, then by growth",
        elapsed(header.elapsed_secs),
        header.scope,
        header.watched,
    );
    if header.lost > 0 {
        let _ = write!(out, " · {} kernel events not credited", header.lost);
    }
    out.push('\n');
}

/// The column titles.
fn column_titles(out: &mut String, grouped: bool, w: &Widths) {
    let (who, what) = if grouped {
        ("PROCS", "CONTAINER")
    } else {
        ("PID", "COMMAND")
    };
    let _ = writeln!(
        out,
        "{who:>7}{:ns$}  {what:<cw$} {:>10} {:>10} {:>10} {:>12} {:>11} {:>14}  {:<sw$}  {:<9} WHY",
        "",
        "RSS",
        "GO HEAP",
        "GOROUTINES",
        "TO LIMIT",
        "CHANGE",
        "GROWTH",
        "RSS OVER TIME",
        "VERDICT",
        ns = w.ns,
        cw = w.command,
        sw = SPARK_WIDTH,
    );
}

/// One row: a process (or a container's processes).
fn row_line(out: &mut String, r: &Row, w: &Widths) {
    let values: Vec<f64> = r.series.iter().map(|p| p.1).collect();
    let level = values.iter().copied().fold(0.0, f64::max);
    let spark = sparkline(&values, SPARK_WIDTH, (256.0 * 1024.0f64).max(0.005 * level));
    let dash = || "-".to_string();
    let _ = writeln!(
        out,
        "{:>7}{:<ns$}  {:<cw$} {:>10} {:>10} {:>10} {:>12} {:>11} {:>14}  {:<sw$}  {:<9} {}",
        match r.members.len() {
            0 => r.pid,
            n => n as u32,
        },
        ns_suffix(r.ns_pid),
        truncate(&r.command, w.command),
        human_bytes(r.latest.resident() as f64),
        r.go_heap
            .as_ref()
            .map_or_else(dash, |h| human_bytes(h.latest.heap_marked as f64)),
        r.goroutines.as_ref().map_or_else(dash, |g| thousands(g.0)),
        match r.limit_ahead() {
            Some((secs, LimitKind::Cgroup)) => human_secs(secs),
            Some((secs, LimitKind::HostAvailable)) => format!("{} host", human_secs(secs)),
            None => dash(),
        },
        signed(r.change_bytes),
        rate_per_min(r.growth()),
        spark,
        r.trend.verdict,
        r.trend.reason,
        ns = w.ns,
        cw = w.command,
        sw = SPARK_WIDTH,
    );
}

/// What follows a pid in another pid namespace: ` (ns 1)`.
fn ns_suffix(ns_pid: Option<u32>) -> String {
    ns_pid.map(|p| format!(" (ns {p})")).unwrap_or_default()
}

/// Width of the column of those suffixes: none unless a row has one, so a
/// host without containers reads as before.
fn ns_width(rows: &[Row]) -> usize {
    rows.iter()
        .map(|r| ns_suffix(r.ns_pid).len())
        .max()
        .unwrap_or(0)
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

fn elapsed(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::watch::{Reading, Watch};

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn sparkline_scales_lowest_to_highest() {
        let up: Vec<f64> = (0..8).map(|i| i as f64 * MIB).collect();
        assert_eq!(sparkline(&up, 16, 1.0), "▁▂▃▄▅▆▇█");
        // More values than characters: slices are averaged.
        let long: Vec<f64> = (0..160).map(|i| i as f64).collect();
        let s = sparkline(&long, 16, 1.0);
        assert_eq!(s.chars().count(), 16);
        assert!(s.starts_with('▁') && s.ends_with('█'), "{s}");
    }

    #[test]
    fn sparkline_of_noise_is_flat() {
        let noise = [100.0 * MIB, 100.01 * MIB, 99.99 * MIB, 100.0 * MIB];
        assert_eq!(sparkline(&noise, 16, 256.0 * 1024.0), "▁▁▁▁");
        assert_eq!(sparkline(&[], 16, 1.0), "");
        assert_eq!(sparkline(&[5.0], 16, 1.0), "▁");
    }

    #[test]
    fn rates_and_changes_carry_signs() {
        assert_eq!(rate_per_min(MIB / 60.0), "+1.0 MiB/min");
        assert_eq!(rate_per_min(-5.0 * 1024.0), "-300 KiB/min");
        assert_eq!(rate_per_min(0.001), "0 B/min");
        assert_eq!(signed(0.0), "0 B");
    }

    #[test]
    fn table_has_a_row_per_process_and_no_control_codes() {
        let mut w = Watch::new();
        for i in 0..=30 {
            let t = i as f64 * 2.0;
            let mut r = Reading::default();
            r.rss[leak_common::RSS_ANON] = (10.0 * MIB + MIB * t) as u64;
            w.record(7, "leaker", t, r);
            r.rss[leak_common::RSS_ANON] = (50.0 * MIB) as u64;
            w.record(8, "steady-service-with-a-long-name", t, r);
        }
        let header = Header {
            elapsed_secs: 60.0,
            scope: "every process".into(),
            watched: 2,
            lost: 0,
            grouped: false,
            oom_kills: vec![("/leak-test".into(), 1)],
        };
        let text = render(&header, &w.rows(), 10, None);
        assert!(!text.contains('\x1b'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[4],
            "OOM: the kernel killed 1 process in cgroup /leak-test while watched"
        );
        assert!(lines[0].starts_with("leak top · 1m00s · every process · 2 of 2"));
        assert!(lines[2].contains("leaker") && lines[2].contains("leaking"));
        assert!(lines[2].contains("+60.0 MiB") && lines[2].contains("+60.0 MiB/min"));
        assert!(lines[3].contains("steady-service-") && lines[3].contains("steady"));
        assert!(!lines[3].contains("steady-service-w"));
        assert!(lines[2].starts_with("      7  leaker "), "{text}");
        // --top and the terminal width cut rows and lines.
        let cut = render(&header, &w.rows(), 1, Some(40));
        assert_eq!(cut.lines().count(), 4);
        assert!(cut.lines().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn a_pid_in_another_namespace_shows_both() {
        let mut w = Watch::new();
        for i in 0..=3 {
            let mut r = Reading::default();
            r.rss[leak_common::RSS_ANON] = (50.0 * MIB) as u64;
            w.record(4321, "seed", i as f64, r);
            r.rss[leak_common::RSS_ANON] = (40.0 * MIB) as u64;
            w.record(77, "host", i as f64, r);
        }
        let mut rows = w.rows();
        rows[0].ns_pid = Some(1);
        let text = render(&Header::default(), &rows, 10, None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("    PID         COMMAND"), "{text}");
        assert!(lines[2].starts_with("   4321 (ns 1)  seed "), "{text}");
        assert!(lines[3].starts_with("     77         host "), "{text}");
    }
}
