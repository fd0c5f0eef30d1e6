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
        bpf_probe_read_user_buf, bpf_task_pt_regs,
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};
use leak_common::{Counter, EventKind, HeapConfig, MapCall, MapEvent, MAX_FRAMES, STACK_WORDS};

use crate::{
    count,
    mm::{failed, page_round, SysEnterMmap, SysEnterMunmap, SysExit},
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

// syscalls:sys_enter_brk
//
// 	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
// 	field:unsigned long brk;	offset:16;	size:8;	signed:0;

/// The fields of `syscalls:sys_enter_brk`.
#[repr(C)]
struct SysEnterBrk {
    common: u64,
    syscall_nr: i32,
    _pad: u32,
    brk: u64,
}

/// The current thread's pid_tgid, if it belongs to the traced process.
#[inline(always)]
fn traced() -> Option<u64> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only global rewritten by the loader; volatile keeps the
    // compiler from folding the default in.
    let cfg = unsafe { core::ptr::read_volatile(&HEAP_CONFIG) };
    ((id >> 32) as u32 == cfg.tgid).then_some(id)
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
) -> Option<*mut MapEvent> {
    let ev = HEAP_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: `ev` is this CPU's scratch slot; nothing else runs here.
    unsafe {
        (*ev).kind = EventKind::Map as u32;
        (*ev).tgid = (id >> 32) as u32;
        (*ev).call = call as u32;
        (*ev).addr = addr;
        (*ev).len = len;
        (*ev).frames = 0;
        (*ev).words = 0;
        (*ev)._pad = 0;
        (*ev).sp = 0;
        (*ev).bp = 0;
        if !with_stack {
            return Some(ev);
        }
        let n = bpf_get_stack(
            ctx.as_ptr(),
            (*ev).stack.as_mut_ptr().cast(),
            (MAX_FRAMES * 8) as u32,
            BPF_F_USER_STACK as u64,
        );
        if n < 0 {
            count(Counter::StackFailed);
        } else {
            (*ev).frames = (n as u32) / 8;
        }
        // The user registers saved at syscall entry.
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as usize as *const pt_regs;
        let sp = bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rsp)).unwrap_or(0);
        let bp = bpf_probe_read_kernel(core::ptr::addr_of!((*regs).rbp)).unwrap_or(0);
        (*ev).sp = sp;
        (*ev).bp = bp;
        if sp != 0 {
            let words = &mut (*ev).stack_words;
            // SAFETY: `words` is a plain u64 array viewed as bytes.
            let bytes =
                core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), STACK_WORDS * 8);
            if bpf_probe_read_user_buf(sp as *const u8, bytes).is_ok() {
                (*ev).words = STACK_WORDS as u32;
            } else if bpf_probe_read_user_buf(sp as *const u8, &mut bytes[..STACK_WORDS * 2])
                .is_ok()
            {
                // Near the top of the stack: a quarter still helps.
                (*ev).words = (STACK_WORDS / 4) as u32;
            }
        }
    }
    Some(ev)
}

/// Keeps the scratch record until this thread's sys_exit.
#[inline(always)]
fn keep(id: u64, ev: *mut MapEvent) {
    // SAFETY: `ev` is this CPU's scratch slot; the map copies it.
    if HEAP_PENDING.insert(&id, unsafe { &*ev }, 0).is_err() {
        count(Counter::MapDropped);
    }
}

/// Sends this thread's pending `call` with `addr` set to the return value.
#[inline(always)]
fn send_pending(ctx: &TracePointContext, id: u64, call: MapCall) {
    let Some(ev) = HEAP_PENDING.get_ptr_mut(&id) else {
        return;
    };
    // SAFETY: the layout is every sys_exit event's format.
    let ret = unsafe { ctx.read_at::<SysExit>(0) }
        .map(|e| e.ret)
        .unwrap_or(-1);
    // SAFETY: map value pointer from a successful lookup; the ring buffer
    // copies it before the entry is removed.
    unsafe {
        if (*ev).call == call as u32 && !failed(ret) {
            (*ev).addr = ret as u64;
            if EVENTS.output::<MapEvent>(&*ev, 0).is_err() {
                count(Counter::MapDropped);
            }
        }
    }
    let _ = HEAP_PENDING.remove(&id);
}

#[tracepoint(category = "syscalls", name = "sys_enter_brk")]
pub fn heap_enter_brk(ctx: TracePointContext) -> u32 {
    let Some(id) = traced() else { return 0 };
    // SAFETY: the layout above is this tracepoint's format.
    let Ok(args) = (unsafe { ctx.read_at::<SysEnterBrk>(0) }) else {
        return 0;
    };
    if let Some(ev) = record(&ctx, id, MapCall::Brk, 0, args.brk, true) {
        keep(id, ev);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_brk")]
pub fn heap_exit_brk(ctx: TracePointContext) -> u32 {
    if let Some(id) = traced() {
        send_pending(&ctx, id, MapCall::Brk);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn heap_enter_mmap(ctx: TracePointContext) -> u32 {
    let Some(id) = traced() else { return 0 };
    // SAFETY: mm.rs pastes this tracepoint's format above the struct.
    let Ok(args) = (unsafe { ctx.read_at::<SysEnterMmap>(0) }) else {
        return 0;
    };
    // File mappings are code and data, not heap.
    if args.flags & MAP_ANONYMOUS == 0 {
        return 0;
    }
    if let Some(ev) = record(&ctx, id, MapCall::Mmap, 0, page_round(args.len), true) {
        keep(id, ev);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn heap_exit_mmap(ctx: TracePointContext) -> u32 {
    if let Some(id) = traced() {
        send_pending(&ctx, id, MapCall::Mmap);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_munmap")]
pub fn heap_enter_munmap(ctx: TracePointContext) -> u32 {
    let Some(id) = traced() else { return 0 };
    // SAFETY: mm.rs pastes this tracepoint's format above the struct.
    let Ok(args) = (unsafe { ctx.read_at::<SysEnterMunmap>(0) }) else {
        return 0;
    };
    let Some(ev) = record(
        &ctx,
        id,
        MapCall::Munmap,
        args.addr,
        page_round(args.len),
        false,
    ) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; the ring buffer copies it.
    if EVENTS.output::<MapEvent>(unsafe { &*ev }, 0).is_err() {
        count(Counter::MapDropped);
    }
    0
}
