//! Types shared by leak's kernel side (`leak-ebpf`) and user side (`leak-user`).
//!
//! Everything here is `#[repr(C)]` and read by both sides byte for byte: the
//! layout is defined once, here. Records travel from kernel to user space through
//! one ring buffer; every record starts with a `u32` [`EventKind`] so user space
//! can tell them apart before reading the rest.
#![no_std]

/// Deepest user stack captured per sampled allocation (the kernel's own limit
/// for user call chains is 127).
pub const MAX_FRAMES: usize = 127;

/// Go's integer argument registers in ABIInternal order on amd64: RAX, RBX,
/// RCX, RDI, RSI, R8, R9, R10, R11. A [`GoArg`] is an index into this list.
pub const GO_ARG_REGS: usize = 9;

/// Index of an integer argument in Go's register ABI (0 = first argument).
pub type GoArg = u32;

/// Record kinds sent through the ring buffer.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A sampled allocation: [`AllocEvent`].
    Alloc = 1,
    /// A sampled object was freed by the sweeper: [`Event`].
    Free = 2,
    /// A garbage collection cycle finished marking: [`Event`].
    GcCycle = 3,
}

impl EventKind {
    /// Decodes the leading `u32` of a ring buffer record.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Alloc),
            2 => Some(Self::Free),
            3 => Some(Self::GcCycle),
            _ => None,
        }
    }
}

/// A heap-profile sample taken in `runtime.mProf_Malloc`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AllocEvent {
    /// Always [`EventKind::Alloc`].
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// `bpf_ktime_get_ns` at the probe.
    pub timestamp_ns: u64,
    /// Address of the sampled object.
    pub addr: u64,
    /// Size in bytes the program asked for.
    pub size: u64,
    /// Return address found at the stack pointer at function entry: the call
    /// site in the immediate caller, which a frame-pointer walk started at a
    /// function's first instruction skips.
    pub caller: u64,
    /// Number of valid entries in `stack` (innermost first).
    pub frames: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// User stack from `bpf_get_stack`, innermost first.
    pub stack: [u64; MAX_FRAMES],
}

/// A record without a stack: a free or a GC cycle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    /// An [`EventKind`] other than `Alloc`.
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// `bpf_ktime_get_ns` at the probe.
    pub timestamp_ns: u64,
    /// Address of the freed object (0 for GC cycles).
    pub addr: u64,
    /// Size of the freed object (0 for GC cycles).
    pub size: u64,
}

/// Per-Go-version argument positions, set by user space before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeConfig {
    /// `mProf_Malloc`: argument holding the object's address.
    pub malloc_addr_arg: GoArg,
    /// `mProf_Malloc`: argument holding the object's size.
    pub malloc_size_arg: GoArg,
    /// `freeSpecial`: argument holding the object's address.
    pub free_addr_arg: GoArg,
    /// `freeSpecial`: argument holding the object's size.
    pub free_size_arg: GoArg,
}

/// Slots of the per-CPU counter array `COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Allocation samples seen by the probe.
    AllocSeen = 0,
    /// Allocation samples lost because the ring buffer was full.
    AllocDropped = 1,
    /// Allocation samples whose user stack could not be read.
    StackFailed = 2,
    /// Frees of sampled objects seen.
    FreeSeen = 3,
    /// Frees lost because the ring buffer was full.
    FreeDropped = 4,
    /// GC cycle records lost because the ring buffer was full.
    GcDropped = 5,
}

/// Number of slots in `COUNTERS`.
pub const COUNTERS: u32 = 6;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no padding holes that matter to
    // the kernel (all fields are integers).
    unsafe impl aya::Pod for super::ProbeConfig {}
}
