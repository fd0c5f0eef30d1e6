//! Kernel struct offsets for `leak top`'s raw `rss_stat` program, read from
//! the running kernel's BTF (`/sys/kernel/btf/vmlinux`): where `task_struct`
//! keeps its `mm`, and where an `mm_struct` keeps its RSS counters.
//!
//! The raw tracepoint gets only `(mm, member)`; the event format computed
//! the rest for us, at the price of a perf buffer record per page fault.
//! Offsets differ between kernel builds (configs, struct randomization), so
//! they come from BTF, never from constants.

use std::path::Path;

use btf_rs::{Btf, Struct, Type};
use leak_common::{MmKernelLayout, RSS_MEMBERS};

/// Why the kernel's BTF does not give the layout `leak top` needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutError {
    /// The BTF could not be read or parsed.
    #[error("{0}")]
    Btf(String),
    /// A struct or member is missing, or not the shape expected.
    #[error("{0}")]
    Shape(String),
}

impl From<btf_rs::Error> for LayoutError {
    fn from(e: btf_rs::Error) -> Self {
        Self::Btf(e.to_string())
    }
}

type Result<T> = std::result::Result<T, LayoutError>;

/// Fails with a shape error.
fn shape<T>(what: impl Into<String>) -> Result<T> {
    Err(LayoutError::Shape(what.into()))
}

/// Where the kernel publishes its own BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The layout of the kernel whose BTF is at `path`.
pub(crate) fn read(path: &Path) -> Result<MmKernelLayout> {
    let btf =
        Btf::from_file(path).map_err(|e| LayoutError::Btf(format!("{}: {e}", path.display())))?;
    let task = named_struct(&btf, "task_struct")?;
    let Some((task_mm, _)) = member(&btf, &task, "mm")? else {
        return shape("task_struct has no mm");
    };
    let mm = named_struct(&btf, "mm_struct")?;
    let Some((mm_rss_stat, rss)) = member(&btf, &mm, "rss_stat")? else {
        return shape("mm_struct has no rss_stat");
    };
    let Type::Array(array) = rss else {
        return shape("mm_struct.rss_stat is not an array");
    };
    if array.len() < RSS_MEMBERS {
        return shape(format!(
            "mm_struct.rss_stat has {} counters, expected {RSS_MEMBERS}",
            array.len()
        ));
    }
    let Type::Struct(counter) = strip(&btf, btf.resolve_chained_type(&array)?)? else {
        return shape("mm_struct.rss_stat is not an array of structs");
    };
    let Some((counter_count, count_type)) = member(&btf, &counter, "count")? else {
        return shape("percpu_counter has no count");
    };
    match count_type {
        Type::Int(i) if i.size() == 8 => {}
        _ => return shape("percpu_counter.count is not a 64-bit integer"),
    }
    Ok(MmKernelLayout {
        task_mm,
        mm_rss_stat,
        counter_size: counter.size() as u32,
        counter_count,
    })
}

/// Where the kernel whose BTF is at `path` keeps a thread's TLS base (the
/// FS base on x86-64): `task_struct.thread.fsbase`. The native sampler
/// reads it to find a Go thread's `g` (cgo frames).
pub(crate) fn task_fsbase(path: &Path) -> Result<u32> {
    let btf =
        Btf::from_file(path).map_err(|e| LayoutError::Btf(format!("{}: {e}", path.display())))?;
    let task = named_struct(&btf, "task_struct")?;
    let Some((thread, Type::Struct(thread_struct))) = member(&btf, &task, "thread")? else {
        return shape("task_struct has no thread struct");
    };
    match member(&btf, &thread_struct, "fsbase")? {
        Some((fsbase, Type::Int(i))) if i.size() == 8 => Ok(thread + fsbase),
        _ => shape("thread_struct has no 64-bit fsbase"),
    }
}

/// The struct called `name` (not a forward declaration).
fn named_struct(btf: &Btf, name: &str) -> Result<Struct> {
    btf.resolve_types_by_name(name)?
        .into_iter()
        .find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| LayoutError::Shape(format!("no struct {name} in the kernel's BTF")))
}

/// Typedefs, const and volatile are transparent for layout.
fn strip(btf: &Btf, mut t: Type) -> Result<Type> {
    for _ in 0..16 {
        t = match &t {
            Type::Typedef(x) => btf.resolve_chained_type(x)?,
            Type::Const(x) => btf.resolve_chained_type(x)?,
            Type::Volatile(x) => btf.resolve_chained_type(x)?,
            _ => return Ok(t),
        };
    }
    Ok(t)
}

/// Byte offset and type of member `name` of `st`, looking inside anonymous
/// structs and unions (most of `mm_struct` sits in one).
fn member(btf: &Btf, st: &Struct, name: &str) -> Result<Option<(u32, Type)>> {
    for m in &st.members {
        let ty = strip(btf, btf.resolve_chained_type(m)?)?;
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == name {
            return Ok(Some((m.bit_offset() / 8, ty)));
        }
        if m_name.is_empty() {
            if let Type::Struct(inner) | Type::Union(inner) = &ty {
                if let Some((off, t)) = member(btf, inner, name)? {
                    return Ok(Some((m.bit_offset() / 8 + off, t)));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kernel (any kernel with BTF): the offsets are inside
    /// their structs and the counter is at least a lock and a count.
    #[test]
    fn reads_this_kernels_layout() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("no {VMLINUX_BTF}: skipped");
            return;
        }
        let fsbase = task_fsbase(path).unwrap();
        assert!(fsbase > 0 && fsbase < 16384, "{fsbase}");
        let l = read(path).unwrap();
        assert!(l.task_mm > 0 && l.task_mm < 16384, "{l:?}");
        assert!(l.mm_rss_stat > 0 && l.mm_rss_stat < 8192, "{l:?}");
        assert!(
            l.counter_size >= 16 && l.counter_count + 8 <= l.counter_size,
            "{l:?}"
        );
        assert_eq!(l.counter_count % 8, 0, "{l:?}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = read(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
    }
}
