#![warn(unreachable_pub)]
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

pub(crate) mod aggregate;
pub(crate) mod analysis;
pub mod cmd;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod frame;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod go;
pub(crate) mod mm;
pub(crate) mod native;
pub(crate) mod outputs;
pub(crate) mod pipeline;
pub(crate) mod probes;
pub(crate) mod process;
pub(crate) mod report;
pub(crate) mod sampling;
pub(crate) mod session;
pub(crate) mod symbolize;
pub(crate) mod units;
