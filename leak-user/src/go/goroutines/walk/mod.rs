//! Every goroutine of a running Go program, read through its memory with
//! nothing stopped and nothing written, as raw facts: each `g`'s status,
//! ids, wait, creation site, stack bounds and, for one that is not running,
//! its stack as program counters.
//!
//! The list is `runtime.allgs`, mirrored for lock-free readers by
//! `allglen` and `allgptr`; the runtime stores `allgptr` before `allglen`,
//! so reading `allglen` first never reads past the array. The array only
//! grows (a bigger copy replaces it; the old one stays valid) and `g`s are
//! never freed: a dead one keeps status `_Gdead` and is skipped.
//!
//! A goroutine that is not running resumes from `g.sched`: its stack is
//! `sched.pc`, then the frame-pointer chain from `sched.bp` (`[bp]` is the
//! caller's `bp`, `[bp+8]` its return address), which Go keeps on amd64.
//! The goroutine may run while it is read: the `g` is read again after its
//! stack, and a goroutine whose status, `sched` or stack bounds moved is
//! read again, then counted as [`Unstable::Changed`], never guessed. A
//! running goroutine (or one in a syscall, or whose stack is being moved)
//! has no saved stack: it keeps its ids, start function and creator.
//!
//! What was located is proved as it is read: every `g` pointer is aligned
//! and readable, every status one the runtime has, every live goroutine's
//! stack bounds ordered, and a saved `sp` inside its bounds.

#[cfg(test)]
mod tests;

use crate::{
    go::table::{GStatusValues, GoroutineLayout},
    process::memory::{self, Memory, ReadFailed},
};

/// More goroutines than any program has: a longer list is not `allgs`.
const MAX_GS: u64 = 50_000_000;
/// A goroutine stack larger than this is not one (Go's limit is 1 GB).
const MAX_STACK: u64 = 1 << 30;
/// Frames walked per goroutine at most: deeper chains are cut here.
pub(crate) const MAX_FRAMES: usize = 1024;
/// Reads of one goroutine before it is counted as changing.
const ATTEMPTS: usize = 3;
/// Stack bytes read in one go from the saved `sp` (frames beyond are read
/// one by one).
const STACK_WINDOW: u64 = 64 * 1024;

/// Where the list of goroutines is in one process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Location {
    /// Runtime address of `runtime.allglen`.
    pub allglen: u64,
    /// Runtime address of `runtime.allgptr`.
    pub allgptr: u64,
}

/// What a goroutine is doing, from `g.atomicstatus` (the GC's scan bit
/// aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum State {
    /// Ready to run, waiting for a thread.
    Runnable,
    /// Running on a thread.
    Running,
    /// In a system call.
    Syscall,
    /// Blocked in the runtime (channel, lock, sleep, I/O, …).
    Waiting,
    /// Its stack is being moved.
    CopyStack,
    /// Stopped by a preemption request.
    Preempted,
    /// Found leaked by Go's own goroutine leak profile (1.26 on).
    Leaked,
}

impl State {
    /// The name Go's tracebacks give the status.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Runnable => "runnable",
            State::Running => "running",
            State::Syscall => "syscall",
            State::Waiting => "waiting",
            State::CopyStack => "copystack",
            State::Preempted => "preempted",
            State::Leaked => "leaked",
        }
    }

    /// Whether the goroutine is on a thread (or its stack moving): it has
    /// no saved stack to read.
    pub(crate) fn is_on_cpu(self) -> bool {
        matches!(self, State::Running | State::Syscall | State::CopyStack)
    }
}

/// Why a goroutine has no stack in a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Unstable {
    /// It was on a thread (running, in a syscall, or its stack moving).
    OnCpu,
    /// Its status, saved registers or stack moved under every read.
    Changed,
    /// Its saved `sp` or a frame pointer left its stack bounds, or a return
    /// address is outside the program's code: the stack was changing.
    BrokenChain,
}

/// One goroutine as its `g` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawGoroutine {
    /// Address of its `g`.
    pub addr: u64,
    /// `goid`.
    pub goid: u64,
    /// `parentGoid` where the runtime keeps it.
    pub parent_goid: Option<u64>,
    /// Its status.
    pub state: State,
    /// `waitreason`: an index into `runtime.waitReasonStrings`.
    pub wait_reason: u8,
    /// `waitsince`: `nanotime()` when it blocked, 0 until the GC or the
    /// scheduler sets it.
    pub wait_since: i64,
    /// `gopc`: return address of the `go` statement that created it.
    pub gopc: u64,
    /// `startpc`: entry of its function.
    pub startpc: u64,
    /// `stack.lo`, `stack.hi`.
    pub stack: (u64, u64),
    /// Its stack, leaf first: `sched.pc`, then return addresses (runtime
    /// addresses); why not, if it has none in this read.
    pub pcs: Result<Vec<u64>, Unstable>,
}

impl RawGoroutine {
    /// Bytes its stack takes.
    pub(crate) fn stack_bytes(&self) -> u64 {
        self.stack.1.saturating_sub(self.stack.0)
    }
}

/// Every goroutine of a process at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Live goroutines, in `allgs` order (creation order of their `g`).
    pub goroutines: Vec<RawGoroutine>,
    /// Entries of `allgs` read (`allglen`).
    pub slots: u64,
    /// Of those, dead (or not yet used) `g`s, skipped.
    pub dead: u64,
}

/// Why the goroutines could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// A read of the process's memory failed (it exited, or the address is
    /// not mapped).
    #[error(transparent)]
    Memory(#[from] ReadFailed),
    /// What the addresses point to is not Go's list of goroutines.
    #[error("not Go's list of goroutines: {0}")]
    NotGoroutines(String),
}

/// The fields of a `g` that must hold still while its stack is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    status: u32,
    sp: u64,
    pc: u64,
    bp: u64,
    lo: u64,
    hi: u64,
}

/// Reads every goroutine of the process behind `mem`. `layout` is the
/// runtime table row's; `is_code(pc)` says whether a runtime address is
/// inside the program's functions.
pub(crate) fn read(
    mem: &dyn Memory,
    layout: &GoroutineLayout,
    at: Location,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<Snapshot, ReadError> {
    // allglen first: allgptr then holds at least that many.
    let len = memory::read_u64(mem, at.allglen)?;
    let ptr = memory::read_u64(mem, at.allgptr)?;
    if len == 0 || len > MAX_GS {
        return Err(not_gs(format!("{len} goroutines")));
    }
    if ptr == 0 || !ptr.is_multiple_of(8) {
        return Err(not_gs(format!("the array is at {ptr:#x}")));
    }
    let mut array = vec![0u8; len as usize * 8];
    memory::read_exact(mem, ptr, &mut array)?;
    let mut snapshot = Snapshot {
        slots: len,
        ..Snapshot::default()
    };
    let mut walked = (0usize, 0usize);
    for (i, word) in array.chunks_exact(8).enumerate() {
        let g = u64::from_le_bytes(word.try_into().unwrap());
        if g == 0 || !g.is_multiple_of(8) {
            return Err(not_gs(format!("entry {i} is {g:#x}, not a g")));
        }
        let Some(gr) = read_goroutine(mem, layout, g, is_code)? else {
            snapshot.dead += 1;
            continue;
        };
        if !gr.state.is_on_cpu() {
            walked.0 += 1;
            walked.1 += usize::from(gr.pcs.is_ok());
        }
        snapshot.goroutines.push(gr);
    }
    // One goroutine caught mid-change is normal; none readable among many
    // parked ones is a wrong layout or list.
    if walked.0 >= 3 && walked.1 == 0 {
        return Err(not_gs(format!(
            "none of {} parked goroutines has a stack inside its bounds",
            walked.0
        )));
    }
    Ok(snapshot)
}

/// The goroutine whose `g` is at `addr`, or `None` if that `g` is dead.
fn read_goroutine(
    mem: &dyn Memory,
    layout: &GoroutineLayout,
    addr: u64,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<Option<RawGoroutine>, ReadError> {
    let mut g = vec![0u8; layout.g.size as usize];
    memory::read_exact(mem, addr, &mut g)?;
    let mut again = g.clone();
    for _ in 0..ATTEMPTS {
        let before = header(layout, &g);
        let Some(state) = checked_state(layout, addr, &before)? else {
            return Ok(None);
        };
        if state.is_on_cpu() {
            return Ok(Some(goroutine(
                layout,
                addr,
                &g,
                state,
                Err(Unstable::OnCpu),
            )));
        }
        let pcs = frame_chain(mem, &before, is_code);
        memory::read_exact(mem, addr, &mut again)?;
        if header(layout, &again) == before {
            return Ok(Some(goroutine(layout, addr, &g, state, pcs)));
        }
        std::mem::swap(&mut g, &mut again);
    }
    let Some(state) = checked_state(layout, addr, &header(layout, &g))? else {
        return Ok(None);
    };
    let why = if state.is_on_cpu() {
        Unstable::OnCpu
    } else {
        Unstable::Changed
    };
    Ok(Some(goroutine(layout, addr, &g, state, Err(why))))
}

/// The state of a `g` whose header is `h` (`None`: not a live goroutine),
/// proving it is one: a status the runtime stores, ordered stack bounds.
fn checked_state(
    layout: &GoroutineLayout,
    addr: u64,
    h: &Header,
) -> Result<Option<State>, ReadError> {
    let state = state_of(&layout.status, h.status)
        .map_err(|s| not_gs(format!("g at {addr:#x} has status {s:#x}")))?;
    if state.is_some() && (h.lo >= h.hi || h.hi - h.lo > MAX_STACK) {
        return Err(not_gs(format!(
            "g at {addr:#x} has stack [{:#x}, {:#x})",
            h.lo, h.hi
        )));
    }
    Ok(state)
}

/// The goroutine a read `g` describes.
fn goroutine(
    layout: &GoroutineLayout,
    addr: u64,
    g: &[u8],
    state: State,
    pcs: Result<Vec<u64>, Unstable>,
) -> RawGoroutine {
    let l = layout.g;
    let word = |off: u32| u64::from_le_bytes(g[off as usize..][..8].try_into().unwrap());
    RawGoroutine {
        addr,
        goid: word(l.goid),
        parent_goid: l.parent_goid.map(word),
        state,
        wait_reason: g[l.waitreason as usize],
        wait_since: word(l.waitsince) as i64,
        gopc: word(l.gopc),
        startpc: word(l.startpc),
        stack: (word(l.stack_lo), word(l.stack_hi)),
        pcs,
    }
}

fn header(layout: &GoroutineLayout, g: &[u8]) -> Header {
    let l = layout.g;
    let word = |off: u32| u64::from_le_bytes(g[off as usize..][..8].try_into().unwrap());
    let status = u32::from_le_bytes(g[l.atomicstatus as usize..][..4].try_into().unwrap());
    Header {
        // The GC's scan bit does not move the stack.
        status: status & !layout.status.scan_bit,
        sp: word(l.sched + l.gobuf.sp),
        pc: word(l.sched + l.gobuf.pc),
        bp: word(l.sched + l.gobuf.bp),
        lo: word(l.stack_lo),
        hi: word(l.stack_hi),
    }
}

/// The state a status value means: `Ok(None)` for a `g` that is not a live
/// goroutine (dead, or not yet published), `Err` for a value the runtime
/// never stores.
fn state_of(s: &GStatusValues, status: u32) -> Result<Option<State>, u32> {
    let v = status & !s.scan_bit;
    let state = match v {
        _ if v == s.idle || v == s.dead || Some(v) == s.dead_extra => return Ok(None),
        _ if v == s.runnable => State::Runnable,
        _ if v == s.running => State::Running,
        _ if v == s.syscall => State::Syscall,
        _ if v == s.waiting => State::Waiting,
        _ if v == s.copystack => State::CopyStack,
        _ if v == s.preempted => State::Preempted,
        _ if Some(v) == s.leaked => State::Leaked,
        _ => return Err(status),
    };
    Ok(Some(state))
}

/// The stack of a goroutine that is not running: its saved pc, then the
/// return addresses along the frame-pointer chain from its saved `bp`,
/// which must climb inside its stack.
fn frame_chain(
    mem: &dyn Memory,
    h: &Header,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<Vec<u64>, Unstable> {
    if h.sp < h.lo || h.sp >= h.hi || !is_code(h.pc) {
        return Err(Unstable::BrokenChain);
    }
    // Most stacks are small: read from sp up in one go.
    let window_end = h.hi.min(h.sp.saturating_add(STACK_WINDOW));
    let mut window = vec![0u8; (window_end - h.sp) as usize];
    let window_ok = mem.read_at(h.sp, &mut window).is_ok();
    let pair = |bp: u64| -> Option<(u64, u64)> {
        let mut b = [0u8; 16];
        if window_ok && bp >= h.sp && bp + 16 <= window_end {
            b.copy_from_slice(&window[(bp - h.sp) as usize..][..16]);
        } else {
            mem.read_at(bp, &mut b).ok()?;
        }
        let w = |i: usize| u64::from_le_bytes(b[i * 8..][..8].try_into().unwrap());
        Some((w(0), w(1)))
    };
    let mut pcs = vec![h.pc];
    let mut bp = h.bp;
    while bp != 0 && pcs.len() < MAX_FRAMES {
        let in_stack = bp >= h.sp && bp.checked_add(16).is_some_and(|end| end <= h.hi);
        if !in_stack || !bp.is_multiple_of(8) {
            return Err(Unstable::BrokenChain);
        }
        let (next, ret) = pair(bp).ok_or(Unstable::BrokenChain)?;
        if ret == 0 {
            break;
        }
        if !is_code(ret) || (next != 0 && next <= bp) {
            return Err(Unstable::BrokenChain);
        }
        pcs.push(ret);
        bp = next;
    }
    Ok(pcs)
}

fn not_gs(why: String) -> ReadError {
    ReadError::NotGoroutines(why)
}

/// Reads `count` Go strings (pointer, length) from the array at `addr`: the
/// names of the wait reasons (`runtime.waitReasonStrings`). Entry 0
/// (`waitReasonZero`) is empty and every other one is a short line of
/// text, which proves the array is what was located.
pub(crate) fn read_wait_reasons(
    mem: &dyn Memory,
    addr: u64,
    count: u32,
) -> Result<Vec<String>, ReadError> {
    if count == 0 || count > 256 {
        return Err(not_reasons(format!("{count} entries")));
    }
    let mut array = vec![0u8; count as usize * 16];
    memory::read_exact(mem, addr, &mut array)?;
    let mut names = Vec::with_capacity(count as usize);
    for (i, entry) in array.chunks_exact(16).enumerate() {
        let ptr = u64::from_le_bytes(entry[..8].try_into().unwrap());
        let len = u64::from_le_bytes(entry[8..].try_into().unwrap());
        if (i == 0) != (len == 0) || len > 128 {
            return Err(not_reasons(format!("entry {i} is {len} bytes long")));
        }
        let mut text = vec![0u8; len as usize];
        if len > 0 {
            memory::read_exact(mem, ptr, &mut text)?;
        }
        match String::from_utf8(text) {
            Ok(s) if s.chars().all(|c| c.is_ascii_graphic() || c == ' ') => names.push(s),
            _ => return Err(not_reasons(format!("entry {i} is not text"))),
        }
    }
    Ok(names)
}

fn not_reasons(why: String) -> ReadError {
    ReadError::NotGoroutines(format!("the wait reasons are not names: {why}"))
}
