//! Types shared by leak's kernel side (`leak-ebpf`) and user side (`leak-user`).
//!
//! Everything here is `#[repr(C)]` and read by both sides byte for byte: the
//! layout is defined once, here, and checked at compile time on both sides
//! (this crate is built for the eBPF target and for the host). Records travel
//! from kernel to user space through one ring buffer; every record starts
//! with a `u32` [`EventKind`] so user space can tell them apart before
//! reading the rest.
//!
//! One module per probe family, as in `leak-ebpf/src`: [`go`] (uprobes on
//! the Go runtime), [`mm`] (`leak top`'s tracepoints), [`heap`] (brk/mmap
//! stacks of `leak trace --syscalls`). Everything is re-exported here, so
//! `leak_common::X` names any of them. `aya::Pod` is implemented for what
//! the loader writes or reads from maps, with the `user` feature only.
#![no_std]

/// Declares a `#[repr(u32)]` enum of values both sides exchange, with
/// `from_u32` to decode one read from the other side.
macro_rules! wire_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr,)* }) => {
        $(#[$m])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $v = $n,)* }

        impl $name {
            /// Decodes a `u32` from the other side; `None` for a value no
            /// variant has.
            pub fn from_u32(v: u32) -> Option<Self> {
                $(if v == $n { return Some(Self::$v); })*
                None
            }
        }
    };
}

/// Checks a shared type's size and field offsets at compile time, on both
/// sides: a layout that drifts from what the other side reads fails the
/// build instead of a trace.
macro_rules! layout {
    ($t:ty, size $size:expr, { $($field:ident: $offset:expr),* $(,)? }) => {
        const _: () = {
            assert!(core::mem::size_of::<$t>() == $size);
            $(assert!(core::mem::offset_of!($t, $field) == $offset);)*
        };
    };
}

pub mod go;
pub mod heap;
pub mod mm;
pub mod native;

pub use go::*;
pub use heap::*;
pub use mm::*;
pub use native::*;

wire_enum! {
/// Record kinds sent through the ring buffer.
pub enum EventKind {
    /// A sampled allocation: [`AllocEvent`].
    Alloc = 1,
    /// A sampled object was freed by the sweeper: [`Event`].
    Free = 2,
    /// A garbage collection cycle finished marking: [`Event`].
    GcCycle = 3,
    /// The traced process mapped or unmapped memory, or moved its program
    /// break: [`MapEvent`].
    Map = 4,
    /// A process of the traced binary started its Go runtime
    /// (`runtime.main`): [`Event`], `addr` the instruction pointer at the
    /// probe (its load bias, with no read of /proc).
    Start = 5,
    /// A sampled native allocation: [`NativeAlloc`].
    NativeAlloc = 6,
    /// A sampled native block was freed: [`Event`] (`size` as allocated).
    NativeFree = 7,
}
}

wire_enum! {
/// Slots of the per-CPU counter array `COUNTERS` of `leak trace` (Go and
/// `--syscalls`): losses only. Samples and frees are counted in user space,
/// from the records themselves; a counter per probe hit would be paid by
/// the traced program.
pub enum Counter {
    /// Allocation samples lost because the ring buffer was full.
    AllocDropped = 0,
    /// Allocation samples whose stack could not be read.
    StackFailed = 1,
    /// Frees lost because the ring buffer was full.
    FreeDropped = 2,
    /// GC cycle records lost because the ring buffer was full.
    GcDropped = 3,
    /// brk/mmap/munmap records of `leak trace --syscalls` lost because the
    /// ring buffer or the pending map was full.
    MapDropped = 4,
    /// Sampled native blocks not followed because the map of live blocks
    /// was full (their frees are not seen).
    LiveFull = 5,
}
}

/// Number of slots in `COUNTERS`.
pub const COUNTERS: u32 = 6;
