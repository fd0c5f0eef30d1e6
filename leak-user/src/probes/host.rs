//! What the host must offer before anything loads: root (or the
//! capabilities that load BPF programs), and tracefs mounted (tracepoints
//! are found through it).

use std::path::Path;

use super::ProbeError;

/// Fails unless running as root or with CAP_BPF and CAP_PERFMON (what
/// else a step needs, such as CAP_SYS_ADMIN for uprobes, is named by that
/// step's own refusal).
pub(crate) fn require_root() -> Result<(), ProbeError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && !super::error::can_load_bpf() {
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
    // Mounted, but closed to a user who is not root (tracefs is 0700).
    if let Some(dir) = TRACEFS.iter().find(|d| {
        std::fs::metadata(Path::new(d).join("events"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    }) {
        return Err(ProbeError::TracefsDenied(dir));
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
