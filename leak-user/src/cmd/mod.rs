//! One module per subcommand: its arguments, their checks, and the
//! pipeline they choose. The work is in [`crate::pipeline`].

pub mod heap;
pub mod rate_guard;
pub mod top;
pub mod trace;

use anyhow::{bail, Result};

/// Ends leak with this exit status: the status of the program `leak trace
/// -- CMD` ran, or a shell's 126/127 when it could not be run (`message`
/// then says why, in one line).
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub code: u8,
    /// What to print first, if anything.
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

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
