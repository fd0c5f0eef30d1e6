//! The Go runtime layer: everything leak knows about a Go program and
//! reads from a live Go runtime, beside each other and below every command
//! and pipeline (nothing here imports them).
//!
//! * The executable ([`GoBinary`]: ELF, `.gopclntab`, the Go release that
//!   built it, symbols) and what leak locates in it once ([`Program`]:
//!   probe addresses, `MemProfileRate`, the heap records' globals, the
//!   goroutine list, the GC's figures).
//! * The one table of Go-version facts ([`table`]): a row per range of
//!   releases, a sub-layout per concern (the heap probes, the heap
//!   records, …), each checked against real binaries.
//! * A running process ([`GoProcess`]: its program, load bias and memory,
//!   opened once) and the readers of its runtime: the heap profile
//!   records ([`records`]), the goroutines ([`goroutines`]) and the GC's
//!   own account of the heap ([`gcstats`]).
//!
//! Addresses in a [`GoBinary`] are link-time virtual addresses: a
//! [`GoProcess`] adds its load bias.

pub(crate) mod cgo;
pub(crate) mod elf;
pub(crate) mod error;
pub(crate) mod gcstats;
pub(crate) mod goroutines;
pub(crate) mod heapvars;
pub(crate) mod image;
pub(crate) mod memrate;
pub(crate) mod pclntab;
pub(crate) mod process;
pub(crate) mod program;
pub(crate) mod prologue;
pub(crate) mod records;
mod symbols;
pub(crate) mod table;
pub(crate) mod version;

#[cfg(test)]
mod refusals;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub(crate) use elf::GoBinary;
pub(crate) use error::GoError;
pub(crate) use process::GoProcess;
pub(crate) use program::Program;
