//! From program counters to the frames a person reads, as pprof shows them.
//!
//! Stacks arrive as return addresses relocated to the binary's own
//! addresses. Each is looked up at `pc − 1` (inside the call instruction, so
//! the line is the call's), expanded into inlined frames, and cached: a leak
//! repeats the same few stacks thousands of times. Frames of the allocator
//! itself (`runtime.*` at the leaf end) are trimmed, as Go's heap profile
//! trims them, so the leaf is the function that asked for memory.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::report::Frame;

/// Something that knows the frames at a code address (a `.gopclntab`).
pub trait SymbolSource {
    /// Frames at `pc` as Go's profiles show them, innermost (inlined)
    /// first; `None` if `pc` is in no known function. Compiler-generated
    /// wrappers are left out, so a known pc may have no frames.
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>>;
}

/// Caching symbolizer over one binary.
pub struct Symbolizer<S> {
    source: S,
    cache: HashMap<u64, Vec<Frame>>,
    /// Every function and file name once: many pcs share them.
    names: HashSet<Arc<str>>,
    profile_skip: usize,
}

impl<S: SymbolSource> Symbolizer<S> {
    /// A symbolizer reading `source`. `profile_skip` leaf frames are never
    /// shown in Go's own profile of this version (the runtime table's
    /// `profile_skip`); they matter only for all-runtime stacks.
    pub fn new(source: S, profile_skip: usize) -> Self {
        Self {
            source,
            cache: HashMap::new(),
            names: HashSet::new(),
            profile_skip,
        }
    }

    /// The symbol source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Frames of a stack of return addresses, leaf first, allocator frames
    /// trimmed.
    pub fn stack(&mut self, return_addresses: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(return_addresses.len());
        for &ra in return_addresses {
            if !self.cache.contains_key(&ra) {
                let mut found = self
                    .source
                    .frames_at(ra.wrapping_sub(1))
                    .unwrap_or_else(|| vec![Frame::named(&format!("0x{ra:x}"))]);
                for f in &mut found {
                    f.function = intern(&mut self.names, &f.function);
                    f.file = intern(&mut self.names, &f.file);
                }
                self.cache.insert(ra, found);
            }
            frames.extend(self.cache[&ra].iter().cloned());
        }
        // Go's profiles end a goroutine's stack before runtime.goexit.
        if let Some(goexit) = frames.iter().position(|f| &*f.function == "runtime.goexit") {
            frames.truncate(goexit);
        }
        trim_allocator(frames, self.profile_skip)
    }
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

/// Runtime code that other packages reach by `go:linkname` under their own
/// name; it allocates on the caller's behalf, so Go's profile never shows it
/// as the allocating function (`bytes.Repeat`, not `MakeNoZero`).
const LINKNAMED_ALLOCATORS: &[&str] = &[
    "internal/bytealg.MakeNoZero",
    "reflect.unsafe_New",
    "reflect.unsafe_NewArray",
    "reflect.mallocgc",
];

/// Whether a frame belongs to the allocation machinery.
pub fn is_allocator(function: &str) -> bool {
    function.starts_with("runtime.")
        || function.starts_with("internal/runtime/")
        || LINKNAMED_ALLOCATORS.contains(&function)
}

/// Drops leaf-end frames of the allocation machinery (mallocgc, newobject,
/// makeslice, MakeNoZero, …), as Go's own heap profile does. A stack of
/// runtime frames alone keeps them, less the `skip` frames Go never records.
pub fn trim_allocator(frames: Vec<Frame>, skip: usize) -> Vec<Frame> {
    match frames.iter().position(|f| !is_allocator(&f.function)) {
        Some(first_user) => frames.into_iter().skip(first_user).collect(),
        None if frames.len() > skip => frames.into_iter().skip(skip).collect(),
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
                    Frame {
                        inlined: true,
                        ..Frame::named("main.keep")
                    },
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
        let mut s = Symbolizer::new(
            Fake {
                lookups: Cell::new(0),
            },
            2,
        );
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
        let mut s = Symbolizer::new(
            Fake {
                lookups: Cell::new(0),
            },
            2,
        );
        let frames = s.stack(&[0x3000, 0x4000, 0x6000, 0x7000, 0x8000]);
        assert_eq!(
            names(&frames),
            ["bytes.Repeat", "main.keep", "main.handler"]
        );
    }

    #[test]
    fn all_runtime_stack_is_kept() {
        let all_runtime = || {
            [
                "runtime.profilealloc",
                "runtime.mallocgc",
                "runtime.newobject",
                "runtime.main",
            ]
            .map(Frame::named)
            .to_vec()
        };
        let kept = trim_allocator(all_runtime(), 1);
        assert_eq!(
            names(&kept),
            ["runtime.mallocgc", "runtime.newobject", "runtime.main"]
        );
        assert_eq!(names(&trim_allocator(all_runtime(), 3)), ["runtime.main"]);
        assert_eq!(trim_allocator(all_runtime(), 9).len(), 4);
    }
}
