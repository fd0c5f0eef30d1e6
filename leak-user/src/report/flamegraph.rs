//! SVG flame graph of outstanding bytes, drawn by inferno from the folded
//! stacks.

use std::io::{self, Write};

use inferno::flamegraph::{self, Options};

use super::{folded, Profile};

/// Writes an SVG flame graph of `profile`'s outstanding bytes.
pub fn write(profile: &Profile, w: &mut dyn Write) -> io::Result<()> {
    let lines = folded::lines(profile);
    let mut opts = Options::default();
    let pids: Vec<String> = profile.pids.iter().map(u32::to_string).collect();
    opts.title = format!(
        "Outstanding heap: {} (pid {}) over {}s",
        profile.binary.display(),
        if pids.is_empty() {
            "-".to_string()
        } else {
            pids.join(", ")
        },
        profile.elapsed.as_secs()
    );
    opts.count_name = "bytes".to_string();
    opts.name_type = "Function:".to_string();
    if lines.is_empty() {
        // inferno refuses an empty input; an empty graph still says so.
        return write_empty(&opts.title, w);
    }
    flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
        .map_err(|e| io::Error::other(e.to_string()))
}

fn write_empty(title: &str, w: &mut dyn Write) -> io::Result<()> {
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    write!(
        w,
        r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg">
<text x="600" y="24" text-anchor="middle" font-size="17">{title}</text>
<text x="600" y="48" text-anchor="middle" font-size="12">no outstanding sampled allocations</text>
</svg>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        aggregate::Totals,
        report::{Frame, Losses, StackProfile},
    };
    use std::{path::PathBuf, time::Duration};

    fn profile(stacks: Vec<StackProfile>) -> Profile {
        Profile {
            work: None,
            binary: PathBuf::from("/srv/seed"),
            go_version: "go1.25.5".into(),
            pids: vec![42],
            rate: 512 * 1024,
            elapsed: Duration::from_secs(30),
            gc_cycles: 3,
            samples: 10,
            frees: 0,
            total: Totals::default(),
            in_use_at_last_gc: None,
            previous_outstanding: None,
            stacks,
            losses: Losses::default(),
        }
    }

    #[test]
    fn svg_names_the_leak_and_the_target() {
        let p = profile(vec![StackProfile {
            growth: None,
            frames: vec![Frame::named("bytes.Repeat"), Frame::named("main.leak")],
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
        assert!(svg.trim_end().ends_with("</svg>"));
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
