//! `leak top`'s view into Go processes: which processes run Go (each
//! executable is opened once, whatever runs it), and how many goroutines
//! each has at a reading, read from its memory as `leak goroutines` reads
//! them (no pause, nothing written). A process whose goroutines cannot be
//! read is watched on its memory alone.

use std::{
    collections::HashMap,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

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
    /// Each executable leak looked at, by path: the Go program it is, or
    /// `None` for any other.
    programs: HashMap<PathBuf, Option<Rc<Program>>>,
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
        let program = self
            .programs
            .entry(exe)
            .or_insert_with_key(|exe| Program::open(exe).ok().map(Rc::new))
            .clone()?;
        let process = GoProcess::open(program, pid).ok()?;
        let goroutines = Goroutines::locate(&process).ok()?;
        Some(Reader {
            process,
            goroutines,
            next: Instant::now(),
        })
    }
}
