//! The native layer: what leak knows about any program's code, whatever
//! its language: the ELF symbols of every object a process maps
//! ([`elfsym`]) and its user stacks rebuilt without frame pointers
//! ([`stacks`]). Like the Go layer beside it, it imports nothing above it.

pub(crate) mod elfsym;
pub(crate) mod stacks;
