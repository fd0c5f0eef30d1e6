//! Everything about the Go runtime that changes between releases, one row
//! per range of versions ([`RuntimeProbes`], rows in `rows.rs`). Nothing
//! else in leak may branch on a Go version: probe functions and argument
//! registers, struct layouts, `moduledata` offsets, the functions that read
//! `MemProfileRate`, the allocator's frames and the functions that tell
//! releases apart all come from here.
//!
//! Argument numbers are positions in Go's internal register ABI for
//! integer/pointer arguments (amd64: RAX, RBX, RCX, RDI, RSI, R8, R9, R10,
//! R11; arm64: X0…X15), which uprobes read at function entry. Offsets are
//! bytes from the start of the struct, 64-bit targets.

#[cfg(test)]
mod dwarf;
mod rows;
#[cfg(test)]
mod tests;

pub(crate) use rows::{rows, ALLOCATOR_FRAMES};

use leak_common::ProbeConfig;

use super::{error::GoError, version::GoVersion};

/// The range leak supports, for error messages.
pub(crate) const SUPPORTED: &str = "go1.19, and go1.21 or later";

/// `runtime.MemProfileRate`'s default, `512 * 1024` (mprof.go, the same in
/// 1.19–1.27): one heap sample per 512 KiB allocated.
pub(crate) const DEFAULT_MEM_PROFILE_RATE: u64 = 512 * 1024;

/// What leak knows of one range of Go releases: the functions that tell
/// it apart and the `.gopclntab` reader's offsets, then one sub-layout per
/// concern (the heap probes, the heap records, the sampling rate; the
/// goroutines and heap statistics go beside them), each checked against
/// real binaries of the releases it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuntimeProbes {
    /// First release of the range (inclusive); the range ends where the
    /// next row starts, or at `ends_before`.
    pub since: GoVersion,
    /// The first release after the range when it ends before the next row
    /// starts: the releases between have no row (nothing was checked
    /// against them) and are refused.
    pub ends_before: Option<GoVersion>,
    /// A runtime function that first appears in this range and that every
    /// program links (reached from the scheduler or the allocator): tells
    /// this row from the one before when the version is not written in the
    /// binary (see `version::infer`).
    pub marker_fn: &'static str,
    /// Offsets in `runtime.moduledata` that the `.gopclntab` reader uses.
    pub moduledata: ModuledataLayout,
    /// The uprobes of `leak trace`: where they go, where their arguments
    /// are, what they read.
    pub probes: HeapProbes,
    /// Go's own heap profile records, read from a process's memory.
    pub records: HeapRecordsLayout,
    /// `runtime.MemProfileRate`: how to find it and how the runtime
    /// notices a new value.
    pub rate: RateAccess,
    /// Go's goroutines: where the list of them is, how to read each.
    pub goroutines: GoroutineLayout,
    /// The GC's own account of the heap: what survived the last GC, the
    /// heap live now, the memory limit, the number of GCs.
    pub heap_stats: HeapStatsLayout,
    /// What leads from a thread running C code to the goroutine that
    /// called it (cgo).
    pub cgo: CgoLayout,
    /// Frames of the allocator that Go's heap profile never shows as the
    /// allocating function.
    pub allocator_frames: &'static AllocatorFrames,
}

/// The uprobes on the runtime's heap sampler, GC and start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapProbes {
    /// Called once per sampled allocation (every ~`MemProfileRate` bytes),
    /// once the runtime has recorded it: `setprofilebucket(p, b)`.
    pub alloc_fn: &'static str,
    /// Argument holding the object's address.
    pub alloc_addr_arg: u32,
    /// Argument holding the profile bucket (its size and stack).
    pub alloc_bucket_arg: u32,
    /// Called by the sweeper for each freed object that has specials
    /// (profile records, finalizers, cleanups): `freeSpecial(s, p, size)`.
    pub free_fn: &'static str,
    /// Argument holding the special record.
    pub free_special_arg: u32,
    /// Argument holding the object's address.
    pub free_addr_arg: u32,
    /// Argument holding the object's size.
    pub free_size_arg: u32,
    /// Offset of `kind` in `runtime.special`: 10 while `offset` is a
    /// uint16, 16 once it became a uintptr (1.24).
    pub special_kind_offset: u32,
    /// `_KindSpecialProfile`: 2, then 3 (1.23), then 4 (1.25), as kinds
    /// were added before it.
    pub special_kind_profile: u32,
    /// Runs once per GC cycle, at mark termination.
    pub gc_fn: &'static str,
    /// Runs once per process, after the runtime's start-up (heap sampling
    /// already set: `MemProfileRate` holds its default, or 0 in a program
    /// that links no heap profiler) and before `main.main`.
    pub start_fn: &'static str,
}

/// Go's heap profile records (mprof.go): the buckets' layout, what follows
/// their pcs, and the function that walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapRecordsLayout {
    /// Layout of `runtime.bucket`, the heap profile's record of one stack
    /// (the allocation probe reads its size and stack too).
    pub bucket: BucketLayout,
    /// Layout of `runtime.memRecord`, which follows a heap bucket's pcs.
    pub mem_record: MemRecordLayout,
    /// Deepest stack a bucket can hold (`maxStack`, then
    /// `maxProfStackDepth`): a bound when walking the bucket list.
    pub max_profile_depth: u32,
    /// The function behind `runtime.MemProfile` that walks the records:
    /// its code loads `runtime.mProfCycle` (4 bytes) and `runtime.mbuckets`
    /// (8 bytes), which locates both in stripped binaries.
    pub profile_reader_fn: &'static str,
}

/// `runtime.MemProfileRate`, the one variable leak may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateAccess {
    /// Functions whose code loads `runtime.MemProfileRate`, most direct
    /// first: their RIP-relative operands locate the variable in stripped
    /// binaries.
    pub reader_fns: &'static [&'static str],
    /// Where `MemProfileRate` gets its default. `None`: it is initialised
    /// data, 524288 in the file. `Some(f)`: it is zero in the file and the
    /// function `f` stores the default at start-up (`mov $0x80000` into a
    /// register, then that register into the variable), which is what
    /// locates it in stripped binaries.
    pub set_by: Option<&'static str>,
    /// The runtime notices a new `MemProfileRate` by itself (it compares it
    /// with `mcache.memProfRate`); if false, write 1 first so every P
    /// recomputes its next sample point.
    pub change_noticed: bool,
}

/// Go's goroutines (runtime2.go, proc.go): the list of every `g` the
/// runtime ever made (`allgs`, mirrored by `allglen`/`allgptr` for lock-free
/// readers), each `g`'s layout and status values, and the runtime
/// functions that locate the list and the wait-reason names in stripped
/// binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoroutineLayout {
    /// Layout of `runtime.g`.
    pub g: GLayout,
    /// Values of `g.atomicstatus`.
    pub status: GStatusValues,
    /// A function whose code loads `runtime.allglen` then
    /// `runtime.allgptr`, each an 8-byte RIP-relative load, in that order
    /// (`forEachGRace`, with `atomicAllG` inlined).
    pub allgs_reader_fn: &'static str,
    /// A function whose code takes the address of `runtime.waitReasonStrings`
    /// (a RIP-relative `lea`) and compares the reason with its length
    /// (`waitReason.String`).
    pub wait_reason_fn: &'static str,
    /// Start functions in `runtime.*` whose goroutines pprof counts as the
    /// user's (`isSystemGoroutine` is false for them): `runtime.main`, …
    pub user_runtime_starts: &'static [&'static str],
    /// Start functions of goroutines that are the runtime's except while
    /// they run user code (finalizers, cleanups).
    pub user_code_runners: &'static [&'static str],
}

/// The GC pacer's state, `runtime.gcController` (a
/// `gcControllerState`, mgcpacer.go), and the GC count
/// `runtime.memstats.numgc` (mstats.go): read as they are, never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapStatsLayout {
    /// Offsets in `gcControllerState`.
    pub controller: ControllerLayout,
    /// A function whose first RIP-relative `lea` into writable data takes
    /// the address of `runtime.gcController` (to call its methods):
    /// `gcControllerCommit`. Locates it in stripped binaries.
    pub controller_fn: &'static str,
    /// A function that both reads the low byte of `memstats.numgc` (a
    /// one-byte `movzx`, for `numgc % len(pause_ns)`) and increments it (a
    /// four-byte `inc`): `gcMarkTermination`. The one address both touch
    /// is `numgc`, with symbols or without.
    pub gc_count_fn: &'static str,
}

/// C code called from Go (cgo, `runtime.cgocall` → `asmcgocall`) runs on
/// the thread's system stack: its `g` (thread-local) is then the `m`'s
/// `g0`, and the goroutine that called is `m.curg`, its stack left at
/// `g.sched` (runtime2.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CgoLayout {
    /// `g.m`.
    pub g_m: u32,
    /// `m.g0`.
    pub m_g0: u32,
    /// `m.curg`.
    pub m_curg: u32,
    /// A function whose first load through the FS segment reads the
    /// thread's `g` (`get_tls`): its displacement, or the immediate moved
    /// into its base register just before, is `g`'s offset from the TLS
    /// base. Found by name with or without the `.abi0` suffix.
    pub tls_fn: &'static str,
}

/// Offsets of the fields of `runtime.gcControllerState` leak reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControllerLayout {
    /// `gcPercent` (an `atomic.Int32`: GOGC, -1 when off).
    pub gc_percent: u32,
    /// `memoryLimit` (an `atomic.Int64`: GOMEMLIMIT, `math.MaxInt64` when
    /// unset).
    pub memory_limit: u32,
    /// `heapLive` (8 bytes): bytes the GC counts live now, what the last
    /// GC marked plus what was allocated since.
    pub heap_live: u32,
    /// `heapMarked` (8 bytes): bytes the last GC marked, the heap that
    /// survived it.
    pub heap_marked: u32,
}

impl ControllerLayout {
    /// Bytes of `gcController` that hold every field leak reads.
    pub(crate) fn span(&self) -> u32 {
        let ends = [
            self.gc_percent + 4,
            self.memory_limit + 8,
            self.heap_live + 8,
            self.heap_marked + 8,
        ];
        ends.into_iter().max().unwrap_or(0)
    }
}

/// Offsets of the fields of `runtime.g` leak reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GLayout {
    /// `unsafe.Sizeof(g{})`: a `g` is read whole, in one read.
    pub size: u32,
    /// `stack.lo`: lowest address of the goroutine's stack.
    pub stack_lo: u32,
    /// `stack.hi`: one past its highest address.
    pub stack_hi: u32,
    /// `sched`, the `gobuf` a goroutine that is not running resumes from.
    pub sched: u32,
    /// Layout of `runtime.gobuf`.
    pub gobuf: GobufLayout,
    /// `atomicstatus` (a `uint32`).
    pub atomicstatus: u32,
    /// `goid`.
    pub goid: u32,
    /// `waitsince`: `nanotime()` when the goroutine blocked, set lazily.
    pub waitsince: u32,
    /// `waitreason` (a `uint8` index into `runtime.waitReasonStrings`).
    pub waitreason: u32,
    /// `parentGoid`, where it exists (1.21 on).
    pub parent_goid: Option<u32>,
    /// `gopc`: the pc of the `go` statement (pprof's "created by").
    pub gopc: u32,
    /// `startpc`: the entry of the goroutine's function.
    pub startpc: u32,
}

/// Offsets in `runtime.gobuf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GobufLayout {
    /// `sp`.
    pub sp: u32,
    /// `pc`.
    pub pc: u32,
    /// `bp` (after `ret` until 1.24, after `lr` once `ret` is gone).
    pub bp: u32,
}

/// The values of `g.atomicstatus` (runtime2.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GStatusValues {
    /// `_Gidle`: just allocated, not yet published.
    pub idle: u32,
    /// `_Grunnable`: on a run queue, not running.
    pub runnable: u32,
    /// `_Grunning`.
    pub running: u32,
    /// `_Gsyscall`.
    pub syscall: u32,
    /// `_Gwaiting`: blocked (parked) in the runtime.
    pub waiting: u32,
    /// `_Gdead`: unused, kept in `allgs` for reuse.
    pub dead: u32,
    /// `_Gcopystack`: its stack is being moved.
    pub copystack: u32,
    /// `_Gpreempted`: stopped for a suspendG preemption.
    pub preempted: u32,
    /// `_Gleaked`: found leaked by the goroutine leak profile's GC (1.26 on).
    pub leaked: Option<u32>,
    /// `_Gdeadextra`: dead and attached to an extra M (1.26 on).
    pub dead_extra: Option<u32>,
    /// `_Gscan`: the bit set while the GC scans the goroutine's stack.
    pub scan_bit: u32,
}

/// Offsets of the fields of `runtime.bucket` (mprof.go): a header of six
/// words, then `nstk` pcs, then the record (`memRecord` for heap buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketLayout {
    /// `next *bucket`: the hash chain.
    pub next: u32,
    /// `allnext *bucket`: the list of all buckets of one profile type.
    pub allnext: u32,
    /// `typ bucketType` (1 = memProfile).
    pub typ: u32,
    /// `hash uintptr`.
    pub hash: u32,
    /// `size uintptr`: the allocation size this bucket counts.
    pub size: u32,
    /// `nstk uintptr`: number of pcs in the stack.
    pub nstk: u32,
    /// First pc of the stack: the header's size (`unsafe.Sizeof(bucket{})`),
    /// as `bucket.stk` computes it.
    pub stack: u32,
}

/// Layout of `runtime.memRecord` (mprof.go): `active` then `future[3]`,
/// each a `memRecordCycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemRecordLayout {
    /// `unsafe.Sizeof(memRecordCycle{})`.
    pub cycle_size: u32,
    /// `memRecordCycle.allocs`.
    pub allocs: u32,
    /// `memRecordCycle.frees`.
    pub frees: u32,
    /// `alloc_bytes` and `free_bytes`, where the cycle keeps them (Go
    /// 1.27 keeps counts only: bytes are count × bucket size).
    pub bytes: Option<(u32, u32)>,
}

impl MemRecordLayout {
    /// Cycles in a record: `active` and the three `future` ones.
    pub(crate) const CYCLES: u32 = 4;

    /// `unsafe.Sizeof(memRecord{})`.
    pub(crate) fn size(&self) -> u32 {
        Self::CYCLES * self.cycle_size
    }
}

/// Offsets of the fields of `runtime.moduledata` (symtab.go) that the
/// `.gopclntab` reader needs when the pcHeader does not say (1.26 dropped
/// `pcHeader.textStart`) or does not know (`gofunc`, base of inline trees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModuledataLayout {
    /// `pcHeader *pcHeader`: points at the table.
    pub pcheader: u64,
    /// `funcnametab []byte`: its data pointer is the pcHeader plus
    /// `funcnameOffset`.
    pub funcnametab: u64,
    /// `text uintptr`: the text base function entries are relative to.
    pub text: u64,
    /// `rodata uintptr`: at or below `gofunc`, which tells layouts apart.
    pub rodata: u64,
    /// `gofunc uintptr`: the `go:func.*` symbol.
    pub gofunc: u64,
}

/// Functions that belong to the allocation machinery, which Go's heap
/// profile trims from the leaf end of a stack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AllocatorFrames {
    /// Name prefixes of runtime packages.
    pub prefixes: &'static [&'static str],
    /// Runtime code that other packages reach by `go:linkname` under their
    /// own name; it allocates on the caller's behalf.
    pub linknamed: &'static [&'static str],
}

impl AllocatorFrames {
    /// Whether `function` belongs to the allocation machinery.
    pub(crate) fn contains(&self, function: &str) -> bool {
        self.prefixes.iter().any(|p| function.starts_with(p)) || self.linknamed.contains(&function)
    }
}

impl RuntimeProbes {
    /// What the kernel side needs of this row: argument positions and the
    /// `special` and `bucket` layouts, given to the eBPF programs at load.
    pub(crate) fn probe_config(&self) -> ProbeConfig {
        let (p, bucket) = (&self.probes, &self.records.bucket);
        ProbeConfig {
            alloc_addr_arg: p.alloc_addr_arg,
            alloc_bucket_arg: p.alloc_bucket_arg,
            free_special_arg: p.free_special_arg,
            free_addr_arg: p.free_addr_arg,
            free_size_arg: p.free_size_arg,
            special_kind_offset: p.special_kind_offset,
            special_kind_profile: p.special_kind_profile,
            bucket_size_offset: bucket.size,
            bucket_nstk_offset: bucket.nstk,
            bucket_stack_offset: bucket.stack,
        }
    }

    /// Every function this row names, for checking a binary has them all.
    #[cfg(test)]
    pub(crate) fn functions(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            self.marker_fn,
            self.probes.alloc_fn,
            self.probes.free_fn,
            self.probes.gc_fn,
            self.probes.start_fn,
            self.records.profile_reader_fn,
            self.goroutines.allgs_reader_fn,
            self.goroutines.wait_reason_fn,
            self.heap_stats.controller_fn,
            self.heap_stats.gc_count_fn,
        ]
        .into_iter()
        .chain(self.rate.reader_fns.iter().copied())
        .chain(self.rate.set_by)
    }

    /// The first release after this row's range (`None`: no end).
    pub(crate) fn end(&self) -> Option<GoVersion> {
        let rows = rows();
        let next = rows.iter().find(|r| r.since > self.since).map(|r| r.since);
        self.ends_before.or(next)
    }

    /// Whether the row's range has a release in `[from, before)`.
    fn meets(&self, from: GoVersion, before: Option<GoVersion>) -> bool {
        self.end().is_none_or(|end| end > from) && before.is_none_or(|b| self.since < b)
    }
}

/// The row for Go version `v`; an error says what is missing for it and
/// names the supported range.
pub(crate) fn probes_for(v: &GoVersion) -> Result<&'static RuntimeProbes, GoError> {
    rows()
        .iter()
        .rev()
        .find(|row| row.since <= *v)
        .filter(|row| row.end().is_none_or(|end| *v < end))
        .ok_or_else(|| GoError::UnsupportedGoVersion {
            version: v.to_string(),
            missing: format!(
                "leak's runtime table has no row for go{}.{} (its probe functions, struct layouts and offsets were never checked against that release)",
                v.major, v.minor
            ),
            supported: SUPPORTED,
        })
}

/// The `moduledata` layouts of the rows with a release in `[from, before)`
/// (the releases a `.gopclntab` format can come from), oldest first, each
/// once: the `.gopclntab` reader runs before the version is known, so it
/// tries them in turn.
pub(crate) fn moduledata_layouts(
    from: GoVersion,
    before: Option<GoVersion>,
) -> impl Iterator<Item = &'static ModuledataLayout> {
    let rows = rows();
    let meets = move |row: &RuntimeProbes| row.meets(from, before);
    rows.iter()
        .enumerate()
        .filter(move |&(_, row)| meets(row))
        .filter(move |&(i, row)| {
            rows[..i]
                .iter()
                .all(|r| !meets(r) || r.moduledata != row.moduledata)
        })
        .map(|(_, row)| &row.moduledata)
}

/// The newest row whose marker function `has_function` finds: the oldest
/// release the binary can be. `None` before the first row's marker.
pub(crate) fn row_by_markers(
    has_function: impl Fn(&str) -> bool,
) -> Option<&'static RuntimeProbes> {
    rows().iter().rev().find(|row| has_function(row.marker_fn))
}

/// The lowest release whose linker writes `pcHeader.textStart` as 0
/// (runtime/symtab.go from 1.26: "The next field used to be textStart").
pub(crate) const TEXT_START_DROPPED: GoVersion = GoVersion::new(1, 26, 0);
