//! SVG flame graph of what each stack holds (outstanding bytes, goroutines),
//! drawn by inferno from the folded stacks: titled with what it counts, the
//! binary, pids and duration; quantities as the unit writes them for a
//! person (B/KiB/MiB for bytes); inferno's search (Ctrl-F); warm colours for
//! the program's own code, blue for the standard library, grey-red for the
//! Go runtime.

use std::io::{self, Write};

use inferno::flamegraph::{
    self,
    color::{Color, PaletteMap},
    Options,
};

use super::{folded, Profile, Unit};

/// Where a function comes from, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The Go runtime (`runtime.*`, `internal/runtime/...`).
    Runtime,
    /// The standard library: import paths without a dot in their first
    /// element (`net/http`, `bytes`, `internal/...`).
    Stdlib,
    /// The program itself: `main` and module paths (`github.com/...`).
    Program,
}

/// Classifies a Go function name by its package path.
pub(crate) fn origin(function: &str) -> Origin {
    // The package path ends at the last '/' and then the first '.'.
    let last_slash = function.rfind('/').map(|i| i + 1).unwrap_or(0);
    let pkg_end = function[last_slash..]
        .find('.')
        .map(|i| last_slash + i)
        .unwrap_or(function.len());
    let pkg = &function[..pkg_end];
    if pkg == "runtime" || pkg.starts_with("runtime/") || pkg.starts_with("internal/runtime") {
        return Origin::Runtime;
    }
    let first = pkg.split('/').next().unwrap_or("");
    if pkg == "main" || first.contains('.') {
        Origin::Program
    } else {
        Origin::Stdlib
    }
}

/// A colour for `function`: its origin's hue, a shade from its name.
fn colour(function: &str) -> Color {
    let h = function.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let v = (h % 60) as u8;
    match origin(function) {
        Origin::Program => Color {
            r: 230,
            g: 120 + v,
            b: 30,
        },
        Origin::Stdlib => Color {
            r: 70 + v / 2,
            g: 140 + v,
            b: 220,
        },
        Origin::Runtime => Color {
            r: 190 + v / 2,
            g: 150,
            b: 150,
        },
    }
}

/// Rewrites inferno's counts, `(1,234,567 bytes, 95.00%)`, as `unit` writes
/// them for a person: `(1.2 MiB, 95.00%)`.
fn humanize_sizes(svg: &str, unit: Unit) -> String {
    let count = format!(" {}, ", unit.name());
    let count = count.as_str();
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(at) = rest.find(count) {
        let head = &rest[..at];
        let digits = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == ','))
            .map(|i| i + 1)
            .unwrap_or(0);
        let number: String = head[digits..].chars().filter(|c| *c != ',').collect();
        match number.parse::<f64>() {
            Ok(n) if digits > 0 && head[..digits].ends_with('(') => {
                out.push_str(&head[..digits]);
                out.push_str(&unit.quantity(n));
                out.push_str(", ");
            }
            _ => {
                out.push_str(head);
                out.push_str(count);
            }
        }
        rest = &rest[at + count.len()..];
    }
    out.push_str(rest);
    out
}

/// Writes an SVG flame graph of what `profile`'s stacks hold.
pub(crate) fn write(profile: &Profile, w: &mut dyn Write) -> io::Result<()> {
    let unit = profile.unit;
    let lines = folded::lines(profile);
    let mut opts = Options::default();
    let pids: Vec<String> = profile.pids.iter().map(u32::to_string).collect();
    opts.title = format!(
        "{}: {} (pid {}) over {}s",
        unit.title(&profile.source),
        profile.binary.display(),
        if pids.is_empty() {
            "-".to_string()
        } else {
            pids.join(", ")
        },
        profile.elapsed.as_secs()
    );
    opts.count_name = unit.name().to_string();
    opts.name_type = "Function:".to_string();
    if lines.is_empty() {
        // inferno refuses an empty input; an empty graph still says so.
        return write_empty(&opts.title, unit, w);
    }
    let mut palette = PaletteMap::default();
    for stack in &profile.stacks {
        for f in stack.frames.iter() {
            if palette.get(&f.function).is_none() {
                palette.insert(&f.function, colour(&f.function));
            }
        }
    }
    opts.palette_map = Some(&mut palette);
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let svg = humanize_sizes(&String::from_utf8_lossy(&svg), unit);
    w.write_all(label_root(&svg).as_bytes())
}

/// Writes the root bar's label, which inferno leaves empty: `all (3.0 MiB,
/// 100%)`, as its tooltip says.
fn label_root(svg: &str) -> String {
    const TITLE: &str = "<title>all (";
    let Some(at) = svg.find(TITLE) else {
        return svg.to_string();
    };
    let Some(end) = svg[at..].find("</title>").map(|e| at + e) else {
        return svg.to_string();
    };
    let label = &svg[at + "<title>".len()..end];
    match svg[end..].find("></text>").map(|e| end + e + 1) {
        Some(empty) if !svg[end..empty].contains("</g>") => {
            format!("{}{label}{}", &svg[..empty], &svg[empty..])
        }
        _ => svg.to_string(),
    }
}

/// An SVG with the title and a line saying there is nothing to draw.
fn write_empty(title: &str, unit: Unit, w: &mut dyn Write) -> io::Result<()> {
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    let nothing = unit.nothing_drawn();
    write!(
        w,
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="24" text-anchor="middle" font-size="17">{title}</text>
<text x="600" y="48" text-anchor="middle" font-size="12">{nothing}</text>
</svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::Totals,
        report::{Frame, StackProfile},
    };

    fn profile(stacks: Vec<StackProfile>) -> Profile {
        let mut p = crate::report::example(stacks);
        p.pids = vec![42];
        p
    }

    #[test]
    fn svg_names_the_leak_and_the_target() {
        let p = profile(vec![StackProfile {
            heap: None,
            oldest_secs: None,
            held_at_exit: 0.0,
            growth: None,
            frames: vec![Frame::named("bytes.Repeat"), Frame::named("main.leak")].into(),
            totals: Totals {
                outstanding_bytes: 1e6,
                ..Totals::default()
            },
        }]);
        let mut out = Vec::new();
        write(&p, &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("bytes.Repeat"));
        assert!(svg.contains("main.leak"));
        assert!(svg.contains("/srv/seed (pid 42)"));
        // Sizes in binary units, program code in warm colours, search on.
        assert!(svg.contains("(977 KiB, "), "{svg}");
        // The root bar says what it is.
        assert!(svg.contains(">all (977 KiB, 100%)</text>"), "{svg}");
        assert!(svg.contains("rgb(230,"));
        assert!(svg.contains("Search"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn a_goroutine_graph_counts_goroutines() {
        let mut out = Vec::new();
        write(&crate::report::goroutine_example(), &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("Goroutines: /srv/seed (pid 4242)"), "{svg}");
        assert!(svg.contains("main.worker (1,200 goroutines, "), "{svg}");
        assert!(
            svg.contains(">all (1,203 goroutines, 100%)</text>"),
            "{svg}"
        );
        assert!(!svg.contains("bytes") && !svg.contains("heap"), "{svg}");
        let mut empty = crate::report::goroutine_example();
        empty.stacks.clear();
        let mut out = Vec::new();
        write(&empty, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(">no goroutines</text>"));
    }

    #[test]
    fn origins() {
        assert_eq!(origin("runtime.mallocgc"), Origin::Runtime);
        assert_eq!(origin("internal/runtime/maps.newarray"), Origin::Runtime);
        assert_eq!(origin("runtime/pprof.writeHeap"), Origin::Runtime);
        assert_eq!(origin("bytes.Repeat"), Origin::Stdlib);
        assert_eq!(origin("net/http.(*conn).serve"), Origin::Stdlib);
        assert_eq!(origin("main.(*RequestTracker).Track"), Origin::Program);
        assert_eq!(origin("github.com/acme/api.(*S).Handle"), Origin::Program);
        assert_eq!(origin("github.com/acme/api/v2.init.func1"), Origin::Program);
    }

    #[test]
    fn sizes_are_human() {
        let t = "<title>bytes.Repeat (20,480,000 bytes, 95.00%)</title> 5 bytes, x";
        assert_eq!(
            humanize_sizes(t, Unit::Bytes),
            "<title>bytes.Repeat (19.5 MiB, 95.00%)</title> 5 bytes, x"
        );
    }

    #[test]
    fn empty_profile_still_makes_an_svg() {
        let mut out = Vec::new();
        write(&profile(vec![]), &mut out).unwrap();
        let svg = String::from_utf8(out).unwrap();
        assert!(svg.contains("no outstanding sampled allocations"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
