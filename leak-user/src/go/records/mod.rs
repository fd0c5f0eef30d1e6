//! Go's own heap profile records of a running process: located in its
//! program, read through its memory ([`walk`]), scaled as pprof scales
//! them, and summed per stack. `leak heap` prints them; `leak trace`
//! starts from them (what was held before it attached).

pub(crate) mod walk;

use std::collections::HashMap;

use self::walk::{Location, ReadError, Snapshot};
use super::{error::GoError, table::DEFAULT_MEM_PROFILE_RATE, GoProcess};
use crate::{
    aggregate::Totals,
    frame::Frame,
    process::memory::ReadFailed,
    symbolize::{SymbolSource, Symbolizer},
};

/// What the records are called in messages.
const WHAT: &str = "heap profile";

/// Where one process's records are, ready to be read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapRecords {
    at: Location,
    rate_addr: Option<u64>,
}

/// One read: the records and the rate they are scaled with.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    /// The buckets as `runtime.MemProfile` reports them.
    pub snapshot: Snapshot,
    /// `runtime.MemProfileRate` when read (Go's default if it could not be
    /// located).
    pub rate: i64,
}

impl HeapRecords {
    /// Locates the records of `process` (addresses found once per program).
    pub(crate) fn locate(process: &GoProcess) -> Result<Self, GoError> {
        let program = process.program();
        let vars = program
            .heap_records
            .clone()
            .map_err(|reason| GoError::HeapRecordsNotFound {
                path: program.path.clone(),
                reason,
            })?;
        Ok(Self {
            at: Location {
                buckets: process.runtime_addr(vars.buckets),
                cycle: process.runtime_addr(vars.cycle),
            },
            rate_addr: program.mem_profile_rate.map(|a| process.runtime_addr(a)),
        })
    }

    /// Reads every record now. Fails in one line if the process is gone or
    /// what was located is not the records.
    pub(crate) fn read(&self, process: &GoProcess) -> Result<Read, GoError> {
        let pid = process.pid();
        let rate = match self.rate_addr {
            Some(addr) => process
                .memory()
                .read_i64(addr)
                .map_err(|source| process.read_failure(WHAT, ReadFailed { addr, source }.into()))?,
            None => DEFAULT_MEM_PROFILE_RATE as i64,
        };
        let is_code = |pc: u64| process.is_code(pc);
        let program = process.program();
        let snapshot = walk::read(process.memory(), program.runtime, self.at, &is_code).map_err(
            |e| match e {
                ReadError::Memory { .. } => {
                    process.read_failure(WHAT, GoError::Records { pid, source: e })
                }
                ReadError::NotRecords(reason) => GoError::NotWhatWasLocated {
                    pid,
                    path: program.path.clone(),
                    what: WHAT,
                    reason,
                },
                ReadError::Busy => GoError::Records { pid, source: e },
            },
        )?;
        Ok(Read { snapshot, rate })
    }
}

/// Reads `process`'s records once; fails, saying why, when there are none
/// to read.
pub(crate) fn read_once(process: &GoProcess) -> Result<Read, GoError> {
    let read = HeapRecords::locate(process)?.read(process)?;
    match why_empty(&read) {
        Some(why) => Err(GoError::NoHeapProfile {
            pid: process.pid(),
            why,
        }),
        None => Ok(read),
    }
}

/// Why there is no history to read, if so: sampling is off (the program
/// links no heap profiler: the runtime turned it off at start-up, and the
/// few records are of start-up only), or nothing was sampled yet.
pub(crate) fn why_empty(read: &Read) -> Option<String> {
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
pub(crate) fn bucket_totals(size: u64, counts: &walk::Counts, rate: i64) -> Totals {
    let (alloc_objects, alloc_bytes) = walk::scale(counts.allocs, size, rate);
    let (inuse_objects, inuse_bytes) = walk::scale(counts.inuse_objects(), size, rate);
    Totals {
        outstanding_bytes: inuse_bytes as f64,
        outstanding_objects: inuse_objects as f64,
        allocated_bytes: alloc_bytes as f64,
        allocated_objects: alloc_objects as f64,
    }
}

/// Each bucket's scaled figures, summed per `key` of its stack (its pcs
/// less the load bias).
pub(crate) fn per_stack<K: std::hash::Hash + Eq>(
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
pub(crate) fn stacks<S: SymbolSource>(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::{walk::BucketRecord, walk::Counts, *};
    use crate::go::process::read_failure;

    pub(crate) fn read_of(buckets: &[(u64, &[u64], u64, u64)]) -> Read {
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
    fn a_process_that_exits_mid_read_says_so() {
        // The walk fails where the memory went away…
        let e = GoError::Memory(ReadFailed {
            addr: 0xc000_1000,
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
        // …and the process is gone: that is the one line.
        let gone = read_failure(42, false, WHAT, e);
        assert_eq!(
            gone.to_string(),
            "pid 42 exited while leak read its heap profile"
        );
        let e = GoError::Records {
            pid: 42,
            source: ReadError::NotRecords("x".into()),
        };
        let alive = read_failure(42, true, WHAT, e);
        assert!(
            alive
                .to_string()
                .starts_with("pid 42: cannot read its heap profile"),
            "{alive}"
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
