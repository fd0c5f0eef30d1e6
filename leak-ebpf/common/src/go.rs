//! `leak trace` on a Go program: the records the uprobes on the runtime's
//! heap profiler send, and the per-Go-version configuration the loader
//! writes before load (leak-ebpf/src/go.rs).

/// Deepest Go stack carried per sampled allocation: Go's own profile keeps
/// up to `GODEBUG=profstackdepth` frames (128 by default since go1.23, plus
/// a few on 1.27); 255 keeps every default-depth stack whole and lets the
/// eBPF side bound the copy with a mask.
pub const GO_MAX_FRAMES: usize = 255;

/// Go's integer argument registers in ABIInternal order on amd64: RAX, RBX,
/// RCX, RDI, RSI, R8, R9, R10, R11. A [`GoArg`] is an index into this list.
pub const GO_ARG_REGS: usize = 9;

/// Index of an integer argument in Go's register ABI (0 = first argument).
pub type GoArg = u32;

/// A heap-profile sample, taken in `runtime.setprofilebucket(p, b)`: the
/// runtime has recorded object `p` under bucket `b`, which holds the
/// allocation's size and the stack Go itself captured for its profile.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AllocEvent {
    /// Always [`EventKind::Alloc`](crate::EventKind::Alloc).
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// `bpf_ktime_get_ns` at the probe.
    pub timestamp_ns: u64,
    /// Address of the sampled object.
    pub addr: u64,
    /// Size in bytes the program asked for.
    pub size: u64,
    /// Address of the runtime's profile bucket (one per stack and size;
    /// buckets live as long as the process).
    pub bucket: u64,
    /// Number of valid entries in `stack` (innermost first). 0 when the
    /// bucket's stack was sent before: user space keeps it by `bucket`.
    pub frames: u32,
    /// [`ALLOC_HAS_STACK`] when `stack` carries the bucket's stack.
    pub flags: u32,
    /// The instruction pointer at the probe, a runtime address of a known
    /// file address: the process's load bias without reading /proc (which
    /// a short-lived process no longer has when user space looks).
    pub ip: u64,
    /// The bucket's stack as the runtime recorded it, one logical frame
    /// per entry (inlined calls already expanded, return pcs, the
    /// allocator's own frames skipped).
    pub stack: [u64; GO_MAX_FRAMES],
}

/// [`AllocEvent::flags`]: the record carries its stack.
pub const ALLOC_HAS_STACK: u32 = 1;

/// Bytes of an [`AllocEvent`] before `stack`: records carry the header and
/// only the `frames` stack entries captured.
pub const ALLOC_HEADER: usize = 56;

layout!(AllocEvent, size ALLOC_HEADER + GO_MAX_FRAMES * 8, {
    kind: 0,
    tgid: 4,
    timestamp_ns: 8,
    addr: 16,
    size: 24,
    bucket: 32,
    frames: 40,
    flags: 44,
    ip: 48,
    stack: ALLOC_HEADER,
});

/// A record without a stack: a free, a GC cycle, a process start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    /// An [`EventKind`](crate::EventKind) other than `Alloc` and `Map`.
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// `bpf_ktime_get_ns` at the probe.
    pub timestamp_ns: u64,
    /// Address of the freed object (0 for GC cycles; the instruction
    /// pointer for a start).
    pub addr: u64,
    /// Size of the freed object (0 for GC cycles).
    pub size: u64,
}

layout!(Event, size 32, {
    kind: 0,
    tgid: 4,
    timestamp_ns: 8,
    addr: 16,
    size: 24,
});

/// Per-Go-version argument positions and layouts, set by user space before
/// load from its runtime table (`RuntimeProbes::probe_config`): the kernel
/// side compiles in no Go layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `setprofilebucket(p, b)`: argument holding the object's address.
    pub alloc_addr_arg: GoArg,
    /// `setprofilebucket(p, b)`: argument holding the bucket.
    pub alloc_bucket_arg: GoArg,
    /// `freeSpecial(s, p, size)`: argument holding the special record.
    pub free_special_arg: GoArg,
    /// `freeSpecial`: argument holding the object's address.
    pub free_addr_arg: GoArg,
    /// `freeSpecial`: argument holding the object's size.
    pub free_size_arg: GoArg,
    /// Offset of `kind` (a byte) in the runtime's `special` struct.
    pub special_kind_offset: u32,
    /// `_KindSpecialProfile`: the kind of a heap-profile special.
    pub special_kind_profile: u32,
    /// Offset of `size` (a u64) in the runtime's `bucket` struct.
    pub bucket_size_offset: u32,
    /// Offset of `nstk` (a u64, the number of pcs) in a bucket.
    pub bucket_nstk_offset: u32,
    /// Offset of the first pc of a bucket's stack.
    pub bucket_stack_offset: u32,
}

layout!(ProbeConfig, size 40, {
    alloc_addr_arg: 0,
    alloc_bucket_arg: 4,
    free_special_arg: 8,
    free_addr_arg: 12,
    free_size_arg: 16,
    special_kind_offset: 20,
    special_kind_profile: 24,
    bucket_size_offset: 28,
    bucket_nstk_offset: 32,
    bucket_stack_offset: 36,
});

// SAFETY: plain-old-data, `#[repr(C)]`, integers only, no padding (the
// layout check above).
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProbeConfig {}
