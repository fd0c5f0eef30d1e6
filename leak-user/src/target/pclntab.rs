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

use super::elf::{read_u64_at, read_vaddr, ElfLayout, LoadSegment, Section, TargetError};

/// `abi.Go118PCLnTabMagic`: Go 1.18 and 1.19.
const MAGIC_GO118: u32 = 0xffff_fff0;
/// `abi.Go120PCLnTabMagic`: Go 1.20 and later.
const MAGIC_GO120: u32 = 0xffff_fff1;
/// Magics of Go 1.2–1.17, recognised only to say the binary is too old.
const MAGIC_OLD: [u32; 2] = [0xffff_fffb, 0xffff_fffa];

/// `abi.PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `abi.FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: u32 = 3;

/// Size of the pcHeader: 8 bytes then 8 pointer-sized words.
const HEADER_SIZE: usize = 8 + 8 * 8;

/// Byte offset of `moduledata.text` (after `pcHeader *`, six slices and
/// `findfunctab, minpc, maxpc`): the same in the 1.21, 1.25 and 1.27 trees.
const MODULEDATA_TEXT: u64 = 176;
/// `moduledata.{rodata, gofunc}` offsets, Go 1.18–1.26 (`types, etypes,
/// rodata, gofunc`; 1.26 appends `epclntab` after `gofunc`).
const MODULEDATA_GOFUNC_UNTIL_126: (u64, u64) = (312, 320);
/// `moduledata.{rodata, gofunc}` offsets, Go 1.27 (`types, typedesclen,
/// etypes, itaboffset, itabsize, rodata, gofunc, epclntab`).
const MODULEDATA_GOFUNC_FROM_127: (u64, u64) = (336, 344);

/// Which pclntab format the binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclntabFormat {
    /// Magic `0xfffffff0`: Go 1.18 and 1.19 (no `_func.startLine`, old
    /// `inlinedCall`).
    Go118,
    /// Magic `0xfffffff1`: Go 1.20 and later.
    Go120,
}

impl PclntabFormat {
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
pub enum TextStartSource {
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
pub struct FuncInfo<'a> {
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
pub struct Frame {
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
pub struct Pclntab {
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
    ) -> Result<Self, TargetError> {
        let (vaddr, base, len) =
            find_header(data, layout).ok_or_else(|| TargetError::NotGo(path.to_path_buf()))?;
        Self::parse(path, data, layout, vaddr, base, len)
    }

    fn parse(
        path: &Path,
        data: &Arc<[u8]>,
        layout: &ElfLayout,
        header_vaddr: u64,
        base: usize,
        len: usize,
    ) -> Result<Self, TargetError> {
        let malformed = |reason: String| TargetError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let tab = &data[base..base + len];
        let magic = le_u32(tab, 0).ok_or_else(|| malformed("truncated header".into()))?;
        let format = match magic {
            MAGIC_GO118 => PclntabFormat::Go118,
            MAGIC_GO120 => PclntabFormat::Go120,
            m if MAGIC_OLD.contains(&m) => {
                return Err(TargetError::UnsupportedGoVersion {
                    version: "a Go release older than go1.18".into(),
                    supported: super::runtime_table::SUPPORTED,
                })
            }
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

        let moduledata = find_moduledata(data, layout, header_vaddr, header.funcname);
        let md_word =
            |at: u64| moduledata.and_then(|md| read_u64_at(&layout.segments, data, md + at));
        let (text_start, text_start_source) = if header.text_start != 0 {
            (header.text_start, TextStartSource::Header)
        } else if let Some(text) = md_word(MODULEDATA_TEXT).filter(|&t| t != 0) {
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
        // The moduledata layouts are checked for 1.21–1.27 only: for older
        // tables trust the symbol first.
        let from_moduledata = || moduledata.and_then(|md| moduledata_gofunc(data, layout, md));
        let gofunc = match format {
            PclntabFormat::Go120 => from_moduledata().or(layout.gofunc_symbol),
            PclntabFormat::Go118 => layout.gofunc_symbol.or_else(from_moduledata),
        };

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
                .any(|s| s.executable && pc >= s.vaddr && pc <= s.vaddr + s.mem_size)
        };
        if !in_exec(first) || !in_exec(last) || first > last {
            return Err(malformed(format!(
                "functions at {first:#x}..{last:#x} are not in executable code"
            )));
        }
        Ok(table)
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    /// Whether the table lists no function (never true for a parsed table).
    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The table format (magic).
    pub fn format(&self) -> PclntabFormat {
        self.format
    }

    /// Link-time address of the pcHeader.
    pub fn header_vaddr(&self) -> u64 {
        self.header_vaddr
    }

    /// The text base function entries are relative to.
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Where [`Pclntab::text_start`] came from.
    pub fn text_start_source(&self) -> TextStartSource {
        self.text_start_source
    }

    /// Link-time address of `runtime.firstmoduledata`, if found.
    pub fn moduledata_vaddr(&self) -> Option<u64> {
        self.moduledata
    }

    /// `moduledata.gofunc` (the `go:func.*` symbol), base of inline trees.
    pub fn gofunc(&self) -> Option<u64> {
        self.gofunc
    }

    /// All functions, in address order.
    pub fn functions(&self) -> impl Iterator<Item = FuncInfo<'_>> + '_ {
        (0..self.nfunc).filter_map(|i| self.func_at(i))
    }

    /// The function named exactly `name` (Go's full name).
    pub fn func_by_name(&self, name: &str) -> Option<FuncInfo<'_>> {
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
    pub fn find_func(&self, pc: u64) -> Option<FuncInfo<'_>> {
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

    /// Source frames of `pc`, innermost first: the inlined calls that
    /// contain it (`inlined: true`), then the real function, each with its
    /// file:line — what `runtime.CallersFrames` and pprof show.
    ///
    /// For a return address, pass `ret - 1` so the call's line is used.
    /// Empty if `pc` is outside Go's code. Without `moduledata.gofunc`
    /// (not found), inlined calls are not expanded.
    pub fn frames(&self, pc: u64) -> Vec<Frame> {
        let Some(info) = self.find_func(pc) else {
            return Vec::new();
        };
        let Some(raw) = self.raw_func(info.index) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        let mut pc = pc;
        if let (Some(inl_table), Some(tree)) = (
            self.pcdata_offset(&raw, PCDATA_INL_TREE_INDEX),
            self.funcdata_vaddr(&raw, FUNCDATA_INL_TREE),
        ) {
            let (size, name_at, parent_pc_at) = self.format.inlined_call();
            // Each step moves to the call site in the caller; the depth
            // bound only guards against a corrupt table.
            for _ in 0..256 {
                let Some(index) = self.pcvalue(inl_table, raw.entry, pc) else {
                    break;
                };
                let Ok(index) = u64::try_from(index) else {
                    break; // -1: pc is in the real function's own code
                };
                let call = tree + index * size;
                let (Some(name_off), Some(parent_pc)) = (
                    self.read_u32_vaddr(call + name_at),
                    self.read_u32_vaddr(call + parent_pc_at),
                ) else {
                    break;
                };
                let func_id = read_vaddr(
                    &self.segments,
                    &self.data,
                    call + self.format.inlined_call_func_id(),
                    1,
                )
                .map(|b| b[0]);
                let (file, line) = self.file_line(&raw, pc);
                frames.push(Frame {
                    function: print_name(self.func_name(name_off).unwrap_or("?")),
                    file,
                    line,
                    inlined: true,
                    wrapper: func_id.is_some() && func_id == self.wrapper_func_id(),
                });
                pc = raw.entry + u64::from(parent_pc);
            }
        }
        let (file, line) = self.file_line(&raw, pc);
        frames.push(Frame {
            function: print_name(info.name),
            file,
            line,
            inlined: false,
            wrapper: Some(raw.func_id) == self.wrapper_func_id(),
        });
        frames
    }

    /// The `funcID` Go gives compiler-generated wrappers (`abi.FuncIDWrapper`).
    /// It is the last of the enum, right after `FuncID_systemstack_switch`,
    /// whose function every binary has (checked in the 1.21, 1.25 and 1.27
    /// trees, where the value is 21, 23 and 23): read it rather than keep a
    /// per-version number.
    pub fn wrapper_func_id(&self) -> Option<u8> {
        *self.wrapper_func_id.get_or_init(|| {
            let f = self.func_by_name("runtime.systemstack_switch")?;
            let raw = self.raw_func(f.index)?;
            raw.func_id.checked_add(1)
        })
    }

    /// Up to `n` function names close to `name`, best first: for "no such
    /// function" messages. Matches ignoring `(*…)` receiver syntax and case,
    /// then by edit distance, then by substring.
    pub fn near_matches(&self, name: &str, n: usize) -> Vec<String> {
        let query = normalize(name);
        let limit = (query.chars().count() / 4).max(2);
        let mut scored: Vec<(usize, &str)> = self
            .functions()
            .filter_map(|f| {
                let candidate = normalize(f.name);
                if candidate == query {
                    return Some((0, f.name));
                }
                // Cheap length filter before the quadratic distance.
                let len_gap = candidate.len().abs_diff(query.len());
                if len_gap <= limit {
                    let d = edit_distance(&candidate, &query);
                    if d <= limit {
                        return Some((d, f.name));
                    }
                }
                (query.len() >= 4 && candidate.contains(&query))
                    .then_some((limit + 1 + len_gap, f.name))
            })
            .collect();
        scored.sort_unstable();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored
            .into_iter()
            .take(n)
            .map(|(_, s)| s.to_owned())
            .collect()
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
        Some(self.text_start + u64::from(off))
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
            entry: self.text_start + u64::from(field(0)?),
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

    /// Offset into pctab of pcdata table `index`, if the function has one.
    fn pcdata_offset(&self, raw: &RawFunc, index: u32) -> Option<u32> {
        if index >= raw.npcdata {
            return None;
        }
        let at = raw.at + self.format.func_header_size() + 4 * index as usize;
        self.le_u32(at).filter(|&off| off != 0)
    }

    /// Link-time address of funcdata `index` (relative to `gofunc`).
    fn funcdata_vaddr(&self, raw: &RawFunc, index: u32) -> Option<u64> {
        if index >= u32::from(raw.nfuncdata) {
            return None;
        }
        let at = raw.at + self.format.func_header_size() + 4 * (raw.npcdata + index) as usize;
        let off = self.le_u32(at).filter(|&off| off != u32::MAX)?;
        Some(self.gofunc? + u64::from(off))
    }

    /// file:line of `pc` in a function, `("?", 0)` if the tables lack it —
    /// as `runtime.funcline1` does.
    fn file_line(&self, raw: &RawFunc, pc: u64) -> (String, u32) {
        let unknown = || ("?".to_owned(), 0);
        let (Some(fileno), Some(line)) = (
            self.pcvalue(raw.pcfile, raw.entry, pc),
            self.pcvalue(raw.pcln, raw.entry, pc),
        ) else {
            return unknown();
        };
        let (Ok(fileno), Ok(line)) = (u32::try_from(fileno), u32::try_from(line)) else {
            return unknown();
        };
        let cu_index = self.cu_off + 4 * (raw.cu_offset as usize + fileno as usize);
        match self.le_u32(cu_index) {
            Some(u32::MAX) | None => unknown(),
            Some(file_off) => match self.c_string(self.filetab_off + file_off as usize) {
                Some(file) => (file.to_owned(), line),
                None => unknown(),
            },
        }
    }

    fn pcvalue(&self, table: u32, entry: u64, target: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let pctab = self.tab().get(self.pctab_off..)?;
        pcvalue(pctab, table, entry, target, self.min_lc)
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

/// The words of a pcHeader after magic/pad/minLC/ptrSize.
struct Header {
    min_lc: u8,
    ptr_size: u8,
    nfunc: u64,
    text_start: u64,
    funcname: u64,
    cu: u64,
    filetab: u64,
    pctab: u64,
    pcln: u64,
}

impl Header {
    fn read(tab: &[u8]) -> Option<Self> {
        let word = |i: usize| le_u64(tab, 8 + 8 * i);
        // pad1, pad2 are 0; minLC is the PC quantum (1 on x86).
        if tab.get(4..6)? != [0, 0] || !matches!(tab[6], 1 | 2 | 4) {
            return None;
        }
        Some(Self {
            min_lc: tab[6],
            ptr_size: tab[7],
            nfunc: word(0)?,
            // word(1) is nfiles, unused: files are reached through cutab.
            text_start: word(2)?,
            funcname: word(3)?,
            cu: word(4)?,
            filetab: word(5)?,
            pctab: word(6)?,
            pcln: word(7)?,
        })
    }

    /// A cheap plausibility test used when scanning memory for a header.
    fn plausible(tab: &[u8]) -> bool {
        let Some(magic) = le_u32(tab, 0) else {
            return false;
        };
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return false;
        }
        let Some(h) = Self::read(tab) else {
            return false;
        };
        let len = tab.len() as u64;
        let offsets = [h.funcname, h.cu, h.filetab, h.pctab, h.pcln];
        h.ptr_size == 8
            && h.nfunc > 0
            && offsets.iter().all(|&o| o >= HEADER_SIZE as u64 && o < len)
            // The linker lays the tables out in this order.
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && h.pcln + h.nfunc * 8 + 4 <= len
    }
}

/// Locates the pcHeader: `(vaddr, file offset, bytes available)`.
fn find_header(data: &[u8], layout: &ElfLayout) -> Option<(u64, usize, usize)> {
    let in_section = |s: &Section| -> Option<(u64, usize, usize)> {
        let off = usize::try_from(s.file_offset?).ok()?;
        let len = usize::try_from(s.size).ok()?;
        (off.checked_add(len)? <= data.len() && len >= HEADER_SIZE).then_some((s.vaddr, off, len))
    };
    // 1. The section (internal linking; PIE ≤1.26 names it .data.rel.ro.gopclntab).
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(found) = layout
            .sections
            .iter()
            .find(|s| s.name == name)
            .and_then(in_section)
        {
            return Some(found);
        }
    }
    // Bytes from `vaddr` to the end of its file-backed segment.
    let from_vaddr = |vaddr: u64| -> Option<(u64, usize, usize)> {
        let seg = layout
            .segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.file_size)?;
        let off = usize::try_from(vaddr - seg.vaddr + seg.file_offset).ok()?;
        let len = usize::try_from(seg.vaddr + seg.file_size - vaddr).ok()?;
        (off.checked_add(len)? <= data.len()).then_some((vaddr, off, len))
    };
    // 2. The symbol (external linking folds the table into .data.rel.ro).
    if let Some(found) = layout.pclntab_symbol.and_then(from_vaddr) {
        if Header::plausible(&data[found.1..found.1 + found.2]) {
            return Some(found);
        }
    }
    // 3. Scan non-code data for a header. The linker aligns it to 8 or more.
    let scan = |start_vaddr: u64, file_off: usize, len: usize| {
        let bytes = &data[file_off..file_off + len];
        (0..len.saturating_sub(HEADER_SIZE))
            .step_by(8)
            .find(|&i| {
                let magic = le_u32(bytes, i);
                (magic == Some(MAGIC_GO120) || magic == Some(MAGIC_GO118))
                    && Header::plausible(&bytes[i..])
            })
            .map(|i| (start_vaddr + i as u64, file_off + i, len - i))
    };
    let sections = layout
        .sections
        .iter()
        .filter(|s| s.alloc && !s.executable)
        .filter_map(in_section)
        .filter(|&(vaddr, _, _)| vaddr % 8 == 0);
    for (vaddr, off, len) in sections {
        if let Some(found) = scan(vaddr, off, len) {
            return Some(found);
        }
    }
    // No section headers at all (sstrip): scan the data segments.
    if layout.sections.is_empty() {
        for seg in layout.segments.iter().filter(|s| !s.executable) {
            let (Ok(off), Ok(len)) = (
                usize::try_from(seg.file_offset),
                usize::try_from(seg.file_size),
            ) else {
                continue;
            };
            if off.checked_add(len).is_some_and(|end| end <= data.len()) && seg.vaddr % 8 == 0 {
                if let Some(found) = scan(seg.vaddr, off, len) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Finds `runtime.firstmoduledata`: the data word that points at the
/// pcHeader, followed by `funcnametab.ptr` (pcHeader + funcnameOffset).
fn find_moduledata(
    data: &[u8],
    layout: &ElfLayout,
    header_vaddr: u64,
    funcname: u64,
) -> Option<u64> {
    let candidates = layout
        .sections
        .iter()
        .filter(|s| s.alloc && s.writable && !s.executable && s.file_offset.is_some())
        // Go 1.27 puts moduledata in its own .go.module section; look there first.
        .map(|s| (s.name != ".go.module", s));
    let mut sections: Vec<_> = candidates.collect();
    sections.sort_by_key(|&(rank, _)| rank);
    let needle = header_vaddr.to_le_bytes();
    for (_, s) in sections {
        let (Some(off), Ok(len)) = (
            s.file_offset.and_then(|o| usize::try_from(o).ok()),
            usize::try_from(s.size),
        ) else {
            continue;
        };
        let Some(bytes) = data.get(off..off.saturating_add(len)) else {
            continue;
        };
        let start_pad = (8 - (s.vaddr % 8) as usize) % 8;
        let found = (start_pad..len.saturating_sub(16)).step_by(8).find(|&i| {
            bytes[i..i + 8] == needle && le_u64(bytes, i + 8) == Some(header_vaddr + funcname)
        });
        if let Some(i) = found {
            return Some(s.vaddr + i as u64);
        }
    }
    None
}

/// Reads `moduledata.gofunc`, telling the two layouts apart: before 1.27
/// the words at 312/320 are `rodata ≤ gofunc`, both addresses in the image;
/// in 1.27 the word at 320 is `itaboffset`, a small offset below `etypes`.
fn moduledata_gofunc(data: &[u8], layout: &ElfLayout, md: u64) -> Option<u64> {
    let word = |at: u64| read_u64_at(&layout.segments, data, md + at);
    let mapped = |vaddr: u64| {
        layout
            .sections
            .iter()
            .any(|s| s.contains(vaddr) && !s.executable)
    };
    [MODULEDATA_GOFUNC_UNTIL_126, MODULEDATA_GOFUNC_FROM_127]
        .into_iter()
        .find_map(|(rodata_at, gofunc_at)| {
            let (rodata, gofunc) = (word(rodata_at)?, word(gofunc_at)?);
            (rodata != 0 && rodata <= gofunc && mapped(gofunc)).then_some(gofunc)
        })
}

/// Reads an unsigned LEB128 varint as Go's `readvarint` does (≤ 32 bits).
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift >= 32 {
            return None;
        }
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

/// Looks `target` up in the pc-value table at `pctab[off..]` of a function
/// starting at `entry` (runtime `pcvalue`): pairs of (zigzag value delta,
/// pc delta ÷ `min_lc`) varints, starting from value −1. `None` if the
/// table ends before `target` or is corrupt.
pub fn pcvalue(pctab: &[u8], off: u32, entry: u64, target: u64, min_lc: u8) -> Option<i32> {
    let mut pos = off as usize;
    let mut pc = entry;
    let mut value: i32 = -1;
    loop {
        let uvdelta = read_varint(pctab, &mut pos)?;
        // A zero value delta ends the table, except as the first entry.
        if uvdelta == 0 && pc != entry {
            return None;
        }
        let vdelta = if uvdelta & 1 != 0 {
            !(uvdelta >> 1) as i32
        } else {
            (uvdelta >> 1) as i32
        };
        let pcdelta = u64::from(read_varint(pctab, &mut pos)?) * u64::from(min_lc);
        pc = pc.checked_add(pcdelta)?;
        value = value.wrapping_add(vdelta);
        if target < pc {
            return Some(value);
        }
    }
}

/// The name as the runtime prints it (`funcNamePiecesForPrint`): type
/// arguments of a generic instantiation become `[...]`, so
/// `main.f[go.shape.int]` reads `main.f[...]`, as in pprof.
pub fn print_name(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}[...]{}", &name[..open], &name[close + 1..])
        }
        _ => name.to_owned(),
    }
}

/// Lower-cased name without receiver punctuation: `main.(*T).M` → `main.t.m`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '(' | ')' | '*'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance over bytes (names are ASCII in practice).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a pc-value table the way cmd/internal/obj does.
    fn encode(pairs: &[(i32, u32)], min_lc: u32) -> Vec<u8> {
        fn varint(out: &mut Vec<u8>, mut v: u32) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let mut out = Vec::new();
        let mut prev = -1i32;
        for &(value, pc_len) in pairs {
            let delta = value - prev;
            let zigzag = ((delta << 1) ^ (delta >> 31)) as u32;
            varint(&mut out, zigzag);
            varint(&mut out, pc_len / min_lc);
            prev = value;
        }
        out.push(0);
        out
    }

    #[test]
    fn varint_decodes_multibyte_and_rejects_truncation() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x05], &mut pos), Some(5));
        pos = 0;
        assert_eq!(read_varint(&[0xe5, 0x8e, 0x26], &mut pos), Some(624_485));
        assert_eq!(pos, 3);
        pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
        pos = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut pos),
            Some(u32::MAX)
        );
    }

    #[test]
    fn pcvalue_walks_zigzag_deltas() {
        // line 10 for 4 bytes, 12 for 6 bytes, 7 for 300 bytes.
        let table = encode(&[(10, 4), (12, 6), (7, 300)], 1);
        let mut pctab = vec![0xaa]; // offset 0 means "no table"
        pctab.extend_from_slice(&table);
        let at = |pc: u64| pcvalue(&pctab, 1, 0x1000, 0x1000 + pc, 1);
        assert_eq!(at(0), Some(10));
        assert_eq!(at(3), Some(10));
        assert_eq!(at(4), Some(12));
        assert_eq!(at(9), Some(12));
        assert_eq!(at(10), Some(7));
        assert_eq!(at(309), Some(7));
        assert_eq!(at(310), None);
    }

    #[test]
    fn pcvalue_scales_pc_by_quantum_and_handles_minus_one() {
        // -1 (not inlined) for 8 bytes, then inline index 0 for 8 bytes.
        let table = encode(&[(-1, 8), (0, 8)], 4);
        let at = |pc: u64| pcvalue(&table, 0, 0, pc, 4);
        assert_eq!(at(7), Some(-1));
        assert_eq!(at(8), Some(0));
        assert_eq!(at(16), None);
    }

    #[test]
    fn generic_names_print_like_the_runtime() {
        assert_eq!(
            print_name("main.generic[go.shape.int]"),
            "main.generic[...]"
        );
        // Everything from the first '[' to the last ']' goes, as in Go.
        assert_eq!(
            print_name("main.(*T[go.shape.string]).M"),
            "main.(*T[...]).M"
        );
        assert_eq!(print_name("main.main"), "main.main");
    }

    #[test]
    fn near_match_helpers() {
        assert_eq!(
            normalize("main.(*RequestTracker).Track"),
            "main.requesttracker.track"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
