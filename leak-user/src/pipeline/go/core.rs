//! The Go pipeline's core: decoded records in, numbers kept. Samples and
//! frees go to the aggregate, each under its process (placed on first
//! sight: load bias, memory, the sampling rate in force, its history);
//! GC cycles and starts are counted. Everything it needs of the system
//! comes through [`Host`], so it is tested with fake records and a fake
//! process, with no kernel and no binary.

use std::{collections::BTreeMap, rc::Rc};

use leak_common::ALLOC_HAS_STACK;

use super::{
    buckets::BucketStacks,
    history::ProcessHistory,
    processes::{Process, Processes},
    Options,
};
use crate::{
    aggregate::sampled::Aggregator,
    event::Record,
    go::{program::bias_from_ip, Program},
    process::{self, memory::MemoryMut},
    sampling,
};

/// What the core needs of the processes it has not seen yet.
pub(crate) trait Host {
    /// Start time of process `pid` (clock ticks after boot); `None` when
    /// it is gone.
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// Load bias of the traced binary in `pid`, from its memory map.
    fn load_bias(&self, pid: u32) -> Option<u64>;
    /// The memory of `pid`, opened once.
    fn memory(&self, pid: u32) -> Option<Box<dyn MemoryMut>>;
    /// What `pid` held before leak attached; why not, in one line.
    fn history(&self, pid: u32, agg: &mut Aggregator) -> Result<ProcessHistory, String>;
}

/// The real system: `/proc` and the process's own memory.
pub(crate) struct ProcHost(pub Rc<Program>);

impl Host for ProcHost {
    fn start_time(&self, pid: u32) -> Option<u64> {
        process::state(pid).map(|(_, start)| start)
    }

    fn load_bias(&self, pid: u32) -> Option<u64> {
        self.0.load_bias(pid)
    }

    /// The process's memory, opened for writing too where leak may (the
    /// rate is written through this handle, bound to the program leak
    /// found: never into one the process `exec`s later).
    fn memory(&self, pid: u32) -> Option<Box<dyn MemoryMut>> {
        use process::memory::ProcessMemory;
        ProcessMemory::open_writable(pid)
            .or_else(|_| ProcessMemory::open(pid))
            .ok()
            .map(|m| Box::new(m) as Box<dyn MemoryMut>)
    }

    fn history(&self, pid: u32, agg: &mut Aggregator) -> Result<ProcessHistory, String> {
        ProcessHistory::open(&self.0, pid, agg)
    }
}

/// Link-time addresses the core works with: where the probes sit (a
/// record's instruction pointer less these is its process's load bias) and
/// `runtime.MemProfileRate`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeSites {
    /// The allocation probe.
    pub alloc: u64,
    /// The start probe.
    pub start: u64,
    /// `runtime.MemProfileRate`, if found.
    pub rate: Option<u64>,
}

impl ProbeSites {
    /// The sites of `program`.
    pub(crate) fn of(program: &Program) -> Self {
        Self {
            alloc: program.alloc_probe,
            start: program.start_probe,
            rate: program.mem_profile_rate,
        }
    }
}

/// The process `leak trace -- CMD` started, if that is the trace.
pub(crate) fn launched_pid(options: &Options) -> Option<u32> {
    options.pid.filter(|_| options.launched)
}

/// Records in, numbers kept.
pub(crate) struct Core {
    pub agg: Aggregator,
    pub procs: Processes,
    pub buckets: BucketStacks,
    /// What each process held before leak saw it, from its own records.
    pub history: BTreeMap<u32, ProcessHistory>,
    /// Lines for the user about processes placed, printed once the scan
    /// that placed them has gone through.
    pub notes: Vec<String>,
    /// Processes whose start was seen since the last poll: their sampling
    /// rate is checked then.
    pub started_pids: Vec<u32>,
    /// When the probes were attached, in clock ticks since boot (the unit
    /// of a process's start time); `None` before.
    pub attached_at: Option<u64>,
    /// Samples of processes that could not be placed.
    pub samples_without_process: u64,
    /// Buckets of processes forgotten while records came in (a pid that
    /// now names another process), to be forgotten in the kernel too.
    pub forgotten_buckets: Vec<(u32, u64)>,
    sites: ProbeSites,
    host: Box<dyn Host>,
    launched: Option<u32>,
}

impl Core {
    /// A core with nothing seen yet.
    pub(crate) fn new(sites: ProbeSites, host: Box<dyn Host>, launched: Option<u32>) -> Self {
        Self {
            agg: Aggregator::new(),
            procs: Processes::default(),
            buckets: BucketStacks::default(),
            history: BTreeMap::new(),
            notes: Vec::new(),
            started_pids: Vec::new(),
            attached_at: None,
            samples_without_process: 0,
            forgotten_buckets: Vec::new(),
            sites,
            host,
            launched,
        }
    }

    /// Takes one record. Returns the pid of the program leak launched when
    /// this record is its start (it waits, stopped, for its rate).
    pub(crate) fn handle(&mut self, record: Record) -> Option<u32> {
        match record {
            Record::Alloc(ev) => {
                let seen_bias = (ev.ip != 0).then(|| bias_from_ip(ev.ip, self.sites.alloc));
                let Some(p) = self.place(ev.tgid, seen_bias) else {
                    self.samples_without_process += 1;
                    return None;
                };
                let (bias, rate) = (p.bias, p.rates.at(ev.timestamp_ns));
                let carried = (ev.flags & ALLOC_HAS_STACK != 0)
                    .then(|| &ev.stack[..(ev.frames as usize).min(ev.stack.len())]);
                let stack = self
                    .buckets
                    .stack_of(ev.tgid, ev.bucket, carried, bias, &mut self.agg);
                self.agg.alloc(ev.tgid, ev.addr, ev.size, rate, stack);
            }
            Record::Free(ev) => {
                self.agg.free(ev.tgid, ev.addr);
            }
            Record::GcCycle(ev) => {
                if let Some(p) = self.place(ev.tgid, None) {
                    p.gc_cycles += 1;
                    self.agg.gc_cycle(ev.tgid);
                }
            }
            Record::Start(ev) => {
                // A pid that named another process: that one is gone,
                // before any sample of this one is counted as its.
                if self.reused(ev.tgid) {
                    let keys = self.process_gone(ev.tgid);
                    self.forgotten_buckets.extend(keys);
                    self.procs.replaced(ev.tgid);
                }
                // Placed now, while it runs; its rate is checked at the
                // next poll (a tenth of a second), not the next scan.
                let bias = bias_from_ip(ev.addr, self.sites.start);
                self.place(ev.tgid, Some(bias))?;
                if self.launched == Some(ev.tgid) {
                    return Some(ev.tgid);
                }
                self.started_pids.push(ev.tgid);
            }
            Record::Map(_) | Record::NativeAlloc(_) | Record::NativeFree(_) => {}
        }
        None
    }

    /// Whether `tgid` is known as a process that is not the one running
    /// with that pid now.
    fn reused(&self, tgid: u32) -> bool {
        let Some(known) = self.procs.get(tgid) else {
            return false;
        };
        self.host
            .start_time(tgid)
            .is_some_and(|now| now != known.start_time)
    }

    /// Process `pid` has gone (exited, or its pid names another one now):
    /// kept in the report, but what it held is held at its exit; its
    /// buckets are forgotten (returned, to be forgotten in the kernel).
    pub(crate) fn process_gone(&mut self, pid: u32) -> Vec<(u32, u64)> {
        self.agg.process_exited(pid);
        self.history.remove(&pid);
        self.buckets.forget(pid)
    }

    /// Process `tgid`, placed on first sight: its load bias, its memory,
    /// the sampling rate in force. `seen_bias` is the bias a record's
    /// instruction pointer gives: with it, a process that has already
    /// exited (a short job) is placed all the same, with the rate of the
    /// others, and no sample of it is lost.
    pub(crate) fn place(&mut self, tgid: u32, seen_bias: Option<u64>) -> Option<&mut Process> {
        if !self.procs.contains(tgid) {
            let bias = match seen_bias {
                Some(b) => b,
                None => self.host.load_bias(tgid)?,
            };
            let Some(start_time) = self.host.start_time(tgid) else {
                let gone = Process::new(bias, 0, None, self.procs.rate());
                self.procs.insert(tgid, gone);
                return self.procs.get_mut(tgid);
            };
            let memory = self.host.memory(tgid);
            let rate = match (&memory, self.sites.rate) {
                (Some(m), Some(addr)) => m.read_i64(addr.wrapping_add(bias)).ok(),
                _ => None,
            }
            .unwrap_or(sampling::DEFAULT_RATE as i64);
            self.procs.insert(
                tgid,
                Process::new(bias, start_time, memory, rate.max(0) as u64),
            );
            // Only a process that ran before leak attached has a history
            // (one started since is seen live from its start: its records
            // hold nothing leak has not seen). Read before leak changes the
            // rate: the records are scaled with it.
            let ran_before = self.attached_at.is_none_or(|at| start_time < at);
            if ran_before {
                self.open_history(tgid);
            }
        }
        self.procs.get_mut(tgid)
    }

    fn open_history(&mut self, tgid: u32) {
        match self.host.history(tgid, &mut self.agg) {
            Ok(h) => {
                self.notes.push(format!(
                    "leak: pid {tgid}: history: {} held before leak attached, in {} stacks (Go's own heap profile records, as of its last GC)",
                    crate::units::human_bytes(h.held()),
                    h.part().len()
                ));
                self.history.insert(tgid, h);
            }
            Err(why) => self.notes.push(format!(
                "leak: pid {tgid}: no history: {why}; counting from now"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
