//! What the kernel refused while leak loaded or attached its programs, as
//! one line for the user. The kind is decided from aya's error variants and
//! the errno the kernel answered, never from message text.

use std::{error::Error, fmt, io};

use aya::{
    maps::MapError, programs::ProgramError, programs::TracePointError, programs::UProbeError,
    sys::SyscallError, BtfError, EbpfError,
};

/// Why leak could not load or attach its probes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// Not root, nor the capabilities the step needs ([`needed_caps`]).
    #[error("could not {what}: permission denied{}", denied_detail(missing))]
    PermissionDenied {
        /// What leak was doing.
        what: String,
        /// The capabilities it needed and lacked (empty: it had them all,
        /// and something else refused).
        missing: Vec<&'static str>,
    },
    /// The running kernel lacks what the probe needs.
    #[error("could not {what}: this kernel has no {feature}")]
    MissingFeature {
        /// What leak was doing.
        what: String,
        /// What is missing.
        feature: Feature,
    },
    /// The kernel's verifier refused a program (or the object's BTF). Its
    /// log runs to hundreds of lines: logged at debug, not shown.
    #[error(
        "could not {what}: the {call} syscall returned {io_error}{}",
        debug_hint(log)
    )]
    Verifier {
        /// What leak was doing.
        what: String,
        /// `BPF_PROG_LOAD` or `BPF_BTF_LOAD`.
        call: &'static str,
        /// What the syscall returned.
        io_error: io::Error,
        /// The verifier's log.
        log: String,
    },
    /// Anything else, as aya says it (its first line).
    #[error("could not {what}: {message}")]
    Other {
        /// What leak was doing.
        what: String,
        /// aya's error and its causes, on one line.
        message: String,
    },
    /// The embedded object lacks a program or map leak asks for (leak and
    /// its kernel side were built apart).
    #[error("the eBPF object has no {0}")]
    NotInObject(String),
    /// Not running as root, nor with CAP_BPF and CAP_PERFMON.
    #[error(
        "leak needs root to load eBPF programs and read other processes' memory: run it with sudo (or with CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_SYS_PTRACE)"
    )]
    NotRoot,
    /// tracefs is mounted where leak, not root, may not look.
    #[error("cannot read tracefs at {0}: permission denied: missing CAP_DAC_READ_SEARCH (the tracepoints are found there; it is root's, mode 0700)")]
    TracefsDenied(&'static str),
    /// tracefs is not mounted, and leak could not mount it.
    #[error("tracefs is not mounted and mounting it failed ({error}): run `mount -t tracefs nodev {target}`")]
    NoTracefs {
        /// Where leak tried to mount it.
        target: &'static str,
        /// Why mount(2) failed.
        error: io::Error,
    },
}

/// A kernel feature a probe family needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    /// Uprobes (the Go probes).
    Uprobes,
    /// A tracepoint, by name.
    Tracepoint(String),
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uprobes => f.write_str("uprobe support (CONFIG_UPROBE_EVENTS)"),
            Self::Tracepoint(name) => write!(f, "tracepoint {name}"),
        }
    }
}

/// `CAP_SYS_ADMIN`, `CAP_PERFMON` and `CAP_BPF` by bit (linux/capability.h).
const CAPS: [(u32, &str); 3] = [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (21, "CAP_SYS_ADMIN")];

/// The capabilities loading and attaching a probe takes: CAP_BPF and
/// CAP_PERFMON, and for a uprobe CAP_SYS_ADMIN too (the kernel attaches
/// uprobes through perf events, whose uprobe PMU asks for it since 2025).
fn needed_caps(uprobe: bool) -> &'static [(u32, &'static str)] {
    if uprobe {
        &CAPS
    } else {
        &CAPS[..2]
    }
}

/// Of the capabilities a step needs, those not in `effective` (the
/// `CapEff` mask).
fn missing_caps(effective: u64, uprobe: bool) -> Vec<&'static str> {
    needed_caps(uprobe)
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// leak's own effective capabilities (`CapEff:` of /proc/self/status);
/// none if it cannot be read.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0)
}

/// Whether leak's effective capabilities include CAP_BPF and CAP_PERFMON.
pub(super) fn can_load_bpf() -> bool {
    missing_caps(effective_caps(), false).is_empty()
}

/// What follows "permission denied": what is missing, or that nothing is.
fn denied_detail(missing: &[&str]) -> String {
    const NEEDS: &str =
        "leak needs root, or CAP_BPF and CAP_PERFMON, and CAP_SYS_ADMIN for uprobes";
    if missing.is_empty() {
        format!(": leak has the capabilities it needs, so a security module or the kernel's lockdown refused ({NEEDS})")
    } else {
        format!(": missing {} ({NEEDS})", missing.join(", "))
    }
}

fn debug_hint(log: &str) -> &'static str {
    if log.trim().is_empty() {
        ""
    } else {
        " (RUST_LOG=debug shows the kernel's full log)"
    }
}

/// What the kernel answered, found in aya's error.
#[derive(Debug)]
enum Refusal<'e> {
    /// A syscall or a file under /sys answered with an errno.
    Os(&'e io::Error),
    /// A load the verifier answered, with its log.
    Verifier {
        call: &'static str,
        io_error: &'e io::Error,
        log: String,
    },
    /// Nothing from the kernel (aya's own checks).
    None,
}

impl<'e> Refusal<'e> {
    fn of_program(e: &'e ProgramError) -> Self {
        match e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => Self::Verifier {
                call: "BPF_PROG_LOAD",
                io_error,
                log: verifier_log.to_string(),
            },
            ProgramError::SyscallError(SyscallError { io_error, .. })
            | ProgramError::IOError(io_error)
            | ProgramError::UProbeError(UProbeError::FileError { io_error, .. })
            | ProgramError::TracePointError(TracePointError::FileError { io_error, .. }) => {
                Self::Os(io_error)
            }
            ProgramError::MapError(e) => Self::of_map(e),
            ProgramError::Btf(e) => Self::of_btf(e),
            _ => Self::None,
        }
    }

    fn of_map(e: &'e MapError) -> Self {
        match e {
            MapError::CreateError { io_error, .. }
            | MapError::IoError(io_error)
            | MapError::SyscallError(SyscallError { io_error, .. }) => Self::Os(io_error),
            _ => Self::None,
        }
    }

    fn of_btf(e: &'e BtfError) -> Self {
        match e {
            BtfError::LoadError {
                io_error,
                verifier_log,
            } => Self::Verifier {
                call: "BPF_BTF_LOAD",
                io_error,
                log: verifier_log.to_string(),
            },
            _ => Self::None,
        }
    }

    fn of_ebpf(e: &'e EbpfError) -> Self {
        match e {
            EbpfError::FileError { error, .. } => Self::Os(error),
            EbpfError::MapError(e) => Self::of_map(e),
            EbpfError::BtfError(e) => Self::of_btf(e),
            EbpfError::ProgramError(e) => Self::of_program(e),
            _ => Self::None,
        }
    }
}

impl ProbeError {
    /// Loading the object failed while leak did `what`.
    pub(crate) fn from_ebpf(what: &str, e: &EbpfError) -> Self {
        Self::decide(what, None, Refusal::of_ebpf(e), e)
    }

    /// Loading or attaching a program failed while leak did `what`; the
    /// kernel answering "no such file" means `if_missing` is not there.
    pub(crate) fn from_program(what: &str, if_missing: Option<Feature>, e: &ProgramError) -> Self {
        Self::decide(what, if_missing, Refusal::of_program(e), e)
    }

    /// A map failed while leak did `what`.
    pub(crate) fn from_map(what: &str, e: &MapError) -> Self {
        Self::decide(what, None, Refusal::of_map(e), e)
    }

    fn decide(
        what: &str,
        if_missing: Option<Feature>,
        refusal: Refusal<'_>,
        error: &dyn Error,
    ) -> Self {
        let what = what.to_string();
        let uprobe = if_missing == Some(Feature::Uprobes);
        let denied = |what| Self::PermissionDenied {
            what,
            missing: missing_caps(effective_caps(), uprobe),
        };
        match (refusal, if_missing) {
            (Refusal::Os(e), _) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                denied(what)
            }
            // The verifier answers EACCES for a program it rejects: at a
            // load, only EPERM means a missing capability.
            (Refusal::Verifier { io_error, .. }, _)
                if io_error.raw_os_error() == Some(libc::EPERM) =>
            {
                denied(what)
            }
            (Refusal::Os(e), Some(feature)) if e.raw_os_error() == Some(libc::ENOENT) => {
                Self::MissingFeature { what, feature }
            }
            (
                Refusal::Verifier {
                    call,
                    io_error,
                    log,
                },
                _,
            ) => {
                log::debug!("could not {what}: the kernel's log:\n{log}");
                Self::Verifier {
                    what,
                    call,
                    io_error: copy(io_error),
                    log,
                }
            }
            _ => Self::Other {
                what,
                message: one_line(error),
            },
        }
    }
}

/// An owned copy of `e`: its errno, or its kind and text.
fn copy(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// `error` and its causes, up to the first line break (the rest is logged
/// at debug).
fn one_line(error: &dyn Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    match chain.split_once('\n') {
        Some((first, _)) => {
            log::debug!("{chain}");
            format!("{first} (RUST_LOG=debug shows the kernel's full log)")
        }
        None => chain,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    fn syscall(errno: i32) -> ProgramError {
        ProgramError::SyscallError(SyscallError {
            call: "perf_event_open",
            io_error: os(errno),
        })
    }

    #[test]
    fn a_missing_capability_is_permission_denied() {
        let e = ProbeError::from_program("attach a uprobe to f in /bin/x", None, &syscall(1));
        assert!(
            e.to_string()
                .starts_with("could not attach a uprobe to f in /bin/x: permission denied: "),
            "{e}"
        );
        let e = ProbeError::from_program("attach", None, &syscall(libc::EACCES));
        assert!(matches!(e, ProbeError::PermissionDenied { .. }), "{e}");
        let map = MapError::CreateError {
            name: "EVENTS".into(),
            io_error: os(libc::EPERM),
        };
        let e = ProbeError::from_ebpf("load the eBPF programs", &EbpfError::MapError(map));
        assert!(matches!(e, ProbeError::PermissionDenied { .. }), "{e}");
    }

    /// The line names the capabilities leak lacks, and uprobes need
    /// CAP_SYS_ADMIN too.
    #[test]
    fn permission_denied_names_what_is_missing() {
        let bpf_perfmon_ptrace = (1 << 39) | (1 << 38) | (1 << 19);
        assert_eq!(missing_caps(bpf_perfmon_ptrace, true), ["CAP_SYS_ADMIN"]);
        assert!(missing_caps(bpf_perfmon_ptrace, false).is_empty());
        assert_eq!(missing_caps(0, false), ["CAP_BPF", "CAP_PERFMON"]);
        let e = ProbeError::PermissionDenied {
            what: "attach a uprobe to f in /bin/x".into(),
            missing: missing_caps(bpf_perfmon_ptrace, true),
        };
        assert_eq!(
            e.to_string(),
            "could not attach a uprobe to f in /bin/x: permission denied: missing CAP_SYS_ADMIN \
             (leak needs root, or CAP_BPF and CAP_PERFMON, and CAP_SYS_ADMIN for uprobes)"
        );
        let e = ProbeError::PermissionDenied {
            what: "load p".into(),
            missing: vec![],
        };
        assert!(e.to_string().contains("a security module"), "{e}");
    }

    #[test]
    fn no_such_file_is_a_missing_feature_only_where_one_is_named() {
        let no_pmu = ProgramError::UProbeError(UProbeError::FileError {
            filename: PathBuf::from("/sys/bus/event_source/devices/uprobe/type"),
            io_error: os(libc::ENOENT),
        });
        let e = ProbeError::from_program(
            "attach a uprobe to f in /bin/x",
            Some(Feature::Uprobes),
            &no_pmu,
        );
        assert_eq!(
            e.to_string(),
            "could not attach a uprobe to f in /bin/x: this kernel has no uprobe support (CONFIG_UPROBE_EVENTS)"
        );
        let no_event = ProgramError::TracePointError(TracePointError::FileError {
            filename: PathBuf::from("/sys/kernel/tracing/events/kmem/rss_stat/id"),
            io_error: os(libc::ENOENT),
        });
        let feature = Feature::Tracepoint("kmem:rss_stat".into());
        let e = ProbeError::from_program("attach", Some(feature.clone()), &no_event);
        assert!(matches!(&e, ProbeError::MissingFeature { feature: f, .. } if *f == feature));
        let e = ProbeError::from_program("load p", None, &syscall(libc::ENOENT));
        assert!(matches!(e, ProbeError::Other { .. }), "{e}");
    }

    #[test]
    fn a_rejected_program_shows_one_line() {
        let io_error = os(libc::EACCES);
        let rejected = || Refusal::Verifier {
            call: "BPF_PROG_LOAD",
            io_error: &io_error,
            log: "0: (b7) r0 = 0\n1: invalid access\nprocessed 2 insns".into(),
        };
        let e = ProbeError::decide("load go_alloc", None, rejected(), &io_error);
        let line = e.to_string();
        assert!(matches!(e, ProbeError::Verifier { .. }), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("could not load go_alloc: the BPF_PROG_LOAD syscall returned"));
        assert!(
            line.ends_with("(RUST_LOG=debug shows the kernel's full log)"),
            "{line}"
        );
        // EPERM at load is a missing capability, not the verifier.
        let io_error = os(libc::EPERM);
        let refusal = Refusal::Verifier {
            call: "BPF_PROG_LOAD",
            io_error: &io_error,
            log: String::new(),
        };
        let e = ProbeError::decide("load go_alloc", None, refusal, &io_error);
        assert!(matches!(e, ProbeError::PermissionDenied { .. }), "{e}");
    }

    #[test]
    fn anything_else_is_aya_s_first_line() {
        let e =
            ProbeError::from_program("load go_free", None, &ProgramError::UnexpectedProgramType);
        assert_eq!(
            e.to_string(),
            "could not load go_free: unexpected program type"
        );
    }
}
