//! The one event loop every mode runs: periodic reports, housekeeping
//! ticks, the ring buffer, Ctrl-C and SIGTERM, `--duration`, and why it
//! stopped. What happens on each of these is the [`Pipeline`]'s business.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};

use crate::{
    error::{Context as _, Result},
    event::{self, Record},
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

/// Why a session stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `--duration` ran out.
    Duration,
    /// SIGINT (Ctrl-C) or SIGTERM.
    Signal(&'static str),
    /// Every traced or watched process has exited.
    AllExited,
    /// Whoever read stdout went away (`leak top | head`).
    ReaderGone,
}

/// One mode of leak: events in, numbers kept, reports out.
pub(crate) trait Pipeline {
    /// Handles one record from the kernel side, decoded.
    fn handle(&mut self, _record: Record) {}
    /// Housekeeping, every [`Timing::poll_every`]; a [`Stop`] ends the
    /// session.
    fn poll(&mut self) -> Result<Option<Stop>> {
        Ok(None)
    }
    /// The periodic report, every [`Timing::report_every`].
    fn report(&mut self) -> Result<Option<Stop>>;
    /// SIGINT or SIGTERM arrived: whether to stop now (a pipeline that ran
    /// the program itself passes the signal on and stops when it exits).
    fn on_signal(&mut self, _name: &'static str) -> bool {
        true
    }
}

/// When a session does what.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// The first report one interval after the start, then every interval.
    pub report_every: Duration,
    /// Housekeeping (draining in batches, scans), if the pipeline wants it.
    pub poll_every: Option<Duration>,
    /// Stop after this long (`--duration`; negative counts as 0).
    pub duration: Option<f64>,
}

/// Runs `pipeline` until it or the user says stop. Records the kernel had
/// queued by then are still handled; the ring buffer is dropped before
/// returning (the pipeline detaches its probes after).
pub(crate) async fn run(
    pipeline: &mut impl Pipeline,
    ring: Option<RingBuf<MapData>>,
    timing: Timing,
) -> Result<Stop> {
    #[allow(deprecated)] // AsyncFd::register needs a newer tokio API than this MSRV set
    let mut ring = ring
        .map(AsyncFd::new)
        .transpose()
        .context(|| "cannot watch the ring buffer".into())?;
    let mut sigint = signal(SignalKind::interrupt()).context(|| "cannot catch SIGINT".into())?;
    let mut sigterm = signal(SignalKind::terminate()).context(|| "cannot catch SIGTERM".into())?;
    let start = tokio::time::Instant::now();
    let mut report_tick =
        tokio::time::interval_at(start + timing.report_every, timing.report_every);
    let poll_every = timing.poll_every.unwrap_or(Duration::from_secs(3600));
    let mut poll_tick = tokio::time::interval(poll_every);
    let deadline = until_deadline(timing.duration);
    tokio::pin!(deadline);
    let stop = loop {
        tokio::select! {
            // Biased: at the end of --duration, the deadline wins over a
            // tick due at the same instant, and Ctrl-C over a busy ring.
            biased;
            _ = &mut deadline => break Stop::Duration,
            _ = sigint.recv() => if pipeline.on_signal("SIGINT") {
                break Stop::Signal("SIGINT");
            },
            _ = sigterm.recv() => if pipeline.on_signal("SIGTERM") {
                break Stop::Signal("SIGTERM");
            },
            guard = async { ring.as_mut().expect("checked").readable_mut().await }, if ring.is_some() => {
                let mut guard = guard.context(|| "cannot read the ring buffer".into())?;
                drain(pipeline, guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = report_tick.tick() => {
                if let Some(stop) = pipeline.report()? {
                    break stop;
                }
            }
            _ = poll_tick.tick(), if timing.poll_every.is_some() => {
                if let Some(r) = ring.as_mut() {
                    drain(pipeline, r.get_mut());
                }
                if let Some(stop) = pipeline.poll()? {
                    break stop;
                }
            }
        }
    };
    if let Some(mut r) = ring {
        drain(pipeline, r.get_mut());
    }
    if let Stop::Signal(s) = stop {
        eprintln!("leak: {s}: stopping");
    }
    Ok(stop)
}

/// Hands every record waiting in the ring buffer to `pipeline`, decoded
/// once here: a pipeline sees [`Record`]s, never the ring.
fn drain(pipeline: &mut impl Pipeline, ring: &mut RingBuf<MapData>) {
    while let Some(item) = ring.next() {
        let record = event::decode(&item);
        drop(item);
        if let Some(record) = record {
            pipeline.handle(record);
        }
    }
}

/// Resolves `duration` seconds after it is first polled; never without a
/// duration.
async fn until_deadline(duration: Option<f64>) {
    match duration {
        Some(d) => tokio::time::sleep(Duration::from_secs_f64(d.max(0.0))).await,
        None => std::future::pending().await,
    }
}

/// Runs a mode's async body on a single-threaded runtime: leak's work is
/// one loop, and the target's CPUs are not ours to take.
pub(crate) fn block_on<T>(body: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(|| "cannot start the event loop".into())?
        .block_on(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        reports: u32,
        polls: u32,
        stop_after: u32,
    }

    impl Pipeline for Counting {
        fn poll(&mut self) -> Result<Option<Stop>> {
            self.polls += 1;
            Ok(None)
        }
        fn report(&mut self) -> Result<Option<Stop>> {
            self.reports += 1;
            Ok((self.reports >= self.stop_after).then_some(Stop::AllExited))
        }
    }

    fn timing(duration: Option<f64>) -> Timing {
        Timing {
            report_every: Duration::from_millis(100),
            poll_every: Some(Duration::from_millis(10)),
            duration,
        }
    }

    #[test]
    fn the_pipeline_can_stop_the_session() {
        let mut p = Counting {
            reports: 0,
            polls: 0,
            stop_after: 3,
        };
        let stop = block_on(run(&mut p, None, timing(None))).unwrap();
        assert_eq!(stop, Stop::AllExited);
        assert_eq!(p.reports, 3);
        assert!(p.polls >= 10, "{} polls", p.polls);
    }

    #[test]
    fn the_deadline_stops_it_before_a_report_due_at_the_same_time() {
        let mut p = Counting {
            reports: 0,
            polls: 0,
            stop_after: u32::MAX,
        };
        let stop = block_on(run(&mut p, None, timing(Some(0.25)))).unwrap();
        assert_eq!(stop, Stop::Duration);
        // Reports due at 0.1 and 0.2 s; none at or after the deadline.
        assert!(p.reports <= 2, "{} reports", p.reports);
    }
}
