//! One pipeline per mode, each a [`crate::session::Pipeline`]: it drains
//! its events into its aggregate, does its periodic work, and snapshots it
//! into reports. A new data source is a new module here.
//!
//! - [`go`]: Go's heap sampler, through uprobes on the runtime.
//! - [`native`]: brk/mmap stacks of any program.
//! - [`top`]: resident memory of every process, from memory tracepoints.

pub(crate) mod go;
pub(crate) mod native;
pub(crate) mod top;
pub(crate) mod top_go;
