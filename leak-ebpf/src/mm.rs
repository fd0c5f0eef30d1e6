//! Per-process memory, host-wide, for `leak top`: resident memory from the
//! `kmem:rss_stat` tracepoint, and mapped bytes, the program break and
//! pages given back from the mmap/munmap/brk/mremap/madvise syscalls.
//!
//! Everything lands in two maps keyed by process (tgid) that user space
//! reads every interval: [`MM_STATS`] holds values stored whole (RSS
//! counters, the program break), [`MM_ACTIVITY`] per-CPU sums (mapped
//! bytes, bytes given back, call counts). Nothing is sent to user space
//! per event.
//!
//! Cost is what matters here: `kmem:rss_stat` fires on every page fault.
//! Through the event format (a perf buffer record per event, the counter
//! summed over CPUs) it made an mmap/touch/munmap loop 1.4× slower. So both
//! hooks are raw tracepoints, which hand the program the tracepoint's own
//! arguments and nothing else:
//! * `rss_stat(mm, member)`: the counter is read from the mm at offsets
//!   user space takes from the kernel's BTF ([`MmKernelLayout`]); the owner
//!   is the current process when `current->mm` is this mm (page faults,
//!   the common case), and [`MM_OWNERS`] remembers it for events other
//!   tasks cause (reclaim, fork, exit), which are credited through it or
//!   counted as unattributed. Without a layout (no BTF), the program on the
//!   `kmem:rss_stat` event format is used instead.
//! * `sys_exit(regs, ret)`: one program for the five calls, filtered on the
//!   syscall number; the arguments are still in the saved user registers at
//!   exit, so no enter program and no map of calls in flight are needed.
//!   The per-call `syscalls:sys_{enter,exit}_*` events would cost a perf
//!   buffer record each, two per call.
//!
//! The common event costs no hash lookup and no read helper. A process
//! that keeps to its CPU (a loop of page faults, a run of mmap/munmap)
//! writes into that CPU's pending slot ([`MM_RSS_PENDING`], [`MM_PENDING`]),
//! which moves into the maps only when another process's event comes on
//! that CPU; user space adds the slots to what the maps hold. The current
//! task's `mm` and saved registers are pointers the verifier knows the
//! types of (`bpf_get_current_task_btf`, `bpf_task_pt_regs`), read with
//! plain loads: every syscall on the host passes the `sys_exit` filter, so
//! its number is one load, not a helper call.

use core::ptr::{addr_of, read_volatile};

use aya_ebpf::{
    bindings::{pt_regs, BPF_NOEXIST},
    helpers::{bpf_get_current_task_btf, bpf_jiffies64, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use leak_common::{
    MmActivity, MmCounter, MmKernelLayout, MmPending, MmRssPending, MmStats, MM_MAX_PROCESSES,
    RSS_MEMBERS,
};

use crate::{
    current_tgid, failed, page_round,
    skip::{count, Skip},
    PAGE_SIZE,
};

/// Per-process memory state, by tgid. LRU: a host with more processes than
/// this evicts the least recently active; user space notices a watched
/// process missing and falls back to /proc for it.
#[map]
static MM_STATS: LruHashMap<u32, MmStats> = LruHashMap::with_max_entries(MM_MAX_PROCESSES, 0);

/// Per-process sums, by tgid, one value per CPU so no update races; the
/// latest calls on each CPU wait in [`MM_PENDING`] until another process
/// makes one there.
#[map]
static MM_ACTIVITY: LruPerCpuHashMap<u32, MmActivity> =
    LruPerCpuHashMap::with_max_entries(MM_MAX_PROCESSES, 0);

/// Per CPU, the sums of the process that last made a memory call there
/// (one slot).
#[map]
static MM_PENDING: PerCpuArray<MmPending> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, the RSS counters of the process whose own change came last
/// there (one slot); moved into [`MM_STATS`] when another's comes.
#[map]
static MM_RSS_PENDING: PerCpuArray<MmRssPending> = PerCpuArray::with_max_entries(1, 0);

/// Owner (tgid) of each mm, by its address (or `mm_id` on the fallback
/// path), learnt from events the owner itself caused.
#[map]
static MM_OWNERS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MM_MAX_PROCESSES, 0);

/// Kernel struct offsets for the raw `rss_stat` program (set by user space
/// from BTF before load).
#[unsafe(no_mangle)]
static MM_LAYOUT: MmKernelLayout = MmKernelLayout {
    task_mm: 0,
    mm_rss_stat: 0,
    counter_size: 0,
    counter_count: 0,
};

/// `mmap` flag: replace whatever is mapped at `addr` (Go commits its heap
/// this way, over its own PROT_NONE reservation: no new address space).
const MAP_FIXED: u64 = 0x10;
/// `madvise` behaviours that give pages back.
const MADV_DONTNEED: i64 = 4;
const MADV_FREE: i64 = 8;
const MADV_REMOVE: i64 = 9;

/// The stats entry of `tgid`, created on first sight.
#[inline(always)]
fn stats_of(tgid: u32) -> Result<*mut MmStats, Skip> {
    if let Some(s) = MM_STATS.get_ptr_mut(tgid) {
        return Ok(s);
    }
    // NOEXIST: another CPU may have created it meanwhile; keep theirs.
    if MM_STATS
        .insert(tgid, MmStats::default(), BPF_NOEXIST as u64)
        .is_ok()
    {
        count(MmCounter::ProcessesAdded);
    }
    MM_STATS.get_ptr_mut(tgid).ok_or_else(|| {
        count(MmCounter::StatsInsertFailed);
        Skip::Full
    })
}

/// This CPU's activity entry of `tgid`, created on first sight.
#[inline(always)]
fn activity_of(tgid: u32) -> Result<*mut MmActivity, Skip> {
    if let Some(a) = MM_ACTIVITY.get_ptr_mut(tgid) {
        return Ok(a);
    }
    let _ = MM_ACTIVITY.insert(tgid, MmActivity::default(), BPF_NOEXIST as u64);
    MM_ACTIVITY.get_ptr_mut(tgid).ok_or_else(|| {
        count(MmCounter::StatsInsertFailed);
        Skip::Full
    })
}

// kmem:rss_stat (/sys/kernel/tracing/events/kmem/rss_stat/format, kernel 6.18)
//
// name: rss_stat
// ID: 646
// format:
// 	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
// 	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
// 	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
// 	field:int common_pid;	offset:4;	size:4;	signed:1;
//
// 	field:unsigned int mm_id;	offset:8;	size:4;	signed:0;
// 	field:unsigned int curr;	offset:12;	size:4;	signed:0;
// 	field:int member;	offset:16;	size:4;	signed:1;
// 	field:long size;	offset:24;	size:8;	signed:1;
//
// print fmt: "mm_id=%u curr=%d type=%s size=%ldB", REC->mm_id, REC->curr, __print_symbolic(REC->member, { 0, "MM_FILEPAGES" }, { 1, "MM_ANONPAGES" }, { 2, "MM_SWAPENTS" }, { 3, "MM_SHMEMPAGES" }), REC->size

/// The fields of `kmem:rss_stat`.
#[repr(C)]
struct RssStat {
    common: u64,
    mm_id: u32,
    curr: u32,
    member: i32,
    _pad: u32,
    /// The counter's new value in bytes (pages × page size).
    size: i64,
}

/// Fallback when the kernel's BTF gave no layout: the event format, which
/// carries the owner test (`curr`) and the counter's value.
#[tracepoint(category = "kmem", name = "rss_stat")]
pub fn mm_rss_stat_event(ctx: TracePointContext) -> u32 {
    let _ = try_mm_rss_stat_event(&ctx);
    0
}

fn try_mm_rss_stat_event(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the layout above is this tracepoint's format; the verifier
    // bounds context loads by the event's size (a direct load, cheaper than
    // the read helper: this event fires on every page fault).
    let ev: RssStat = unsafe { core::ptr::read(ctx.as_ptr() as *const RssStat) };
    credit_rss(ev.mm_id as u64, ev.curr != 0, ev.member, ev.size)
}

// The raw tracepoint of the same event: its arguments are the
// tracepoint's prototype (include/trace/events/kmem.h), no format:
//
// 	TP_PROTO(struct mm_struct *mm, int member)

/// `rss_stat(struct mm_struct *mm, int member)` as a raw tracepoint.
#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn mm_rss_stat(ctx: RawTracePointContext) -> i32 {
    let _ = try_mm_rss_stat(&ctx);
    0
}

fn try_mm_rss_stat(ctx: &RawTracePointContext) -> Result<(), Skip> {
    let mm: u64 = ctx.arg(0);
    let member: u64 = ctx.arg(1);
    let member = member as u32 as i32;
    if member < 0 || member as usize >= RSS_MEMBERS {
        return Err(Skip::Nothing);
    }
    let current_mm = current_mm();
    // Read before the comparison: after it the compiler would read through
    // `mm`, the untyped argument of equal value.
    let own = counter_of_current(current_mm, member);
    let pages = if current_mm == mm {
        own
    } else {
        counter_of_other(mm, member)?
    };
    // As the kernel reads it for /proc: never below zero.
    let bytes = if pages > 0 {
        pages * PAGE_SIZE as i64
    } else {
        0
    };
    credit_rss(mm, current_mm == mm, member, bytes)
}

/// The kernel layout the loader wrote (see [`MM_LAYOUT`]).
#[inline(always)]
fn layout() -> MmKernelLayout {
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the zeros in. The verifier reads it as the
    // constants it holds (the map is frozen), so offsets from it are
    // constant too.
    unsafe { read_volatile(&MM_LAYOUT) }
}

/// `current->mm`, as a pointer the verifier knows the type of: a plain
/// load, no read helper.
#[inline(always)]
fn current_mm() -> u64 {
    let l = layout();
    // SAFETY: helper without preconditions; the load is from the current
    // task at the offset of its `mm` in this kernel's BTF.
    unsafe {
        let task = bpf_get_current_task_btf() as *const u8;
        read_volatile(task.add(l.task_mm as usize) as *const u64)
    }
}

/// Byte offset of RSS counter `member`'s value in an `mm_struct`.
#[inline(always)]
fn counter_offset(l: &MmKernelLayout, member: u32) -> usize {
    (l.mm_rss_stat + member * l.counter_size + l.counter_count) as usize
}

/// RSS counter `member` of the current task's mm, in pages, with plain
/// loads from the typed pointer [`current_mm`] returned. The verifier
/// checks each load against the struct, at a constant offset: one load
/// per member, never an offset computed from `member`.
#[inline(always)]
fn counter_of_current(mm: u64, member: i32) -> i64 {
    let l = layout();
    let at = |m: u32| (mm as *const u8).wrapping_add(counter_offset(&l, m)) as *const i64;
    // SAFETY: loads from the typed pointer at offsets from this kernel's
    // BTF (a fault reads as zero).
    unsafe {
        match member {
            0 => read_volatile(at(0)),
            1 => read_volatile(at(1)),
            2 => read_volatile(at(2)),
            _ => read_volatile(at(3)),
        }
    }
}

/// RSS counter `member` of another task's mm (reclaim, fork, exit), in
/// pages: `mm` is only an address here, read through the helper.
#[inline(always)]
fn counter_of_other(mm: u64, member: i32) -> Result<i64, Skip> {
    let l = layout();
    let counter = mm + counter_offset(&l, member as u32) as u64;
    // SAFETY: a kernel read through the helper, at an offset from this
    // kernel's BTF; a failed read skips the event.
    Ok(unsafe { bpf_probe_read_kernel(counter as *const i64) }?)
}

/// Stores RSS counter `member` = `bytes` for the owner of `mm`: the current
/// process if `curr` (through this CPU's pending slot), else the owner
/// remembered for `mm`.
#[inline(always)]
fn credit_rss(mm: u64, curr: bool, member: i32, bytes: i64) -> Result<(), Skip> {
    const _: () = assert!(RSS_MEMBERS == 4);
    if member < 0 || member as usize >= RSS_MEMBERS {
        return Err(Skip::Nothing);
    }
    if curr {
        return credit_own(mm, member, bytes);
    }
    // SAFETY: the value is copied out at once.
    let Some(tgid) = unsafe { MM_OWNERS.get(mm) }.copied() else {
        count(MmCounter::RssUnattributed);
        return Err(Skip::Nothing);
    };
    let s = stats_of(tgid)?;
    // SAFETY: `s` points at a live map value.
    let s = unsafe { &mut *s };
    store_rss(&mut s.rss, &mut s.stamp, &mut s.rss_seen, member, bytes);
    Ok(())
}

/// The current process changed its own counter: into this CPU's pending
/// slot, taken over from whichever process held it.
#[inline(always)]
fn credit_own(mm: u64, member: i32, bytes: i64) -> Result<(), Skip> {
    let slot = MM_RSS_PENDING.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's own slot; programs do not nest on a CPU.
    let slot = unsafe { &mut *slot };
    let tgid = current_tgid();
    // The tgid too: an exited process's mm may be reused at once.
    if slot.mm != mm || slot.tgid != tgid {
        take_slot(slot, mm, tgid)?;
    }
    store_rss(
        &mut slot.rss,
        &mut slot.stamp,
        &mut slot.rss_seen,
        member,
        bytes,
    );
    Ok(())
}

/// Makes this CPU's pending slot `tgid`'s, for `mm`: the values it held
/// move into [`MM_STATS`] first, and `mm`'s owner is remembered for the
/// changes other tasks cause to it (reclaim, fork, exit).
#[inline(always)]
fn take_slot(slot: &mut MmRssPending, mm: u64, tgid: u32) -> Result<(), Skip> {
    if slot.rss_seen != 0 {
        // Lost if the map is full (counted there): the slot moves on anyway.
        let _ = flush_slot(slot);
    }
    slot.mm = mm;
    slot.tgid = tgid;
    slot.rss_seen = 0;
    let s = stats_of(tgid)?;
    // SAFETY: `s` points at a live map value.
    let s = unsafe { &mut *s };
    if s.mm != mm {
        // New process, or a new mm after exec.
        let _ = MM_OWNERS.insert(mm, tgid, 0);
        s.mm = mm;
    }
    Ok(())
}

/// Moves a pending slot's values into [`MM_STATS`], each counter unless the
/// map's is later (another CPU may have moved a later one since).
/// Values of an mm the process no longer has (it ran exec since) are
/// dropped.
#[inline(always)]
fn flush_slot(slot: &MmRssPending) -> Result<(), Skip> {
    let s = stats_of(slot.tgid)?;
    // SAFETY: `s` points at a live map value.
    let s = unsafe { &mut *s };
    if s.mm != slot.mm {
        return Err(Skip::Nothing);
    }
    // One member at a time, at constant indices (see `store_rss`).
    for m in 0..RSS_MEMBERS {
        let bit = 1u32 << m;
        if slot.rss_seen & bit != 0 && (s.rss_seen & bit == 0 || slot.stamp[m] >= s.stamp[m]) {
            s.rss[m] = slot.rss[m];
            s.stamp[m] = slot.stamp[m];
            s.rss_seen |= bit;
        }
    }
    Ok(())
}

/// Stores counter `member` = `bytes`, read now. Each value is stored
/// whole, so racing writers leave one of two recent values; `seen` only
/// ever gains bits.
#[inline(always)]
fn store_rss(
    rss: &mut [i64; RSS_MEMBERS],
    stamp: &mut [u64; RSS_MEMBERS],
    seen: &mut u32,
    member: i32,
    bytes: i64,
) {
    let now = now();
    // Stores at constant offsets: the verifier loses its bound on `member`
    // when the value is spilled to the stack, and an indexed store fails.
    match member {
        0 => (rss[0], stamp[0]) = (bytes, now),
        1 => (rss[1], stamp[1]) = (bytes, now),
        2 => (rss[2], stamp[2]) = (bytes, now),
        _ => (rss[3], stamp[3]) = (bytes, now),
    }
    let bit = 1u32 << member;
    if *seen & bit == 0 {
        *seen |= bit;
    }
}

/// The tick count (jiffies), the same on every CPU: orders two values of a
/// counter read on different CPUs, to within a tick (of equal ticks, the
/// value moving or being read wins). A load, where the nanosecond clock's
/// helper cost a third of the program here (25 ns an event).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without preconditions (the verifier inlines it).
    unsafe { bpf_jiffies64() }
}

/// x86_64 syscall numbers.
const NR_MMAP: u64 = 9;
const NR_MUNMAP: u64 = 11;
const NR_BRK: u64 = 12;
const NR_MREMAP: u64 = 25;
const NR_MADVISE: u64 = 28;

// The raw tracepoint at every syscall's exit (include/trace/events/syscalls.h):
//
// 	TP_PROTO(struct pt_regs *regs, long ret)

/// `sys_exit(struct pt_regs *regs, long ret)` as a raw tracepoint: every
/// syscall's exit, host-wide; all but the five memory calls leave at the
/// first comparison.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mm_sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_mm_sys_exit(&ctx);
    0
}

fn try_mm_sys_exit(ctx: &RawTracePointContext) -> Result<(), Skip> {
    let regs = current_regs();
    // SAFETY: a direct load from the typed pointer (see `current_regs`).
    let nr = unsafe { read_volatile(addr_of!((*regs).orig_rax)) };
    if !is_memory_call(nr) {
        return Err(Skip::Nothing);
    }
    // At exit the saved registers still hold the call's arguments (only
    // rax is rewritten). SAFETY: direct loads, as above.
    let args = unsafe {
        [
            read_volatile(addr_of!((*regs).rsi)),
            read_volatile(addr_of!((*regs).rdx)),
            read_volatile(addr_of!((*regs).r10)),
        ]
    };
    account_call(nr, ctx.arg(1), args)
}

/// `sys_exit` for kernels that cannot type the current task's registers
/// (no BTF, or before 5.15): the tracepoint's `regs` through the read
/// helper, on every syscall of the host.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mm_sys_exit_read(ctx: RawTracePointContext) -> i32 {
    let _ = try_mm_sys_exit_read(&ctx);
    0
}

fn try_mm_sys_exit_read(ctx: &RawTracePointContext) -> Result<(), Skip> {
    let regs: *const pt_regs = ctx.arg(0);
    // The saved user registers from r10 to orig_rax (x86_64 `pt_regs`
    // order: r10 r9 r8 rax rcx rdx rsi rdi orig_rax), in one read.
    // SAFETY: the tracepoint's `regs` argument, read through the helper.
    let r: [u64; 9] = unsafe { bpf_probe_read_kernel(addr_of!((*regs).r10).cast()) }?;
    if !is_memory_call(r[8]) {
        return Err(Skip::Nothing);
    }
    account_call(r[8], ctx.arg(1), [r[6], r[5], r[0]])
}

/// One of the five calls `leak top` follows.
#[inline(always)]
fn is_memory_call(nr: u64) -> bool {
    matches!(nr, NR_MMAP | NR_MUNMAP | NR_BRK | NR_MREMAP | NR_MADVISE)
}

/// Accounts memory call `nr` that returned `ret`, with its second to
/// fourth arguments `[rsi, rdx, r10]`, to the current process.
#[inline(always)]
fn account_call(nr: u64, ret: i64, [a1, a2, a3]: [u64; 3]) -> Result<(), Skip> {
    if failed(ret) {
        return Err(Skip::Nothing);
    }
    let tgid = current_tgid();
    if nr == NR_BRK {
        // `ret` is the program break after the call (brk returns the old
        // break when it cannot move it).
        let s = stats_of(tgid)?;
        // SAFETY: `s` points at a live map value.
        unsafe { (*s).brk = ret as u64 };
    }
    let a = pending_of(tgid)?;
    a.syscalls += 1;
    match nr {
        // mmap(addr, len, prot, flags, fd, off): MAP_FIXED replaces a
        // mapping (Go commits its heap that way): no new address space.
        NR_MMAP if a3 & MAP_FIXED == 0 => a.mapped_bytes += page_round(a1) as i64,
        // munmap(addr, len)
        NR_MUNMAP => a.mapped_bytes -= page_round(a1) as i64,
        // mremap(addr, old_len, new_len, flags, new_addr)
        NR_MREMAP => a.mapped_bytes += page_round(a2) as i64 - page_round(a1) as i64,
        // madvise(start, len, behavior)
        NR_MADVISE if matches!(a2 as i32 as i64, MADV_DONTNEED | MADV_FREE | MADV_REMOVE) => {
            a.advised_away_bytes += page_round(a1)
        }
        _ => {}
    }
    Ok(())
}

/// The current task's saved user registers, as a pointer the verifier
/// knows the type of (from the kernel's BTF): its fields are read with
/// plain loads, where the tracepoint's own `regs` argument, an untyped
/// address, would need a read helper for every syscall on the host.
#[inline(always)]
fn current_regs() -> *const pt_regs {
    // SAFETY: helpers without preconditions: the current task, never null
    // in a tracepoint, and the address of its saved registers.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs }
}

/// This CPU's pending sums, made `tgid`'s: another process's are first
/// added into [`MM_ACTIVITY`].
#[inline(always)]
fn pending_of(tgid: u32) -> Result<&'static mut MmActivity, Skip> {
    let p = MM_PENDING.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's own slot; programs do not nest on a CPU.
    let p = unsafe { &mut *p };
    if p.tgid != tgid {
        if p.activity.syscalls != 0 {
            // Lost if the map is full (counted there): start afresh anyway.
            let _ = flush(p.tgid, &p.activity);
        }
        p.tgid = tgid;
        p.activity = MmActivity::default();
    }
    Ok(&mut p.activity)
}

/// Adds `pending`, `tgid`'s sums, into this CPU's value in [`MM_ACTIVITY`].
#[inline(always)]
fn flush(tgid: u32, pending: &MmActivity) -> Result<(), Skip> {
    let a = activity_of(tgid)?;
    // SAFETY: `a` points at this CPU's own map value.
    let a = unsafe { &mut *a };
    a.mapped_bytes += pending.mapped_bytes;
    a.advised_away_bytes += pending.advised_away_bytes;
    a.syscalls += pending.syscalls;
    Ok(())
}

// The floor: the same two raw tracepoints with programs that do nothing
// (`leak top --bench-empty-programs`, for the benchmark only). What they
// cost is the hooks' own price (the tracepoints' dispatch, the syscall exit
// path they turn on); the programs above cost what they add to it. No
// `try_` half: there is nothing to skip.

/// `rss_stat` with no work: returns at once.
#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn mm_rss_stat_empty(_ctx: RawTracePointContext) -> i32 {
    0
}

/// `sys_exit` with no work: returns at once.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn mm_sys_exit_empty(_ctx: RawTracePointContext) -> i32 {
    0
}
