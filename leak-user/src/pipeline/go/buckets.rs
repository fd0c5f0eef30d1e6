//! Go's profile buckets to stacks. The runtime files each sampled object in
//! a bucket (one per stack and size); the kernel side sends a bucket's
//! stack with its first sample only, and later samples name the bucket.

use std::collections::HashMap;

use crate::aggregate::{sampled::Aggregator, StackId};

/// Each known bucket's stack, by (process, bucket address).
#[derive(Debug, Default)]
pub(crate) struct BucketStacks {
    stacks: HashMap<(u32, u64), StackId>,
    /// Samples that named a bucket whose stack never arrived.
    missing: u64,
}

impl BucketStacks {
    /// The stack of a sample in `bucket` of process `tgid`: the frames it
    /// carries (Go's logical pcs, relocated by `bias`), remembered for the
    /// bucket; else the bucket's. A bucket whose stack never arrived gets
    /// the empty stack, and is counted.
    pub(crate) fn stack_of(
        &mut self,
        tgid: u32,
        bucket: u64,
        carried: Option<&[u64]>,
        bias: u64,
        agg: &mut Aggregator,
    ) -> StackId {
        let key = (tgid, bucket);
        if let Some(pcs) = carried {
            let pcs: Vec<u64> = pcs.iter().map(|pc| pc.wrapping_sub(bias)).collect();
            let id = agg.intern(&pcs);
            self.stacks.insert(key, id);
            return id;
        }
        match self.stacks.get(&key) {
            Some(&id) => id,
            None => {
                self.missing += 1;
                agg.intern(&[])
            }
        }
    }

    /// Forgets the buckets of process `pid` (it exited; a new process given
    /// the same pid has buckets of its own) and returns their keys, to be
    /// forgotten in the kernel too.
    pub(crate) fn forget(&mut self, pid: u32) -> Vec<(u32, u64)> {
        let gone: Vec<(u32, u64)> = self.stacks.keys().filter(|k| k.0 == pid).copied().collect();
        for key in &gone {
            self.stacks.remove(key);
        }
        gone
    }

    /// Samples whose bucket's stack never arrived.
    pub(crate) fn missing(&self) -> u64 {
        self.missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_keeps_the_stack_of_its_first_sample() {
        let mut agg = Aggregator::new();
        let mut b = BucketStacks::default();
        let first = b.stack_of(7, 0xb0, Some(&[0x1010, 0x2020]), 0x1000, &mut agg);
        assert_eq!(agg.stack(first), &[0x10, 0x1020]);
        assert_eq!(b.stack_of(7, 0xb0, None, 0x1000, &mut agg), first);
        // The same bucket address in another process is another bucket.
        let other = b.stack_of(8, 0xb0, None, 0, &mut agg);
        assert_ne!(other, first);
        assert!(agg.stack(other).is_empty());
        assert_eq!(b.missing(), 1);
    }

    #[test]
    fn an_exited_process_takes_its_buckets_along() {
        let mut agg = Aggregator::new();
        let mut b = BucketStacks::default();
        b.stack_of(7, 0xb0, Some(&[1]), 0, &mut agg);
        b.stack_of(7, 0xb8, Some(&[2]), 0, &mut agg);
        b.stack_of(9, 0xb0, Some(&[3]), 0, &mut agg);
        let mut gone = b.forget(7);
        gone.sort();
        assert_eq!(gone, vec![(7, 0xb0), (7, 0xb8)]);
        // A new process 7 reusing the bucket address starts afresh.
        b.stack_of(7, 0xb0, None, 0, &mut agg);
        assert_eq!(b.missing(), 1);
        assert!(b.forget(9).len() == 1 && b.forget(9).is_empty());
    }
}
