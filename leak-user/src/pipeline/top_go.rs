//! `leak top`'s view into Go processes: which processes run Go (each
//! executable is opened once, whatever runs it), and at a reading what the
//! GC says of each one's heap (the bytes that survived the last GC, the
//! heap live now, GC count, GOMEMLIMIT) and how many goroutines it has,
//! read from its memory as `leak goroutines` reads them (no pause, nothing
//! written). A process whose runtime cannot be read is watched on its
//! memory alone.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use object::{Object, ReadCache};

use crate::{
    go::{
        gcstats::{self, GcStats},
        goroutines::Goroutines,
        GoProcess, Program,
    },
    process::{exe::ExePath, FileId},
};

/// A read may take at most this share of the time until the next one.
const DUTY: u32 = 20;

/// Executables remembered as not Go, at most.
const MAX_NOT_GO: usize = 4096;

/// One Go process, opened for reading its runtime.
struct Reader {
    process: GoProcess,
    /// Where its goroutines are, if they can be read.
    goroutines: Option<Goroutines>,
    /// No goroutine read before this (a process with very many goroutines
    /// is read less often, so reading never takes more than 1/`DUTY` of the
    /// time). The GC's figures are two small reads, taken every time.
    next: Instant,
}

/// What one reading of a Go process found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GoReading {
    /// The GC's figures, if they could be read.
    pub gc: Option<GcStats>,
    /// The goroutines Go's own profile would count, if read this time.
    pub goroutines: Option<usize>,
}

/// Go processes among the watched ones, and what their runtimes say.
#[derive(Default)]
pub(crate) struct GoReaders {
    /// Go executables by file (device and inode: the same binary in two
    /// containers is one file, and the same path in two is not), opened
    /// while a process runs them (each is read whole, for its tables: not
    /// kept once no process needs it).
    programs: HashMap<FileId, Weak<Program>>,
    /// Executables found not to be Go (from their section headers alone).
    not_go: HashSet<FileId>,
    /// Each process looked at, by pid, with its start time: a reader, or
    /// `None` for one that is not Go or cannot be read.
    readers: HashMap<u32, (u64, Option<Reader>)>,
}

impl GoReaders {
    /// Reads process `pid` (started at `start_time`) now, if it is a Go
    /// process whose runtime can be read: the GC's figures every time, the
    /// goroutines when a read of them is due; `interval` is the time
    /// between readings.
    pub(crate) fn read(&mut self, pid: u32, start_time: u64, interval: Duration) -> GoReading {
        if self.readers.get(&pid).is_none_or(|(s, _)| *s != start_time) {
            let reader = self.open(pid);
            self.readers.insert(pid, (start_time, reader));
        }
        let Some(reader) = self.readers.get_mut(&pid).and_then(|r| r.1.as_mut()) else {
            return GoReading::default();
        };
        GoReading {
            gc: gcstats::read(&reader.process).ok(),
            goroutines: reader.count_goroutines(interval),
        }
    }

    /// Forgets process `pid` (it exited), and the executables no process
    /// runs any more.
    pub(crate) fn forget(&mut self, pid: u32) {
        self.readers.remove(&pid);
        self.programs.retain(|_, p| p.strong_count() > 0);
    }

    /// A reader of `pid`'s runtime, if it runs Go and its GC's figures or
    /// its goroutines can be read.
    fn open(&mut self, pid: u32) -> Option<Reader> {
        // Through /proc/PID/exe: a container's binary is not at its path on
        // the host.
        let exe = ExePath::of_process(pid).ok()?;
        let id = FileId::of(&exe.open).ok()?;
        if self.not_go.contains(&id) {
            return None;
        }
        let known = self.programs.get(&id).and_then(Weak::upgrade);
        let program = match known {
            Some(p) => p,
            None if !looks_like_go(&exe.open) => {
                // Builds and deployments bring new files all the time:
                // past the bound, the headers are read again.
                if self.not_go.len() >= MAX_NOT_GO {
                    self.not_go.clear();
                }
                self.not_go.insert(id);
                return None;
            }
            None => {
                let p = Rc::new(Program::open_exe(&exe).ok()?);
                self.programs.insert(id, Rc::downgrade(&p));
                p
            }
        };
        let process = GoProcess::open(program, pid).ok()?;
        let goroutines = Goroutines::locate(&process).ok();
        if goroutines.is_none() && gcstats::read(&process).is_err() {
            return None;
        }
        Some(Reader {
            process,
            goroutines,
            next: Instant::now(),
        })
    }
}

impl Reader {
    /// The goroutines Go's own profile would count now, if they can be read
    /// and a read is due.
    fn count_goroutines(&mut self, interval: Duration) -> Option<usize> {
        let now = Instant::now();
        if now < self.next {
            return None;
        }
        let snapshot = self.goroutines.as_ref()?.read(&self.process).ok()?;
        let took = now.elapsed();
        self.next = now + (took * DUTY).saturating_sub(interval);
        Some(snapshot.user().count())
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
