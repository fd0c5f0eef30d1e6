//! Per-process memory for `leak top`: the kernel side's per-process maps
//! ([`kernel`], with the kernel's struct offsets from BTF in [`layout`]),
//! the RSS series and their verdicts ([`watch`]), rows by container
//! ([`group`]), and the table and JSON
//! they are shown as ([`table`], [`json`]; the SVG chart is
//! `report::chart`). `/proc` is read through [`crate::process`].

pub(crate) mod group;
pub(crate) mod json;
pub(crate) mod kernel;
pub(crate) mod layout;
pub(crate) mod table;
pub(crate) mod watch;
