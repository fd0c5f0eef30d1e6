//! Per-process memory, host-wide, for `leak top`: resident memory from the
//! `kmem:rss_stat` tracepoint, and mapped bytes, the program break and
//! pages given back from the mmap/munmap/brk/mremap/madvise syscalls.
//!
//! Everything lands in two maps keyed by process (tgid) that user space
//! reads every interval: [`MM_STATS`] holds values stored whole (RSS
//! counters, the program break), [`MM_ACTIVITY`] per-CPU sums (mapped
//! bytes, bytes given back, call counts). Each event costs a map lookup or
//! two and a few stores; nothing is sent to user space per event.
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

use aya_ebpf::{
    bindings::{pt_regs, BPF_NOEXIST},
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use leak_common::{MmActivity, MmCounter, MmKernelLayout, MmStats, MM_MAX_PROCESSES, RSS_MEMBERS};

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

/// Per-process sums, by tgid, one value per CPU so no update races.
#[map]
static MM_ACTIVITY: LruPerCpuHashMap<u32, MmActivity> =
    LruPerCpuHashMap::with_max_entries(MM_MAX_PROCESSES, 0);

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
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the zeros in.
    let l = unsafe { core::ptr::read_volatile(&MM_LAYOUT) };
    let mm: u64 = ctx.arg(0);
    let member: u64 = ctx.arg(1);
    let member = member as u32 as i32;
    if member < 0 || member as usize >= RSS_MEMBERS {
        return Err(Skip::Nothing);
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: a kernel read through the helper, at an offset from this
    // kernel's BTF; a failed read skips the event.
    let current_mm: u64 =
        unsafe { bpf_probe_read_kernel((task + l.task_mm as u64) as *const u64) }?;
    let counter =
        mm + l.mm_rss_stat as u64 + member as u64 * l.counter_size as u64 + l.counter_count as u64;
    // SAFETY: as above.
    let pages: i64 = unsafe { bpf_probe_read_kernel(counter as *const i64) }?;
    // As the kernel reads it for /proc: never below zero.
    let bytes = if pages > 0 {
        pages * PAGE_SIZE as i64
    } else {
        0
    };
    credit_rss(mm, current_mm == mm, member, bytes)
}

/// Stores RSS counter `member` = `bytes` for the owner of `mm`: the current
/// process if `curr`, else the owner remembered for `mm`.
#[inline(always)]
fn credit_rss(mm: u64, curr: bool, member: i32, bytes: i64) -> Result<(), Skip> {
    let member = member as usize;
    const _: () = assert!(RSS_MEMBERS == 4);
    if member >= RSS_MEMBERS {
        return Err(Skip::Nothing);
    }
    let s = if curr {
        let tgid = current_tgid();
        let s = stats_of(tgid)?;
        // SAFETY: `s` points at a live map value.
        if unsafe { (*s).mm } != mm {
            // New process, or a new mm after exec: remember its owner for
            // the events other tasks cause on it.
            let _ = MM_OWNERS.insert(mm, tgid, 0);
            // SAFETY: as above.
            unsafe { (*s).mm = mm };
        }
        s
    } else {
        // SAFETY: the value is copied out at once.
        match unsafe { MM_OWNERS.get(mm) }.copied() {
            Some(tgid) => stats_of(tgid)?,
            None => {
                count(MmCounter::RssUnattributed);
                return Err(Skip::Nothing);
            }
        }
    };
    // SAFETY: `s` points at a live map value. The counter's value is stored
    // whole, so racing writers leave one of two recent values; `rss_seen`
    // only ever gains bits (a bit lost to a race is set again by the
    // member's next event).
    // Stores at constant offsets: the verifier loses its bound on `member`
    // when the value is spilled to the stack, and an indexed store fails.
    unsafe {
        match member {
            0 => (*s).rss[0] = bytes,
            1 => (*s).rss[1] = bytes,
            2 => (*s).rss[2] = bytes,
            _ => (*s).rss[3] = bytes,
        }
        let bit = 1u32 << member;
        if (*s).rss_seen & bit == 0 {
            (*s).rss_seen |= bit;
        }
    }
    Ok(())
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
    let regs: *const pt_regs = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // The saved user registers from r10 to orig_rax (x86_64 `pt_regs`
    // order: r10 r9 r8 rax rcx rdx rsi rdi orig_rax), in one read: at exit
    // they still hold the call's arguments (only rax is rewritten).
    // SAFETY: the tracepoint's `regs` argument, read through the helper.
    let r: [u64; 9] = unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).r10).cast()) }?;
    let (r10, rdx, rsi, nr) = (r[0], r[5], r[6], r[8]);
    if !matches!(nr, NR_MMAP | NR_MUNMAP | NR_BRK | NR_MREMAP | NR_MADVISE) {
        return Err(Skip::Nothing);
    }
    if failed(ret) {
        return Err(Skip::Nothing);
    }
    let (a1, a2, a3) = (rsi, rdx, r10);
    let tgid = current_tgid();
    if nr == NR_BRK {
        // `ret` is the program break after the call (brk returns the old
        // break when it cannot move it).
        let s = stats_of(tgid)?;
        // SAFETY: `s` points at a live map value.
        unsafe { (*s).brk = ret as u64 };
    }
    let a = activity_of(tgid)?;
    // SAFETY: `a` points at this CPU's own map value.
    let a = unsafe { &mut *a };
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
