//! leak: find memory leaks in running programs with eBPF, without changing
//! or restarting them. The `leak` binary is a thin CLI over these modules.
//! Data flows one way:
//!
//! ```text
//! probes ─▶ event ─▶ pipeline (aggregate, analysis) ─▶ report ─▶ outputs
//!                    (one per mode, run by session)
//! go, native, process: the layers below, what leak knows about programs;
//! each imports nothing above it
//! ```

pub mod aggregate;
pub mod analysis;
pub mod cmd;
pub mod error;
pub mod event;
pub mod frame;
pub mod go;
pub mod mm;
pub mod native;
pub mod outputs;
pub mod pipeline;
pub mod probes;
pub mod process;
pub mod report;
pub mod sampling;
pub mod session;
pub mod symbolize;
pub mod units;
