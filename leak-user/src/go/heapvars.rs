//! Where Go keeps its heap profile records: `runtime.mbuckets` (the head of
//! the list of every heap bucket, an 8-byte pointer) and `runtime.mProfCycle`
//! (the profile's GC cycle counter, a `uint32`).
//!
//! `.symtab` names both when present. Stripped binaries keep no data
//! symbols, and both are zero in the file (`.bss`), so the trick that finds
//! `MemProfileRate` (its initial value) does not carry over. The function
//! the runtime table names as the records' reader (`runtime.MemProfile`,
//! `runtime.memProfileInternal` from 1.23) loads each exactly once, RIP
//! relative: the cycle counter with a 4-byte load, the list head with an
//! 8-byte one. An address found this way is a candidate until a walk of the
//! list it points to proves it (see `records::walk`).

use super::{elf::GoBinary, error::GoError, memrate::rip_relative_loads, table::RuntimeProbes};

/// How the addresses were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarSource {
    /// `.symtab`.
    Symbol,
    /// The loads of the records' reader, to be proved by walking the list.
    Disassembly,
}

/// Link-time addresses of the heap profile's globals (add the load bias
/// for a PIE process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeapVars {
    /// `runtime.mbuckets`.
    pub buckets: u64,
    /// `runtime.mProfCycle`.
    pub cycle: u64,
    /// How they were found.
    pub source: VarSource,
}

/// Finds `runtime.mbuckets` and `runtime.mProfCycle` in `bin`, whose
/// runtime is described by `row`.
pub(crate) fn heap_vars(bin: &GoBinary, row: &RuntimeProbes) -> Result<HeapVars, GoError> {
    if let (Some(b), Some(c)) = (
        bin.symbol("runtime.mbuckets"),
        bin.symbol("runtime.mProfCycle"),
    ) {
        return Ok(HeapVars {
            buckets: b.vaddr,
            cycle: c.vaddr,
            source: VarSource::Symbol,
        });
    }
    heap_vars_by_disassembly(bin, row)
}

/// Finds both from the loads of the records' reader, without symbols.
pub(crate) fn heap_vars_by_disassembly(
    bin: &GoBinary,
    row: &RuntimeProbes,
) -> Result<HeapVars, GoError> {
    let not_found = |reason: String| GoError::HeapRecordsNotFound {
        path: bin.path().to_path_buf(),
        reason,
    };
    let name = row.records.profile_reader_fn;
    let func = bin.pclntab().func_by_name(name).ok_or_else(|| {
        not_found(format!(
            "{name} is not in the binary: the program links no heap profiler"
        ))
    })?;
    let len =
        usize::try_from(func.end - func.entry).map_err(|_| not_found("huge function".into()))?;
    let code = bin
        .read_vaddr(func.entry, len)
        .ok_or_else(|| not_found(format!("the code of {name} is not in the file")))?;
    let in_bss = |addr: u64| bin.is_writable_data(addr);
    let mut loads = rip_relative_loads(code, func.entry);
    loads.retain(|&(addr, _)| in_bss(addr));
    loads.sort_unstable();
    loads.dedup();
    let pick = |size: usize, what: &str| -> Result<u64, GoError> {
        let found: Vec<u64> = loads
            .iter()
            .filter(|&&(_, s)| s == size)
            .map(|&(a, _)| a)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(not_found(format!("no {size}-byte load in {name} ({what})"))),
            many => Err(not_found(format!(
                "{} {size}-byte loads in {name} ({what}): {many:x?}",
                many.len()
            ))),
        }
    };
    Ok(HeapVars {
        buckets: pick(8, "the list of buckets")?,
        cycle: pick(4, "the cycle counter")?,
        source: VarSource::Disassembly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::testutil;

    /// The disassembly finds the very addresses the symbols name, and finds
    /// a pair in every stripped variant (which walking the list in a live
    /// process proves: tests/tests/heap.rs).
    #[test]
    fn disassembly_finds_what_the_symbols_name() {
        testutil::plain_and_stripped_seeds(|v, plain, row, stripped| {
            let by_symbol = heap_vars(plain, row).unwrap();
            assert_eq!(by_symbol.source, VarSource::Symbol, "go{v}");
            let found =
                heap_vars_by_disassembly(plain, row).unwrap_or_else(|e| panic!("go{v}: {e}"));
            assert_eq!(
                (found.buckets, found.cycle),
                (by_symbol.buckets, by_symbol.cycle),
                "go{v}"
            );
            for (variant, bin) in stripped.iter() {
                let found =
                    heap_vars(bin, row).unwrap_or_else(|e| panic!("go{v} {variant:?}: {e}"));
                assert_eq!(found.source, VarSource::Disassembly);
            }
        });
    }
}
