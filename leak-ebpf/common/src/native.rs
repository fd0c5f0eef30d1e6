//! `leak trace --pid` on a native program: sampled allocations of the
//! allocator that serves one process (leak-ebpf/src/native.rs), each with
//! the registers and the top of the user stack that user space unwinds
//! from (`.eh_frame`: code built without frame pointers unwinds too).

/// Words of user stack copied at a sampled allocation, from the stack
/// pointer up: 8 KiB (perf and samply copy 16–32 KiB at a sample; an
/// allocation site is rarely deeper than this).
pub const NATIVE_STACK_WORDS: usize = 1024;

/// A sampled malloc, calloc or realloc: where the block is, the bytes
/// asked for, the registers at the call and the stack memory above `sp`.
/// Records carry only the words copied (`words`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NativeAlloc {
    /// Always [`EventKind::NativeAlloc`](crate::EventKind::NativeAlloc).
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// The block returned.
    pub addr: u64,
    /// Bytes asked for.
    pub size: u64,
    /// Instruction pointer at the probe (in the allocator function).
    pub ip: u64,
    /// Stack pointer at the probe.
    pub sp: u64,
    /// rbp at the probe (a frame pointer, where the code keeps one).
    pub bp: u64,
    /// Words of `stack` copied.
    pub words: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// User stack memory from `sp` up.
    pub stack: [u64; NATIVE_STACK_WORDS],
}

/// Bytes of a [`NativeAlloc`] before its stack.
pub const NATIVE_HEADER: usize = 56;

layout!(NativeAlloc, size NATIVE_HEADER + NATIVE_STACK_WORDS * 8, {
    kind: 0,
    tgid: 4,
    addr: 8,
    size: 16,
    ip: 24,
    sp: 32,
    bp: 40,
    words: 48,
    _pad: 52,
    stack: NATIVE_HEADER,
});
