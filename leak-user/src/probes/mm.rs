//! `leak top`'s probes: the `rss_stat` and `sys_exit` tracepoints
//! (leak-ebpf/src/mm.rs), with the per-process maps they fill.

use aya::{
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use leak_common::{MmActivity, MmKernelLayout, MmPending, MmRssPending, MmStats};

use super::{
    attach_raw_tracepoint, attach_tracepoint, ensure_tracefs, load, take_map, Attached, ProbeError,
    Settings,
};

/// Raw tracepoints: program name in the eBPF object, tracepoint name.
const RAW_SYSCALL_EXIT: (&str, &str) = ("mm_sys_exit", "sys_exit");
/// `sys_exit` without typed registers: the read helper on every syscall.
const READ_SYSCALL_EXIT: (&str, &str) = ("mm_sys_exit_read", "sys_exit");
const RAW_RSS_STAT: (&str, &str) = ("mm_rss_stat", "rss_stat");
/// Without a BTF layout: the `kmem:rss_stat` event format.
const RSS_STAT_EVENT: (&str, &str, &str) = ("mm_rss_stat_event", "kmem", "rss_stat");
/// The same raw tracepoints with programs that return at once.
const EMPTY_SYSCALL_EXIT: (&str, &str) = ("mm_sys_exit_empty", "sys_exit");
const EMPTY_RSS_STAT: (&str, &str) = ("mm_rss_stat_empty", "rss_stat");

/// Which programs go on `leak top`'s hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Programs {
    /// The programs that keep the per-process maps.
    #[default]
    Working,
    /// Programs that return at once, on the same raw tracepoints: the
    /// price of the hooks alone, for the benchmark's floor. The maps stay
    /// empty, so every reading comes from `/proc`.
    Empty,
}

/// The attached `leak top` probes.
pub(crate) struct TopProbes {
    /// RSS counters and program break, by tgid.
    pub stats: HashMap<MapData, u32, MmStats>,
    /// Mapped bytes and call counts, by tgid, per CPU.
    pub activity: PerCpuHashMap<MapData, u32, MmActivity>,
    /// Per CPU, the latest calls' sums not yet in `activity`.
    pub pending: PerCpuArray<MapData, MmPending>,
    /// Per CPU, the RSS counters of the process that changed its own last
    /// there, not yet in `stats`.
    pub rss_pending: PerCpuArray<MapData, MmRssPending>,
    /// Counters, per CPU, indexed by `leak_common::MmCounter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// The process each mm was last seen in: mm address → tgid.
    pub owners: HashMap<MapData, u64, u32>,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// Loads the programs and attaches them: the raw `rss_stat` program reads
/// the counters at `layout`'s offsets; without a layout the
/// `kmem:rss_stat` event format does the work (slower: a perf record per
/// page fault). [`Programs::Empty`] puts the empty programs on the raw
/// tracepoints instead, layout or not.
pub(crate) fn attach(
    layout: Option<MmKernelLayout>,
    programs: Programs,
) -> Result<TopProbes, ProbeError> {
    ensure_tracefs()?;
    let config = layout.unwrap_or_default();
    let mut ebpf = load(Settings {
        globals: vec![("MM_LAYOUT", (&config).into())],
        // The uprobes' ring buffer is not used here: keep it small.
        map_sizes: vec![("EVENTS", 4096)],
    })?;
    if programs == Programs::Empty {
        for (program, name) in [EMPTY_SYSCALL_EXIT, EMPTY_RSS_STAT] {
            attach_raw_tracepoint(&mut ebpf, program, name)?;
        }
    } else {
        attach_working(&mut ebpf, layout.is_some())?;
    }
    Ok(TopProbes {
        stats: take_map(&mut ebpf, "MM_STATS")?,
        activity: take_map(&mut ebpf, "MM_ACTIVITY")?,
        pending: take_map(&mut ebpf, "MM_PENDING")?,
        rss_pending: take_map(&mut ebpf, "MM_RSS_PENDING")?,
        counters: take_map(&mut ebpf, "MM_COUNTERS_MAP")?,
        owners: take_map(&mut ebpf, "MM_OWNERS")?,
        attached: Attached { _ebpf: ebpf },
    })
}

/// Attaches the working programs. With a layout (`has_layout`) both read the
/// current task through pointers typed by BTF (`bpf_get_current_task_btf`,
/// 5.11; `bpf_task_pt_regs`, 5.15); where the kernel refuses one, or
/// without a layout, its older form is used: `sys_exit` reading the
/// registers through the read helper, `rss_stat` on the event format.
fn attach_working(ebpf: &mut Ebpf, has_layout: bool) -> Result<(), ProbeError> {
    let typed = |ebpf: &mut Ebpf, (program, name): (&str, &str)| {
        has_layout
            && attach_raw_tracepoint(ebpf, program, name)
                .inspect_err(|e| log::debug!("{program}: {e}; using its older form"))
                .is_ok()
    };
    if !typed(ebpf, RAW_SYSCALL_EXIT) {
        attach_raw_tracepoint(ebpf, READ_SYSCALL_EXIT.0, READ_SYSCALL_EXIT.1)?;
    }
    if !typed(ebpf, RAW_RSS_STAT) {
        let (program, category, name) = RSS_STAT_EVENT;
        attach_tracepoint(ebpf, program, category, name)?;
    }
    Ok(())
}
