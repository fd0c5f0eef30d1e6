//! `leak top`'s view into Go processes: which processes run Go (each
//! executable is opened once, whatever runs it), and how many goroutines
//! each has at a reading, read from its memory as `leak goroutines` reads
//! them (no pause, nothing written). A process whose goroutines cannot be
//! read is watched on its memory alone.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use object::{Object, ReadCache};

use crate::{
    go::{goroutines::Goroutines, GoProcess, Program},
    process,
};

/// A read may take at most this share of the time until the next one.
const DUTY: u32 = 20;

/// One Go process, opened for reading its goroutines.
struct Reader {
    process: GoProcess,
    goroutines: Goroutines,
    /// No read before this (a process with very many goroutines is read
    /// less often, so reading never takes more than 1/`DUTY` of the time).
    next: Instant,
}

/// Go processes among the watched ones, and their goroutine counts.
#[derive(Default)]
pub(crate) struct GoroutineCounts {
    /// Go executables by path, opened while a process runs them (each is
    /// read whole, for its tables: not kept once no process needs it).
    programs: HashMap<PathBuf, Weak<Program>>,
    /// Executables found not to be Go (from their section headers alone).
    not_go: HashSet<PathBuf>,
    /// Each process looked at, by pid, with its start time: a reader, or
    /// `None` for one that is not Go or cannot be read.
    readers: HashMap<u32, (u64, Option<Reader>)>,
}

impl GoroutineCounts {
    /// The goroutines Go's own profile would count in process `pid`
    /// (started at `start_time`) now, if it is a Go process whose
    /// goroutines can be read and a read is due; `interval` is the time
    /// between readings.
    pub(crate) fn count(&mut self, pid: u32, start_time: u64, interval: Duration) -> Option<usize> {
        if self.readers.get(&pid).is_none_or(|(s, _)| *s != start_time) {
            let reader = self.open(pid);
            self.readers.insert(pid, (start_time, reader));
        }
        let reader = self.readers.get_mut(&pid)?.1.as_mut()?;
        let now = Instant::now();
        if now < reader.next {
            return None;
        }
        let snapshot = reader.goroutines.read(&reader.process).ok()?;
        let took = now.elapsed();
        reader.next = now + (took * DUTY).saturating_sub(interval);
        Some(snapshot.user().count())
    }

    /// Forgets process `pid` (it exited).
    pub(crate) fn forget(&mut self, pid: u32) {
        self.readers.remove(&pid);
    }

    /// A reader of `pid`'s goroutines, if it runs Go and they can be read.
    fn open(&mut self, pid: u32) -> Option<Reader> {
        let exe = process::exe(pid).ok()?;
        if self.not_go.contains(&exe) {
            return None;
        }
        let known = self.programs.get(&exe).and_then(Weak::upgrade);
        let program = match known {
            Some(p) => p,
            None if !looks_like_go(&exe) => {
                self.not_go.insert(exe);
                return None;
            }
            None => {
                let p = Rc::new(Program::open(&exe).ok()?);
                self.programs.insert(exe, Rc::downgrade(&p));
                p
            }
        };
        let process = GoProcess::open(program, pid).ok()?;
        let goroutines = Goroutines::locate(&process).ok()?;
        Some(Reader {
            process,
            goroutines,
            next: Instant::now(),
        })
    }
}

/// Whether the executable at `path` is a Go program, from its section
/// headers alone: most executables on a host are not Go, and some are
/// hundreds of MiB, so none is read whole to find out. Go's linker writes
/// `.gopclntab` (folded into `.data.rel.ro` when the C linker links it),
/// `.go.buildinfo` and the `.note.go.buildid` note, and stripping keeps
/// them; any one will do.
fn looks_like_go(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let cache = ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    [".gopclntab", ".go.buildinfo", ".note.go.buildid"]
        .iter()
        .any(|name| elf.section_by_name(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::testutil::{self, Variant, VERSIONS};

    #[test]
    fn go_executables_are_told_apart_by_their_headers() {
        assert!(!looks_like_go(Path::new("/bin/sh")));
        assert!(!looks_like_go(Path::new("/etc/passwd")));
        assert!(!looks_like_go(Path::new("/no/such/file")));
        for v in VERSIONS {
            for variant in [
                Variant::Plain,
                Variant::StrippedPie,
                Variant::NoBuildInfo,
                Variant::ExternalPie,
            ] {
                if let Some(bin) = testutil::seed(v, variant) {
                    assert!(looks_like_go(&bin), "go{v} {variant:?}");
                }
            }
        }
    }
}
