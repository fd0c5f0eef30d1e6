use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use super::*;
use crate::{aggregate::Totals, report::StackProfile};

fn frame(function: &str, file: &str, line: u32, inlined: bool) -> Frame {
    Frame::new(function, file, line, inlined)
}

fn totals(outstanding_bytes: f64, objects: f64) -> Totals {
    Totals {
        outstanding_bytes,
        outstanding_objects: objects,
        allocated_bytes: 2.0 * outstanding_bytes,
        allocated_objects: 2.0 * objects,
    }
}

const SEED: &str = "/src/seed/main.go";
const BYTES: &str = "/go/src/bytes/bytes.go";

/// The leak: `Track` inlined into `handle`, both in one location.
fn leak_stack(outstanding_bytes: f64) -> StackProfile {
    StackProfile {
        heap: None,
        oldest_secs: None,
        held_at_exit: 0.0,
        growth: None,
        frames: vec![
            frame("bytes.Repeat", BYTES, 595, false),
            frame("main.(*RequestTracker).Track", SEED, 30, true),
            frame("main.handle", SEED, 45, false),
            frame("main.main", SEED, 60, false),
        ]
        .into(),
        totals: totals(outstanding_bytes, outstanding_bytes / 1024.0),
    }
}

fn profile(leak_bytes: f64) -> Profile {
    let other = StackProfile {
        heap: None,
        oldest_secs: None,
        held_at_exit: 0.0,
        growth: None,
        frames: vec![
            frame("bytes.Repeat", BYTES, 595, false),
            frame("main.other", SEED, 70, false),
            frame("main.main", SEED, 60, false),
        ]
        .into(),
        totals: totals(4096.4, 4.0),
    };
    let nothing = StackProfile {
        heap: None,
        oldest_secs: None,
        held_at_exit: 0.0,
        growth: None,
        frames: vec![frame("main.idle", SEED, 80, false)].into(),
        totals: totals(0.2, 0.0),
    };
    let mut p = crate::report::example(vec![leak_stack(leak_bytes), other, nothing]);
    p.pids = vec![42];
    p.total = Totals::default();
    p
}

fn meta() -> PprofMeta {
    PprofMeta {
        build_id: Some("abc123".into()),
        time_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 30_000_000_000,
    }
}

fn decode(bytes: &[u8]) -> proto::Profile {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .expect("gzip");
    proto::Profile::decode(raw.as_slice()).expect("profile.proto")
}

#[test]
fn golden_heap_profile() {
    let mut out = Vec::new();
    write(&profile(20480000.4), &meta(), &mut out).unwrap();
    let p = decode(&out);
    let s = |i: i64| p.string_table[i as usize].as_str();

    assert_eq!(p.string_table[0], "");
    let mut unique = p.string_table.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), p.string_table.len(), "strings interned once");

    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes"),
        ]
    );
    assert_eq!(s(p.default_sample_type), "inuse_space");
    let period_type = p.period_type.as_ref().unwrap();
    assert_eq!(
        (s(period_type.r#type), s(period_type.unit)),
        ("space", "bytes")
    );
    assert_eq!(p.period, 512 * 1024);
    assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
    assert_eq!(p.duration_nanos, 30_000_000_000);

    assert_eq!(p.mapping.len(), 1);
    let m = &p.mapping[0];
    assert_eq!(
        (m.id, s(m.filename), s(m.build_id)),
        (1, "/srv/seed", "abc123")
    );
    assert!(m.has_functions && m.has_filenames && m.has_line_numbers && m.has_inline_frames);

    // Five functions (idle's stack holds nothing and is left out), each
    // once; system name = name.
    let functions: Vec<(u64, &str, &str)> = p
        .function
        .iter()
        .map(|f| {
            assert_eq!(f.system_name, f.name);
            (f.id, s(f.name), s(f.filename))
        })
        .collect();
    assert_eq!(
        functions,
        [
            (1, "bytes.Repeat", BYTES),
            (2, "main.(*RequestTracker).Track", SEED),
            (3, "main.handle", SEED),
            (4, "main.main", SEED),
            (5, "main.other", SEED),
        ]
    );

    // Shared frames share locations; the inlined frame is a second line
    // of its caller's location, innermost first.
    let locations: Vec<(u64, Vec<(u64, i64)>)> = p
        .location
        .iter()
        .map(|l| {
            assert_eq!((l.mapping_id, l.address), (1, 0));
            (
                l.id,
                l.line.iter().map(|l| (l.function_id, l.line)).collect(),
            )
        })
        .collect();
    assert_eq!(
        locations,
        [
            (1, vec![(1, 595)]),
            (2, vec![(2, 30), (3, 45)]),
            (3, vec![(4, 60)]),
            (4, vec![(5, 70)]),
        ]
    );

    let samples: Vec<(&[u64], &[i64])> = p
        .sample
        .iter()
        .map(|x| (x.location_id.as_slice(), x.value.as_slice()))
        .collect();
    assert_eq!(
        samples,
        [
            (&[1, 2, 3][..], &[40000, 40960001, 20000, 20480000][..]),
            (&[1, 4, 3][..], &[8, 8193, 4, 4096][..]),
        ]
    );
}

#[test]
fn trailing_inlined_frames_form_a_location() {
    // A truncated stack can end inside an inlined run.
    let mut p = profile(1000.0);
    p.stacks = vec![StackProfile {
        heap: None,
        oldest_secs: None,
        held_at_exit: 0.0,
        growth: None,
        frames: vec![
            frame("a", "a.go", 1, false),
            frame("b", "b.go", 2, true),
            frame("c", "c.go", 3, true),
        ]
        .into(),
        totals: totals(1000.0, 1.0),
    }];
    let mut out = Vec::new();
    write(&p, &PprofMeta::default(), &mut out).unwrap();
    let p = decode(&out);
    assert_eq!(p.sample[0].location_id, [1, 2]);
    assert_eq!(p.location[1].line.len(), 2);
    assert_eq!(p.string_table[p.mapping[0].build_id as usize], "");
}

#[test]
fn a_goroutine_profile_is_shaped_like_gos() {
    let mut out = Vec::new();
    write(
        &crate::report::goroutine_example(),
        &PprofMeta::default(),
        &mut out,
    )
    .unwrap();
    let p = decode(&out);
    let s = |i: i64| p.string_table[i as usize].as_str();
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(types, [("goroutine", "count")]);
    let period_type = p.period_type.as_ref().unwrap();
    assert_eq!(
        (s(period_type.r#type), s(period_type.unit)),
        ("goroutine", "count")
    );
    // Every goroutine is counted, and Go names no default sample type.
    assert_eq!((p.period, p.default_sample_type), (1, 0));
    // main.main holds none and is left out.
    let values: Vec<&[i64]> = p.sample.iter().map(|x| x.value.as_slice()).collect();
    assert_eq!(values, [&[1200][..], &[3][..]]);
}

/// `go tool pprof` of the test toolchain, or `None` after saying why.
fn go() -> Option<PathBuf> {
    let root = std::env::var_os("LEAK_GO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools"));
    let go = root.join("go-1.25.5/bin/go");
    if go.is_file() {
        Some(go)
    } else {
        eprintln!(
            "skipped: {} not found (set LEAK_GO_ROOT to a dir with go-1.25.5/bin/go)",
            go.display()
        );
        None
    }
}

/// Runs `go tool pprof ARGS` and returns its standard output.
fn pprof(go: &Path, args: &[&str]) -> String {
    let out = Command::new(go)
        .args(["tool", "pprof"])
        .args(args)
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("run go tool pprof");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The first row of `-top` output as (flat, function).
fn top_row(top: &str) -> (String, String) {
    let row = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in:\n{top}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    (cols[0].to_string(), cols[5..].join(" "))
}

fn write_file(dir: &Path, name: &str, profile: &Profile) -> String {
    let path = dir.join(name);
    let mut out = Vec::new();
    write(profile, &meta(), &mut out).unwrap();
    std::fs::write(&path, out).unwrap();
    path.to_string_lossy().into_owned()
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leak-pprof-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn go_tool_pprof_reads_it() {
    let Some(go) = go() else { return };
    let dir = temp_dir("read");
    let file = write_file(&dir, "heap.pb.gz", &profile(20480000.4));

    let top = pprof(
        &go,
        &["-top", "-sample_index=inuse_space", "-unit=B", &file],
    );
    assert!(top.contains("Type: inuse_space"), "{top}");
    // bytes.Repeat is the leaf of both stacks: 20480000 + 4096.
    assert_eq!(
        top_row(&top),
        ("20484096B".to_string(), "bytes.Repeat".to_string()),
        "{top}"
    );

    let traces = pprof(&go, &["-traces", "-sample_index=inuse_space", &file]);
    assert!(
        traces.contains("main.(*RequestTracker).Track (inline)"),
        "{traces}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn go_tool_pprof_diffs_against_a_base() {
    let Some(go) = go() else { return };
    let dir = temp_dir("base");
    let before = write_file(&dir, "before.pb.gz", &profile(1_000_000.0));
    let after = write_file(&dir, "after.pb.gz", &profile(3_000_000.0));

    let top = pprof(
        &go,
        &[
            "-top",
            "-sample_index=inuse_space",
            "-unit=B",
            "-base",
            &before,
            &after,
        ],
    );
    // Only the leak grew; the other stack cancels out.
    assert_eq!(
        top_row(&top),
        ("2000000B".to_string(), "bytes.Repeat".to_string()),
        "{top}"
    );
    assert!(top.contains("of 2000000B total"), "{top}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn go_tool_pprof_reads_a_goroutine_profile() {
    let Some(go) = go() else { return };
    let dir = temp_dir("goroutine");
    let file = write_file(&dir, "goroutine.pb.gz", &crate::report::goroutine_example());
    let top = pprof(&go, &["-top", &file]);
    assert!(top.contains("Type: goroutine"), "{top}");
    assert!(top.contains("of 1203 total"), "{top}");
    // runtime.gopark is the leaf of both stacks: 1200 + 3.
    assert_eq!(
        top_row(&top),
        ("1203".to_string(), "runtime.gopark".to_string()),
        "{top}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
