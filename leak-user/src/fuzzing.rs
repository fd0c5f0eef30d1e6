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
    process::{self, cgroup, maps, memory::Memory},
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
    let (Some(&pick), Some(&cut)) = (input.first(), input.get(1)) else {
        return;
    };
    let Some(base) = bases.get(usize::from(pick) % bases.len().max(1)) else {
        return;
    };
    let mut data = base.data.clone();
    for p in input[2..].chunks_exact(6) {
        let region = &base.regions[usize::from(p[0]) % base.regions.len()];
        let off = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
        data[region.start + off % region.len()] ^= p[5];
    }
    if cut != 0 {
        data.truncate(data.len() / 256 * usize::from(cut));
    }
    go_binary(&data);
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
/// (`goroutines`). Empty for the other targets, whose seeds are files.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
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
