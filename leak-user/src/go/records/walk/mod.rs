//! Go's own heap profile, read from outside: the records the runtime has
//! kept since start-up (one `bucket` per stack and object size, never
//! freed), read through `/proc/PID/mem` with nothing written and nothing
//! stopped, and counted the way `runtime.MemProfile` counts them, so the
//! numbers are what `/debug/pprof/heap` would serve: "as of the last GC".
//!
//! The walk starts at `runtime.mbuckets` and follows `allnext`. Each bucket
//! must prove the list is what it seems (type memProfile, a stack no deeper
//! than the runtime allows, every pc inside the program's code), so an
//! address found by disassembly is never trusted unproved. The runtime
//! updates the records while they are read (it takes locks leak cannot
//! take): a read that overlaps a GC's flush (the cycle counter moved) is
//! read again.
//!
//! [`scale`] unsamples a record exactly as pprof's `scaleHeapSample` does.

#[cfg(test)]
mod tests;

use crate::{
    aggregate::sample_weight,
    go::table::RuntimeProbes,
    process::memory::{self, Memory, ReadFailed},
};

/// `bucketType` of heap buckets (`memProfile`, mprof.go).
const MEM_PROFILE: u64 = 1;
/// More buckets than any program has: a list this long loops.
const MAX_BUCKETS: usize = 50_000_000;
/// Reads of the whole list before giving up on a quiet moment.
const ATTEMPTS: usize = 4;
/// Pcs read with a bucket's header in one go (deeper stacks take a second
/// read).
const PCS_AHEAD: usize = 64;

/// Counts of one record, or of one of its cycles (`memRecordCycle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Objects allocated.
    pub allocs: u64,
    /// Objects freed.
    pub frees: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Bytes freed.
    pub free_bytes: u64,
}

impl Counts {
    /// Adds `o`, saturating: counts read from a damaged record may be
    /// anything, and must not overflow.
    fn add(&mut self, o: &Counts) {
        self.allocs = self.allocs.saturating_add(o.allocs);
        self.frees = self.frees.saturating_add(o.frees);
        self.alloc_bytes = self.alloc_bytes.saturating_add(o.alloc_bytes);
        self.free_bytes = self.free_bytes.saturating_add(o.free_bytes);
    }

    fn is_empty(&self) -> bool {
        self.allocs == 0 && self.frees == 0
    }

    /// Objects still in use.
    pub(crate) fn inuse_objects(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }

    /// Bytes still in use.
    #[cfg(test)]
    pub(crate) fn inuse_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.free_bytes)
    }
}

/// One heap bucket, as `runtime.MemProfile` would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BucketRecord {
    /// The bucket's address in the process (the uprobes name buckets by it).
    pub addr: u64,
    /// Object size the bucket counts.
    pub size: u64,
    /// The stack, Go's logical pcs (return addresses), as in the process.
    pub stack: Vec<u64>,
    /// Sampled objects and bytes, as of the last GC.
    pub counts: Counts,
}

/// Every heap bucket of a process at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Buckets, newest first (the runtime's list order).
    pub buckets: Vec<BucketRecord>,
    /// GC cycles the profile has seen (`mProfCycle`, wraps at 3·2²⁵).
    pub gc_cycles: u32,
    /// No GC has published anything yet: every cycle was added, as
    /// `MemProfile` does then (the numbers include garbage).
    pub before_first_gc: bool,
}

/// Where the records are in one process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Location {
    /// Runtime address of `runtime.mbuckets`.
    pub buckets: u64,
    /// Runtime address of `runtime.mProfCycle`.
    pub cycle: u64,
}

/// Why the records could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// A read of the process's memory failed (it exited, or the address is
    /// not mapped).
    #[error(transparent)]
    Memory(#[from] ReadFailed),
    /// What the address points to is not a list of heap buckets.
    #[error("not Go's heap profile records: {0}")]
    NotRecords(String),
    /// Every read overlapped a GC's update of the records.
    #[error("the records kept changing under {ATTEMPTS} reads")]
    Busy,
}

/// Reads every heap bucket of the process behind `mem`. `row` gives the
/// layouts; `is_code(pc)` says whether a runtime address is inside the
/// program's functions.
pub(crate) fn read(
    mem: &dyn Memory,
    row: &RuntimeProbes,
    at: Location,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<Snapshot, ReadError> {
    for _ in 0..ATTEMPTS {
        let before = memory::read_u32(mem, at.cycle)?;
        let raw = walk(mem, row, at.buckets, is_code)?;
        let after = memory::read_u32(mem, at.cycle)?;
        if before == after {
            return Ok(as_memprofile(raw, before));
        }
    }
    Err(ReadError::Busy)
}

/// A bucket as it is in memory: `active` then `future[0..3]`.
struct RawBucket {
    addr: u64,
    size: u64,
    stack: Vec<u64>,
    cycles: [Counts; 4],
}

/// Counts each bucket as `runtime.MemProfile` does, given the cycle word
/// (`cycle << 1 | flushed`): `active` plus `future[cycle % 3]` (the slot it
/// flushes first; adding an already flushed, zero slot changes nothing);
/// if that leaves every bucket empty (no GC yet), all three future slots.
fn as_memprofile(raw: Vec<RawBucket>, cycle_word: u32) -> Snapshot {
    let cycle = cycle_word >> 1;
    let index = 1 + (cycle % 3) as usize;
    let mut buckets: Vec<BucketRecord> = raw
        .iter()
        .map(|b| {
            let mut counts = b.cycles[0];
            counts.add(&b.cycles[index]);
            BucketRecord {
                addr: b.addr,
                size: b.size,
                stack: b.stack.clone(),
                counts,
            }
        })
        .collect();
    let before_first_gc = buckets.iter().all(|b| b.counts.is_empty());
    if before_first_gc {
        for (out, b) in buckets.iter_mut().zip(&raw) {
            let mut counts = b.cycles[0];
            for c in &b.cycles[1..] {
                counts.add(c);
            }
            out.counts = counts;
        }
    }
    Snapshot {
        buckets,
        gc_cycles: cycle,
        before_first_gc,
    }
}

fn walk(
    mem: &dyn Memory,
    row: &RuntimeProbes,
    head: u64,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<Vec<RawBucket>, ReadError> {
    let mut out = Vec::new();
    // The runtime only prepends to the list and never frees a bucket, so
    // an address seen twice is a loop: not Go's list.
    let mut seen = std::collections::HashSet::new();
    let mut b = memory::read_u64(mem, head)?;
    while b != 0 {
        if out.len() >= MAX_BUCKETS || !seen.insert(b) {
            return Err(ReadError::NotRecords(format!(
                "the list loops (bucket at {b:#x} again after {} buckets)",
                out.len()
            )));
        }
        let (bucket, next) = read_bucket(mem, row, b, is_code)?;
        out.push(bucket);
        b = next;
    }
    Ok(out)
}

/// One bucket at `addr` and the next one's address, checked.
fn read_bucket(
    mem: &dyn Memory,
    row: &RuntimeProbes,
    addr: u64,
    is_code: &dyn Fn(u64) -> bool,
) -> Result<(RawBucket, u64), ReadError> {
    let l = row.records.bucket;
    let r = row.records.mem_record;
    let header = l.stack as usize;
    let record = r.size() as usize;
    // Header, pcs and record in one read when the stack is not deep; the
    // read may run past the bucket (buckets are packed in larger blocks),
    // and is redone exactly if that is not mapped.
    let mut buf = vec![0u8; header + PCS_AHEAD * 8 + record];
    if mem.read_at(addr, &mut buf).is_err() {
        buf.truncate(header);
        memory::read_exact(mem, addr, &mut buf)?;
    }
    let word = |buf: &[u8], off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
    let typ = word(&buf, l.typ as usize);
    if typ != MEM_PROFILE {
        return Err(ReadError::NotRecords(format!(
            "bucket at {addr:#x} has type {typ}, not memProfile"
        )));
    }
    let nstk = word(&buf, l.nstk as usize);
    if nstk == 0 || nstk > u64::from(row.records.max_profile_depth) {
        return Err(ReadError::NotRecords(format!(
            "bucket at {addr:#x} has {nstk} frames (at most {})",
            row.records.max_profile_depth
        )));
    }
    let nstk = nstk as usize;
    let need = header + nstk * 8 + record;
    if buf.len() < need {
        buf.resize(need, 0);
        memory::read_exact(mem, addr, &mut buf)?;
    }
    let stack: Vec<u64> = (0..nstk).map(|i| word(&buf, header + i * 8)).collect();
    if let Some(pc) = stack.iter().find(|&&pc| !is_code(pc)) {
        return Err(ReadError::NotRecords(format!(
            "bucket at {addr:#x} has pc {pc:#x}, outside the program's code"
        )));
    }
    let size = word(&buf, l.size as usize);
    let at = header + nstk * 8;
    let cycle = |i: usize| {
        let c = at + i * r.cycle_size as usize;
        let allocs = word(&buf, c + r.allocs as usize);
        let frees = word(&buf, c + r.frees as usize);
        let (alloc_bytes, free_bytes) = match r.bytes {
            Some((a, f)) => (word(&buf, c + a as usize), word(&buf, c + f as usize)),
            None => (allocs.wrapping_mul(size), frees.wrapping_mul(size)),
        };
        Counts {
            allocs,
            frees,
            alloc_bytes,
            free_bytes,
        }
    };
    let bucket = RawBucket {
        addr,
        size,
        stack,
        cycles: [cycle(0), cycle(1), cycle(2), cycle(3)],
    };
    Ok((bucket, word(&buf, l.allnext as usize)))
}

/// Unsamples `count` objects of `size` bytes sampled at `rate`, exactly as
/// pprof's `scaleHeapSample` does (runtime/pprof/protomem.go): each
/// object appears with probability 1 − exp(−size/rate), so both are
/// divided by it; a rate of 1 or less means every object was recorded (or
/// the rate is unknown) and nothing is scaled. Returns (objects, bytes),
/// truncated to integers as pprof's are.
pub(crate) fn scale(count: u64, size: u64, rate: i64) -> (u64, u64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    let bytes = count.wrapping_mul(size);
    if rate <= 1 {
        return (count, bytes);
    }
    let s = sample_weight(size, rate as u64);
    ((count as f64 * s) as u64, (bytes as f64 * s) as u64)
}
