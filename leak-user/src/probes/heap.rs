//! The heap-growth probes of `leak trace --syscalls` (and `--pid` on a
//! native program): brk/mmap/munmap tracepoints filtered to one process
//! (leak-ebpf/src/heap.rs).

use aya::maps::{MapData, PerCpuArray, RingBuf};
use leak_common::HeapConfig;

use super::{attach_tracepoint, ensure_tracefs, load, take_map, Attached, ProbeError, Settings};

/// Program name in the eBPF object, tracepoint name (category `syscalls`).
const TRACEPOINTS: &[(&str, &str)] = &[
    ("heap_enter_brk", "sys_enter_brk"),
    ("heap_exit_brk", "sys_exit_brk"),
    ("heap_enter_mmap", "sys_enter_mmap"),
    ("heap_exit_mmap", "sys_exit_mmap"),
    ("heap_enter_munmap", "sys_enter_munmap"),
];

/// The attached heap-growth probes.
pub(crate) struct HeapProbes {
    /// brk, mmap and munmap records.
    pub events: RingBuf<MapData>,
    /// Losses, per CPU, indexed by `leak_common::Counter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// Loads the heap-growth programs for process `pid` and attaches them.
pub(crate) fn attach(pid: u32) -> Result<HeapProbes, ProbeError> {
    ensure_tracefs()?;
    let config = HeapConfig { tgid: pid, _pad: 0 };
    let mut ebpf = load(Settings {
        globals: vec![("HEAP_CONFIG", (&config).into())],
        ..Settings::default()
    })?;
    for &(program, name) in TRACEPOINTS {
        attach_tracepoint(&mut ebpf, program, "syscalls", name)?;
    }
    Ok(HeapProbes {
        events: take_map(&mut ebpf, "EVENTS")?,
        counters: take_map(&mut ebpf, "COUNTERS")?,
        attached: Attached { _ebpf: ebpf },
    })
}
