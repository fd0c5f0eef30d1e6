//! Folded stacks: one line per stack, frames root first joined by `;`, a
//! space, and the estimated outstanding bytes as an integer — the input
//! format of flamegraph.pl and inferno.

use std::io::{self, Write};

use super::{Profile, StackProfile};

/// The folded line of one stack, or `None` when it holds nothing.
pub fn line(stack: &StackProfile) -> Option<String> {
    let bytes = stack.totals.outstanding_bytes.round() as u64;
    if bytes == 0 || stack.frames.is_empty() {
        return None;
    }
    let frames: Vec<String> = stack
        .frames
        .iter()
        .rev()
        // `;` separates frames and the last space starts the count.
        .map(|f| f.function.replace(';', ":").replace(' ', "_"))
        .collect();
    Some(format!("{} {bytes}", frames.join(";")))
}

/// All stacks of a profile as folded lines, most bytes first (equal bytes
/// in name order). Stacks that differ only in lines (not functions) become
/// one line, as the format has function names only. One string per stack,
/// merged by sorting: no second copy for an index.
pub fn lines(profile: &Profile) -> Vec<String> {
    let mut all: Vec<(String, u64)> = profile
        .stacks
        .iter()
        .filter_map(|s| {
            let mut l = line(s)?;
            let at = l.rfind(' ').expect("line() writes a count");
            let bytes = l[at + 1..].parse().expect("line() writes an integer");
            l.truncate(at);
            Some((l, bytes))
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
pub fn write(profile: &Profile, w: &mut dyn Write) -> io::Result<()> {
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
            line(&s).unwrap(),
            "main.main.func1;main.(*RequestTracker).Track;bytes.Repeat 20480000"
        );
    }

    #[test]
    fn empty_stacks_and_zero_bytes_are_left_out() {
        assert_eq!(line(&stack(&["a"], 0.3)), None);
        assert_eq!(line(&stack(&[], 100.0)), None);
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
    fn separators_inside_names_are_escaped() {
        let s = stack(&["weird;name x"], 5.0);
        assert_eq!(line(&s).unwrap(), "weird:name_x 5");
    }
}
