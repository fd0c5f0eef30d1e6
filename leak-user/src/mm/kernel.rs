//! The kernel side of `leak top`: loads the `rss_stat` and `sys_exit`
//! tracepoint programs (leak-ebpf/src/mm.rs) and reads the per-process
//! maps they fill, with each CPU's pending slot (the latest events of the
//! process that last had one there, not yet moved into the maps).

use std::{collections::HashMap, path::Path};

use crate::probes::ProbeError;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap};
use leak_common::{MmActivity, MmCounter, MmPending, MmRssPending, MmStats, MM_COUNTERS};

use super::watch::{add_pending, sum_activity, take_pending_rss};
use crate::probes::{
    self,
    census::{self, Census},
    mm::Programs,
    Attached,
};

/// What the kernel side knows about one process.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelView {
    /// RSS counters and program break, if the process changed them.
    pub stats: Option<MmStats>,
    /// Mapped bytes and call counts, summed over CPUs.
    pub activity: MmActivity,
}

/// Kernel-side losses, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lost {
    /// rss_stat events for an mm whose owner was not known.
    pub rss_events_unattributed: u64,
    /// Updates lost because the per-process maps were full.
    pub stats_insert_failed: u64,
}

/// The loaded, attached tracepoints and their maps; detached when dropped.
pub(crate) struct MmProbes {
    stats: BpfHashMap<MapData, u32, MmStats>,
    activity: PerCpuHashMap<MapData, u32, MmActivity>,
    pending: PerCpuArray<MapData, MmPending>,
    rss_pending: PerCpuArray<MapData, MmRssPending>,
    counters: PerCpuArray<MapData, u64>,
    owners: BpfHashMap<MapData, u64, u32>,
    // Last: the programs stay attached while the maps are read.
    _attached: Attached,
}

impl MmProbes {
    /// Loads `programs` and attaches them to their tracepoints.
    pub(crate) fn attach(programs: Programs) -> Result<Self, ProbeError> {
        // Offsets for the raw rss_stat program; without them, the event
        // format does the work (slower: a perf record per page fault).
        let layout = match super::layout::read(Path::new(super::layout::VMLINUX_BTF)) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "leak: no kernel layout from BTF ({e:#}); reading RSS through the kmem:rss_stat event format (slower)"
                );
                None
            }
        };
        let probes::mm::TopProbes {
            stats,
            activity,
            pending,
            rss_pending,
            counters,
            owners,
            attached,
        } = probes::mm::attach(layout, programs)?;
        Ok(Self {
            stats,
            activity,
            pending,
            rss_pending,
            counters,
            owners,
            _attached: attached,
        })
    }

    /// Everything the maps and each CPU's pending slots hold, by tgid.
    pub(crate) fn read(&self) -> HashMap<u32, KernelView> {
        let mut out: HashMap<u32, KernelView> = HashMap::new();
        self.read_rss(&mut out);
        self.read_activity(&mut out);
        out
    }

    /// RSS counters and program breaks: the map's, and each CPU's pending
    /// counters where later.
    fn read_rss(&self, out: &mut HashMap<u32, KernelView>) {
        for (pid, stats) in self.stats.iter().flatten() {
            out.entry(pid).or_default().stats = Some(stats);
        }
        let Ok(per_cpu) = self.rss_pending.get(&0, 0) else {
            return;
        };
        for p in per_cpu.iter().filter(|p| p.rss_seen != 0) {
            let stats = out.entry(p.tgid).or_default().stats.get_or_insert(MmStats {
                mm: p.mm,
                ..MmStats::default()
            });
            take_pending_rss(stats, p);
        }
    }

    /// Mapped bytes and call counts: the map's sums plus each CPU's
    /// pending ones. The slots are read after the map: sums that move
    /// into it meanwhile are missing from this reading (the next has
    /// them), never counted twice.
    fn read_activity(&self, out: &mut HashMap<u32, KernelView>) {
        for (pid, per_cpu) in self.activity.iter().flatten() {
            out.entry(pid).or_default().activity = sum_activity(per_cpu.iter());
        }
        let Ok(per_cpu) = self.pending.get(&0, 0) else {
            return;
        };
        for p in per_cpu.iter().filter(|p| p.activity.syscalls != 0) {
            let view = out.entry(p.tgid).or_default();
            view.activity = add_pending(&view.activity, &p.activity);
        }
    }

    /// Drops what the maps hold about `pid` (it exited).
    pub(crate) fn forget(&mut self, pid: u32) {
        let _ = self.stats.remove(&pid);
        let _ = self.activity.remove(&pid);
    }

    /// Drops what the maps hold about every process that has exited: the
    /// owners of mms (the processes [`MmProbes::forget`] is told of are
    /// the watched ones; an mm's owner may never have been).
    pub(crate) fn sweep_exited(&mut self) {
        census::sweep(&mut self.owned_mms());
    }

    /// Each map's entries, and those of processes that have exited.
    pub(crate) fn census(&mut self) -> Vec<(&'static str, Census)> {
        vec![
            (
                "MM_STATS",
                census::count(&census::Owned {
                    map: &mut self.stats,
                    tgid_of: |&tgid, _| tgid,
                }),
            ),
            ("MM_ACTIVITY", census::count(&self.activity)),
            ("MM_OWNERS", census::count(&self.owned_mms())),
        ]
    }

    fn owned_mms(&mut self) -> census::Owned<'_, u64, u32> {
        census::Owned {
            map: &mut self.owners,
            tgid_of: |_, &tgid| tgid,
        }
    }

    /// Kernel-side losses so far.
    pub(crate) fn lost(&self) -> Lost {
        let get = |c: MmCounter| -> u64 {
            debug_assert!((c as u32) < MM_COUNTERS);
            self.counters
                .get(&(c as u32), 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        Lost {
            rss_events_unattributed: get(MmCounter::RssUnattributed),
            stats_insert_failed: get(MmCounter::StatsInsertFailed),
        }
    }
}
