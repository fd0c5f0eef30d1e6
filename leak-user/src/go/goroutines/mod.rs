//! The goroutines of a running Go program, read from outside: located in
//! its program ([`locate`]), read through its memory with nothing stopped
//! ([`walk`]), each named as Go's own traceback names it (stack frames with
//! inlined calls, start function, "created by", wait reason from the
//! target's own `runtime.waitReasonStrings`), the runtime's own goroutines
//! told apart as pprof tells them, and grouped as
//! `/debug/pprof/goroutine?debug=1` groups them ([`groups`]).

pub(crate) mod groups;
pub(crate) mod locate;
#[cfg(test)]
mod tests;
pub(crate) mod walk;

use std::{rc::Rc, sync::Arc, time::Duration};

pub(crate) use self::groups::{group, Group};
use self::walk::{Location, RawGoroutine, ReadError, State, Unstable};
use super::{error::GoError, table::GoroutineLayout, GoBinary, GoProcess};
use crate::{
    frame::Frame,
    symbolize::{SymbolSource, Symbolizer},
};

/// What the goroutines are called in messages.
const WHAT: &str = "goroutines";

/// One goroutine, named.
#[derive(Clone, Debug)]
pub(crate) struct Goroutine {
    /// Its id.
    pub goid: u64,
    /// What it is doing.
    pub state: State,
    /// Why it waits, in the target's own words (`chan receive`), for a
    /// waiting (or leaked) goroutine.
    pub wait_reason: Option<Arc<str>>,
    /// How long it has waited: Go sets the start of a wait lazily (the next
    /// GC's stack scan, or the scheduler), so this is as fine as the
    /// program's GC cadence, as in Go's own tracebacks; `None` until set.
    pub waiting_for: Option<Duration>,
    /// Its function (`startpc`).
    pub start: Option<Frame>,
    /// The `go` statement that started it (`gopc`): Go's "created by".
    pub created_by: Option<Frame>,
    /// Bytes its stack takes (`stack.hi - stack.lo`).
    pub stack_bytes: u64,
    /// Its stack, leaf first, as pprof's `debug=1` shows it (inlined
    /// calls expanded, runtime frames at the leaf end and `goexit` left
    /// out); why not, when it has none in this read.
    pub frames: Result<Vec<Frame>, Unstable>,
    /// A runtime-internal goroutine, which Go's goroutine profile leaves
    /// out (`isSystemGoroutine`).
    pub system: bool,
}

impl Goroutine {
    /// The state as Go's tracebacks print it: the wait reason when there is
    /// one, else the status.
    pub(crate) fn state_name(&self) -> &str {
        self.wait_reason.as_deref().unwrap_or(self.state.name())
    }
}

/// Every goroutine of a process at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    /// Live goroutines, the runtime's own included (see
    /// [`Goroutine::system`]).
    pub goroutines: Vec<Goroutine>,
}

impl Snapshot {
    /// Goroutines Go's own profile counts (the runtime's left out).
    pub(crate) fn user(&self) -> impl Iterator<Item = &Goroutine> {
        self.goroutines.iter().filter(|g| !g.system)
    }

    /// Of those, the ones with no stack in this read (on a CPU, or moving).
    pub(crate) fn unstable(&self) -> usize {
        self.user().filter(|g| g.frames.is_err()).count()
    }
}

/// Where one process's goroutines are, ready to be read, with the names of
/// its wait reasons (read once).
#[derive(Clone, Debug)]
pub(crate) struct Goroutines {
    at: Location,
    wait_reasons: Vec<Arc<str>>,
}

impl Goroutines {
    /// Locates the goroutines of `process` (addresses found once per
    /// program) and reads its wait-reason names.
    pub(crate) fn locate(process: &GoProcess) -> Result<Self, GoError> {
        let program = process.program();
        let vars = program
            .goroutines
            .clone()
            .map_err(|reason| GoError::GoroutinesNotFound {
                path: program.path.clone(),
                reason,
            })?;
        let names = walk::read_wait_reasons(
            process.memory(),
            process.runtime_addr(vars.wait_reasons),
            vars.wait_reason_count,
        )
        .map_err(|e| read_error(process, e))?;
        Ok(Self {
            at: Location {
                allglen: process.runtime_addr(vars.allglen),
                allgptr: process.runtime_addr(vars.allgptr),
            },
            wait_reasons: names.into_iter().map(Arc::from).collect(),
        })
    }

    /// Reads every goroutine now. Fails in one line if the process is gone
    /// or what was located is not its goroutines.
    pub(crate) fn read(&self, process: &GoProcess) -> Result<Snapshot, GoError> {
        let layout = &process.program().runtime.goroutines;
        let is_code = |pc: u64| process.is_code(pc);
        let now = monotonic_now();
        let raw = walk::read(process.memory(), layout, self.at, &is_code)
            .map_err(|e| read_error(process, e))?;
        let bin = &process.program().bin;
        let mut namer = Namer::new(bin, layout, process.bias());
        let goroutines = raw
            .goroutines
            .iter()
            .map(|g| namer.name(g, &self.wait_reasons, now))
            .collect();
        Ok(Snapshot { goroutines })
    }
}

/// Reads `process`'s goroutines once.
pub(crate) fn read_once(process: &GoProcess) -> Result<Snapshot, GoError> {
    Goroutines::locate(process)?.read(process)
}

fn read_error(process: &GoProcess, e: ReadError) -> GoError {
    let pid = process.pid();
    match e {
        ReadError::Memory { .. } => {
            process.read_failure(WHAT, GoError::Goroutines { pid, source: e })
        }
        ReadError::NotGoroutines(reason) => GoError::NotWhatWasLocated {
            pid,
            path: process.program().path.clone(),
            what: WHAT,
            reason,
        },
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of Go's `nanotime`,
/// which `g.waitsince` holds.
fn monotonic_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Names raw goroutines from the program's `.gopclntab`.
struct Namer<'a> {
    bin: &'a Rc<GoBinary>,
    layout: &'a GoroutineLayout,
    bias: u64,
    symbols: Symbolizer<Rc<GoBinary>>,
}

impl<'a> Namer<'a> {
    fn new(bin: &'a Rc<GoBinary>, layout: &'a GoroutineLayout, bias: u64) -> Self {
        Self {
            bin,
            layout,
            bias,
            // Every frame kept: pprof's own trimming is applied below.
            symbols: Symbolizer::native(bin.clone()),
        }
    }

    fn name(&mut self, g: &RawGoroutine, reasons: &[Arc<str>], now: i64) -> Goroutine {
        let link = |pc: u64| pc.wrapping_sub(self.bias);
        // Go looks each pc up at pc - 1, the saved pc of a parked
        // goroutine too (its unwinder's symPC): it is a return address.
        let all_frames = g.pcs.as_ref().map(|pcs| {
            let pcs: Vec<u64> = pcs.iter().map(|&pc| link(pc)).collect();
            self.symbols.stack(&pcs)
        });
        let tab = self.bin.pclntab();
        let start = tab.find_func(link(g.startpc)).map(|f| {
            let at = tab.frames(f.entry).pop();
            let (file, line) = at.map(|a| (a.file, a.line)).unwrap_or_default();
            Frame::new(f.name, file, line, false)
        });
        let system = is_system(
            self.layout,
            start.as_ref().map(|f| &*f.function),
            all_frames.as_deref().ok(),
        );
        let waits = matches!(g.state, State::Waiting | State::Leaked);
        Goroutine {
            goid: g.goid,
            state: g.state,
            wait_reason: (waits && g.wait_reason != 0)
                .then(|| reasons.get(usize::from(g.wait_reason)).cloned())
                .flatten(),
            waiting_for: (waits && g.wait_since > 0 && now > g.wait_since)
                .then(|| Duration::from_nanos((now - g.wait_since) as u64)),
            start,
            created_by: self.created_by(link(g.gopc)),
            stack_bytes: g.stack_bytes(),
            frames: all_frames.map(as_pprof_shows).map_err(|u| *u),
            system,
        }
    }

    /// The innermost function at the `go` statement (`gopc` is the return
    /// address of its call to `newproc`), as Go's `printcreatedby` names it.
    fn created_by(&self, gopc: u64) -> Option<Frame> {
        if gopc == 0 {
            return None;
        }
        self.symbols.source().innermost_at(gopc - 1).flatten()
    }
}

/// Whether a runtime function is in the runtime for pprof's trimming.
fn is_runtime_frame(function: &str) -> bool {
    function.starts_with("runtime.") || function.starts_with("internal/runtime/")
}

/// A stack as pprof's `printStackRecord` shows it: `runtime.goexit` and
/// the runtime frames at the leaf end left out, unless nothing else is
/// left.
fn as_pprof_shows(frames: Vec<Frame>) -> Vec<Frame> {
    let frames: Vec<Frame> = frames
        .into_iter()
        .filter(|f| &*f.function != "runtime.goexit")
        .collect();
    match frames.iter().position(|f| !is_runtime_frame(&f.function)) {
        Some(first) => frames[first..].to_vec(),
        None => frames,
    }
}

/// Go's `isSystemGoroutine(gp, false)`: a goroutine whose function is in
/// `runtime.` is the runtime's, except the ones the table names as the
/// user's, and the finalizer and cleanup goroutines while they run user
/// code (seen here as a frame outside the runtime on their stack; one
/// with no stack in this read is taken as busy with user code).
fn is_system(layout: &GoroutineLayout, start: Option<&str>, frames: Option<&[Frame]>) -> bool {
    let Some(start) = start else {
        return false;
    };
    if layout.user_runtime_starts.contains(&start) {
        return false;
    }
    if layout.user_code_runners.contains(&start) {
        return frames.is_some_and(|f| f.iter().all(|f| is_runtime_frame(&f.function)));
    }
    start.starts_with("runtime.")
}
