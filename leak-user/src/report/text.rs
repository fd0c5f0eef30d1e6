//! The report a person reads in the terminal: header lines from where the
//! numbers came from (the heap estimate, its growth), then the stacks
//! holding the most, leaf-most frames first, in the profile's unit.

use std::fmt::Write as _;

use super::{Frame, Profile, Source, StackProfile};
use crate::{
    analysis::trend::Verdict,
    units::{human_bytes, human_secs, signed_bytes, thousands},
};

/// Caller frames shown under each stack's leaf.
const CALLERS_SHOWN: usize = 3;

/// Renders `profile` with at most `top` stacks, in the order they come;
/// `by_allocated` shows stacks that allocated anything (not only those that
/// still hold memory).
pub(crate) fn render(profile: &Profile, top: usize, by_allocated: bool) -> String {
    let mut out = String::new();
    target_line(&mut out, profile);
    if let Source::GoRecords { buckets, .. } = profile.source {
        records_line(&mut out, profile, buckets);
    } else {
        held_line(&mut out, profile);
        work_line(&mut out, profile);
        samples_line(&mut out, profile);
    }
    let shown = shown_stacks(profile, top, by_allocated);
    if shown.is_empty() {
        out.push_str(profile.unit.nothing_held(&profile.source));
    } else {
        stack_table(&mut out, profile, &shown);
    }
    if let Some(goroutines) = &profile.goroutines {
        out.push('\n');
        out.push_str(&goroutines.text(top));
    }
    out
}

/// The first line: the command, the target, and where the numbers come
/// from.
fn target_line(out: &mut String, profile: &Profile) {
    let binary = profile.binary.display();
    let secs = profile.elapsed.as_secs_f64();
    let pids = pids_label(&profile.pids);
    let _ = match &profile.source {
        Source::GoSampler {
            go_version,
            rate,
            gc_cycles,
            ..
        } => writeln!(
            out,
            "leak trace · {binary} ({go_version}) · {pids} · {secs:.0}s · rate {} · {gc_cycles} GC cycles",
            human_bytes(*rate as f64),
        ),
        // A snapshot of Go's own heap profile (`leak heap`): what each
        // stack holds as of the last GC, since the program started.
        Source::GoRecords {
            go_version,
            rate,
            gc_cycles,
            ..
        } => writeln!(
            out,
            "leak heap · {binary} ({go_version}) · pid {} · Go's heap profile as of the last GC ({gc_cycles} GC cycles) · rate {}",
            profile.pids.first().map(u32::to_string).unwrap_or_default(),
            human_bytes(*rate as f64),
        ),
        Source::Syscalls => writeln!(
            out,
            "leak trace · {binary} · {pids} · {secs:.0}s · heap growth from brk/mmap",
        ),
        Source::Native {
            allocator,
            rate,
            go_heap,
            older,
        } => {
            let _ = writeln!(
                out,
                "leak trace · {binary} · {pids} · {secs:.0}s · native allocations (malloc/free of {allocator}) since attach · rate {}{}",
                if *rate <= 1 { "every allocation".to_string() } else { human_bytes(*rate as f64) },
                older.map(|o| format!(" · outstanding: objects older than {}", human_secs(o))).unwrap_or_default(),
            );
            match go_heap {
                Some(g) => writeln!(
                    out,
                    "and the Go heap ({}): {} in use at the last GC ({} GC cycles), by the runtime's own records since start · rate {}\n[C heap] stacks: outstanding since attach; [Go heap] stacks: in use at the last GC",
                    g.go_version,
                    human_bytes(g.in_use_bytes),
                    g.gc_cycles,
                    human_bytes(g.rate as f64),
                ),
                None => Ok(()),
            }
        }
        Source::GoGoroutines { go_version } => writeln!(
            out,
            "leak goroutines · {binary} ({go_version}) · {pids} · read from the runtime",
        ),
    };
}

/// What a snapshot holds and allocated since the program started.
fn records_line(out: &mut String, profile: &Profile, buckets: usize) {
    let t = &profile.total;
    let _ = writeln!(
        out,
        "in use: {} in {} objects · allocated since start: {} in {} objects · {} stacks ({} buckets)",
        human_bytes(t.outstanding_bytes),
        thousands(t.outstanding_objects.round() as u64),
        human_bytes(t.allocated_bytes),
        thousands(t.allocated_objects.round() as u64),
        thousands(profile.stacks.len() as u64),
        thousands(buckets as u64),
    );
}

/// What is held now (with the heap at the last GC, from Go's sampler; split
/// into history and since attach, when there is a history), its rate, and
/// the change since the last report.
fn held_line(out: &mut String, profile: &Profile) {
    if let Source::GoSampler {
        in_use_at_last_gc, ..
    } = profile.source
    {
        match in_use_at_last_gc {
            Some(b) => {
                let _ = write!(out, "heap in use at last GC: {}  ", human_bytes(b));
            }
            None => out.push_str("heap in use at last GC: (after 2 GC cycles)  "),
        }
    }
    let secs = profile.elapsed.as_secs_f64();
    let held = profile.total.outstanding_bytes;
    let history = profile.history_bytes();
    let live = held - history.unwrap_or(0.0);
    let per_sec = if secs > 0.0 { live / secs } else { 0.0 };
    let _ = match history {
        Some(h) => write!(
            out,
            "held now: {} = {} from before attach (Go's own records) + {} since attach (+{}/s)",
            human_bytes(held),
            human_bytes(h),
            human_bytes(live),
            human_bytes(per_sec)
        ),
        None => write!(
            out,
            "outstanding since attach: {} (+{}/s)",
            human_bytes(held),
            human_bytes(per_sec)
        ),
    };
    if let Some(prev) = profile.previous_outstanding {
        let d = held - prev;
        let sign = if d >= 0.0 { "+" } else { "-" };
        let _ = write!(out, "  {sign}{} since last report", human_bytes(d.abs()));
    }
    out.push('\n');
}

/// The `--work` function's calls and what each keeps, if one was given.
fn work_line(out: &mut String, profile: &Profile) {
    let Some(w) = &profile.work else {
        return;
    };
    let per_call = match w.bytes_per_call {
        Some(b) => format!("{} retained per call", human_bytes(b)),
        None => "too few calls yet for a per-call figure".to_string(),
    };
    let _ = writeln!(
        out,
        "work: {} · {} calls · {per_call}",
        w.function,
        thousands(w.calls)
    );
}

/// Events seen, bytes allocated, and what was lost.
fn samples_line(out: &mut String, profile: &Profile) {
    let (added, taken) = match profile.source {
        Source::GoSampler { .. } | Source::GoRecords { .. } | Source::Native { .. } => {
            ("allocations", "frees")
        }
        Source::Syscalls => ("brk/mmap calls", "munmaps"),
        Source::GoGoroutines { .. } => ("goroutines started", "ended"),
    };
    let _ = writeln!(
        out,
        "samples: {} {added}, {} {taken} · allocated since attach: {} · dropped: {}",
        profile.samples,
        profile.frees,
        human_bytes(profile.total.allocated_bytes),
        losses(profile),
    );
}

/// The first `top` stacks that hold anything (or, `by_allocated`, that
/// allocated any).
fn shown_stacks(profile: &Profile, top: usize, by_allocated: bool) -> Vec<&StackProfile> {
    let unit = profile.unit;
    profile
        .stacks
        .iter()
        .filter(|s| {
            unit.held(&s.totals) >= 0.5 || (by_allocated && s.totals.allocated_bytes >= 0.5)
        })
        .take(top)
        .collect()
}

/// The table of stacks: a header naming the unit's figure columns (growth
/// and verdict too, unless the profile is a snapshot), then one row per
/// stack: its figures, the leaf, a few callers, notes.
fn stack_table(out: &mut String, profile: &Profile, shown: &[&StackProfile]) {
    let columns = profile.unit.columns(&profile.source);
    let [held, second, third] = columns.map(|c| c.title);
    let [growth, verdict] = if profile.source.is_snapshot() {
        ["", ""]
    } else {
        ["GROWTH", "VERDICT"]
    };
    let _ = writeln!(
        out,
        "\n{held:>11} {second:>9} {third:>11} {growth:>12}  {verdict:<9} {}",
        profile.unit.code_path()
    );
    for s in shown.iter().copied() {
        let [held, second, third] = columns.map(|c| (c.cell)(&s.totals));
        let mut frames = s.frames.iter();
        let mut leaf = frames
            .next()
            .map(describe)
            .unwrap_or_else(|| "(unknown)".to_string());
        if let Some(heap) = s.heap {
            leaf = format!("{} {leaf}", heap.root());
        }
        let (rate, verdict) = growth_cells(s);
        let _ = writeln!(
            out,
            "{held:>11} {second:>9} {third:>11} {rate:>12}  {verdict:<9} {leaf}"
        );
        for f in frames.take(CALLERS_SHOWN) {
            let _ = writeln!(out, "{:>58}← {}", "", describe(f));
        }
        stack_notes(out, s);
    }
}

/// A stack's growth per second and verdict, `-` for each until it has a
/// series.
fn growth_cells(s: &StackProfile) -> (String, String) {
    match &s.growth {
        Some(g) => (
            format!("{}/s", signed_bytes(g.bytes_per_sec)),
            match g.verdict {
                // Shouted: this is what the reader is looking for.
                Verdict::Leaking => "LEAKING".to_string(),
                v => v.as_str().to_string(),
            },
        ),
        None => ("-".to_string(), "-".to_string()),
    }
}

/// The lines under a stack's callers: what processes held when they
/// exited, bytes per call, survivors of two GCs, and why the verdict.
fn stack_notes(out: &mut String, s: &StackProfile) {
    if s.held_at_exit >= 0.5 {
        let _ = writeln!(
            out,
            "{:>58}  {} held by processes when they exited",
            "",
            human_bytes(s.held_at_exit)
        );
    }
    if let Some(g) = &s.growth {
        let mut notes = Vec::new();
        if let Some(age) = s.oldest_secs {
            notes.push(format!("oldest {}", human_secs(age)));
        }
        if let Some(b) = g.bytes_per_call {
            notes.push(format!("{}/call", signed_bytes(b)));
        }
        if g.survived_2_gcs > 0.0 {
            notes.push(format!("{} survived 2+ GCs", human_bytes(g.survived_2_gcs)));
        }
        notes.push(g.reason.clone());
        let _ = writeln!(out, "{:>58}  {}", "", notes.join(" · "));
    }
}

/// `pid 42`, `pids 42,43`, or for many (a batch job run again and again)
/// how many and the first and last: `20 processes (pids 100…180)`.
fn pids_label(pids: &[u32]) -> String {
    match pids {
        [] => "no process yet".to_string(),
        [one] => format!("pid {one}"),
        few if few.len() <= 4 => format!(
            "pids {}",
            few.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        ),
        many => format!(
            "{} processes (pids {}…{})",
            many.len(),
            many[0],
            many[many.len() - 1]
        ),
    }
}

/// `bytes.Repeat (bytes.go:612)`: the function, and where in it, if known.
fn describe(f: &Frame) -> String {
    if f.line == 0 || f.file.is_empty() {
        return f.function.to_string();
    }
    let file = f.file.rsplit('/').next().unwrap_or(&f.file);
    let inlined = if f.inlined { ", inlined" } else { "" };
    format!("{} ({file}:{}{inlined})", f.function, f.line)
}

/// `0 allocs, 0 frees, 0 stacks`, plus any other loss that happened.
fn losses(profile: &Profile) -> String {
    let l = &profile.losses;
    let mut out = match profile.source {
        Source::GoSampler { .. } | Source::Native { .. } => format!(
            "{} allocs, {} frees, {} stacks",
            l.allocs_dropped, l.frees_dropped, l.stacks_failed
        ),
        Source::GoRecords { .. } | Source::GoGoroutines { .. } => {
            String::from("none (read from the runtime's own records)")
        }
        Source::Syscalls => format!("{} calls, {} stacks", l.allocs_dropped, l.stacks_failed),
    };
    if l.gc_dropped > 0 {
        let _ = write!(out, ", {} GC cycles", l.gc_dropped);
    }
    if l.samples_without_process > 0 {
        let _ = write!(
            out,
            ", {} samples of processes gone before they could be read",
            l.samples_without_process
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{aggregate::Totals, report::example};
    use std::time::Duration;

    /// A stack of `frames` (leaf first) that allocated `objects` objects of
    /// `bytes` in all and still holds every one.
    fn holding(frames: &[&str], bytes: f64, objects: f64) -> StackProfile {
        StackProfile {
            heap: None,
            oldest_secs: None,
            held_at_exit: 0.0,
            growth: None,
            frames: frames.iter().map(|n| Frame::named(n)).collect(),
            totals: Totals {
                outstanding_bytes: bytes,
                outstanding_objects: objects,
                allocated_bytes: bytes,
                allocated_objects: objects,
            },
        }
    }

    fn one_stack(held: f64) -> Profile {
        example(vec![holding(&["bytes.Repeat", "main.track"], held, 10.0)])
    }

    #[test]
    fn history_is_told_apart_from_what_was_seen_live() {
        let mut p = one_stack(30.0 * 1024.0 * 1024.0);
        p.elapsed = Duration::from_secs(10);
        if let Source::GoSampler { history_bytes, .. } = &mut p.source {
            *history_bytes = Some(28.0 * 1024.0 * 1024.0);
        }
        let text = render(&p, 10, false);
        assert!(
            text.contains("held now: 30.0 MiB = 28.0 MiB from before attach (Go's own records) + 2.0 MiB since attach (+205 KiB/s)"),
            "{text}"
        );
    }

    #[test]
    fn a_records_snapshot_reads_as_go_profile() {
        let mut p = one_stack(28.0 * 1024.0 * 1024.0);
        p.source = Source::GoRecords {
            go_version: "go1.21.13".into(),
            rate: 512 * 1024,
            gc_cycles: 12,
            buckets: 3,
        };
        let text = render(&p, 10, false);
        assert!(text.starts_with("leak heap · /srv/seed (go1.21.13) · pid 4242 · Go's heap profile as of the last GC (12 GC cycles) · rate 512 KiB\n"), "{text}");
        assert!(text.contains("in use: 28.0 MiB in 10 objects"), "{text}");
        assert!(text.contains("IN USE"), "{text}");
        assert!(text.contains("bytes.Repeat"), "{text}");
        assert!(!text.contains("since attach"), "{text}");
    }

    #[test]
    fn a_goroutine_table_counts_goroutines() {
        let p = crate::report::goroutine_example();
        let text = render(&p, 10, false);
        let table = &text[text.find("\n\n").expect("a table") + 2..];
        let lines: Vec<&str> = table.lines().collect();
        // One figure column; the code path where a heap table has it.
        assert!(lines[0].starts_with(" GOROUTINES "), "{table}");
        assert!(lines[1].starts_with("      1,200 "), "{table}");
        assert_eq!(
            lines[0].find("CODE PATH (innermost function first)"),
            Some(58)
        );
        assert_eq!(lines[1].find("runtime.gopark"), Some(58), "{table}");
        assert!(lines[2].ends_with("← runtime.chanrecv"), "{table}");
        assert!(lines[4].starts_with("          3        "), "{table}");
        for bytes in ["B ", "MiB", "KiB", "OUTSTANDING", "main.main"] {
            assert!(!table.contains(bytes), "{bytes} in {table}");
        }
        let mut empty = p.clone();
        empty.stacks.clear();
        assert!(render(&empty, 10, false).ends_with("no goroutines in the profile\n"));
    }

    #[test]
    fn many_processes_are_counted_not_listed() {
        assert_eq!(pids_label(&[]), "no process yet");
        assert_eq!(pids_label(&[7]), "pid 7");
        assert_eq!(pids_label(&[7, 8]), "pids 7,8");
        let many: Vec<u32> = (100..120).collect();
        assert_eq!(pids_label(&many), "20 processes (pids 100…119)");
    }

    #[test]
    fn frames_show_file_and_line() {
        let f = Frame::new("bytes.Repeat", "/usr/lib/go/src/bytes/bytes.go", 612, false);
        assert_eq!(describe(&f), "bytes.Repeat (bytes.go:612)");
        let g = Frame::new(f.function.clone(), f.file.clone(), f.line, true);
        assert_eq!(describe(&g), "bytes.Repeat (bytes.go:612, inlined)");
        assert_eq!(describe(&Frame::named("x")), "x");
    }

    #[test]
    fn report_shows_totals_and_the_leaking_path() {
        let leak = holding(
            &[
                "bytes.Repeat",
                "main.(*RequestTracker).Track",
                "main.main.func1",
                "net/http.HandlerFunc.ServeHTTP",
                "net/http.serverHandler.ServeHTTP",
            ],
            20.0 * 1024.0 * 1024.0,
            2048.0,
        );
        let mut p = example(vec![leak]);
        p.pids = vec![42];
        p.elapsed = Duration::from_secs(20);
        p.source = Source::GoSampler {
            go_version: "go1.25.5".into(),
            rate: 512 * 1024,
            gc_cycles: 7,
            in_use_at_last_gc: Some(19.0 * 1024.0 * 1024.0),
            history_bytes: None,
        };
        p.previous_outstanding = Some(10.0 * 1024.0 * 1024.0);
        let text = render(&p, 10, false);
        assert!(
            text.contains("/srv/seed (go1.25.5) · pid 42 · 20s · rate 512 KiB · 7 GC cycles"),
            "{text}"
        );
        assert!(text.contains("heap in use at last GC: 19.0 MiB  outstanding since attach: 20.0 MiB (+1.0 MiB/s)  +10.0 MiB since last report"), "{text}");
        assert!(
            text.contains("20.0 MiB     2,048    20.0 MiB            -  -         bytes.Repeat"),
            "{text}"
        );
        assert!(text.contains("← main.(*RequestTracker).Track"));
        // Only three callers under the leaf.
        assert!(text.contains("← net/http.HandlerFunc.ServeHTTP"));
        assert!(!text.contains("serverHandler"));
    }

    #[test]
    fn a_native_report_has_no_go_words() {
        let mut p = example(vec![holding(
            &["malloc", "leak_request_buffer", "main"],
            18.0 * 1024.0 * 1024.0,
            9.0,
        )]);
        p.binary = "/usr/bin/leaker".into();
        p.source = Source::Syscalls;
        let text = render(&p, 10, false);
        assert!(
            text.contains(
                "leak trace · /usr/bin/leaker · pid 4242 · 30s · heap growth from brk/mmap"
            ),
            "{text}"
        );
        assert!(text.contains("100 brk/mmap calls, 10 munmaps"), "{text}");
        for go_word in ["GC", "rate", "sampled", "frees"] {
            assert!(!text.contains(go_word), "{go_word} in {text}");
        }
        p.stacks.clear();
        assert!(render(&p, 10, false).contains("no heap growth seen yet"));
    }
}
