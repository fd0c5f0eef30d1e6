//! pprof: the profile as a gzipped `profile.proto`, shaped like Go's own
//! `/debug/pprof/heap`, so `go tool pprof` reads it like any Go heap profile
//! and `-base` diffs one against another.
//!
//! Sample values are, in Go's order, `alloc_objects`, `alloc_space`,
//! `inuse_objects` and `inuse_space`; "in use" here is outstanding since
//! attach (not Go's "as of the last GC"), and `inuse_space` is the default.
//! Frames carry no PCs, so every location has address 0 and is told apart
//! by its lines: `-base` then matches locations by function and line, the
//! same way in both profiles.

use std::{
    collections::HashMap,
    io::{self, Write},
};

use flate2::{write::GzEncoder, Compression};
use prost::Message;

use super::{Frame, Profile};

/// What a pprof file records that the [`Profile`] does not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PprofMeta {
    /// Build ID of the traced binary (hex), if it has one.
    pub build_id: Option<String>,
    /// When tracing started, in nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    /// How long the trace ran, in nanoseconds.
    pub duration_nanos: i64,
}

/// Writes `profile` as a gzipped pprof heap profile.
pub fn write(profile: &Profile, meta: &PprofMeta, w: &mut dyn Write) -> io::Result<()> {
    let encoded = encode(profile, meta).encode_to_vec();
    let mut gz = GzEncoder::new(w, Compression::default());
    gz.write_all(&encoded)?;
    gz.finish()?;
    Ok(())
}

/// The only mapping: the traced binary.
const MAPPING_ID: u64 = 1;

/// Builds the protobuf message of `profile`.
fn encode(profile: &Profile, meta: &PprofMeta) -> proto::Profile {
    let mut b = Builder::default();
    // Go's order and names, so tools that know Go heap profiles (and
    // `-sample_index=inuse_space`) work unchanged.
    let sample_type = [
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]
    .map(|(kind, unit)| b.value_type(kind, unit))
    .to_vec();
    let default_sample_type = b.string("inuse_space");
    let period_type = b.value_type("space", "bytes");

    let filename = b.string(&profile.binary.to_string_lossy());
    let build_id = b.string(meta.build_id.as_deref().unwrap_or(""));
    let mapping = proto::Mapping {
        id: MAPPING_ID,
        filename,
        build_id,
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
        ..Default::default()
    };

    let mut sample = Vec::with_capacity(profile.stacks.len());
    for stack in &profile.stacks {
        let t = &stack.totals;
        let value: Vec<i64> = [
            t.allocated_objects,
            t.allocated_bytes,
            t.outstanding_objects,
            t.outstanding_bytes,
        ]
        .iter()
        .map(|v| v.round() as i64)
        .collect();
        if value.iter().all(|&v| v == 0) {
            continue;
        }
        let location_id = stack
            .frames
            .split_inclusive(|f| !f.inlined)
            .map(|run| b.location(run))
            .collect();
        sample.push(proto::Sample { location_id, value });
    }

    proto::Profile {
        sample_type,
        sample,
        mapping: vec![mapping],
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        time_nanos: meta.time_nanos,
        duration_nanos: meta.duration_nanos,
        period_type: Some(period_type),
        period: profile.rate as i64,
        default_sample_type,
    }
}

/// Interns strings, functions and locations, handing out their indices and
/// ids in order of first use.
struct Builder {
    strings: Vec<String>,
    string_index: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    /// Function id by (name, file).
    function_index: HashMap<(std::sync::Arc<str>, std::sync::Arc<str>), u64>,
    locations: Vec<proto::Location>,
    /// Location id by its lines as (function id, line), innermost first.
    location_index: HashMap<Vec<(u64, i64)>, u64>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            // profile.proto requires string_table[0] == "".
            strings: vec![String::new()],
            string_index: HashMap::from([(String::new(), 0)]),
            functions: Vec::new(),
            function_index: HashMap::new(),
            locations: Vec::new(),
            location_index: HashMap::new(),
        }
    }
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_index.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let key = (frame.function.clone(), frame.file.clone());
        if let Some(&id) = self.function_index.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name = self.string(&frame.function);
        let filename = self.string(&frame.file);
        self.functions.push(proto::Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: 0,
        });
        self.function_index.insert(key, id);
        id
    }

    /// The location of `run`: frames inlined into one another, innermost
    /// first, ending with the function they were inlined into.
    fn location(&mut self, run: &[Frame]) -> u64 {
        let lines: Vec<(u64, i64)> = run
            .iter()
            .map(|f| (self.function(f), i64::from(f.line)))
            .collect();
        if let Some(&id) = self.location_index.get(&lines) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id: MAPPING_ID,
            address: 0,
            line: lines
                .iter()
                .map(|&(function_id, line)| proto::Line { function_id, line })
                .collect(),
        });
        self.location_index.insert(lines, id);
        id
    }
}

/// The subset of pprof's `profile.proto` written here, field numbers as in
/// github.com/google/pprof/proto/profile.proto.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost inlined function first, the function they were
        /// inlined into last.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        path::{Path, PathBuf},
        process::Command,
        time::Duration,
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
            growth: None,
            frames: vec![frame("main.idle", SEED, 80, false)].into(),
            totals: totals(0.2, 0.0),
        };
        Profile {
            work: None,
            binary: "/srv/seed".into(),
            go_version: "go1.25.5".into(),
            pids: vec![42],
            rate: 512 * 1024,
            elapsed: Duration::from_secs(30),
            gc_cycles: 3,
            samples: 100,
            frees: 20,
            total: Totals::default(),
            in_use_at_last_gc: None,
            previous_outstanding: None,
            stacks: vec![leak_stack(leak_bytes), other, nothing],
            losses: Default::default(),
        }
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
}
