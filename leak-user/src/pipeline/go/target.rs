//! The Go binary being traced: opened and checked once, with what the
//! probes need (entry points past the stack-growth check, by file offset)
//! and what the reports need (its symbols, through `.gopclntab`).

use std::{
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::{Context, Result};
use leak_common::ProbeConfig;

use crate::{
    frame::Frame,
    probes::go::Attachment,
    process::{self, maps::Segment, FileId},
    symbolize::SymbolSource,
    target::{self, GoBinary, RuntimeProbes},
};

/// What leak knows about the traced binary.
pub struct Target {
    /// Canonical path.
    pub path: PathBuf,
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
    pub heap_records: Result<target::heapvars::HeapVars, String>,
}

impl Target {
    /// Opens and checks the binary, and resolves everything the probes need.
    pub fn open(path: &Path) -> Result<Self> {
        let bin = GoBinary::open(path)?;
        let (version, _source) = bin.go_version();
        let runtime = target::probes_for(&version)?;
        let id = FileId::of(path).with_context(|| format!("cannot stat {}", path.display()))?;
        let segments = bin
            .load_segments()
            .iter()
            .map(|s| Segment {
                vaddr: s.vaddr,
                offset: s.file_offset,
                filesz: s.file_size,
            })
            .collect();
        let mem_profile_rate = target::mem_profile_rate_addr(&bin)
            .ok()
            .map(|(addr, _)| addr);
        let probe = |f: &str| -> Result<u64> {
            let entry = bin.require_function(f)?.entry;
            Ok(target::prologue::probe_address(&bin, entry))
        };
        let alloc_probe = probe(runtime.alloc_fn)?;
        let start_probe = probe(runtime.start_fn)?;
        let heap_records = target::heapvars::heap_vars(&bin, runtime).map_err(|e| e.to_string());
        Ok(Self {
            heap_records,
            alloc_probe,
            start_probe,
            version: version.to_string(),
            runtime,
            mem_profile_rate,
            path: std::fs::canonicalize(path)?,
            id,
            bin: Rc::new(bin),
            segments,
        })
    }

    /// The load bias of this binary in process `pid` (0 unless PIE).
    pub fn load_bias(&self, pid: u32) -> Option<u64> {
        process::maps::process_load_bias(pid, self.id.ino, &self.segments)
    }

    /// The load bias of the process whose alloc probe saw `ip`, with no
    /// read of /proc: PIE biases are page-aligned, so whether the kernel
    /// reports the breakpoint's address or the one after it, the page-aligned
    /// difference is the bias.
    pub fn bias_from_ip(&self, ip: u64) -> u64 {
        bias_from_ip(ip, self.alloc_probe)
    }

    /// The same from a start record's instruction pointer.
    pub fn bias_from_start_ip(&self, ip: u64) -> u64 {
        bias_from_ip(ip, self.start_probe)
    }

    /// Where a uprobe on `function` goes: just past its stack-growth check
    /// (a call that grows its stack re-runs from the entry, and would be
    /// seen twice), as a file offset.
    fn probe_offset(&self, function: &str) -> Result<u64> {
        // A clear error with near matches if the name does not exist.
        let entry = self.bin.require_function(function)?.entry;
        let at = target::prologue::probe_address(&self.bin, entry);
        self.bin
            .vaddr_to_file_offset(at)
            .with_context(|| format!("{function} at {at:#x} is outside every loadable segment"))
    }

    /// The probes for this binary's Go version, and `--work`'s function.
    pub fn attachments(&self, work: Option<&str>) -> Result<(ProbeConfig, Vec<Attachment>)> {
        let row = self.runtime;
        let config = row.probe_config();
        let mut out = Vec::new();
        let probes = [
            ("go_alloc", row.alloc_fn),
            ("go_free", row.free_fn),
            ("go_gc_cycle", row.gc_fn),
            ("go_start", row.start_fn),
        ];
        let work = work.map(|f| ("go_work_call", f));
        for (program, function) in probes.into_iter().chain(work) {
            out.push(Attachment {
                program,
                function: function.to_string(),
                file_offset: self.probe_offset(function)?,
            });
        }
        Ok((config, out))
    }

    /// Build ids for the pprof mapping: the ELF one, else Go's.
    pub fn build_id(&self) -> Option<String> {
        self.bin
            .build_id()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
            .or_else(|| self.bin.go_build_id())
    }
}

/// `ip` (at or just past the probe) less the probe's link-time address,
/// rounded down to the page.
pub fn bias_from_ip(ip: u64, probe: u64) -> u64 {
    ip.wrapping_sub(probe) & !0xfff
}

/// The executable of process `pid` if it is a Go program.
pub fn go_executable(pid: u32) -> Result<Option<PathBuf>> {
    let exe = process::exe(pid)?;
    Ok(GoBinary::open(&exe).is_ok().then_some(exe))
}

/// Frames of the binary, as Go's profiles name them.
impl SymbolSource for Rc<GoBinary> {
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
        let frames = self.pclntab().frames(pc);
        if frames.is_empty() {
            return None;
        }
        Some(
            frames
                .into_iter()
                .filter(|f| !f.wrapper)
                .map(report_frame)
                .collect(),
        )
    }

    fn innermost_at(&self, pc: u64) -> Option<Option<Frame>> {
        let f = self.pclntab().frames(pc).into_iter().next()?;
        Some((!f.wrapper).then(|| report_frame(f)))
    }
}

fn report_frame(f: target::pclntab::Frame) -> Frame {
    Frame::new(f.function, f.file, f.line, f.inlined)
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
