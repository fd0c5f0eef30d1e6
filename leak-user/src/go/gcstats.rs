//! What a Go program's garbage collector says of its heap, read from its
//! memory as it runs (nothing written, no pause): the bytes that survived
//! the last GC (`gcController.heapMarked`, the line a Go leak shows on:
//! the troughs of the heap's sawtooth), the heap live now
//! (`gcController.heapLive`), `GOGC` and `GOMEMLIMIT`
//! (`gcController.gcPercent`, `memoryLimit`) and the number of GCs
//! (`memstats.numgc`).
//!
//! `.symtab` names `runtime.gcController` when present. Stripped binaries
//! keep no data symbols; the runtime's own code still reaches both: the
//! function the runtime table names first takes `gcController`'s address
//! to call its methods (a RIP-relative `lea` into writable data), and the
//! GC's mark termination reads `numgc`'s low byte (`numgc % 256` indexes
//! the pause ring) and increments it — the one address both instructions
//! touch, with symbols or without. A find is proved when it is read: the
//! values must be ones a runtime can hold.

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind};

use super::{
    elf::GoBinary,
    error::GoError,
    heapvars::VarSource,
    table::{ControllerLayout, HeapStatsLayout, RuntimeProbes},
    GoProcess,
};
use crate::process::memory::{read_exact, read_u32};

/// What is read, for errors.
const WHAT: &str = "GC statistics";

/// Link-time addresses of the GC's figures (add the load bias for a PIE
/// process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GcStatsVars {
    /// `runtime.gcController`.
    pub controller: u64,
    /// `runtime.memstats.numgc`.
    pub numgc: u64,
    /// How `controller` was found.
    pub source: VarSource,
}

/// The GC's figures at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GcStats {
    /// Bytes the last GC marked: the heap that survived it.
    pub heap_marked: u64,
    /// Bytes the GC counts live now (marked, plus allocated since).
    pub heap_live: u64,
    /// GCs since the program started.
    pub gc_cycles: u32,
    /// `GOMEMLIMIT`, when set.
    pub memory_limit: Option<u64>,
    /// `GOGC` (`None`: off).
    pub gc_percent: Option<u32>,
}

/// Finds `runtime.gcController` and `memstats.numgc` in `bin`, whose
/// runtime is described by `row`.
pub(crate) fn gc_stats_vars(bin: &GoBinary, row: &RuntimeProbes) -> Result<GcStatsVars, GoError> {
    let layout = &row.heap_stats;
    let not_found = |reason: String| GoError::GcStatsNotFound {
        path: bin.path().to_path_buf(),
        reason,
    };
    let numgc = numgc_by_disassembly(bin, layout).map_err(not_found)?;
    if let Some(sym) = bin.symbol("runtime.gcController") {
        return Ok(GcStatsVars {
            controller: sym.vaddr,
            numgc,
            source: VarSource::Symbol,
        });
    }
    let controller = controller_by_disassembly(bin, layout).map_err(not_found)?;
    Ok(GcStatsVars {
        controller,
        numgc,
        source: VarSource::Disassembly,
    })
}

/// `gcController` without symbols: the first address the row's function
/// takes with a RIP-relative `lea` into writable data.
pub(crate) fn controller_by_disassembly(
    bin: &GoBinary,
    layout: &HeapStatsLayout,
) -> Result<u64, String> {
    let name = layout.controller_fn;
    let (code, entry) = bin.code_of(name)?;
    instructions(code, entry)
        .find(|i| {
            i.mnemonic() == Mnemonic::Lea
                && i.is_ip_rel_memory_operand()
                && bin.is_writable_data(i.ip_rel_memory_address())
        })
        .map(|i| i.ip_rel_memory_address())
        .ok_or_else(|| format!("{name} takes the address of no global"))
}

/// `memstats.numgc`: the one address of writable data that the row's
/// function both loads a byte of (`movzx`) and increments as four bytes.
pub(crate) fn numgc_by_disassembly(
    bin: &GoBinary,
    layout: &HeapStatsLayout,
) -> Result<u64, String> {
    let name = layout.gc_count_fn;
    let (code, entry) = bin.code_of(name)?;
    let (mut bytes_read, mut incremented) = (Vec::new(), Vec::new());
    for i in instructions(code, entry) {
        if !i.is_ip_rel_memory_operand() || !bin.is_writable_data(i.ip_rel_memory_address()) {
            continue;
        }
        let addr = i.ip_rel_memory_address();
        match (i.mnemonic(), i.memory_size()) {
            (Mnemonic::Movzx, MemorySize::UInt8) => bytes_read.push(addr),
            (Mnemonic::Inc, MemorySize::UInt32 | MemorySize::Int32) => incremented.push(addr),
            (Mnemonic::Add, MemorySize::UInt32 | MemorySize::Int32) if adds_one(&i) => {
                incremented.push(addr);
            }
            _ => {}
        }
    }
    let mut both: Vec<u64> = incremented
        .into_iter()
        .filter(|a| bytes_read.contains(a))
        .collect();
    both.sort_unstable();
    both.dedup();
    match both[..] {
        [numgc] => Ok(numgc),
        _ => Err(format!(
            "{name} reads a byte of and increments {} globals, not 1: {both:x?}",
            both.len()
        )),
    }
}

/// `add dword [mem], 1`.
fn adds_one(i: &Instruction) -> bool {
    i.op_count() == 2
        && matches!(i.op1_kind(), OpKind::Immediate8to32 | OpKind::Immediate32)
        && i.immediate(1) == 1
}

/// The instructions of `code`, which starts at `ip`.
fn instructions(code: &[u8], ip: u64) -> impl Iterator<Item = Instruction> + '_ {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    std::iter::from_fn(move || decoder.can_decode().then(|| decoder.decode()))
}

/// Reads the GC's figures of `process` now. Fails in one line if the
/// process is gone, or if what was located does not hold values a Go
/// runtime can (then it was not `gcController`).
pub(crate) fn read(process: &GoProcess) -> Result<GcStats, GoError> {
    let program = process.program();
    let vars = program
        .gc_stats
        .clone()
        .map_err(|reason| GoError::GcStatsNotFound {
            path: program.path.clone(),
            reason,
        })?;
    let layout = &program.runtime.heap_stats.controller;
    let mut raw = vec![0u8; layout.span() as usize];
    let failed = |e| process.read_failure(WHAT, GoError::Memory(e));
    read_exact(
        process.memory(),
        process.runtime_addr(vars.controller),
        &mut raw,
    )
    .map_err(failed)?;
    let gc_cycles = read_u32(process.memory(), process.runtime_addr(vars.numgc)).map_err(failed)?;
    decode(&raw, layout, gc_cycles).map_err(|reason| GoError::NotWhatWasLocated {
        pid: process.pid(),
        path: program.path.clone(),
        what: WHAT,
        reason,
    })
}

/// The figures from the bytes of `gcController` and the GC count; an error
/// names a value no runtime holds.
pub(crate) fn decode(
    raw: &[u8],
    layout: &ControllerLayout,
    gc_cycles: u32,
) -> Result<GcStats, String> {
    let field = |offset: u32, n: usize| raw.get(offset as usize..offset as usize + n);
    let (Some(percent), Some(limit), Some(live), Some(marked)) = (
        field(layout.gc_percent, 4),
        field(layout.memory_limit, 8),
        field(layout.heap_live, 8),
        field(layout.heap_marked, 8),
    ) else {
        return Err(format!("{} bytes read, too few", raw.len()));
    };
    let le8 = |b: &[u8]| <[u8; 8]>::try_from(b).unwrap_or_default();
    let gc_percent = i32::from_le_bytes(<[u8; 4]>::try_from(percent).unwrap_or_default());
    let memory_limit = i64::from_le_bytes(le8(limit));
    let heap_live = u64::from_le_bytes(le8(live));
    let heap_marked = u64::from_le_bytes(le8(marked));
    // A heap over 2^50 bytes (1 PiB) is no heap.
    const MAX_HEAP: u64 = 1 << 50;
    if gc_percent < -1 || memory_limit <= 0 || heap_live > MAX_HEAP || heap_marked > MAX_HEAP {
        return Err(format!(
            "GOGC {gc_percent}, GOMEMLIMIT {memory_limit}, heap live {heap_live}, heap marked {heap_marked}"
        ));
    }
    Ok(GcStats {
        heap_marked,
        heap_live,
        gc_cycles,
        memory_limit: (memory_limit != i64::MAX).then_some(memory_limit as u64),
        gc_percent: u32::try_from(gc_percent).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::{table::probes_for, testutil, version::GoVersion};

    /// On a plain build the disassembly finds the address `.symtab` gives;
    /// every stripped variant gets a find (which the integration tests
    /// prove by reading live processes against their own `ReadMemStats`).
    #[test]
    fn disassembly_finds_what_the_symbols_name() {
        testutil::plain_and_stripped_seeds(|v, plain, row, stripped| {
            let by_symbol = gc_stats_vars(plain, row).unwrap();
            assert_eq!(by_symbol.source, VarSource::Symbol, "go{v}");
            let controller = controller_by_disassembly(plain, &row.heap_stats)
                .unwrap_or_else(|e| panic!("go{v}: {e}"));
            assert_eq!(controller, by_symbol.controller, "go{v}");
            for (variant, bin) in stripped {
                let found =
                    gc_stats_vars(bin, row).unwrap_or_else(|e| panic!("go{v} {variant:?}: {e}"));
                assert_eq!(found.source, VarSource::Disassembly, "go{v} {variant:?}");
            }
        });
    }

    /// Where the code is not what the row says, the refusal is one line
    /// that names what did not fit.
    #[test]
    fn not_found_says_why_in_one_line() {
        testutil::plain_and_stripped_seeds(|v, _, row, stripped| {
            let bin = &stripped[0].1;
            let mut wrong = *row;
            wrong.heap_stats.gc_count_fn = "main.main";
            let e = gc_stats_vars(bin, &wrong).unwrap_err().to_string();
            assert!(e.contains("cannot locate Go's GC statistics"), "go{v}: {e}");
            assert!(e.contains("main.main reads a byte of"), "go{v}: {e}");
            assert_eq!(e.lines().count(), 1, "go{v}: {e}");
            let mut wrong = *row;
            wrong.heap_stats.controller_fn = "main.gone";
            let e = gc_stats_vars(bin, &wrong).unwrap_err().to_string();
            assert!(e.contains("main.gone is not in the binary"), "go{v}: {e}");
        });
    }

    fn controller_bytes(percent: i32, limit: i64, live: u64, marked: u64) -> Vec<u8> {
        let l = probes_for(&GoVersion::new(1, 25, 5))
            .unwrap()
            .heap_stats
            .controller;
        let mut raw = vec![0u8; l.span() as usize];
        let mut put =
            |at: u32, b: &[u8]| raw[at as usize..at as usize + b.len()].copy_from_slice(b);
        put(l.gc_percent, &percent.to_le_bytes());
        put(l.memory_limit, &limit.to_le_bytes());
        put(l.heap_live, &live.to_le_bytes());
        put(l.heap_marked, &marked.to_le_bytes());
        raw
    }

    #[test]
    fn decodes_the_pacers_figures() {
        let l = probes_for(&GoVersion::new(1, 25, 5))
            .unwrap()
            .heap_stats
            .controller;
        let raw = controller_bytes(100, i64::MAX, 5 << 20, 4 << 20);
        let s = decode(&raw, &l, 7).unwrap();
        assert_eq!(
            s,
            GcStats {
                heap_marked: 4 << 20,
                heap_live: 5 << 20,
                gc_cycles: 7,
                memory_limit: None,
                gc_percent: Some(100),
            }
        );
        // GOGC=off, GOMEMLIMIT=300MiB.
        let s = decode(&controller_bytes(-1, 300 << 20, 0, 0), &l, 0).unwrap();
        assert_eq!((s.gc_percent, s.memory_limit), (None, Some(300 << 20)));
    }

    #[test]
    fn values_no_runtime_holds_are_refused() {
        let l = probes_for(&GoVersion::new(1, 25, 5))
            .unwrap()
            .heap_stats
            .controller;
        for raw in [
            controller_bytes(-2, i64::MAX, 0, 0),
            controller_bytes(100, 0, 0, 0),
            controller_bytes(100, i64::MAX, u64::MAX, 0),
            controller_bytes(100, i64::MAX, 0, 1 << 60),
        ] {
            assert!(decode(&raw, &l, 1).is_err());
        }
        assert!(decode(&[0u8; 16], &l, 1).is_err(), "too few bytes");
    }
}
