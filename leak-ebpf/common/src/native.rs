//! `leak trace --pid` on a native program: sampled allocations of the
//! allocator that serves one process (leak-ebpf/src/native.rs), each with
//! the registers and the top of the user stack that user space unwinds
//! from (`.eh_frame`: code built without frame pointers unwinds too).

/// Words of user stack copied at a sampled allocation, from the stack
/// pointer up: 8 KiB (perf and samply copy 16–32 KiB at a sample; an
/// allocation site is rarely deeper than this).
pub const NATIVE_STACK_WORDS: usize = 1024;

/// Go frames kept with a sampled allocation made by C code a goroutine
/// called (cgo): the goroutine's return addresses, innermost first.
pub const NATIVE_GO_FRAMES: usize = 64;

/// A sampled malloc, calloc or realloc: where the block is, the bytes
/// asked for, the registers at the call and the stack memory above `sp`;
/// when C code called from Go (cgo) allocates, the calling goroutine's
/// frames too (its stack is not the one the C code runs on). Records carry
/// only the stack words copied (`words`).
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
    /// Entries of `go_pcs` filled (0: not a goroutine's C call).
    pub go_frames: u32,
    /// Padding; always 0.
    pub _pad2: u32,
    /// When the allocation was made: `CLOCK_MONOTONIC`, nanoseconds.
    pub time_ns: u64,
    /// The calling goroutine's return addresses, innermost first.
    pub go_pcs: [u64; NATIVE_GO_FRAMES],
    /// User stack memory from `sp` up.
    pub stack: [u64; NATIVE_STACK_WORDS],
}

/// Bytes of a [`NativeAlloc`] before its stack.
pub const NATIVE_HEADER: usize = 72 + NATIVE_GO_FRAMES * 8;

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
    go_frames: 56,
    _pad2: 60,
    time_ns: 64,
    go_pcs: 72,
    stack: NATIVE_HEADER,
});

/// Where a Go program keeps what leads from a thread to the goroutine that
/// called into C (cgo), for [`NativeAlloc::go_pcs`]: offsets in the
/// kernel's `task_struct` and in the runtime's `g` and `m` (from the
/// version table), and where the thread's `g` sits from the TLS base
/// (from the program's code). All 0: not a Go program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeGoConfig {
    /// `task_struct.thread.fsbase`: the thread's TLS base (x86-64).
    pub task_fsbase: u32,
    /// `g`'s offset from the TLS base (negative: below it).
    pub tls_g: i32,
    /// `g.m`.
    pub g_m: u32,
    /// `g.stack.hi`.
    pub g_stack_hi: u32,
    /// `g.sched.sp`.
    pub g_sched_sp: u32,
    /// `g.sched.bp`.
    pub g_sched_bp: u32,
    /// `m.g0`.
    pub m_g0: u32,
    /// `m.curg`.
    pub m_curg: u32,
}

layout!(NativeGoConfig, size 32, {
    task_fsbase: 0,
    tls_g: 4,
    g_m: 8,
    g_stack_hi: 12,
    g_sched_sp: 16,
    g_sched_bp: 20,
    m_g0: 24,
    m_curg: 28,
});

// SAFETY: plain-old-data, `#[repr(C)]`, integers only, no padding (the
// layout check above).
#[cfg(feature = "user")]
unsafe impl aya::Pod for NativeGoConfig {}
