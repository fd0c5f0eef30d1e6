//! leak's eBPF programs. One probe family per module; this file holds the
//! maps they share and the boilerplate every eBPF binary needs.
#![no_std]
#![no_main]

mod go;
mod heap;
mod mm;

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use leak_common::COUNTERS as COUNTER_SLOTS;

/// Records for user space: sampled allocations, frees, GC cycles.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters, indexed by `leak_common::Counter`: what was seen and
/// what was dropped, so no loss is silent.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Ring buffer flags for one record: no wake-up per record (user space
/// also drains on a short timer), but a forced one once a quarter of the
/// buffer waits, so bursts are read before it fills.
#[inline(always)]
fn wakeup_flags() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= 4 * 1024 * 1024 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Adds one to a counter slot.
#[inline(always)]
fn count(slot: leak_common::Counter) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
