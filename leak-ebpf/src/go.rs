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
//! Where a probe meets the unexpected (a user-memory read that fails, a
//! bucket or special that does not match the table, a full ring buffer) it
//! says so with `aya_log_ebpf::debug!`: shown by `leak --debug` (or
//! `RUST_LOG=debug`), switched off at load otherwise (`AYA_LOG_LEVEL` 0).
//! No log statement is on the path a normal sample takes.
//!
//! Entry probes only: return probes crash Go programs (goroutine stacks move).
//! Which register holds which argument, where `special.kind` sits and the
//! `bucket` layout depend on the Go version; user space fills [`CONFIG`]
//! from its per-version table before load.

use aya_ebpf::{
    bindings::{pt_regs, BPF_RB_FORCE_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::ProbeContext,
};
use aya_log_ebpf::debug;
use leak_common::{
    AllocEvent, Counter, Event, EventKind, GoArg, ProbeConfig, ALLOC_HAS_STACK, ALLOC_HEADER,
    GO_ARG_REGS, GO_MAX_FRAMES,
};

use crate::{
    current_tgid,
    skip::{count, Skip},
    wakeup_flags, EVENTS,
};

/// Argument positions and layouts for this target's Go version: always set
/// by user space (the zeros are placeholders, not a Go release's layout).
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    alloc_addr_arg: 0,
    alloc_bucket_arg: 0,
    free_special_arg: 0,
    free_addr_arg: 0,
    free_size_arg: 0,
    special_kind_offset: 0,
    special_kind_profile: 0,
    bucket_size_offset: 0,
    bucket_nstk_offset: 0,
    bucket_stack_offset: 0,
};

/// SIGSTOP on Linux.
const SIGSTOP: u32 = 19;

/// Buckets whose stack user space has: (tgid, bucket address) → 1. LRU: a
/// bucket that falls out has its stack sent again, nothing is lost.
#[map]
static KNOWN_BUCKETS: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(65536, 0);

/// Room to build one `AllocEvent` (too big for the 512-byte BPF stack).
#[map]
static SCRATCH: PerCpuArray<AllocEvent> = PerCpuArray::with_max_entries(1, 0);

/// Calls of the user's `--work` function (slot 0), per CPU.
#[map]
static WORK_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Processes leak started itself (`leak trace -- CMD`) that must stop at
/// `runtime.main` until user space has set their sampling rate: tgid → 1.
/// Each entry is used once.
#[map]
static STOP_AT_START: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

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
    let args: [u64; GO_ARG_REGS] = [
        regs.rax, regs.rbx, regs.rcx, regs.rdi, regs.rsi, regs.r8, regs.r9, regs.r10, regs.r11,
    ];
    args.get(i as usize).copied().unwrap_or(0)
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: a uprobe's context is the user register set.
    unsafe { &*ctx.regs }
}

/// Reads a `T` from the traced program's memory.
#[inline(always)]
fn read_user<T>(addr: u64) -> Result<T, Skip> {
    // SAFETY: the helper checks the address; a fault is an error.
    Ok(unsafe { bpf_probe_read_user(addr as *const T) }?)
}

/// A record without a stack, from the current process, stamped now.
#[inline(always)]
fn event(kind: EventKind, addr: u64, size: u64) -> Event {
    Event {
        kind: kind as u32,
        tgid: current_tgid(),
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        addr,
        size,
    }
}

/// Sends `ev`; a full ring buffer is counted in `lost`.
#[inline(always)]
fn send(ev: &Event, flags: u64, lost: Counter) -> Result<(), Skip> {
    EVENTS.output::<Event>(ev, flags).map_err(|_| {
        count(lost);
        Skip::Full
    })
}

#[uprobe]
pub fn go_alloc(ctx: ProbeContext) -> u32 {
    let _ = try_go_alloc(&ctx);
    0
}

/// Sends one sample: the object, its bucket's size, and the bucket's stack
/// the first time this bucket is seen.
fn try_go_alloc(ctx: &ProbeContext) -> Result<(), Skip> {
    let cfg = config();
    let regs = regs(ctx);
    let bucket = go_arg(regs, cfg.alloc_bucket_arg);
    let ev = SCRATCH.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's scratch slot; nothing else runs here.
    let ev = unsafe { &mut *ev };
    let tgid = bpf_get_current_pid_tgid() >> 32;
    let key = [tgid, bucket];
    ev.kind = EventKind::Alloc as u32;
    ev.tgid = tgid as u32;
    // SAFETY: helper without preconditions.
    ev.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    ev.addr = go_arg(regs, cfg.alloc_addr_arg);
    // The bucket is runtime memory that lives as long as the process; a
    // failed read sends size 0.
    ev.size = match read_user::<u64>(bucket + cfg.bucket_size_offset as u64) {
        Ok(0) => {
            debug!(ctx, "go_alloc: bucket {:x} has size 0", bucket);
            0
        }
        Ok(size) => size,
        Err(_) => {
            debug!(ctx, "go_alloc: cannot read the size of bucket {:x}", bucket);
            0
        }
    };
    ev.bucket = bucket;
    ev.frames = 0;
    ev.flags = 0;
    ev.ip = regs.rip;
    // SAFETY: the value is copied out before the map can change.
    let known = unsafe { KNOWN_BUCKETS.get(key) }.is_some();
    if !known {
        match read_stack(ctx, &cfg, bucket, ev) {
            Ok(frames) => {
                ev.frames = frames;
                ev.flags = ALLOC_HAS_STACK;
            }
            Err(_) => count(Counter::StackFailed),
        }
    }
    // The header, and the frames only with a bucket's first sample.
    let frames = (ev.frames as usize).min(GO_MAX_FRAMES);
    let len = ALLOC_HEADER + frames * 8;
    // SAFETY: `len` never exceeds the size of the value `ev` points at.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const AllocEvent).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
        count(Counter::AllocDropped);
        debug!(
            ctx,
            "go_alloc: ring buffer full, sample of pid {} dropped", tgid
        );
        return Err(Skip::Full);
    }
    if ev.flags & ALLOC_HAS_STACK != 0 {
        // Only once user space is sure to get the stack.
        let _ = KNOWN_BUCKETS.insert(key, 1, 0);
    }
    Ok(())
}

/// Copies the bucket's stack into `ev.stack`; the number of pcs copied.
#[inline(always)]
fn read_stack(
    ctx: &ProbeContext,
    cfg: &ProbeConfig,
    bucket: u64,
    ev: &mut AllocEvent,
) -> Result<u32, Skip> {
    let nstk = read_user::<u64>(bucket + cfg.bucket_nstk_offset as u64).inspect_err(|_| {
        debug!(ctx, "go_alloc: cannot read nstk of bucket {:x}", bucket);
    })?;
    let n = if nstk == 0 || nstk > GO_MAX_FRAMES as u64 {
        debug!(ctx, "go_alloc: bucket {:x} has nstk {}", bucket, nstk);
        nstk.min(GO_MAX_FRAMES as u64)
    } else {
        nstk
    };
    // GO_MAX_FRAMES is 255: the mask is the bound the verifier sees.
    const _: () = assert!(GO_MAX_FRAMES == 0xff);
    let len = (n as u32 & 0xff) * 8;
    // SAFETY: `len` is at most the size of `ev.stack`; the source is
    // runtime memory, read with the fault-safe helper.
    let rc = unsafe {
        generated::bpf_probe_read_user(
            ev.stack.as_mut_ptr().cast(),
            len,
            (bucket + cfg.bucket_stack_offset as u64) as *const core::ffi::c_void,
        )
    };
    if rc < 0 {
        debug!(
            ctx,
            "go_alloc: cannot read the stack of bucket {:x}: {}", bucket, rc
        );
        return Err(Skip::Read);
    }
    if n == 0 {
        return Err(Skip::Read);
    }
    Ok(len / 8)
}

#[uprobe]
pub fn go_free(ctx: ProbeContext) -> u32 {
    let _ = try_go_free(&ctx);
    0
}

/// Sends a free when the special is the heap profile's.
fn try_go_free(ctx: &ProbeContext) -> Result<(), Skip> {
    let cfg = config();
    let regs = regs(ctx);
    let special = go_arg(regs, cfg.free_special_arg);
    let kind = read_user::<u8>(special + cfg.special_kind_offset as u64).inspect_err(|_| {
        debug!(
            ctx,
            "go_free: cannot read the kind of special {:x}", special
        );
    })?;
    if kind == 0 {
        // Kinds start at 1: the table's offset does not fit this runtime.
        debug!(ctx, "go_free: special {:x} has kind 0", special);
    }
    if kind as u32 != cfg.special_kind_profile {
        // A finalizer, a cleanup, a weak handle, …
        return Err(Skip::Nothing);
    }
    let addr = go_arg(regs, cfg.free_addr_arg);
    let ev = event(EventKind::Free, addr, go_arg(regs, cfg.free_size_arg));
    send(&ev, wakeup_flags(), Counter::FreeDropped).inspect_err(|_| {
        debug!(
            ctx,
            "go_free: ring buffer full, free of pid {} dropped", ev.tgid
        );
    })
}

/// Counts a call of the `--work` function: the unit of work bytes retained
/// are measured against (a Go function, or a native one: `--pid` traces).
/// One add on a per-CPU slot, nothing sent.
#[uprobe]
pub fn work_call(ctx: ProbeContext) -> u32 {
    let _ = try_work_call(&ctx);
    0
}

fn try_work_call(_ctx: &ProbeContext) -> Result<(), Skip> {
    let calls = WORK_CALLS.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    unsafe { *calls += 1 };
    Ok(())
}

/// A process of the traced binary starts its Go program (`runtime.main`,
/// once per process, after the runtime's own start-up): user space learns
/// of it at once, with its load bias, however short its life. A process
/// leak launched is stopped here (SIGSTOP, delivered as the probe returns,
/// before `main.main` runs) so its rate is set before its first allocation;
/// leak continues it.
#[uprobe]
pub fn go_start(ctx: ProbeContext) -> u32 {
    let _ = try_go_start(&ctx);
    0
}

fn try_go_start(ctx: &ProbeContext) -> Result<(), Skip> {
    let tgid = current_tgid();
    // SAFETY: the value is not kept.
    if unsafe { STOP_AT_START.get(tgid) }.is_some() {
        let _ = STOP_AT_START.remove(tgid);
        // SAFETY: helper without preconditions; signals the current process.
        let rc = unsafe { generated::bpf_send_signal(SIGSTOP) };
        if rc < 0 {
            debug!(ctx, "go_start: cannot stop pid {}: {}", tgid, rc);
        }
    }
    let ev = event(EventKind::Start, regs(ctx).rip, 0);
    // Wake user space now: a short job may need its rate written soon.
    send(&ev, BPF_RB_FORCE_WAKEUP as u64, Counter::AllocDropped).inspect_err(|_| {
        debug!(
            ctx,
            "go_start: ring buffer full, start of pid {} dropped", ev.tgid
        );
    })
}

/// A GC cycle ended (`runtime.gcMarkTermination`).
#[uprobe]
pub fn go_gc_cycle(ctx: ProbeContext) -> u32 {
    let _ = try_go_gc_cycle(&ctx);
    0
}

fn try_go_gc_cycle(ctx: &ProbeContext) -> Result<(), Skip> {
    let ev = event(EventKind::GcCycle, 0, 0);
    send(&ev, wakeup_flags(), Counter::GcDropped).inspect_err(|_| {
        debug!(
            ctx,
            "go_gc_cycle: ring buffer full, GC cycle of pid {} dropped", ev.tgid
        );
    })
}
