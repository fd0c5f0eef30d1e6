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

/// All stacks of a profile as folded lines, most bytes first.
pub fn lines(profile: &Profile) -> Vec<String> {
    profile.stacks.iter().filter_map(line).collect()
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
    fn separators_inside_names_are_escaped() {
        let s = stack(&["weird;name x"], 5.0);
        assert_eq!(line(&s).unwrap(), "weird:name_x 5");
    }
}
