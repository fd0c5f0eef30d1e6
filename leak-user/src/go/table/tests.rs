//! The rows against themselves and against the runtime sources; the checks
//! against real binaries are in `target/tests.rs` and `dwarf.rs`.

use super::*;

#[test]
fn picks_the_row_by_range() {
    let row = |minor, patch| {
        probes_for(&GoVersion::new(1, minor, patch))
            .unwrap()
            .since
            .minor
    };
    assert_eq!(row(19, 0), 19);
    assert_eq!(row(19, 13), 19);
    assert_eq!(row(21, 0), 21);
    assert_eq!(row(22, 12), 21);
    assert_eq!(row(23, 0), 23);
    assert_eq!(row(24, 11), 24);
    assert_eq!(row(25, 5), 25);
    assert_eq!(row(26, 1), 26);
    assert_eq!(row(27, 3), 27);
    assert_eq!(row(40, 0), 27);
}

/// What each release's `g` looks like where leak reads it, from the
/// DWARF of builds by 1.19.8, 1.21.13, 1.23.9, 1.24.11, 1.25.5, 1.26.6 and
/// 1.27.3 (the four kept toolchains are checked again in `dwarf.rs`).
#[test]
fn goroutine_layout_follows_the_runtime_sources() {
    let g = |minor| {
        let l = probes_for(&GoVersion::new(1, minor, 0))
            .unwrap()
            .goroutines
            .g;
        let fields = [l.atomicstatus, l.goid, l.waitsince, l.waitreason];
        (l.size, l.gobuf.bp, fields, l.parent_goid, l.gopc, l.startpc)
    };
    let at_144 = [144, 152, 168, 176];
    let at_152 = [152, 160, 176, 184];
    assert_eq!(g(19), (392, 48, at_144, None, 296, 312));
    assert_eq!(g(21), (408, 48, at_144, Some(272), 280, 296));
    assert_eq!(g(22), g(21));
    // syscallbp arrives while gobuf.ret is still there…
    assert_eq!(g(23), (432, 48, at_152, Some(280), 288, 304));
    assert_eq!(g(24), (440, 48, at_152, Some(280), 288, 304));
    // …and gobuf.ret's removal gives the 8 bytes back.
    assert_eq!(g(25), (440, 40, at_144, Some(272), 280, 296));
    assert_eq!(g(26), (456, 40, at_144, Some(280), 288, 304));
    assert_eq!(g(27), g(26));
    for row in rows() {
        let l = row.goroutines.g;
        assert_eq!(
            (l.stack_lo, l.stack_hi, l.sched),
            (0, 8, 56),
            "{}",
            row.since
        );
        assert_eq!((l.gobuf.sp, l.gobuf.pc), (0, 8), "{}", row.since);
        let leaked = row.goroutines.status.leaked;
        assert_eq!(leaked.is_some(), row.since.minor >= 26, "{}", row.since);
    }
}

#[test]
fn special_layout_follows_the_runtime_sources() {
    let layout = |minor| {
        let r = probes_for(&GoVersion::new(1, minor, 0)).unwrap();
        (r.probes.special_kind_offset, r.probes.special_kind_profile)
    };
    // Read from the 1.19.8, 1.21.13 … 1.27.3 trees' mheap.go.
    let want = [(19, (10, 2)), (21, (10, 2)), (22, (10, 2)), (23, (10, 3))];
    let want_late = [(24, (16, 3)), (25, (16, 4)), (26, (16, 4)), (27, (16, 4))];
    for (minor, l) in want.into_iter().chain(want_late) {
        assert_eq!(layout(minor), l, "go1.{minor}");
    }
}

/// Releases without a row (older than the first, or in the gap after
/// 1.19) are refused, saying what is missing and what is supported.
#[test]
fn refuses_releases_without_a_row() {
    for (minor, patch) in [(20, 14), (20, 0), (18, 10), (17, 0)] {
        let err = probes_for(&GoVersion::new(1, minor, patch))
            .unwrap_err()
            .to_string();
        let want = [
            format!("go1.{minor}.{patch}:"),
            format!("no row for go1.{minor} "),
            "go1.19, and go1.21 or later".to_string(),
        ];
        assert!(want.iter().all(|w| err.contains(w)), "{err}");
        assert!(!err.contains("rebuild"), "{err}");
    }
    assert_eq!(
        probes_for(&GoVersion::new(1, 19, 8)).unwrap().end(),
        Some(GoVersion::new(1, 20, 0))
    );
    assert_eq!(
        probes_for(&GoVersion::new(1, 21, 0)).unwrap().end(),
        Some(GoVersion::new(1, 23, 0))
    );
    assert_eq!(probes_for(&GoVersion::new(1, 27, 0)).unwrap().end(), None);
}

#[test]
fn rows_are_sorted() {
    assert!(rows().windows(2).all(|w| w[0].since < w[1].since));
}

/// Each row names its own marker, so inference can tell every row apart.
#[test]
fn every_row_has_its_own_marker() {
    for (i, row) in rows().iter().enumerate() {
        assert!(
            rows()[..i].iter().all(|r| r.marker_fn != row.marker_fn),
            "{}: marker {} repeats an older row's",
            row.since,
            row.marker_fn
        );
    }
    let found = |names: &'static [&'static str]| {
        row_by_markers(|f| names.contains(&f)).map(|r| r.since.minor)
    };
    assert_eq!(found(&[]), None);
    assert_eq!(found(&["runtime.(*gcCPULimiterState).update"]), Some(19));
    // 1.21 links the limiter too.
    let go121 = &[
        "runtime.(*gcCPULimiterState).update",
        "runtime.(*unwinder).next",
    ];
    assert_eq!(found(go121), Some(21));
    // 1.27 has mallocgcLarge (1.24's marker) and its own.
    let go127 = &[
        "runtime.(*unwinder).next",
        "runtime.mallocgcLarge",
        "runtime.mallocgcSmallNoScanSC2",
    ];
    assert_eq!(found(go127), Some(27));
}

/// Per `.gopclntab` format: 1.18–1.19 tables get 1.19's layout only, later
/// ones the layouts of 1.21 and on (1.19's words at 296/304 would read
/// `types, etypes` there, which look like `rodata, gofunc`).
#[test]
fn moduledata_layouts_are_the_distinct_ones_oldest_first() {
    let v = |minor| GoVersion::new(1, minor, 0);
    let layouts = |from, before| -> Vec<_> {
        moduledata_layouts(from, before)
            .map(|l| (l.rodata, l.gofunc))
            .collect()
    };
    assert_eq!(layouts(v(18), Some(v(20))), [(296, 304)]);
    assert_eq!(layouts(v(20), None), [(312, 320), (336, 344)]);
    assert_eq!(layouts(v(0), None), [(296, 304), (312, 320), (336, 344)]);
    assert_eq!(layouts(v(20), Some(v(21))), []);
    // The fields before `types` never moved.
    assert!(
        moduledata_layouts(v(0), None).all(|l| (l.pcheader, l.funcnametab, l.text) == (0, 8, 176))
    );
}

#[test]
fn allocator_frames_are_the_runtimes() {
    let frames = &ALLOCATOR_FRAMES;
    assert!(frames.contains("runtime.mallocgc"));
    assert!(frames.contains("internal/runtime/maps.newarray"));
    assert!(frames.contains("internal/bytealg.MakeNoZero"));
    assert!(!frames.contains("bytes.Repeat"));
    assert!(!frames.contains("runtime/pprof.writeHeap"));
    assert!(rows().iter().all(|r| r.allocator_frames == frames));
}

#[test]
fn bucket_stack_follows_the_header() {
    for row in rows() {
        let b = row.records.bucket;
        assert_eq!(b.stack, b.nstk + 8, "{}", row.since);
    }
}

#[test]
fn probe_config_carries_the_row() {
    let row = probes_for(&GoVersion::new(1, 25, 5)).unwrap();
    let cfg = row.probe_config();
    assert_eq!((cfg.alloc_addr_arg, cfg.alloc_bucket_arg), (0, 1));
    assert_eq!(
        (cfg.free_special_arg, cfg.free_addr_arg, cfg.free_size_arg),
        (0, 1, 2)
    );
    assert_eq!((cfg.special_kind_offset, cfg.special_kind_profile), (16, 4));
    assert_eq!(
        (
            cfg.bucket_size_offset,
            cfg.bucket_nstk_offset,
            cfg.bucket_stack_offset
        ),
        (32, 40, 48)
    );
}
