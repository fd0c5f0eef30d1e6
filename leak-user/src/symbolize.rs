//! From program counters to the frames a person reads, as pprof shows them.
//!
//! Stacks arrive relocated to the binary's own addresses, in one of two
//! forms. Each pc is looked up at `pc − 1` (inside the call instruction, so
//! the line is the call's) and cached: a leak repeats the same few stacks
//! thousands of times.
//! * Physical return addresses (a frame-pointer walk, [`Symbolizer::stack`]):
//!   each expands into the frames inlined at that address.
//! * Logical pcs, as Go's `runtime.Callers` and its profile buckets hold
//!   them ([`Symbolizer::logical_stack`]): inlined calls are already
//!   expanded, one entry per frame, so each pc is exactly one frame, the
//!   innermost function at `pc − 1`.
//!
//! Frames of the allocator itself (`runtime.*` at the leaf end, and the
//! runtime table's other allocator frames) are trimmed, as Go's heap
//! profile trims them, so the leaf is the function that asked for memory.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::{frame::Frame, go::table::ALLOCATOR_FRAMES};

/// Something that knows the frames at a code address (a `.gopclntab`).
pub(crate) trait SymbolSource {
    /// Frames at `pc` as Go's profiles show them, innermost (inlined)
    /// first; `None` if `pc` is in no known function. Compiler-generated
    /// wrappers are left out, so a known pc may have no frames.
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>>;

    /// The innermost frame at `pc` (the function, inlined or not, whose
    /// code it is); `Some(None)` for a compiler wrapper, `None` if `pc` is
    /// in no known function.
    fn innermost_at(&self, pc: u64) -> Option<Option<Frame>> {
        self.frames_at(pc).map(|f| f.into_iter().next())
    }
}

/// Hashing for the caches: keys are code addresses, not attacker-chosen.
type Fast = foldhash::fast::RandomState;

/// Caching symbolizer over one binary.
pub(crate) struct Symbolizer<S> {
    source: S,
    cache: HashMap<u64, Vec<Frame>, Fast>,
    /// Logical pcs: the one frame each (none for a wrapper).
    logical: HashMap<u64, Option<Frame>, Fast>,
    /// Every function and file name once: many pcs share them.
    names: HashSet<Arc<str>>,
    /// Stacks are Go's: cut at `runtime.goexit`, the allocator trimmed.
    go: bool,
}

impl<S: SymbolSource> Symbolizer<S> {
    /// A symbolizer of a Go binary's stacks reading `source`: stacks end
    /// before `runtime.goexit` and start at the function that asked for
    /// memory, as Go's profiles show them.
    pub(crate) fn new(source: S) -> Self {
        Self {
            source,
            cache: HashMap::default(),
            logical: HashMap::default(),
            names: HashSet::new(),
            go: true,
        }
    }

    /// A symbolizer of any program's stacks, which keeps every frame.
    pub(crate) fn native(source: S) -> Self {
        Self {
            go: false,
            ..Self::new(source)
        }
    }

    /// The symbol source.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Frames of a stack of return addresses, leaf first (a Go stack with
    /// its allocator frames trimmed).
    pub(crate) fn stack(&mut self, return_addresses: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(return_addresses.len());
        for &ra in return_addresses {
            if !self.cache.contains_key(&ra) {
                let mut found = self
                    .source
                    .frames_at(ra.wrapping_sub(1))
                    .unwrap_or_else(|| vec![Frame::named(&format!("0x{ra:x}"))]);
                for f in &mut found {
                    intern_frame(&mut self.names, f);
                }
                self.cache.insert(ra, found);
            }
            frames.extend(self.cache[&ra].iter().cloned());
        }
        self.finish(frames)
    }

    /// Frames of a stack of logical pcs (Go's own, inlining expanded),
    /// leaf first, allocator frames trimmed.
    pub(crate) fn logical_stack(&mut self, pcs: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(pcs.len());
        for &pc in pcs {
            let frame = self.logical.entry(pc).or_insert_with(|| {
                let mut found = self
                    .source
                    .innermost_at(pc.wrapping_sub(1))
                    .unwrap_or_else(|| Some(Frame::named(&format!("0x{pc:x}"))));
                if let Some(f) = &mut found {
                    intern_frame(&mut self.names, f);
                }
                found
            });
            frames.extend(frame.iter().cloned());
        }
        self.finish(frames)
    }

    fn finish(&self, frames: Vec<Frame>) -> Vec<Frame> {
        if self.go {
            finish_go(frames)
        } else {
            frames
        }
    }
}

/// Go's profiles end a goroutine's stack before `runtime.goexit`, and start
/// it at the function that asked for memory.
fn finish_go(frames: Vec<Frame>) -> Vec<Frame> {
    trim_allocator(end_at_goexit(frames))
}

/// A stack's frames up to `runtime.goexit`, which every goroutine's stack
/// ends in and Go's profiles leave out (a cgo stack's Go half too).
pub(crate) fn end_at_goexit(mut frames: Vec<Frame>) -> Vec<Frame> {
    if let Some(goexit) = frames.iter().position(|f| &*f.function == "runtime.goexit") {
        frames.truncate(goexit);
    }
    frames
}

fn intern_frame(names: &mut HashSet<Arc<str>>, f: &mut Frame) {
    *f = Frame::in_object(
        intern(names, &f.function),
        intern(names, &f.file),
        f.line,
        f.inlined,
        intern(names, &f.object),
    );
}

/// The shared copy of `name`.
fn intern(names: &mut HashSet<Arc<str>>, name: &Arc<str>) -> Arc<str> {
    match names.get(name) {
        Some(shared) => shared.clone(),
        None => {
            names.insert(name.clone());
            name.clone()
        }
    }
}

/// Whether a frame belongs to the allocation machinery (the runtime
/// table's [`ALLOCATOR_FRAMES`]).
pub(crate) fn is_allocator(function: &str) -> bool {
    ALLOCATOR_FRAMES.contains(function)
}

/// Drops leaf-end frames of the allocation machinery (mallocgc, newobject,
/// makeslice, MakeNoZero, …), as Go's own heap profile does. A stack of
/// runtime frames alone (a goroutine's stack, an M's) is kept whole.
pub(crate) fn trim_allocator(frames: Vec<Frame>) -> Vec<Frame> {
    match frames.iter().position(|f| !is_allocator(&f.function)) {
        Some(first_user) => frames.into_iter().skip(first_user).collect(),
        None => frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fake {
        lookups: Cell<usize>,
    }

    impl SymbolSource for Fake {
        fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
            self.lookups.set(self.lookups.get() + 1);
            let frames = match pc {
                0x0fff => vec![Frame::named("runtime.mallocgc")],
                0x1fff => vec![Frame::named("internal/bytealg.MakeNoZero")],
                0x2fff => vec![Frame::named("bytes.Repeat")],
                // An inlined helper inside main.handler.
                0x3fff => vec![
                    Frame::new("main.keep", "", 0, true),
                    Frame::named("main.handler"),
                ],
                0x5fff => vec![], // a wrapper, elided
                0x6fff => vec![Frame::named("runtime.goexit")],
                0x7fff => vec![Frame::named("main.caller_of_goexit?")],
                _ => return None,
            };
            Some(frames)
        }
    }

    fn names(f: &[Frame]) -> Vec<&str> {
        f.iter().map(|f| &*f.function).collect()
    }

    #[test]
    fn trims_runtime_leaf_frames_and_expands_inlines() {
        let mut s = Symbolizer::new(Fake {
            lookups: Cell::new(0),
        });
        let frames = s.stack(&[0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x3000]);
        assert_eq!(
            names(&frames),
            [
                "bytes.Repeat",
                "main.keep",
                "main.handler",
                "0x5000",
                "bytes.Repeat"
            ]
        );
        assert!(frames[1].inlined && !frames[2].inlined);
        // Each distinct address looked up once.
        assert_eq!(s.source().lookups.get(), 5);
    }

    #[test]
    fn wrappers_vanish_and_goexit_ends_the_stack() {
        let mut s = Symbolizer::new(Fake {
            lookups: Cell::new(0),
        });
        let frames = s.stack(&[0x3000, 0x4000, 0x6000, 0x7000, 0x8000]);
        assert_eq!(
            names(&frames),
            ["bytes.Repeat", "main.keep", "main.handler"]
        );
    }

    #[test]
    fn logical_pcs_are_one_frame_each() {
        let mut s = Symbolizer::new(Fake {
            lookups: Cell::new(0),
        });
        // Go's own stack: MakeNoZero (trimmed), bytes.Repeat, a pc in
        // main.keep inlined into main.handler (only the inlined frame: Go
        // gives the caller its own entry), a wrapper (elided), an unknown
        // pc, then goexit ends it.
        let frames = s.logical_stack(&[0x2000, 0x3000, 0x4000, 0x6000, 0x9000, 0x7000, 0x8000]);
        assert_eq!(names(&frames), ["bytes.Repeat", "main.keep", "0x9000"]);
        assert!(frames[1].inlined);
        // Cached per pc.
        let lookups = s.source().lookups.get();
        s.logical_stack(&[0x2000, 0x3000]);
        assert_eq!(s.source().lookups.get(), lookups);
    }

    #[test]
    fn all_runtime_stack_is_kept() {
        let all_runtime = || {
            ["runtime.malg", "runtime.newproc1", "runtime.systemstack"]
                .map(Frame::named)
                .to_vec()
        };
        assert_eq!(
            names(&trim_allocator(all_runtime())),
            ["runtime.malg", "runtime.newproc1", "runtime.systemstack"]
        );
        let mut user = all_runtime();
        user.push(Frame::named("main.main"));
        assert_eq!(names(&trim_allocator(user)), ["main.main"]);
    }
}
