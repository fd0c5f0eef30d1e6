//! Function names for code addresses of any process: the executable and
//! its shared libraries, from their ELF symbol tables (`.symtab`, and
//! `.dynsym` for stripped libraries), read with the `object` crate.
//!
//! An address is mapped through `/proc/PID/maps` to a file and a file
//! offset, the offset through the file's loadable segments to the address
//! the file was linked at, and that to the nearest function symbol at or
//! below it. Each file is parsed once. Where the file has DWARF, its own or
//! in a separate debug file ([`super::dwarf`]), that address gives the
//! frames inlined there with their source lines instead.

use std::{
    collections::HashMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

use super::dwarf::{Dwarf, SourceFrame};
use crate::{
    frame::Frame,
    process::maps::{self, Mapping},
    symbolize::SymbolSource,
};

/// The function symbols and loadable segments of one ELF file.
#[derive(Debug, Default)]
pub(crate) struct ElfSymbols {
    /// (address, size, name), sorted by address.
    functions: Vec<(u64, u64, String)>,
    /// (file offset, file size, address) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
}

impl ElfSymbols {
    /// Reads the symbol tables of the ELF file at `path`.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Self::of(&fs::read(path)?)
    }

    /// Reads the symbol tables of the ELF file `data`.
    pub(crate) fn of(data: &[u8]) -> io::Result<Self> {
        let file =
            object::File::parse(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut functions: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .filter(|(_, _, name)| !name.is_empty())
            .collect();
        // Sorted by address, and at each address the symbol with a size
        // first (an alias without one says less).
        functions.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        functions.dedup_by_key(|f| f.0);
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        Ok(Self {
            functions,
            segments,
        })
    }

    /// The link-time address of byte `offset` of the file.
    pub(crate) fn address_of_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(off, size, _)| offset.checked_sub(*off).is_some_and(|into| into < *size))
            .map(|(off, _, addr)| addr.wrapping_add(offset - off))
    }

    /// Whether a function starts exactly at link-time address `addr`.
    pub(crate) fn starts_function(&self, addr: u64) -> bool {
        self.functions.binary_search_by_key(&addr, |f| f.0).is_ok()
    }

    /// The function containing link-time address `addr`.
    pub(crate) fn function_at(&self, addr: u64) -> Option<&str> {
        let i = self.functions.partition_point(|f| f.0 <= addr);
        let (start, size, name) = self.functions.get(i.checked_sub(1)?)?;
        // A symbol without a size (hand-written assembly) covers up to the
        // next one.
        (*size == 0 || addr - start < *size).then_some(name.as_str())
    }
}

/// One executable, file-backed line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CodeMapping {
    start: u64,
    end: u64,
    offset: u64,
    inode: u64,
    path: String,
}

impl CodeMapping {
    /// Where the mapped file can be opened from the host, best first: the
    /// kernel's own handle on the mapping (`map_files`, root only), the
    /// path in the process's own root (a container sees its own
    /// filesystem), the path on the host.
    fn candidates(&self, pid: u32) -> [String; 3] {
        [
            format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end),
            format!("/proc/{pid}/root{}", self.path),
            self.path.clone(),
        ]
    }
}

/// The executable, file-backed ones of a process's mappings.
fn code_mappings(maps: Vec<Mapping>) -> Vec<CodeMapping> {
    maps.into_iter()
        .filter(|m| m.executable && m.inode != 0 && m.path.starts_with('/'))
        .map(|m| CodeMapping {
            start: m.start,
            end: m.end,
            offset: m.offset,
            inode: m.inode,
            path: m.path,
        })
        .collect()
}

/// One mapped file: its symbol tables, and its DWARF if it has any.
pub(crate) struct MappedObject {
    symbols: ElfSymbols,
    dwarf: Option<Dwarf>,
}

/// The code of one running process, by address.
pub(crate) struct ProcessSymbols {
    pid: u32,
    code: Vec<CodeMapping>,
    /// Parsed files by path (`None`: unreadable or not ELF).
    files: HashMap<String, Option<MappedObject>>,
    /// Where separate debug files are looked for.
    debug_dirs: Vec<PathBuf>,
}

impl ProcessSymbols {
    /// Reads the code mappings of process `pid` and opens every object
    /// mapped now, before stacks arrive (reading an object's symbol and
    /// DWARF tables takes a while: in a burst of samples, the ring would
    /// drop some); separate debug files are looked for under `dirs`.
    pub(crate) fn with_debug_dirs(pid: u32, dirs: &[PathBuf]) -> io::Result<Self> {
        let mut s = Self {
            pid,
            code: Vec::new(),
            files: HashMap::new(),
            debug_dirs: dirs.to_vec(),
        };
        s.refresh()?;
        let starts: Vec<u64> = s.code.iter().map(|m| m.start).collect();
        for start in starts {
            s.file_at(start);
        }
        Ok(s)
    }

    /// Re-reads the mappings (after the process loaded a library).
    pub(crate) fn refresh(&mut self) -> io::Result<()> {
        self.code = code_mappings(maps::of(self.pid)?);
        Ok(())
    }

    /// Whether `addr` is in the process's code.
    pub(crate) fn is_code(&self, addr: u64) -> bool {
        self.mapping(addr).is_some()
    }

    fn mapping(&self, addr: u64) -> Option<&CodeMapping> {
        self.code.iter().find(|m| (m.start..m.end).contains(&addr))
    }

    /// The file mapped at `addr`, and the offset of `addr` in that file.
    fn file_at(&mut self, addr: u64) -> Option<(CodeMapping, u64, Option<&MappedObject>)> {
        let m = self.mapping(addr)?.clone();
        let (pid, dirs) = (self.pid, &self.debug_dirs);
        let offset = addr - m.start + m.offset;
        let object = self
            .files
            .entry(m.path.clone())
            .or_insert_with(|| {
                // The process may see another filesystem than leak: a file
                // counts only if it is the one mapped (its inode).
                let path = m
                    .candidates(pid)
                    .into_iter()
                    .find(|path| fs::metadata(path).is_ok_and(|md| md.ino() == m.inode))?;
                Some(MappedObject {
                    symbols: ElfSymbols::open(Path::new(&path)).ok()?,
                    dwarf: Dwarf::find(
                        Path::new(&path),
                        Path::new(&m.path),
                        Path::new(&format!("/proc/{pid}/root")),
                        dirs,
                    ),
                })
            })
            .as_ref();
        Some((m, offset, object))
    }

    /// Whether a function of the process starts exactly at `addr`: a
    /// function pointer, or the address after a call that never returns,
    /// never the return address of a live frame.
    pub(crate) fn starts_function(&mut self, addr: u64) -> bool {
        self.file_at(addr)
            .and_then(|(_, offset, object)| {
                let elf = &object?.symbols;
                Some(elf.starts_function(elf.address_of_offset(offset)?))
            })
            .unwrap_or(false)
    }

    /// The frames at `addr`, innermost first: from the DWARF, the functions
    /// inlined there with their source lines; without DWARF, one frame
    /// named by the symbol tables, its file the object's path.
    pub(crate) fn frames(&mut self, addr: u64) -> Option<Vec<Frame>> {
        let (m, offset, object) = self.file_at(addr)?;
        let symbol = symbol_name(&m, offset, object.map(|o| &o.symbols));
        let path: Arc<str> = m.path.into();
        let in_dwarf = object.and_then(|o| {
            let at = o.symbols.address_of_offset(offset)?;
            Some(o.dwarf.as_ref()?.frames(at))
        });
        Some(match in_dwarf {
            Some(chain) if !chain.is_empty() => source_frames(chain, &symbol, &path),
            _ => vec![Frame::in_object(symbol, path.clone(), 0, false, path)],
        })
    }
}

/// The name of the function at `offset` of mapping `m` by the symbol
/// tables `elf`, demangled; else `FILE+0xOFFSET`.
fn symbol_name(m: &CodeMapping, offset: u64, elf: Option<&ElfSymbols>) -> String {
    elf.and_then(|e| e.function_at(e.address_of_offset(offset)?))
        .map(demangle)
        .unwrap_or_else(|| {
            let file_name = m.path.rsplit('/').next().unwrap_or(&m.path);
            format!("{file_name}+0x{offset:x}")
        })
}

/// The frames of an inline `chain` (innermost first) in `object`: names
/// demangled, each but the last inlined; a frame the DWARF does not name
/// takes the symbol's name, one without a line the object's path.
fn source_frames(chain: Vec<SourceFrame>, symbol: &str, object: &Arc<str>) -> Vec<Frame> {
    let last = chain.len() - 1;
    chain
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let function = f
                .function
                .as_deref()
                .map_or_else(|| symbol.to_string(), demangle);
            let file: Arc<str> = match f.file {
                Some(file) if f.line != 0 => file.into(),
                _ => object.clone(),
            };
            Frame::in_object(function, file, f.line, i < last, object.clone())
        })
        .collect()
}

impl SymbolSource for std::cell::RefCell<ProcessSymbols> {
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
        let mut s = self.borrow_mut();
        if s.mapping(pc).is_none() {
            // Perhaps a library loaded since the maps were read.
            s.refresh().ok()?;
        }
        s.frames(pc)
    }
}

/// A symbol as a person reads it: Rust's (legacy and v0 manglings, the
/// hash left out) and C++'s demangled, C's as it is.
pub(crate) fn demangle(symbol: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(symbol) {
        return format!("{d:#}");
    }
    if symbol.starts_with("_Z") {
        if let Ok(d) = cpp_demangle::Symbol::new(symbol).and_then(|s| {
            s.demangle()
                .map_err(|_| cpp_demangle::error::Error::UnexpectedEnd)
        }) {
            return d;
        }
    }
    symbol.to_string()
}

/// Whether the 8 bytes before a return address end in an x86-64 call
/// instruction: `call rel32` (E8, 5 bytes) or an indirect `call` (FF /2,
/// 2 to 7 bytes). Tells a return address on the stack from a stray code
/// pointer, mostly.
pub(crate) fn follows_call(before: [u8; 8]) -> bool {
    if before[3] == 0xe8 {
        return true;
    }
    // FF with ModRM.reg = 2, the ModRM byte being the second of the
    // instruction, for each length an indirect call can have.
    (2..=7).any(|len| {
        let at = 8 - len;
        before[at] == 0xff && (before[at + 1] >> 3) & 7 == 2
    })
}

#[cfg(test)]
mod bounds_tests {
    use super::ElfSymbols;

    /// A hostile file's segment or symbol at the top of the address space
    /// is looked through without an overflow.
    #[test]
    fn sizes_at_the_top_of_the_address_space() {
        let s = ElfSymbols {
            functions: vec![(u64::MAX - 4, 64, "top".into())],
            segments: vec![(u64::MAX - 8, 64, u64::MAX - 2)],
        };
        assert_eq!(s.address_of_offset(u64::MAX - 1), Some(4));
        assert_eq!(s.function_at(u64::MAX), Some("top"));
        assert_eq!(s.address_of_offset(3), None);
    }
}

#[cfg(test)]
mod demangle_tests {
    use super::demangle;

    #[test]
    fn names_read_as_written() {
        assert_eq!(
            demangle("_ZN3app7Session8rememberEm"),
            "app::Session::remember(unsigned long)"
        );
        assert_eq!(demangle("_Znwm"), "operator new(unsigned long)");
        // From this very binary: a legacy and a v0 Rust symbol.
        assert_eq!(
            demangle("_ZN100_$LT$$RF$mut$u20$serde_json..ser..Serializer$LT$W$C$F$GT$$u20$as$u20$serde_core..ser..Serializer$GT$13serialize_i6417h581dcba759804f99E"),
            "<&mut serde_json::ser::Serializer<W,F> as serde_core::ser::Serializer>::serialize_i64"
        );
        assert_eq!(
            demangle("_RINvMNtCsgEmfK2I1SDS_4core3stre18trim_start_matchesReECsgY6Mt91CT9J_14rustc_demangle"),
            "<str>::trim_start_matches::<&str>"
        );
        assert_eq!(demangle("leak_request_buffer"), "leak_request_buffer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::testprog;

    #[test]
    fn parses_code_mappings_only() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234 /usr/bin/leaker
55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 1234 /usr/bin/leaker
55d0c0c00000-55d0c0c21000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]
";
        let code = code_mappings(maps::parse_maps(maps));
        assert_eq!(
            code,
            [CodeMapping {
                start: 0x55d0c0a01000,
                end: 0x55d0c0a02000,
                offset: 0x1000,
                inode: 1234,
                path: "/usr/bin/leaker".into()
            }]
        );
        assert_eq!(
            code[0].candidates(7),
            [
                "/proc/7/map_files/55d0c0a01000-55d0c0a02000",
                "/proc/7/root/usr/bin/leaker",
                "/usr/bin/leaker"
            ]
        );
    }

    #[test]
    fn recognises_calls_before_return_addresses() {
        // call rel32
        assert!(follows_call([0, 0, 0, 0xe8, 1, 2, 3, 4]));
        // call *%rax (ff d0)
        assert!(follows_call([0, 0, 0, 0, 0, 0, 0xff, 0xd0]));
        // call *0x10(%rip) (ff 15 disp32)
        assert!(follows_call([0, 0, 0xff, 0x15, 1, 2, 3, 4]));
        // jmp *%rax (ff e0) and plain data
        assert!(!follows_call([0, 0, 0, 0, 0, 0, 0xff, 0xe0]));
        assert!(!follows_call([0x90; 8]));
    }

    /// Symbolizes a function of a C program built here (no DWARF), in the
    /// running process.
    #[test]
    fn names_a_function_of_a_running_c_program() {
        let dir = testprog::scratch("elfsym");
        let source = r#"#include <stdio.h>
__attribute__((noinline)) int grow_the_heap(int n) { return n * 3 + 1; }
int main(void) {
    printf("%p\n", (void *)grow_the_heap);
    fflush(stdout);
    getchar();
    return grow_the_heap(1) == 4 ? 0 : 1;
}
"#;
        let Some(bin) = testprog::build(&dir, source, &["-O1"]) else {
            return;
        };
        let prog = testprog::Running::start(&bin);
        let mut syms = ProcessSymbols::with_debug_dirs(prog.pid(), &[]).unwrap();
        let frames = syms
            .frames(prog.addr + 2)
            .expect("address not in the program's code");
        let starts = syms.starts_function(prog.addr) && !syms.starts_function(prog.addr + 2);
        drop(prog);
        let _ = fs::remove_dir_all(&dir);
        assert!(starts, "grow_the_heap's entry not recognised");
        assert_eq!(frames.len(), 1);
        assert_eq!(&*frames[0].function, "grow_the_heap");
        assert!(frames[0].file.ends_with("/prog"), "{:?}", frames[0]);
        assert_eq!((frames[0].line, &frames[0].object), (0, &frames[0].file));
    }
}
