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

use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use object::{Object, ObjectSegment, ObjectSymbol};

use crate::process::{exe::in_root, maps};

/// One allocator function and where its probe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `malloc`, `free`, …
    pub function: &'static str,
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
    /// Its probes: malloc, calloc, realloc and free, those it defines.
    pub probes: Vec<Probe>,
}

/// The functions probed, malloc first (an allocator must define it).
pub(crate) const FUNCTIONS: [&str; 4] = ["malloc", "calloc", "realloc", "free"];

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
        if let Some(probes) = probes_in(&open) {
            return Ok(Allocator {
                name: name.to_string(),
                open,
                probes,
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
/// malloc.
fn probes_in(path: &Path) -> Option<Vec<Probe>> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
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
            .map(|s| s.address())
    };
    defined("malloc")?;
    let mut probes = Vec::new();
    for function in FUNCTIONS {
        let Some(addr) = defined(function) else {
            continue;
        };
        let Some((code, entry_offset)) = code_at(&file, &data, addr) else {
            continue;
        };
        let (skip, emulated) = placement(code, addr);
        probes.push(Probe {
            function,
            file_offset: entry_offset + skip,
            emulated,
        });
    }
    Some(probes)
}

/// Up to 64 bytes of code at link-time address `addr`, and its file offset.
fn code_at<'d>(file: &object::File<'d>, data: &'d [u8], addr: u64) -> Option<(&'d [u8], u64)> {
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let start = seg.address();
        (addr >= start && addr < start + size).then(|| {
            let at = off + (addr - start);
            let end = (at + 64).min(off + size) as usize;
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
        assert_eq!(names, FUNCTIONS.to_vec());
        eprintln!("{a:#?}");
    }
}
