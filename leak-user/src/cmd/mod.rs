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

/// What a one-shot read of a Go process (`leak heap`, `leak goroutines`)
/// takes: which process, how much to show, which files to write.
#[derive(clap::Args, Debug)]
pub struct OneShotArgs {
    /// The Go process to read.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: u32,

    /// Show the N largest stacks (or goroutine groups).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) top: usize,

    #[command(flatten)]
    pub(crate) outputs: crate::outputs::Outputs,
}

impl OneShotArgs {
    /// Fails, before reading, on an output a one-shot read cannot write
    /// (a chart needs a series) or a file that cannot be written.
    fn check_outputs(&self, mode: &str) -> Result<()> {
        use crate::outputs::Output;
        Ok(self.outputs.check(
            &[
                Output::Folded,
                Output::Flamegraph,
                Output::Pprof,
                Output::Json,
            ],
            mode,
            "--chart draws values over time: use it with leak trace or leak top",
        )?)
    }
}

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
