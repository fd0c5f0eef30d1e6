//! The processes running the traced binary: found by scanning, placed (load
//! bias, memory handle, sampling rate in force), told apart when a pid is
//! reused, and kept in the report after they exit. Also the one write leak
//! makes into a target: turning heap sampling on, or to `--rate`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::{
    process::memory::MemoryMut,
    sampling::{self, RateAction, RateHistory},
};

/// Scans in which to re-check a process's sampling rate: one found right
/// after exec may not have run the runtime's start-up yet.
const RATE_CHECKS: u8 = 3;

/// One traced process.
pub struct Process {
    /// Runtime address minus file address of the binary (PIE).
    pub bias: u64,
    /// Start time (clock ticks after boot): with the pid, names the process.
    pub start_time: u64,
    /// Its memory, opened once (`None` if it could not be opened).
    pub memory: Option<Box<dyn MemoryMut>>,
    /// The sampling rate over time.
    pub rates: RateHistory,
    rate_checks_left: u8,
    /// GC cycles seen.
    pub gc_cycles: u64,
    alive: bool,
}

impl Process {
    /// A process first seen now, at `bias`, sampling at `rate`.
    pub fn new(bias: u64, start_time: u64, memory: Option<Box<dyn MemoryMut>>, rate: u64) -> Self {
        Self {
            bias,
            start_time,
            memory,
            rates: RateHistory::starting_at(rate),
            rate_checks_left: RATE_CHECKS,
            gc_cycles: 0,
            alive: true,
        }
    }

    /// Whether it was running at the last scan.
    pub fn alive(&self) -> bool {
        self.alive
    }
}

/// What leak may do to a target's sampling rate.
#[derive(Clone, Copy, Debug)]
pub struct RatePolicy {
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
}

/// Every process seen, by pid.
#[derive(Default)]
pub struct Processes {
    procs: BTreeMap<u32, Process>,
}

/// What a scan changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Processes gone since the last scan (their pid may come back as
    /// another process): forget their objects and buckets.
    pub exited: Vec<u32>,
}

impl Processes {
    /// A known process.
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid)
    }

    /// Whether `pid` is known.
    pub fn contains(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// Adds a process seen for the first time.
    pub fn insert(&mut self, pid: u32, p: Process) {
        self.procs.insert(pid, p);
    }

    /// Takes a scan's list of running processes, `(pid, start time)`: the
    /// rest are marked gone. A pid whose start time changed is a new
    /// process with a reused pid: the old one is reported exited and
    /// removed, so the new one is placed afresh.
    pub fn update(&mut self, running: &[(u32, u64)]) -> ScanResult {
        let mut result = ScanResult::default();
        let now: BTreeMap<u32, u64> = running.iter().copied().collect();
        let mut reused = Vec::new();
        for (pid, p) in self.procs.iter_mut() {
            let was_alive = p.alive;
            match now.get(pid) {
                Some(&start) if start == p.start_time => p.alive = true,
                Some(_) => {
                    if was_alive {
                        result.exited.push(*pid);
                    }
                    reused.push(*pid);
                }
                None => {
                    p.alive = false;
                    if was_alive {
                        result.exited.push(*pid);
                    }
                    p.rate_checks_left = 0;
                    p.memory = None;
                }
            }
        }
        for pid in reused {
            self.procs.remove(&pid);
        }
        result
    }

    /// Whether every process seen has exited (and at least one was seen).
    pub fn all_exited(&self) -> bool {
        !self.procs.is_empty() && self.procs.values().all(|p| !p.alive)
    }

    /// Every pid seen, ascending.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.keys().copied().collect()
    }

    /// GC cycles seen, over all processes.
    pub fn gc_cycles(&self) -> u64 {
        self.procs.values().map(|p| p.gc_cycles).sum()
    }

    /// The highest sampling rate in force (the report's "rate").
    pub fn rate(&self) -> u64 {
        self.procs
            .values()
            .map(|p| p.rates.current())
            .max()
            .unwrap_or(sampling::DEFAULT_RATE)
    }

    /// Makes process `pid` sample its heap, within `policy`: reads the rate
    /// in force and, where the policy allows and asks for it, writes a new
    /// one (and says so). Checked on the first few scans only.
    pub fn check_rate(&mut self, pid: u32, policy: &RatePolicy, binary: &str) -> Result<()> {
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        if p.rate_checks_left == 0 {
            return Ok(());
        }
        let Some(addr) = policy.addr.map(|a| a.wrapping_add(p.bias)) else {
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
        p.rate_checks_left -= 1;
        let action = sampling::decide(current, policy.requested, policy.read_only);
        match action {
            RateAction::Keep => {
                if p.rates.current() != current as u64 {
                    p.rates.change(sampling::monotonic_ns(), current as u64);
                }
            }
            RateAction::Implausible => {
                p.rate_checks_left = 0;
                eprintln!(
                    "leak: pid {pid}: runtime.MemProfileRate reads {current}, not a sampling rate; leaving it alone"
                );
            }
            RateAction::Blind => bail!(
                "pid {pid} runs with Go heap sampling off (runtime.MemProfileRate = 0) and --read-only forbids turning it on: \
                 nothing can be seen. Run without --read-only to let leak set the rate (one integer written), \
                 or import net/http/pprof or runtime/pprof in the program"
            ),
            RateAction::Enable(rate) | RateAction::Change(rate) => {
                let (one_at, rate_at) =
                    sampling::set_rate(mem, addr, current, rate, policy.through_one)
                        .with_context(|| format!("pid {pid}: cannot set runtime.MemProfileRate"))?;
                if let Some(t) = one_at {
                    p.rates.change(t, 1);
                }
                p.rates.change(rate_at, rate);
                if matches!(action, RateAction::Enable(_)) {
                    eprintln!(
                        "leak: pid {pid}: Go heap sampling was off (MemProfileRate=0); turned it on at {rate} bytes (--read-only forbids this)"
                    );
                } else {
                    eprintln!("leak: pid {pid}: MemProfileRate {current} → {rate} (--rate)");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::FakeMemory;

    const RATE_AT: u64 = 0x5000;

    fn process(rate_in_memory: i64, start_time: u64) -> Process {
        let mem = FakeMemory::with_i64s(&[(RATE_AT, rate_in_memory)]);
        Process::new(0, start_time, Some(Box::new(mem)), rate_in_memory as u64)
    }

    fn policy(requested: Option<u64>, read_only: bool) -> RatePolicy {
        RatePolicy {
            addr: Some(RATE_AT),
            requested,
            read_only,
            through_one: true,
        }
    }

    fn rate_in(p: &mut Processes, pid: u32) -> i64 {
        p.get_mut(pid)
            .unwrap()
            .memory
            .as_deref()
            .unwrap()
            .read_i64(RATE_AT)
            .unwrap()
    }

    #[test]
    fn exits_are_reported_once_and_kept_in_the_report() {
        let mut ps = Processes::default();
        ps.insert(10, process(512 * 1024, 100));
        ps.insert(11, process(512 * 1024, 200));
        assert_eq!(ps.update(&[(10, 100), (11, 200)]), ScanResult::default());
        assert!(!ps.all_exited());
        assert_eq!(ps.update(&[(11, 200)]).exited, vec![10]);
        assert_eq!(ps.update(&[(11, 200)]).exited, Vec::<u32>::new());
        assert_eq!(ps.update(&[]).exited, vec![11]);
        assert!(ps.all_exited());
        assert_eq!(
            ps.pids(),
            vec![10, 11],
            "exited processes stay in the report"
        );
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut ps = Processes::default();
        ps.insert(10, process(512 * 1024, 100));
        ps.get_mut(10).unwrap().gc_cycles = 5;
        // Same pid, another start time: the old one exited.
        assert_eq!(ps.update(&[(10, 300)]).exited, vec![10]);
        assert!(!ps.contains(10), "placed afresh on next sight");
        ps.insert(10, process(512 * 1024, 300));
        assert_eq!(ps.gc_cycles(), 0);
        assert_eq!(ps.update(&[(10, 300)]), ScanResult::default());
    }

    #[test]
    fn sampling_off_is_turned_on_and_read_only_refuses() {
        let mut ps = Processes::default();
        ps.insert(10, process(0, 1));
        ps.check_rate(10, &policy(None, false), "/srv/app").unwrap();
        assert_eq!(rate_in(&mut ps, 10), sampling::DEFAULT_RATE as i64);
        assert_eq!(ps.rate(), sampling::DEFAULT_RATE);
        // The samples before the write were taken at rate 0, then 1.
        let rates = &ps.get_mut(10).unwrap().rates;
        assert_eq!(rates.at(0), 0);

        let mut ro = Processes::default();
        ro.insert(11, process(0, 1));
        let e = ro
            .check_rate(11, &policy(None, true), "/srv/app")
            .unwrap_err();
        assert!(
            e.to_string().contains("--read-only forbids turning it on"),
            "{e}"
        );
        assert_eq!(rate_in(&mut ro, 11), 0, "nothing written");
    }

    #[test]
    fn rate_is_changed_only_on_request_and_checked_a_few_times() {
        let mut ps = Processes::default();
        ps.insert(10, process(512 * 1024, 1));
        ps.check_rate(10, &policy(None, false), "/srv/app").unwrap();
        assert_eq!(rate_in(&mut ps, 10), 512 * 1024, "left alone");
        ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
            .unwrap();
        assert_eq!(rate_in(&mut ps, 10), 4096);
        assert_eq!(ps.rate(), 4096);
        // The third check is the last; after it nothing is read or written.
        ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
            .unwrap();
        ps.check_rate(10, &policy(Some(8192), false), "/srv/app")
            .unwrap();
        assert_eq!(rate_in(&mut ps, 10), 4096);
        // An implausible value is never overwritten.
        ps.insert(12, process(-7, 1));
        ps.check_rate(12, &policy(Some(4096), false), "/srv/app")
            .unwrap();
        assert_eq!(rate_in(&mut ps, 12), -7);
    }
}
