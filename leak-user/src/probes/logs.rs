//! The kernel side's log records (`aya_log_ebpf::debug!` on the paths
//! where something unexpected happened), forwarded to leak's logger.

use aya::Ebpf;

/// Whether the kernel side's diagnostics are wanted: leak logs at debug
/// level (`--debug`, or `RUST_LOG=debug`).
pub(super) fn enabled() -> bool {
    log::log_enabled!(target: "leak", log::Level::Debug)
}

/// The `AYA_LOG_LEVEL` to load the programs with: debug when the logs are
/// wanted, otherwise 0, so a log statement costs one load and compare, and
/// only on the paths where something unexpected happened.
pub(super) fn level(enabled: bool) -> u8 {
    if enabled {
        aya_log::Level::Debug as u8
    } else {
        0
    }
}

/// Forwards the kernel side's log records to leak's logger, from a task on
/// the current tokio runtime. Never fails the run: without a runtime or the
/// log map it says why at debug level.
pub(super) fn forward(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(e) => {
            log::debug!("no kernel-side logs: {e}");
            return;
        }
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        log::debug!("no kernel-side logs: no tokio runtime to read them from");
        return;
    };
    let _guard = runtime.enter();
    #[allow(deprecated)] // as the ring buffer's AsyncFd in session.rs
    let mut logger =
        match tokio::io::unix::AsyncFd::with_interest(logger, tokio::io::Interest::READABLE) {
            Ok(fd) => fd,
            Err(e) => {
                log::debug!("no kernel-side logs: {e}");
                return;
            }
        };
    runtime.spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
