//! Where Go keeps its goroutines and their wait-reason names:
//! `runtime.allglen` and `runtime.allgptr` (the lock-free mirror of
//! `allgs`, 8 bytes each) and `runtime.waitReasonStrings` (an array of Go
//! strings, 16 bytes each).
//!
//! `.symtab` names them when present. Stripped binaries keep no data
//! symbols; the runtime's own code still reads them, and the runtime table
//! names the functions: `forEachGRace` loads `allglen` then `allgptr`,
//! RIP relative, in that order (the order the runtime requires of every
//! lock-free reader); `waitReason.String` takes the array's address with a
//! RIP-relative `lea` into writable data and first compares the reason
//! with the array's length. What is found is proved when it is read (see
//! `walk`).

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};

use crate::go::{
    elf::GoBinary, error::GoError, heapvars::VarSource, memrate::rip_relative_loads,
    table::RuntimeProbes,
};

/// Link-time addresses of the goroutine list and the wait-reason names
/// (add the load bias for a PIE process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoroutineVars {
    /// `runtime.allglen`.
    pub allglen: u64,
    /// `runtime.allgptr`.
    pub allgptr: u64,
    /// `runtime.waitReasonStrings`.
    pub wait_reasons: u64,
    /// Entries of `waitReasonStrings`.
    pub wait_reason_count: u32,
    /// How they were found.
    pub source: VarSource,
}

/// Finds the goroutine list and the wait-reason names in `bin`, whose
/// runtime is described by `row`.
pub(crate) fn goroutine_vars(
    bin: &GoBinary,
    row: &RuntimeProbes,
) -> Result<GoroutineVars, GoError> {
    let symbols = (
        bin.symbol("runtime.allglen"),
        bin.symbol("runtime.allgptr"),
        bin.symbol("runtime.waitReasonStrings"),
    );
    if let (Some(len), Some(ptr), Some(reasons)) = symbols {
        return Ok(GoroutineVars {
            allglen: len.vaddr,
            allgptr: ptr.vaddr,
            wait_reasons: reasons.vaddr,
            wait_reason_count: u32::try_from(reasons.size / 16).unwrap_or(0),
            source: VarSource::Symbol,
        });
    }
    goroutine_vars_by_disassembly(bin, row)
}

/// Finds them from the code that reads them, without symbols.
pub(crate) fn goroutine_vars_by_disassembly(
    bin: &GoBinary,
    row: &RuntimeProbes,
) -> Result<GoroutineVars, GoError> {
    let not_found = |reason: String| GoError::GoroutinesNotFound {
        path: bin.path().to_path_buf(),
        reason,
    };
    let in_data = |addr: u64| bin.is_writable_data(addr);
    let name = row.goroutines.allgs_reader_fn;
    let (code, entry) = bin.code_of(name).map_err(not_found)?;
    // In order of the code, each address once: allglen is read first.
    let mut loads: Vec<u64> = Vec::new();
    for (addr, size) in rip_relative_loads(code, entry) {
        if size == 8 && in_data(addr) && !loads.contains(&addr) {
            loads.push(addr);
        }
    }
    let [allglen, allgptr] = loads[..] else {
        return Err(not_found(format!(
            "{name} makes {} 8-byte loads of globals, not 2: {loads:x?}",
            loads.len()
        )));
    };
    let name = row.goroutines.wait_reason_fn;
    let (code, entry) = bin.code_of(name).map_err(not_found)?;
    let (wait_reasons, wait_reason_count) = indexed_array(code, entry, &in_data)
        .ok_or_else(|| not_found(format!("{name} does not index an array of strings")))?;
    Ok(GoroutineVars {
        allglen,
        allgptr,
        wait_reasons,
        wait_reason_count,
        source: VarSource::Disassembly,
    })
}

/// In a bounds-checked index of a global array (`if i >= len(a) {…};
/// a[i]`): the array's address (the one RIP-relative `lea` into writable
/// data) and its length (the immediate of the first `cmp`).
pub(crate) fn indexed_array(
    code: &[u8],
    ip: u64,
    in_data: &dyn Fn(u64) -> bool,
) -> Option<(u64, u32)> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let (mut len, mut array) = (None, None);
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        match instruction.mnemonic() {
            Mnemonic::Cmp if len.is_none() => {
                len = (0..instruction.op_count())
                    .find(|&i| is_immediate(instruction.op_kind(i)))
                    .and_then(|i| u32::try_from(instruction.immediate(i)).ok());
            }
            Mnemonic::Lea if instruction.is_ip_rel_memory_operand() => {
                let addr = instruction.ip_rel_memory_address();
                if in_data(addr) {
                    if array.is_some_and(|a| a != addr) {
                        return None;
                    }
                    array = Some(addr);
                }
            }
            _ => {}
        }
    }
    Some((array?, len?))
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::testutil;

    /// On a plain build the disassembly finds the very addresses and
    /// length `.symtab` gives; every stripped variant gets a find (which
    /// reading a live process proves: `goroutines/tests.rs`).
    #[test]
    fn disassembly_finds_what_the_symbols_name() {
        testutil::plain_and_stripped_seeds(|v, plain, row, stripped| {
            let by_symbol = goroutine_vars(plain, row).unwrap();
            assert_eq!(by_symbol.source, VarSource::Symbol, "go{v}");
            assert!(by_symbol.wait_reason_count > 20, "go{v}: {by_symbol:?}");
            let found =
                goroutine_vars_by_disassembly(plain, row).unwrap_or_else(|e| panic!("go{v}: {e}"));
            assert_eq!(
                found,
                GoroutineVars {
                    source: VarSource::Disassembly,
                    ..by_symbol
                },
                "go{v}"
            );
            for (variant, bin) in stripped.iter() {
                let found =
                    goroutine_vars(bin, row).unwrap_or_else(|e| panic!("go{v} {variant:?}: {e}"));
                assert_eq!(found.source, VarSource::Disassembly);
                assert_eq!(found.wait_reason_count, by_symbol.wait_reason_count);
            }
        });
    }

    /// Where the code is not what the row says, the refusal is one line
    /// that names the binary and what did not fit.
    #[test]
    fn a_list_not_found_says_why_in_one_line() {
        testutil::plain_and_stripped_seeds(|v, _, row, stripped| {
            let bin = &stripped[0].1;
            for (reader, says) in [
                ("main.gone", "main.gone is not in the binary"),
                ("main.main", "main.main makes"),
            ] {
                let mut wrong = *row;
                wrong.goroutines.allgs_reader_fn = reader;
                let e = goroutine_vars(bin, &wrong).unwrap_err().to_string();
                assert!(
                    e.contains("cannot locate Go's list of goroutines"),
                    "go{v}: {e}"
                );
                assert!(e.contains(says), "go{v}: {e}");
                assert_eq!(e.lines().count(), 1, "go{v}: {e}");
            }
        });
    }

    #[test]
    fn finds_the_indexed_array_and_its_length() {
        // cmp al, 0x2f; jb +0xd; lea rax, [rip+0x28b418]; mov ebx, 0x13;
        // ret; movzx ecx, al; shl rcx, 4; lea rdx, [rip+0x5e2861]; …
        let code = [
            0x3c, 0x2f, 0x72, 0x0d, 0x48, 0x8d, 0x05, 0x18, 0xb4, 0x28, 0x00, 0xbb, 0x13, 0x00,
            0x00, 0x00, 0xc3, 0x0f, 0xb6, 0xc8, 0x48, 0xc1, 0xe1, 0x04, 0x48, 0x8d, 0x15, 0x61,
            0x28, 0x5e, 0x00,
        ];
        let ip = 0x4629a0;
        let array = 0x4629b8 + 7 + 0x5e2861;
        let in_data = |a: u64| a == array;
        assert_eq!(indexed_array(&code, ip, &in_data), Some((array, 0x2f)));
        assert_eq!(indexed_array(&code, ip, &|_| false), None);
    }
}
