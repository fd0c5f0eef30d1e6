//! Native allocations of one process (`leak trace --pid` on a program that
//! is not Go, or `--native` on one with cgo): uprobes on the allocator that
//! serves it (malloc, calloc, realloc, free, the aligned family, C++'s
//! operator new and delete where the allocator defines its own, in
//! whichever object defines them for that process).
//!
//! Sampled by bytes, in the kernel, as Go and tcmalloc sample: each CPU
//! counts down the bytes asked for; the allocation that crosses zero is
//! sampled and the count starts again from a gap drawn from an exponential
//! with mean `--rate` (user space fills a table of draws). So an allocation
//! of `s` bytes is sampled with probability `1 - exp(-s/rate)`, which user
//! space undoes when it weighs a sample, and only sampled allocations take
//! a stack. Their blocks go in a map of live blocks; a free looks its
//! address up there (one lookup for an unsampled block) and is sent only
//! for a sampled one.
//!
//! The block's address is only known when malloc returns: a sampled call
//! keeps its record per thread until the return probe, which every call
//! pays (C code: no goroutine stacks to confuse).

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_prandom_u32, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_user, generated,
    },
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use leak_common::{
    Counter, Event, EventKind, HeapConfig, NativeAlloc, NativeGoConfig, NATIVE_GO_FRAMES,
    NATIVE_HEADER, NATIVE_STACK_WORDS, SAMPLE_GAPS,
};

use crate::{
    skip::{count, Skip},
    wakeup_flags, EVENTS,
};

/// The traced process (set by user space).
#[unsafe(no_mangle)]
static NATIVE_CONFIG: HeapConfig = HeapConfig { tgid: 0, _pad: 0 };

/// Where a Go program keeps the goroutine that called into C (set by user
/// space for a Go program; all 0 otherwise).
#[unsafe(no_mangle)]
static NATIVE_GO_CONFIG: NativeGoConfig = NativeGoConfig {
    task_fsbase: 0,
    tls_g: 0,
    g_m: 0,
    g_stack_hi: 0,
    g_sched_sp: 0,
    g_sched_bp: 0,
    m_g0: 0,
    m_curg: 0,
};

/// 1 when the allocator's realloc tail-calls its malloc for a null block
/// (glibc's does): malloc's probe then sees that call, realloc's leaves it.
/// A map, not a global: a program leak starts has its allocator found
/// after the programs are loaded.
#[map]
static NATIVE_REALLOC_NULL_IS_MALLOC: Array<u32> = Array::with_max_entries(1, 0);

/// Gaps between samples, in bytes: draws of an exponential with mean
/// `--rate` (all 0 at `--rate 1`: every allocation is sampled).
#[map]
static SAMPLE_GAPS_MAP: Array<u64> = Array::with_max_entries(SAMPLE_GAPS, 0);

/// Bytes left until the next sample, per CPU.
#[map]
static COUNTDOWN: PerCpuArray<i64> = PerCpuArray::with_max_entries(1, 0);

/// A sampled allocation between its call and its return, per thread.
/// Sized by user space when native allocations are traced.
#[map]
static NATIVE_PENDING: LruHashMap<u64, NativeAlloc> = LruHashMap::with_max_entries(1, 0);

/// Sampled blocks still allocated: address → bytes asked for. Sized by user
/// space when native allocations are traced (1 entry otherwise).
#[map]
static LIVE: HashMap<u64, u64> = HashMap::with_max_entries(1, 0);

/// Processes to stop at their program's entry point (`leak trace --
/// CMD`): tgid → 1, used once.
#[map]
static NATIVE_STOP: HashMap<u32, u8> = HashMap::with_max_entries(1, 0);

/// A pending record this old is from a call whose return was never seen.
const STALE_NS: u64 = 100_000_000;

/// SIGSTOP on Linux.
const SIGSTOP: u32 = 19;

/// Room to build one `NativeAlloc` (too big for the 512-byte BPF stack).
#[map]
static NATIVE_SCRATCH: PerCpuArray<NativeAlloc> = PerCpuArray::with_max_entries(1, 0);

/// The current thread's pid_tgid, if it belongs to the traced process.
#[inline(always)]
fn traced() -> Result<u64, Skip> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the default in.
    let cfg = unsafe { core::ptr::read_volatile(&NATIVE_CONFIG) };
    if (id >> 32) as u32 == cfg.tgid {
        Ok(id)
    } else {
        Err(Skip::Nothing)
    }
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: a uprobe's context is the user register set.
    unsafe { &*ctx.regs }
}

/// Whether an allocation of `size` bytes is sampled: counts it down on
/// this CPU, and on crossing zero draws the next gap.
#[inline(always)]
fn sampled(size: u64) -> Result<(), Skip> {
    let left = COUNTDOWN.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's slot; nothing else runs here until the program
    // returns.
    let left = unsafe { &mut *left };
    *left -= size as i64;
    if *left > 0 {
        return Err(Skip::Nothing);
    }
    // SAFETY: helper without preconditions.
    let pick = unsafe { bpf_get_prandom_u32() } % SAMPLE_GAPS;
    let gap = SAMPLE_GAPS_MAP.get(pick).copied().unwrap_or(0);
    *left = gap as i64;
    Ok(())
}

/// Starts a sampled allocation of `size` bytes: its registers and the top
/// of its user stack, kept until the call returns.
#[inline(always)]
fn begin(ctx: &ProbeContext, id: u64, size: u64) -> Result<(), Skip> {
    sampled(size)?;
    // A call made inside a sampled one on the same stack (glibc's realloc
    // of a large block calls its malloc) belongs to the outer one, whose
    // record stays. A record left by a call that never returned is from a
    // frame no longer on the stack (at or below this one) or old (an
    // allocator call takes microseconds), and is replaced.
    // SAFETY: the value is copied out at once.
    if let Some(outer) = unsafe { NATIVE_PENDING.get(&id) } {
        // SAFETY: helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        if outer.sp > regs(ctx).rsp && now.saturating_sub(outer.time_ns) < STALE_NS {
            return Err(Skip::Nothing);
        }
    }
    let ev = NATIVE_SCRATCH.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's scratch slot, as above.
    let ev = unsafe { &mut *ev };
    let r = regs(ctx);
    ev.kind = EventKind::NativeAlloc as u32;
    ev.tgid = (id >> 32) as u32;
    ev.addr = 0;
    ev.size = size;
    ev.ip = r.rip;
    ev.sp = r.rsp;
    ev.bp = r.rbp;
    ev._pad = 0;
    // As much of the stack as is mapped above sp, in three tries.
    ev.words = if read_words(ev, NATIVE_STACK_WORDS, r.rsp) {
        NATIVE_STACK_WORDS as u32
    } else if read_words(ev, NATIVE_STACK_WORDS / 8, r.rsp) {
        (NATIVE_STACK_WORDS / 8) as u32
    } else if read_words(ev, 16, r.rsp) {
        16
    } else {
        count(Counter::StackFailed);
        0
    };
    ev.go_frames = 0;
    ev._pad2 = 0;
    // SAFETY: helper without preconditions.
    ev.time_ns = unsafe { bpf_ktime_get_ns() };
    let _ = go_frames(ev);
    NATIVE_PENDING.insert(id, ev, 0).map_err(|_| {
        count(Counter::AllocDropped);
        Skip::Full
    })
}

/// Reads a word of the current process's memory.
#[inline(always)]
fn user_word(addr: u64) -> Result<u64, Skip> {
    // SAFETY: the fault-safe helper; any address is allowed.
    unsafe { bpf_probe_read_user(addr as *const u64) }.map_err(|_| Skip::Nothing)
}

/// In a Go program, C code called from a goroutine (cgo) runs on the
/// thread's system stack (`g0`), which the stack copy covers; the
/// goroutine's own frames are on its stack. This finds them: the thread's
/// `g` from its TLS (on a system stack, `g == g.m.g0`), the goroutine
/// `m.curg` whose call is running, and its frames from the frame pointer
/// it left (`sched.bp`), walked by Go's frame pointers within its stack
/// (above `sched.sp`, below `stack.hi`).
#[inline(always)]
fn go_frames(ev: &mut NativeAlloc) -> Result<(), Skip> {
    // SAFETY: read-only global rewritten by the loader.
    let cfg = unsafe { core::ptr::read_volatile(&NATIVE_GO_CONFIG) };
    if cfg.m_curg == 0 {
        return Err(Skip::Nothing);
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: the fault-safe helper, at an offset BTF gave.
    let fsbase: u64 =
        unsafe { bpf_probe_read_kernel((task + u64::from(cfg.task_fsbase)) as *const u64) }
            .map_err(|_| Skip::Nothing)?;
    let g = user_word(fsbase.wrapping_add(cfg.tls_g as i64 as u64))?;
    if g == 0 {
        return Err(Skip::Nothing);
    }
    let m = user_word(g + u64::from(cfg.g_m))?;
    if m == 0 || user_word(m + u64::from(cfg.m_g0))? != g {
        return Err(Skip::Nothing);
    }
    let curg = user_word(m + u64::from(cfg.m_curg))?;
    if curg == 0 || curg == g {
        return Err(Skip::Nothing);
    }
    let sp = user_word(curg + u64::from(cfg.g_sched_sp))?;
    let mut bp = user_word(curg + u64::from(cfg.g_sched_bp))?;
    let hi = user_word(curg + u64::from(cfg.g_stack_hi))?;
    if sp == 0 || sp >= hi {
        return Err(Skip::Nothing);
    }
    // `sched.bp` is the frame pointer of the function that switched
    // stacks (asmcgocall, or cgocall where asmcgocall keeps no frame): the
    // walk starts with its return address.
    let mut n = 0;
    while n < NATIVE_GO_FRAMES {
        if bp < sp || bp + 16 > hi {
            break;
        }
        let (Ok(ret), Ok(up)) = (user_word(bp + 8), user_word(bp)) else {
            break;
        };
        if ret == 0 {
            break;
        }
        ev.go_pcs[n] = ret;
        n += 1;
        if up <= bp {
            break;
        }
        bp = up;
    }
    ev.go_frames = n as u32;
    Ok(())
}

/// Copies `n` words of user memory from `src` into the start of `ev.stack`.
#[inline(always)]
fn read_words(ev: &mut NativeAlloc, n: usize, src: u64) -> bool {
    let n = n.min(NATIVE_STACK_WORDS);
    // SAFETY: at most the size of `stack`; the source is user memory, read
    // with the fault-safe helper.
    let rc = unsafe {
        generated::bpf_probe_read_user(
            ev.stack.as_mut_ptr().cast(),
            (n * 8) as u32,
            src as *const core::ffi::c_void,
        )
    };
    rc == 0
}

/// Ends a free of `addr`: if it is a sampled block, forgets it and tells
/// user space.
#[inline(always)]
fn release(id: u64, addr: u64) -> Result<(), Skip> {
    if addr == 0 {
        return Err(Skip::Nothing);
    }
    // SAFETY: a copy is taken before the entry is removed.
    let size = unsafe { LIVE.get(&addr) }.copied().ok_or(Skip::Nothing)?;
    let _ = LIVE.remove(&addr);
    let ev = Event {
        kind: EventKind::NativeFree as u32,
        tgid: (id >> 32) as u32,
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        addr,
        size,
    };
    EVENTS.output::<Event>(&ev, wakeup_flags()).map_err(|_| {
        count(Counter::FreeDropped);
        Skip::Full
    })
}

#[uprobe]
pub fn native_malloc(ctx: ProbeContext) -> u32 {
    let _ = try_native_malloc(&ctx);
    0
}

fn try_native_malloc(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    begin(ctx, id, regs(ctx).rdi)
}

#[uprobe]
pub fn native_calloc(ctx: ProbeContext) -> u32 {
    let _ = try_native_calloc(&ctx);
    0
}

fn try_native_calloc(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let r = regs(ctx);
    begin(ctx, id, r.rdi.wrapping_mul(r.rsi))
}

#[uprobe]
pub fn native_realloc(ctx: ProbeContext) -> u32 {
    let _ = try_native_realloc(&ctx);
    0
}

/// realloc(p, size): the old block is freed (if sampled), the new one may
/// be sampled. A realloc that fails keeps the old block: rare, and then
/// its later free is not seen.
fn try_native_realloc(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let r = regs(ctx);
    if r.rdi == 0 && NATIVE_REALLOC_NULL_IS_MALLOC.get(0).copied() == Some(1) {
        return Err(Skip::Nothing);
    }
    let _ = release(id, r.rdi);
    begin(ctx, id, r.rsi)
}

#[uprobe]
pub fn native_reallocarray(ctx: ProbeContext) -> u32 {
    let _ = try_native_reallocarray(&ctx);
    0
}

/// reallocarray(p, n, size): realloc of `n * size` bytes (where the
/// allocator does not serve it through its realloc, which is then probed
/// instead).
fn try_native_reallocarray(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let r = regs(ctx);
    let _ = release(id, r.rdi);
    begin(ctx, id, r.rsi.wrapping_mul(r.rdx))
}

#[uprobe]
pub fn native_memalign(ctx: ProbeContext) -> u32 {
    let _ = try_native_memalign(&ctx);
    0
}

/// memalign(alignment, size), aligned_alloc(alignment, size).
fn try_native_memalign(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    begin(ctx, id, regs(ctx).rsi)
}

#[uprobe]
pub fn native_posix_memalign(ctx: ProbeContext) -> u32 {
    let _ = try_native_posix_memalign(&ctx);
    0
}

/// posix_memalign(&p, alignment, size): the block comes back through `p`,
/// kept in `addr` until the return.
fn try_native_posix_memalign(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let r = regs(ctx);
    begin(ctx, id, r.rdx)?;
    let pending = NATIVE_PENDING.get_ptr_mut(id).ok_or(Skip::Nothing)?;
    // SAFETY: a map value from a successful lookup, this thread's own.
    unsafe { (*pending).addr = r.rdi };
    Ok(())
}

#[uretprobe]
pub fn native_alloc_return(ctx: RetProbeContext) -> u32 {
    let _ = try_native_alloc_return(&ctx);
    0
}

fn try_native_alloc_return(ctx: &RetProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let addr: u64 = ctx.ret();
    finish(id, |_| addr)
}

#[uretprobe]
pub fn native_posix_memalign_return(ctx: RetProbeContext) -> u32 {
    let _ = try_native_posix_memalign_return(&ctx);
    0
}

/// posix_memalign returned: 0 and the block in `*p`, or an error.
fn try_native_posix_memalign_return(ctx: &RetProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    let rc: u64 = ctx.ret();
    finish(id, |out| {
        if rc as u32 == 0 {
            user_word(out).unwrap_or(0)
        } else {
            0
        }
    })
}

/// Ends this thread's sampled allocation, if it has one: the block is at
/// `addr(pending.addr)` (0: the call failed), followed and sent.
#[inline(always)]
fn finish(id: u64, addr: impl FnOnce(u64) -> u64) -> Result<(), Skip> {
    let pending = NATIVE_PENDING.get_ptr_mut(id).ok_or(Skip::Nothing)?;
    // SAFETY: a map value from a successful lookup; the ring buffer copies
    // it before the entry is removed.
    let ev = unsafe { &mut *pending };
    let addr = addr(ev.addr);
    let sent = if addr != 0 {
        ev.addr = addr;
        match LIVE.insert(&addr, &ev.size, 0) {
            Ok(()) => send(ev).inspect_err(|_| {
                let _ = LIVE.remove(&addr);
            }),
            Err(_) => {
                count(Counter::LiveFull);
                Err(Skip::Full)
            }
        }
    } else {
        Err(Skip::Nothing)
    };
    let _ = NATIVE_PENDING.remove(&id);
    sent
}

/// Sends `ev` with the stack words it carries only.
#[inline(always)]
fn send(ev: &NativeAlloc) -> Result<(), Skip> {
    // SAFETY: plain integers; the byte view covers the whole struct.
    let bytes: &[u8; NATIVE_HEADER + NATIVE_STACK_WORDS * 8] =
        unsafe { &*(ev as *const NativeAlloc).cast() };
    let rc = match ev.words as usize {
        NATIVE_STACK_WORDS => EVENTS.output::<[u8]>(&bytes[..], wakeup_flags()),
        w if w >= NATIVE_STACK_WORDS / 8 => {
            EVENTS.output::<[u8]>(&bytes[..NATIVE_HEADER + NATIVE_STACK_WORDS], wakeup_flags())
        }
        _ => EVENTS.output::<[u8]>(&bytes[..NATIVE_HEADER + 16 * 8], wakeup_flags()),
    };
    rc.map_err(|_| {
        count(Counter::AllocDropped);
        Skip::Full
    })
}

#[uprobe]
pub fn native_free(ctx: ProbeContext) -> u32 {
    let _ = try_native_free(&ctx);
    0
}

fn try_native_free(ctx: &ProbeContext) -> Result<(), Skip> {
    let id = traced()?;
    release(id, regs(ctx).rdi)
}

#[uprobe]
pub fn native_entry(ctx: ProbeContext) -> u32 {
    let _ = try_native_entry(&ctx);
    0
}

/// The launched program reached its entry point, its libraries mapped:
/// stop it until its allocator is probed.
fn try_native_entry(_ctx: &ProbeContext) -> Result<(), Skip> {
    let tgid = (traced()? >> 32) as u32;
    // SAFETY: the value is not kept.
    unsafe { NATIVE_STOP.get(&tgid) }.ok_or(Skip::Nothing)?;
    let _ = NATIVE_STOP.remove(&tgid);
    // SAFETY: helper without preconditions; signals the current process.
    let _ = unsafe { generated::bpf_send_signal(SIGSTOP) };
    Ok(())
}
