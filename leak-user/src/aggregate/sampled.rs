//! Outstanding and allocated bytes per call stack, from heap-profile samples.
//!
//! Every sample stands for more than itself: Go samples about one allocation
//! per `MemProfileRate` bytes, so a sample of `size` bytes is weighted the way
//! pprof weights it, `1 / (1 − exp(−size / rate))`. An object stays
//! outstanding from its sampled allocation until the sweeper frees it.
//! Objects allocated before the tracer attached are invisible: every figure
//! here is "since attach".
//!
//! Outstanding bytes include garbage the sweeper has not freed yet, up to a
//! whole GC cycle's worth of allocation. Go's own profile instead reports the
//! heap "as of the last GC"; [`Aggregator::in_use_at_last_gc`] gives the same
//! view: every sample remembers the GC cycle it was born in, and what was
//! born before cycle N and is still outstanding when cycle N+1 ends survived
//! collection N.

use std::collections::{BTreeMap, HashMap};

use super::{sample_weight, StackId, StackTable, Totals};

/// A sampled object that has not been freed yet.
#[derive(Clone, Copy, Debug)]
struct LiveSample {
    stack: StackId,
    bytes: f64,
    objects: f64,
    /// GC cycles of its process completed when it was allocated.
    birth_cycle: u64,
    /// The aggregator's clock when it was allocated (see
    /// [`Aggregator::set_clock`]), milliseconds.
    born_ms: u32,
}

/// GC bookkeeping of one process.
#[derive(Debug, Default)]
struct GcState {
    /// GC cycles completed since attach.
    cycles: u64,
    /// Outstanding bytes by birth cycle; cycles up to `merged_upto` are
    /// folded into the entry at `merged_upto`.
    bytes_by_birth: BTreeMap<u64, f64>,
    merged_upto: u64,
    /// Bytes that survived the last complete collection, once known.
    at_last_gc: Option<f64>,
}

impl GcState {
    fn bucket(&self, birth: u64) -> u64 {
        birth.max(self.merged_upto)
    }
}

/// Counts of events that did not change any stack, kept so nothing is lost
/// silently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Unmatched {
    /// Frees of objects sampled before the tracer attached.
    pub frees_of_unknown: u64,
    /// Allocations at an address that was still outstanding (its free was
    /// missed); the older sample was retired.
    pub reused_addresses: u64,
}

/// Aggregates samples of any number of processes running one binary.
///
/// Stacks are interned by their frames as plain `u64`s (normally program
/// counters already relocated to the binary's own addresses), so the same
/// code path in two processes adds up.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    stacks: StackTable,
    live: HashMap<(u32, u64), LiveSample>,
    gc: HashMap<u32, GcState>,
    total: Totals,
    samples: u64,
    frees: u64,
    unmatched: Unmatched,
    /// Bytes per stack held by processes when they exited.
    held_at_exit: HashMap<StackId, f64>,
    /// Milliseconds since the owner's start, stamped on each sample.
    clock_ms: u32,
}

impl Aggregator {
    /// An empty aggregator.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Interns `pcs` and returns its id.
    pub(crate) fn intern(&mut self, pcs: &[u64]) -> StackId {
        self.stacks.intern(pcs)
    }

    /// Records a sampled allocation of `size` bytes at `addr` in process
    /// `tgid`, taken at sampling `rate`.
    pub(crate) fn alloc(&mut self, tgid: u32, addr: u64, size: u64, rate: u64, stack: StackId) {
        let objects = sample_weight(size, rate);
        let bytes = objects * size as f64;
        let gc = self.gc.entry(tgid).or_default();
        let birth_cycle = gc.cycles;
        *gc.bytes_by_birth.entry(gc.bucket(birth_cycle)).or_default() += bytes;
        if let Some(old) = self.live.insert(
            (tgid, addr),
            LiveSample {
                stack,
                bytes,
                objects,
                birth_cycle,
                born_ms: self.clock_ms,
            },
        ) {
            self.retire(tgid, old);
            self.unmatched.reused_addresses += 1;
        }
        self.stacks.totals_mut(stack).add_alloc(bytes, objects);
        self.total.add_alloc(bytes, objects);
        self.samples += 1;
    }

    /// Records that the object at `addr` in `tgid` was freed. Returns false
    /// when it was not a sample seen since attach.
    pub(crate) fn free(&mut self, tgid: u32, addr: u64) -> bool {
        match self.live.remove(&(tgid, addr)) {
            Some(old) => {
                self.retire(tgid, old);
                self.frees += 1;
                true
            }
            None => {
                self.unmatched.frees_of_unknown += 1;
                false
            }
        }
    }

    /// Forgets every outstanding object of a process that exited.
    pub(crate) fn process_exited(&mut self, tgid: u32) {
        let gone: Vec<_> = self
            .live
            .keys()
            .filter(|(t, _)| *t == tgid)
            .copied()
            .collect();
        for key in gone {
            if let Some(old) = self.live.remove(&key) {
                *self.held_at_exit.entry(old.stack).or_default() += old.bytes;
                self.retire(tgid, old);
            }
        }
        self.gc.remove(&tgid);
    }

    /// Records that a GC cycle of `tgid` finished marking.
    pub(crate) fn gc_cycle(&mut self, tgid: u32) {
        let gc = self.gc.entry(tgid).or_default();
        if gc.cycles >= 1 {
            // Born before the previous cycle and still here: survived it.
            let cutoff = gc.cycles - 1;
            let survived: f64 = gc.bytes_by_birth.range(..=cutoff).map(|(_, b)| *b).sum();
            gc.at_last_gc = Some(survived.max(0.0));
            let old: Vec<u64> = gc.bytes_by_birth.range(..cutoff).map(|(k, _)| *k).collect();
            for k in old {
                gc.bytes_by_birth.remove(&k);
            }
            gc.bytes_by_birth.insert(cutoff, survived);
            gc.merged_upto = cutoff;
        }
        gc.cycles += 1;
    }

    /// GC cycles of `tgid` seen since attach.
    #[cfg(test)]
    pub(crate) fn gc_cycles(&self, tgid: u32) -> u64 {
        self.gc.get(&tgid).map(|g| g.cycles).unwrap_or(0)
    }

    /// Bytes each stack held in processes that have exited, when they
    /// exited, indexed by stack id.
    pub(crate) fn held_at_exit_per_stack(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.stacks.len()];
        for (id, bytes) in &self.held_at_exit {
            out[id.0 as usize] += bytes;
        }
        out
    }

    /// What process `tgid`'s samples hold "as of its last GC", per stack
    /// (bytes, objects): the part of Go's own records that leak has seen.
    pub(crate) fn held_at_last_gc_of(&self, tgid: u32) -> HashMap<StackId, (f64, f64)> {
        let cycles = self.gc.get(&tgid).map(|g| g.cycles).unwrap_or(0);
        let mut out: HashMap<StackId, (f64, f64)> = HashMap::new();
        for ((t, _), sample) in &self.live {
            if *t == tgid && sample.birth_cycle < cycles {
                let e = out.entry(sample.stack).or_default();
                e.0 += sample.bytes;
                e.1 += sample.objects;
            }
        }
        out
    }

    /// Bytes sampled since attach that survived the last complete GC cycle,
    /// summed over processes: the heap in use "as of the last GC", as Go's
    /// own profile reports it. `None` until two cycles have been seen.
    pub(crate) fn in_use_at_last_gc(&self) -> Option<f64> {
        let known: Vec<f64> = self.gc.values().filter_map(|g| g.at_last_gc).collect();
        (!known.is_empty()).then(|| known.iter().sum())
    }

    /// Every stack with its totals "as of the last GC", the way Go's heap
    /// profile counts: outstanding objects allocated before their process's
    /// most recent GC cycle ended; what was allocated since is left out (it
    /// may well be garbage the next cycle frees). Allocated totals are
    /// unchanged. Read after a forced GC (`/debug/pprof/heap?gc=1`,
    /// `runtime.GC()`), whose sweep is complete, this equals Go's view.
    pub(crate) fn stacks_as_of_last_gc(&self) -> Vec<(StackId, Totals)> {
        let mut out: Vec<Totals> = self
            .stacks
            .iter()
            .map(|(_, t)| t.allocated_only())
            .collect();
        for ((tgid, _), sample) in &self.live {
            let cycles = self.gc.get(tgid).map(|g| g.cycles).unwrap_or(0);
            if sample.birth_cycle < cycles {
                let t = &mut out[sample.stack.0 as usize];
                t.outstanding_bytes += sample.bytes;
                t.outstanding_objects += sample.objects;
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, t)| (StackId(i as u32), t))
            .collect()
    }

    /// Sets the clock stamped on samples from now on: milliseconds since the
    /// owner's start (ages are told from it).
    pub(crate) fn set_clock(&mut self, ms: u32) {
        self.clock_ms = ms;
    }

    /// Per stack (indexed by `StackId`), the outstanding bytes and objects
    /// allocated at least `min_age_ms` before clock `now_ms`, and the birth
    /// of the oldest outstanding object (`u32::MAX`: none).
    pub(crate) fn ages(&self, now_ms: u32, min_age_ms: u32) -> Vec<(f64, f64, u32)> {
        let mut out = vec![(0.0, 0.0, u32::MAX); self.stacks.len()];
        for sample in self.live.values() {
            let o = &mut out[sample.stack.0 as usize];
            if now_ms.saturating_sub(sample.born_ms) >= min_age_ms {
                o.0 += sample.bytes;
                o.1 += sample.objects;
            }
            o.2 = o.2.min(sample.born_ms);
        }
        out
    }

    /// Outstanding bytes per stack (indexed by `StackId`) of objects that
    /// have lived through at least `collections` GC cycles of their process.
    pub(crate) fn survived_per_stack(&self, collections: u64) -> Vec<f64> {
        let mut out = vec![0.0; self.stacks.len()];
        for ((tgid, _), sample) in &self.live {
            let cycles = self.gc.get(tgid).map(|g| g.cycles).unwrap_or(0);
            if sample.birth_cycle + collections <= cycles {
                out[sample.stack.0 as usize] += sample.bytes;
            }
        }
        out
    }

    fn retire(&mut self, tgid: u32, old: LiveSample) {
        self.stacks
            .totals_mut(old.stack)
            .sub_outstanding(old.bytes, old.objects);
        self.total.sub_outstanding(old.bytes, old.objects);
        if let Some(gc) = self.gc.get_mut(&tgid) {
            let bucket = gc.bucket(old.birth_cycle);
            if let Some(b) = gc.bytes_by_birth.get_mut(&bucket) {
                *b -= old.bytes;
            }
        }
    }

    /// Totals over all stacks.
    pub(crate) fn total(&self) -> Totals {
        self.total
    }

    /// Sampled allocations seen.
    pub(crate) fn samples(&self) -> u64 {
        self.samples
    }

    /// Frees of sampled objects matched to their allocation.
    pub(crate) fn frees(&self) -> u64 {
        self.frees
    }

    /// Events that matched nothing.
    #[cfg(test)]
    pub(crate) fn unmatched(&self) -> Unmatched {
        self.unmatched
    }

    /// Stacks interned so far.
    pub(crate) fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// The frames of an interned stack.
    pub(crate) fn stack(&self, id: StackId) -> &[u64] {
        self.stacks.stack(id)
    }

    /// Every stack with its totals, in interning order.
    pub(crate) fn stacks(&self) -> impl Iterator<Item = (StackId, &Totals)> {
        self.stacks.iter()
    }
}

#[cfg(test)]
mod age_tests {
    use super::*;

    #[test]
    fn ages_count_what_is_old_enough_and_the_oldest() {
        let mut a = Aggregator::new();
        let (s1, s2) = (a.intern(&[1]), a.intern(&[2]));
        a.set_clock(1_000);
        a.alloc(1, 0x10, 100, 1, s1);
        a.set_clock(5_000);
        a.alloc(1, 0x20, 200, 1, s1);
        a.alloc(1, 0x30, 300, 1, s2);
        a.set_clock(6_000);
        a.free(1, 0x10);
        // At 8 s, 2 s old or more: s1's second block and s2's.
        let ages = a.ages(8_000, 2_000);
        assert_eq!(ages[0], (200.0, 1.0, 5_000));
        assert_eq!(ages[1], (300.0, 1.0, 5_000));
        // 4 s or more: none; the oldest birth is still told.
        assert_eq!(a.ages(8_000, 4_000)[0], (0.0, 0.0, 5_000));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_exited_process_leaves_what_it_held() {
        let mut a = Aggregator::new();
        let s = a.intern(&[1, 2]);
        a.alloc(7, 0x10, 1000, 1, s);
        a.alloc(7, 0x20, 1000, 1, s);
        a.free(7, 0x20);
        a.alloc(8, 0x10, 500, 1, s);
        a.process_exited(7);
        assert_eq!(a.held_at_exit_per_stack()[s.0 as usize], 1000.0);
        // Still allocated since attach; no longer outstanding.
        let t = a.stacks().find(|(id, _)| *id == s).unwrap().1;
        assert_eq!((t.allocated_bytes, t.outstanding_bytes), (2500.0, 500.0));
    }
    use super::*;

    const RATE: u64 = 512 * 1024;

    #[test]
    fn outstanding_follows_allocs_and_frees() {
        let mut agg = Aggregator::new();
        let a = agg.intern(&[1, 2, 3]);
        let b = agg.intern(&[4, 5]);
        assert_eq!(agg.intern(&[1, 2, 3]), a);
        agg.alloc(10, 0x1000, 1024, 1, a);
        agg.alloc(10, 0x2000, 1024, 1, a);
        agg.alloc(10, 0x3000, 4096, 1, b);
        assert!(agg.free(10, 0x1000));
        assert!(!agg.free(10, 0x9999));
        let totals: Vec<_> = agg.stacks().map(|(_, t)| *t).collect();
        assert_eq!(totals[0].outstanding_bytes, 1024.0);
        assert_eq!(totals[0].allocated_bytes, 2048.0);
        assert_eq!(totals[0].outstanding_objects, 1.0);
        assert_eq!(totals[1].outstanding_bytes, 4096.0);
        assert_eq!(agg.total().outstanding_bytes, 5120.0);
        assert_eq!(agg.total().allocated_bytes, 6144.0);
        assert_eq!(agg.unmatched().frees_of_unknown, 1);
        assert_eq!(agg.frees(), 1);
        assert_eq!(agg.samples(), 3);
    }

    #[test]
    fn same_address_in_two_processes_is_two_objects() {
        let mut agg = Aggregator::new();
        let a = agg.intern(&[1]);
        agg.alloc(1, 0x1000, 100, 1, a);
        agg.alloc(2, 0x1000, 100, 1, a);
        assert_eq!(agg.total().outstanding_bytes, 200.0);
        agg.process_exited(1);
        assert_eq!(agg.total().outstanding_bytes, 100.0);
    }

    #[test]
    fn in_use_at_last_gc_counts_survivors_only() {
        let mut agg = Aggregator::new();
        let s = agg.intern(&[1]);
        assert_eq!(agg.in_use_at_last_gc(), None);
        // Cycle 0: a keeper and a temporary.
        agg.alloc(1, 0x10, 100, 1, s);
        agg.alloc(1, 0x20, 50, 1, s);
        agg.gc_cycle(1); // GC 1 ends; the sweep of GC 1 follows
        assert_eq!(agg.in_use_at_last_gc(), None);
        assert!(agg.free(1, 0x20));
        // Garbage allocated after GC 1 is not "as of GC 1".
        agg.alloc(1, 0x30, 1000, 1, s);
        agg.gc_cycle(1); // GC 2 ends: 0x10 survived GC 1
        assert_eq!(agg.in_use_at_last_gc(), Some(100.0));
        assert!(agg.free(1, 0x30));
        agg.alloc(1, 0x40, 7, 1, s);
        agg.gc_cycle(1); // GC 3: survivors of GC 2 are 0x10 (0x30 was swept)
        assert_eq!(agg.in_use_at_last_gc(), Some(100.0));
        assert!(agg.free(1, 0x10));
        agg.gc_cycle(1); // GC 4: 0x40 survived GC 3, 0x10 was swept
        assert_eq!(agg.in_use_at_last_gc(), Some(7.0));
        assert_eq!(agg.gc_cycles(1), 4);
        // A second process adds up.
        agg.alloc(2, 0x10, 5, 1, s);
        agg.gc_cycle(2);
        agg.gc_cycle(2);
        assert_eq!(agg.in_use_at_last_gc(), Some(12.0));
    }

    #[test]
    fn as_of_last_gc_leaves_out_allocations_since() {
        let mut agg = Aggregator::new();
        let s = agg.intern(&[1]);
        let t = agg.intern(&[2]);
        agg.alloc(1, 0x10, 100, 1, s);
        agg.alloc(1, 0x20, 30, 1, t);
        agg.gc_cycle(1);
        assert!(agg.free(1, 0x20)); // swept: dead at that GC
        agg.alloc(1, 0x30, 1000, 1, t); // after the GC
        let view = agg.stacks_as_of_last_gc();
        assert_eq!(view[0].1.outstanding_bytes, 100.0);
        assert_eq!(view[1].1.outstanding_bytes, 0.0);
        assert_eq!(view[1].1.allocated_bytes, 1030.0);
        // A process that never collected shows nothing as of a GC.
        agg.alloc(2, 0x10, 5, 1, s);
        assert_eq!(agg.stacks_as_of_last_gc()[0].1.outstanding_bytes, 100.0);
    }

    #[test]
    fn survivors_of_two_collections() {
        let mut agg = Aggregator::new();
        let s = agg.intern(&[1]);
        agg.alloc(1, 0x10, 100, 1, s);
        agg.gc_cycle(1);
        agg.alloc(1, 0x20, 10, 1, s);
        assert_eq!(agg.survived_per_stack(2), vec![0.0]);
        agg.gc_cycle(1);
        assert_eq!(agg.survived_per_stack(2), vec![100.0]);
        assert_eq!(agg.survived_per_stack(1), vec![110.0]);
    }

    #[test]
    fn reused_address_retires_the_old_sample() {
        let mut agg = Aggregator::new();
        let a = agg.intern(&[1]);
        let b = agg.intern(&[2]);
        agg.alloc(1, 0x1000, 100, 1, a);
        agg.alloc(1, 0x1000, 300, 1, b);
        assert_eq!(agg.total().outstanding_bytes, 300.0);
        assert_eq!(agg.unmatched().reused_addresses, 1);
        let totals: Vec<_> = agg.stacks().map(|(_, t)| *t).collect();
        assert_eq!(totals[0].outstanding_bytes, 0.0);
    }

    #[test]
    fn scaled_estimate_converges_on_the_truth() {
        // Simulate Go's sampler: exponential gaps with mean RATE. Leak
        // 20,000 objects of 10,240 bytes; the estimate should land near
        // 204.8 MB.
        let mut agg = Aggregator::new();
        let s = agg.intern(&[7]);
        let mut rng = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut until_sample = -(1.0 - next()).ln() * RATE as f64;
        for i in 0..20_000u64 {
            until_sample -= 10240.0;
            if until_sample <= 0.0 {
                agg.alloc(1, i, 10240, RATE, s);
                until_sample = -(1.0 - next()).ln() * RATE as f64;
            }
        }
        let est = agg.total().outstanding_bytes;
        let truth = 20_000.0 * 10240.0;
        assert!((est / truth - 1.0).abs() < 0.1, "estimate {est} vs {truth}");
    }
}
