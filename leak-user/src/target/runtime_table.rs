//! Everything about the Go runtime that changes between releases, one row
//! per range of versions. Nothing else in leak may branch on a Go version.
//!
//! Argument numbers are positions in Go's internal register ABI for
//! integer/pointer arguments (amd64: RAX, RBX, RCX, RDI, RSI, R8, R9, R10,
//! R11; arm64: X0…X15), which uprobes read at function entry.
//!
//! Each row was read from the runtime sources (`runtime/mprof.go`,
//! `runtime/mheap.go`, `runtime/malloc.go`, `runtime/mgc.go`) of the
//! 1.21.13, 1.25.5 and 1.27.3 trees, and is tested against a binary of that
//! release. Boundaries between those releases are from the release history
//! and are noted on the row.

use super::{elf::TargetError, version::GoVersion};

/// The range leak supports, for error messages.
pub const SUPPORTED: &str = "go1.21 or later";

/// The runtime functions leak probes for one range of Go versions, and
/// where their arguments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeProbes {
    /// First release of the range (inclusive); the range ends where the
    /// next row starts.
    pub since: GoVersion,
    /// Called once per sampled allocation (every ~`MemProfileRate` bytes).
    pub malloc_fn: &'static str,
    /// Argument holding the object's address.
    pub malloc_addr_arg: u32,
    /// Argument holding the object's size.
    pub malloc_size_arg: u32,
    /// Called by the sweeper for each freed object that has specials
    /// (profile records, finalizers, cleanups).
    pub free_fn: &'static str,
    /// Argument holding the object's address.
    pub free_addr_arg: u32,
    /// Argument holding the object's size.
    pub free_size_arg: u32,
    /// Called from `free_fn` only when the special is a heap-profile record:
    /// confirms that the free was of a sampled object.
    pub free_confirm_fn: &'static str,
    /// Size argument of `free_confirm_fn`, if it still has one.
    pub free_confirm_size_arg: Option<u32>,
    /// Called right after `malloc_fn` on the same thread when the runtime
    /// really recorded the sample (`setprofilebucket(p, b)`): confirms it.
    pub alloc_confirm_fn: &'static str,
    /// Argument of `alloc_confirm_fn` holding the object's address.
    pub alloc_confirm_addr_arg: u32,
    /// Runs once per GC cycle, at mark termination.
    pub gc_fn: &'static str,
    /// Frames of a sample's stack (which starts at `malloc_fn`'s caller,
    /// `profilealloc`) that Go's own profile never records: `mProf_Malloc`'s
    /// `callers(skip)` counts from `mProf_Malloc` itself, so this is that
    /// skip − 1. 1.21: callers(4) (profilealloc, mallocgc, its caller);
    /// 1.24–1.26: callers(5) (mallocgc dispatches to mallocgcSmall*); 1.27:
    /// callers(3). 1.23 is assumed to match 1.21 (no tree here). Matters
    /// only for stacks made of runtime frames alone (measured against Go's
    /// own profile in the pprof round-trip test).
    pub profile_skip: usize,
    /// Reads `runtime.MemProfileRate`; its code locates the variable in
    /// stripped binaries.
    pub rate_reader_fn: &'static str,
    /// The runtime notices a new `MemProfileRate` by itself (it compares it
    /// with `mcache.memProfRate`); if false, write 1 first so every P
    /// recomputes its next sample point.
    pub rate_change_noticed: bool,
    /// Exact mode: entry points that together see every heap allocation
    /// exactly once (the leaves `mallocgc` dispatches to, plus those the
    /// compiler calls directly).
    pub exact_alloc_fns: &'static [&'static str],
}

impl RuntimeProbes {
    /// Every function this row names, for checking a binary has them all.
    pub fn functions(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            self.malloc_fn,
            self.free_fn,
            self.free_confirm_fn,
            self.alloc_confirm_fn,
            self.gc_fn,
            self.rate_reader_fn,
        ]
        .into_iter()
        .chain(self.exact_alloc_fns.iter().copied())
    }
}

/// Rows in version order.
static ROWS: &[RuntimeProbes] = &[
    // 1.21.13 tree: mprof.go `func mProf_Malloc(p unsafe.Pointer, size
    // uintptr)`, `func mProf_Free(b *bucket, size uintptr)`; mheap.go
    // `func freeSpecial(s *special, p unsafe.Pointer, size uintptr)`;
    // malloc.go: `mallocgc(size, typ, needzero)` does all the work. 1.22
    // kept these (mp was added to mProf_Malloc with m.profStack and
    // GODEBUG=profstackdepth, which are new in 1.23).
    RuntimeProbes {
        since: GoVersion::new(1, 21, 0),
        malloc_fn: "runtime.mProf_Malloc",
        malloc_addr_arg: 0,
        malloc_size_arg: 1,
        free_fn: "runtime.freeSpecial",
        free_addr_arg: 1,
        free_size_arg: 2,
        free_confirm_fn: "runtime.mProf_Free",
        free_confirm_size_arg: Some(1),
        // setprofilebucket(p unsafe.Pointer, b *bucket): 1.21, 1.25, 1.27 trees.
        alloc_confirm_fn: "runtime.setprofilebucket",
        alloc_confirm_addr_arg: 0,
        gc_fn: "runtime.gcMarkTermination",
        profile_skip: 3,
        rate_reader_fn: "runtime.profilealloc",
        rate_change_noticed: false,
        exact_alloc_fns: &["runtime.mallocgc"],
    },
    // 1.23: `mProf_Malloc(mp *m, p unsafe.Pointer, size uintptr)` (as in the
    // 1.25.5 tree). mallocgc is still one function until 1.24.
    RuntimeProbes {
        since: GoVersion::new(1, 23, 0),
        malloc_fn: "runtime.mProf_Malloc",
        malloc_addr_arg: 1,
        malloc_size_arg: 2,
        free_fn: "runtime.freeSpecial",
        free_addr_arg: 1,
        free_size_arg: 2,
        free_confirm_fn: "runtime.mProf_Free",
        free_confirm_size_arg: Some(1),
        // setprofilebucket(p unsafe.Pointer, b *bucket): 1.21, 1.25, 1.27 trees.
        alloc_confirm_fn: "runtime.setprofilebucket",
        alloc_confirm_addr_arg: 0,
        gc_fn: "runtime.gcMarkTermination",
        profile_skip: 3,
        rate_reader_fn: "runtime.profilealloc",
        rate_change_noticed: false,
        exact_alloc_fns: &["runtime.mallocgc"],
    },
    // 1.24–1.26 (1.25.5 tree): mallocgc dispatches to five leaves, each of
    // which checks `MemProfileRate != c.memProfRate`.
    RuntimeProbes {
        since: GoVersion::new(1, 24, 0),
        malloc_fn: "runtime.mProf_Malloc",
        malloc_addr_arg: 1,
        malloc_size_arg: 2,
        free_fn: "runtime.freeSpecial",
        free_addr_arg: 1,
        free_size_arg: 2,
        free_confirm_fn: "runtime.mProf_Free",
        free_confirm_size_arg: Some(1),
        // setprofilebucket(p unsafe.Pointer, b *bucket): 1.21, 1.25, 1.27 trees.
        alloc_confirm_fn: "runtime.setprofilebucket",
        alloc_confirm_addr_arg: 0,
        gc_fn: "runtime.gcMarkTermination",
        profile_skip: 4,
        rate_reader_fn: "runtime.profilealloc",
        rate_change_noticed: true,
        exact_alloc_fns: &[
            "runtime.mallocgcTiny",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgcSmallScanNoHeader",
            "runtime.mallocgcSmallScanHeader",
            "runtime.mallocgcLarge",
        ],
    },
    // 1.27 (1.27.3 tree): `mProf_Free(b *bucket)` lost its size (take it
    // from freeSpecial); small sizes go to size-specialised functions that
    // the compiler calls directly (malloc_generated.go), mallocgcTiny is
    // gone. Whether 1.26 already had mProf_Free(b) is unverified here.
    RuntimeProbes {
        since: GoVersion::new(1, 27, 0),
        malloc_fn: "runtime.mProf_Malloc",
        malloc_addr_arg: 1,
        malloc_size_arg: 2,
        free_fn: "runtime.freeSpecial",
        free_addr_arg: 1,
        free_size_arg: 2,
        free_confirm_fn: "runtime.mProf_Free",
        free_confirm_size_arg: None,
        // setprofilebucket(p unsafe.Pointer, b *bucket): 1.21, 1.25, 1.27 trees.
        alloc_confirm_fn: "runtime.setprofilebucket",
        alloc_confirm_addr_arg: 0,
        gc_fn: "runtime.gcMarkTermination",
        profile_skip: 2,
        rate_reader_fn: "runtime.profilealloc",
        rate_change_noticed: true,
        exact_alloc_fns: &[
            "runtime.mallocgcTinySC2",
            "runtime.mallocgcSmallNoScanSC2",
            "runtime.mallocgcSmallNoScanSC3",
            "runtime.mallocgcSmallNoScanSC4",
            "runtime.mallocgcSmallNoScanSC5",
            "runtime.mallocgcSmallNoScanSC6",
            "runtime.mallocgcSmallNoScanSC7",
            "runtime.mallocgcSmallScanNoHeaderSC1",
            "runtime.mallocgcSmallScanNoHeaderSC2",
            "runtime.mallocgcSmallScanNoHeaderSC3",
            "runtime.mallocgcSmallScanNoHeaderSC4",
            "runtime.mallocgcSmallScanNoHeaderSC5",
            "runtime.mallocgcSmallScanNoHeaderSC6",
            "runtime.mallocgcSmallScanNoHeaderSC7",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgcSmallScanNoHeader",
            "runtime.mallocgcSmallScanHeader",
            "runtime.mallocgcLarge",
        ],
    },
];

/// All rows, oldest first.
pub fn rows() -> &'static [RuntimeProbes] {
    ROWS
}

/// The row for Go version `v`; an error names the supported range.
pub fn probes_for(v: &GoVersion) -> Result<&'static RuntimeProbes, TargetError> {
    ROWS.iter()
        .rev()
        .find(|row| row.since <= *v)
        .ok_or_else(|| TargetError::UnsupportedGoVersion {
            version: v.to_string(),
            supported: SUPPORTED,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_row_by_range() {
        let row = |minor, patch| {
            probes_for(&GoVersion::new(1, minor, patch))
                .unwrap()
                .since
                .minor
        };
        assert_eq!(row(21, 0), 21);
        assert_eq!(row(22, 12), 21);
        assert_eq!(row(23, 0), 23);
        assert_eq!(row(25, 5), 24);
        assert_eq!(row(26, 1), 24);
        assert_eq!(row(27, 3), 27);
        assert_eq!(row(40, 0), 27);
    }

    #[test]
    fn argument_order_changes_at_go1_23() {
        let old = probes_for(&GoVersion::new(1, 22, 0)).unwrap();
        let new = probes_for(&GoVersion::new(1, 23, 0)).unwrap();
        assert_eq!((old.malloc_addr_arg, old.malloc_size_arg), (0, 1));
        assert_eq!((new.malloc_addr_arg, new.malloc_size_arg), (1, 2));
    }

    #[test]
    fn refuses_old_releases_with_the_supported_range() {
        let err = probes_for(&GoVersion::new(1, 20, 14))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("go1.20.14") && err.contains("go1.21 or later"),
            "{err}"
        );
    }

    #[test]
    fn rows_are_sorted() {
        assert!(ROWS.windows(2).all(|w| w[0].since < w[1].since));
    }
}
