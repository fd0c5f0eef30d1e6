//! Folded stacks: one line per stack, frames root first joined by `;`, a
//! space, and what the stack holds in the profile's unit as an integer
//! (estimated outstanding bytes, goroutines) — the input format of
//! flamegraph.pl and inferno.

use std::io::{self, Write};

use super::{Profile, StackProfile, Unit};

/// The folded line of one stack, counted in `unit`, or `None` when it holds
/// nothing.
pub(crate) fn line(stack: &StackProfile, unit: Unit) -> Option<String> {
    let held = unit.held(&stack.totals).round() as u64;
    if held == 0 || stack.frames.is_empty() {
        return None;
    }
    let frames: Vec<String> = stack
        .frames
        .iter()
        .rev()
        // `;` separates frames and the last space starts the count.
        .map(|f| f.function.replace(';', ":").replace(' ', "_"))
        .collect();
    Some(format!("{} {held}", frames.join(";")))
}

/// All stacks of a profile as folded lines, most held first (equal counts
/// in name order). Stacks that differ only in lines (not functions) become
/// one line, as the format has function names only. One string per stack,
/// merged by sorting: no second copy for an index.
pub(crate) fn lines(profile: &Profile) -> Vec<String> {
    let mut all: Vec<(String, u64)> = profile
        .stacks
        .iter()
        .filter_map(|s| {
            let mut l = line(s, profile.unit)?;
            let at = l.rfind(' ').expect("line() writes a count");
            let held = l[at + 1..].parse().expect("line() writes an integer");
            l.truncate(at);
            Some((l, held))
        })
        .collect();
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.into_iter()
        .map(|(mut f, b)| {
            use std::fmt::Write as _;
            let _ = write!(f, " {b}");
            f
        })
        .collect()
}

/// Writes the folded stacks of `profile`.
pub(crate) fn write(profile: &Profile, w: &mut dyn Write) -> io::Result<()> {
    for l in lines(profile) {
        writeln!(w, "{l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{aggregate::Totals, report::Frame};

    fn stack(names: &[&str], bytes: f64) -> StackProfile {
        StackProfile {
            heap: None,
            oldest_secs: None,
            held_at_exit: 0.0,
            growth: None,
            frames: names.iter().map(|n| Frame::named(n)).collect(),
            totals: Totals {
                outstanding_bytes: bytes,
                ..Totals::default()
            },
        }
    }

    #[test]
    fn root_first_with_integer_bytes() {
        let s = stack(
            &[
                "bytes.Repeat",
                "main.(*RequestTracker).Track",
                "main.main.func1",
            ],
            20480000.4,
        );
        assert_eq!(
            line(&s, Unit::Bytes).unwrap(),
            "main.main.func1;main.(*RequestTracker).Track;bytes.Repeat 20480000"
        );
    }

    #[test]
    fn empty_stacks_and_zero_bytes_are_left_out() {
        assert_eq!(line(&stack(&["a"], 0.3), Unit::Bytes), None);
        assert_eq!(line(&stack(&[], 100.0), Unit::Bytes), None);
    }

    #[test]
    fn stacks_differing_only_in_lines_merge() {
        let at_line = |s: StackProfile, line| {
            let mut frames = s.frames.to_vec();
            frames[0] = Frame::new(
                frames[0].function.clone(),
                frames[0].file.clone(),
                line,
                false,
            );
            StackProfile {
                heap: None,
                oldest_secs: None,
                held_at_exit: 0.0,
                frames: frames.into(),
                ..s
            }
        };
        let a = at_line(stack(&["f", "main"], 100.0), 10);
        let b = at_line(stack(&["f", "main"], 50.0), 20);
        let c = stack(&["g", "main"], 120.0);
        let p = crate::report::example(vec![c, a, b]);
        assert_eq!(lines(&p), ["main;f 150", "main;g 120"]);
    }

    #[test]
    fn goroutines_are_counted_per_stack() {
        let p = crate::report::goroutine_example();
        assert_eq!(
            lines(&p),
            [
                "main.worker;runtime.chanrecv;runtime.gopark 1200",
                "net/http.(*conn).serve;runtime.gopark 3"
            ]
        );
    }

    #[test]
    fn separators_inside_names_are_escaped() {
        let s = stack(&["weird;name x"], 5.0);
        assert_eq!(line(&s, Unit::Bytes).unwrap(), "weird:name_x 5");
    }
}
