//! `leak top`: per-process memory state the tracepoint programs keep in
//! maps (leak-ebpf/src/mm.rs), and the kernel layout the loader writes.

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
    /// When each `rss` value was read, in ticks (`bpf_jiffies64`): of two
    /// values of a counter, this map's and a CPU's pending one
    /// ([`MmRssPending`]), the later is kept; of equal ticks, the pending.
    pub stamp: [u64; RSS_MEMBERS],
}

layout!(MmStats, size 88, {
    rss: 0,
    rss_seen: 32,
    _pad: 36,
    mm: 40,
    brk: 48,
    stamp: 56,
});

/// The RSS counters of the process whose own page faults (or other
/// changes of its own counters) came last on a CPU, one per CPU (the
/// `MM_RSS_PENDING` array): while the same process keeps changing them
/// there, each change costs an array slot, not a hash lookup. They move
/// into `MM_STATS` when another process's own change comes on that CPU;
/// user space takes each CPU's values that are later than the map's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmRssPending {
    /// The mm the values are of (0 until the first change).
    pub mm: u64,
    /// Its owner.
    pub tgid: u32,
    /// Bit `1 << member` is set once `rss[member]` holds a value.
    pub rss_seen: u32,
    /// Latest value of each counter, in bytes, as in [`MmStats::rss`].
    pub rss: [i64; RSS_MEMBERS],
    /// When each value was read, as in [`MmStats::stamp`].
    pub stamp: [u64; RSS_MEMBERS],
}

layout!(MmRssPending, size 80, {
    mm: 0,
    tgid: 8,
    rss_seen: 12,
    rss: 16,
    stamp: 48,
});

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

layout!(MmActivity, size 24, {
    mapped_bytes: 0,
    advised_away_bytes: 8,
    syscalls: 16,
});

/// A process's activity not yet added into `MM_ACTIVITY`, one per CPU (the
/// `MM_PENDING` array): the sums of the process that last made a memory
/// call on that CPU. They move into the map when another process makes one
/// there, so a process that keeps to its CPU pays an array slot per call,
/// not a hash lookup. User space adds each CPU's pending sums to what the
/// map holds for `tgid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmPending {
    /// Whose sums these are (0 with no calls: no process has tgid 0).
    pub tgid: u32,
    /// Padding; always 0.
    pub _pad: u32,
    /// Its sums since they last moved into the map.
    pub activity: MmActivity,
}

layout!(MmPending, size 32, {
    tgid: 0,
    _pad: 4,
    activity: 8,
});

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

layout!(MmKernelLayout, size 16, {
    task_mm: 0,
    mm_rss_stat: 4,
    counter_size: 8,
    counter_count: 12,
});

wire_enum! {
/// Slots of the per-CPU counter array `MM_COUNTERS_MAP`.
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
}

/// Number of slots in `MM_COUNTERS_MAP`. Events themselves are not counted
/// globally: `rss_stat` fires on every page fault, and each map update
/// there is paid by the traced program (calls are counted per process in
/// [`MmActivity::syscalls`]).
pub const MM_COUNTERS: u32 = 3;

/// Most processes `MM_STATS` and `MM_ACTIVITY` hold at once (least recently updated are
/// evicted first).
pub const MM_MAX_PROCESSES: u32 = 16384;

// SAFETY (all five): plain-old-data, `#[repr(C)]`, integers only, explicit
// padding (the layout checks above).
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmStats {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmActivity {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmKernelLayout {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmPending {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for MmRssPending {}
