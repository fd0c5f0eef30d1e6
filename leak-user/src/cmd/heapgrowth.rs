//! `leak trace --pid PID` on a program that is not Go, or `leak trace
//! --syscalls`: where does the heap grow? User stacks at every brk and
//! anonymous mmap of one process, outstanding mapped bytes per stack
//! (munmap and brk shrinking give back), the same reports as the Go mode.
//!
//! This sees the allocator asking the kernel for memory, not each malloc:
//! a stack here is the one whose allocation made the heap grow, which for a
//! steady leak is, with time, the leaking one.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    Ebpf, EbpfLoader,
};
use leak_common::{Counter, EventKind, HeapConfig, MapCall, MapEvent, MAX_FRAMES, STACK_WORDS};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use super::trace::{check_output_path, TraceArgs};
use crate::{
    aggregate::{StackId, Totals},
    collect::KernelCounters,
    elfsym::{follows_call, ProcessSymbols},
    mapped::MappedBytes,
    mm::kernel::ensure_tracefs,
    probes::{self, kernel_error, EBPF_OBJECT},
    procs,
    report::{self, Frame, Losses, Profile, StackProfile},
    symbolize::Symbolizer,
};

/// Program name in the eBPF object, tracepoint name (category `syscalls`).
const TRACEPOINTS: &[(&str, &str)] = &[
    ("heap_enter_brk", "sys_enter_brk"),
    ("heap_exit_brk", "sys_exit_brk"),
    ("heap_enter_mmap", "sys_enter_mmap"),
    ("heap_exit_mmap", "sys_exit_mmap"),
    ("heap_enter_munmap", "sys_enter_munmap"),
];

/// Runs `leak trace` in heap-growth mode.
pub fn run(args: TraceArgs) -> Result<()> {
    let Some(pid) = args.pid else {
        bail!("--syscalls follows one process: add --pid PID");
    };
    if args.pprof.is_some() || args.work.is_some() || args.rate.is_some() {
        bail!("--pprof, --work and --rate need Go's heap sampler: use them with --uprobe on a Go program");
    }
    for out in [&args.folded, &args.flamegraph, &args.json]
        .into_iter()
        .flatten()
    {
        check_output_path(out)?;
    }
    if args.interval <= 0.0 {
        bail!("--interval must be more than 0 seconds");
    }
    probes::require_root()?;
    if !procs::alive(pid) {
        bail!("no process with pid {pid}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(trace(args, pid))
}

/// Loads the heap-growth programs for process `pid` and attaches them.
fn attach(pid: u32) -> Result<Ebpf> {
    ensure_tracefs()?;
    let config = HeapConfig { tgid: pid, _pad: 0 };
    let mut ebpf = EbpfLoader::new()
        .override_global("HEAP_CONFIG", &config, true)
        .load(EBPF_OBJECT)
        .map_err(|e| kernel_error("load the eBPF programs", e.into()))?;
    for &(program, name) in TRACEPOINTS {
        crate::probes::attach_tracepoint(&mut ebpf, program, "syscalls", name)?;
    }
    Ok(ebpf)
}

/// Decodes a ring buffer record of kind [`EventKind::Map`].
fn decode(bytes: &[u8]) -> Option<Box<MapEvent>> {
    let kind = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    if kind != EventKind::Map as u32 || bytes.len() < std::mem::size_of::<MapEvent>() {
        return None;
    }
    // SAFETY: length checked; MapEvent is plain integers.
    let mut ev: Box<MapEvent> =
        Box::new(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) });
    ev.frames = ev.frames.min(MAX_FRAMES as u32);
    ev.words = ev.words.min(STACK_WORDS as u32);
    Some(ev)
}

/// The stack of a brk or mmap, innermost first: where the syscall was made;
/// then the return addresses found on the stack memory (`words`, read
/// from `sp` up) below the first frame pointer `bp` — the frames of code
/// without frame pointers, libc's, which the walk skips; then the rest of
/// the frame-pointer walk. When `bp` is not within the words, the scan
/// stops at the walk's first return address instead.
pub fn user_stack(
    walk: &[u64],
    sp: u64,
    bp: u64,
    words: &[u64],
    mut is_return_address: impl FnMut(u64) -> bool,
) -> Vec<u64> {
    let Some((&leaf, callers)) = walk.split_first() else {
        return Vec::new();
    };
    let mut out = vec![leaf];
    let span = words.len() as u64 * 8;
    let scanned = if bp > sp && bp - sp < span {
        &words[..((bp - sp) / 8) as usize]
    } else {
        words
    };
    for &w in scanned {
        if callers.first() == Some(&w) {
            break;
        }
        if is_return_address(w) {
            out.push(w);
        }
    }
    out.extend_from_slice(callers);
    out
}

/// Whether a frame is in the C library or the dynamic loader.
fn in_c_library(frame: &Frame) -> bool {
    let name = frame.file.rsplit('/').next().unwrap_or_default();
    ["libc.so", "libc-", "libc.musl", "ld-linux", "ld-musl"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Drops the C library's frames at the leaf end but the one the program
/// called (`malloc`), so the leaf is where the program asked for memory, as
/// Go's profiles trim the runtime. A stack of C library frames alone stays.
pub fn trim_c_library(frames: Vec<Frame>) -> Vec<Frame> {
    match frames.iter().position(|f| !in_c_library(f)) {
        Some(first_own) if first_own > 1 => frames.into_iter().skip(first_own - 1).collect(),
        _ => frames,
    }
}

/// The program break of `pid` now: the end of its `[heap]` mapping.
fn current_break(pid: u32) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .find(|l| l.ends_with("[heap]"))
        .and_then(|l| procs::parse_maps(l).first().map(|m| m.end))
}

struct HeapTracer {
    pid: u32,
    exe: PathBuf,
    mapped: MappedBytes,
    symbols: Symbolizer<RefCell<ProcessSymbols>>,
    /// Frames of each interned stack, symbolized when first seen (the
    /// process may be gone by the end).
    frames: HashMap<StackId, Arc<[Frame]>>,
    /// Whether a code address on the stack is a return address.
    return_addresses: HashMap<u64, bool>,
    started: Instant,
    previous_outstanding: Option<f64>,
}

impl HeapTracer {
    fn is_return_address(&mut self, addr: u64) -> bool {
        if let Some(known) = self.return_addresses.get(&addr) {
            return *known;
        }
        let mut symbols = self.symbols.source().borrow_mut();
        let yes = symbols.is_code(addr)
            && !symbols.starts_function(addr)
            && procs::read_i64(self.pid, addr.wrapping_sub(8))
                .map(|v| follows_call(v.to_le_bytes()))
                .unwrap_or(false);
        drop(symbols);
        self.return_addresses.insert(addr, yes);
        yes
    }

    fn stack_of(&mut self, ev: &MapEvent) -> StackId {
        let walk = &ev.stack[..ev.frames as usize];
        let words = &ev.stack_words[..ev.words as usize];
        let pcs = user_stack(walk, ev.sp, ev.bp, words, |a| self.is_return_address(a));
        log::debug!(
            "walk {:x?} sp {:#x} bp {:#x} → stack {:x?}",
            walk,
            ev.sp,
            ev.bp,
            pcs
        );
        let id = self.mapped.intern(&pcs);
        if !self.frames.contains_key(&id) {
            let frames = trim_c_library(self.symbols.stack(&pcs));
            self.frames.insert(id, frames.into());
        }
        id
    }

    fn handle(&mut self, ev: &MapEvent) {
        if ev.tgid != self.pid {
            return;
        }
        match ev.call {
            c if c == MapCall::Mmap as u32 => {
                let stack = self.stack_of(ev);
                self.mapped.mmap(ev.addr, ev.len, stack);
            }
            c if c == MapCall::Brk as u32 => {
                let stack = self.stack_of(ev);
                self.mapped.brk(ev.addr, stack);
            }
            c if c == MapCall::Munmap as u32 => self.mapped.munmap(ev.addr, ev.len),
            _ => {}
        }
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            let ev = decode(&item);
            drop(item);
            if let Some(ev) = ev {
                self.handle(&ev);
            }
        }
    }

    /// A snapshot for the reports; stacks that symbolize alike are merged.
    fn profile(&self, losses: Losses) -> Profile {
        let mut merged: HashMap<&Arc<[Frame]>, Totals> = HashMap::new();
        for (id, t) in self.mapped.stacks_with_totals() {
            let Some(frames) = self.frames.get(&id) else {
                continue;
            };
            let e = merged.entry(frames).or_default();
            e.outstanding_bytes += t.outstanding_bytes;
            e.outstanding_objects += t.outstanding_objects;
            e.allocated_bytes += t.allocated_bytes;
            e.allocated_objects += t.allocated_objects;
        }
        let mut stacks: Vec<StackProfile> = merged
            .into_iter()
            .map(|(frames, totals)| StackProfile {
                frames: frames.clone(),
                totals,
                growth: None,
            })
            .collect();
        stacks.sort_by(|a, b| {
            b.totals
                .outstanding_bytes
                .total_cmp(&a.totals.outstanding_bytes)
                .then(
                    b.totals
                        .allocated_bytes
                        .total_cmp(&a.totals.allocated_bytes),
                )
        });
        Profile {
            binary: self.exe.clone(),
            go_version: "native, brk/mmap".into(),
            pids: vec![self.pid],
            rate: 1,
            elapsed: self.started.elapsed(),
            gc_cycles: 0,
            samples: self.mapped.calls(),
            frees: self.mapped.unmaps(),
            total: self.mapped.total(),
            in_use_at_last_gc: None,
            previous_outstanding: self.previous_outstanding,
            stacks,
            losses,
            work: None,
        }
    }
}

fn losses(c: &KernelCounters) -> Losses {
    Losses {
        allocs_dropped: c.get(Counter::MapDropped),
        frees_dropped: 0,
        stacks_failed: c.get(Counter::StackFailed),
    }
}

async fn trace(args: TraceArgs, pid: u32) -> Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("cannot read the executable of pid {pid}"))?;
    let symbols = ProcessSymbols::new(pid)
        .with_context(|| format!("cannot read the memory map of pid {pid}"))?;
    let mut tracer = HeapTracer {
        pid,
        exe,
        mapped: MappedBytes::new(),
        symbols: Symbolizer::new(RefCell::new(symbols)),
        frames: HashMap::new(),
        return_addresses: HashMap::new(),
        started: Instant::now(),
        previous_outstanding: None,
    };
    let mut ebpf = attach(pid)?;
    // After attaching: a brk from here on is seen, so the break read now is
    // where growth starts.
    if let Some(brk) = current_break(pid) {
        tracer.mapped.set_break(brk);
    }
    let counters: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("no COUNTERS map")?)?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    #[allow(deprecated)] // as in trace.rs
    let mut ring = AsyncFd::new(ring)?;
    tracer.started = Instant::now();
    eprintln!(
        "leak: tracing heap growth (brk, mmap, munmap) of pid {pid} ({}); Ctrl-C to stop",
        tracer.exe.display()
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut report_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut alive_tick = tokio::time::interval(Duration::from_millis(500));
    let sleep_until_deadline = super::until_deadline(args.duration);
    tokio::pin!(sleep_until_deadline);

    let stop = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                tracer.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = report_tick.tick() => {
                let profile = tracer.profile(losses(&KernelCounters::read(&counters)));
                println!("{}", report::text::render(&profile, args.top, false));
                tracer.previous_outstanding = Some(profile.total.outstanding_bytes);
            }
            _ = alive_tick.tick() => {
                if !procs::alive(pid) {
                    break Some("leak: the traced process has exited");
                }
            }
            _ = &mut sleep_until_deadline => break None,
            _ = sigint.recv() => break Some("leak: SIGINT: stopping"),
            _ = sigterm.recv() => break Some("leak: SIGTERM: stopping"),
        }
    };
    tracer.drain(ring.get_mut());
    let losses = losses(&KernelCounters::read(&counters));
    drop(ring);
    drop(ebpf);
    if let Some(why) = stop {
        eprintln!("{why}");
    }
    let profile = tracer.profile(losses);
    println!(
        "final report\n{}",
        report::text::render(&profile, args.top, false)
    );
    super::write_profile_outputs(&args, &profile)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_scan_fills_in_frames_without_frame_pointers() {
        // Syscall in libc at 0x7000; libc frames 0x7100, 0x7200 on the
        // stack, then the C function's return 0x4100, a stray value, and
        // the walk's first return address 0x4200 at bp+8.
        let sp = 0x1000;
        let words = [
            0x7100,
            0x55,
            0x7200,
            0x4100,
            0x4200 - 1,
            0x2000,
            0x4200,
            0x9999,
        ];
        let is_ra = |a: u64| matches!(a, 0x7100 | 0x7200 | 0x4100 | 0x4200 | 0x9999);
        let walk = [0x7000, 0x4200, 0x4300];
        // bp points at the saved rbp (word 5), the walk continues at word 6.
        let with_bp = user_stack(&walk, sp, sp + 5 * 8, &words, is_ra);
        assert_eq!(with_bp, [0x7000, 0x7100, 0x7200, 0x4100, 0x4200, 0x4300]);
        // bp unusable: scan up to the walk's first return address.
        let without = user_stack(&walk, sp, 0, &words, is_ra);
        assert_eq!(without, with_bp);
        assert!(user_stack(&[], sp, 0, &words, is_ra).is_empty());
    }

    #[test]
    fn c_library_leaf_frames_are_trimmed_to_the_called_one() {
        let frame = |function: &str, file: &str| Frame::new(function, file, 0, false);
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let stack = vec![
            frame("brk", libc),
            frame("sbrk", libc),
            frame("malloc", libc),
            frame("leak_request_buffer", "/tmp/leaker"),
            frame("main", "/tmp/leaker"),
            frame("__libc_start_main", libc),
        ];
        let names: Vec<String> = trim_c_library(stack)
            .into_iter()
            .map(|f| f.function.to_string())
            .collect();
        assert_eq!(
            names,
            ["malloc", "leak_request_buffer", "main", "__libc_start_main"]
        );
        let only_libc = vec![frame("brk", libc), frame("exit", libc)];
        assert_eq!(trim_c_library(only_libc).len(), 2);
    }
}
