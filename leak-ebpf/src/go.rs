//! Uprobes on the Go runtime's heap profiler.
//!
//! * `runtime.mProf_Malloc` runs once per sampled allocation (about one per
//!   `MemProfileRate` bytes): record the object's address, size and user
//!   stack, and keep it per thread until `runtime.setprofilebucket(p, b)`
//!   confirms the runtime recorded it (it returns early, recording nothing,
//!   while a new M is being set up; such an object is never reported freed).
//! * `runtime.freeSpecial(s, p, size)` runs for each dead object that carries a
//!   special; for the profile special it calls `runtime.mProf_Free` next on the
//!   same thread. Remember `p` per thread at `freeSpecial`, report it as freed
//!   at `mProf_Free` — finalizer specials never reach `mProf_Free`.
//! * `runtime.gcMarkTermination` marks the end of each GC cycle.
//!
//! Entry probes only: return probes crash Go programs (goroutine stacks move).
//! Which register holds which argument depends on the Go version; user space
//! fills [`CONFIG`] from its per-version table before load.

use aya_ebpf::{
    bindings::{pt_regs, BPF_F_USER_STACK},
    helpers::{bpf_get_current_pid_tgid, bpf_get_stack, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
    EbpfContext,
};
use leak_common::{
    AllocEvent, Counter, Event, EventKind, GoArg, ProbeConfig, ALLOC_HEADER, MAX_FRAMES,
};

use crate::{count, wakeup_flags, EVENTS};

/// Argument positions for this target's Go version (set by user space).
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    malloc_addr_arg: 0,
    malloc_size_arg: 1,
    free_addr_arg: 1,
    free_size_arg: 2,
    confirm_addr_arg: 0,
    _pad: 0,
};

/// Sample taken at `mProf_Malloc`, per thread, until `setprofilebucket`
/// confirms it. Bounded; an entry that is never confirmed is replaced by the
/// thread's next sample or ages out.
#[map]
static PENDING_ALLOC: LruHashMap<u64, AllocEvent> = LruHashMap::with_max_entries(1024, 0);

/// Room to build one `AllocEvent` (too big for the 512-byte BPF stack).
#[map]
static SCRATCH: PerCpuArray<AllocEvent> = PerCpuArray::with_max_entries(1, 0);

/// Object passed to `freeSpecial`, per thread, until `mProf_Free` confirms it
/// was a profiled object. LRU: bounded, and a stale entry just ages out.
#[map]
static PENDING_FREE: LruHashMap<u64, [u64; 2]> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn config() -> ProbeConfig {
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the default values in.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Reads integer argument `i` of Go's register ABI (amd64: RAX, RBX, RCX,
/// RDI, RSI, R8, R9, R10, R11).
///
/// The verifier only allows context loads at constant offsets, and LLVM
/// folds a `match` on `i` into one load at a computed offset. So: load all
/// nine at fixed offsets into a stack array, then index that.
#[inline(always)]
fn go_arg(regs: &pt_regs, i: GoArg) -> u64 {
    let args: [u64; 9] = [
        regs.rax, regs.rbx, regs.rcx, regs.rdi, regs.rsi, regs.r8, regs.r9, regs.r10, regs.r11,
    ];
    args.get(i as usize).copied().unwrap_or(0)
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: a uprobe's context is the user register set.
    unsafe { &*ctx.regs }
}

#[uprobe]
pub fn go_malloc(ctx: ProbeContext) -> u32 {
    count(Counter::AllocSeen);
    let cfg = config();
    let regs = regs(&ctx);
    let Some(ev) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let key = bpf_get_current_pid_tgid();
    // SAFETY: `ev` is this CPU's scratch slot; nothing else runs here.
    unsafe {
        (*ev).kind = EventKind::Alloc as u32;
        (*ev).tgid = (key >> 32) as u32;
        (*ev).timestamp_ns = bpf_ktime_get_ns();
        (*ev).addr = go_arg(regs, cfg.malloc_addr_arg);
        (*ev).size = go_arg(regs, cfg.malloc_size_arg);
        // Before the frame is set up the return address is at SP.
        (*ev).caller = bpf_probe_read_user(regs.rsp as *const u64).unwrap_or(0);
        (*ev)._pad = 0;
        let n = bpf_get_stack(
            ctx.as_ptr(),
            (*ev).stack.as_mut_ptr().cast(),
            (MAX_FRAMES * 8) as u32,
            BPF_F_USER_STACK as u64,
        );
        if n < 0 {
            count(Counter::StackFailed);
            (*ev).frames = 0;
        } else {
            (*ev).frames = (n as u32) / 8;
        }
        // A sample still pending here was dropped by the runtime.
        if PENDING_ALLOC.get(&key).is_some() {
            count(Counter::AllocUnconfirmed);
        }
        if PENDING_ALLOC.insert(&key, &*ev, 0).is_err() {
            count(Counter::AllocDropped);
        }
    }
    0
}

#[uprobe]
pub fn go_alloc_confirm(ctx: ProbeContext) -> u32 {
    let addr = go_arg(regs(&ctx), config().confirm_addr_arg);
    let key = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING_ALLOC.get_ptr(&key) else {
        return 0;
    };
    // SAFETY: map value pointer from a successful lookup.
    if unsafe { (*ev).addr } != addr {
        return 0;
    }
    // Send the header and the frames actually captured, not all 127 slots:
    // most stacks are a few dozen frames, a quarter of the record or less.
    // SAFETY: map value pointer from a successful lookup.
    let frames = unsafe { (*ev).frames } as usize;
    let len = ALLOC_HEADER + frames.min(MAX_FRAMES) * 8;
    // SAFETY: `len` never exceeds the size of the value `ev` points at.
    let bytes = unsafe { core::slice::from_raw_parts(ev.cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
        count(Counter::AllocDropped);
    }
    let _ = PENDING_ALLOC.remove(&key);
    0
}

#[uprobe]
pub fn go_free_special(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let regs = regs(&ctx);
    let obj = [
        go_arg(regs, cfg.free_addr_arg),
        go_arg(regs, cfg.free_size_arg),
    ];
    let _ = PENDING_FREE.insert(&bpf_get_current_pid_tgid(), &obj, 0);
    0
}

#[uprobe]
pub fn go_mprof_free(_ctx: ProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(obj) = (unsafe { PENDING_FREE.get(&key) }).copied() else {
        return 0;
    };
    let _ = PENDING_FREE.remove(&key);
    count(Counter::FreeSeen);
    let ev = Event {
        kind: EventKind::Free as u32,
        tgid: (key >> 32) as u32,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        addr: obj[0],
        size: obj[1],
    };
    if EVENTS.output::<Event>(&ev, wakeup_flags()).is_err() {
        count(Counter::FreeDropped);
    }
    0
}

/// Calls of the user's `--work` function (slot 0), per CPU.
#[map]
static WORK_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts a call of the `--work` function: the unit of work bytes retained
/// are measured against. One add on a per-CPU slot, nothing sent.
#[uprobe]
pub fn go_work_call(_ctx: ProbeContext) -> u32 {
    if let Some(c) = WORK_CALLS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
    0
}

#[uprobe]
pub fn go_gc_cycle(_ctx: ProbeContext) -> u32 {
    let ev = Event {
        kind: EventKind::GcCycle as u32,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        addr: 0,
        size: 0,
    };
    if EVENTS.output::<Event>(&ev, wakeup_flags()).is_err() {
        count(Counter::GcDropped);
    }
    0
}
