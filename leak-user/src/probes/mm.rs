//! `leak top`'s probes: the `rss_stat` and `sys_exit` tracepoints
//! (leak-ebpf/src/mm.rs), with the per-process maps they fill.

use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap};
use leak_common::{MmActivity, MmKernelLayout, MmStats};

use super::{
    attach_raw_tracepoint, attach_tracepoint, ensure_tracefs, load, take_map, Attached, ProbeError,
    Settings,
};

/// Raw tracepoints: program name in the eBPF object, tracepoint name.
const RAW_SYSCALL_EXIT: (&str, &str) = ("mm_sys_exit", "sys_exit");
const RAW_RSS_STAT: (&str, &str) = ("mm_rss_stat", "rss_stat");
/// Without a BTF layout: the `kmem:rss_stat` event format.
const RSS_STAT_EVENT: (&str, &str, &str) = ("mm_rss_stat_event", "kmem", "rss_stat");

/// The attached `leak top` probes.
pub(crate) struct TopProbes {
    /// RSS counters and program break, by tgid.
    pub stats: HashMap<MapData, u32, MmStats>,
    /// Mapped bytes and call counts, by tgid, per CPU.
    pub activity: PerCpuHashMap<MapData, u32, MmActivity>,
    /// Counters, per CPU, indexed by `leak_common::MmCounter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// Loads the programs and attaches them: the raw `rss_stat` program reads
/// the counters at `layout`'s offsets; without a layout the
/// `kmem:rss_stat` event format does the work (slower: a perf record per
/// page fault).
pub(crate) fn attach(layout: Option<MmKernelLayout>) -> Result<TopProbes, ProbeError> {
    ensure_tracefs()?;
    let config = layout.unwrap_or_default();
    let mut ebpf = load(Settings {
        globals: vec![("MM_LAYOUT", (&config).into())],
        // The uprobes' ring buffer is not used here: keep it small.
        map_sizes: vec![("EVENTS", 4096)],
    })?;
    attach_raw_tracepoint(&mut ebpf, RAW_SYSCALL_EXIT.0, RAW_SYSCALL_EXIT.1)?;
    if layout.is_some() {
        attach_raw_tracepoint(&mut ebpf, RAW_RSS_STAT.0, RAW_RSS_STAT.1)?;
    } else {
        let (program, category, name) = RSS_STAT_EVENT;
        attach_tracepoint(&mut ebpf, program, category, name)?;
    }
    Ok(TopProbes {
        stats: take_map(&mut ebpf, "MM_STATS")?,
        activity: take_map(&mut ebpf, "MM_ACTIVITY")?,
        counters: take_map(&mut ebpf, "MM_COUNTERS_MAP")?,
        attached: Attached { _ebpf: ebpf },
    })
}
