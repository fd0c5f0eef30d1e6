//! The files a run writes on exit, one flattened argument group shared by
//! every subcommand: checked before anything is attached, written at the
//! end, each whole or not at all.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::error::{refuse, Context as _, Result};
use clap::Args;

use crate::report::{self, chart::ChartLine, Profile};

/// Output files, written when the run ends.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Outputs (written on exit, each whole or not at all)")]
pub(crate) struct Outputs {
    /// Folded stacks (flamegraph.pl / inferno input): frames root first
    /// joined by ';', a space, outstanding bytes. leak trace.
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,

    /// An SVG flame graph of outstanding bytes. leak trace.
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,

    /// A gzipped pprof heap profile (read it with `go tool pprof`; `-base`
    /// diffs two of them). leak trace on a Go program.
    #[arg(long, value_name = "FILE")]
    pub pprof: Option<PathBuf>,

    /// The report as JSON (schemas in the README).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// An SVG chart over time: resident memory of the top processes (leak
    /// top), or bytes held by the top stacks (leak trace), verdicts in the
    /// legend.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

/// One kind of output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `--folded`.
    Folded,
    /// `--flamegraph`.
    Flamegraph,
    /// `--pprof`.
    Pprof,
    /// `--json`.
    Json,
    /// `--chart`.
    Chart,
}

impl Output {
    /// The flag that asks for it.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Output::Folded => "--folded",
            Output::Flamegraph => "--flamegraph",
            Output::Pprof => "--pprof",
            Output::Json => "--json",
            Output::Chart => "--chart",
        }
    }
}

impl Outputs {
    /// Every requested output with its path.
    pub(crate) fn requested(&self) -> impl Iterator<Item = (Output, &Path)> {
        [
            (Output::Folded, &self.folded),
            (Output::Flamegraph, &self.flamegraph),
            (Output::Pprof, &self.pprof),
            (Output::Json, &self.json),
            (Output::Chart, &self.chart),
        ]
        .into_iter()
        .filter_map(|(o, p)| p.as_deref().map(|p| (o, p)))
    }

    /// Fails, before any tracing, if an output is asked of a mode that
    /// cannot write it (`mode` says which, and `instead` what would) or a
    /// file cannot be written.
    pub(crate) fn check(&self, supported: &[Output], mode: &str, instead: &str) -> Result<()> {
        for (output, path) in self.requested() {
            if !supported.contains(&output) {
                refuse!("{} is not written by {mode}: {instead}", output.flag());
            }
            check_writable(path)?;
        }
        Ok(())
    }

    /// Writes the profile's folded stacks, flame graph and JSON, each that
    /// was asked for.
    pub(crate) fn write_profile(&self, profile: &Profile) -> Result<()> {
        if let Some(path) = &self.folded {
            write(path, |w| report::folded::write(profile, w))?;
        }
        if let Some(path) = &self.flamegraph {
            write(path, |w| report::flamegraph::write(profile, w))?;
        }
        if let Some(path) = &self.json {
            write(path, |w| report::json::write(profile, w))?;
        }
        Ok(())
    }

    /// Writes the chart of `quantity` over time, if asked for.
    pub(crate) fn write_chart(
        &self,
        title: &str,
        quantity: &str,
        lines: &[ChartLine],
    ) -> Result<()> {
        if let Some(path) = &self.chart {
            write(path, |w| report::chart::write(title, quantity, lines, w))?;
        }
        Ok(())
    }
}

/// Fails if `out` cannot be written: no such directory, or a directory.
pub(crate) fn check_writable(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        refuse!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if out.is_dir() {
        refuse!("cannot write {}: it is a directory", out.display());
    }
    if let Err(e) = untrusted_link(out) {
        refuse!("cannot write {}: {e}", out.display());
    }
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: a NUL-terminated path; access has no other precondition.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } != 0 {
        refuse!(
            "cannot write {}: directory {} is not writable ({})",
            out.display(),
            dir.display(),
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Fails if `path` is a symbolic link that someone other than the caller
/// (or root) owns: writing through it would let that user choose which
/// file leak, often run as root, writes (as the kernel's
/// `fs.protected_symlinks` refuses in sticky directories).
fn untrusted_link(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it is a symbolic link owned by another user (uid {}): refusing to follow it",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// Writes one output file (atomically, see [`write_atomically`]) and says
/// so on stderr; an error names the file.
pub(crate) fn write(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    write_atomically(path, fill).context(|| format!("cannot write {}", path.display()))?;
    eprintln!("leak: wrote {}", path.display());
    Ok(())
}

/// Writes a file so that it either appears complete or not at all: the
/// content goes to a new hidden file beside it (created exclusively, never
/// through a link, with the caller's umask), renamed into place only once
/// fully written and flushed; on any error it is removed. A path that is
/// not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written
/// straight into: renaming over it would replace a device with a file. A
/// symbolic link another user owns is refused ([`untrusted_link`]).
pub(crate) fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    untrusted_link(path)?;
    if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return write_into(path, fill);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let (tmp, file) = create_temp(dir, &name.to_string_lossy())?;
    let result = (|| {
        let mut w = io::BufWriter::new(file);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file `.NAME.partial-PID-N` in `dir` with O_EXCL and
/// O_NOFOLLOW (a name someone planted is skipped, never opened), mode 0666
/// less the umask.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut last = None;
    for n in 0..16 {
        let tmp = dir.join(format!(".{name}.partial-{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Writes into an existing file that is not a regular one (a device, a
/// FIFO), never creating one; a regular file found there instead (the
/// path was swapped since it was looked at) is refused.
fn write_into(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let file = fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.is_file() {
        return Err(io::Error::other(
            "it changed into a regular file while leak wrote it",
        ));
    }
    let mut w = io::BufWriter::new(file);
    fill(&mut w)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_written_into_not_replaced() {
        write_atomically(Path::new("/dev/null"), |w| w.write_all(b"gone")).unwrap();
        let meta = fs::metadata("/dev/null").unwrap();
        assert!(!meta.is_file(), "/dev/null is still a device");
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

    /// New files get the caller's umask, and the caller's own symbolic
    /// link is written through (replaced by the file).
    #[test]
    fn new_files_follow_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("leak-umask-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.json");
        // SAFETY: umask has no preconditions (this test restores it).
        let old = unsafe { libc::umask(0o077) };
        let written = write_atomically(&out, |w| w.write_all(b"{}"));
        unsafe { libc::umask(old) };
        written.unwrap();
        let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&out, &link).unwrap();
        write_atomically(&link, |w| w.write_all(b"[]")).unwrap();
        assert_eq!(fs::read_to_string(&link).unwrap(), "[]");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A planted temporary name is skipped, not written through.
    #[test]
    fn a_planted_temporary_name_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("leak-planted-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "keep").unwrap();
        let planted = dir.join(format!(".out.partial-{}-0", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_atomically(&dir.join("out"), |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(dir.join("out")).unwrap(), "new");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_or_unwritable_outputs_fail_before_tracing() {
        let o = Outputs {
            pprof: Some("x.pb.gz".into()),
            ..Outputs::default()
        };
        let e = o
            .check(&[Output::Json], "leak top", "use leak trace")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--pprof is not written by leak top: use leak trace"
        );
        let o = Outputs {
            chart: Some("/no/such/dir/x.svg".into()),
            ..Outputs::default()
        };
        let e = o.check(&[Output::Chart], "leak top", "").unwrap_err();
        assert!(
            e.to_string()
                .contains("directory /no/such/dir does not exist"),
            "{e}"
        );
        let o = Outputs {
            json: Some(std::env::temp_dir()),
            ..Outputs::default()
        };
        assert!(o
            .check(&[Output::Json], "", "")
            .unwrap_err()
            .to_string()
            .contains("is a directory"));
    }
}
