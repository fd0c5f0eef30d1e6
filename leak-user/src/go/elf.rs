//! The traced program's executable: ELF layout, address translation, notes.
//!
//! [`GoBinary::open`] reads the whole file once, checks that it is an x86_64
//! ELF executable built by Go, and keeps the few things later stages need:
//! the `PT_LOAD` segments (attach offsets, load bias), the section headers
//! (to find Go's tables and data), and the parsed `.gopclntab`.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use object::{read::elf::ElfFile64, Endianness, Object, ObjectSymbol};

use super::{
    error::GoError,
    image::{read_u64_at, read_vaddr, vaddr_to_file_offset, ElfLayout, LoadSegment, Section},
    pclntab::{FuncInfo, Pclntab},
};

/// A `.symtab` symbol: where and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// Link-time virtual address.
    pub vaddr: u64,
    /// `st_size`.
    pub size: u64,
}

/// A Go executable, read into memory and checked.
pub(crate) struct GoBinary {
    path: PathBuf,
    /// The whole file; shared with [`Pclntab`], which reads its tables in place.
    data: Arc<[u8]>,
    pie: bool,
    segments: Vec<LoadSegment>,
    sections: Vec<Section>,
    pclntab: Pclntab,
    /// `.symtab`, built on first use (stripped binaries have none).
    symbols: OnceLock<HashMap<String, Symbol>>,
}

impl fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoBinary")
            .field("path", &self.path)
            .field("pie", &self.pie)
            .field("functions", &self.pclntab.len())
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    /// Reads and checks the executable at `path`, and parses its `.gopclntab`.
    ///
    /// For a process in another mount namespace pass `/proc/PID/exe` or
    /// `/proc/PID/root/<path>`.
    pub(crate) fn open(path: impl AsRef<Path>) -> Result<Self, GoError> {
        let path = path.as_ref().to_path_buf();
        let data: Arc<[u8]> = match std::fs::read(&path) {
            Ok(d) => d.into(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(GoError::NotFound(path))
            }
            Err(source) => return Err(GoError::Io { path, source }),
        };
        Self::from_data(path, data)
    }

    /// Checks and parses an executable already read into memory; `path`
    /// only names it in errors.
    pub(crate) fn from_data(path: PathBuf, data: Arc<[u8]>) -> Result<Self, GoError> {
        let layout = ElfLayout::parse(&path, &data)?;
        let pclntab = Pclntab::locate(&path, &data, &layout)?;
        Ok(Self {
            path,
            data,
            pie: layout.pie,
            segments: layout.segments,
            sections: layout.sections,
            pclntab,
            symbols: OnceLock::new(),
        })
    }

    /// The path the binary was opened from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The raw file contents.
    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        &self.data
    }

    /// Go's function table (names, entry points, lines, inlining).
    pub(crate) fn pclntab(&self) -> &Pclntab {
        &self.pclntab
    }

    /// The function named `name`, or an error that suggests close names
    /// (for functions a user asked to probe, or that a runtime-table row
    /// needs).
    pub(crate) fn require_function(&self, name: &str) -> Result<FuncInfo<'_>, GoError> {
        self.pclntab.func_by_name(name).ok_or_else(|| {
            let near = self.pclntab.near_matches(name, 3);
            GoError::MissingFunction {
                path: self.path.clone(),
                name: name.to_owned(),
                suggestions: if near.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", near.join(", "))
                },
            }
        })
    }

    /// Whether the executable is position independent (`ET_DYN`): its
    /// runtime addresses are link-time addresses plus a per-process load bias.
    #[cfg(test)]
    pub(crate) fn is_pie(&self) -> bool {
        self.pie
    }

    /// The `PT_LOAD` segments, in file order. With a process's
    /// `/proc/PID/maps`, they give the load bias of a PIE executable.
    pub(crate) fn load_segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// All section headers (empty names if the file has no `.shstrtab`).
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section called `name`, if any.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The allocated section that holds `vaddr`.
    pub(crate) fn section_containing(&self, vaddr: u64) -> Option<&Section> {
        self.sections.iter().find(|s| s.contains(vaddr))
    }

    /// Whether `vaddr` is in writable data (where the runtime's globals
    /// are), not code.
    pub(crate) fn is_writable_data(&self, vaddr: u64) -> bool {
        self.section_containing(vaddr)
            .is_some_and(|s| s.writable && !s.executable)
    }

    /// The machine code of function `name` (by `.gopclntab`) and its entry;
    /// why not, in a few words.
    pub(crate) fn code_of(&self, name: &str) -> Result<(&[u8], u64), String> {
        let func = self
            .pclntab()
            .func_by_name(name)
            .ok_or_else(|| format!("{name} is not in the binary"))?;
        let len =
            usize::try_from(func.end - func.entry).map_err(|_| "huge function".to_string())?;
        let code = self
            .read_vaddr(func.entry, len)
            .ok_or_else(|| format!("the code of {name} is not in the file"))?;
        Ok((code, func.entry))
    }

    /// File offset of a link-time virtual address, through the `PT_LOAD`
    /// segment that maps it: `vaddr − p_vaddr + p_offset`. `None` if no
    /// segment maps it from the file (e.g. `.bss`). Uprobes attach by this.
    pub(crate) fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        vaddr_to_file_offset(&self.segments, vaddr)
    }

    /// `len` file-backed bytes at link-time address `vaddr`.
    pub(crate) fn read_vaddr(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        read_vaddr(&self.segments, &self.data, vaddr, len)
    }

    /// The little-endian `u64` stored at `vaddr` in the file (a variable's
    /// initial value).
    pub(crate) fn read_u64(&self, vaddr: u64) -> Option<u64> {
        read_u64_at(&self.segments, &self.data, vaddr)
    }

    /// Whether the file still has a `.symtab` (not built with `-ldflags=-s`).
    #[cfg(test)]
    pub(crate) fn has_symtab(&self) -> bool {
        !self.symbols().is_empty()
    }

    /// Looks `name` up in `.symtab`. Stripped binaries have no such table:
    /// use [`Pclntab`] for functions instead.
    pub(crate) fn symbol(&self, name: &str) -> Option<Symbol> {
        self.symbols().get(name).copied()
    }

    fn symbols(&self) -> &HashMap<String, Symbol> {
        self.symbols.get_or_init(|| {
            // The file parsed in `open`, so a failure here cannot happen;
            // an empty table is the safe answer anyway.
            let Ok(file) = ElfFile64::<Endianness>::parse(&*self.data) else {
                return HashMap::new();
            };
            file.symbols()
                .filter_map(|s| {
                    let name = s.name().ok()?;
                    (!name.is_empty()).then(|| {
                        let sym = Symbol {
                            vaddr: s.address(),
                            size: s.size(),
                        };
                        (name.to_owned(), sym)
                    })
                })
                .collect()
        })
    }

    /// The GNU build ID (`NT_GNU_BUILD_ID`), which Go ≥1.24 derives from its
    /// own build ID and external linkers add; `None` if absent.
    pub(crate) fn build_id(&self) -> Option<Vec<u8>> {
        let file = ElfFile64::<Endianness>::parse(&*self.data).ok()?;
        file.build_id().ok().flatten().map(<[u8]>::to_vec)
    }

    /// Go's own build ID string (the `.note.go.buildid` note, type 4, name
    /// "Go"), as `go tool buildid` prints it.
    pub(crate) fn go_build_id(&self) -> Option<String> {
        let section = self.section(".note.go.buildid")?;
        let bytes = self.section_bytes(section)?;
        parse_go_buildid_note(bytes)
    }

    /// The file contents of a section (`None` for `SHT_NOBITS`).
    pub(crate) fn section_bytes(&self, section: &Section) -> Option<&[u8]> {
        let start = usize::try_from(section.file_offset?).ok()?;
        let len = usize::try_from(section.size).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }
}

/// Reads a Go build-ID note: `namesz=4 descsz type=4 "Go\0\0" desc`.
fn parse_go_buildid_note(bytes: &[u8]) -> Option<String> {
    const NOTE_GO_BUILD_ID: u32 = 4;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let (namesz, descsz, kind) = (word(0)? as usize, word(4)? as usize, word(8)?);
    let name = bytes.get(12..12 + namesz)?;
    if kind != NOTE_GO_BUILD_ID || !name.starts_with(b"Go\0") {
        return None;
    }
    let desc_at = 12 + namesz.next_multiple_of(4);
    let desc = bytes.get(desc_at..desc_at + descsz)?;
    String::from_utf8(desc.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_offset_goes_through_load_segments() {
        let segs = [
            LoadSegment {
                vaddr: 0x400000,
                mem_size: 0x2000,
                file_offset: 0,
                file_size: 0x2000,
                executable: true,
                writable: false,
            },
            LoadSegment {
                vaddr: 0x603000,
                mem_size: 0x3000,
                file_offset: 0x2000,
                file_size: 0x1000,
                executable: false,
                writable: true,
            },
        ];
        assert_eq!(vaddr_to_file_offset(&segs, 0x401234), Some(0x1234));
        assert_eq!(vaddr_to_file_offset(&segs, 0x603010), Some(0x2010));
        // .bss: mapped, but not from the file.
        assert_eq!(vaddr_to_file_offset(&segs, 0x604010), None);
        assert_eq!(vaddr_to_file_offset(&segs, 0x10), None);
        let data = vec![7u8; 0x3000];
        assert!(read_vaddr(&segs, &data, 0x603ff8, 8).is_some());
        assert!(read_vaddr(&segs, &data, 0x603ffc, 8).is_none());
    }

    #[test]
    fn go_buildid_note_decodes() {
        let id = b"abc/def";
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&(id.len() as u32).to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(b"Go\0\0");
        note.extend_from_slice(id);
        assert_eq!(parse_go_buildid_note(&note).as_deref(), Some("abc/def"));
        note[8] = 3;
        assert_eq!(parse_go_buildid_note(&note), None);
    }
}
