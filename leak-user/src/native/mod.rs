//! The native layer: what leak knows about any program's code, whatever
//! its language: the allocator a process really uses and where its probes
//! go ([`allocator`]), the ELF symbols of every object a process maps
//! ([`elfsym`]), the source lines and inlined frames of those with DWARF
//! ([`dwarf`]), and its user stacks rebuilt without frame pointers
//! ([`stacks`], from a syscall's; [`unwind`], from `.eh_frame`). Like the Go layer beside it, it imports nothing above it.

pub(crate) mod allocator;
pub(crate) mod dwarf;
pub(crate) mod ehframe;
pub(crate) mod elfsym;
pub(crate) mod quiet;
pub(crate) mod stacks;
#[cfg(test)]
pub(crate) mod testprog;
pub(crate) mod unwind;
pub(crate) mod work;
