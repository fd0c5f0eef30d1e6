//! Reports: what a trace found, rendered as text for a person, as folded
//! stacks for flame graph tools, and as an SVG flame graph.
//!
//! Every renderer takes a [`Profile`], plain data with no kernel or process
//! behind it, so each format is tested on its own.

pub mod chart;
pub mod flamegraph;
pub mod folded;
pub mod json;
pub mod pprof;
pub mod text;

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{aggregate::Totals, trend::Verdict};

/// What one frame of a symbolized stack says.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Function name as Go spells it (`main.(*RequestTracker).Track`).
    pub function: Arc<str>,
    /// Source file, if known.
    pub file: Arc<str>,
    /// Source line, 0 if unknown.
    pub line: u32,
    /// True when the compiler inlined this function into the next frame.
    pub inlined: bool,
}

/// One frame of a symbolized stack: a shared handle (one pointer) to its
/// [`FrameInfo`]. The symbolizer makes one per code address, so 100,000
/// stacks of a dozen frames cost a dozen pointers each, not a dozen copies
/// of names and lines; names are shared too (`Arc<str>`). Compares and
/// hashes by what it says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame(Arc<FrameInfo>);

impl std::ops::Deref for Frame {
    type Target = FrameInfo;
    fn deref(&self) -> &FrameInfo {
        &self.0
    }
}

impl Frame {
    /// A frame of `function` at `file`:`line`.
    pub fn new(
        function: impl Into<Arc<str>>,
        file: impl Into<Arc<str>>,
        line: u32,
        inlined: bool,
    ) -> Self {
        Self(Arc::new(FrameInfo {
            function: function.into(),
            file: file.into(),
            line,
            inlined,
        }))
    }

    /// A frame known only by its function name.
    pub fn named(function: &str) -> Self {
        Self::new(function, "", 0, false)
    }
}

/// One call stack with what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct StackProfile {
    /// Frames, leaf (the allocating function) first; shared with the
    /// tracer's own copy (100,000 stacks are not copied to be reported).
    pub frames: Arc<[Frame]>,
    /// Estimated bytes and objects.
    pub totals: Totals,
    /// How what it holds changes over time, once there is a series.
    pub growth: Option<StackGrowth>,
}

/// A stack's trend: is it a leak, a cache that filled, or churn?
#[derive(Clone, Debug, PartialEq)]
pub struct StackGrowth {
    /// The verdict (the same rule as `leak top`'s).
    pub verdict: Verdict,
    /// Why, in a few words.
    pub reason: String,
    /// Growth of outstanding bytes, bytes per second.
    pub bytes_per_sec: f64,
    /// Outstanding bytes gained per call of the `--work` function.
    pub bytes_per_call: Option<f64>,
    /// Outstanding bytes that have survived at least two GC cycles.
    pub survived_2_gcs: f64,
}

/// Calls of the `--work` function and what each leaves behind.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkSummary {
    /// The function (as the user named it).
    pub function: String,
    /// Calls seen since attach.
    pub calls: u64,
    /// Heap retained per call (slope of the heap at the last GC against
    /// calls), once there are enough points.
    pub bytes_per_call: Option<f64>,
}

/// What was dropped or could not be matched; shown so no loss is silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Allocation samples lost in the kernel (ring buffer full).
    pub allocs_dropped: u64,
    /// Frees lost in the kernel (ring buffer full).
    pub frees_dropped: u64,
    /// Samples whose user stack could not be read.
    pub stacks_failed: u64,
}

/// Everything a report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// The traced binary.
    pub binary: PathBuf,
    /// Go version, e.g. `go1.25.5`.
    pub go_version: String,
    /// Processes traced so far.
    pub pids: Vec<u32>,
    /// Sampling rate in bytes (`MemProfileRate`) of the traced processes.
    pub rate: u64,
    /// Time since attach.
    pub elapsed: Duration,
    /// GC cycles seen.
    pub gc_cycles: u64,
    /// Sampled allocations seen.
    pub samples: u64,
    /// Frees of sampled objects seen.
    pub frees: u64,
    /// Sum over all stacks.
    pub total: Totals,
    /// Sampled bytes that survived the last complete GC cycle (Go's "as of
    /// the last GC" view), once two cycles have been seen.
    pub in_use_at_last_gc: Option<f64>,
    /// Estimated outstanding bytes at the previous report (for the trend).
    pub previous_outstanding: Option<f64>,
    /// Stacks, most outstanding bytes first.
    pub stacks: Vec<StackProfile>,
    /// Losses.
    pub losses: Losses,
    /// The `--work` function's calls, if one was given.
    pub work: Option<WorkSummary>,
}

/// Formats a byte count for people: `812 B`, `9.8 KiB`, `20.5 MiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else if v.abs() >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A byte change with its sign: `+1.2 MiB`, `-300 KiB`.
pub fn signed_bytes(bytes: f64) -> String {
    if bytes < 0.0 {
        human_bytes(bytes)
    } else {
        format!("+{}", human_bytes(bytes))
    }
}

/// Writes one requested output file (atomically, see [`write_atomically`])
/// and says so on stderr; an error names the file.
pub fn write_output(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    write_atomically(path, fill).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("leak: wrote {}", path.display());
    Ok(())
}

/// Writes a file so that it either appears complete or not at all: the
/// content goes to a hidden temporary file beside it, renamed into place
/// only once fully written and flushed.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut w = io::BufWriter::new(fs::File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_binary_units() {
        assert_eq!(human_bytes(812.0), "812 B");
        assert_eq!(human_bytes(10240.0), "10.0 KiB");
        assert_eq!(human_bytes(20.48e6), "19.5 MiB");
        assert_eq!(human_bytes(300.0 * 1024.0 * 1024.0), "300 MiB");
        assert_eq!(human_bytes(-2048.0), "-2.0 KiB");
    }

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = std::env::temp_dir().join(format!("leak-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.txt");
        let err = write_atomically(&out, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert!(!out.exists());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "temp file left behind"
        );
        write_atomically(&out, |w| w.write_all(b"whole")).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "whole");
        fs::remove_dir_all(&dir).unwrap();
    }
}
