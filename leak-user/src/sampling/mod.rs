//! Go's heap sampling rate (`runtime.MemProfileRate`) in a traced process:
//! what it is, whether leak must change it, and the one write leak ever makes
//! into a target's memory.
//!
//! Programs that never reference the heap profiler start with sampling off
//! (the linker sets `disableMemoryProfiling`, the runtime then sets
//! `MemProfileRate = 0`). Writing a rate back turns Go's own sampler on. Go
//! ≤1.23 reads the rate only when a P draws its next sample point, which it
//! never does while the rate is 0: write 1 first (every allocation samples and
//! redraws), then the wanted rate a few milliseconds later. Go ≥1.24 notices a
//! new rate by itself.
//!
//! On exit leak puts back what it found ([`restore_decision`]), and a small
//! guard process ([`guard`]) does so if leak dies without doing it.

pub(crate) mod guard;

use std::{io, thread, time::Duration};

use crate::process::memory::MemoryMut;

/// Go's default `MemProfileRate`: one sample per 512 KiB allocated (defined
/// in the runtime table).
pub(crate) use crate::go::table::DEFAULT_MEM_PROFILE_RATE as DEFAULT_RATE;

/// Largest rate leak accepts as a real `MemProfileRate` value (1 GiB).
const MAX_PLAUSIBLE: i64 = 1 << 30;

/// Whether `v` can be a `MemProfileRate`: 0 (profiling off) or a sampling
/// interval of at most 1 GiB. Anything else means the address is wrong, so
/// never write over it.
pub(crate) fn plausible(v: i64) -> bool {
    (0..=MAX_PLAUSIBLE).contains(&v)
}

/// What to do about one process's sampling rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateAction {
    /// Leave it as it is.
    Keep,
    /// Sampling is off: turn it on at this rate.
    Enable(u64),
    /// Sampling is on: change it to the rate the user asked for.
    Change(u64),
    /// Sampling is off and writes are forbidden: nothing can be seen.
    Blind,
    /// The value read is not a plausible rate: the address is wrong, touch
    /// nothing.
    Implausible,
}

/// Decides what to do given the rate read from the process, the rate the
/// user asked for (`--rate`) and `--read-only`.
pub(crate) fn decide(current: i64, requested: Option<u64>, read_only: bool) -> RateAction {
    if !plausible(current) {
        return RateAction::Implausible;
    }
    match (current, requested) {
        (0, _) if read_only => RateAction::Blind,
        (0, r) => RateAction::Enable(r.unwrap_or(DEFAULT_RATE)),
        (_, Some(r)) if r as i64 != current && !read_only => RateAction::Change(r),
        _ => RateAction::Keep,
    }
}

/// Sets `MemProfileRate` at `addr` in `mem` to `rate`, first re-reading it
/// (it must still be `expected`) and, for Go ≤1.23, passing through 1 so each
/// P redraws its next sample point (`after_one` runs once 1 is written).
/// Returns the monotonic times (ns) at which
/// rate 1 started and at which `rate` took over.
pub(crate) fn set_rate(
    mem: &dyn MemoryMut,
    addr: u64,
    expected: i64,
    rate: u64,
    through_one: bool,
    after_one: &dyn Fn(),
) -> io::Result<(Option<u64>, u64)> {
    let now = mem.read_i64(addr)?;
    if now != expected {
        return Err(io::Error::other(format!(
            "MemProfileRate changed under us ({expected} → {now}); left alone"
        )));
    }
    let mut one_at = None;
    if through_one && rate != 1 {
        one_at = Some(monotonic_ns());
        mem.write_i64(addr, 1)?;
        after_one();
        thread::sleep(Duration::from_millis(5));
    }
    mem.write_i64(addr, rate as i64)?;
    Ok((one_at, monotonic_ns()))
}

/// What leak wrote into one process's `MemProfileRate`, to put it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The value leak found before it first wrote (or, if something else
    /// changed the rate between two of leak's writes, the value it set).
    pub original: i64,
    /// The values leak may have left there: its last write, and during a
    /// pass through 1 (Go ≤1.23) that 1 too.
    pub values: Vec<i64>,
}

impl Written {
    /// About to write `rate` over `current` (passing through 1 first if
    /// `through_one`), after `before` (what leak wrote earlier, if anything).
    /// If `current` is still leak's own, the first original stays; if not,
    /// something else set it and that value is the one to put back.
    pub(crate) fn before_write(
        before: Option<&Written>,
        current: i64,
        rate: u64,
        through_one: bool,
    ) -> Self {
        let original = match before {
            Some(w) if w.values.contains(&current) => w.original,
            _ => current,
        };
        let mut values = vec![rate as i64];
        if through_one && rate != 1 {
            values.insert(0, 1);
        }
        Self { original, values }
    }

    /// The write went through: only `rate` can be there now.
    pub(crate) fn completed(&mut self, rate: u64) {
        self.values = vec![rate as i64];
    }
}

/// What to do at exit about a rate leak wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restore {
    /// It still holds what leak wrote: write the original back.
    Write(i64),
    /// It already holds the original: nothing to do.
    AsFound,
    /// Someone else changed it since leak wrote: leave it alone.
    ChangedSince(i64),
}

/// Decides, from the value there now, whether to put back what leak found:
/// only if it still holds a value leak wrote, so a rate someone else set in
/// the meantime is never overwritten. Rate 0 stops sampling at once; a
/// higher rate takes over at each P's next sample, so no pass through 1 is
/// needed on any Go version.
pub(crate) fn restore_decision(current: i64, written: &Written) -> Restore {
    if current == written.original {
        Restore::AsFound
    } else if written.values.contains(&current) {
        Restore::Write(written.original)
    } else {
        Restore::ChangedSince(current)
    }
}

/// Puts back in `mem` what leak found at `addr`, by [`restore_decision`]'s
/// rule: leak's own restore and the guard's are this one function. `None`
/// when the memory can no longer be read (the process exited meanwhile).
pub(crate) fn restore_in(
    mem: &dyn MemoryMut,
    addr: u64,
    written: &Written,
) -> std::io::Result<Option<Restore>> {
    let Ok(current) = mem.read_i64(addr) else {
        return Ok(None);
    };
    let decision = restore_decision(current, written);
    if let Restore::Write(v) = decision {
        mem.write_i64(addr, v)?;
    }
    Ok(Some(decision))
}

/// The one line said about a restore in process `pid` (`note` added, e.g.
/// who did it); `None` when it already held the original.
pub(crate) fn restore_line(
    pid: u32,
    decision: Restore,
    written: &Written,
    note: &str,
) -> Option<String> {
    match decision {
        Restore::Write(v) => Some(format!(
            "leak: pid {pid}: MemProfileRate restored to {v}{note}"
        )),
        Restore::AsFound => None,
        Restore::ChangedSince(now) => {
            let ours = written.values.last().copied().unwrap_or_default();
            Some(format!(
                "leak: pid {pid}: MemProfileRate is {now}, not the {ours} leak wrote: changed by someone else since, left alone{note}"
            ))
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The sampling rate of one process over time, to weight each sample by
/// the rate in force when it was taken.
#[derive(Clone, Debug, Default)]
pub(crate) struct RateHistory {
    /// (monotonic ns from which it applies, rate), in time order.
    changes: Vec<(u64, u64)>,
}

impl RateHistory {
    /// A history that starts with `rate`.
    pub(crate) fn starting_at(rate: u64) -> Self {
        Self {
            changes: vec![(0, rate)],
        }
    }

    /// Records that `rate` applies from `at_ns` on.
    pub(crate) fn change(&mut self, at_ns: u64, rate: u64) {
        self.changes.push((at_ns, rate));
    }

    /// Rate in force at `ns`.
    pub(crate) fn at(&self, ns: u64) -> u64 {
        self.changes
            .iter()
            .rev()
            .find(|(from, _)| *from <= ns)
            .map(|(_, r)| *r)
            .unwrap_or(DEFAULT_RATE)
    }

    /// The latest rate.
    pub(crate) fn current(&self) -> u64 {
        self.changes.last().map(|c| c.1).unwrap_or(DEFAULT_RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::{FakeMemory, Memory};

    #[test]
    fn decisions() {
        assert_eq!(decide(0, None, false), RateAction::Enable(DEFAULT_RATE));
        assert_eq!(decide(0, Some(4096), false), RateAction::Enable(4096));
        assert_eq!(decide(0, None, true), RateAction::Blind);
        assert_eq!(decide(524288, None, false), RateAction::Keep);
        assert_eq!(decide(524288, Some(4096), false), RateAction::Change(4096));
        assert_eq!(decide(4096, Some(4096), false), RateAction::Keep);
        assert_eq!(decide(524288, Some(4096), true), RateAction::Keep);
        assert_eq!(decide(-5, None, false), RateAction::Implausible);
        assert_eq!(
            decide(0x7f00_0000_0000, None, false),
            RateAction::Implausible
        );
    }

    #[test]
    fn plausible_rates() {
        assert!(plausible(0));
        assert!(plausible(1));
        assert!(plausible(512 * 1024));
        assert!(plausible(1 << 30));
        assert!(!plausible(-1));
        assert!(!plausible((1 << 30) + 1));
        assert!(!plausible(0x00c0_0001_2000)); // a heap pointer
    }

    #[test]
    fn history_picks_the_rate_in_force() {
        let mut h = RateHistory::starting_at(0);
        h.change(100, 1);
        h.change(200, 4096);
        assert_eq!(h.at(50), 0);
        assert_eq!(h.at(150), 1);
        assert_eq!(h.at(200), 4096);
        assert_eq!(h.at(10_000), 4096);
        assert_eq!(h.current(), 4096);
    }

    #[test]
    fn restore_only_what_leak_left_there() {
        let w = Written::before_write(None, 0, 4096, false);
        assert_eq!(
            w,
            Written {
                original: 0,
                values: vec![4096]
            }
        );
        assert_eq!(restore_decision(4096, &w), Restore::Write(0));
        assert_eq!(restore_decision(0, &w), Restore::AsFound);
        assert_eq!(restore_decision(8192, &w), Restore::ChangedSince(8192));
        assert_eq!(restore_decision(1, &w), Restore::ChangedSince(1));
        assert_eq!(
            restore_line(123, Restore::Write(0), &w, "").unwrap(),
            "leak: pid 123: MemProfileRate restored to 0"
        );
        assert_eq!(
            restore_line(123, Restore::ChangedSince(8192), &w, "").unwrap(),
            "leak: pid 123: MemProfileRate is 8192, not the 4096 leak wrote: changed by someone else since, left alone"
        );
        assert_eq!(restore_line(123, Restore::AsFound, &w, ""), None);
    }

    #[test]
    fn a_pass_through_one_is_restored_too_until_the_write_completes() {
        let mut w = Written::before_write(None, 524288, 4096, true);
        assert_eq!(w.values, vec![1, 4096]);
        // leak died between writing 1 and the rate: 1 is leak's, put back.
        assert_eq!(restore_decision(1, &w), Restore::Write(524288));
        w.completed(4096);
        assert_eq!(restore_decision(1, &w), Restore::ChangedSince(1));
        assert_eq!(restore_decision(4096, &w), Restore::Write(524288));
        // No pass through 1 when 1 is the rate asked for.
        assert_eq!(Written::before_write(None, 0, 1, true).values, vec![1]);
    }

    #[test]
    fn a_rate_changed_between_two_writes_is_the_one_to_put_back() {
        // Found at 524288 (the initial value, before the runtime's start-up
        // turned sampling off), leak wrote 4096; the runtime then wrote 0.
        let first = Written::before_write(None, 524288, 4096, false);
        let second = Written::before_write(Some(&first), 0, 4096, false);
        assert_eq!(second.original, 0);
        // leak's own value still there: the first original stays.
        let again = Written::before_write(Some(&first), 4096, 8192, false);
        assert_eq!(again.original, 524288);
    }

    #[test]
    fn set_rate_refuses_when_the_value_moved() {
        let mem = FakeMemory::with_i64s(&[(0x1000, 0)]);
        assert!(set_rate(&mem, 0x1000, 5, 4096, false, &|| {}).is_err());
        assert_eq!(mem.read_i64(0x1000).unwrap(), 0, "left alone");
        let called = std::cell::Cell::new(false);
        let (one, _) = set_rate(&mem, 0x1000, 0, 4096, true, &|| called.set(true)).unwrap();
        assert!(called.get(), "after_one runs once 1 is written");
        assert!(one.is_some());
        assert_eq!(mem.read_i64(0x1000).unwrap(), 4096);
    }
}
