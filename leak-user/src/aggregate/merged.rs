//! Stacks merged by what they symbolize to: two stacks of code addresses
//! that read alike (the same functions and lines) are one stack in every
//! report. Symbolizing is done in bounded slices, so a program with 100,000
//! new stacks never stalls the event loop.

use std::{collections::HashMap, sync::Arc};

use super::{StackId, Totals};
use crate::frame::Frame;

/// Index of a merged stack.
pub(crate) type MergedId = u32;

/// Each interned stack's symbolized form, and the distinct forms.
#[derive(Default)]
pub(crate) struct MergedStacks {
    /// By [`StackId`]: the merged stack it belongs to.
    merged_of: Vec<MergedId>,
    merged: Vec<Arc<[Frame]>>,
    /// By content; foldhash, not SipHash: hashing 100,000 stacks of names
    /// was most of the time spent symbolizing them.
    index: HashMap<Arc<[Frame]>, MergedId, foldhash::fast::RandomState>,
}

impl MergedStacks {
    /// Symbolizes up to `budget` of the stacks `0..stacks` not yet done,
    /// oldest first; `frames` gives one stack's frames.
    pub(crate) fn catch_up(
        &mut self,
        stacks: usize,
        budget: usize,
        mut frames: impl FnMut(StackId) -> Vec<Frame>,
    ) {
        let mut left = budget;
        while left > 0 && self.merged_of.len() < stacks {
            let id = StackId(self.merged_of.len() as u32);
            let m = self.add(frames(id).into());
            self.merged_of.push(m);
            left -= 1;
        }
    }

    fn add(&mut self, frames: Arc<[Frame]>) -> MergedId {
        if let Some(m) = self.index.get(&frames) {
            return *m;
        }
        let m = self.merged.len() as MergedId;
        self.index.insert(frames.clone(), m);
        self.merged.push(frames);
        m
    }

    /// The merged stack of `id`, once symbolized.
    pub(crate) fn of(&self, id: StackId) -> Option<MergedId> {
        self.merged_of.get(id.0 as usize).copied()
    }

    /// The merged stack with these frames, if any.
    pub(crate) fn id_of(&self, frames: &[Frame]) -> Option<MergedId> {
        self.index.get(frames).copied()
    }

    /// The frames of a merged stack.
    pub(crate) fn frames(&self, m: MergedId) -> &Arc<[Frame]> {
        &self.merged[m as usize]
    }

    /// Totals per merged stack; stacks not yet symbolized are left out
    /// (they are on a later tick).
    pub(crate) fn totals(
        &self,
        ids: impl IntoIterator<Item = (StackId, Totals)>,
    ) -> Vec<(MergedId, Totals)> {
        let mut sums: HashMap<MergedId, Totals> = HashMap::new();
        for (id, t) in ids {
            if let Some(m) = self.of(id) {
                *sums.entry(m).or_default() += t;
            }
        }
        sums.into_iter().collect()
    }

    /// Per merged stack, the sum of a per-[`StackId`] value.
    pub(crate) fn sum_per_stack(&self, values: &[f64]) -> HashMap<MergedId, f64> {
        let mut out: HashMap<MergedId, f64> = HashMap::new();
        for (i, v) in values.iter().enumerate() {
            if let (true, Some(m)) = (*v > 0.0, self.of(StackId(i as u32))) {
                *out.entry(m).or_default() += v;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_that_read_alike_are_one() {
        let mut m = MergedStacks::default();
        // Stacks 0 and 2 symbolize alike; stack 1 differs.
        let names = ["a", "b", "a"];
        m.catch_up(3, 2, |id| vec![Frame::named(names[id.0 as usize])]);
        assert_eq!(
            (m.of(StackId(0)), m.of(StackId(1)), m.of(StackId(2))),
            (Some(0), Some(1), None)
        );
        m.catch_up(3, 10, |id| vec![Frame::named(names[id.0 as usize])]);
        assert_eq!(m.of(StackId(2)), Some(0));
        let t = |b| Totals {
            outstanding_bytes: b,
            ..Totals::default()
        };
        let mut sums = m.totals([
            (StackId(0), t(1.0)),
            (StackId(1), t(2.0)),
            (StackId(2), t(4.0)),
        ]);
        sums.sort_by_key(|(m, _)| *m);
        assert_eq!(sums, vec![(0, t(5.0)), (1, t(2.0))]);
        assert_eq!(&*m.frames(0)[0].function, "a");
        assert_eq!(m.id_of(&m.frames(1).clone()), Some(1));
        let per = m.sum_per_stack(&[1.0, 0.0, 2.0]);
        assert_eq!(per.get(&0), Some(&3.0));
        assert_eq!(per.get(&1), None);
    }
}
