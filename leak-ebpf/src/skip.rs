//! Why a program sent nothing, and the counters that make a loss visible:
//! one [`Skip`] for every program, one [`count`] for both counter arrays.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use leak_common::{Counter, MmCounter, COUNTERS as COUNTER_SLOTS, MM_COUNTERS};

/// Why a probe hit sent or stored nothing (the programs return 0 either
/// way). A loss is counted where it happens, before the `Skip` is returned.
pub(crate) enum Skip {
    /// A helper read failed: user or kernel memory, a tracepoint field.
    Read,
    /// A ring buffer or map was full: counted as a loss.
    Full,
    /// A per-CPU array slot is missing (never, once loaded).
    NoSlot,
    /// Nothing to record: another process, a failed call, a special that is
    /// not the heap profile's, a behaviour not followed, …
    Nothing,
}

impl From<i32> for Skip {
    /// Helpers fail with a negative errno: a read that did not happen.
    fn from(_: i32) -> Self {
        Skip::Read
    }
}

/// Per-CPU loss counters of `leak trace`, indexed by [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Per-CPU counters of `leak top`, indexed by [`MmCounter`].
#[map]
static MM_COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(MM_COUNTERS, 0);

/// A counter slot: which array, which index.
pub(crate) trait Slot {
    fn slot(self) -> (&'static PerCpuArray<u64>, u32);
}

impl Slot for Counter {
    #[inline(always)]
    fn slot(self) -> (&'static PerCpuArray<u64>, u32) {
        (&COUNTERS, self as u32)
    }
}

impl Slot for MmCounter {
    #[inline(always)]
    fn slot(self) -> (&'static PerCpuArray<u64>, u32) {
        (&MM_COUNTERS_MAP, self as u32)
    }
}

/// Adds one to a counter slot.
#[inline(always)]
pub(crate) fn count(slot: impl Slot) {
    let (array, index) = slot.slot();
    if let Some(c) = array.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}
