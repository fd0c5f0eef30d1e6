//! One module per subcommand: its arguments, their checks, and the
//! pipeline (or layer) they choose. The work is in [`crate::pipeline`] and
//! the layers below it. Each `run` returns leak's exit status: 0, or the
//! status of the program `leak trace -- CMD` ran (a shell's 126/127 when
//! it could not be run); an error is one line and status 1.

pub mod goroutines;
pub mod heap;
pub mod rate_guard;
pub mod top;
pub mod trace;

use anyhow::{bail, Result};

/// `--interval` must be a positive, finite number of seconds.
fn check_interval(secs: f64) -> Result<()> {
    if !(secs > 0.0 && secs.is_finite()) {
        bail!("--interval must be more than 0 seconds");
    }
    Ok(())
}

/// `--duration`, if given, must be 0 or more seconds.
fn check_duration(secs: Option<f64>) -> Result<()> {
    if let Some(d) = secs {
        if !(d >= 0.0 && d.is_finite()) {
            bail!("--duration must be 0 seconds or more");
        }
    }
    Ok(())
}
