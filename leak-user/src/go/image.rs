//! The ELF file underneath a Go binary: its loadable segments and
//! sections, and reading it by virtual address. What both [`super::elf`]
//! and the `.gopclntab` reader stand on (so neither imports the other's
//! parts).

use std::path::Path;

use object::{
    elf,
    read::elf::{ElfFile64, FileHeader, ProgramHeader},
    Architecture, Endianness, FileKind, Object, ObjectSection, ObjectSymbol, SectionFlags,
    SectionKind,
};

use super::error::GoError;

/// One `PT_LOAD` program header: how a part of the file is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    /// `p_vaddr`: link-time virtual address of the segment.
    pub vaddr: u64,
    /// `p_memsz`: size in memory (≥ `file_size`; the rest is zero-filled).
    pub mem_size: u64,
    /// `p_offset`: where the segment starts in the file.
    pub file_offset: u64,
    /// `p_filesz`: bytes backed by the file.
    pub file_size: u64,
    /// `p_flags` has `PF_X`.
    pub executable: bool,
    /// `p_flags` has `PF_W`.
    pub writable: bool,
}

/// One section header, reduced to what leak uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    /// Section name, e.g. `.gopclntab`.
    pub name: String,
    /// Link-time virtual address (0 if not allocated).
    pub vaddr: u64,
    /// Size in memory.
    pub size: u64,
    /// File offset of the contents; `None` for `SHT_NOBITS` (`.bss`).
    pub file_offset: Option<u64>,
    /// `SHF_ALLOC`: part of the loaded image.
    pub alloc: bool,
    /// `SHF_WRITE`.
    pub writable: bool,
    /// `SHF_EXECINSTR`.
    pub executable: bool,
}

impl Section {
    /// Whether `vaddr` falls inside this (allocated) section.
    pub(crate) fn contains(&self, vaddr: u64) -> bool {
        self.alloc && vaddr >= self.vaddr && vaddr - self.vaddr < self.size
    }
}

pub(super) fn vaddr_to_file_offset(segments: &[LoadSegment], vaddr: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.file_size)
        .and_then(|s| (vaddr - s.vaddr).checked_add(s.file_offset))
}

pub(super) fn read_vaddr<'a>(
    segments: &[LoadSegment],
    data: &'a [u8],
    vaddr: u64,
    len: usize,
) -> Option<&'a [u8]> {
    let seg = segments
        .iter()
        .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.file_size)?;
    // The whole range must be file-backed by the same segment.
    let into = vaddr - seg.vaddr;
    if into.checked_add(len as u64)? > seg.file_size {
        return None;
    }
    let start = usize::try_from(into.checked_add(seg.file_offset)?).ok()?;
    data.get(start..start.checked_add(len)?)
}

pub(super) fn read_u64_at(segments: &[LoadSegment], data: &[u8], vaddr: u64) -> Option<u64> {
    let b = read_vaddr(segments, data, vaddr, 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Headers of a checked ELF file, before the Go tables are read.
pub(super) struct ElfLayout {
    pub pie: bool,
    pub segments: Vec<LoadSegment>,
    pub sections: Vec<Section>,
    /// `.symtab` addresses of the few symbols that help find Go's tables.
    pub pclntab_symbol: Option<u64>,
    pub text_symbol: Option<u64>,
    pub gofunc_symbol: Option<u64>,
}

impl ElfLayout {
    pub(super) fn parse(path: &Path, data: &[u8]) -> Result<Self, GoError> {
        match FileKind::parse(data) {
            Ok(FileKind::Elf64) => {}
            Ok(FileKind::Elf32) => {
                return Err(GoError::UnsupportedArch {
                    path: path.to_path_buf(),
                    arch: "a 32-bit CPU".into(),
                })
            }
            _ => return Err(GoError::NotElf(path.to_path_buf())),
        }
        let file = ElfFile64::<Endianness>::parse(data)
            .map_err(|_| GoError::NotElf(path.to_path_buf()))?;
        if file.architecture() != Architecture::X86_64 {
            return Err(GoError::UnsupportedArch {
                path: path.to_path_buf(),
                arch: format!("{:?}", file.architecture()).to_lowercase(),
            });
        }
        let endian = file.endian();
        let header = file.elf_header();
        let pie = header.e_type(endian) == elf::ET_DYN;

        let segments = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| {
                let flags = ph.p_flags(endian);
                LoadSegment {
                    vaddr: ph.p_vaddr(endian),
                    mem_size: ph.p_memsz(endian),
                    file_offset: ph.p_offset(endian),
                    file_size: ph.p_filesz(endian),
                    executable: flags & elf::PF_X != 0,
                    writable: flags & elf::PF_W != 0,
                }
            })
            .collect();

        let sections = file
            .sections()
            .map(|s| {
                let sh_flags = match s.flags() {
                    SectionFlags::Elf { sh_flags } => sh_flags,
                    _ => 0,
                };
                Section {
                    name: s.name().unwrap_or("").to_owned(),
                    vaddr: s.address(),
                    size: s.size(),
                    file_offset: (s.kind() != SectionKind::UninitializedData
                        && s.kind() != SectionKind::UninitializedTls)
                        .then(|| s.file_range().map(|(off, _)| off))
                        .flatten(),
                    alloc: sh_flags & u64::from(elf::SHF_ALLOC) != 0,
                    writable: sh_flags & u64::from(elf::SHF_WRITE) != 0,
                    executable: sh_flags & u64::from(elf::SHF_EXECINSTR) != 0,
                }
            })
            .collect();

        let sym = |name: &str| file.symbol_by_name(name).map(|s| s.address());
        Ok(Self {
            pie,
            segments,
            sections,
            pclntab_symbol: sym("runtime.pclntab"),
            text_symbol: sym("runtime.text"),
            // Go 1.20 renamed go.func.* to go:func.*.
            gofunc_symbol: sym("go:func.*").or_else(|| sym("go.func.*")),
        })
    }
}
