//! Where `runtime.MemProfileRate` lives, so its value can be read and
//! written through `/proc/PID/mem`.
//!
//! `.symtab` names it when present. Stripped binaries keep no data
//! symbols, but the runtime's own code still loads it: the RIP-relative
//! memory operands of the functions the runtime table names for the
//! binary's version (`runtime.profilealloc` first, then the malloc
//! functions that read it) are the candidates, and the variable is the one
//! whose initial value in the file is the default rate, 512 KiB. Where the
//! runtime sets the default at start-up instead (Go 1.19: the variable is
//! zero in the file), it is the candidate that the function the table names
//! stores 512 KiB into.

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};

use super::{
    elf::GoBinary,
    error::GoError,
    table::{self, DEFAULT_MEM_PROFILE_RATE},
};

/// How the address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateSource {
    /// The `runtime.MemProfileRate` symbol.
    Symbol,
    /// The RIP-relative operand of a runtime function that reads it.
    Disassembly,
}

/// Link-time address of `runtime.MemProfileRate` (an 8-byte `int`): from
/// `.symtab`, else by disassembly. Add the load bias for a PIE process.
pub(crate) fn mem_profile_rate_addr(bin: &GoBinary) -> Result<(u64, RateSource), GoError> {
    if let Some(sym) = bin.symbol("runtime.MemProfileRate") {
        return Ok((sym.vaddr, RateSource::Symbol));
    }
    mem_profile_rate_by_disassembly(bin).map(|addr| (addr, RateSource::Disassembly))
}

/// Finds `runtime.MemProfileRate` without symbols, from the code of the
/// functions that read it.
pub(crate) fn mem_profile_rate_by_disassembly(bin: &GoBinary) -> Result<u64, GoError> {
    let not_found = |reason: String| GoError::MemProfileRateNotFound {
        path: bin.path().to_path_buf(),
        reason,
    };
    let row = table::probes_for(&bin.go_version().0).map_err(|e| not_found(e.to_string()))?;
    let readers = row.rate.reader_fns;
    // Where the default is stored at start-up, if it is not in the file.
    let stored = match row.rate.set_by {
        None => None,
        Some(name) => {
            let func = bin
                .pclntab()
                .func_by_name(name)
                .ok_or_else(|| not_found(format!("{name} is not in the binary")))?;
            let len = usize::try_from(func.end - func.entry)
                .map_err(|_| not_found("huge function".into()))?;
            let code = bin
                .read_vaddr(func.entry, len)
                .ok_or_else(|| not_found(format!("the code of {name} is not in the file")))?;
            Some(stores_of_default(code, func.entry))
        }
    };
    let is_rate = |addr: u64| match &stored {
        None => holds_default_rate(bin, addr),
        Some(stores) => stores.contains(&addr) && in_writable_data(bin, addr),
    };
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
            .filter(|&addr| is_rate(addr))
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
    Err(not_found(if !seen_any {
        "runtime.profilealloc is not in the binary".into()
    } else if let Some(name) = row.rate.set_by {
        format!("{name} stores 524288 into no data operand of runtime.profilealloc")
    } else {
        "no data operand of runtime.profilealloc holds 524288".into()
    }))
}

/// Whether `addr` is in writable, non-executable memory (data or bss).
fn in_writable_data(bin: &GoBinary, addr: u64) -> bool {
    bin.section_containing(addr)
        .is_some_and(|s| s.writable && !s.executable)
}

/// Instructions between loading the default into a register and storing
/// that register, at most (Go 1.19's `runtime.init` has a `cmov` between:
/// `mov $0x80000, %eax; mov $0, %ecx; cmovne %rcx, %rax; mov %rax, X`).
const STORE_WINDOW: usize = 6;

/// The RIP-relative addresses that x86-64 `code` (starting at `ip`) stores
/// the default rate into: `mov [rip+x], reg` a few instructions after
/// `mov reg, 524288`.
pub(crate) fn stores_of_default(code: &[u8], ip: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    // Index of the last `mov reg, 524288`, per general-purpose register.
    let mut loaded: Vec<(Option<u32>, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, insn) in decoder.iter().enumerate() {
        if insn.mnemonic() != Mnemonic::Mov || insn.op_count() != 2 {
            continue;
        }
        let immediate = matches!(
            insn.op1_kind(),
            OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64
        );
        if insn.op0_kind() == OpKind::Register {
            let reg = gpr(insn.op0_register());
            loaded.retain(|&(r, _)| r != reg);
            if immediate && insn.immediate(1) == DEFAULT_MEM_PROFILE_RATE {
                loaded.push((reg, i));
            }
        } else if insn.op1_kind() == OpKind::Register && insn.is_ip_rel_memory_operand() {
            let reg = gpr(insn.op1_register());
            let recent = loaded
                .iter()
                .any(|&(r, at)| r.is_some() && r == reg && i - at <= STORE_WINDOW);
            if recent && insn.memory_size() == MemorySize::UInt64 {
                out.push(insn.ip_rel_memory_address());
            }
        }
    }
    out
}

/// The number of a 32- or 64-bit general-purpose register (`eax` and `rax`
/// are the same register), `None` for any other.
fn gpr(reg: Register) -> Option<u32> {
    let n = reg as u32;
    [Register::EAX, Register::RAX]
        .into_iter()
        .find(|&base| (base as u32..base as u32 + 16).contains(&n))
        .map(|base| n - base as u32)
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
pub(crate) fn rip_relative_operands(code: &[u8], ip: u64) -> Vec<u64> {
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
pub(crate) fn rip_relative_loads(code: &[u8], ip: u64) -> Vec<(u64, usize)> {
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

    /// Go 1.19's `runtime.init`: `MemProfileRate = defaultMemProfileRate(512
    /// * 1024)`, inlined (bytes from a go1.19.8 build).
    #[test]
    fn finds_the_store_of_the_default() {
        let code = [
            0x0f, 0xb6, 0x05, 0x2f, 0x17, 0x4c, 0x00, // movzbl disableMemoryProfiling, %eax
            0x48, 0x85, 0xc0, // test %rax, %rax
            0xb8, 0x00, 0x00, 0x08, 0x00, // mov $0x80000, %eax
            0xb9, 0x00, 0x00, 0x00, 0x00, // mov $0, %ecx
            0x48, 0x0f, 0x45, 0xc1, // cmovne %rcx, %rax
            0x48, 0x89, 0x05, 0xe4, 0x17, 0x4c, 0x00, // mov %rax, MemProfileRate
            0x48, 0x89, 0x0d, 0x10, 0x00, 0x00, 0x00, // mov %rcx, [rip+0x10]
        ];
        let ip = 0x4633a5;
        assert_eq!(stores_of_default(&code, ip), vec![0x924ba8]);
        // Another value loaded into %eax in between: no store of the default.
        let mut other = code;
        other[11] = 0x01;
        assert_eq!(stores_of_default(&other, ip), Vec::<u64>::new());
        assert_eq!(gpr(Register::EAX), gpr(Register::RAX));
        assert_eq!(gpr(Register::R15D), Some(15));
        assert_eq!(gpr(Register::XMM0), None);
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
