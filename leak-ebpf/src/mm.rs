//! Per-process memory, host-wide, for `leak top`: resident memory from the
//! `kmem:rss_stat` tracepoint, and mapped bytes, the program break and
//! pages given back from the mmap/munmap/brk/mremap/madvise syscall
//! tracepoints.
//!
//! Everything lands in two maps keyed by process (tgid) that user space
//! reads every interval: [`MM_STATS`] holds values stored whole (RSS
//! counters, the program break), [`MM_ACTIVITY`] per-CPU sums (mapped
//! bytes, bytes given back, call counts). Each event costs a map lookup or
//! two and a few stores; nothing is sent to user space per event.
//! `kmem:rss_stat` fires on every page fault, so its program is the one that
//! matters: one map lookup while the owner runs, no helper but the pid
//! (`bpf_ktime_get_ns` alone cost ~120 ns a call on the test VM). Measured
//! with `kernel.bpf_stats_enabled`: ~210 ns per event there, against ~4.5 µs
//! for the page fault itself.
//!
//! `kmem:rss_stat` names the mm, not the process: `mm_id` is a hash of the
//! `mm_struct` pointer, and `curr` says whether it is the running task's own
//! mm. Page faults, the common case, run as the owner (`curr` = 1): then the
//! owner is the current tgid, and [`MM_OWNERS`] remembers it. Reclaim, fork
//! (filling the child's page tables) and exit (after the task has dropped
//! its mm) report another mm (`curr` = 0): those are credited through
//! `MM_OWNERS`, or counted as unattributed when the mm has never been seen
//! running.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use leak_common::{
    MmActivity, MmCounter, MmStats, MmSyscall, PendingMmSyscall, MM_COUNTERS, MM_MAX_PROCESSES,
    RSS_MEMBERS,
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

/// Owner (tgid) of each mm, by `kmem:rss_stat`'s `mm_id`, learnt from events
/// the owner itself caused.
#[map]
static MM_OWNERS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(MM_MAX_PROCESSES, 0);

/// The memory syscall each thread is in, by pid_tgid, from sys_enter to
/// sys_exit: whether it succeeded is only known at exit.
#[map]
static MM_PENDING: LruHashMap<u64, PendingMmSyscall> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU counters, indexed by [`MmCounter`].
#[map]
static MM_COUNTERS_MAP: PerCpuArray<u64> = PerCpuArray::with_max_entries(MM_COUNTERS, 0);

const PAGE_SIZE: u64 = 4096;
/// `mmap` flag: replace whatever is mapped at `addr` (Go commits its heap
/// this way, over its own PROT_NONE reservation: no new address space).
const MAP_FIXED: u64 = 0x10;
/// `madvise` behaviours that give pages back.
const MADV_DONTNEED: i64 = 4;
const MADV_FREE: i64 = 8;
const MADV_REMOVE: i64 = 9;

/// Why an event was not recorded (the programs return 0 either way).
enum Skip {
    /// A tracepoint field could not be read.
    Read,
    /// Nothing to record (a failed call, a behaviour not followed, …).
    Nothing,
    /// `MM_STATS` refused a new process.
    Full,
}

impl From<i32> for Skip {
    fn from(_: i32) -> Self {
        Skip::Read
    }
}

#[inline(always)]
fn count(slot: MmCounter) {
    if let Some(c) = MM_COUNTERS_MAP.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
pub(crate) fn page_round(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// A syscall's return value means failure (-4095..=-1).
#[inline(always)]
pub(crate) fn failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

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

// ---------------------------------------------------------------------------
// kmem:rss_stat
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
// print fmt: "mm_id=%u curr=%d type=%s size=%ldB", REC->mm_id, REC->curr,
//   __print_symbolic(REC->member, { 0, "MM_FILEPAGES" }, { 1, "MM_ANONPAGES" },
//   { 2, "MM_SWAPENTS" }, { 3, "MM_SHMEMPAGES" }), REC->size

/// The fields of `kmem:rss_stat` (kernel 6.18).
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

#[tracepoint(category = "kmem", name = "rss_stat")]
pub fn mm_rss_stat(ctx: TracePointContext) -> u32 {
    let _ = try_mm_rss_stat(&ctx);
    0
}

fn try_mm_rss_stat(ctx: &TracePointContext) -> Result<(), Skip> {
    // This runs on every page fault: a direct context load (not a probe
    // read), one map lookup when the owner is running, nothing else.
    // SAFETY: the layout above is this tracepoint's format; the verifier
    // bounds context loads by the event's size.
    let ev: RssStat = unsafe { core::ptr::read(ctx.as_ptr() as *const RssStat) };
    count(MmCounter::RssEvents);
    let member = ev.member as usize;
    if member >= RSS_MEMBERS {
        return Err(Skip::Nothing);
    }
    let s = if ev.curr != 0 {
        let tgid = current_tgid();
        let s = stats_of(tgid)?;
        // SAFETY: `s` points at a live map value.
        if unsafe { (*s).mm_id } != ev.mm_id {
            // New process, or a new mm after exec: remember its owner for
            // the events other tasks cause on it.
            let _ = MM_OWNERS.insert(ev.mm_id, tgid, 0);
            // SAFETY: as above.
            unsafe { (*s).mm_id = ev.mm_id };
        }
        s
    } else {
        // SAFETY: the value is copied out at once.
        match unsafe { MM_OWNERS.get(ev.mm_id) }.copied() {
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
    unsafe {
        if let Some(slot) = (*s).rss.get_mut(member) {
            *slot = ev.size;
        }
        let bit = 1u32 << member;
        if (*s).rss_seen & bit == 0 {
            (*s).rss_seen |= bit;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// syscalls:sys_enter_mmap
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long addr;	offset:16;	size:8;	signed:0;
// 	field:unsigned long len;	offset:24;	size:8;	signed:0;
// 	field:unsigned long prot;	offset:32;	size:8;	signed:0;
// 	field:unsigned long flags;	offset:40;	size:8;	signed:0;
// 	field:unsigned long fd;	offset:48;	size:8;	signed:0;
// 	field:unsigned long off;	offset:56;	size:8;	signed:0;
//
// (Every syscalls:* event starts with the same common fields as rss_stat,
// offsets 0 to 7, then __syscall_nr at 8.)

/// The fields of `syscalls:sys_enter_mmap`.
#[repr(C)]
pub(crate) struct SysEnterMmap {
    pub(crate) common: u64,
    pub(crate) syscall_nr: i32,
    pub(crate) _pad: u32,
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) prot: u64,
    pub(crate) flags: u64,
    pub(crate) fd: u64,
    pub(crate) off: u64,
}

// syscalls:sys_enter_munmap
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long addr;	offset:16;	size:8;	signed:0;
// 	field:size_t len;	offset:24;	size:8;	signed:0;

/// The fields of `syscalls:sys_enter_munmap`.
#[repr(C)]
pub(crate) struct SysEnterMunmap {
    pub(crate) common: u64,
    pub(crate) syscall_nr: i32,
    pub(crate) _pad: u32,
    pub(crate) addr: u64,
    pub(crate) len: u64,
}

// syscalls:sys_enter_mremap
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long addr;	offset:16;	size:8;	signed:0;
// 	field:unsigned long old_len;	offset:24;	size:8;	signed:0;
// 	field:unsigned long new_len;	offset:32;	size:8;	signed:0;
// 	field:unsigned long flags;	offset:40;	size:8;	signed:0;
// 	field:unsigned long new_addr;	offset:48;	size:8;	signed:0;

/// The fields of `syscalls:sys_enter_mremap`.
#[repr(C)]
struct SysEnterMremap {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    addr: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
}

// syscalls:sys_enter_madvise
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long start;	offset:16;	size:8;	signed:0;
// 	field:size_t len_in;	offset:24;	size:8;	signed:0;
// 	field:int behavior;	offset:32;	size:8;	signed:0;

/// The fields of `syscalls:sys_enter_madvise` (`behavior` is an int in an
/// 8-byte slot).
#[repr(C)]
struct SysEnterMadvise {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    start: u64,
    len_in: u64,
    behavior: i64,
}

// syscalls:sys_exit_{mmap,munmap,brk,mremap,madvise}
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:long ret;	offset:16;	size:8;	signed:1;

/// The fields of every `syscalls:sys_exit_*` event.
#[repr(C)]
pub(crate) struct SysExit {
    pub(crate) common: u64,
    pub(crate) syscall_nr: i32,
    pub(crate) _pad: u32,
    pub(crate) ret: i64,
}

/// Remembers a call until its exit says whether it worked.
#[inline(always)]
fn begin(call: MmSyscall, len: u64, old_len: u64) {
    let pending = PendingMmSyscall {
        call: call as u32,
        _pad: 0,
        len,
        old_len,
    };
    let _ = MM_PENDING.insert(bpf_get_current_pid_tgid(), pending, 0);
}

/// The call this thread began, if it is `call`; forgotten either way.
#[inline(always)]
fn finish(call: MmSyscall) -> Option<PendingMmSyscall> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the entry is removed.
    let pending = unsafe { MM_PENDING.get(key) }.copied()?;
    let _ = MM_PENDING.remove(key);
    (pending.call == call as u32).then_some(pending)
}

/// Counts a successful call of this process, returning this CPU's
/// activity entry for it.
#[inline(always)]
fn syscall_done() -> Result<*mut MmActivity, Skip> {
    count(MmCounter::Syscalls);
    let a = activity_of(current_tgid())?;
    // SAFETY: `a` points at this CPU's own map value.
    unsafe { (*a).syscalls += 1 };
    Ok(a)
}

#[inline(always)]
fn exit_ret(ctx: &TracePointContext) -> Result<i64, Skip> {
    // SAFETY: the layout above is every sys_exit event's format.
    let ev: SysExit = unsafe { ctx.read_at(0) }?;
    if failed(ev.ret) {
        return Err(Skip::Nothing);
    }
    Ok(ev.ret)
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn mm_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_enter_mmap(&ctx);
    0
}

fn try_mm_enter_mmap(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the layout above is this tracepoint's format.
    let ev: SysEnterMmap = unsafe { ctx.read_at(0) }?;
    if ev.flags & MAP_FIXED != 0 {
        return Err(Skip::Nothing);
    }
    begin(MmSyscall::Mmap, page_round(ev.len), 0);
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn mm_exit_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_exit_mmap(&ctx);
    0
}

fn try_mm_exit_mmap(ctx: &TracePointContext) -> Result<(), Skip> {
    let pending = finish(MmSyscall::Mmap).ok_or(Skip::Nothing)?;
    exit_ret(ctx)?;
    let a = syscall_done()?;
    // SAFETY: `a` points at this CPU's own map value.
    unsafe { (*a).mapped_bytes += pending.len as i64 };
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_munmap")]
pub fn mm_enter_munmap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_enter_munmap(&ctx);
    0
}

fn try_mm_enter_munmap(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the layout above is this tracepoint's format.
    let ev: SysEnterMunmap = unsafe { ctx.read_at(0) }?;
    begin(MmSyscall::Munmap, page_round(ev.len), 0);
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_munmap")]
pub fn mm_exit_munmap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_exit_munmap(&ctx);
    0
}

fn try_mm_exit_munmap(ctx: &TracePointContext) -> Result<(), Skip> {
    let pending = finish(MmSyscall::Munmap).ok_or(Skip::Nothing)?;
    exit_ret(ctx)?;
    let a = syscall_done()?;
    // SAFETY: `a` points at this CPU's own map value.
    unsafe { (*a).mapped_bytes -= pending.len as i64 };
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_mremap")]
pub fn mm_enter_mremap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_enter_mremap(&ctx);
    0
}

fn try_mm_enter_mremap(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the layout above is this tracepoint's format.
    let ev: SysEnterMremap = unsafe { ctx.read_at(0) }?;
    begin(
        MmSyscall::Mremap,
        page_round(ev.new_len),
        page_round(ev.old_len),
    );
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_mremap")]
pub fn mm_exit_mremap(ctx: TracePointContext) -> u32 {
    let _ = try_mm_exit_mremap(&ctx);
    0
}

fn try_mm_exit_mremap(ctx: &TracePointContext) -> Result<(), Skip> {
    let pending = finish(MmSyscall::Mremap).ok_or(Skip::Nothing)?;
    exit_ret(ctx)?;
    let a = syscall_done()?;
    // SAFETY: `a` points at this CPU's own map value.
    unsafe { (*a).mapped_bytes += pending.len as i64 - pending.old_len as i64 };
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_madvise")]
pub fn mm_enter_madvise(ctx: TracePointContext) -> u32 {
    let _ = try_mm_enter_madvise(&ctx);
    0
}

fn try_mm_enter_madvise(ctx: &TracePointContext) -> Result<(), Skip> {
    // SAFETY: the layout above is this tracepoint's format.
    let ev: SysEnterMadvise = unsafe { ctx.read_at(0) }?;
    // The int sits in the low half of its 8-byte slot.
    let behavior = ev.behavior as i32 as i64;
    if !matches!(behavior, MADV_DONTNEED | MADV_FREE | MADV_REMOVE) {
        return Err(Skip::Nothing);
    }
    begin(MmSyscall::Madvise, page_round(ev.len_in), 0);
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_exit_madvise")]
pub fn mm_exit_madvise(ctx: TracePointContext) -> u32 {
    let _ = try_mm_exit_madvise(&ctx);
    0
}

fn try_mm_exit_madvise(ctx: &TracePointContext) -> Result<(), Skip> {
    let pending = finish(MmSyscall::Madvise).ok_or(Skip::Nothing)?;
    exit_ret(ctx)?;
    let a = syscall_done()?;
    // SAFETY: `a` points at this CPU's own map value.
    unsafe { (*a).advised_away_bytes += pending.len };
    Ok(())
}

// syscalls:sys_exit_brk: `ret` is the program break after the call (brk
// never fails in the usual sense: it returns the old break when it cannot
// move it), so the exit alone is enough.

#[tracepoint(category = "syscalls", name = "sys_exit_brk")]
pub fn mm_exit_brk(ctx: TracePointContext) -> u32 {
    let _ = try_mm_exit_brk(&ctx);
    0
}

fn try_mm_exit_brk(ctx: &TracePointContext) -> Result<(), Skip> {
    let brk = exit_ret(ctx)? as u64;
    syscall_done()?;
    let s = stats_of(current_tgid())?;
    // SAFETY: `s` points at a live map value.
    unsafe { (*s).brk = brk };
    Ok(())
}
