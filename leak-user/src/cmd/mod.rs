//! One module per subcommand.

pub mod heapgrowth;
pub mod top;
pub mod trace;

use std::time::Duration;

use anyhow::Result;

use crate::report::{self, Profile};

/// The final profile's folded stacks, flame graph and JSON, for each one
/// `leak trace` was asked for (Go and native modes alike).
pub(crate) fn write_profile_outputs(args: &trace::TraceArgs, profile: &Profile) -> Result<()> {
    if let Some(path) = &args.folded {
        report::write_output(path, |w| report::folded::write(profile, w))?;
    }
    if let Some(path) = &args.flamegraph {
        report::write_output(path, |w| report::flamegraph::write(profile, w))?;
    }
    if let Some(path) = &args.json {
        report::write_output(path, |w| report::json::write(profile, w))?;
    }
    Ok(())
}

/// Resolves `--duration` seconds after it is first polled (at the top of
/// an event loop); never without a duration.
pub(crate) async fn until_deadline(duration: Option<f64>) {
    match duration {
        Some(d) => tokio::time::sleep(Duration::from_secs_f64(d.max(0.0))).await,
        None => std::future::pending().await,
    }
}
