//! What a Go process's heap held before leak looked: its runtime's own heap
//! profile records ([`crate::goheap`]), located in the binary, read through
//! the process's memory, scaled with the rate in force and symbolized into
//! stacks. `leak heap` prints them; `leak trace` starts from them.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use super::target::Target;
use crate::{
    aggregate::{sampled::Aggregator, StackId, Totals},
    frame::Frame,
    goheap::{self, Location, ReadError, Snapshot},
    process::{
        self,
        memory::{Memory, ProcessMemory},
    },
    sampling,
    symbolize::Symbolizer,
    target::GoBinary,
};

/// One process's heap profile records, ready to be read.
pub struct Records {
    pid: u32,
    memory: ProcessMemory,
    at: Location,
    bias: u64,
    rate_addr: Option<u64>,
}

/// One read: the records and the rate they are scaled with.
pub struct Read {
    /// The buckets as `runtime.MemProfile` reports them.
    pub snapshot: Snapshot,
    /// `runtime.MemProfileRate` when read (Go's default if it could not be
    /// located).
    pub rate: i64,
}

impl Records {
    /// Locates the records of process `pid`, which runs `target`'s binary.
    pub fn open(target: &Target, pid: u32) -> Result<Self> {
        let vars = target.heap_records.clone().map_err(anyhow::Error::msg)?;
        let bias = target.load_bias(pid).with_context(|| {
            format!(
                "pid {pid}: cannot find {} in its memory map",
                target.path.display()
            )
        })?;
        let memory = ProcessMemory::open(pid).map_err(|e| memory_error(pid, e))?;
        Ok(Self {
            pid,
            memory,
            at: Location {
                buckets: vars.buckets.wrapping_add(bias),
                cycle: vars.cycle.wrapping_add(bias),
            },
            bias,
            rate_addr: target.mem_profile_rate.map(|a| a.wrapping_add(bias)),
        })
    }

    /// Load bias of the binary in the process.
    pub fn bias(&self) -> u64 {
        self.bias
    }

    /// Reads every record now. Fails in one line if the process is gone or
    /// what was located is not the records.
    pub fn read(&self, target: &Target) -> Result<Read> {
        let pid = self.pid;
        let rate = match self.rate_addr {
            Some(addr) => self
                .memory
                .read_i64(addr)
                .map_err(|e| self.gone_or(e.into()))?,
            None => sampling::DEFAULT_RATE as i64,
        };
        let bin: &GoBinary = &target.bin;
        let bias = self.bias;
        let is_code = |pc: u64| {
            bin.pclntab()
                .find_func(pc.wrapping_sub(bias).wrapping_sub(1))
                .is_some()
        };
        let snapshot =
            goheap::read(&self.memory, target.runtime, self.at, &is_code).map_err(|e| match e {
                ReadError::Memory { .. } => self.gone_or(e.into()),
                ReadError::NotRecords(_) => anyhow::Error::new(e).context(format!(
                    "pid {pid}: what leak located in {} is not its heap profile",
                    target.path.display()
                )),
                ReadError::Busy => anyhow::Error::new(e).context(format!("pid {pid}")),
            })?;
        Ok(Read { snapshot, rate })
    }

    /// The error of a failed read: the process exited meanwhile, or `e`.
    fn gone_or(&self, e: anyhow::Error) -> anyhow::Error {
        read_failure(self.pid, process::alive(self.pid), e)
    }
}

/// A read of `pid`'s memory failed with `e`: if the process is gone
/// (`alive` false) that is why, in one line; else `e` with the pid.
fn read_failure(pid: u32, alive: bool, e: anyhow::Error) -> anyhow::Error {
    if alive {
        e.context(format!("pid {pid}: cannot read its heap profile"))
    } else {
        anyhow::anyhow!("pid {pid} exited while its heap profile was read")
    }
}

/// Why a process's memory cannot be opened, in one line.
fn memory_error(pid: u32, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("no process with pid {pid}"),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot read the memory of pid {pid}: permission denied (run as root, or as its user where ptrace is allowed)"
        ),
        _ => anyhow::Error::new(e).context(format!("cannot open the memory of pid {pid}")),
    }
}

/// Why there is no history to read, if so: sampling is off (the program
/// links no heap profiler: the runtime turned it off at start-up, and the
/// few records are of start-up only), or nothing was sampled yet.
pub fn why_empty(read: &Read) -> Option<String> {
    let n = read.snapshot.buckets.len();
    if read.rate == 0 {
        return Some(format!(
            "Go heap sampling is off (MemProfileRate = 0: the program links no heap profiler), so the runtime keeps no history{}",
            if n > 0 {
                format!(" (only {n} from start-up)")
            } else {
                String::new()
            }
        ));
    }
    (n == 0).then(|| "the runtime has not sampled any allocation yet".to_string())
}

/// One bucket's figures, scaled as pprof scales them with `rate`.
pub fn bucket_totals(size: u64, counts: &goheap::Counts, rate: i64) -> Totals {
    let (alloc_objects, alloc_bytes) = goheap::scale(counts.allocs, size, rate);
    let (inuse_objects, inuse_bytes) = goheap::scale(counts.inuse_objects(), size, rate);
    Totals {
        outstanding_bytes: inuse_bytes as f64,
        outstanding_objects: inuse_objects as f64,
        allocated_bytes: alloc_bytes as f64,
        allocated_objects: alloc_objects as f64,
    }
}

/// Each bucket's scaled figures, summed per `key` of its stack (its pcs
/// less the load bias).
fn per_stack<K: std::hash::Hash + Eq>(
    read: &Read,
    bias: u64,
    mut key: impl FnMut(&[u64]) -> K,
) -> HashMap<K, Totals> {
    let mut out: HashMap<K, Totals> = HashMap::new();
    for b in &read.snapshot.buckets {
        let pcs: Vec<u64> = b.stack.iter().map(|pc| pc.wrapping_sub(bias)).collect();
        *out.entry(key(&pcs)).or_default() += bucket_totals(b.size, &b.counts, read.rate);
    }
    out
}

/// The records as stacks: each bucket symbolized, buckets whose stacks read
/// alike summed, most in use first.
pub fn stacks<S: crate::symbolize::SymbolSource>(
    read: &Read,
    bias: u64,
    symbols: &mut Symbolizer<S>,
) -> Vec<(Vec<Frame>, Totals)> {
    let mut out: Vec<(Vec<Frame>, Totals)> =
        per_stack(read, bias, |pcs| symbols.logical_stack(pcs))
            .into_iter()
            .collect();
    out.sort_by(|a, b| b.1.outstanding_bytes.total_cmp(&a.1.outstanding_bytes));
    out
}

/// Fails unless `pid` runs a Go program; returns its executable.
pub fn go_process(pid: u32) -> Result<std::path::PathBuf> {
    if !process::alive(pid) {
        bail!("no process with pid {pid}");
    }
    match super::target::go_executable(pid)? {
        Some(exe) => Ok(exe),
        None => {
            let exe = process::exe(pid)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            bail!(
                "pid {pid} ({exe}) is not a Go program: Go heap profiles exist only in Go programs"
            )
        }
    }
}

/// What one traced process held before leak attached, from its runtime's
/// records: read at first sight, read again after each GC publishes new
/// numbers. The part of a stack leak has not seen live (objects sampled
/// before attach, still in use as of the last GC) is the records' in-use
/// less what the live samples of the same stack hold as of that GC, so a
/// stack has one number: history plus live.
pub struct ProcessHistory {
    records: Records,
    /// The rate the records were first read at. If it changes (leak or
    /// someone else wrote `MemProfileRate`), later reads would scale old
    /// samples with the new rate, as pprof does: the history is kept as
    /// last read instead.
    rate: i64,
    frozen: bool,
    /// Per stack, what the live samples do not account for (outstanding
    /// bytes and objects only).
    part: HashMap<StackId, Totals>,
    /// GC cycles of the process (as leak counts them) at the last read.
    read_at_gc: u64,
    /// GC cycles at the previous call of `refresh`.
    last_seen_gc: u64,
}

impl ProcessHistory {
    /// Reads the history of process `pid`; `Err` says in one line why
    /// there is none.
    pub fn open(target: &Target, pid: u32, agg: &mut Aggregator) -> Result<Self, String> {
        let records = Records::open(target, pid).map_err(|e| format!("{e:#}"))?;
        let read = records.read(target).map_err(|e| format!("{e:#}"))?;
        if let Some(why) = why_empty(&read) {
            return Err(why);
        }
        let mut h = Self {
            records,
            rate: read.rate,
            frozen: false,
            part: HashMap::new(),
            read_at_gc: 0,
            last_seen_gc: 0,
        };
        h.take(&read, &HashMap::new(), agg);
        Ok(h)
    }

    /// Reads the records again if the process has finished a GC since the
    /// last read and its rate is the one they were first scaled with. The
    /// runtime publishes a cycle's frees only once its sweep is done, while
    /// leak sees each free as it happens: unless `now`, the read waits until
    /// the GC count has held still for one call (a second), so both views
    /// are of the same finished cycle.
    pub fn refresh(
        &mut self,
        target: &Target,
        rate_now: u64,
        gc_cycles: u64,
        now: bool,
        agg: &mut Aggregator,
    ) {
        let settled = now || gc_cycles == self.last_seen_gc;
        self.last_seen_gc = gc_cycles;
        if self.frozen || gc_cycles == self.read_at_gc || !settled {
            return;
        }
        if rate_now as i64 != self.rate {
            self.frozen = true;
            return;
        }
        match self.records.read(target) {
            Ok(read) if read.rate == self.rate => {
                let seen = agg.held_at_last_gc_of(self.records.pid);
                self.take(&read, &seen, agg);
                self.read_at_gc = gc_cycles;
            }
            // Gone, or the rate moved: keep what was read.
            _ => self.frozen = true,
        }
    }

    fn take(&mut self, read: &Read, seen: &HashMap<StackId, (f64, f64)>, agg: &mut Aggregator) {
        self.part = unseen_part(read, self.records.bias(), seen, agg);
    }

    /// Per stack, what the history adds to the live samples.
    pub fn part(&self) -> &HashMap<StackId, Totals> {
        &self.part
    }

    /// Bytes the history adds, over all stacks.
    pub fn held(&self) -> f64 {
        self.part.values().map(|t| t.outstanding_bytes).sum()
    }
}

/// Per stack, what `read`'s records hold (pcs less `bias`, interned in
/// `agg`) less what leak's live samples hold as of the same GC (`seen`):
/// the objects sampled before leak attached that are still in use.
pub fn unseen_part(
    read: &Read,
    bias: u64,
    seen: &HashMap<StackId, (f64, f64)>,
    agg: &mut Aggregator,
) -> HashMap<StackId, Totals> {
    // Outstanding only: what was allocated is counted since attach.
    let mut part: HashMap<StackId, Totals> = per_stack(read, bias, |pcs| agg.intern(pcs))
        .into_iter()
        .map(|(id, t)| (id, t.outstanding_only()))
        .collect();
    for (id, (bytes, objects)) in seen {
        if let Some(t) = part.get_mut(id) {
            t.sub_outstanding(*bytes, *objects);
        }
    }
    part.retain(|_, t| t.outstanding_bytes > 0.0);
    part
}

/// `live` (stack totals from the samples) with each process's history
/// added: stacks only the history knows are appended.
pub fn with_history<'a>(
    live: Vec<(StackId, Totals)>,
    histories: impl Iterator<Item = &'a ProcessHistory>,
) -> Vec<(StackId, Totals)> {
    with_parts(live, histories.map(ProcessHistory::part))
}

/// `live` with each of `parts` added, stack by stack.
fn with_parts<'a>(
    mut live: Vec<(StackId, Totals)>,
    parts: impl Iterator<Item = &'a HashMap<StackId, Totals>>,
) -> Vec<(StackId, Totals)> {
    let mut extra: HashMap<StackId, Totals> = HashMap::new();
    for part in parts {
        for (id, t) in part {
            *extra.entry(*id).or_default() += *t;
        }
    }
    for (id, t) in live.iter_mut() {
        if let Some(h) = extra.remove(id) {
            t.outstanding_bytes += h.outstanding_bytes;
            t.outstanding_objects += h.outstanding_objects;
        }
    }
    live.extend(extra);
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goheap::{BucketRecord, Counts};

    fn read_of(buckets: &[(u64, &[u64], u64, u64)]) -> Read {
        Read {
            snapshot: Snapshot {
                buckets: buckets
                    .iter()
                    .map(|&(size, stack, allocs, frees)| BucketRecord {
                        addr: 0,
                        size,
                        stack: stack.to_vec(),
                        counts: Counts {
                            allocs,
                            frees,
                            alloc_bytes: allocs * size,
                            free_bytes: frees * size,
                        },
                    })
                    .collect(),
                gc_cycles: 3,
                before_first_gc: false,
            },
            rate: 1,
        }
    }

    #[test]
    fn history_is_what_the_live_samples_do_not_account_for() {
        let mut agg = Aggregator::new();
        // Two sizes of one stack (PIE bias 0x1000), and a stack all freed.
        let read = read_of(&[
            (10_000, &[0x1100, 0x1200], 5, 1),
            (20_000, &[0x1100, 0x1200], 1, 0),
            (64, &[0x1300], 10, 10),
        ]);
        let stack = agg.intern(&[0x100, 0x200]);
        let none = HashMap::new();
        let part = unseen_part(&read, 0x1000, &none, &mut agg);
        assert_eq!(part.len(), 1, "the freed stack adds nothing");
        assert_eq!(part[&stack].outstanding_bytes, 60_000.0);
        assert_eq!(part[&stack].outstanding_objects, 5.0);
        assert_eq!(
            part[&stack].allocated_bytes, 0.0,
            "allocated counts since attach"
        );
        // Leak saw 2 of those objects live: they are not history.
        let seen = HashMap::from([(stack, (20_000.0, 2.0))]);
        let part = unseen_part(&read, 0x1000, &seen, &mut agg);
        assert_eq!(part[&stack].outstanding_bytes, 40_000.0);
        // More seen than recorded (frees not yet published): never below 0.
        let seen = HashMap::from([(stack, (90_000.0, 9.0))]);
        assert!(unseen_part(&read, 0x1000, &seen, &mut agg).is_empty());
    }

    #[test]
    fn one_stack_one_number() {
        let t = |held: f64, allocated: f64| Totals {
            outstanding_bytes: held,
            outstanding_objects: held / 100.0,
            allocated_bytes: allocated,
            allocated_objects: allocated / 100.0,
        };
        let live = vec![(StackId(0), t(1000.0, 5000.0)), (StackId(1), t(0.0, 100.0))];
        let extra: HashMap<StackId, Totals> =
            HashMap::from([(StackId(0), t(20_000.0, 0.0)), (StackId(7), t(300.0, 0.0))]);
        let mut out = with_parts(live, [&extra].into_iter());
        out.sort_by_key(|(id, _)| *id);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].1.outstanding_bytes, 21_000.0);
        assert_eq!(out[0].1.allocated_bytes, 5000.0);
        assert_eq!(out[1].1.outstanding_bytes, 0.0);
        assert_eq!((out[2].0, out[2].1.outstanding_bytes), (StackId(7), 300.0));
    }

    #[test]
    fn a_process_that_exits_mid_read_says_so() {
        // The walk fails where the memory went away…
        let e = goheap::ReadError::Memory {
            addr: 0xc000_1000,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        };
        // …and the process is gone: that is the one line.
        let gone = read_failure(42, false, e.into());
        assert_eq!(
            format!("{gone:#}"),
            "pid 42 exited while its heap profile was read"
        );
        let e = goheap::ReadError::NotRecords("x".into());
        let alive = read_failure(42, true, e.into());
        assert!(
            format!("{alive:#}").starts_with("pid 42: cannot read its heap profile"),
            "{alive:#}"
        );
    }

    #[test]
    fn no_history_says_why() {
        let mut r = read_of(&[]);
        r.rate = 0;
        assert!(why_empty(&r).unwrap().contains("sampling is off"));
        r.rate = 512 * 1024;
        assert!(why_empty(&r)
            .unwrap()
            .contains("not sampled any allocation yet"));
        let mut r = read_of(&[(8, &[0x1], 1, 0)]);
        assert!(why_empty(&r).is_none());
        r.rate = 0;
        assert!(why_empty(&r).unwrap().contains("only 1 from start-up"));
    }
}
