//! The native allocation probes (leak-ebpf/src/native.rs): uprobes on the
//! allocator that serves one process, sampled by bytes in the kernel.

use std::{num::NonZeroU32, path::Path};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
};
use leak_common::{HeapConfig, NativeGoConfig, SAMPLE_GAPS};

use super::{borrow_map, load, program, take_map, Attached, Feature, ProbeError, Settings};
use crate::native::{
    allocator::{Allocator, Call},
    work::WorkProbe,
};

/// Sampled blocks followed at once: past this, a sampled block is counted
/// as lost (`LiveFull`) and not followed.
pub(crate) const MAX_LIVE: u32 = 1 << 18;

/// The attached native allocation probes.
pub(crate) struct NativeProbes {
    /// Sampled allocations and their frees.
    pub events: RingBuf<MapData>,
    /// Losses, per CPU, indexed by `leak_common::Counter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// Calls of `--work`'s function, per CPU.
    pub work_calls: PerCpuArray<MapData, u64>,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// The program that reads each kind of call at its entry, and the one at
/// its return (none for a free).
fn programs_of(call: Call) -> (&'static str, Option<&'static str>) {
    const RETURN: Option<&str> = Some("native_alloc_return");
    match call {
        Call::Malloc => ("native_malloc", RETURN),
        Call::Calloc => ("native_calloc", RETURN),
        Call::Realloc => ("native_realloc", RETURN),
        Call::ReallocArray => ("native_reallocarray", RETURN),
        Call::Memalign => ("native_memalign", RETURN),
        Call::PosixMemalign => (
            "native_posix_memalign",
            Some("native_posix_memalign_return"),
        ),
        Call::Free => ("native_free", None),
    }
}

/// The native programs loaded for one process, not yet all attached.
pub(crate) struct NativeLoad {
    ebpf: aya::Ebpf,
    pid: u32,
}

/// Loads the native programs for process `pid` and fills the sampler's
/// table of gaps for a mean of `rate` bytes; `go` says where a Go program
/// keeps the goroutine that called into C (all 0: not Go).
pub(crate) fn load_for(pid: u32, rate: u64, go: NativeGoConfig) -> Result<NativeLoad, ProbeError> {
    let config = HeapConfig { tgid: pid, _pad: 0 };
    let mut ebpf = load(Settings {
        globals: vec![
            ("NATIVE_CONFIG", (&config).into()),
            ("NATIVE_GO_CONFIG", (&go).into()),
        ],
        // Samples carry up to 8 KiB of stack each: room for bursts.
        map_sizes: vec![
            ("LIVE", MAX_LIVE),
            ("NATIVE_PENDING", 1024),
            ("EVENTS", 64 << 20),
        ],
    })?;
    // Borrowed, not taken: a map taken out and dropped would be closed
    // before the programs that use it are loaded.
    let mut gaps: Array<_, u64> = borrow_map(&mut ebpf, "SAMPLE_GAPS_MAP")?;
    for (i, gap) in sample_gaps(rate).into_iter().enumerate() {
        gaps.set(i as u32, gap, 0)
            .map_err(|e| ProbeError::NotInObject(format!("SAMPLE_GAPS_MAP: {e}")))?;
    }
    Ok(NativeLoad { ebpf, pid })
}

/// Loads the native programs for process `pid`, fills the sampler's table
/// of gaps for a mean of `rate` bytes, and attaches a probe to each of
/// `allocator`'s functions (and a return probe to those that allocate).
pub(crate) fn attach(
    pid: u32,
    allocator: &Allocator,
    rate: u64,
    go: NativeGoConfig,
    work: Option<&WorkProbe>,
) -> Result<NativeProbes, ProbeError> {
    let mut loaded = load_for(pid, rate, go)?;
    loaded.attach_allocator(allocator)?;
    if let Some(w) = work {
        loaded.attach_work(w)?;
    }
    loaded.finish()
}

impl NativeLoad {
    /// Attaches program `name` at file offset `offset` of `object` (shown
    /// as `shown`, `function` in it), for this process only.
    fn attach_at(
        &mut self,
        name: &str,
        object: &Path,
        shown: &str,
        function: &str,
        offset: u64,
    ) -> Result<(), ProbeError> {
        let scope = match NonZeroU32::new(self.pid) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let probe: &mut UProbe = program(&mut self.ebpf, name)?;
        if probe.fd().is_err() {
            probe
                .load()
                .map_err(|e| ProbeError::from_program(&format!("load {name}"), None, &e))?;
        }
        let at = UProbeAttachLocation::AbsoluteOffset(offset);
        probe.attach(at, object, scope).map(|_| ()).map_err(|e| {
            let what = format!("attach a uprobe to {function} in {shown}");
            ProbeError::from_program(&what, Some(Feature::Uprobes), &e)
        })
    }

    /// Stops the process (SIGSTOP) when it reaches the entry point of
    /// `program` (file offset `entry`): after the dynamic linker has mapped
    /// its libraries, before any of its code runs. For `leak trace -- CMD`,
    /// whose allocator is known only once the program is loaded.
    pub(crate) fn stop_at_entry(&mut self, program: &Path, entry: u64) -> Result<(), ProbeError> {
        let mut stop: HashMap<_, u32, u8> = borrow_map(&mut self.ebpf, "NATIVE_STOP")?;
        stop.insert(self.pid, 1, 0)
            .map_err(|e| ProbeError::NotInObject(format!("NATIVE_STOP: {e}")))?;
        let shown = program.display().to_string();
        self.attach_at("native_entry", program, &shown, "its entry point", entry)
    }

    /// Attaches a probe to each of `allocator`'s functions, and a return
    /// probe to those that allocate.
    pub(crate) fn attach_allocator(&mut self, allocator: &Allocator) -> Result<(), ProbeError> {
        let mut flag: Array<_, u32> = borrow_map(&mut self.ebpf, "NATIVE_REALLOC_NULL_IS_MALLOC")?;
        flag.set(0, u32::from(allocator.realloc_null_is_malloc), 0)
            .map_err(|e| ProbeError::NotInObject(format!("NATIVE_REALLOC_NULL_IS_MALLOC: {e}")))?;
        for p in &allocator.probes {
            let (entry, exit) = programs_of(p.call);
            let (open, shown) = (&allocator.open, allocator.name.as_str());
            // The return probe first: an entry probe that fires always has
            // its return seen (a call already running when the return probe
            // came never met the entry probe either). It goes where the
            // entry probe is: the instructions stepped over leave the stack
            // alone, so the return address is still at the stack pointer,
            // and the kernel emulates the one it traps on instead of
            // single-stepping the first.
            if let Some(exit) = exit {
                self.attach_at(exit, open, shown, p.function, p.file_offset)?;
            }
            self.attach_at(entry, open, shown, p.function, p.file_offset)?;
        }
        Ok(())
    }

    /// Counts the calls of `--work`'s function.
    pub(crate) fn attach_work(&mut self, w: &WorkProbe) -> Result<(), ProbeError> {
        self.attach_at("work_call", &w.open, &w.object, &w.function, w.file_offset)
    }

    /// The attached probes and the maps the pipeline reads.
    pub(crate) fn finish(mut self) -> Result<NativeProbes, ProbeError> {
        Ok(NativeProbes {
            events: take_map(&mut self.ebpf, "EVENTS")?,
            counters: take_map(&mut self.ebpf, "COUNTERS")?,
            work_calls: take_map(&mut self.ebpf, "WORK_CALLS")?,
            attached: Attached { _ebpf: self.ebpf },
        })
    }
}

/// The table of gaps between samples: quantiles of an exponential with
/// mean `rate` bytes, one per slot (the kernel picks a slot at random), so
/// an allocation of `s` bytes is sampled with probability about
/// `1 - exp(-s/rate)`. All 0 at rate 1: every allocation.
pub(crate) fn sample_gaps(rate: u64) -> Vec<u64> {
    let n = SAMPLE_GAPS as usize;
    if rate <= 1 {
        return vec![0; n];
    }
    (0..n)
        .map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            (-(1.0 - u).ln() * rate as f64).round() as u64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_the_rate() {
        let gaps = sample_gaps(4096);
        assert_eq!(gaps.len(), SAMPLE_GAPS as usize);
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64;
        assert!((mean / 4096.0 - 1.0).abs() < 0.01, "{mean}");
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]));
        assert!(sample_gaps(1).iter().all(|&g| g == 0));
    }
}
