//! Native user stacks unwound from a copy of the stack, without frame
//! pointers: the registers and the stack memory a sampled allocation
//! carries, walked with each mapped object's DWARF call frame information
//! (`.eh_frame`, which every x86-64 object keeps for exceptions and
//! debuggers, `.debug_frame` where present), by framehop, which falls back
//! to frame pointers where an object has neither. Objects are added as the
//! process maps them, each opened through `/proc/PID/map_files` (the very
//! file mapped, a container's too).

use std::{collections::HashSet, fs, ops::Range, path::PathBuf};

use framehop::{
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::process::{
    exe::in_root,
    maps::{self, Mapping},
};

/// Deepest stack kept.
const MAX_DEPTH: usize = 128;

/// The unwinder of one process's stacks.
pub(crate) struct ProcessUnwinder {
    pid: u32,
    unwinder: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
    /// Code mappings already added (start, end).
    added: HashSet<(u64, u64)>,
    /// Stacks that ended before their outermost frame (ran out of the copied
    /// stack, or of unwind information).
    pub truncated: u64,
}

impl ProcessUnwinder {
    /// An unwinder with every object process `pid` maps now.
    pub(crate) fn new(pid: u32) -> Self {
        let mut u = Self {
            pid,
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            added: HashSet::new(),
            truncated: 0,
        };
        u.refresh();
        u
    }

    /// Adds the code of objects mapped since (a library loaded late).
    pub(crate) fn refresh(&mut self) {
        let Ok(mappings) = maps::of(self.pid) else {
            return;
        };
        for m in mappings
            .iter()
            .filter(|m| m.executable && m.path.starts_with('/'))
        {
            if !self.added.insert((m.start, m.end)) {
                continue;
            }
            if let Some(module) = module(self.pid, m) {
                self.unwinder.add_module(module);
            }
        }
    }

    /// Whether `pc` is in code the unwinder knows.
    fn knows(&self, pc: u64) -> bool {
        self.added.iter().any(|&(s, e)| (s..e).contains(&pc))
    }

    /// The stack at a probe, innermost first: `ip` (plus one, so that a
    /// symbolizer that looks one byte before each address finds it, as it
    /// does for the return addresses after it), then each caller's return
    /// address, unwound from `sp` and `bp` through `words`, the stack memory
    /// from `sp` up.
    pub(crate) fn unwind(&mut self, ip: u64, sp: u64, bp: u64, words: &[u64]) -> Vec<u64> {
        if !self.knows(ip) {
            self.refresh();
        }
        let end = sp.saturating_add(words.len() as u64 * 8);
        let mut read = |addr: u64| {
            if addr >= sp && addr < end && addr.is_multiple_of(8) {
                Ok(words[((addr - sp) / 8) as usize])
            } else {
                Err(())
            }
        };
        let (out, complete) = walk(&self.unwinder, &mut self.cache, (ip, sp, bp), &mut read);
        if !complete {
            self.truncated += 1;
        }
        out
    }
}

/// The frames of the stack at registers `(ip, sp, bp)`, its memory read
/// through `read`, innermost first, and whether the walk reached the
/// outermost frame. A panic beneath (the DWARF evaluation of a hostile
/// object's unwind tables: found by fuzzing, a CFA below 8 made framehop
/// subtract past zero) ends the walk there, with the cache emptied.
pub(crate) fn walk(
    unwinder: &UnwinderX86_64<Vec<u8>>,
    cache: &mut CacheX86_64,
    (ip, sp, bp): (u64, u64, u64),
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> (Vec<u64>, bool) {
    let mut out = Vec::new();
    let walked = super::quiet::contained(|| {
        let regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut frames = unwinder.iter_frames(ip, regs, cache, read);
        loop {
            if out.len() >= MAX_DEPTH {
                return false;
            }
            match frames.next() {
                Ok(Some(FrameAddress::InstructionPointer(pc))) => out.push(pc + 1),
                Ok(Some(FrameAddress::ReturnAddress(ra))) => out.push(ra.get()),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    });
    match walked {
        Some(complete) => (out, complete),
        None => {
            log::debug!("a stack's walk failed inside the unwinder: its unwind tables are damaged");
            *cache = CacheX86_64::new();
            (out, false)
        }
    }
}

/// The unwind module of code mapping `m` of `pid`.
fn module(pid: u32, m: &Mapping) -> Option<Module<Vec<u8>>> {
    module_of(&fs::read(object_path(pid, m)).ok()?, m)
}

/// The unwind module of code mapping `m` of the object file `data`.
pub(crate) fn module_of(data: &[u8], m: &Mapping) -> Option<Module<Vec<u8>>> {
    let file = object::File::parse(data).ok()?;
    let bias = load_bias(&file, m)?;
    let section = |name: &str| -> Option<(Range<u64>, Vec<u8>)> {
        let s = file.section_by_name(name)?;
        let data = s.uncompressed_data().ok()?.into_owned();
        Some((s.address()..s.address() + s.size(), data))
    };
    let (text_svma, text) = section(".text").unzip();
    let (eh_frame_svma, eh_frame) = section(".eh_frame").unzip();
    // A header whose table points outside .eh_frame is left out: the
    // unwinder indexes .eh_frame itself.
    let (eh_frame_hdr_svma, eh_frame_hdr) = section(".eh_frame_hdr")
        .filter(|(at, hdr)| {
            let eh_frame = eh_frame_svma.clone().unwrap_or_default();
            super::ehframe::hdr_fits(hdr, at.start, eh_frame)
        })
        .unzip();
    let got_svma = section(".got").map(|s| s.0);
    let debug_frame = section(".debug_frame").map(|s| s.1);
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma,
        text,
        got_svma,
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        debug_frame,
        ..Default::default()
    };
    Some(Module::new(m.path.clone(), m.start..m.end, bias, info))
}

/// Where the file's addresses went in the process: from where it asks the
/// segment holding mapping `m` to go. The mapping starts at a page
/// boundary, so its file offset may be below the segment's own (by the
/// alignment slack a linker leaves, e.g. a `.text` at vaddr 0x142b0 from
/// file offset 0x132b0, mapped from offset 0x13000).
fn load_bias(file: &object::File<'_>, m: &Mapping) -> Option<u64> {
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|seg| {
            let (off, size) = seg.file_range();
            (seg.address(), off, size)
        })
        .collect();
    // The segment whose first page the mapping starts at; else one that
    // holds the mapping's offset (a segment mapped from its middle).
    let (vaddr, off, _) = segments
        .iter()
        .find(|&&(_, off, _)| off & !0xfff == m.offset)
        .or_else(|| {
            segments
                .iter()
                .find(|&&(_, off, size)| m.offset >= off && m.offset < off + size)
        })?;
    // The vaddr of the mapping's first byte, from the segment's.
    let first = vaddr.wrapping_add(m.offset).wrapping_sub(*off);
    Some(m.start.wrapping_sub(first))
}

/// Where leak reads the file behind mapping `m`: the mapped file itself
/// through `/proc/PID/map_files`, else its path in the process's root.
fn object_path(pid: u32, m: &Mapping) -> PathBuf {
    let exact = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    if exact.exists() {
        return exact;
    }
    in_root(pid, std::path::Path::new(&m.path)).unwrap_or_else(|| PathBuf::from(&m.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::maps::{process_load_bias, Segment};

    /// The bias of this test binary's code mapping agrees with the one the
    /// Go layer computes from the first mapping of the file, and the
    /// unwinder knows the code it runs.
    #[test]
    fn this_binarys_bias_and_code() {
        let pid = std::process::id();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mappings = maps::of(pid).unwrap();
        let code = mappings
            .iter()
            .find(|m| m.executable && std::path::Path::new(&m.path) == exe)
            .unwrap();
        let data = fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let segments: Vec<Segment> = file
            .segments()
            .map(|s| Segment {
                vaddr: s.address(),
                offset: s.file_range().0,
                filesz: s.file_range().1,
            })
            .collect();
        let bias = load_bias(&file, code).unwrap();
        assert_eq!(Some(bias), process_load_bias(pid, code.inode, &segments));
        let u = ProcessUnwinder::new(pid);
        let here = this_binarys_bias_and_code as fn() as usize as u64;
        assert!(u.knows(here));
    }
}
