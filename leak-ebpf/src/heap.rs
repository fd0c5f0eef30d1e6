//! Heap growth of any binary, for `leak trace --syscalls`: the user stack
//! at every brk and anonymous mmap of one process, and its munmaps.
//!
//! At sys_enter the stack is taken and kept per thread (only the exit says
//! where the mapping landed, or where the break now is); at sys_exit the
//! record goes to the ring buffer. munmap is sent at entry, without a stack.
//! Besides the frame-pointer walk, each record carries the user stack's
//! memory from the stack pointer up: libc has no frame pointers, so the walk
//! loses the frames between the syscall and the first caller that keeps
//! one, and user space finds their return addresses there.
//!
//! These are new programs on the same tracepoints `leak top` uses (mm.rs),
//! loaded only by `leak trace --syscalls` and filtered to one tgid.

use aya_ebpf::{
    bindings::{pt_regs, BPF_F_USER_STACK},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_stack, bpf_probe_read_kernel,
        bpf_task_pt_regs, generated,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use leak_common::{Counter, EventKind, HeapConfig, MapCall, MapEvent, MAX_FRAMES, STACK_WORDS};

use crate::{
    failed, page_round,
    skip::{count, Skip},
    EVENTS,
};

/// The traced process (set by user space).
#[unsafe(no_mangle)]
static HEAP_CONFIG: HeapConfig = HeapConfig { tgid: 0, _pad: 0 };

/// A brk or mmap between its entry and its exit, per thread.
#[map]
static HEAP_PENDING: LruHashMap<u64, MapEvent> = LruHashMap::with_max_entries(1024, 0);

/// Room to build one `MapEvent` (too big for the 512-byte BPF stack).
#[map]
static HEAP_SCRATCH: PerCpuArray<MapEvent> = PerCpuArray::with_max_entries(1, 0);

/// `mmap` flag of memory backed by no file.
const MAP_ANONYMOUS: u64 = 0x20;

/// The current thread's pid_tgid, if it belongs to the traced process.
#[inline(always)]
fn traced() -> Result<u64, Skip> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the default in.
    let cfg = unsafe { core::ptr::read_volatile(&HEAP_CONFIG) };
    if (id >> 32) as u32 == cfg.tgid {
        Ok(id)
    } else {
        Err(Skip::Nothing)
    }
}

/// Fills this CPU's scratch record: call, stack, stack memory.
#[inline(always)]
fn record(
    ctx: &TracePointContext,
    id: u64,
    call: MapCall,
    addr: u64,
    len: u64,
    with_stack: bool,
) -> Result<&'static mut MapEvent, Skip> {
    let ev = HEAP_SCRATCH.get_ptr_mut(0).ok_or(Skip::NoSlot)?;
    // SAFETY: this CPU's scratch slot; nothing else runs here until the
    // program returns.
    let ev = unsafe { &mut *ev };
    ev.kind = EventKind::Map as u32;
    ev.tgid = (id >> 32) as u32;
    ev.call = call as u32;
    ev.addr = addr;
    ev.len = len;
    ev.frames = 0;
    ev.words = 0;
    ev._pad = 0;
    ev.sp = 0;
    ev.bp = 0;
    if with_stack {
        user_stack(ctx, ev);
    }
    Ok(ev)
}

/// Fills `ev`'s frame-pointer walk, stack and frame pointers, and the
/// stack's memory from the stack pointer up.
#[inline(always)]
fn user_stack(ctx: &TracePointContext, ev: &mut MapEvent) {
    // SAFETY: the destination is `ev.stack`, exactly the size passed.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            ev.stack.as_mut_ptr().cast(),
            (MAX_FRAMES * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if n < 0 {
        count(Counter::StackFailed);
    } else {
        ev.frames = (n as u32) / 8;
    }
    // SAFETY: the current task's BTF pointer, passed straight back to the
    // helper that returns the user registers saved at syscall entry.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as usize as *const pt_regs;
    // SAFETY: kernel reads through the helper; a fault reads as 0.
    let sp = unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rsp)) }.unwrap_or(0);
    // SAFETY: as above.
    let bp = unsafe { bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rbp)) }.unwrap_or(0);
    ev.sp = sp;
    ev.bp = bp;
    if sp == 0 {
        return;
    }
    if read_words(&mut ev.stack_words, STACK_WORDS, sp) {
        ev.words = STACK_WORDS as u32;
    } else if read_words(&mut ev.stack_words, STACK_WORDS / 4, sp) {
        // Near the top of the stack: a quarter still helps.
        ev.words = (STACK_WORDS / 4) as u32;
    }
}

/// Copies `n` words of user memory from `src` into the start of `words`.
#[inline(always)]
fn read_words(words: &mut [u64; STACK_WORDS], n: usize, src: u64) -> bool {
    let n = n.min(STACK_WORDS);
    // SAFETY: at most the size of `words`; the source is user memory, read
    // with the fault-safe helper.
    let rc = unsafe {
        generated::bpf_probe_read_user(
            words.as_mut_ptr().cast(),
            (n * 8) as u32,
            src as *const core::ffi::c_void,
        )
    };
    rc == 0
}

/// Keeps the scratch record until this thread's sys_exit.
#[inline(always)]
fn keep(id: u64, ev: &MapEvent) -> Result<(), Skip> {
    HEAP_PENDING.insert(id, ev, 0).map_err(|_| {
        count(Counter::MapDropped);
        Skip::Full
    })
}

/// Sends `ev`; a full ring buffer is counted as a loss.
#[inline(always)]
fn send(ev: &MapEvent) -> Result<(), Skip> {
    EVENTS.output::<MapEvent>(ev, 0).map_err(|_| {
        count(Counter::MapDropped);
        Skip::Full
    })
}

/// Sends this thread's pending `call` with `addr` set to the return value.
#[inline(always)]
fn send_pending(ctx: &TracePointContext, id: u64, call: MapCall) -> Result<(), Skip> {
    let pending = HEAP_PENDING.get_ptr_mut(id).ok_or(Skip::Nothing)?;
    // SAFETY: `SysExit` is every sys_exit event's format (pasted above it).
    let ret = unsafe { ctx.read_at::<SysExit>(0) }
        .map(|e| e.ret)
        .unwrap_or(-1);
    // SAFETY: a map value from a successful lookup; the ring buffer copies
    // it before the entry is removed.
    let ev = unsafe { &mut *pending };
    let sent = if ev.call == call as u32 && !failed(ret) {
        ev.addr = ret as u64;
        send(ev)
    } else {
        Err(Skip::Nothing)
    };
    let _ = HEAP_PENDING.remove(id);
    sent
}

// syscalls:sys_enter_brk (/sys/kernel/tracing/events/syscalls/sys_enter_brk/format, kernel 6.18)
//
// name: sys_enter_brk
// ID: 695
// format:
// 	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
// 	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
// 	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
// 	field:int common_pid;	offset:4;	size:4;	signed:1;
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long brk;	offset:16;	size:8;	signed:0;
//
// print fmt: "brk: 0x%08lx", ((unsigned long)(REC->brk))

/// The fields of `syscalls:sys_enter_brk`.
#[repr(C)]
struct SysEnterBrk {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    brk: u64,
}

// syscalls:sys_enter_mmap (/sys/kernel/tracing/events/syscalls/sys_enter_mmap/format)
//
// name: sys_enter_mmap
// ID: 174
// format:
// 	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
// 	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
// 	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
// 	field:int common_pid;	offset:4;	size:4;	signed:1;
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long addr;	offset:16;	size:8;	signed:0;
// 	field:unsigned long len;	offset:24;	size:8;	signed:0;
// 	field:unsigned long prot;	offset:32;	size:8;	signed:0;
// 	field:unsigned long flags;	offset:40;	size:8;	signed:0;
// 	field:unsigned long fd;	offset:48;	size:8;	signed:0;
// 	field:unsigned long off;	offset:56;	size:8;	signed:0;
//
// print fmt: "addr: 0x%08lx, len: 0x%08lx, prot: 0x%08lx, flags: 0x%08lx, fd: 0x%08lx, off: 0x%08lx", ((unsigned long)(REC->addr)), ((unsigned long)(REC->len)), ((unsigned long)(REC->prot)), ((unsigned long)(REC->flags)), ((unsigned long)(REC->fd)), ((unsigned long)(REC->off))

/// The fields of `syscalls:sys_enter_mmap`.
#[repr(C)]
struct SysEnterMmap {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    off: u64,
}

// syscalls:sys_enter_munmap (/sys/kernel/tracing/events/syscalls/sys_enter_munmap/format)
//
// name: sys_enter_munmap
// ID: 693
// format:
// 	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
// 	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
// 	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
// 	field:int common_pid;	offset:4;	size:4;	signed:1;
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long addr;	offset:16;	size:8;	signed:0;
// 	field:size_t len;	offset:24;	size:8;	signed:0;
//
// print fmt: "addr: 0x%08lx, len: 0x%08lx", ((unsigned long)(REC->addr)), ((unsigned long)(REC->len))

/// The fields of `syscalls:sys_enter_munmap`.
#[repr(C)]
struct SysEnterMunmap {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    addr: u64,
    len: u64,
}

// syscalls:sys_exit_brk and syscalls:sys_exit_mmap (same fields; the
// format of sys_exit_mmap, ID 173)
//
// name: sys_exit_brk
// ID: 694
// format:
// 	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
// 	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
// 	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
// 	field:int common_pid;	offset:4;	size:4;	signed:1;
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:long ret;	offset:16;	size:8;	signed:1;
//
// print fmt: "0x%lx", REC->ret

/// The fields of every `syscalls:sys_exit_*` event.
#[repr(C)]
struct SysExit {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    ret: i64,
}

#[tracepoint(category = "syscalls", name = "sys_enter_brk")]
pub fn heap_enter_brk(ctx: TracePointContext) -> u32 {
    let _ = try_heap_enter_brk(&ctx);
    0
}

fn try_heap_enter_brk(ctx: &TracePointContext) -> Result<(), Skip> {
    let id = traced()?;
    // SAFETY: `SysEnterBrk` is this tracepoint's format (pasted above it).
    let args = unsafe { ctx.read_at::<SysEnterBrk>(0) }?;
    let ev = record(ctx, id, MapCall::Brk, 0, args.brk, true)?;
    keep(id, ev)
}

#[tracepoint(category = "syscalls", name = "sys_exit_brk")]
pub fn heap_exit_brk(ctx: TracePointContext) -> u32 {
    let _ = try_heap_exit_brk(&ctx);
    0
}

fn try_heap_exit_brk(ctx: &TracePointContext) -> Result<(), Skip> {
    send_pending(ctx, traced()?, MapCall::Brk)
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn heap_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_heap_enter_mmap(&ctx);
    0
}

fn try_heap_enter_mmap(ctx: &TracePointContext) -> Result<(), Skip> {
    let id = traced()?;
    // SAFETY: `SysEnterMmap` is this tracepoint's format (pasted above it).
    let args = unsafe { ctx.read_at::<SysEnterMmap>(0) }?;
    // File mappings are code and data, not heap.
    if args.flags & MAP_ANONYMOUS == 0 {
        return Err(Skip::Nothing);
    }
    let ev = record(ctx, id, MapCall::Mmap, 0, page_round(args.len), true)?;
    keep(id, ev)
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn heap_exit_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_heap_exit_mmap(&ctx);
    0
}

fn try_heap_exit_mmap(ctx: &TracePointContext) -> Result<(), Skip> {
    send_pending(ctx, traced()?, MapCall::Mmap)
}

#[tracepoint(category = "syscalls", name = "sys_enter_munmap")]
pub fn heap_enter_munmap(ctx: TracePointContext) -> u32 {
    let _ = try_heap_enter_munmap(&ctx);
    0
}

fn try_heap_enter_munmap(ctx: &TracePointContext) -> Result<(), Skip> {
    let id = traced()?;
    // SAFETY: `SysEnterMunmap` is this tracepoint's format (pasted above it).
    let args = unsafe { ctx.read_at::<SysEnterMunmap>(0) }?;
    let len = page_round(args.len);
    let ev = record(ctx, id, MapCall::Munmap, args.addr, len, false)?;
    send(ev)
}
