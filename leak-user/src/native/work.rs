//! `--work FUNCTION` on a native program: the function that marks one unit
//! of work (a request handler), found by name in the objects the process
//! maps — the executable first — and where its call-counting probe goes.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol, SymbolKind};

use super::{
    allocator::{code_at, placement},
    elfsym::demangle,
};
use crate::process::{exe::in_root, maps};

/// Where the `--work` probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkProbe {
    /// The function as a person reads it (demangled).
    pub function: String,
    /// The object as the process names it.
    pub object: String,
    /// Where leak opens it and attaches: through the process's root.
    pub open: PathBuf,
    /// File offset of the probed instruction.
    pub file_offset: u64,
}

/// Whether symbol `symbol` is the function a person named `wanted`: its
/// name as linked, demangled, or demangled without its parameters (`ns::f`
/// for `ns::f(int)`).
pub(crate) fn names(symbol: &str, wanted: &str) -> bool {
    if symbol == wanted {
        return true;
    }
    let d = demangle(symbol);
    d == wanted
        || d.strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('('))
}

/// The function called `wanted` in process `pid`: the first object that
/// defines it, the executable first, then the others as mapped. Why not,
/// in one line.
pub(crate) fn find(pid: u32, wanted: &str) -> Result<WorkProbe, String> {
    let mappings =
        maps::of(pid).map_err(|e| format!("cannot read the memory map of pid {pid}: {e}"))?;
    let exe = crate::process::exe(pid).ok();
    let mut objects: Vec<&str> = Vec::new();
    for m in mappings
        .iter()
        .filter(|m| m.executable && m.path.starts_with('/'))
    {
        if !objects.contains(&m.path.as_str()) {
            objects.push(&m.path);
        }
    }
    objects.sort_by_key(|o| exe.as_deref() != Some(Path::new(o)));
    for object in objects {
        let Some(open) = in_root(pid, Path::new(object)) else {
            continue;
        };
        if let Some((function, file_offset)) = in_object(&open, wanted) {
            return Ok(WorkProbe {
                function,
                object: object.to_string(),
                open,
                file_offset,
            });
        }
    }
    Err(format!(
        "--work {wanted}: no function of that name in pid {pid}'s executable or libraries (give it as the symbol table or a demangled name spells it, e.g. 'app::handle_request')"
    ))
}

/// The function `wanted` in the object at `path`: its demangled name and
/// the file offset of its probe.
fn in_object(path: &Path, wanted: &str) -> Option<(String, u64)> {
    in_data(&std::fs::read(path).ok()?, wanted)
}

/// [`in_object`] of an object's bytes.
pub(crate) fn in_data(data: &[u8], wanted: &str) -> Option<(String, u64)> {
    let file = object::File::parse(data).ok()?;
    let sym = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && !s.is_undefined() && s.address() != 0)
        .find(|s| s.name().is_ok_and(|n| names(n, wanted)))?;
    let (code, entry_offset) = code_at(&file, data, sym.address(), 64)?;
    let (skip, _) = placement(code, sym.address());
    Some((demangle(sym.name().ok()?), entry_offset + skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_named_as_linked_or_demangled() {
        let handle = "_ZN3app14handle_requestERNS_7SessionEi";
        assert!(names(handle, handle));
        assert!(names(handle, "app::handle_request"));
        assert!(names(handle, "app::handle_request(app::Session&, int)"));
        assert!(!names(handle, "app::handle"));
        assert!(!names(handle, "handle_request"));
        assert!(names("leak_request_buffer", "leak_request_buffer"));
        assert!(!names("leak_request_buffer_2", "leak_request_buffer"));
    }

    /// This test binary's own code: a function of it is found in the
    /// executable, its probe inside the file.
    #[test]
    fn finds_a_function_of_this_process() {
        let pid = std::process::id();
        let w = find(pid, "malloc").unwrap();
        assert!(w.file_offset > 0, "{w:?}");
        let err = find(pid, "no_such_function_here").unwrap_err();
        assert!(err.contains("no function of that name"), "{err}");
    }
}
