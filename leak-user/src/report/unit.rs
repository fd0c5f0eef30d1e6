//! What a report counts, and the words every renderer uses for it: as
//! inferno's flame graph `Options` carry `count_name` and `title`, a
//! [`Unit`] says what its numbers are called in text, JSON, pprof and the
//! flame graph, and how a person reads one, so no renderer asks where the
//! numbers came from to know what to call them.
//!
//! Bytes are a heap's: outstanding bytes and objects, and what was
//! allocated. Goroutines are counted as objects held now (a goroutine
//! profile's count per stack sits in [`Totals::outstanding_objects`], read
//! in one place, `goroutines`).

use super::Source;
use crate::{
    aggregate::Totals,
    units::{human_bytes, thousands},
};

/// What the numbers of a report count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Bytes of memory (and objects holding them).
    #[default]
    Bytes,
    /// Goroutines, counted per stack as Go's goroutine profile counts them.
    Goroutines,
}

/// One pprof sample type: its type and unit as `go tool pprof` names them,
/// and the figure of a stack it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleType {
    /// `inuse_space`, `goroutine`, …
    pub kind: &'static str,
    /// `bytes`, `count`.
    pub unit: &'static str,
    /// The figure, from a stack's totals.
    pub value: fn(&Totals) -> f64,
}

/// One figure column of the text table: its title and a stack's cell.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    /// `OUTSTANDING`, `GOROUTINES`, … (empty: a column the unit leaves
    /// blank).
    pub title: &'static str,
    /// The cell, from a stack's totals.
    pub cell: fn(&Totals) -> String,
}

/// One figure of a stack as the JSON report names it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JsonCount {
    /// The field: `outstanding_bytes`, `goroutines`, …
    pub field: &'static str,
    /// The figure, from a stack's totals.
    pub value: fn(&Totals) -> f64,
}

/// Go's heap profile sample types, in Go's order, so tools that know Go
/// heap profiles (and `-sample_index=inuse_space`) work unchanged.
const HEAP_SAMPLE_TYPES: &[SampleType] = &[
    SampleType::new("alloc_objects", "count", |t| t.allocated_objects),
    SampleType::new("alloc_space", "bytes", |t| t.allocated_bytes),
    SampleType::new("inuse_objects", "count", |t| t.outstanding_objects),
    SampleType::new("inuse_space", "bytes", |t| t.outstanding_bytes),
];

/// Where a goroutine profile keeps its count: goroutines are the objects a
/// stack holds now.
fn goroutines(t: &Totals) -> f64 {
    t.outstanding_objects
}

/// Go's goroutine profile: one sample type, `goroutine/count`.
const GOROUTINE_SAMPLE_TYPES: &[SampleType] = &[SampleType::new("goroutine", "count", goroutines)];

/// A heap's figures in the JSON report, in order.
const HEAP_JSON: &[JsonCount] = &[
    JsonCount::new("outstanding_bytes", |t| t.outstanding_bytes),
    JsonCount::new("outstanding_objects", |t| t.outstanding_objects),
    JsonCount::new("allocated_bytes", |t| t.allocated_bytes),
    JsonCount::new("allocated_objects", |t| t.allocated_objects),
];

/// A goroutine profile's one figure in the JSON report.
const GOROUTINE_JSON: &[JsonCount] = &[JsonCount::new("goroutines", goroutines)];

impl SampleType {
    const fn new(kind: &'static str, unit: &'static str, value: fn(&Totals) -> f64) -> Self {
        Self { kind, unit, value }
    }
}

impl JsonCount {
    const fn new(field: &'static str, value: fn(&Totals) -> f64) -> Self {
        Self { field, value }
    }
}

impl Unit {
    /// As the JSON report spells it, and what the flame graph counts
    /// (inferno's `count_name`): `bytes`, `goroutines`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Goroutines => "goroutines",
        }
    }

    /// What a stack holds now, in this unit: the width of its flame graph
    /// bar, its folded count, the order of the stacks.
    pub(crate) fn held(self, t: &Totals) -> f64 {
        match self {
            Unit::Bytes => t.outstanding_bytes,
            Unit::Goroutines => goroutines(t),
        }
    }

    /// A quantity as a table cell: `1.2 MiB`, `1,234`.
    pub(crate) fn cell(self, v: f64) -> String {
        match self {
            Unit::Bytes => human_bytes(v),
            Unit::Goroutines => thousands(v.round() as u64),
        }
    }

    /// A quantity as a person reads it on its own, the unit said:
    /// `1.2 MiB`, `1,234 goroutines`.
    pub(crate) fn quantity(self, v: f64) -> String {
        match self {
            Unit::Bytes => human_bytes(v),
            Unit::Goroutines => format!("{} {}", self.cell(v), self.name()),
        }
    }

    /// What the flame graph shows, before the target (inferno's `title`).
    /// A heap's bytes are held since attach, in use as of the last GC, or
    /// mapped, as `source` measures them.
    pub(crate) fn title(self, source: &Source) -> &'static str {
        match (self, source) {
            (Unit::Bytes, Source::GoSampler { .. }) => "Outstanding heap",
            (Unit::Bytes, Source::Native { .. }) => "Outstanding native heap (malloc)",
            (Unit::Bytes, Source::GoRecords { .. }) => "Heap in use at the last GC",
            (Unit::Bytes, Source::Syscalls | Source::GoGoroutines { .. }) => {
                "Heap growth (brk/mmap)"
            }
            (Unit::Goroutines, _) => "Goroutines",
        }
    }

    /// The text table's figure columns, each with its title: what a stack
    /// holds (titled for how `source` measures it), then whatever else the
    /// unit has (objects and bytes allocated, for a heap).
    pub(crate) fn columns(self, source: &Source) -> [Column; 3] {
        let blank = Column {
            title: "",
            cell: |_| String::new(),
        };
        match self {
            Unit::Bytes => [
                Column {
                    title: match source {
                        Source::GoRecords { .. } => "IN USE",
                        _ => "OUTSTANDING",
                    },
                    cell: |t| human_bytes(t.outstanding_bytes),
                },
                Column {
                    title: "OBJECTS",
                    cell: |t| thousands(t.outstanding_objects.round() as u64),
                },
                Column {
                    title: "ALLOCATED",
                    cell: |t| human_bytes(t.allocated_bytes),
                },
            ],
            Unit::Goroutines => [
                Column {
                    title: "GOROUTINES",
                    cell: |t| Unit::Goroutines.cell(goroutines(t)),
                },
                blank,
                blank,
            ],
        }
    }

    /// The text table's last column title: the stack, and which end of it
    /// comes first.
    pub(crate) fn code_path(self) -> &'static str {
        match self {
            Unit::Bytes => "CODE PATH (allocating function first)",
            Unit::Goroutines => "CODE PATH (innermost function first)",
        }
    }

    /// The text report's line when no stack holds anything.
    pub(crate) fn nothing_held(self, source: &Source) -> &'static str {
        match (self, source) {
            (Unit::Bytes, Source::GoSampler { .. } | Source::Native { .. }) => {
                "no outstanding sampled allocations yet\n"
            }
            (Unit::Bytes, Source::GoRecords { .. }) => "no heap in use in the profile\n",
            (Unit::Bytes, Source::Syscalls | Source::GoGoroutines { .. }) => {
                "no heap growth seen yet\n"
            }
            (Unit::Goroutines, _) => "no goroutines in the profile\n",
        }
    }

    /// The flame graph's line when no stack holds anything.
    pub(crate) fn nothing_drawn(self) -> &'static str {
        match self {
            Unit::Bytes => "no outstanding sampled allocations",
            Unit::Goroutines => "no goroutines",
        }
    }

    /// pprof's sample types, in the order Go writes them.
    pub(crate) fn sample_types(self) -> &'static [SampleType] {
        match self {
            Unit::Bytes => HEAP_SAMPLE_TYPES,
            Unit::Goroutines => GOROUTINE_SAMPLE_TYPES,
        }
    }

    /// The sample type `go tool pprof` shows unless told otherwise, if Go
    /// names one (its goroutine profile does not).
    pub(crate) fn default_sample_type(self) -> Option<&'static str> {
        match self {
            Unit::Bytes => Some("inuse_space"),
            Unit::Goroutines => None,
        }
    }

    /// pprof's period type (type, unit), as Go writes it.
    pub(crate) fn period_type(self) -> (&'static str, &'static str) {
        match self {
            Unit::Bytes => ("space", "bytes"),
            Unit::Goroutines => ("goroutine", "count"),
        }
    }

    /// pprof's period: a heap's sampling rate (1 when `source` has none);
    /// every goroutine is counted, 1.
    pub(crate) fn period(self, source: &Source) -> i64 {
        let rate = match (self, source) {
            (
                Unit::Bytes,
                Source::GoSampler { rate, .. }
                | Source::GoRecords { rate, .. }
                | Source::Native { rate, .. },
            ) => *rate,
            _ => 1,
        };
        rate as i64
    }

    /// The figures of a stack (and of the totals) in the JSON report, in
    /// order.
    pub(crate) fn json_counts(self) -> &'static [JsonCount] {
        match self {
            Unit::Bytes => HEAP_JSON,
            Unit::Goroutines => GOROUTINE_JSON,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals() -> Totals {
        Totals {
            outstanding_bytes: 3.0 * 1024.0 * 1024.0,
            outstanding_objects: 1234.0,
            allocated_bytes: 4096.0,
            allocated_objects: 5.0,
        }
    }

    #[test]
    fn bytes_read_as_a_heap() {
        let u = Unit::Bytes;
        let t = totals();
        assert_eq!((u.name(), u.held(&t)), ("bytes", t.outstanding_bytes));
        assert_eq!(u.cell(u.held(&t)), "3.0 MiB");
        assert_eq!(u.quantity(1536.0), "1.5 KiB");
        assert_eq!(u.title(&Source::Syscalls), "Heap growth (brk/mmap)");
        assert_eq!(u.period_type(), ("space", "bytes"));
        assert_eq!(u.default_sample_type(), Some("inuse_space"));
        assert_eq!(u.period(&Source::Syscalls), 1);
        let kinds: Vec<_> = u
            .sample_types()
            .iter()
            .map(|s| (s.kind, s.unit, (s.value)(&t)))
            .collect();
        assert_eq!(
            kinds,
            [
                ("alloc_objects", "count", 5.0),
                ("alloc_space", "bytes", 4096.0),
                ("inuse_objects", "count", 1234.0),
                ("inuse_space", "bytes", 3.0 * 1024.0 * 1024.0),
            ]
        );
        let cells = u
            .columns(&Source::Syscalls)
            .map(|c| (c.title, (c.cell)(&t)));
        assert_eq!(
            cells,
            [
                ("OUTSTANDING", "3.0 MiB".to_string()),
                ("OBJECTS", "1,234".to_string()),
                ("ALLOCATED", "4.0 KiB".to_string()),
            ]
        );
    }

    #[test]
    fn goroutines_are_counted_not_sized() {
        let u = Unit::Goroutines;
        let t = totals();
        assert_eq!((u.name(), u.held(&t)), ("goroutines", 1234.0));
        assert_eq!(u.cell(1234.4), "1,234");
        assert_eq!(u.quantity(1234.0), "1,234 goroutines");
        let kinds: Vec<_> = u.sample_types().iter().map(|s| (s.kind, s.unit)).collect();
        assert_eq!(kinds, [("goroutine", "count")]);
        assert_eq!(u.period_type(), ("goroutine", "count"));
        assert_eq!(u.default_sample_type(), None);
        assert_eq!(u.period(&Source::Syscalls), 1);
        assert_eq!(u.title(&Source::Syscalls), "Goroutines");
        let fields: Vec<_> = u.json_counts().iter().map(|c| c.field).collect();
        assert_eq!(fields, ["goroutines"]);
    }
}
