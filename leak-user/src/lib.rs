//! leak: find memory leaks in running Go programs with eBPF, without
//! changing or restarting them. The `leak` binary is a thin CLI over these
//! modules; data flows one way: probes → collect → aggregate → symbolize →
//! report.

pub mod aggregate;
pub mod cmd;
pub mod collect;
pub mod elfsym;
pub mod growth;
pub mod mapped;
pub mod mm;
pub mod probes;
pub mod procs;
pub mod report;
pub mod sampling;
pub mod symbolize;
pub mod target;
pub mod trend;
