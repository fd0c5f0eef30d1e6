//! The Go runtime layer: everything leak knows about a Go program and
//! reads from a live Go runtime, beside each other and below every command
//! and pipeline (nothing here imports them).
//!
//! * The executable ([`GoBinary`]: ELF, `.gopclntab`, the Go release that
//!   built it, symbols) and what leak locates in it once ([`Program`]:
//!   probe addresses, `MemProfileRate`, the heap records' globals, the
//!   goroutine list).
//! * The one table of Go-version facts ([`table`]): a row per range of
//!   releases, a sub-layout per concern (the heap probes, the heap
//!   records, …), each checked against real binaries.
//! * A running process ([`GoProcess`]: its program, load bias and memory,
//!   opened once) and the readers of its runtime: the heap profile
//!   records ([`records`]) and the goroutines ([`goroutines`]).
//!
//! Addresses in a [`GoBinary`] are link-time virtual addresses: a
//! [`GoProcess`] adds its load bias.

pub mod elf;
pub mod error;
pub mod goroutines;
pub mod heapvars;
pub mod image;
pub mod memrate;
pub mod pclntab;
pub mod process;
pub mod program;
pub mod prologue;
pub mod records;
mod symbols;
pub mod table;
pub mod version;

#[cfg(test)]
mod refusals;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use elf::{GoBinary, Symbol};
pub use error::GoError;
pub use image::{LoadSegment, Section};
pub use memrate::{mem_profile_rate_addr, RateSource};
pub use pclntab::{Frame, FuncInfo, Pclntab};
pub use process::GoProcess;
pub use program::Program;
pub use table::{probes_for, RuntimeProbes};
pub use version::{GoVersion, VersionSource};
