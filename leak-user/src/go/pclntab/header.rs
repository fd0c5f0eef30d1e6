//! Finding the table in the file: the pcHeader, and `runtime.firstmoduledata`
//! with the fields of it the reader needs (`text`, `gofunc`).

use super::{le_u32, le_u64, PclntabFormat, HEADER_SIZE, MAGIC_GO118, MAGIC_GO120};
use crate::go::image::{read_u64_at, ElfLayout, Section};

/// The words of a pcHeader after magic/pad/minLC/ptrSize.
pub(super) struct Header {
    pub(super) min_lc: u8,
    pub(super) ptr_size: u8,
    pub(super) nfunc: u64,
    pub(super) text_start: u64,
    pub(super) funcname: u64,
    pub(super) cu: u64,
    pub(super) filetab: u64,
    pub(super) pctab: u64,
    pub(super) pcln: u64,
}

impl Header {
    pub(super) fn read(tab: &[u8]) -> Option<Self> {
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
            && h
                .nfunc
                .checked_mul(8)
                .and_then(|n| h.pcln.checked_add(n)?.checked_add(4))
                .is_some_and(|end| end <= len)
    }
}

/// Locates the pcHeader: `(vaddr, file offset, bytes available)`.
pub(super) fn find_header(data: &[u8], layout: &ElfLayout) -> Option<(u64, usize, usize)> {
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
        let off = usize::try_from((vaddr - seg.vaddr).checked_add(seg.file_offset)?).ok()?;
        let len = usize::try_from(seg.file_size - (vaddr - seg.vaddr)).ok()?;
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
/// pcHeader, and `funcnametab.ptr` (pcHeader + funcnameOffset), where a
/// layout of the runtime table for the table's `format` puts them.
pub(super) fn find_moduledata(
    data: &[u8],
    layout: &ElfLayout,
    format: PclntabFormat,
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
    let mut fields: Vec<(usize, usize)> = format
        .moduledata_layouts()
        .filter_map(|l| {
            Some((
                usize::try_from(l.pcheader).ok()?,
                usize::try_from(l.funcnametab).ok()?,
            ))
        })
        .collect();
    fields.dedup();
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
            fields.iter().any(|&(pcheader, funcnametab)| {
                le_u64(bytes, i + pcheader) == Some(header_vaddr)
                    && le_u64(bytes, i + funcnametab) == header_vaddr.checked_add(funcname)
            })
        });
        if let Some(i) = found {
            return s.vaddr.checked_add(i as u64);
        }
    }
    None
}

/// Reads `moduledata.gofunc`, trying the layouts of the runtime table's rows
/// for the table's `format` oldest first and telling them apart: where a
/// layout has `rodata, gofunc`, both are addresses in the image and
/// `rodata ≤ gofunc` (1.21–1.26 the words at 312/320; in 1.27 the word at
/// 320 is `itaboffset`, a small offset). 1.19 (296/304) has a format of
/// its own: on a later table its words would be `types, etypes`, which
/// pass the same test.
pub(super) fn moduledata_gofunc(
    data: &[u8],
    layout: &ElfLayout,
    format: PclntabFormat,
    md: u64,
) -> Option<u64> {
    let word = |at: u64| read_u64_at(&layout.segments, data, md.checked_add(at)?);
    let mapped = |vaddr: u64| {
        layout
            .sections
            .iter()
            .any(|s| s.contains(vaddr) && !s.executable)
    };
    format.moduledata_layouts().find_map(|l| {
        let (rodata, gofunc) = (word(l.rodata)?, word(l.gofunc)?);
        (rodata != 0 && rodata <= gofunc && mapped(gofunc)).then_some(gofunc)
    })
}
