//! Executables as leak reaches them across mount namespaces: a process in a
//! container may run a binary whose path means nothing on the host (or
//! names another file there), so the name a person knows it by and the
//! path leak opens it at (and hands the kernel for uprobes) are kept apart.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::FileId;

/// An executable: what it is called, and a path leak can open from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExePath {
    /// Its name for people: a host path made canonical, or the path the
    /// process sees in its own mount namespace.
    pub name: PathBuf,
    /// Where leak opens it and attaches uprobes: the host path itself,
    /// `/proc/PID/exe`, or `/proc/PID/root/<path>`. The kernel resolves
    /// each from leak's own mount namespace.
    pub open: PathBuf,
}

impl ExePath {
    /// A file named by a host path: opened as given, named canonically when
    /// the host can resolve it. A link the host cannot follow by name
    /// (`/proc/PID/exe` of a container's process) is named by its target.
    pub(crate) fn host(path: &Path) -> Self {
        let name = fs::canonicalize(path)
            .or_else(|_| fs::read_link(path).map(|t| strip_deleted(&t)))
            .unwrap_or_else(|_| path.to_path_buf());
        Self {
            name,
            open: path.to_path_buf(),
        }
    }

    /// The executable of process `pid`, named as the process sees it and
    /// opened through `/proc/PID/exe` (which works in any mount namespace,
    /// and for a binary deleted since it started).
    pub(crate) fn of_process(pid: u32) -> io::Result<Self> {
        Ok(Self {
            name: strip_deleted(&super::exe(pid)?),
            open: exe_file(pid),
        })
    }

    /// `path`, the executable a person says process `pid` runs: the host's
    /// file when it is the one the process runs, else the file `path` names
    /// in the process's own root (a container's binary, at the path the
    /// container sees) when that one is. Neither: the host's, for the caller
    /// to report that the process runs something else (or that there is no
    /// such file).
    pub(crate) fn seen_by(pid: u32, path: &Path) -> Self {
        let host = Self::host(path);
        let Ok(runs) = FileId::of(&exe_file(pid)) else {
            return host;
        };
        if FileId::of(path).is_ok_and(|id| id == runs) {
            return host;
        }
        match in_root(pid, path) {
            Some(open) if FileId::of(&open).is_ok_and(|id| id == runs) => Self {
                name: path.to_path_buf(),
                open,
            },
            Some(open) if !path.exists() && open.exists() => Self {
                name: path.to_path_buf(),
                open,
            },
            _ => host,
        }
    }
}

/// The path a `/proc/PID/exe` link names, without the kernel's mark for a
/// file deleted since (a binary replaced by an upgrade).
fn strip_deleted(target: &Path) -> PathBuf {
    match target.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(kept) => PathBuf::from(kept),
        None => target.to_path_buf(),
    }
}

/// A path leak can open process `pid`'s executable at, whatever mount
/// namespace the process runs in.
pub(crate) fn exe_file(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}

/// Absolute `path` as process `pid` sees it, reached from the host through
/// its root (`/proc/PID/root/<path>`); `None` for a relative path.
pub(crate) fn in_root(pid: u32, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix("/").ok()?;
    Some(Path::new(&format!("/proc/{pid}/root")).join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_is_named_as_seen_and_opened_through_proc() {
        let me = std::process::id();
        let exe = ExePath::of_process(me).unwrap();
        assert_eq!(exe.open, PathBuf::from(format!("/proc/{me}/exe")));
        assert_eq!(exe.name, std::env::current_exe().unwrap());
        assert_eq!(
            FileId::of(&exe.open).unwrap(),
            FileId::of(&exe.name).unwrap()
        );
    }

    #[test]
    fn a_host_path_that_is_the_executable_stays_the_host_path() {
        let me = std::process::id();
        let path = std::env::current_exe().unwrap();
        let exe = ExePath::seen_by(me, &path);
        assert_eq!(exe.open, path);
    }

    #[test]
    fn a_path_missing_everywhere_is_left_for_the_caller_to_report() {
        let me = std::process::id();
        let path = Path::new("/no/such/dir/leak-test-binary");
        let exe = ExePath::seen_by(me, path);
        assert_eq!(exe.open, path);
        assert_eq!(exe.name, path);
    }

    #[test]
    fn a_deleted_binary_keeps_its_name() {
        let gone = Path::new("/srv/app (deleted)");
        assert_eq!(strip_deleted(gone), PathBuf::from("/srv/app"));
        assert_eq!(
            strip_deleted(Path::new("/srv/app")),
            PathBuf::from("/srv/app")
        );
    }

    #[test]
    fn paths_in_a_process_root() {
        assert_eq!(
            in_root(42, Path::new("/srv/app")),
            Some(PathBuf::from("/proc/42/root/srv/app"))
        );
        assert_eq!(in_root(42, Path::new("app")), None);
    }
}
