//! The native pipeline: `leak trace --pid PID` on a program that is not
//! Go, or `leak trace --syscalls`. Where does the heap grow? User stacks at
//! every brk and anonymous mmap of one process, outstanding mapped bytes per
//! stack (munmap and brk shrinking give back), the same reports as the Go
//! pipeline.
//!
//! This sees the allocator asking the kernel for memory, not each malloc:
//! a stack here is the one whose allocation made the heap grow, which for a
//! steady leak is, with time, the leaking one.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::error::{refuse, Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use leak_common::{Counter, MapCall, MapEvent};

use crate::{
    aggregate::{mapped::MappedBytes, merged::MergedStacks, StackId},
    event::{KernelCounters, Record},
    native::{
        elfsym::{follows_call, ProcessSymbols},
        stacks::{trim_c_library, user_stack},
    },
    outputs::Outputs,
    probes::{self, heap::HeapProbes},
    process::{
        self,
        memory::{Memory, ProcessMemory},
    },
    report::{Losses, Profile, Source, StackProfile, Unit},
    session::{self, Pipeline, Stop, Timing},
    symbolize::Symbolizer,
};

/// How often leak checks that the process still runs.
const ALIVE_EVERY: Duration = Duration::from_millis(500);

/// What `leak trace --pid` on a native program was asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The process.
    pub pid: u32,
    /// Stacks in the text report.
    pub top: usize,
    /// Seconds between reports.
    pub interval: f64,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Files to write at the end.
    pub outputs: Outputs,
}

/// Checks the process, then traces its heap growth until told to stop and
/// writes every requested output.
pub(crate) fn run(options: Options) -> Result<()> {
    if !process::alive(options.pid) {
        refuse!("{}", process::not_there(&options.pid));
    }
    session::block_on(trace(options))
}

struct NativePipeline {
    options: Options,
    exe: PathBuf,
    memory: Option<ProcessMemory>,
    mapped: MappedBytes,
    symbols: Symbolizer<RefCell<ProcessSymbols>>,
    /// Stacks symbolized when first seen (the process may be gone by the
    /// end), merged by what they read.
    merged: MergedStacks,
    /// Whether a code address on the stack is a return address.
    return_addresses: HashMap<u64, bool>,
    counters: Option<PerCpuArray<MapData, u64>>,
    started: Instant,
    previous_outstanding: Option<f64>,
    last_alive_check: Instant,
}

async fn trace(options: Options) -> Result<()> {
    let pid = options.pid;
    let exe = process::exe(pid).map_err(|e| crate::error::Error::Refused(e.to_string()))?;
    let symbols =
        ProcessSymbols::new(pid).context(|| format!("cannot read the memory map of pid {pid}"))?;
    let now = Instant::now();
    let mut p = NativePipeline {
        exe,
        memory: ProcessMemory::open(pid).ok(),
        mapped: MappedBytes::new(),
        symbols: Symbolizer::native(RefCell::new(symbols)),
        merged: MergedStacks::default(),
        return_addresses: HashMap::new(),
        counters: None,
        started: now,
        previous_outstanding: None,
        last_alive_check: now,
        options,
    };
    let HeapProbes {
        events: ring,
        counters,
        attached,
    } = probes::heap::attach(pid)?;
    // After attaching: a brk from here on is seen, so the break read now is
    // where growth starts.
    if let Some(brk) = process::maps::program_break(pid) {
        p.mapped.set_break(brk);
    }
    p.counters = Some(counters);
    p.started = Instant::now();
    eprintln!(
        "leak: tracing heap growth (brk, mmap, munmap) of pid {pid} ({}); Ctrl-C to stop",
        p.exe.display()
    );
    let timing = Timing {
        report_every: Duration::from_secs_f64(p.options.interval),
        poll_every: Some(ALIVE_EVERY),
        duration: p.options.duration,
    };
    let stop = session::run(&mut p, Some(ring), timing).await?;
    let losses = p.losses();
    p.counters = None;
    drop(attached);
    if stop == Stop::AllExited {
        eprintln!("leak: the traced process has exited");
    }
    let mut profile = p.profile();
    profile.losses = losses;
    println!(
        "final report\n{}",
        crate::report::text::render(&profile, p.options.top, false)
    );
    p.options.outputs.write_profile(&profile)
}

impl Pipeline for NativePipeline {
    fn handle(&mut self, record: Record) {
        if let Record::Map(ev) = record {
            self.handle_map(&ev);
        }
    }

    fn poll(&mut self) -> Result<Option<Stop>> {
        if self.last_alive_check.elapsed() >= ALIVE_EVERY {
            self.last_alive_check = Instant::now();
            if !process::alive(self.options.pid) {
                return Ok(Some(Stop::AllExited));
            }
        }
        Ok(None)
    }

    fn report(&mut self) -> Result<Option<Stop>> {
        let profile = self.profile();
        println!(
            "{}",
            crate::report::text::render(&profile, self.options.top, false)
        );
        self.previous_outstanding = Some(profile.total.outstanding_bytes);
        Ok(None)
    }
}

impl NativePipeline {
    fn is_return_address(&mut self, addr: u64) -> bool {
        if let Some(known) = self.return_addresses.get(&addr) {
            return *known;
        }
        let mut symbols = self.symbols.source().borrow_mut();
        let yes = symbols.is_code(addr)
            && !symbols.starts_function(addr)
            && self
                .memory
                .as_ref()
                .and_then(|m| m.read_i64(addr.wrapping_sub(8)).ok())
                .is_some_and(|v| follows_call(v.to_le_bytes()));
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
        // Symbolized now: the process may be gone by the end.
        let (mapped, symbols) = (&self.mapped, &mut self.symbols);
        self.merged
            .catch_up(mapped.stack_count(), usize::MAX, |id| {
                trim_c_library(symbols.stack(mapped.stack(id)))
            });
        id
    }

    fn handle_map(&mut self, ev: &MapEvent) {
        if ev.tgid != self.options.pid {
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

    fn losses(&self) -> Losses {
        let Some(counters) = &self.counters else {
            return Losses::default();
        };
        let c = KernelCounters::read(counters);
        Losses {
            allocs_dropped: c.get(Counter::MapDropped),
            stacks_failed: c.get(Counter::StackFailed),
            ..Losses::default()
        }
    }

    /// A snapshot for the reports; stacks that symbolize alike are merged.
    fn profile(&self) -> Profile {
        let totals = self
            .merged
            .totals(self.mapped.stacks_with_totals().map(|(id, t)| (id, *t)));
        let stacks = totals
            .into_iter()
            .map(|(m, totals)| StackProfile {
                held_at_exit: 0.0,
                frames: self.merged.frames(m).clone(),
                totals,
                growth: None,
            })
            .collect();
        let mut profile = Profile {
            binary: self.exe.clone(),
            source: Source::Syscalls,
            unit: Unit::Bytes,
            pids: vec![self.options.pid],
            elapsed: self.started.elapsed(),
            samples: self.mapped.calls(),
            frees: self.mapped.unmaps(),
            total: self.mapped.total(),
            previous_outstanding: self.previous_outstanding,
            stacks,
            losses: self.losses(),
            work: None,
            goroutines: None,
        };
        profile.sort_by_outstanding();
        profile
    }
}
