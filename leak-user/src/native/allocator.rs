//! The allocator a native process really uses, and where its probes go.
//!
//! The dynamic linker binds `malloc` to the first object in its search
//! order that defines it: the executable (a static binary, or one that
//! bundles its allocator), then preloaded libraries (a jemalloc, tcmalloc
//! or mimalloc `LD_PRELOAD`ed), then the libraries it needs, the C library
//! last among those that matter here. leak looks in the same order, among
//! the objects the process has mapped, opened through its root so a
//! container's own C library is probed, not the host's.
//!
//! A probe costs ~0.7 µs when the kernel can emulate the instruction it
//! sits on (a push, a jump, a nop) and ~9.5 µs when it must single-step it
//! (a `test`), so each probe goes on the first instruction of the function
//! when that is emulated, else just past leading instructions that only
//! test or mark (`endbr64`, `test`, `cmp`) onto one that is: free's NULL
//! test, for one, is skipped onto its jump. The arguments are still in
//! their registers there.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable};

use crate::process::{exe::in_root, maps};

/// How a probed function's arguments and result are read (which kernel
/// program takes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// Bytes in the first argument, the block returned: malloc, valloc,
    /// pvalloc, operator new, mallocx.
    Malloc,
    /// calloc(n, size).
    Calloc,
    /// A block in the first argument freed, bytes in the second: realloc,
    /// rallocx.
    Realloc,
    /// reallocarray(p, n, size).
    ReallocArray,
    /// Bytes in the second argument: memalign, aligned_alloc.
    Memalign,
    /// posix_memalign(&p, alignment, size): the block through `p`.
    PosixMemalign,
    /// The block in the first argument freed: free, operator delete,
    /// dallocx, sdallocx.
    Free,
}

/// The functions probed where the allocator object defines them, malloc
/// first (an allocator must define it). Beside the C library's: C++'s
/// operator new and delete (jemalloc and tcmalloc define their own, which
/// never call their malloc), and jemalloc's own API.
pub(crate) const FUNCTIONS: &[(&str, Call)] = &[
    ("malloc", Call::Malloc),
    ("calloc", Call::Calloc),
    ("realloc", Call::Realloc),
    ("free", Call::Free),
    ("reallocarray", Call::ReallocArray),
    ("posix_memalign", Call::PosixMemalign),
    ("aligned_alloc", Call::Memalign),
    ("memalign", Call::Memalign),
    ("valloc", Call::Malloc),
    ("pvalloc", Call::Malloc),
    ("_Znwm", Call::Malloc),
    ("_Znam", Call::Malloc),
    ("_ZnwmRKSt9nothrow_t", Call::Malloc),
    ("_ZnamRKSt9nothrow_t", Call::Malloc),
    ("_ZnwmSt11align_val_t", Call::Malloc),
    ("_ZnamSt11align_val_t", Call::Malloc),
    ("_ZnwmSt11align_val_tRKSt9nothrow_t", Call::Malloc),
    ("_ZnamSt11align_val_tRKSt9nothrow_t", Call::Malloc),
    ("_ZdlPv", Call::Free),
    ("_ZdaPv", Call::Free),
    ("_ZdlPvm", Call::Free),
    ("_ZdaPvm", Call::Free),
    ("_ZdlPvRKSt9nothrow_t", Call::Free),
    ("_ZdaPvRKSt9nothrow_t", Call::Free),
    ("_ZdlPvSt11align_val_t", Call::Free),
    ("_ZdaPvSt11align_val_t", Call::Free),
    ("_ZdlPvmSt11align_val_t", Call::Free),
    ("_ZdaPvmSt11align_val_t", Call::Free),
    ("_ZdlPvSt11align_val_tRKSt9nothrow_t", Call::Free),
    ("_ZdaPvSt11align_val_tRKSt9nothrow_t", Call::Free),
    ("mallocx", Call::Malloc),
    ("rallocx", Call::Realloc),
    ("dallocx", Call::Free),
    ("sdallocx", Call::Free),
];

/// One allocator function and where its probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `malloc`, `free`, … (as the symbol is spelled).
    pub function: &'static str,
    /// How its arguments and result are read.
    pub call: Call,
    /// File offset of the probed instruction (the return probe's too).
    pub file_offset: u64,
    /// Whether the probed instruction is one the kernel emulates.
    pub emulated: bool,
}

/// The object that serves a process's allocations.
#[derive(Clone, Debug)]
pub(crate) struct Allocator {
    /// The object as the process names it.
    pub name: String,
    /// Where leak opens it and attaches: through the process's root.
    pub open: PathBuf,
    /// Its probes: those of [`FUNCTIONS`] it defines and serves itself.
    pub probes: Vec<Probe>,
    /// Its realloc tail-calls its malloc (for a null block, glibc's does):
    /// such a call is malloc's to count.
    pub realloc_null_is_malloc: bool,
}

impl Allocator {
    /// The functions probed, as a person reads them: C++'s operators by
    /// family.
    pub(crate) fn functions(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.probes {
            let shown = if p.function.starts_with("_Zn") {
                "operator new"
            } else if p.function.starts_with("_Zd") {
                "operator delete"
            } else {
                p.function
            };
            if !out.contains(&shown) {
                out.push(shown);
            }
        }
        out.join(", ")
    }
}

/// Why no allocator was found, in one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocatorError {
    /// The memory map could not be read.
    #[error("cannot read the memory map of pid {pid}: {source}")]
    Maps {
        /// The process.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing mapped defines malloc.
    #[error("pid {pid} maps no object that defines malloc: no allocations to follow (--syscalls follows any program's brk and mmap)")]
    NoMalloc {
        /// The process.
        pid: u32,
    },
}

/// The allocator of process `pid`.
pub(crate) fn of_process(pid: u32) -> Result<Allocator, AllocatorError> {
    let mappings = maps::of(pid).map_err(|source| AllocatorError::Maps { pid, source })?;
    let mut objects: Vec<&str> = Vec::new();
    for m in &mappings {
        if m.path.starts_with('/') && !objects.contains(&m.path.as_str()) {
            objects.push(&m.path);
        }
    }
    let exe = crate::process::exe(pid).ok();
    for name in search_order(&objects, exe.as_deref()) {
        let Some(open) = in_root(pid, Path::new(name)) else {
            continue;
        };
        if let Some((probes, realloc_null_is_malloc)) = probes_in(&open) {
            return Ok(Allocator {
                name: name.to_string(),
                open,
                probes,
                realloc_null_is_malloc,
            });
        }
    }
    Err(AllocatorError::NoMalloc { pid })
}

/// The objects in the order the dynamic linker binds malloc: the
/// executable, then the others as mapped, the C library and the dynamic
/// linker last.
pub(crate) fn search_order<'a>(objects: &[&'a str], exe: Option<&Path>) -> Vec<&'a str> {
    let is_exe = |o: &&str| exe.is_some_and(|e| Path::new(o) == e);
    let is_libc = |o: &&str| {
        let file = o.rsplit('/').next().unwrap_or(o);
        file.starts_with("libc.so") || file.starts_with("libc-") || file.starts_with("ld-")
    };
    let mut out: Vec<&str> = objects.iter().copied().filter(is_exe).collect();
    out.extend(
        objects
            .iter()
            .copied()
            .filter(|o| !is_exe(o) && !is_libc(o)),
    );
    out.extend(objects.iter().copied().filter(|o| !is_exe(o) && is_libc(o)));
    out
}

/// The probes of the allocator functions `path` defines, if it defines
/// malloc, and whether its realloc tail-calls its malloc.
fn probes_in(path: &Path) -> Option<(Vec<Probe>, bool)> {
    probes_of(&std::fs::read(path).ok()?)
}

/// [`probes_in`] of an object's bytes.
pub(crate) fn probes_of(data: &[u8]) -> Option<(Vec<Probe>, bool)> {
    let file = object::File::parse(data).ok()?;
    // Never probe a Go program's own code: the allocation probes come with
    // return probes, which would move a goroutine's return address on a
    // stack the Go runtime may move. (A Go object never defines a plain
    // `malloc`, whose code would then be C; such a static cgo binary is
    // passed over all the same.)
    if file.section_by_name(".gopclntab").is_some() {
        return None;
    }
    let defined = |name: &str| {
        file.dynamic_symbols()
            .chain(file.symbols())
            .find(|s| s.name() == Ok(name) && !s.is_undefined() && s.address() != 0)
            .map(|s| (s.address(), s.size()))
    };
    defined("malloc")?;
    let found: Vec<(&'static str, Call, u64, u64)> = FUNCTIONS
        .iter()
        .filter_map(|&(f, call)| defined(f).map(|(addr, size)| (f, call, addr, size)))
        .collect();
    let entries: Vec<(u64, &str)> = found.iter().map(|&(f, _, addr, _)| (addr, f)).collect();
    let plt = plt_targets(&file);
    let mut probes: Vec<Probe> = Vec::new();
    let mut probed: Vec<u64> = Vec::new();
    let mut realloc_null_is_malloc = false;
    for &(function, call, addr, size) in &found {
        // An alias (glibc's aligned_alloc is its memalign) is probed once.
        if probed.contains(&addr) {
            continue;
        }
        let Some((code, entry_offset)) = code_at(
            &file,
            data,
            addr,
            if size > 0 { size.min(4096) } else { 64 },
        ) else {
            continue;
        };
        // Code cut off by the end of the file: nothing to probe.
        if code.is_empty() {
            continue;
        }
        // Beyond the four every allocator has, one that calls another
        // probed function (glibc's reallocarray calls realloc) is served by
        // that one's probe: probing both would count the bytes twice.
        if function == "realloc" {
            let malloc = entries.first().map(|e| e.0);
            realloc_null_is_malloc = jumps_to(code, addr, malloc);
        } else if !matches!(function, "malloc" | "free" | "calloc") {
            let others = |target: u64| {
                entries.iter().any(|&(a, f)| a == target && f != function)
                    || plt.get(&target).is_some_and(|n| {
                        n != function && entries.iter().any(|&(_, f)| f == n.as_str())
                    })
            };
            if calls_any(code, addr, others) {
                continue;
            }
        }
        let (skip, emulated) = placement(&code[..code.len().min(64)], addr);
        probed.push(addr);
        probes.push(Probe {
            function,
            call,
            file_offset: entry_offset + skip,
            emulated,
        });
    }
    Some((probes, realloc_null_is_malloc))
}

/// Whether the code of a function (`code` at `ip`) tail-calls (`jmp`)
/// address `target`.
fn jumps_to(code: &[u8], ip: u64, target: Option<u64>) -> bool {
    target.is_some_and(|t| branches(code, ip).any(|(jump, to)| jump && to == t))
}

/// Whether the code of a function (`code` at `ip`) calls or jumps to an
/// address `target` accepts.
fn calls_any(code: &[u8], ip: u64, target: impl Fn(u64) -> bool) -> bool {
    branches(code, ip).any(|(_, to)| target(to))
}

/// The direct calls and jumps of a function (`code` at `ip`), up to the
/// padding after its last instruction: whether each is a jump, and where
/// it goes.
fn branches(code: &[u8], ip: u64) -> impl Iterator<Item = (bool, u64)> + '_ {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    std::iter::from_fn(move || decoder.can_decode().then(|| decoder.decode()))
        .take_while(|i| i.mnemonic() != Mnemonic::Int3)
        .filter(|i| {
            matches!(i.mnemonic(), Mnemonic::Call | Mnemonic::Jmp)
                && matches!(i.op0_kind(), OpKind::NearBranch64 | OpKind::NearBranch32)
        })
        .map(|i| (i.mnemonic() == Mnemonic::Jmp, i.near_branch_target()))
}

/// The object's PLT stubs: each stub's address and the function it jumps
/// to (`jmp *slot(%rip)`, perhaps after `endbr64`, whose GOT slot a
/// dynamic relocation names).
fn plt_targets(file: &object::File<'_>) -> HashMap<u64, String> {
    let mut slots: HashMap<u64, String> = HashMap::new();
    let dynsym = file.dynamic_symbol_table();
    for (slot, reloc) in file.dynamic_relocations().into_iter().flatten() {
        if let (object::RelocationTarget::Symbol(idx), Some(table)) = (reloc.target(), &dynsym) {
            if let Some(name) = table.symbol_by_index(idx).ok().and_then(|s| s.name().ok()) {
                slots.insert(slot, name.to_string());
            }
        }
    }
    let mut out = HashMap::new();
    for name in [".plt", ".plt.sec", ".plt.got"] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let (Ok(code), base) = (section.data(), section.address()) else {
            continue;
        };
        let mut decoder = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
        let mut stub = None;
        let mut i = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut i);
            match i.mnemonic() {
                Mnemonic::Endbr64 => stub = Some(i.ip()),
                Mnemonic::Jmp if i.is_ip_rel_memory_operand() => {
                    let at = stub.take().unwrap_or(i.ip());
                    if let Some(n) = slots.get(&i.ip_rel_memory_address()) {
                        out.insert(at, n.clone());
                    }
                }
                _ => stub = None,
            }
        }
    }
    out
}

/// Up to `len` bytes of code at link-time address `addr`, and its file
/// offset.
pub(crate) fn code_at<'d>(
    file: &object::File<'d>,
    data: &'d [u8],
    addr: u64,
    len: u64,
) -> Option<(&'d [u8], u64)> {
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let start = seg.address();
        (addr >= start && addr < start + size).then(|| {
            let at = off + (addr - start);
            let end = (at + len).min(off + size) as usize;
            (data.get(at as usize..end).unwrap_or(&[]), at)
        })
    })
}

/// Where the probe goes in a function whose code starts with `code` (at
/// `ip`): bytes past the entry, and whether the instruction there is one
/// the kernel emulates. Leading instructions that change no register and
/// no memory (`endbr64`, `test`, `cmp`) are stepped over, at most three,
/// onto an emulated one; if none follows, the entry.
pub(crate) fn placement(code: &[u8], ip: u64) -> (u64, bool) {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut i = Instruction::default();
    for _ in 0..4 {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut i);
        if emulated(&i) {
            return (i.ip().wrapping_sub(ip), true);
        }
        // These set flags only.
        if !matches!(
            i.mnemonic(),
            Mnemonic::Endbr64 | Mnemonic::Test | Mnemonic::Cmp
        ) {
            break;
        }
    }
    (0, false)
}

/// Whether x86 uprobes emulate `i` rather than single-step it: pushes of
/// a register, relative jumps and calls, conditional jumps, nops.
fn emulated(i: &Instruction) -> bool {
    match i.mnemonic() {
        Mnemonic::Push => i.op0_kind() == OpKind::Register,
        Mnemonic::Nop => true,
        Mnemonic::Jmp | Mnemonic::Call => {
            matches!(i.op0_kind(), OpKind::NearBranch64 | OpKind::NearBranch32)
        }
        Mnemonic::Jo
        | Mnemonic::Jno
        | Mnemonic::Jb
        | Mnemonic::Jae
        | Mnemonic::Je
        | Mnemonic::Jne
        | Mnemonic::Jbe
        | Mnemonic::Ja
        | Mnemonic::Js
        | Mnemonic::Jns
        | Mnemonic::Jp
        | Mnemonic::Jnp
        | Mnemonic::Jl
        | Mnemonic::Jge
        | Mnemonic::Jle
        | Mnemonic::Jg => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_binds_first_and_the_c_library_last() {
        let objects = [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/bin/app",
            "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        ];
        let order = search_order(&objects, Some(Path::new("/usr/bin/app")));
        assert_eq!(
            order,
            vec![
                "/usr/bin/app",
                "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ]
        );
    }

    #[test]
    fn a_call_or_jump_to_another_function_is_seen() {
        // push rbx; call +0x100 (to 0x1106); pop rbx; ret
        let code = [0x53, 0xe8, 0x00, 0x01, 0x00, 0x00, 0x5b, 0xc3];
        assert!(calls_any(&code, 0x1000, |t| t == 0x1106));
        assert!(!calls_any(&code, 0x1000, |t| t == 0x2000));
        // jmp -0x10 (a tail call to 0xff2)
        assert!(calls_any(&[0xeb, 0xf0], 0x1000, |t| t == 0xff2));
    }

    #[test]
    fn plt_stubs_name_their_functions() {
        let a = of_process(std::process::id()).unwrap();
        let data = std::fs::read(&a.open).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let plt = plt_targets(&file);
        assert!(plt.values().any(|n| n == "realloc"), "{plt:?}");
    }

    #[test]
    fn probes_step_over_a_null_test_onto_the_jump() {
        // endbr64; test rdi, rdi; je +0x20
        let free = [0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74, 0x20];
        assert_eq!(placement(&free, 0x1000), (7, true));
        // push r12 at the entry.
        assert_eq!(placement(&[0x41, 0x54, 0x55], 0x1000), (0, true));
        // mov rax, [rip+x]: not emulated, not skippable: the entry.
        let mov = [0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00];
        assert_eq!(placement(&mov, 0x1000), (0, false));
    }

    /// The C library this test runs on defines every function, each probe
    /// inside it.
    #[test]
    fn finds_this_processs_allocator() {
        let a = of_process(std::process::id()).unwrap();
        assert!(a.name.contains("libc"), "{a:?}");
        let names: Vec<&str> = a.probes.iter().map(|p| p.function).collect();
        // glibc's reallocarray calls its realloc through the PLT (served by
        // that probe), and its aligned_alloc is its memalign (one probe);
        // it has no operator new.
        for f in [
            "malloc",
            "calloc",
            "realloc",
            "free",
            "posix_memalign",
            "valloc",
        ] {
            assert!(names.contains(&f), "{f}: {names:?}");
        }
        let aligned = names
            .iter()
            .filter(|f| matches!(**f, "aligned_alloc" | "memalign"))
            .count();
        assert_eq!(aligned, 1, "{names:?}");
        assert!(!names.contains(&"reallocarray"), "{names:?}");
        assert!(!names.iter().any(|f| f.starts_with("_Z")), "{names:?}");
        assert_eq!(names[0], "malloc");
        assert!(
            a.realloc_null_is_malloc,
            "glibc's realloc(NULL, n) is its malloc"
        );
        eprintln!("{a:#?}");
    }
}
