//! Uprobes on the Go runtime's heap profiler: two per sampled object, one
//! when the runtime records it and one when the sweeper frees it.
//!
//! * `runtime.setprofilebucket(p, b)` runs once per sampled allocation
//!   (about one per `MemProfileRate` bytes), after `mProf_Malloc` has put
//!   the sample in bucket `b`: the bucket holds the size and the stack Go
//!   captured for its own profile. The stack goes out with a bucket's first
//!   sample only ([`KNOWN_BUCKETS`]); later samples name the bucket. No
//!   stack walk in the kernel, and what leak reports is Go's own stack.
//! * `runtime.freeSpecial(s, p, size)` runs for each dead object that
//!   carries a special; it is a sampled object when `s.kind` is the profile
//!   kind (finalizers, cleanups and weak handles are other kinds).
//! * `runtime.gcMarkTermination` marks the end of each GC cycle.
//!
//! Each uprobe hit costs a trap into the kernel (about 1 µs here when the
//! probed instruction is emulated, several when it is single-stepped), so
//! the number of probes per sample is what tracing costs.
//!
//! Entry probes only: return probes crash Go programs (goroutine stacks move).
//! Which register holds which argument and where `special.kind` sits depend
//! on the Go version; user space fills [`CONFIG`] from its per-version table
//! before load.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, uprobe},
    maps::{LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use leak_common::{
    AllocEvent, Counter, Event, EventKind, GoArg, ProbeConfig, ALLOC_HAS_STACK, ALLOC_HEADER,
    BUCKET_NSTK_OFFSET, BUCKET_SIZE_OFFSET, BUCKET_STACK_OFFSET, GO_MAX_FRAMES,
};

use crate::{count, wakeup_flags, EVENTS};

/// Argument positions and layouts for this target's Go version (set by
/// user space).
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    alloc_addr_arg: 0,
    alloc_bucket_arg: 1,
    free_special_arg: 0,
    free_addr_arg: 1,
    free_size_arg: 2,
    special_kind_offset: 16,
    special_kind_profile: 4,
    _pad: 0,
};

/// Buckets whose stack user space has: (tgid, bucket address) → 1. LRU: a
/// bucket that falls out has its stack sent again, nothing is lost.
#[map]
static KNOWN_BUCKETS: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(65536, 0);

/// Room to build one `AllocEvent` (too big for the 512-byte BPF stack).
#[map]
static SCRATCH: PerCpuArray<AllocEvent> = PerCpuArray::with_max_entries(1, 0);

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
pub fn go_alloc(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let regs = regs(&ctx);
    let bucket = go_arg(regs, cfg.alloc_bucket_arg);
    let Some(ev) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let id = bpf_get_current_pid_tgid();
    let tgid = id >> 32;
    let key = [tgid, bucket];
    // SAFETY: `ev` is this CPU's scratch slot; nothing else runs here. The
    // bucket is runtime memory that lives as long as the process; a failed
    // read leaves zeros.
    unsafe {
        (*ev).kind = EventKind::Alloc as u32;
        (*ev).tgid = tgid as u32;
        (*ev).timestamp_ns = bpf_ktime_get_ns();
        (*ev).addr = go_arg(regs, cfg.alloc_addr_arg);
        (*ev).size = bpf_probe_read_user((bucket + BUCKET_SIZE_OFFSET) as *const u64).unwrap_or(0);
        (*ev).bucket = bucket;
        (*ev).frames = 0;
        (*ev).flags = 0;
        let known = KNOWN_BUCKETS.get(&key).is_some();
        if !known {
            let nstk =
                bpf_probe_read_user((bucket + BUCKET_NSTK_OFFSET) as *const u64).unwrap_or(0);
            let n = if nstk > GO_MAX_FRAMES as u64 {
                GO_MAX_FRAMES as u64
            } else {
                nstk
            };
            // GO_MAX_FRAMES is 255: the mask is the bound the verifier sees.
            const _: () = assert!(GO_MAX_FRAMES == 0xff);
            let len = (n as u32 & 0xff) * 8;
            let rc = generated::bpf_probe_read_user(
                (*ev).stack.as_mut_ptr().cast(),
                len,
                (bucket + BUCKET_STACK_OFFSET) as *const core::ffi::c_void,
            );
            if rc < 0 || n == 0 {
                count(Counter::StackFailed);
            } else {
                (*ev).frames = len / 8;
                (*ev).flags = ALLOC_HAS_STACK;
            }
        }
        // The header, and the frames only with a bucket's first sample.
        let frames = ((*ev).frames as usize).min(GO_MAX_FRAMES);
        let len = ALLOC_HEADER + frames * 8;
        // SAFETY: `len` never exceeds the size of the value `ev` points at.
        let bytes = core::slice::from_raw_parts(ev.cast::<u8>(), len);
        if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
            count(Counter::AllocDropped);
        } else if (*ev).flags & ALLOC_HAS_STACK != 0 {
            // Only once user space is sure to get the stack.
            let _ = KNOWN_BUCKETS.insert(&key, &1, 0);
        }
    }
    0
}

#[uprobe]
pub fn go_free(ctx: ProbeContext) -> u32 {
    let cfg = config();
    let regs = regs(&ctx);
    let special = go_arg(regs, cfg.free_special_arg);
    // SAFETY: a read of runtime memory; a failed read is not a profile kind.
    let kind =
        unsafe { bpf_probe_read_user((special + cfg.special_kind_offset as u64) as *const u8) }
            .unwrap_or(0);
    if kind as u32 != cfg.special_kind_profile {
        return 0;
    }
    let ev = Event {
        kind: EventKind::Free as u32,
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        addr: go_arg(regs, cfg.free_addr_arg),
        size: go_arg(regs, cfg.free_size_arg),
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
