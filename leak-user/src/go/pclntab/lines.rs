//! The pc-value tables and the inline tree: which file, line and inlined
//! calls a pc stands for (`runtime/symtab.go` `pcvalue`,
//! `runtime/symtabinl.go`).

use super::{names::print_name, Frame, Pclntab, RawFunc, FUNCDATA_INL_TREE, PCDATA_INL_TREE_INDEX};
use crate::go::image::read_vaddr;

impl Pclntab {
    /// Source frames of `pc`, innermost first: the inlined calls that
    /// contain it (`inlined: true`), then the real function, each with its
    /// file:line — what `runtime.CallersFrames` and pprof show.
    ///
    /// For a return address, pass `ret - 1` so the call's line is used.
    /// Empty if `pc` is outside Go's code. Without `moduledata.gofunc`
    /// (not found), inlined calls are not expanded.
    pub(crate) fn frames(&self, pc: u64) -> Vec<Frame> {
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
                // A corrupt index may point anywhere: no such address then.
                let Some(call) = index.checked_mul(size).and_then(|o| tree.checked_add(o)) else {
                    break;
                };
                let field = |at: u64| call.checked_add(at);
                let (Some(name_off), Some(parent_pc)) = (
                    field(name_at).and_then(|a| self.read_u32_vaddr(a)),
                    field(parent_pc_at).and_then(|a| self.read_u32_vaddr(a)),
                ) else {
                    break;
                };
                let func_id = field(self.format.inlined_call_func_id())
                    .and_then(|a| read_vaddr(&self.segments, &self.data, a, 1))
                    .map(|b| b[0]);
                let (file, line) = self.file_line(&raw, pc);
                frames.push(Frame {
                    function: print_name(self.func_name(name_off).unwrap_or("?")),
                    file,
                    line,
                    inlined: true,
                    wrapper: func_id.is_some() && func_id == self.wrapper_func_id(),
                });
                let Some(parent) = raw.entry.checked_add(u64::from(parent_pc)) else {
                    break;
                };
                pc = parent;
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
    pub(crate) fn wrapper_func_id(&self) -> Option<u8> {
        *self.wrapper_func_id.get_or_init(|| {
            let f = self.func_by_name("runtime.systemstack_switch")?;
            let raw = self.raw_func(f.index)?;
            raw.func_id.checked_add(1)
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
    pub(super) fn funcdata_vaddr(&self, raw: &RawFunc, index: u32) -> Option<u64> {
        if index >= u32::from(raw.nfuncdata) {
            return None;
        }
        let slot = raw.npcdata as usize + index as usize;
        let at = raw.at + self.format.func_header_size() + 4 * slot;
        let off = self.le_u32(at).filter(|&off| off != u32::MAX)?;
        self.gofunc?.checked_add(u64::from(off))
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
}

/// Reads an unsigned LEB128 varint as Go's `readvarint` does (≤ 32 bits).
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u32> {
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
pub(crate) fn pcvalue(pctab: &[u8], off: u32, entry: u64, target: u64, min_lc: u8) -> Option<i32> {
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
