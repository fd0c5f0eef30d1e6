//! From events to numbers per call stack: the one stack table, the totals
//! arithmetic, and the aggregates built on them — sampled heap objects
//! ([`sampled`], Go's sampler), mapped ranges ([`mapped`], brk/mmap), and
//! stacks merged by what they symbolize to ([`merged`]).

pub(crate) mod mapped;
pub(crate) mod merged;
pub(crate) mod sampled;

use std::{
    collections::HashMap,
    ops::{Add, AddAssign},
    sync::Arc,
};

/// Index of an interned stack in a [`StackTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StackId(pub u32);

/// How many objects one sample of `size` bytes stands for at sampling `rate`
/// (pprof's `scaleHeapSample`: `1 / (1 − exp(−size / rate))`), the one
/// weight for leak's own samples and for Go's heap records (`goheap`).
/// Rates of 0 and 1 mean every allocation was recorded: weight 1.
pub(crate) fn sample_weight(size: u64, rate: u64) -> f64 {
    if rate <= 1 || size == 0 {
        return 1.0;
    }
    1.0 / (1.0 - (-(size as f64) / rate as f64).exp())
}

/// Estimated totals for one stack (or for everything).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Totals {
    /// Bytes allocated and not yet freed.
    pub outstanding_bytes: f64,
    /// Objects allocated and not yet freed.
    pub outstanding_objects: f64,
    /// Bytes allocated since attach, freed or not.
    pub allocated_bytes: f64,
    /// Objects allocated since attach, freed or not.
    pub allocated_objects: f64,
}

impl Totals {
    /// Counts an allocation of `bytes` in `objects` objects.
    pub(crate) fn add_alloc(&mut self, bytes: f64, objects: f64) {
        self.outstanding_bytes += bytes;
        self.outstanding_objects += objects;
        self.allocated_bytes += bytes;
        self.allocated_objects += objects;
    }

    /// Gives back `bytes` in `objects` objects of what is outstanding.
    pub(crate) fn sub_outstanding(&mut self, bytes: f64, objects: f64) {
        // Clamp: float sums drift by ulps, never below zero.
        self.outstanding_bytes = (self.outstanding_bytes - bytes).max(0.0);
        self.outstanding_objects = (self.outstanding_objects - objects).max(0.0);
    }

    /// The same allocations with nothing outstanding (the start of an "as
    /// of the last GC" view, which adds back what survived).
    pub(crate) fn allocated_only(self) -> Self {
        Self {
            outstanding_bytes: 0.0,
            outstanding_objects: 0.0,
            ..self
        }
    }

    /// What is outstanding, with nothing allocated (a stack's history: what
    /// it held before attach, none of it allocated since).
    pub(crate) fn outstanding_only(self) -> Self {
        Self {
            outstanding_bytes: self.outstanding_bytes,
            outstanding_objects: self.outstanding_objects,
            ..Self::default()
        }
    }
}

impl AddAssign for Totals {
    fn add_assign(&mut self, o: Self) {
        self.outstanding_bytes += o.outstanding_bytes;
        self.outstanding_objects += o.outstanding_objects;
        self.allocated_bytes += o.allocated_bytes;
        self.allocated_objects += o.allocated_objects;
    }
}

impl Add for Totals {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl std::iter::Sum for Totals {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

impl<'a> std::iter::Sum<&'a Totals> for Totals {
    fn sum<I: Iterator<Item = &'a Totals>>(iter: I) -> Self {
        iter.copied().sum()
    }
}

/// Call stacks interned by their frames as plain `u64`s (code addresses,
/// relocated to the binary's own when they are a binary's), each with its
/// [`Totals`]: the same code path in two processes is one stack.
#[derive(Debug, Default)]
pub(crate) struct StackTable {
    ids: HashMap<Arc<[u64]>, StackId>,
    stacks: Vec<Arc<[u64]>>,
    totals: Vec<Totals>,
}

impl StackTable {
    /// Interns `pcs` and returns its id.
    pub(crate) fn intern(&mut self, pcs: &[u64]) -> StackId {
        if let Some(id) = self.ids.get(pcs) {
            return *id;
        }
        let id = StackId(self.stacks.len() as u32);
        let pcs: Arc<[u64]> = pcs.into();
        self.stacks.push(pcs.clone());
        self.totals.push(Totals::default());
        self.ids.insert(pcs, id);
        id
    }

    /// The frames of an interned stack.
    pub(crate) fn stack(&self, id: StackId) -> &[u64] {
        &self.stacks[id.0 as usize]
    }

    /// Stacks interned so far.
    pub(crate) fn len(&self) -> usize {
        self.stacks.len()
    }

    /// The totals of one stack.
    #[cfg(test)]
    pub(crate) fn totals(&self, id: StackId) -> &Totals {
        &self.totals[id.0 as usize]
    }

    /// The totals of one stack, to change.
    pub(crate) fn totals_mut(&mut self, id: StackId) -> &mut Totals {
        &mut self.totals[id.0 as usize]
    }

    /// Every stack with its totals, in interning order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (StackId, &Totals)> {
        self.totals
            .iter()
            .enumerate()
            .map(|(i, t)| (StackId(i as u32), t))
    }

    /// Totals over all stacks.
    pub(crate) fn sum(&self) -> Totals {
        self.totals.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_matches_pprof_formula() {
        // A 10 KiB object at the default rate stands for ~51.7 objects.
        let w = sample_weight(10240, 512 * 1024);
        assert!((w - 51.70).abs() < 0.01, "{w}");
        // Objects far larger than the rate are always sampled.
        assert!((sample_weight(64 << 20, 512 * 1024) - 1.0).abs() < 1e-9);
        // Rate 1 (every allocation) and rate 0 are unscaled.
        assert_eq!(sample_weight(100, 1), 1.0);
        assert_eq!(sample_weight(100, 0), 1.0);
    }

    #[test]
    fn table_interns_once_and_sums() {
        let mut t = StackTable::default();
        let a = t.intern(&[1, 2]);
        let b = t.intern(&[3]);
        assert_eq!(t.intern(&[1, 2]), a);
        assert_eq!((t.len(), t.stack(b)), (2, &[3][..]));
        t.totals_mut(a).add_alloc(100.0, 1.0);
        t.totals_mut(b).add_alloc(50.0, 2.0);
        t.totals_mut(a).sub_outstanding(200.0, 1.0);
        let sum = t.sum();
        assert_eq!(sum.outstanding_bytes, 50.0);
        assert_eq!(sum.allocated_bytes, 150.0);
        assert_eq!(sum.allocated_objects, 3.0);
        assert_eq!(sum.allocated_only().outstanding_bytes, 0.0);
    }
}
