//! The processes running the traced binary: found by scanning, placed (load
//! bias, memory handle, sampling rate in force), told apart when a pid is
//! reused, and kept in the report after they exit. Also the one write leak
//! makes into a target: turning heap sampling on, or to `--rate`, and
//! putting back at exit what it found.

use std::{collections::BTreeMap, io::Write};

use crate::error::{refuse, Error, Result};

use crate::{
    process::memory::MemoryMut,
    sampling::{
        self,
        guard::{Entry, Guard, Message},
        RateAction, RateHistory, Restore, Written,
    },
};

/// Scans in which to re-check a process's sampling rate: one found right
/// after exec may not have run the runtime's start-up yet.
const RATE_CHECKS: u8 = 3;

/// One traced process.
pub(crate) struct Process {
    /// Runtime address minus file address of the binary (PIE).
    pub bias: u64,
    /// Start time (clock ticks after boot): with the pid, names the process.
    pub start_time: u64,
    /// Its memory, opened once (`None` if it could not be opened).
    pub memory: Option<Box<dyn MemoryMut>>,
    /// The sampling rate over time.
    pub rates: RateHistory,
    rate_checks_left: u8,
    /// Whether the rate is read at each scan (not when its address is
    /// unknown or reads as no rate at all).
    rate_followed: bool,
    /// GC cycles seen.
    pub gc_cycles: u64,
    /// What leak wrote into its `MemProfileRate`, to put back at exit.
    pub written: Option<Entry>,
    alive: bool,
}

impl Process {
    /// A process first seen now, at `bias`, sampling at `rate`.
    pub(crate) fn new(
        bias: u64,
        start_time: u64,
        memory: Option<Box<dyn MemoryMut>>,
        rate: u64,
    ) -> Self {
        Self {
            bias,
            start_time,
            memory,
            rates: RateHistory::starting_at(rate),
            rate_checks_left: RATE_CHECKS,
            rate_followed: true,
            gc_cycles: 0,
            written: None,
            alive: true,
        }
    }
}

/// What leak may do to a target's sampling rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RatePolicy {
    /// Link-time address of `runtime.MemProfileRate` (bias added per
    /// process), if found.
    pub addr: Option<u64>,
    /// `--rate`.
    pub requested: Option<u64>,
    /// `--read-only`.
    pub read_only: bool,
    /// Write 1 before a new rate (Go ≤1.23: each P redraws its next sample
    /// point only then).
    pub through_one: bool,
    /// `--keep-rate`: what leak writes stays after it exits.
    pub keep: bool,
    /// A process stopped at its start (`leak trace -- CMD`) to continue
    /// once 1 is written: Go ≤1.23 redraws its sample points only on an
    /// allocation at rate 1, so it must run between the two writes.
    pub resume_after_one: Option<u32>,
}

/// Every process seen, by pid.
#[derive(Default)]
pub(crate) struct Processes {
    procs: BTreeMap<u32, Process>,
    /// Told of every write before it is made, to undo it if leak dies.
    guard: Option<Box<dyn Guard>>,
}

/// What a scan changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanResult {
    /// Processes gone since the last scan (their pid may come back as
    /// another process): forget their objects and buckets.
    pub exited: Vec<u32>,
}

impl Processes {
    /// From now on, tells `guard` of every rate write before making it.
    pub(crate) fn guard_with(&mut self, guard: Box<dyn Guard>) {
        self.guard = Some(guard);
    }

    /// A known process.
    pub(crate) fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid)
    }

    /// Forgets process `pid` at once: its pid names another process now
    /// (whose start was just seen).
    pub(crate) fn replaced(&mut self, pid: u32) {
        if let Some(mut p) = self.procs.remove(&pid) {
            if p.written.take().is_some() {
                if let Some(g) = self.guard.as_mut() {
                    g.send(&Message::Forget(pid));
                }
            }
        }
    }

    /// The process known as `pid`.
    pub(crate) fn get(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    /// Whether `pid` is known.
    pub(crate) fn contains(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// Adds a process seen for the first time.
    pub(crate) fn insert(&mut self, pid: u32, p: Process) {
        self.procs.insert(pid, p);
    }

    /// Takes a scan's list of running processes, `(pid, start time)`: the
    /// rest are marked gone. A pid whose start time changed is a new
    /// process with a reused pid: the old one is reported exited and
    /// removed, so the new one is placed afresh.
    pub(crate) fn update(&mut self, running: &[(u32, u64)]) -> ScanResult {
        let mut result = ScanResult::default();
        let now: BTreeMap<u32, u64> = running.iter().copied().collect();
        let mut reused = Vec::new();
        for (pid, p) in self.procs.iter_mut() {
            let was_alive = p.alive;
            let gone = match now.get(pid) {
                Some(&start) if start == p.start_time => {
                    p.alive = true;
                    false
                }
                Some(_) => {
                    if was_alive {
                        result.exited.push(*pid);
                    }
                    reused.push(*pid);
                    true
                }
                None => {
                    p.alive = false;
                    if was_alive {
                        result.exited.push(*pid);
                    }
                    p.rate_checks_left = 0;
                    p.memory = None;
                    true
                }
            };
            // Nothing to put back in a process that is gone: the guard
            // forgets it too, so its state stays one line per live process.
            if gone && p.written.take().is_some() {
                if let Some(g) = self.guard.as_mut() {
                    g.send(&Message::Forget(*pid));
                }
            }
        }
        for pid in reused {
            self.procs.remove(&pid);
        }
        result
    }

    /// Whether every process seen has exited (and at least one was seen).
    pub(crate) fn all_exited(&self) -> bool {
        !self.procs.is_empty() && self.procs.values().all(|p| !p.alive)
    }

    /// The processes running at the last scan, ascending.
    pub(crate) fn live_pids(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, p)| p.alive)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Every pid seen, ascending.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    /// GC cycles seen, over all processes.
    pub(crate) fn gc_cycles(&self) -> u64 {
        self.procs.values().map(|p| p.gc_cycles).sum()
    }

    /// The highest sampling rate in force (the report's "rate").
    pub(crate) fn rate(&self) -> u64 {
        self.procs
            .values()
            .map(|p| p.rates.current())
            .max()
            .unwrap_or(sampling::DEFAULT_RATE)
    }

    /// Makes process `pid` sample its heap, within `policy`: reads the rate
    /// in force and, where the policy allows and asks for it, writes a new
    /// one (and says so). Written on the first few scans only; followed at
    /// every scan after.
    pub(crate) fn check_rate(&mut self, pid: u32, policy: &RatePolicy, binary: &str) -> Result<()> {
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        if p.rate_checks_left == 0 && !p.rate_followed {
            return Ok(());
        }
        let Some(addr) = policy.addr.map(|a| a.wrapping_add(p.bias)) else {
            p.rate_followed = false;
            p.rate_checks_left = 0;
            eprintln!(
                "leak: cannot find runtime.MemProfileRate in {binary}: assuming Go's default sampling rate"
            );
            return Ok(());
        };
        let Some(mem) = p.memory.as_deref() else {
            return Ok(()); // gone meanwhile
        };
        let Ok(current) = mem.read_i64(addr) else {
            return Ok(()); // gone meanwhile
        };
        if p.rate_checks_left == 0 {
            // No more writes, but the rate is still followed: another tool
            // (or another leak restoring what it found) may change it, and
            // each sample is weighted with the rate in force.
            if sampling::plausible(current) && p.rates.current() != current as u64 {
                p.rates.change(sampling::monotonic_ns(), current as u64);
            }
            return Ok(());
        }
        p.rate_checks_left -= 1;
        let action = sampling::decide(current, policy.requested, policy.read_only);
        match action {
            RateAction::Keep => {
                if p.rates.current() != current as u64 {
                    p.rates.change(sampling::monotonic_ns(), current as u64);
                }
            }
            RateAction::Implausible => {
                p.rate_followed = false;
                p.rate_checks_left = 0;
                eprintln!(
                    "leak: pid {pid}: runtime.MemProfileRate reads {current}, not a sampling rate; leaving it alone"
                );
            }
            RateAction::Blind => refuse!(
                "pid {pid} runs with Go heap sampling off (runtime.MemProfileRate = 0) and --read-only forbids turning it on: \
                 nothing can be seen. Run without --read-only to let leak set the rate (one integer written), \
                 or import net/http/pprof or runtime/pprof in the program"
            ),
            RateAction::Enable(rate) | RateAction::Change(rate) => {
                let target = RateTarget {
                    pid,
                    addr,
                    current,
                    rate,
                };
                if write_rate(p, &mut self.guard, target, policy)? {
                    say_rate_written(pid, current, rate, &action, policy.keep);
                }
            }
        }
        Ok(())
    }

    /// Puts back the rate leak found in each process it wrote to that still
    /// runs (`start_of` gives a live pid's start time: the same pid and
    /// start time is the same process), unless someone else changed it
    /// since; one line for each process where something was done or left.
    /// Then tells the guard that all is settled.
    pub(crate) fn restore_rates(&mut self, start_of: impl Fn(u32) -> Option<u64>) {
        for (pid, p) in self.procs.iter_mut() {
            let Some(entry) = p.written.take() else {
                continue;
            };
            let line = match restore_one(p, &entry, &start_of) {
                Ok(Some(decision)) => sampling::restore_line(*pid, decision, &entry.written, ""),
                Ok(None) => None, // gone: nothing to put back
                Err(e) => Some(format!(
                    "leak: pid {pid}: cannot restore MemProfileRate to {}: {e}",
                    entry.written.original
                )),
            };
            // Not eprintln!, which panics if stderr is gone: the other
            // processes still need their rate back.
            if let Some(line) = line {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            if let Some(g) = self.guard.as_mut() {
                g.send(&Message::Forget(*pid));
            }
        }
        if let Some(mut g) = self.guard.take() {
            g.send(&Message::Done);
        }
    }
}

/// One rate write: which process, where, what it holds, what to write.
#[derive(Clone, Copy)]
struct RateTarget {
    pid: u32,
    addr: u64,
    current: i64,
    rate: u64,
}

/// Writes `t.rate` into `p`'s `MemProfileRate`, telling `guard` first what
/// is about to be written (and again once a write through 1 is complete).
/// `Ok(false)`: the value moved between leak's read and its write (a Go
/// 1.19 process still in start-up sets its rate in `runtime.init`; or
/// another tool): nothing was written, the guard is told so, and the next
/// scan decides again.
fn write_rate(
    p: &mut Process,
    guard: &mut Option<Box<dyn Guard>>,
    t: RateTarget,
    policy: &RatePolicy,
) -> Result<bool> {
    let Some(mem) = p.memory.as_deref() else {
        return Ok(false);
    };
    let written = Written::before_write(
        p.written.as_ref().map(|e| &e.written),
        t.current,
        t.rate,
        policy.through_one,
    );
    let mut entry = Entry {
        pid: t.pid,
        start_time: p.start_time,
        addr: t.addr,
        written,
    };
    let tell = |guard: &mut Option<Box<dyn Guard>>, m: Message| {
        if let Some(g) = guard.as_mut() {
            g.send(&m);
        }
    };
    tell(guard, Message::Set(entry.clone()));
    let previous = p.written.replace(entry.clone());
    let set = sampling::set_rate(mem, t.addr, t.current, t.rate, policy.through_one, &|| {
        if let Some(pid) = policy.resume_after_one {
            crate::process::resume(pid);
        }
    });
    let (one_at, rate_at) = match set {
        Ok(times) => times,
        Err(e) => {
            let moved = mem
                .read_i64(t.addr)
                .is_ok_and(|now| now != t.current && !entry.written.values.contains(&now));
            if !moved {
                return Err(Error::Io {
                    what: format!("pid {}: cannot set runtime.MemProfileRate", t.pid),
                    source: e,
                });
            }
            match &previous {
                Some(before) => tell(guard, Message::Set(before.clone())),
                None => tell(guard, Message::Forget(t.pid)),
            }
            p.written = previous;
            p.rate_checks_left += 1;
            return Ok(false);
        }
    };
    if entry.written.values.len() > 1 {
        entry.written.completed(t.rate);
        tell(guard, Message::Set(entry.clone()));
        p.written = Some(entry);
    }
    if let Some(at) = one_at {
        p.rates.change(at, 1);
    }
    p.rates.change(rate_at, t.rate);
    Ok(true)
}

/// The one line that says leak changed a process's rate, and until when.
fn say_rate_written(pid: u32, current: i64, rate: u64, action: &RateAction, keep: bool) {
    let (until, hint) = match keep {
        false => (" until leak exits", " (--read-only forbids this)"),
        true => (", to stay after leak exits (--keep-rate)", ""),
    };
    if matches!(action, RateAction::Enable(_)) {
        eprintln!(
            "leak: pid {pid}: Go heap sampling was off (MemProfileRate=0); turned it on at {rate} bytes{until}{hint}"
        );
    } else {
        eprintln!("leak: pid {pid}: MemProfileRate {current} → {rate} (--rate){until}");
    }
}

/// Restores `entry` in `p` if it is still the process leak wrote to; `None`
/// if it is gone.
fn restore_one(
    p: &Process,
    entry: &Entry,
    start_of: &impl Fn(u32) -> Option<u64>,
) -> std::io::Result<Option<Restore>> {
    if start_of(entry.pid) != Some(entry.start_time) {
        return Ok(None);
    }
    match p.memory.as_deref() {
        Some(mem) => sampling::restore_in(mem, entry.addr, &entry.written),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
