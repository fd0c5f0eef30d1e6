//! Per-process memory for `leak top`: the kernel side's per-process maps
//! ([`kernel`]), what `/proc` adds ([`procfs`]), the RSS series and their
//! verdicts ([`watch`]), and the table and JSON they are shown as
//! ([`table`], [`json`]; the SVG chart is `report::chart`).

pub mod json;
pub mod kernel;
pub mod layout;
pub mod procfs;
pub mod table;
pub mod watch;
