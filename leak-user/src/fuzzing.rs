//! Entry points for the fuzz targets (`leak-user/fuzz/`): each feeds
//! untrusted bytes to one parser or reader of the library and drives what
//! it returns, so that a panic, an overflow or a hang anywhere below shows.
//! Compiled only with the `fuzzing` feature (and in unit tests, which
//! drive real files damaged on purpose through it); not an interface of
//! leak.
//!
//! The readers of another process's memory run over [`FlatMemory`], the
//! fuzz input mapped at one address; [`seeds`] builds valid starting
//! inputs for them from the runtime table's own layouts.

use std::{path::PathBuf, sync::Arc};

use framehop::{
    x86_64::{CacheX86_64, UnwinderX86_64},
    Unwinder,
};
use leak_common::{NativeAlloc, NATIVE_HEADER};

use crate::{
    event,
    go::{
        goroutines::{locate, walk as goroutine_walk},
        heapvars, memrate, prologue,
        records::walk as record_walk,
        table::{self, rows, RuntimeProbes},
        version::{self, GoVersion},
        GoBinary,
    },
    native::{
        allocator,
        elfsym::{self, ElfSymbols},
        unwind,
    },
    process::{
        self, cgroup,
        maps::{self, Mapping},
        memory::Memory,
    },
};

/// Where [`FlatMemory`] maps a fuzz input in the walker targets.
pub const BASE: u64 = 0x1_0000;
/// The fake program's code, for the walkers' `is_code` check.
const TEXT: std::ops::Range<u64> = 0x40_0000..0x50_0000;
/// Functions of a binary driven per input: enough to reach every part of
/// the tables, few enough to keep runs fast.
const SAMPLED_FUNCS: usize = 48;

/// Bytes mapped at one address; reads outside fail as an unmapped address
/// does.
pub struct FlatMemory<'a> {
    /// Address of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: &'a [u8],
}

impl Memory for FlatMemory<'_> {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let range = addr
            .checked_sub(self.base)
            .and_then(|from| usize::try_from(from).ok())
            .and_then(|from| Some(from..from.checked_add(buf.len())?))
            .and_then(|r| self.bytes.get(r));
        match range {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::Error::other(format!("{addr:#x} is not mapped"))),
        }
    }
}

/// Parses `data` as an executable and, if it is a Go one leak accepts,
/// drives every reader of it: version, function table, lines and inline
/// tree, symbols, notes, and the disassembly that locates runtime globals.
pub fn go_binary(data: &[u8]) {
    let Ok(bin) = GoBinary::from_data(PathBuf::from("fuzz"), Arc::from(data)) else {
        return;
    };
    exercise(&bin);
}

/// Everything leak reads from an opened binary.
fn exercise(bin: &GoBinary) {
    let (v, _) = bin.go_version();
    let _ = version::infer(bin);
    let _ = bin.build_id();
    let _ = bin.go_build_id();
    let _ = bin.symbol("runtime.MemProfileRate");
    let tab = bin.pclntab();
    let step = (tab.len() / SAMPLED_FUNCS).max(1);
    for f in tab.functions().step_by(step).take(SAMPLED_FUNCS) {
        let mid = f.entry + (f.end.saturating_sub(f.entry)) / 2;
        for pc in [f.entry, mid, f.end.saturating_sub(1)] {
            let _ = tab.frames(pc);
        }
        let _ = prologue::probe_address(bin, f.entry);
        let _ = bin.vaddr_to_file_offset(f.entry);
    }
    let _ = tab.wrapper_func_id();
    let _ = bin.require_function("main.main");
    let _ = bin.code_of("runtime.main");
    let _ = memrate::mem_profile_rate_by_disassembly(bin);
    if let Ok(row) = table::probes_for(&v) {
        let _ = heapvars::heap_vars_by_disassembly(bin, row);
        let _ = locate::goroutine_vars_by_disassembly(bin, row);
        let _ = crate::go::gcstats::gc_stats_vars(bin, row);
    }
}

/// A real executable and the byte ranges of it worth mutating: its ELF
/// and program headers, its section headers, and the sections leak reads
/// (`.gopclntab`, `.go.buildinfo`, the Go build-ID note, data, and the
/// start of the code it disassembles).
pub struct Base {
    data: Vec<u8>,
    regions: Vec<std::ops::Range<usize>>,
}

impl Base {
    /// The files `LEAK_FUZZ_BINARIES` names (`:`-separated), each one that
    /// can be read; `None` if there is none.
    pub fn from_env() -> Option<Vec<Self>> {
        let list = std::env::var("LEAK_FUZZ_BINARIES").unwrap_or_default();
        let bases: Vec<Self> = list
            .split(':')
            .filter(|p| !p.is_empty())
            .filter_map(|p| std::fs::read(p).ok())
            .map(Self::new)
            .collect();
        (!bases.is_empty()).then_some(bases)
    }

    /// Finds the regions of `data` (the whole file is always the first).
    pub fn new(data: Vec<u8>) -> Self {
        use object::{Object, ObjectSection};
        let mut regions = vec![0..data.len(), 0..data.len().min(4096)];
        if let Ok(file) = object::File::parse(&*data) {
            for s in file.sections() {
                let (Ok(name), Some((off, len))) = (s.name(), s.file_range()) else {
                    continue;
                };
                let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
                    continue;
                };
                let keep = match name {
                    ".gopclntab" | ".data.rel.ro.gopclntab" => len,
                    ".go.buildinfo" | ".note.go.buildid" | ".noptrdata" | ".data" => len,
                    ".text" => len.min(1 << 16),
                    ".shstrtab" | ".symtab" => len.min(1 << 16),
                    // What the native side reads of C, C++ and Rust objects.
                    ".eh_frame" | ".eh_frame_hdr" | ".debug_frame" | ".got" => len,
                    ".dynsym" | ".dynstr" | ".strtab" => len.min(1 << 16),
                    _ => continue,
                };
                regions.push(off..off.saturating_add(keep).min(data.len()));
                if keep > 4096 {
                    regions.push(off..off.saturating_add(4096).min(data.len()));
                }
            }
        }
        let shoff = data
            .get(0x28..0x30)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        if let Some(at) = shoff
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < data.len())
        {
            regions.push(at..data.len());
        }
        regions.retain(|r| r.start < r.end);
        Self { data, regions }
    }
}

/// A base executable picked by the input's first byte, cut short if its
/// second byte is not 0 (at that many 256ths of its length), with patches
/// applied: 6 bytes each, a region, an offset in it and a byte to XOR in.
/// Then read as [`go_binary`] reads a file.
pub fn patched_binary(bases: &[Base], input: &[u8]) {
    if let Some(data) = patched(bases, input) {
        go_binary(&data);
    }
}

/// A real object file (an executable or a shared library: the C library,
/// the C++ one, C and C++ test builds) patched and cut as in
/// [`patched_binary`], read as leak's native side reads the objects a
/// process maps: symbols, then unwind information, walked through a stack
/// whose words are the input's bytes after the first two.
pub fn patched_native(bases: &[Base], input: &[u8]) {
    if let Some(data) = patched(bases, input) {
        let words: Vec<u64> = input
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
            .collect();
        native_object(&data, &words);
    }
}

/// [`patched_binary`]'s base, patched and cut by `input`.
fn patched(bases: &[Base], input: &[u8]) -> Option<Vec<u8>> {
    let (Some(&pick), Some(&cut)) = (input.first(), input.get(1)) else {
        return None;
    };
    let base = bases.get(usize::from(pick) % bases.len().max(1))?;
    let mut data = base.data.clone();
    for p in input[2..].chunks_exact(6) {
        let region = &base.regions[usize::from(p[0]) % base.regions.len()];
        let off = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
        data[region.start + off % region.len()] ^= p[5];
    }
    if cut != 0 {
        data.truncate(data.len() / 256 * usize::from(cut));
    }
    Some(data)
}

/// Where [`native_object`] maps an object's code.
const NATIVE_START: u64 = 0x7f00_0000_0000;
/// Where its stack starts.
const NATIVE_SP: u64 = 0x7ffc_0000_0000;

/// An object file as leak's native side reads it: its function symbols
/// at a few file offsets and their names demangled; then, for each of its
/// executable segments mapped as a process maps it, the unwind module (its
/// load bias, `.eh_frame` and the sections around), walked from a few
/// instructions through a stack of `words`.
pub fn native_object(data: &[u8], words: &[u64]) {
    native_walks(data, words);
}

/// Unwind modules [`native_object`] builds from `data`.
#[cfg(test)]
fn native_modules(data: &[u8]) -> usize {
    native_walks(data, &[])
}

/// [`native_object`]; how many unwind modules it built.
fn native_walks(data: &[u8], words: &[u64]) -> usize {
    use object::{Object, ObjectSegment, SegmentFlags};
    // The allocator's probes (symbols, aliases, calls and PLT stubs
    // decoded) and a --work function looked up by name.
    if let Some((probes, _)) = allocator::probes_of(data) {
        for p in probes {
            assert!((p.file_offset as usize) < data.len(), "{p:?} past the file");
        }
    }
    let _ = crate::native::work::in_data(data, "main");
    if let Ok(symbols) = ElfSymbols::of(data) {
        let len = data.len() as u64;
        for offset in [0, len / 3, len / 2, len.saturating_sub(1)] {
            if let Some(addr) = symbols.address_of_offset(offset) {
                let _ = symbols.starts_function(addr);
                if let Some(name) = symbols.function_at(addr) {
                    let _ = elfsym::demangle(name);
                }
            }
        }
    }
    let Ok(file) = object::File::parse(data) else {
        return 0;
    };
    let mut modules = 0;
    let code = file.segments().filter(|s| match s.flags() {
        SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
        _ => false,
    });
    for (i, seg) in code.enumerate().take(4) {
        let (offset, size) = seg.file_range();
        let start = NATIVE_START + ((i as u64) << 32);
        let m = Mapping {
            start,
            end: start.saturating_add(size.clamp(0x1000, 1 << 30)),
            offset: offset & !0xfff,
            inode: 1,
            executable: true,
            path: "fuzz".into(),
        };
        let Some(module) = unwind::module_of(data, &m) else {
            continue;
        };
        modules += 1;
        let mut unwinder: UnwinderX86_64<Vec<u8>> = UnwinderX86_64::new();
        unwinder.add_module(module);
        let mut cache = CacheX86_64::new();
        let span = m.end - m.start;
        for &w in words.iter().take(4) {
            walk(&unwinder, &mut cache, m.start + w % span, words);
        }
    }
    modules
}

/// Walks the stack at `ip` as leak walks a sampled one (the stack pointer
/// at [`NATIVE_SP`], its memory `words`).
fn walk(unwinder: &UnwinderX86_64<Vec<u8>>, cache: &mut CacheX86_64, ip: u64, words: &[u64]) {
    let end = NATIVE_SP + words.len() as u64 * 8;
    let mut read = |addr: u64| match addr {
        a if (NATIVE_SP..end).contains(&a) && a % 8 == 0 => {
            Ok(words[((a - NATIVE_SP) / 8) as usize])
        }
        _ => Err(()),
    };
    let _ = unwind::walk(
        unwinder,
        cache,
        (ip, NATIVE_SP, NATIVE_SP + 0x40),
        &mut read,
    );
}

/// Where a uprobe goes in a function whose code is the input after its
/// first 8 bytes (the function's address): within the code given, past
/// the entry only onto an instruction the kernel emulates. And whether 8
/// bytes of it end in a call (the native unwinder's check of a return
/// address).
pub fn probe_placement(data: &[u8]) {
    let ip = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let code = data.get(8..).unwrap_or_default();
    let (offset, emulated) = allocator::placement(code, ip);
    if emulated {
        assert!(
            (offset as usize) < code.len(),
            "{offset} past {} bytes",
            code.len()
        );
    } else {
        assert_eq!(offset, 0, "moved onto an instruction not emulated");
    }
    // The same bytes as the code that reads a Go thread's g (cgo).
    let _ = crate::go::cgo::tls_g_in(code, ip);
    let mut before = [0u8; 8];
    let n = code.len().min(8);
    before[..n].copy_from_slice(&code[..n]);
    let _ = elfsym::follows_call(before);
}

/// A symbol name demangled as leak shows it (Rust's two manglings, C++'s).
pub fn demangle(data: &[u8]) {
    let _ = elfsym::demangle(&String::from_utf8_lossy(data));
}

/// The input as a native allocation record (its first 4 bytes made the
/// kind's): decoded as the ring buffer's reader decodes it, never claiming
/// a stack word the record did not carry, and sliced as the native
/// pipeline slices it.
pub fn native_record(data: &[u8]) {
    let mut bytes = data.to_vec();
    let kind = (leak_common::EventKind::NativeAlloc as u32).to_le_bytes();
    for (b, k) in bytes.iter_mut().zip(kind) {
        *b = k;
    }
    let Some(event::Record::NativeAlloc(ev)) = event::decode(&bytes) else {
        assert!(bytes.len() < NATIVE_HEADER, "a full header not decoded");
        return;
    };
    let carried = (bytes.len().min(size_of::<NativeAlloc>()) - NATIVE_HEADER) / 8;
    assert!(
        ev.words as usize <= carried,
        "{} words of {carried}",
        ev.words
    );
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!((ev.addr, ev.size, ev.sp), (field(8), field(16), field(32)));
    // The words the native pipeline walks, as the record carried them.
    for (i, &w) in ev.stack[..ev.words as usize].iter().enumerate() {
        assert_eq!(w, field(NATIVE_HEADER + i * 8), "word {i}");
    }
}

/// Version inference from bytes: a build-info blob, and the text as a
/// release string.
pub fn version(data: &[u8]) {
    if let Some(s) = version::build_info_version(data) {
        let _ = GoVersion::parse(&s);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(v) = GoVersion::parse(s) {
            let _ = table::probes_for(&v);
            let _ = v.to_string();
        }
    }
}

/// The ring-buffer record decoder.
pub fn ring_record(data: &[u8]) {
    let _ = event::decode(data);
}

/// The runtime-table row byte `b` picks.
fn row(b: u8) -> &'static RuntimeProbes {
    let rows = rows();
    &rows[usize::from(b) % rows.len()]
}

/// Go's heap profile records read from `data` mapped at [`BASE`]: the list
/// head at `BASE`, the cycle word at `BASE + 8`, the row picked by the
/// byte at `BASE + 12`.
pub fn heap_records(data: &[u8]) {
    let row = row(data.get(12).copied().unwrap_or(0));
    let mem = FlatMemory {
        base: BASE,
        bytes: data,
    };
    let at = record_walk::Location {
        buckets: BASE,
        cycle: BASE + 8,
    };
    if let Ok(snap) = record_walk::read(&mem, row, at, &|pc| TEXT.contains(&pc)) {
        for b in &snap.buckets {
            let _ = record_walk::scale(b.counts.inuse_objects(), b.size, 512 * 1024);
            let _ = record_walk::scale(b.counts.allocs, b.size, i64::from(b.size as u32));
        }
    }
}

/// Every goroutine read from `data` mapped at [`BASE`]: `allglen` at
/// `BASE`, `allgptr` at `BASE + 8`, the row picked by the byte at
/// `BASE + 16`; then the wait reasons, their count at `BASE + 17`, the
/// array at `BASE + 24`'s pointer.
pub fn goroutines(data: &[u8]) {
    let row = row(data.get(16).copied().unwrap_or(0));
    let mem = FlatMemory {
        base: BASE,
        bytes: data,
    };
    let at = goroutine_walk::Location {
        allglen: BASE,
        allgptr: BASE + 8,
    };
    if let Ok(snap) = goroutine_walk::read(&mem, &row.goroutines, at, &|pc| TEXT.contains(&pc)) {
        for g in &snap.goroutines {
            let _ = (g.stack_bytes(), g.state.name());
        }
    }
    let count = u32::from(data.get(17).copied().unwrap_or(0));
    if let Ok(reasons) = crate::process::memory::read_u64(&mem, BASE + 24) {
        let _ = goroutine_walk::read_wait_reasons(&mem, reasons, count);
    }
}

/// `/proc/PID/cgroup` text and what leak reads from its path.
pub fn cgroup(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = cgroup::parse(&text);
}

/// The other `/proc` texts leak parses: status (RSS, NSpid), stat, maps,
/// meminfo.
pub fn proc_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = process::parse_status_rss(&text);
    let _ = process::parse_ns_pid(&text);
    let _ = process::parse_state(&text);
    let _ = process::stat_field(&text, 47);
    let _ = process::parse_mem_available(&text);
    let maps = maps::parse_maps(&text);
    let segments = [maps::Segment {
        vaddr: 0x40_0000,
        offset: 0,
        filesz: 0x1000,
    }];
    if let Some(m) = maps.first() {
        let _ = maps::load_bias(&maps, m.inode, &segments);
    }
}

/// Valid inputs for the walker targets, one per runtime-table row: a
/// short bucket list (`heap_records`), goroutines with a frame chain
/// (`goroutines`); real code and symbol names for `probe_placement` and
/// `demangle`. Empty for the other targets, whose seeds are files.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    if matches!(target, "probe_placement" | "demangle") {
        return library_seeds(target);
    }
    let rows = rows();
    (0..rows.len())
        .filter_map(|i| match target {
            "heap_records" => Some(heap_seed(i as u8, &rows[i])),
            "goroutines" => Some(goroutine_seed(i as u8, &rows[i])),
            _ => None,
        })
        .collect()
}

/// Writes [`seeds`] of `target` into the directory `LEAK_FUZZ_SEED_DIR`
/// names, if it is set (a fuzz target's start-up, before libFuzzer reads
/// its corpus).
pub fn write_seeds(target: &str) {
    let Some(dir) = std::env::var_os("LEAK_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for (i, seed) in seeds(target).iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("seed-row-{i}")), seed);
    }
}

/// The C and C++ libraries: their functions seed the native targets.
pub const SYSTEM_LIBRARIES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
];

/// Seeds from [`SYSTEM_LIBRARIES`]' exported functions, one in 37: for
/// `probe_placement`, the address and first 32 bytes of each one's code;
/// for `demangle`, their names (mangled C++ ones among them).
fn library_seeds(target: &str) -> Vec<Vec<u8>> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let mut out = Vec::new();
    for lib in SYSTEM_LIBRARIES {
        let Ok(data) = std::fs::read(lib) else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        let text = file.section_by_name(".text");
        for sym in file.dynamic_symbols().step_by(37).take(64) {
            let Ok(name) = sym.name() else { continue };
            if target == "demangle" {
                out.push(name.as_bytes().to_vec());
                continue;
            }
            let code = text.as_ref().and_then(|t| {
                let at = usize::try_from(sym.address().checked_sub(t.address())?).ok()?;
                t.data().ok()?.get(at..)
            });
            if let Some(code) = code {
                let mut seed = sym.address().to_le_bytes().to_vec();
                seed.extend_from_slice(&code[..code.len().min(32)]);
                out.push(seed);
            }
        }
    }
    out
}

/// Writes `v` at `off` of `buf`, growing it.
fn put(buf: &mut Vec<u8>, off: usize, v: u64) {
    if buf.len() < off + 8 {
        buf.resize(off + 8, 0);
    }
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Two buckets of `row`'s layout.
fn heap_seed(index: u8, row: &RuntimeProbes) -> Vec<u8> {
    let l = row.records.bucket;
    let r = row.records.mem_record;
    let mut m = Vec::new();
    let first = 0x40usize;
    let bucket_len = l.stack as usize + 2 * 8 + r.size() as usize;
    let second = first + bucket_len.next_multiple_of(8);
    put(&mut m, 0, BASE + first as u64);
    put(&mut m, 8, 4 << 1);
    m[12] = index;
    for (at, next) in [(first, BASE + second as u64), (second, 0)] {
        put(&mut m, at + l.allnext as usize, next);
        put(&mut m, at + l.typ as usize, 1);
        put(&mut m, at + l.size as usize, 4096);
        put(&mut m, at + l.nstk as usize, 2);
        put(&mut m, at + l.stack as usize, TEXT.start + 0x100);
        put(&mut m, at + l.stack as usize + 8, TEXT.start + 0x200);
        let counts = at + l.stack as usize + 16;
        for c in 0..4 {
            let cycle = counts + c * r.cycle_size as usize;
            put(&mut m, cycle + r.allocs as usize, 10);
            put(&mut m, cycle + r.frees as usize, 3);
            if let Some((a, f)) = r.bytes {
                put(&mut m, cycle + a as usize, 40960);
                put(&mut m, cycle + f as usize, 12288);
            }
        }
    }
    m.resize(second + bucket_len, 0);
    m
}

/// One parked goroutine with a two-frame chain, and the wait reasons.
fn goroutine_seed(index: u8, row: &RuntimeProbes) -> Vec<u8> {
    let l = row.goroutines.g;
    let (g_at, stack_at, reasons_at) = (0x100usize, 0x2000usize, 0x80usize);
    let mut m = vec![0u8; 0x100];
    put(&mut m, 0, 1);
    put(&mut m, 8, BASE + 0x40);
    m[16] = index;
    m[17] = 2;
    put(&mut m, 24, BASE + reasons_at as u64);
    put(&mut m, 0x40, BASE + g_at as u64);
    // Wait reasons: "" and "chan send".
    put(&mut m, reasons_at, 0);
    put(&mut m, reasons_at + 8, 0);
    put(&mut m, reasons_at + 16, BASE + 0xc0);
    put(&mut m, reasons_at + 24, 9);
    m[0xc0..0xc9].copy_from_slice(b"chan send");
    let lo = BASE + stack_at as u64;
    put(&mut m, g_at + l.stack_lo as usize, lo);
    put(&mut m, g_at + l.stack_hi as usize, lo + 0x400);
    put(&mut m, g_at + (l.sched + l.gobuf.sp) as usize, lo + 0x100);
    put(
        &mut m,
        g_at + (l.sched + l.gobuf.pc) as usize,
        TEXT.start + 0x10,
    );
    put(&mut m, g_at + (l.sched + l.gobuf.bp) as usize, lo + 0x180);
    put(&mut m, g_at + l.goid as usize, 7);
    let status = row.goroutines.status.waiting;
    m.resize(m.len().max(g_at + l.size as usize), 0);
    m[g_at + l.atomicstatus as usize..][..4].copy_from_slice(&status.to_le_bytes());
    put(&mut m, stack_at + 0x180, lo + 0x1c0);
    put(&mut m, stack_at + 0x188, TEXT.start + 0x20);
    put(&mut m, stack_at + 0x1c0, 0);
    put(&mut m, stack_at + 0x1c8, TEXT.start + 0x30);
    m.resize(stack_at + 0x400, 0);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The native targets over real objects, whole and damaged, and their
    /// library seeds: no panic, and the seeds are what they say.
    #[test]
    fn native_targets_take_real_objects_and_their_damage() {
        let bases: Vec<Base> = SYSTEM_LIBRARIES
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(Base::new)
            .collect();
        assert!(!bases.is_empty(), "no C library at {SYSTEM_LIBRARIES:?}");
        // Whole, the library's code segment gives an unwind module, and
        // its symbols a function at the middle of the file.
        let libc = &bases[0].data;
        assert!(native_modules(libc) > 0);
        let symbols = ElfSymbols::of(libc).unwrap();
        let mid = symbols.address_of_offset(libc.len() as u64 / 3).unwrap();
        assert!(symbols.function_at(mid).is_some());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..24u8 {
            let mut input = vec![i, [0, 128, 200][usize::from(i) % 3]];
            for _ in 0..(i % 6) * 6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push(x as u8);
            }
            patched_native(&bases, &input);
        }
        // Found by fuzzing: a search table entry pointing below .eh_frame
        // made the unwinder's DWARF reader subtract past zero, walking a
        // stack from the function the entry is for.
        let mut damaged = libc.clone();
        let (first_fn, exec_vaddr) = point_first_fde_below_eh_frame(&mut damaged);
        native_object(&damaged, &[first_fn - exec_vaddr]);
        // Found by fuzzing: a function whose code runs past the top of
        // the address space (a symbol's address from a hostile file) had
        // its probe's offset computed by a subtraction that overflowed.
        let cmp_then_jae = [0x39, 0x24, 0x08, 0x73, 0x12, 0x83, 0xfe, 0xff];
        assert_eq!(allocator::placement(&cmp_then_jae, u64::MAX - 1), (3, true));
        // Found by fuzzing: damaged unwind tables that make the unwinder
        // itself panic (a CFA below 8) end that one walk, as a panic
        // beneath it here does.
        let unwinder = UnwinderX86_64::new();
        let mut cache = CacheX86_64::new();
        let mut hostile = |_: u64| -> Result<u64, ()> { panic!("under the unwinder") };
        let (frames, complete) = unwind::walk(
            &unwinder,
            &mut cache,
            (0x40_1000, 0x7000, 0x7100),
            &mut hostile,
        );
        assert_eq!((frames, complete), (vec![0x40_1001], false));
        let code = seeds("probe_placement");
        assert!(code.len() > 10, "{} code seeds", code.len());
        code.iter().for_each(|s| probe_placement(s));
        let names = seeds("demangle");
        let cpp = names.iter().filter(|n| n.starts_with(b"_Z")).count();
        assert!(cpp > 0, "no C++ name among {} symbols", names.len());
        for n in &names {
            demangle(n);
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/native_record");
        for e in std::fs::read_dir(dir).unwrap() {
            native_record(&std::fs::read(e.unwrap().path()).unwrap());
        }
    }

    /// Points the first entry of `data`'s `.eh_frame_hdr` table 8 bytes
    /// below `.eh_frame`; the address of the function the entry is for,
    /// and of the first executable segment (mapped from a page boundary).
    fn point_first_fde_below_eh_frame(data: &mut [u8]) -> (u64, u64) {
        use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};
        let file = object::File::parse(&*data).unwrap();
        let hdr = file.section_by_name(".eh_frame_hdr").unwrap();
        let eh_frame = file.section_by_name(".eh_frame").unwrap().address();
        let (hdr_at, hdr_off) = (hdr.address(), hdr.file_range().unwrap().0 as usize);
        let exec = file
            .segments()
            .find(|s| matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
            .unwrap();
        assert_eq!(exec.file_range().0 % 0x1000, 0);
        let exec_vaddr = exec.address();
        // Table entries (datarel sdata4) from byte 12: location, FDE.
        let field =
            |d: &[u8], at: usize| i32::from_le_bytes(d[hdr_off + at..][..4].try_into().unwrap());
        let first_fn = hdr_at.wrapping_add_signed(i64::from(field(data, 12)));
        let below = (eh_frame - hdr_at) as i32 - 8;
        data[hdr_off + 16..][..4].copy_from_slice(&below.to_le_bytes());
        (first_fn, exec_vaddr)
    }
}
