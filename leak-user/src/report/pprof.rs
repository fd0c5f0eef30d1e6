//! pprof: the profile as a gzipped `profile.proto`, shaped like Go's own
//! (`/debug/pprof/heap` for bytes, `/debug/pprof/goroutine` for goroutines),
//! so `go tool pprof` reads it like any Go profile and `-base` diffs one
//! against another.
//!
//! The sample types are the unit's ([`super::Unit::sample_types`]): for bytes, in
//! Go's order, `alloc_objects`, `alloc_space`, `inuse_objects` and
//! `inuse_space`, "in use" being whatever the profile holds (outstanding
//! since attach from leak's own samples, Go's "as of the last GC" from its
//! records), and `inuse_space` the default; for goroutines,
//! `goroutine/count`.
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
pub(crate) struct PprofMeta {
    /// Build ID of the traced binary (hex), if it has one.
    pub build_id: Option<String>,
    /// When tracing started, in nanoseconds since the Unix epoch.
    pub time_nanos: i64,
    /// How long the trace ran, in nanoseconds.
    pub duration_nanos: i64,
}

impl PprofMeta {
    /// A profile of `build_id`'s program that covers the last `duration`,
    /// up to now (zero for a snapshot).
    pub(crate) fn ending_now(build_id: Option<String>, duration: std::time::Duration) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            build_id,
            time_nanos: now.saturating_sub(duration).as_nanos() as i64,
            duration_nanos: duration.as_nanos() as i64,
        }
    }
}

/// Writes `profile` as a gzipped pprof profile.
pub(crate) fn write(profile: &Profile, meta: &PprofMeta, w: &mut dyn Write) -> io::Result<()> {
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
    let unit = profile.unit;
    let mut b = Builder::default();
    let sample_type = unit
        .sample_types()
        .iter()
        .map(|t| b.value_type(t.kind, t.unit))
        .collect();
    let default_sample_type = b.string(unit.default_sample_type().unwrap_or(""));
    let (period_kind, period_unit) = unit.period_type();
    let period_type = b.value_type(period_kind, period_unit);

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

    let sample = samples(profile, &mut b);
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
        period: unit.period(&profile.source),
        default_sample_type,
    }
}

/// One sample per stack that has any value in the unit's sample types, its
/// locations interned in `b`.
fn samples(profile: &Profile, b: &mut Builder) -> Vec<proto::Sample> {
    let types = profile.unit.sample_types();
    let mut sample = Vec::with_capacity(profile.stacks.len());
    for stack in &profile.stacks {
        let value: Vec<i64> = types
            .iter()
            .map(|t| (t.value)(&stack.totals).round() as i64)
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
    sample
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
    pub(super) struct Profile {
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
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Mapping {
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
    pub(super) struct Location {
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
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
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
mod tests;
