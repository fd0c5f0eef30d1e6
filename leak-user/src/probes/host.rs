//! What the host must offer before anything loads: root, and tracefs
//! mounted (tracepoints are found through it).

use std::path::Path;

use super::ProbeError;

/// Fails unless running as root.
pub(crate) fn require_root() -> Result<(), ProbeError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ProbeError::NotRoot);
    }
    Ok(())
}

/// Where aya looks for tracefs, in its order.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Tracepoints are found through tracefs; mount it if nothing is there
/// (minimal systems and containers often leave it unmounted).
pub(super) fn ensure_tracefs() -> Result<(), ProbeError> {
    let mounted = |dir: &str| Path::new(dir).join("events").is_dir();
    if TRACEFS.iter().any(|d| mounted(d)) {
        return Ok(());
    }
    let target = TRACEFS[0];
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, dir, fstype) = (c("nodev"), c(target), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dir.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 || !mounted(target) {
        return Err(ProbeError::NoTracefs {
            target,
            error: std::io::Error::last_os_error(),
        });
    }
    eprintln!("leak: mounted tracefs at {target} (the memory tracepoints are found there)");
    Ok(())
}
