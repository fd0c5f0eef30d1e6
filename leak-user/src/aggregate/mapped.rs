//! Outstanding mapped bytes per call stack, from a process's brk, mmap and
//! munmap calls: what `leak trace --syscalls` reports for programs whose
//! allocator leak cannot see into (C, C++, Rust, …).
//!
//! An anonymous mmap holds its range until munmap takes it back, whole or
//! in part; a mapping over an existing range (MAP_FIXED) first takes that
//! range away from whoever held it. Moving the program break up is a growth
//! owned by the stack that moved it; moving it down gives back the most
//! recent growths first. Everything is "since attach": memory mapped before
//! leak started is unknown, and unmapping it changes nothing here.

use std::collections::BTreeMap;

use super::{StackId, StackTable, Totals};

const PAGE: u64 = 4096;

fn page_up(v: u64) -> u64 {
    v.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// Mapped ranges and brk growths of one process, and their stacks.
#[derive(Debug, Default)]
pub(crate) struct MappedBytes {
    stacks: StackTable,
    /// Live mappings made since attach: start → (end, stack).
    ranges: BTreeMap<u64, (u64, StackId)>,
    /// The program break, page-rounded, once known.
    brk: Option<u64>,
    /// Growths of the break still held, oldest first.
    brk_growths: Vec<(StackId, u64)>,
    calls: u64,
    unmaps: u64,
}

impl MappedBytes {
    /// Nothing mapped yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The id of a stack of code addresses (innermost first).
    pub(crate) fn intern(&mut self, pcs: &[u64]) -> StackId {
        self.stacks.intern(pcs)
    }

    /// Stacks interned so far.
    pub(crate) fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// The addresses of an interned stack.
    pub(crate) fn stack(&self, id: StackId) -> &[u64] {
        self.stacks.stack(id)
    }

    /// The program break when tracing began (from `/proc/PID/maps`).
    pub(crate) fn set_break(&mut self, brk: u64) {
        self.brk = Some(page_up(brk));
    }

    /// `len` bytes mapped at `addr` by `stack`.
    pub(crate) fn mmap(&mut self, addr: u64, len: u64, stack: StackId) {
        self.calls += 1;
        let len = page_up(len);
        if len == 0 {
            return;
        }
        self.unmap_range(addr, addr.saturating_add(len));
        self.ranges.insert(addr, (addr + len, stack));
        self.grow(stack, len);
    }

    /// `len` bytes at `addr` unmapped.
    pub(crate) fn munmap(&mut self, addr: u64, len: u64) {
        self.unmaps += 1;
        self.unmap_range(addr, addr.saturating_add(page_up(len)));
    }

    /// The break moved to `new_break` by `stack`.
    pub(crate) fn brk(&mut self, new_break: u64, stack: StackId) {
        self.calls += 1;
        let new_break = page_up(new_break);
        let Some(old) = self.brk.replace(new_break) else {
            return;
        };
        if new_break > old {
            self.brk_growths.push((stack, new_break - old));
            self.grow(stack, new_break - old);
            return;
        }
        let mut shrink = old - new_break;
        while shrink > 0 {
            let Some((owner, bytes)) = self.brk_growths.last_mut() else {
                break;
            };
            let taken = shrink.min(*bytes);
            *bytes -= taken;
            shrink -= taken;
            let owner = *owner;
            let gone = *bytes == 0;
            if gone {
                self.brk_growths.pop();
            }
            self.shrink(owner, taken, gone);
        }
    }

    fn grow(&mut self, stack: StackId, bytes: u64) {
        self.stacks.totals_mut(stack).add_alloc(bytes as f64, 1.0);
    }

    fn shrink(&mut self, stack: StackId, bytes: u64, whole: bool) {
        let objects = if whole { 1.0 } else { 0.0 };
        self.stacks
            .totals_mut(stack)
            .sub_outstanding(bytes as f64, objects);
    }

    /// Takes `[start, end)` away from the mappings that overlap it.
    fn unmap_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // The mapping starting before `start` may reach into the range.
        let first = self
            .ranges
            .range(..start)
            .next_back()
            .filter(|(_, (e, _))| *e > start)
            .map(|(s, _)| *s);
        let overlapping: Vec<u64> = first
            .into_iter()
            .chain(self.ranges.range(start..end).map(|(s, _)| *s))
            .collect();
        for s in overlapping {
            let (e, stack) = self.ranges.remove(&s).expect("listed above");
            let cut_from = s.max(start);
            let cut_to = e.min(end);
            if s < cut_from {
                self.ranges.insert(s, (cut_from, stack));
            }
            if cut_to < e {
                self.ranges.insert(cut_to, (e, stack));
            }
            let whole = s >= start && e <= end;
            self.shrink(stack, cut_to - cut_from, whole);
        }
    }

    /// Totals per stack that ever held memory.
    pub(crate) fn stacks_with_totals(&self) -> impl Iterator<Item = (StackId, &Totals)> {
        self.stacks.iter().filter(|(_, t)| t.allocated_bytes > 0.0)
    }

    /// Totals over all stacks.
    pub(crate) fn total(&self) -> Totals {
        self.stacks.sum()
    }

    /// brk and mmap calls seen.
    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// munmap calls seen.
    pub(crate) fn unmaps(&self) -> u64 {
        self.unmaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(m: &MappedBytes, s: StackId) -> f64 {
        m.stacks.totals(s).outstanding_bytes
    }

    #[test]
    fn munmap_takes_back_whole_and_partial_mappings() {
        let mut m = MappedBytes::new();
        let a = m.intern(&[1, 2]);
        let b = m.intern(&[3]);
        assert_eq!(m.intern(&[1, 2]), a);
        m.mmap(0x10000, 0x4000, a);
        m.mmap(0x20000, 0x1000, b);
        assert_eq!(held(&m, a), 16384.0);
        // The middle page of a's mapping, then all of b's.
        m.munmap(0x11000, 0x1000);
        assert_eq!(held(&m, a), 12288.0);
        assert_eq!(m.ranges.len(), 3);
        m.munmap(0x20000, 0x1000);
        assert_eq!(held(&m, b), 0.0);
        assert_eq!(m.stacks.totals(b).outstanding_objects, 0.0);
        // Across both pieces of a's and beyond.
        m.munmap(0xf000, 0x10000);
        assert_eq!(held(&m, a), 0.0);
        assert_eq!(m.total().allocated_bytes, 20480.0);
        // Memory leak never saw mapped changes nothing.
        m.munmap(0x90000, 0x1000);
        assert_eq!(m.total().outstanding_bytes, 0.0);
    }

    #[test]
    fn mapping_over_a_range_replaces_its_owner() {
        let mut m = MappedBytes::new();
        let a = m.intern(&[1]);
        let b = m.intern(&[2]);
        m.mmap(0x10000, 0x2000, a);
        m.mmap(0x11000, 0x2000, b);
        assert_eq!(held(&m, a), 4096.0);
        assert_eq!(held(&m, b), 8192.0);
    }

    #[test]
    fn brk_growth_belongs_to_its_stack_and_shrinks_last_first() {
        let mut m = MappedBytes::new();
        let a = m.intern(&[1]);
        let b = m.intern(&[2]);
        m.set_break(0x100000);
        m.brk(0x121000, a); // +0x21000
        m.brk(0x142000, b); // +0x21000
        assert_eq!(held(&m, a), 0x21000 as f64);
        assert_eq!(held(&m, b), 0x21000 as f64);
        // Unaligned breaks count whole pages.
        m.brk(0x142010, b);
        assert_eq!(held(&m, b), 0x22000 as f64);
        m.brk(0x111000, a); // -0x31000: all of b's, then 0xf000 of a's
        assert_eq!(held(&m, b), 0.0);
        assert_eq!(held(&m, a), 0x11000 as f64);
        assert_eq!(m.calls(), 4);
    }

    #[test]
    fn first_brk_without_a_known_break_only_sets_it() {
        let mut m = MappedBytes::new();
        let a = m.intern(&[1]);
        m.brk(0x200000, a);
        assert_eq!(m.total().outstanding_bytes, 0.0);
        m.brk(0x201000, a);
        assert_eq!(held(&m, a), 4096.0);
    }
}
