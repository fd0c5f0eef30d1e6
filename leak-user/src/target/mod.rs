//! The traced program as a file: its ELF layout, Go's function table
//! (`.gopclntab`), the Go release that built it, and the per-release facts
//! about the runtime that the probes depend on.
//!
//! Everything here reads the executable only; nothing needs root or a
//! running process. Addresses are link-time virtual addresses: add a PIE
//! process's load bias (from `/proc/PID/maps` and [`LoadSegment`]) to get
//! runtime addresses, and use [`GoBinary::vaddr_to_file_offset`] to attach
//! uprobes.
//!
//! Typical use, from opening the file to the probe list:
//!
//! ```text
//! let bin = GoBinary::open("/proc/1234/exe")?;
//! let (go, _source) = version::detect(&bin);
//! let probes = probes_for(&go)?;
//! let alloc = bin.pclntab().func_by_name(probes.alloc_fn);
//! ```

pub mod elf;
pub mod error;
pub mod heapvars;
pub mod image;
pub mod memrate;
pub mod pclntab;
pub mod prologue;
pub mod runtime;
pub mod version;

#[cfg(test)]
mod refusals;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use elf::{GoBinary, Symbol};
pub use error::TargetError;
pub use image::{LoadSegment, Section};
pub use memrate::{mem_profile_rate_addr, RateSource};
pub use pclntab::{Frame, FuncInfo, Pclntab};
pub use runtime::{probes_for, RuntimeProbes};
pub use version::{GoVersion, VersionSource};
