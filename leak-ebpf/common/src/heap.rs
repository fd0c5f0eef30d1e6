//! `leak trace --syscalls`: heap growth of any binary, the brk/mmap/munmap
//! records of one process with their user stacks (leak-ebpf/src/heap.rs),
//! and which process the loader tells the programs to follow.

/// Deepest user stack captured per brk/mmap call (the kernel's own limit
/// for user call chains is 127).
pub const MAX_FRAMES: usize = 127;

/// Words copied from the user stack pointer at a brk/mmap call: return
/// addresses a frame-pointer walk skips (libc has no frame pointers, so the
/// walk jumps from the syscall straight to the first caller that keeps one).
pub const STACK_WORDS: usize = 128;

wire_enum! {
/// Which call a [`MapEvent`] records.
pub enum MapCall {
    /// mmap of anonymous memory: `addr` is where it landed, `len` its length.
    Mmap = 1,
    /// munmap: `addr`, `len` as passed.
    Munmap = 2,
    /// brk: `addr` is the program break after the call.
    Brk = 3,
}
}

/// What the traced process (one tgid, [`HeapConfig::tgid`]) did to its
/// heap, with the user stack that did it (none for munmap).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MapEvent {
    /// Always [`EventKind::Map`](crate::EventKind::Map).
    pub kind: u32,
    /// Process (thread group) id.
    pub tgid: u32,
    /// A [`MapCall`].
    pub call: u32,
    /// Number of valid entries in `stack` (innermost first).
    pub frames: u32,
    /// See [`MapCall`].
    pub addr: u64,
    /// See [`MapCall`].
    pub len: u64,
    /// User stack pointer at the syscall (0 if unknown).
    pub sp: u64,
    /// User frame pointer (rbp) at the syscall.
    pub bp: u64,
    /// Number of valid entries in `stack_words`.
    pub words: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// User stack from `bpf_get_stack`, innermost first.
    pub stack: [u64; MAX_FRAMES],
    /// The user stack's memory from `sp` up.
    pub stack_words: [u64; STACK_WORDS],
}

/// Bytes of a [`MapEvent`] before its stacks.
pub const MAP_HEADER: usize = 56;

layout!(MapEvent, size MAP_HEADER + (MAX_FRAMES + STACK_WORDS) * 8, {
    kind: 0,
    tgid: 4,
    call: 8,
    frames: 12,
    addr: 16,
    len: 24,
    sp: 32,
    bp: 40,
    words: 48,
    _pad: 52,
    stack: MAP_HEADER,
    stack_words: MAP_HEADER + MAX_FRAMES * 8,
});

/// Which process `leak trace --syscalls` follows, set by user space before
/// load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapConfig {
    /// Thread group id of the traced process.
    pub tgid: u32,
    /// Padding; always 0.
    pub _pad: u32,
}

layout!(HeapConfig, size 8, { tgid: 0, _pad: 4 });

/// Entries of the native sampler's table of gaps (`SAMPLE_GAPS`): draws of
/// an exponential with mean `--rate` bytes, one picked at random after
/// each sample.
pub const SAMPLE_GAPS: u32 = 1024;

// SAFETY: plain-old-data, `#[repr(C)]`, integers only, explicit padding
// (the layout check above).
#[cfg(feature = "user")]
unsafe impl aya::Pod for HeapConfig {}
