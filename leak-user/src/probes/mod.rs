//! Loading leak's eBPF object and attaching its programs. One [`load`] for
//! every mode: the globals a probe family configures, the kernel side's log
//! level and, when leak logs at debug, its log records. One module per
//! probe family, each returning a typed handle that owns the loaded object
//! and holds what its pipeline reads: [`go`] (uprobes on the Go runtime),
//! [`mm`] (`leak top`'s tracepoints), [`heap`] (brk/mmap stacks of `leak
//! trace --syscalls`). What the kernel refused is a [`ProbeError`], told
//! apart by aya's error kinds and the kernel's errno.

pub(crate) mod census;
mod error;
pub(crate) mod go;
pub(crate) mod heap;
mod host;
mod logs;
pub(crate) mod mm;
pub(crate) mod native;

use aya::{
    maps::{Map, MapError},
    programs::{Program, ProgramError, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader, GlobalData,
};

use self::host::ensure_tracefs;
pub(crate) use self::{
    error::{Feature, ProbeError},
    host::require_root,
};

/// The compiled kernel side, embedded at build time.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leak"));

/// What a probe family changes in the object before it is loaded.
#[derive(Default)]
struct Settings<'a> {
    /// Read-only globals the programs take their configuration from:
    /// name, value (each must exist in the object).
    globals: Vec<(&'static str, GlobalData<'a>)>,
    /// Maps sized otherwise than in the object: name, entries.
    map_sizes: Vec<(&'static str, u32)>,
}

/// The loaded object. Its programs stay attached, and its maps not taken
/// out stay, while this lives; dropping it detaches them.
pub(crate) struct Attached {
    _ebpf: Ebpf,
}

/// Loads the eBPF object with `settings`; the kernel side logs at debug
/// level when leak does (`--debug`), to leak's logger, and not at all
/// otherwise.
fn load(settings: Settings<'_>) -> Result<Ebpf, ProbeError> {
    let kernel_logs = logs::enabled();
    let level = logs::level(kernel_logs);
    let mut loader = EbpfLoader::new();
    loader.override_global(aya_log::LEVEL, &level, false);
    for (name, value) in settings.globals {
        loader.override_global(name, value, true);
    }
    for (name, entries) in settings.map_sizes {
        loader.map_max_entries(name, entries);
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .map_err(|e| ProbeError::from_ebpf("load the eBPF programs", &e))?;
    if kernel_logs {
        logs::forward(&mut ebpf);
    }
    Ok(ebpf)
}

/// Program `name` of the object, as a `P`.
fn program<'e, P>(ebpf: &'e mut Ebpf, name: &str) -> Result<&'e mut P, ProbeError>
where
    &'e mut P: TryFrom<&'e mut Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| ProbeError::NotInObject(format!("program {name}")))?;
    program
        .try_into()
        .map_err(|e| ProbeError::from_program(&format!("load {name}"), None, &e))
}

/// Takes map `name` out of the object, as an `M`.
fn take_map<M>(ebpf: &mut Ebpf, name: &str) -> Result<M, ProbeError>
where
    M: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| ProbeError::NotInObject(format!("{name} map")))?;
    M::try_from(map).map_err(|e| ProbeError::from_map(&format!("open the {name} map"), &e))
}

/// Map `name` of the object, borrowed (it stays in the object: programs
/// loaded later still find it open).
fn borrow_map<'e, M>(ebpf: &'e mut Ebpf, name: &str) -> Result<M, ProbeError>
where
    M: TryFrom<&'e mut Map, Error = MapError>,
{
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| ProbeError::NotInObject(format!("{name} map")))?;
    M::try_from(map).map_err(|e| ProbeError::from_map(&format!("open the {name} map"), &e))
}

/// Loads `program` and attaches it to the tracepoint `category:name`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), ProbeError> {
    let tp: &mut TracePoint = self::program(ebpf, program)?;
    tp.load()
        .map_err(|e| ProbeError::from_program(&format!("load {program}"), None, &e))?;
    let point = format!("{category}:{name}");
    tp.attach(category, name).map_err(|e| {
        ProbeError::from_program(
            &format!("attach to the tracepoint {point}"),
            Some(Feature::Tracepoint(point.clone())),
            &e,
        )
    })?;
    Ok(())
}

/// Loads `program` and attaches it to the raw tracepoint `name`.
fn attach_raw_tracepoint(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<(), ProbeError> {
    let tp: &mut RawTracePoint = self::program(ebpf, program)?;
    tp.load()
        .map_err(|e| ProbeError::from_program(&format!("load {program}"), None, &e))?;
    tp.attach(name).map_err(|e| {
        ProbeError::from_program(
            &format!("attach to the raw tracepoint {name}"),
            Some(Feature::Tracepoint(name.to_string())),
            &e,
        )
    })?;
    Ok(())
}
