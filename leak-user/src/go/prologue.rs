//! Where a uprobe goes in a Go function: just past the stack-growth check.
//!
//! A Go function starts by comparing SP with the goroutine's stack guard
//! (`CMPQ SP, 0x10(R14)`, after a `LEAQ -n(SP), R12` for large frames) and
//! jumps to a tail that calls `runtime.morestack` and then re-runs the
//! function from its first instruction. A probe on that first instruction
//! fires twice whenever the stack had to grow: a GC cycle counted twice, a
//! sample recorded twice. Just past the check it fires once per call, with
//! the arguments still in their registers and the return address still at
//! SP (the frame is set up after the check).

use iced_x86::{Decoder, DecoderOptions, Mnemonic, Register};

use super::elf::GoBinary;

/// Instructions examined for the check; the prologue is at most three.
const PROLOGUE_INSTRUCTIONS: usize = 4;

/// The address just past the stack-growth check of the function at `entry`,
/// or `entry` itself for functions without one (`//go:nosplit`).
pub(crate) fn probe_address(bin: &GoBinary, entry: u64) -> u64 {
    match bin.read_vaddr(entry, 32) {
        Some(code) => past_stack_check(code, entry),
        None => entry,
    }
}

/// [`probe_address`] on raw code that starts at `ip`.
pub(crate) fn past_stack_check(code: &[u8], ip: u64) -> u64 {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut compared_guard = false;
    for insn in decoder.iter().take(PROLOGUE_INSTRUCTIONS) {
        if insn.is_invalid() {
            break;
        }
        // The guard lives in the g struct, addressed through R14 (ABIInternal).
        if insn.mnemonic() == Mnemonic::Cmp && insn.memory_base() == Register::R14 {
            compared_guard = true;
            continue;
        }
        if compared_guard {
            if matches!(
                insn.mnemonic(),
                Mnemonic::Jbe | Mnemonic::Jb | Mnemonic::Ja | Mnemonic::Jae
            ) {
                return insn.next_ip();
            }
            break;
        }
    }
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frame_prologue() {
        // CMPQ SP, 0x10(R14); JBE +0x1a5; PUSHQ BP
        let code = [
            0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xa5, 0x01, 0x00, 0x00, 0x55,
        ];
        assert_eq!(past_stack_check(&code, 0x435820), 0x43582a);
    }

    #[test]
    fn large_frame_prologue() {
        // LEAQ -0x3e8(SP), R12; CMPQ R12, 0x10(R14); JBE; PUSHQ BP
        let code = [
            0x4c, 0x8d, 0xa4, 0x24, 0x18, 0xfc, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86,
            0x78, 0x10, 0x00, 0x00, 0x55,
        ];
        assert_eq!(past_stack_check(&code, 0x41ff60), 0x41ff72);
    }

    #[test]
    fn nosplit_function_keeps_its_entry() {
        // PUSHQ BP; MOVQ SP, BP; SUBQ $0x10, SP
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10];
        assert_eq!(past_stack_check(&code, 0x1000), 0x1000);
    }

    #[test]
    fn real_runtime_functions_have_the_check() {
        use crate::go::{
            table::probes_for,
            testutil::{self, Variant, VERSIONS},
        };
        for v in VERSIONS {
            for variant in [Variant::Plain, Variant::StrippedPie] {
                let Some(path) = testutil::seed(v, variant) else {
                    continue;
                };
                let bin = GoBinary::open(&path).unwrap();
                let row = probes_for(&bin.go_version().0).unwrap();
                for name in [
                    row.probes.alloc_fn,
                    row.probes.free_fn,
                    row.probes.gc_fn,
                    row.probes.start_fn,
                ] {
                    let f = bin.pclntab().func_by_name(name).unwrap();
                    let at = probe_address(&bin, f.entry);
                    assert!(
                        at > f.entry && at < f.entry + 24,
                        "go{v} {variant:?} {name}"
                    );
                    // The frame is set up right after, so SP still points at
                    // the return address: PUSHQ BP (1.21 on), or SUBQ $n, SP
                    // then MOVQ BP, n-8(SP) (1.19).
                    let code = bin.read_vaddr(at, 16).unwrap();
                    let next = Decoder::with_ip(64, code, at, DecoderOptions::NONE).decode();
                    let sets_up_frame = match next.mnemonic() {
                        Mnemonic::Push => next.op0_register() == Register::RBP,
                        Mnemonic::Sub => next.op0_register() == Register::RSP,
                        _ => false,
                    };
                    assert!(
                        sets_up_frame,
                        "go{v} {variant:?} {name}: {:?}",
                        next.mnemonic()
                    );
                }
            }
        }
    }

    /// The table's `special.kind` offset is where the compiled
    /// `freeSpecial` reads it: its first byte load through the `special`
    /// argument (it switches on the kind at once).
    #[test]
    fn free_special_reads_kind_where_the_table_says() {
        use crate::go::{
            table::probes_for,
            testutil::{self, Variant, VERSIONS},
        };
        const ARG_REGS: [Register; 9] = [
            Register::RAX,
            Register::RBX,
            Register::RCX,
            Register::RDI,
            Register::RSI,
            Register::R8,
            Register::R9,
            Register::R10,
            Register::R11,
        ];
        for v in VERSIONS {
            let Some(path) = testutil::seed(v, Variant::Plain) else {
                continue;
            };
            let bin = GoBinary::open(&path).unwrap();
            let row = probes_for(&bin.go_version().0).unwrap();
            let f = bin.pclntab().func_by_name(row.probes.free_fn).unwrap();
            let at = probe_address(&bin, f.entry);
            let code = bin.read_vaddr(at, 64).unwrap();
            let special = ARG_REGS[row.probes.free_special_arg as usize];
            let load = Decoder::with_ip(64, code, at, DecoderOptions::NONE)
                .iter()
                .take(12)
                .find(|i| {
                    i.memory_base() == special && i.memory_size() == iced_x86::MemorySize::UInt8
                })
                .unwrap_or_else(|| panic!("go{v}: no byte load through {special:?}"));
            assert_eq!(
                load.memory_displacement64(),
                row.probes.special_kind_offset as u64,
                "go{v}"
            );
        }
    }
}
