//! Where `runtime.MemProfileRate` lives, so its value can be read and
//! written through `/proc/PID/mem`.
//!
//! `.symtab` names it when present. Stripped binaries keep no data
//! symbols, but the runtime's own code still loads it: the RIP-relative
//! memory operands of the functions the runtime table names for the
//! binary's version (`runtime.profilealloc` first, then the malloc
//! functions that read it) are the candidates, and the variable is the one
//! whose initial value in the file is the default rate, 512 KiB.

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind};

use super::{
    elf::GoBinary,
    error::TargetError,
    runtime::{self, DEFAULT_MEM_PROFILE_RATE},
};

/// How the address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSource {
    /// The `runtime.MemProfileRate` symbol.
    Symbol,
    /// The RIP-relative operand of a runtime function that reads it.
    Disassembly,
}

/// Link-time address of `runtime.MemProfileRate` (an 8-byte `int`): from
/// `.symtab`, else by disassembly. Add the load bias for a PIE process.
pub fn mem_profile_rate_addr(bin: &GoBinary) -> Result<(u64, RateSource), TargetError> {
    if let Some(sym) = bin.symbol("runtime.MemProfileRate") {
        return Ok((sym.vaddr, RateSource::Symbol));
    }
    mem_profile_rate_by_disassembly(bin).map(|addr| (addr, RateSource::Disassembly))
}

/// Finds `runtime.MemProfileRate` without symbols, from the code of the
/// functions that read it.
pub fn mem_profile_rate_by_disassembly(bin: &GoBinary) -> Result<u64, TargetError> {
    let not_found = |reason: String| TargetError::MemProfileRateNotFound {
        path: bin.path().to_path_buf(),
        reason,
    };
    let readers = runtime::probes_for(&bin.go_version().0)
        .map_err(|e| not_found(e.to_string()))?
        .rate_reader_fns;
    let mut seen_any = false;
    for name in readers {
        let Some(func) = bin.pclntab().func_by_name(name) else {
            continue;
        };
        seen_any = true;
        let len = usize::try_from(func.end - func.entry)
            .map_err(|_| not_found("huge function".into()))?;
        let Some(code) = bin.read_vaddr(func.entry, len) else {
            continue;
        };
        let mut candidates: Vec<u64> = rip_relative_operands(code, func.entry)
            .into_iter()
            .filter(|&addr| holds_default_rate(bin, addr))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        match candidates.as_slice() {
            [addr] => return Ok(*addr),
            [] => continue,
            many => {
                return Err(not_found(format!(
                    "{} candidates in {name}: {many:x?}",
                    many.len()
                )))
            }
        }
    }
    Err(not_found(if seen_any {
        "no data operand of runtime.profilealloc holds 524288".into()
    } else {
        "runtime.profilealloc is not in the binary".into()
    }))
}

/// Whether `addr` is an 8-byte variable in initialised, writable data whose
/// value in the file is the default rate.
fn holds_default_rate(bin: &GoBinary, addr: u64) -> bool {
    let in_data = bin
        .section_containing(addr)
        .is_some_and(|s| s.writable && !s.executable && s.file_offset.is_some());
    in_data && bin.read_u64(addr) == Some(DEFAULT_MEM_PROFILE_RATE)
}

/// Addresses of all RIP-relative memory operands in x86-64 `code` that
/// starts at `ip`.
pub fn rip_relative_operands(code: &[u8], ip: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_ip_rel_memory_operand() {
            out.push(instruction.ip_rel_memory_address());
        }
    }
    out
}

/// The RIP-relative loads (`mov reg, [rip+x]`) in x86-64 `code` that
/// starts at `ip`: (address, bytes loaded), in code order.
pub fn rip_relative_loads(code: &[u8], ip: u64) -> Vec<(u64, usize)> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let load = instruction.mnemonic() == Mnemonic::Mov
            && instruction.op_count() == 2
            && instruction.op1_kind() == OpKind::Memory
            && instruction.is_ip_rel_memory_operand();
        let size = match instruction.memory_size() {
            MemorySize::UInt64 | MemorySize::Int64 => 8,
            MemorySize::UInt32 | MemorySize::Int32 => 4,
            MemorySize::UInt16 | MemorySize::Int16 => 2,
            MemorySize::UInt8 | MemorySize::Int8 => 1,
            _ => continue,
        };
        if load {
            out.push((instruction.ip_rel_memory_address(), size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_loads_by_size() {
        // mov ecx, [rip+0x10]; mov rcx, [rip+0x20]; lea rax, [rip+0x30];
        // mov [rip+0x40], rax
        let code = [
            0x8b, 0x0d, 0x10, 0x00, 0x00, 0x00, // 6 bytes
            0x48, 0x8b, 0x0d, 0x20, 0x00, 0x00, 0x00, // 7
            0x48, 0x8d, 0x05, 0x30, 0x00, 0x00, 0x00, // 7
            0x48, 0x89, 0x05, 0x40, 0x00, 0x00, 0x00, // 7
        ];
        let ip = 0x1000;
        assert_eq!(
            rip_relative_loads(&code, ip),
            vec![(ip + 6 + 0x10, 4), (ip + 13 + 0x20, 8)]
        );
    }

    #[test]
    fn decodes_rip_relative_loads() {
        // mov rax, [rip+0x10]; cmp rcx, [rip-0x20]; ret
        let code = [
            0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00, // 7 bytes
            0x48, 0x3b, 0x0d, 0xe0, 0xff, 0xff, 0xff, // 7 bytes
            0xc3,
        ];
        let ip = 0x40_1000;
        assert_eq!(
            rip_relative_operands(&code, ip),
            vec![ip + 7 + 0x10, ip + 14 - 0x20]
        );
    }
}
