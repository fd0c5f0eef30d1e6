//! One module per subcommand.

pub mod top;
pub mod trace;
