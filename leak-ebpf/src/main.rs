//! leak's eBPF programs. One probe family per module: [`go`] (uprobes on
//! the Go runtime), [`mm`] (`leak top`'s tracepoints), [`heap`] (brk/mmap
//! stacks of `leak trace --syscalls`); [`skip`] holds why a program sent
//! nothing and the loss counters. This file holds the ring buffer they
//! share, small helpers, and the boilerplate every eBPF binary needs.
//!
//! Every program is a thin `fn prog(ctx) -> u32` around a
//! `try_prog(ctx) -> Result<(), Skip>` that does the work and returns early
//! with `?`; what it could not do is counted or logged where it happens.
#![no_std]
#![no_main]

mod go;
mod heap;
mod mm;
mod native;
mod skip;

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::RingBuf};

/// Records for user space: Go samples, frees, GC cycles and starts; the
/// brk/mmap calls of `leak trace --syscalls`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

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

/// The current process (thread group) id.
#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

const PAGE_SIZE: u64 = 4096;

/// `len` rounded up to whole pages, as the kernel maps it.
#[inline(always)]
fn page_round(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// A syscall's return value means failure (-4095..=-1).
#[inline(always)]
fn failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
