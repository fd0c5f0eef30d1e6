//! A reader for Go's `.gopclntab`: function names, entry points, file:line
//! and the inline tree, for stripped binaries too.
//!
//! Layouts follow the Go sources: `runtime/symtab.go` (`pcHeader`,
//! `moduledata`, `pcvalue`), `runtime/runtime2.go` (`_func`),
//! `runtime/symtabinl.go` (`inlinedCall`, `inlineUnwinder`),
//! `internal/abi/symtab.go` (magics, `PCDATA_*`/`FUNCDATA_*`) and
//! `debug/gosym/pclntab.go`. Two table formats are read: magic `0xfffffff0`
//! (Go 1.18–1.19) and `0xfffffff1` (Go 1.20 and later); older ones are
//! rejected.
//!
//! The table is decoded in place from the file bytes; only the header is
//! parsed up front, so opening is cheap and [`Pclntab::find_func`] is a
//! binary search.

use std::{
    collections::HashMap,
    fmt,
    path::Path,
    sync::{Arc, OnceLock},
};

mod header;
mod lines;
pub(crate) mod names;
#[cfg(test)]
mod tests;

use super::{
    error::GoError,
    image::{read_u64_at, read_vaddr, ElfLayout, LoadSegment},
    table,
    version::GoVersion,
};
use header::{find_header, find_moduledata, moduledata_gofunc, Header};

/// `abi.Go118PCLnTabMagic`: Go 1.18 and 1.19.
const MAGIC_GO118: u32 = 0xffff_fff0;
/// `abi.Go120PCLnTabMagic`: Go 1.20 and later.
const MAGIC_GO120: u32 = 0xffff_fff1;
/// Magics of older tables, recognised only to say what leak lacks for
/// them: the release range, and what is missing.
const MAGIC_OLD: [(u32, &str, &str); 2] = [
    (
        0xffff_fffa,
        "go1.16 or go1.17",
        "leak reads only the .gopclntab format of go1.18 and later (magic 0xfffffff0/0xfffffff1, this one is 0xfffffffa)",
    ),
    (
        0xffff_fffb,
        "a Go release from go1.2 to go1.15",
        "it passes arguments on the stack (the register ABI leak's probes read came in go1.17) and its .gopclntab format (magic 0xfffffffb) is not read by leak",
    ),
];

/// `abi.PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `abi.FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: u32 = 3;

/// Size of the pcHeader: 8 bytes then 8 pointer-sized words.
const HEADER_SIZE: usize = 8 + 8 * 8;

/// Which pclntab format the binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PclntabFormat {
    /// Magic `0xfffffff0`: Go 1.18 and 1.19 (no `_func.startLine`, old
    /// `inlinedCall`).
    Go118,
    /// Magic `0xfffffff1`: Go 1.20 and later.
    Go120,
}

impl PclntabFormat {
    /// The releases that write this format: `[from, before)`.
    pub(crate) fn versions(self) -> (GoVersion, Option<GoVersion>) {
        match self {
            Self::Go118 => (GoVersion::new(1, 18, 0), Some(GoVersion::new(1, 20, 0))),
            Self::Go120 => (GoVersion::new(1, 20, 0), None),
        }
    }

    /// The `moduledata` layouts of the runtime-table rows this format's
    /// releases can have, oldest first.
    fn moduledata_layouts(self) -> impl Iterator<Item = &'static table::ModuledataLayout> {
        let (from, before) = self.versions();
        table::moduledata_layouts(from, before)
    }

    /// Size of the fixed part of `_func`, before its `pcdata` array.
    fn func_header_size(self) -> usize {
        match self {
            Self::Go118 => 40,
            Self::Go120 => 44, // + startLine
        }
    }

    /// Size of one `inlinedCall`, and the offsets of its name and parentPc.
    fn inlined_call(self) -> (u64, u64, u64) {
        match self {
            // parent i16, funcID, _, file i32, line i32, func_ i32, parentPc i32
            Self::Go118 => (20, 12, 16),
            // funcID, _ [3]byte, nameOff i32, parentPc i32, startLine i32
            Self::Go120 => (16, 4, 8),
        }
    }

    /// Offset of `funcID` in an `inlinedCall`.
    fn inlined_call_func_id(self) -> u64 {
        match self {
            Self::Go118 => 2,
            Self::Go120 => 0,
        }
    }
}

/// Where the text base (`pcHeader.textStart` / `moduledata.text`) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextStartSource {
    /// `pcHeader.textStart` (Go ≤1.25).
    Header,
    /// `runtime.firstmoduledata.text` (Go ≥1.26 stores 0 in the header).
    Moduledata,
    /// The `runtime.text` symbol.
    Symbol,
    /// The `.text` section address (last resort; wrong for some
    /// externally linked binaries).
    TextSection,
}

/// A function from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FuncInfo<'a> {
    /// Go's full name, e.g. `main.(*RequestTracker).Track`.
    pub name: &'a str,
    /// Link-time address of the first instruction.
    pub entry: u64,
    /// One past the last byte (the next function's entry).
    pub end: u64,
    /// Line of the `func` keyword (0 for Go 1.18/1.19 tables).
    pub start_line: u32,
    index: usize,
}

/// One source-level frame of a PC, as `runtime.CallersFrames` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Function name as the runtime prints it (see [`print_name`]); for an
    /// inlined frame, the inlined callee.
    pub function: String,
    /// Source file (absolute path at build time, or `?`).
    pub file: String,
    /// Line (0 if unknown).
    pub line: u32,
    /// The function was inlined into its caller (the next frame).
    pub inlined: bool,
    /// Compiler-generated wrapper (`go` statement thunks, method value and
    /// pointer-receiver wrappers): Go's tracebacks and profiles hide these.
    pub wrapper: bool,
}

/// Decoded header of a `.gopclntab`, plus what is needed to resolve
/// function data outside it.
pub(crate) struct Pclntab {
    data: Arc<[u8]>,
    /// File offset of the pcHeader, and bytes available from there.
    base: usize,
    table_len: usize,
    header_vaddr: u64,
    format: PclntabFormat,
    min_lc: u8,
    nfunc: usize,
    text_start: u64,
    text_start_source: TextStartSource,
    /// Offsets of the sub-tables, relative to the pcHeader.
    funcname_off: usize,
    cu_off: usize,
    filetab_off: usize,
    pctab_off: usize,
    pcln_off: usize,
    #[cfg(test)]
    moduledata: Option<u64>,
    /// `moduledata.gofunc`: base of `_func.funcdata` offsets (inline trees).
    gofunc: Option<u64>,
    segments: Vec<LoadSegment>,
    by_name: OnceLock<HashMap<String, usize>>,
    wrapper_func_id: OnceLock<Option<u8>>,
}

impl fmt::Debug for Pclntab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pclntab")
            .field("header_vaddr", &format_args!("{:#x}", self.header_vaddr))
            .field("format", &self.format)
            .field("nfunc", &self.nfunc)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("gofunc", &self.gofunc)
            .finish_non_exhaustive()
    }
}

/// The fields of `_func` leak reads.
struct RawFunc {
    /// Offset of the `_func` from the pcHeader.
    at: usize,
    entry: u64,
    name_off: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    cu_offset: u32,
    start_line: u32,
    func_id: u8,
    nfuncdata: u8,
}

impl Pclntab {
    /// Finds and decodes the table in an ELF file whose headers are parsed.
    pub(super) fn locate(
        path: &Path,
        data: &Arc<[u8]>,
        layout: &ElfLayout,
    ) -> Result<Self, GoError> {
        let (vaddr, base, len) =
            find_header(data, layout).ok_or_else(|| GoError::NotGo(path.to_path_buf()))?;
        Self::parse(path, data, layout, vaddr, base, len)
    }

    fn parse(
        path: &Path,
        data: &Arc<[u8]>,
        layout: &ElfLayout,
        header_vaddr: u64,
        base: usize,
        len: usize,
    ) -> Result<Self, GoError> {
        let malformed = |reason: String| GoError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let tab = &data[base..base + len];
        let magic = le_u32(tab, 0).ok_or_else(|| malformed("truncated header".into()))?;
        if let Some(&(_, version, missing)) = MAGIC_OLD.iter().find(|o| o.0 == magic) {
            return Err(GoError::UnsupportedGoVersion {
                version: version.into(),
                missing: missing.into(),
                supported: table::SUPPORTED,
            });
        }
        let format = match magic {
            MAGIC_GO118 => PclntabFormat::Go118,
            MAGIC_GO120 => PclntabFormat::Go120,
            m => return Err(malformed(format!("unknown magic {m:#x}"))),
        };
        let header = Header::read(tab).ok_or_else(|| malformed("bad header".into()))?;
        if header.ptr_size != 8 {
            return Err(malformed(format!("pointer size {}", header.ptr_size)));
        }
        let off = |v: u64| usize::try_from(v).ok().filter(|&o| o < len);
        let (Some(funcname_off), Some(cu_off), Some(filetab_off), Some(pctab_off), Some(pcln_off)) = (
            off(header.funcname),
            off(header.cu),
            off(header.filetab),
            off(header.pctab),
            off(header.pcln),
        ) else {
            return Err(malformed("table offset past its end".into()));
        };
        let nfunc = usize::try_from(header.nfunc).unwrap_or(usize::MAX);
        // functab: nfunc (entryoff, funcoff) pairs and a closing entryoff.
        if nfunc == 0 || nfunc > len / 8 || pcln_off + nfunc * 8 + 4 > len {
            return Err(malformed(format!("{nfunc} functions do not fit")));
        }

        let moduledata = find_moduledata(data, layout, format, header_vaddr, header.funcname);
        let md_word = |at: u64| {
            moduledata.and_then(|md| read_u64_at(&layout.segments, data, md.checked_add(at)?))
        };
        let (text_start, text_start_source) = if header.text_start != 0 {
            (header.text_start, TextStartSource::Header)
        } else if let Some(text) = format
            .moduledata_layouts()
            .find_map(|l| md_word(l.text).filter(|&t| t != 0))
        {
            (text, TextStartSource::Moduledata)
        } else if let Some(text) = layout.text_symbol {
            (text, TextStartSource::Symbol)
        } else if let Some(text) = layout.sections.iter().find(|s| s.name == ".text") {
            (text.vaddr, TextStartSource::TextSection)
        } else {
            return Err(malformed(
                "no text base: textStart is 0 and no moduledata".into(),
            ));
        };
        let gofunc = moduledata
            .and_then(|md| moduledata_gofunc(data, layout, format, md))
            .or(layout.gofunc_symbol);

        let table = Self {
            data: Arc::clone(data),
            base,
            table_len: len,
            header_vaddr,
            format,
            min_lc: header.min_lc,
            nfunc,
            text_start,
            text_start_source,
            funcname_off,
            cu_off,
            filetab_off,
            pctab_off,
            pcln_off,
            #[cfg(test)]
            moduledata,
            gofunc,
            segments: layout.segments.clone(),
            by_name: OnceLock::new(),
            wrapper_func_id: OnceLock::new(),
        };
        // A wrong text base shows at once: entries outside executable code.
        let first = table.functab_entry(0).unwrap_or(0);
        let last = table.functab_entry(nfunc).unwrap_or(0);
        let in_exec = |pc: u64| {
            layout
                .segments
                .iter()
                .any(|s| s.executable && pc >= s.vaddr && pc - s.vaddr <= s.mem_size)
        };
        if !in_exec(first) || !in_exec(last) || first > last {
            return Err(malformed(format!(
                "functions at {first:#x}..{last:#x} are not in executable code"
            )));
        }
        Ok(table)
    }

    /// Number of functions.
    pub(crate) fn len(&self) -> usize {
        self.nfunc
    }

    /// The table format (magic).
    pub(crate) fn format(&self) -> PclntabFormat {
        self.format
    }

    /// Link-time address of the pcHeader.
    #[cfg(test)]
    pub(crate) fn header_vaddr(&self) -> u64 {
        self.header_vaddr
    }

    /// The text base function entries are relative to.
    #[cfg(test)]
    pub(crate) fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Where [`Pclntab::text_start`] came from.
    pub(crate) fn text_start_source(&self) -> TextStartSource {
        self.text_start_source
    }

    /// Link-time address of `runtime.firstmoduledata`, if found.
    #[cfg(test)]
    pub(crate) fn moduledata_vaddr(&self) -> Option<u64> {
        self.moduledata
    }

    /// `moduledata.gofunc` (the `go:func.*` symbol), base of inline trees.
    #[cfg(test)]
    pub(crate) fn gofunc(&self) -> Option<u64> {
        self.gofunc
    }

    /// All functions, in address order.
    pub(crate) fn functions(&self) -> impl Iterator<Item = FuncInfo<'_>> + '_ {
        (0..self.nfunc).filter_map(|i| self.func_at(i))
    }

    /// The function named exactly `name` (Go's full name).
    pub(crate) fn func_by_name(&self, name: &str) -> Option<FuncInfo<'_>> {
        let index = *self
            .by_name
            .get_or_init(|| {
                let mut map = HashMap::with_capacity(self.nfunc);
                for f in self.functions() {
                    // Keep the first of duplicate names (rare: asm aliases).
                    map.entry(f.name.to_owned()).or_insert(f.index);
                }
                map
            })
            .get(name)?;
        self.func_at(index)
    }

    /// The function whose code contains `pc` (a link-time address).
    pub(crate) fn find_func(&self, pc: u64) -> Option<FuncInfo<'_>> {
        let first = self.functab_entry(0)?;
        let end = self.functab_entry(self.nfunc)?;
        if pc < first || pc >= end {
            return None;
        }
        // First index whose entry is > pc, minus one.
        let mut lo = 0;
        let mut hi = self.nfunc;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.functab_entry(mid)? <= pc {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.func_at(lo.checked_sub(1)?)
    }

    /// The function index `i`, with its name and bounds.
    fn func_at(&self, i: usize) -> Option<FuncInfo<'_>> {
        let raw = self.raw_func(i)?;
        Some(FuncInfo {
            name: self.func_name(raw.name_off)?,
            entry: raw.entry,
            end: self.functab_entry(i + 1)?,
            start_line: raw.start_line,
            index: i,
        })
    }

    /// `text_start + functab[i].entryoff`; `i == nfunc` is the end sentinel.
    fn functab_entry(&self, i: usize) -> Option<u64> {
        let off = self.le_u32(self.pcln_off + i * 8)?;
        self.text_start.checked_add(u64::from(off))
    }

    fn raw_func(&self, i: usize) -> Option<RawFunc> {
        if i >= self.nfunc {
            return None;
        }
        let funcoff = self.le_u32(self.pcln_off + i * 8 + 4)? as usize;
        let at = self.pcln_off + funcoff;
        let field = |n: usize| self.le_u32(at + 4 * n);
        let (start_line, nfuncdata_at) = match self.format {
            PclntabFormat::Go118 => (0, at + 39),
            PclntabFormat::Go120 => (field(9)?, at + 43),
        };
        Some(RawFunc {
            at,
            entry: self.text_start.checked_add(u64::from(field(0)?))?,
            name_off: field(1)?,
            pcfile: field(5)?,
            pcln: field(6)?,
            npcdata: field(7)?,
            cu_offset: field(8)?,
            start_line,
            // funcID, flag, pad, nfuncdata end the fixed part.
            func_id: *self.tab().get(nfuncdata_at - 3)?,
            nfuncdata: *self.tab().get(nfuncdata_at)?,
        })
    }

    fn func_name(&self, name_off: u32) -> Option<&str> {
        self.c_string(self.funcname_off + name_off as usize)
    }

    /// The NUL-terminated string at `at` (relative to the pcHeader).
    fn c_string(&self, at: usize) -> Option<&str> {
        let bytes = self.tab().get(at..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }

    fn tab(&self) -> &[u8] {
        &self.data[self.base..self.base + self.table_len]
    }

    fn le_u32(&self, at: usize) -> Option<u32> {
        le_u32(self.tab(), at)
    }

    /// A `u32` anywhere in the image (inline trees live in `go:func.*`).
    fn read_u32_vaddr(&self, vaddr: u64) -> Option<u32> {
        let b = read_vaddr(&self.segments, &self.data, vaddr, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
}

fn le_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        buf.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}
