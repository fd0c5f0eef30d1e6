//! Loading the eBPF object and attaching its uprobes to a Go binary.

use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::{
    programs::{uprobe::UProbeScope, RawTracePoint, TracePoint, UProbe},
    Ebpf, EbpfLoader,
};
use leak_common::ProbeConfig;

/// The compiled kernel side, embedded at build time.
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leak"));

/// One uprobe: which program goes on which function.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Go function the probe goes on (for messages).
    pub function: String,
    /// File offset of the function's first instruction.
    pub file_offset: u64,
}

/// Loads the eBPF object with `config` and attaches every uprobe in
/// `attachments` to `binary`, for process `pid` only or for every process
/// running `binary` (also those started later).
pub fn load_and_attach(
    binary: &Path,
    pid: Option<u32>,
    config: ProbeConfig,
    attachments: &[Attachment],
) -> Result<Ebpf> {
    let kernel_logs = kernel_logs_enabled();
    let mut ebpf = EbpfLoader::new()
        .override_global("CONFIG", &config, true)
        .override_global(aya_log::LEVEL, &kernel_log_level(kernel_logs), false)
        .load(EBPF_OBJECT)
        .map_err(|e| kernel_error("load the eBPF programs", e.into()))?;
    if kernel_logs {
        start_kernel_logger(&mut ebpf);
    }
    let scope = match pid.and_then(std::num::NonZeroU32::new) {
        Some(pid) => UProbeScope::OneProcess(pid),
        None => UProbeScope::AllProcesses,
    };
    for a in attachments {
        let program: &mut UProbe = ebpf
            .program_mut(a.program)
            .with_context(|| format!("eBPF object has no program {}", a.program))?
            .try_into()?;
        if let Err(e) = program.load() {
            return Err(kernel_error(&format!("load {}", a.program), e.into()));
        }
        if let Err(e) = program.attach(
            aya::programs::uprobe::UProbeAttachLocation::AbsoluteOffset(a.file_offset),
            binary,
            scope,
        ) {
            return Err(kernel_error(
                &format!("attach a uprobe to {} in {}", a.function, binary.display()),
                e.into(),
            ));
        }
    }
    Ok(ebpf)
}

/// Whether the kernel side's diagnostics are wanted: leak logs at debug
/// level (`--debug`, or `RUST_LOG=debug`).
pub fn kernel_logs_enabled() -> bool {
    log::log_enabled!(target: "leak", log::Level::Debug)
}

/// The `AYA_LOG_LEVEL` to load the programs with: debug when the logs are
/// wanted, otherwise 0, so a log statement costs one load and compare, and
/// only on the paths where something unexpected happened.
pub fn kernel_log_level(enabled: bool) -> u8 {
    if enabled {
        aya_log::Level::Debug as u8
    } else {
        0
    }
}

/// Forwards the kernel side's log records (`aya_log_ebpf::debug!`) to
/// leak's logger, from a task on the current tokio runtime. Never fails
/// the run: without a runtime or the log map it says why at debug level.
pub fn start_kernel_logger(ebpf: &mut Ebpf) {
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
    #[allow(deprecated)] // as the ring buffer's AsyncFd in cmd/trace.rs
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

/// Loads `program` and attaches it to the tracepoint `category:name`.
pub(crate) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<()> {
    let tp: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("eBPF object has no program {program}"))?
        .try_into()?;
    tp.load()
        .map_err(|e| kernel_error(&format!("load {program}"), e.into()))?;
    tp.attach(category, name).map_err(|e| {
        kernel_error(
            &format!("attach to the tracepoint {category}:{name}"),
            e.into(),
        )
    })?;
    Ok(())
}

/// Loads `program` and attaches it to the raw tracepoint `name`.
pub(crate) fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<()> {
    let tp: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("eBPF object has no program {program}"))?
        .try_into()?;
    tp.load()
        .map_err(|e| kernel_error(&format!("load {program}"), e.into()))?;
    tp.attach(name)
        .map_err(|e| kernel_error(&format!("attach to the raw tracepoint {name}"), e.into()))?;
    Ok(())
}

/// Turns an aya error into one line that says what the kernel refused.
pub(crate) fn kernel_error(what: &str, e: anyhow::Error) -> anyhow::Error {
    let mut chain = format!("{e}");
    let mut src = e.source();
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    if chain.contains("Operation not permitted") || chain.contains("EPERM") {
        return anyhow::anyhow!(
            "could not {what}: permission denied (leak needs root, or CAP_BPF and CAP_PERFMON)"
        );
    }
    if chain.contains("No such file") && what.contains("uprobe") {
        return anyhow::anyhow!(
            "could not {what}: this kernel has no uprobe support (CONFIG_UPROBE_EVENTS)"
        );
    }
    // The verifier's log runs to hundreds of lines: keep it for debugging,
    // show one.
    let mut lines = chain.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        log::debug!("{chain}");
        return anyhow::anyhow!(
            "could not {what}: {first} (RUST_LOG=debug shows the kernel's full log)"
        );
    }
    anyhow::anyhow!("could not {what}: {first}")
}

/// Fails unless running as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("leak needs root to load eBPF programs and read other processes' memory: run it with sudo");
    }
    Ok(())
}

/// Where aya looks for tracefs, in its order.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Tracepoints are found through tracefs; mount it if nothing is there
/// (minimal systems and containers often leave it unmounted).
pub(crate) fn ensure_tracefs() -> Result<()> {
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
        bail!(
            "tracefs is not mounted and mounting it failed ({}): run `mount -t tracefs nodev {target}`",
            std::io::Error::last_os_error()
        );
    }
    eprintln!("leak: mounted tracefs at {target} (the memory tracepoints are found there)");
    Ok(())
}
