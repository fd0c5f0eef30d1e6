//! One module per subcommand.

pub mod heapgrowth;
pub mod top;
pub mod trace;
