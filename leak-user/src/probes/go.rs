//! The Go probes: uprobes on the runtime's heap profiler, GC and start, and
//! on `--work`'s function (leak-ebpf/src/go.rs), with the maps the Go
//! pipeline reads while tracing.

use std::{num::NonZeroU32, path::Path};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
};
use leak_common::ProbeConfig;

use super::{
    census::{self, Census},
    load, program, take_map, Attached, Feature, ProbeError, Settings,
};

/// One uprobe: which program goes on which function.
#[derive(Clone, Debug)]
pub(crate) struct Attachment {
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Go function the probe goes on (for messages).
    pub function: String,
    /// File offset of the function's first instruction.
    pub file_offset: u64,
}

/// Kernel maps the Go pipeline reads while tracing.
pub(crate) struct GoMaps {
    /// Losses, per CPU, indexed by `leak_common::Counter`.
    pub counters: PerCpuArray<MapData, u64>,
    /// Calls of `--work`'s function, per CPU.
    pub work_calls: PerCpuArray<MapData, u64>,
    /// The kernel's set of buckets whose stack was sent, to forget a
    /// process's buckets when it exits (its pid may be reused).
    pub known_buckets: HashMap<MapData, [u64; 2], u8>,
    /// Processes to stop at `runtime.main` (`leak trace -- CMD`).
    pub stop_at_start: HashMap<MapData, u32, u8>,
}

impl GoMaps {
    /// Drops the entries of processes that have exited.
    pub(crate) fn sweep_exited(&mut self) {
        census::sweep(&mut self.buckets_by_process());
        census::sweep(&mut self.stops_by_process());
    }

    /// Each per-process map's entries, and those of processes that have
    /// exited.
    pub(crate) fn census(&mut self) -> Vec<(&'static str, Census)> {
        vec![
            ("KNOWN_BUCKETS", census::count(&self.buckets_by_process())),
            ("STOP_AT_START", census::count(&self.stops_by_process())),
        ]
    }

    fn buckets_by_process(&mut self) -> census::Owned<'_, [u64; 2], u8> {
        census::Owned {
            map: &mut self.known_buckets,
            tgid_of: |key, _| key[0] as u32,
        }
    }

    fn stops_by_process(&mut self) -> census::Owned<'_, u32, u8> {
        census::Owned {
            map: &mut self.stop_at_start,
            tgid_of: |&tgid, _| tgid,
        }
    }
}

/// The attached Go probes.
pub(crate) struct GoProbes {
    /// Samples, frees, GC cycles and starts.
    pub events: RingBuf<MapData>,
    /// What the pipeline reads and writes while tracing.
    pub maps: GoMaps,
    /// The programs; detached when dropped.
    pub attached: Attached,
}

/// Loads the eBPF object with `config` and attaches every uprobe in
/// `attachments` to `binary`, for process `pid` only or for every process
/// running `binary` (also those started later).
pub(crate) fn attach(
    binary: &Path,
    pid: Option<u32>,
    config: ProbeConfig,
    attachments: &[Attachment],
) -> Result<GoProbes, ProbeError> {
    let mut ebpf = load(Settings {
        globals: vec![("CONFIG", (&config).into())],
        ..Settings::default()
    })?;
    let scope = match pid.and_then(NonZeroU32::new) {
        Some(pid) => UProbeScope::OneProcess(pid),
        None => UProbeScope::AllProcesses,
    };
    for a in attachments {
        let probe: &mut UProbe = program(&mut ebpf, a.program)?;
        probe
            .load()
            .map_err(|e| ProbeError::from_program(&format!("load {}", a.program), None, &e))?;
        let at = UProbeAttachLocation::AbsoluteOffset(a.file_offset);
        probe.attach(at, binary, scope).map_err(|e| {
            let what = format!("attach a uprobe to {} in {}", a.function, binary.display());
            ProbeError::from_program(&what, Some(Feature::Uprobes), &e)
        })?;
    }
    Ok(GoProbes {
        events: take_map(&mut ebpf, "EVENTS")?,
        maps: GoMaps {
            counters: take_map(&mut ebpf, "COUNTERS")?,
            work_calls: take_map(&mut ebpf, "WORK_CALLS")?,
            known_buckets: take_map(&mut ebpf, "KNOWN_BUCKETS")?,
            stop_at_start: take_map(&mut ebpf, "STOP_AT_START")?,
        },
        attached: Attached { _ebpf: ebpf },
    })
}
