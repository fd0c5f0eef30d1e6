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
    /// The traced process mapped or unmapped memory, or moved its program
    /// break: [`MapEvent`].
    Map = 4,
    /// A process of the traced binary started its Go runtime
    /// (`runtime.main`): [`Event`], `addr` the instruction pointer at the
    /// probe (its load bias, with no read of /proc).
    Start = 5,
}

impl EventKind {
    /// Decodes the leading `u32` of a ring buffer record.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Alloc),
            2 => Some(Self::Free),
            3 => Some(Self::GcCycle),
            4 => Some(Self::Map),
            5 => Some(Self::Start),
            _ => None,
        }
    }
}

/// A heap-profile sample, taken in `runtime.setprofilebucket(p, b)`: the
/// runtime has recorded object `p` under bucket `b`, which holds the
/// allocation's size and the stack Go itself captured for its profile.
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
    /// Address of the runtime's profile bucket (one per stack and size;
    /// buckets live as long as the process). 0 for records without one
    /// (`leak trace --syscalls`).
    pub bucket: u64,
    /// Number of valid entries in `stack` (innermost first). 0 when the
    /// bucket's stack was sent before: user space keeps it by `bucket`.
    pub frames: u32,
    /// [`ALLOC_HAS_STACK`] when `stack` carries the bucket's stack.
    pub flags: u32,
    /// Go: the instruction pointer at the probe, a runtime address of a
    /// known file address: the process's load bias without reading /proc
    /// (which a short-lived process no longer has when user space looks).
    /// 0 for `--syscalls` records.
    pub ip: u64,
    /// Go: the bucket's stack as the runtime recorded it, one logical frame
    /// per entry (inlined calls already expanded, return pcs, the
    /// allocator's own frames skipped). `--syscalls`: the user stack from
    /// `bpf_get_stack`, return addresses of physical frames.
    pub stack: [u64; GO_MAX_FRAMES],
}

/// [`AllocEvent::flags`]: the record carries its stack.
pub const ALLOC_HAS_STACK: u32 = 1;

/// Bytes of an [`AllocEvent`] before `stack`: records carry the header and
/// only the `frames` stack entries captured.
pub const ALLOC_HEADER: usize = 56;

/// A record without a stack: a free, a GC cycle, a process start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    /// An [`EventKind`] other than `Alloc`.
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

/// Slots of the per-CPU counter array `COUNTERS`: losses only. Samples
/// and frees are counted in user space, from the records themselves; a
/// counter per probe hit would be paid by the traced program.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Number of slots in `COUNTERS`.
pub const COUNTERS: u32 = 5;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no padding holes that matter to
    // the kernel (all fields are integers).
    unsafe impl aya::Pod for super::ProbeConfig {}
}

// ---- `leak top`: per-process memory state kept by leak-ebpf/src/mm.rs ----

/// Number of RSS counters `kmem:rss_stat` reports per mm (the kernel's
/// `NR_MM_COUNTERS`); its `member` field indexes them.
pub const RSS_MEMBERS: usize = 4;
/// `member` of file-backed resident pages (`MM_FILEPAGES`).
pub const RSS_FILE: usize = 0;
/// `member` of anonymous resident pages (`MM_ANONPAGES`).
pub const RSS_ANON: usize = 1;
/// `member` of swapped-out pages (`MM_SWAPENTS`).
pub const RSS_SWAP: usize = 2;
/// `member` of resident shared memory (`MM_SHMEMPAGES`).
pub const RSS_SHMEM: usize = 3;

/// One process's resident memory and program break, kept per tgid in the
/// `MM_STATS` map and read by `leak top` each interval. Each field is
/// stored whole (no read-modify-write), so threads racing on several CPUs
/// leave one of two recent values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmStats {
    /// Latest value of each RSS counter, indexed by `RSS_*`, in bytes (swap:
    /// bytes of swapped-out pages), as `kmem:rss_stat` last reported it.
    pub rss: [i64; RSS_MEMBERS],
    /// Bit `1 << member` is set once `rss[member]` has been reported; an
    /// unset member still holds 0 and means "unchanged since before leak".
    pub rss_seen: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// The process's mm as last seen running (it changes at exec): its
    /// address, or `kmem:rss_stat`'s `mm_id` hash on the fallback path.
    /// The owner map is written only when it changes.
    pub mm: u64,
    /// The program break after the last `brk` call (0 until one).
    pub brk: u64,
}

/// What one process did to its address space, per CPU (sum over CPUs in
/// user space), kept per tgid in the `MM_ACTIVITY` map: sums that threads
/// on several CPUs add to at once, which BPF cannot do atomically without
/// `-mcpu=v3`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmActivity {
    /// Net bytes mapped since leak started watching: mmap (except MAP_FIXED,
    /// which replaces a mapping) minus munmap, plus mremap's change in size.
    pub mapped_bytes: i64,
    /// Bytes given back with madvise(MADV_DONTNEED / MADV_FREE /
    /// MADV_REMOVE), cumulative (Go's scavenger returns memory this way).
    pub advised_away_bytes: u64,
    /// Successful mmap/munmap/mremap/madvise calls and brk calls.
    pub syscalls: u64,
}

/// Where the raw `rss_stat` program finds what the `kmem:rss_stat` event
/// format would have computed for it, read from the running kernel's BTF
/// (`/sys/kernel/btf/vmlinux`) by user space before load. All zero: not
/// found, and the format-based program is used instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmKernelLayout {
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm: u32,
    /// `offsetof(struct mm_struct, rss_stat)`: an array of
    /// `struct percpu_counter`, one per RSS counter.
    pub mm_rss_stat: u32,
    /// `sizeof(struct percpu_counter)`.
    pub counter_size: u32,
    /// `offsetof(struct percpu_counter, count)`: the counter's value in
    /// pages, less what CPUs have not folded in yet (as `/proc` reads it).
    pub counter_count: u32,
}

/// Slots of the per-CPU counter array `MM_COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmCounter {
    /// rss_stat events for another task's mm whose owner was not known yet
    /// (dropped: the mm never ran a traced event as `current`).
    RssUnattributed = 0,
    /// Processes added to `MM_STATS`.
    ProcessesAdded = 1,
    /// Updates lost because `MM_STATS` or `MM_ACTIVITY` could not take a
    /// new process.
    StatsInsertFailed = 2,
}

/// Number of slots in `MM_COUNTERS`. Events themselves are not counted
/// globally: `rss_stat` fires on every page fault, and each map update
/// there is paid by the traced program (calls are counted per process in
/// [`MmActivity::syscalls`]).
pub const MM_COUNTERS: u32 = 3;

/// Most processes `MM_STATS` and `MM_ACTIVITY` hold at once (least recently updated are
/// evicted first).
pub const MM_MAX_PROCESSES: u32 = 16384;

#[cfg(feature = "user")]
mod user_mm {
    // SAFETY: plain-old-data, `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for super::MmStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MmActivity {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MmKernelLayout {}
}

// ---- `leak trace --syscalls`: heap growth of any binary (leak-ebpf/src/heap.rs) ----

/// Words copied from the user stack pointer at a brk/mmap call: return
/// addresses a frame-pointer walk skips (libc has no frame pointers, so the
/// walk jumps from the syscall straight to the first caller that keeps one).
pub const STACK_WORDS: usize = 128;

/// Which call a [`MapEvent`] records.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapCall {
    /// mmap of anonymous memory: `addr` is where it landed, `len` its length.
    Mmap = 1,
    /// munmap: `addr`, `len` as passed.
    Munmap = 2,
    /// brk: `addr` is the program break after the call.
    Brk = 3,
}

/// What the traced process (one tgid, [`HeapConfig::tgid`]) did to its
/// heap, with the user stack that did it (none for munmap).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MapEvent {
    /// Always [`EventKind::Map`].
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

#[cfg(feature = "user")]
mod user_heap {
    // SAFETY: plain-old-data, `#[repr(C)]`, integers only.
    unsafe impl aya::Pod for super::HeapConfig {}
}
