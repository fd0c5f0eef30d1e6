//! A Go program's executable, opened and checked once, with everything leak
//! locates in it: its Go release and runtime table row, its loadable
//! segments (for each process's load bias), where its probes go (entry
//! points past the stack-growth check, by file offset), and the runtime
//! globals leak reads (`MemProfileRate`, the heap records, the goroutine
//! list, the GC's figures).

use std::{
    path::{Path, PathBuf},
    rc::Rc,
};

use super::{
    error::GoError,
    gcstats::{self, GcStatsVars},
    goroutines::locate::{self as goroutine_vars, GoroutineVars},
    heapvars::{self, HeapVars},
    memrate, prologue,
    table::{self, RuntimeProbes},
    GoBinary,
};
use crate::process::{self, exe::ExePath, maps::Segment, FileId};

/// What leak knows about a Go executable.
pub(crate) struct Program {
    /// Its name for people: the canonical host path, or the path a process
    /// in another mount namespace runs it as.
    pub path: PathBuf,
    /// Where leak opened it, and attaches uprobes: a path the host's kernel
    /// resolves (`/proc/PID/exe` for a container's binary).
    pub file: PathBuf,
    /// Identity on disk (processes are matched by it).
    pub id: FileId,
    /// The parsed binary.
    pub bin: Rc<GoBinary>,
    /// `go1.25.5`.
    pub version: String,
    /// Probes and argument positions for this Go version.
    pub runtime: &'static RuntimeProbes,
    /// Loadable segments (for the load bias of each process).
    pub segments: Vec<Segment>,
    /// Link-time address of `runtime.MemProfileRate`, if found.
    pub mem_profile_rate: Option<u64>,
    /// Link-time address of the allocation probe: an alloc record's
    /// instruction pointer less this is the process's load bias.
    pub alloc_probe: u64,
    /// The same for the start probe.
    pub start_probe: u64,
    /// Where the heap profile's records are (link-time addresses), located
    /// once for every process; why not, in one line.
    pub heap_records: Result<HeapVars, String>,
    /// Where the goroutine list and the wait-reason names are (link-time
    /// addresses), located once for every process; why not, in one line.
    pub goroutines: Result<GoroutineVars, String>,
    /// Where the GC's figures are (link-time addresses); why not, in one
    /// line.
    pub gc_stats: Result<GcStatsVars, String>,
}

impl Program {
    /// Opens and checks the binary at host path `path`, and resolves
    /// everything the probes need.
    pub(crate) fn open(path: &Path) -> Result<Self, GoError> {
        Self::open_exe(&ExePath::host(path))
    }

    /// The same for an executable that may live in another mount namespace.
    pub(crate) fn open_exe(exe: &ExePath) -> Result<Self, GoError> {
        Self::of(GoBinary::open(&exe.open)?, exe)
    }

    /// The same from a binary already opened (and parsed) from `exe.open`.
    pub(crate) fn of(bin: GoBinary, exe: &ExePath) -> Result<Self, GoError> {
        let (version, _source) = bin.go_version();
        let runtime = table::probes_for(&version)?;
        let id = FileId::of(&exe.open).map_err(|source| GoError::Io {
            path: exe.name.clone(),
            source,
        })?;
        let segments = bin
            .load_segments()
            .iter()
            .map(|s| Segment {
                vaddr: s.vaddr,
                offset: s.file_offset,
                filesz: s.file_size,
            })
            .collect();
        let mem_profile_rate = memrate::mem_profile_rate_addr(&bin)
            .ok()
            .map(|(addr, _)| addr);
        let probe = |f: &str| -> Result<u64, GoError> {
            let entry = bin.require_function(f)?.entry;
            Ok(prologue::probe_address(&bin, entry))
        };
        let alloc_probe = probe(runtime.probes.alloc_fn)?;
        let start_probe = probe(runtime.probes.start_fn)?;
        let heap_records = heapvars::heap_vars(&bin, runtime).map_err(|e| e.to_string());
        let goroutines = goroutine_vars::goroutine_vars(&bin, runtime).map_err(|e| e.to_string());
        let gc_stats = gcstats::gc_stats_vars(&bin, runtime).map_err(|e| e.to_string());
        Ok(Self {
            gc_stats,
            goroutines,
            heap_records,
            alloc_probe,
            start_probe,
            version: version.to_string(),
            runtime,
            mem_profile_rate,
            path: exe.name.clone(),
            file: exe.open.clone(),
            id,
            bin: Rc::new(bin),
            segments,
        })
    }

    /// The load bias of this binary in process `pid` (0 unless PIE).
    pub(crate) fn load_bias(&self, pid: u32) -> Option<u64> {
        process::maps::process_load_bias(pid, self.id.ino, &self.segments)
    }

    /// Where a uprobe on `function` goes: just past its stack-growth check
    /// (a call that grows its stack re-runs from the entry, and would be
    /// seen twice), as a file offset.
    pub(crate) fn probe_offset(&self, function: &str) -> Result<u64, GoError> {
        // A clear error with near matches if the name does not exist.
        let entry = self.bin.require_function(function)?.entry;
        let at = prologue::probe_address(&self.bin, entry);
        self.bin
            .vaddr_to_file_offset(at)
            .ok_or_else(|| GoError::OutsideSegments {
                function: function.to_string(),
                addr: at,
            })
    }

    /// Build ids for the pprof mapping: the ELF one, else Go's.
    pub(crate) fn build_id(&self) -> Option<String> {
        self.bin
            .build_id()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
            .or_else(|| self.bin.go_build_id())
    }
}

/// `ip` (at or just past the probe) less the probe's link-time address,
/// rounded down to the page.
pub(crate) fn bias_from_ip(ip: u64, probe: u64) -> u64 {
    ip.wrapping_sub(probe) & !0xfff
}

#[cfg(test)]
mod tests {
    use super::bias_from_ip;

    #[test]
    fn bias_comes_from_the_probes_own_address() {
        // Not PIE: the probe runs where it was linked.
        assert_eq!(bias_from_ip(0x41_2345, 0x41_2345), 0);
        assert_eq!(bias_from_ip(0x41_2346, 0x41_2345), 0, "ip past the int3");
        // PIE: loaded at a page-aligned bias.
        let bias = 0x5555_5555_4000;
        assert_eq!(bias_from_ip(bias + 0x1_2345, 0x1_2345), bias);
        assert_eq!(bias_from_ip(bias + 0x1_2346, 0x1_2345), bias);
    }
}
