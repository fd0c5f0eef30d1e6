//! The native allocation probes (leak-ebpf/src/native.rs): uprobes on the
//! allocator that serves one process, sampled by bytes in the kernel.

use std::num::NonZeroU32;

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
};
use leak_common::{HeapConfig, SAMPLE_GAPS};

use super::{load, program, take_map, Attached, Feature, ProbeError, Settings};
use crate::native::allocator::Allocator;

/// Sampled blocks followed at once: past this, a sampled block is counted
/// as lost (`LiveFull`) and not followed.
pub(crate) const MAX_LIVE: u32 = 1 << 18;

/// The attached native allocation probes.
pub(crate) struct NativeProbes {
    /// Sampled allocations and their frees.
    pub events: RingBuf<MapData>,
    /// Losses, per CPU, indexed by `leak_common::Counter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// The program for each allocator function.
fn program_of(function: &str) -> Option<&'static str> {
    Some(match function {
        "malloc" => "native_malloc",
        "calloc" => "native_calloc",
        "realloc" => "native_realloc",
        "free" => "native_free",
        _ => return None,
    })
}

/// Loads the native programs for process `pid`, fills the sampler's table
/// of gaps for a mean of `rate` bytes, and attaches a probe to each of
/// `allocator`'s functions (and a return probe to those that allocate).
pub(crate) fn attach(
    pid: u32,
    allocator: &Allocator,
    rate: u64,
) -> Result<NativeProbes, ProbeError> {
    let config = HeapConfig { tgid: pid, _pad: 0 };
    let mut ebpf = load(Settings {
        globals: vec![("NATIVE_CONFIG", (&config).into())],
        // Samples carry up to 8 KiB of stack each: room for bursts.
        map_sizes: vec![
            ("LIVE", MAX_LIVE),
            ("NATIVE_PENDING", 1024),
            ("EVENTS", 64 << 20),
        ],
    })?;
    let mut gaps: Array<_, u64> = take_map(&mut ebpf, "SAMPLE_GAPS_MAP")?;
    for (i, gap) in sample_gaps(rate).into_iter().enumerate() {
        gaps.set(i as u32, gap, 0)
            .map_err(|e| ProbeError::NotInObject(format!("SAMPLE_GAPS_MAP: {e}")))?;
    }
    let scope = match NonZeroU32::new(pid) {
        Some(pid) => UProbeScope::OneProcess(pid),
        None => UProbeScope::AllProcesses,
    };
    let mut load_and_attach = |name: &str, function: &str, offset: u64| {
        let probe: &mut UProbe = program(&mut ebpf, name)?;
        if probe.fd().is_err() {
            probe
                .load()
                .map_err(|e| ProbeError::from_program(&format!("load {name}"), None, &e))?;
        }
        let at = UProbeAttachLocation::AbsoluteOffset(offset);
        probe
            .attach(at, &allocator.open, scope)
            .map(|_| ())
            .map_err(|e| {
                let what = format!("attach a uprobe to {function} in {}", allocator.name);
                ProbeError::from_program(&what, Some(Feature::Uprobes), &e)
            })
    };
    for p in &allocator.probes {
        let Some(name) = program_of(p.function) else {
            continue;
        };
        load_and_attach(name, p.function, p.file_offset)?;
        // The return probe goes where the entry probe is: the instructions
        // stepped over leave the stack alone, so the return address is
        // still at the stack pointer, and the kernel emulates the one it
        // traps on instead of single-stepping the first.
        if p.function != "free" {
            load_and_attach("native_alloc_return", p.function, p.file_offset)?;
        }
    }
    Ok(NativeProbes {
        events: take_map(&mut ebpf, "EVENTS")?,
        counters: take_map(&mut ebpf, "COUNTERS")?,
        attached: Attached { _ebpf: ebpf },
    })
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
