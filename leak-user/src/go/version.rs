//! Which Go release built the program.
//!
//! In order of trust: the build info (`.go.buildinfo`, what `go version BIN`
//! prints); the `runtime.buildVersion` string in the data (still there when
//! the build info was cut out); and last, an inference from which runtime
//! functions the `.gopclntab` lists (the runtime table's markers), which
//! only gives a lower bound.

use std::fmt;

use super::{elf::GoBinary, pclntab::TextStartSource, table};

/// A Go release, e.g. `go1.25.5`. Pre-releases (`go1.22rc1`) count as the
/// `.0` release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GoVersion {
    /// Always 1 so far.
    pub major: u32,
    /// The release: 21 in go1.21.13.
    pub minor: u32,
    /// The point release: 13 in go1.21.13.
    pub patch: u32,
}

impl GoVersion {
    /// `go{major}.{minor}.{patch}`.
    pub(crate) const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses a Go version string: `go1.25.5`, `go1.21`, `go1.22rc1`,
    /// `go1.25.5 X:nodwarf5`, `devel go1.26-abcdef Tue …`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix("devel ").unwrap_or(s);
        let rest = s.strip_prefix("go")?;
        let mut numbers = [0u32; 3];
        let mut count = 0;
        for part in rest.split('.') {
            let digits: &str = &part[..part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len())];
            if digits.is_empty() || count == 3 {
                return None;
            }
            numbers[count] = digits.parse().ok()?;
            count += 1;
            // A suffix (rc1, " X:…", "-abcdef") ends the number list.
            if digits.len() != part.len() {
                break;
            }
        }
        (count >= 2).then(|| Self::new(numbers[0], numbers[1], numbers[2]))
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How the version was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSource {
    /// The `.go.buildinfo` blob, as `go version` reads it: exact.
    BuildInfo,
    /// The `runtime.buildVersion` string in the data: exact.
    BuildVersion,
    /// From which runtime functions exist: the version is a minimum (patch
    /// 0, and the real one may be any later release up to the next marker).
    Inferred,
}

/// Detects the Go version of `bin`; never fails, since the pclntab format
/// alone bounds it.
pub(crate) fn detect(bin: &GoBinary) -> (GoVersion, VersionSource) {
    if let Some(v) = from_build_info(bin) {
        return (v, VersionSource::BuildInfo);
    }
    let inferred = infer(bin);
    if let Some(v) = from_build_version(bin, inferred) {
        return (v, VersionSource::BuildVersion);
    }
    (inferred, VersionSource::Inferred)
}

/// `"\xff Go buildinf:"`, at a 16-byte aligned address (debug/buildinfo).
const BUILD_INFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Flag bit: version and modinfo are inline varint-prefixed strings (≥1.18).
const FLAGS_VERSION_INLINE: u8 = 0x2;

/// Reads the version from `.go.buildinfo` (inline-string format only).
pub(crate) fn from_build_info(bin: &GoBinary) -> Option<GoVersion> {
    let section = bin.section(".go.buildinfo")?;
    GoVersion::parse(&build_info_version(bin.section_bytes(section)?)?)
}

/// Decodes the version string of a build-info blob: a 32-byte header
/// (magic, ptrSize, flags, …) then, with the inline flag, a uvarint length
/// and the bytes. The older pointer format (before Go 1.18) is not read.
pub(crate) fn build_info_version(blob: &[u8]) -> Option<String> {
    let at = (0..blob.len().saturating_sub(32))
        .step_by(16)
        .find(|&i| blob[i..].starts_with(BUILD_INFO_MAGIC))?;
    let header = &blob[at..at + 32];
    if header[15] & FLAGS_VERSION_INLINE == 0 {
        return None;
    }
    let mut pos = at + 32;
    let mut len: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *blob.get(pos)?;
        pos += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let len = usize::try_from(len).ok()?;
    let bytes = blob.get(pos..pos.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Finds `runtime.buildVersion`, a Go string header `(ptr, len)` in the
/// data whose bytes read `go1.N[.M]`. Several matches are settled by
/// agreeing with the inferred lower bound.
fn from_build_version(bin: &GoBinary, at_least: GoVersion) -> Option<GoVersion> {
    let mut found: Vec<GoVersion> = Vec::new();
    for section in bin
        .sections()
        .iter()
        .filter(|s| s.alloc && s.writable && !s.executable)
    {
        let Some(bytes) = bin.section_bytes(section) else {
            continue;
        };
        let start = ((8 - section.vaddr % 8) % 8) as usize;
        for i in (start..bytes.len().saturating_sub(16)).step_by(8) {
            let len = u64::from_le_bytes(bytes[i + 8..i + 16].try_into().ok()?);
            // "go1.21" … "go1.25.5 X:nocoverageredesign,…"
            if !(6..=128).contains(&len) || bytes[i..i + 4] == [0; 4] {
                continue;
            }
            let ptr = u64::from_le_bytes(bytes[i..i + 8].try_into().ok()?);
            let Some(text) = bin.read_vaddr(ptr, len as usize) else {
                continue;
            };
            if !text.starts_with(b"go1.") {
                continue;
            }
            if let Some(v) = std::str::from_utf8(text).ok().and_then(GoVersion::parse) {
                if v >= at_least && !found.contains(&v) {
                    found.push(v);
                }
            }
        }
    }
    // Other "go1.N" strings (go/build's release tags) have two parts;
    // runtime.buildVersion of a release has three.
    if found.len() > 1 {
        found.retain(|v| v.patch > 0);
    }
    match found.as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

/// The oldest release consistent with the runtime functions and table
/// format present in `bin`: the newest runtime-table row whose marker
/// function is there (`RuntimeProbes::marker_fn`), raised by what the
/// table format says.
pub(crate) fn infer(bin: &GoBinary) -> GoVersion {
    let tab = bin.pclntab();
    let mut version = match tab.format() {
        super::pclntab::PclntabFormat::Go118 => GoVersion::new(1, 18, 0),
        super::pclntab::PclntabFormat::Go120 => GoVersion::new(1, 20, 0),
    };
    if tab.text_start_source() != TextStartSource::Header {
        version = version.max(table::TEXT_START_DROPPED);
    }
    if let Some(row) = table::row_by_markers(|name| tab.func_by_name(name).is_some()) {
        version = version.max(row.since);
    }
    version
}

impl GoBinary {
    /// The Go release that built the program, and how that was learned.
    pub(crate) fn go_version(&self) -> (GoVersion, VersionSource) {
        detect(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_strings() {
        let v = |s| GoVersion::parse(s);
        assert_eq!(v("go1.25.5"), Some(GoVersion::new(1, 25, 5)));
        assert_eq!(v("go1.21"), Some(GoVersion::new(1, 21, 0)));
        assert_eq!(v("go1.22rc1"), Some(GoVersion::new(1, 22, 0)));
        assert_eq!(v("go1.25.5 X:nodwarf5"), Some(GoVersion::new(1, 25, 5)));
        assert_eq!(
            v("devel go1.26-abcdef Tue Jan 1"),
            Some(GoVersion::new(1, 26, 0))
        );
        assert_eq!(v("go1"), None);
        assert_eq!(v("1.21.3"), None);
        assert_eq!(v("gopher"), None);
    }

    #[test]
    fn orders_and_displays() {
        assert!(GoVersion::new(1, 9, 0) < GoVersion::new(1, 21, 0));
        assert!(GoVersion::new(1, 21, 13) < GoVersion::new(1, 22, 0));
        assert_eq!(GoVersion::new(1, 25, 5).to_string(), "go1.25.5");
        assert_eq!(
            GoVersion::parse("go1.27.3").unwrap().to_string(),
            "go1.27.3"
        );
    }

    #[test]
    fn decodes_inline_build_info() {
        let mut blob = vec![0u8; 16]; // the magic sits at a 16-byte boundary
        blob.extend_from_slice(BUILD_INFO_MAGIC);
        blob.push(8); // ptrSize
        blob.push(FLAGS_VERSION_INLINE);
        blob.resize(16 + 32, 0);
        blob.push(8);
        blob.extend_from_slice(b"go1.23.4");
        blob.push(0);
        assert_eq!(build_info_version(&blob).as_deref(), Some("go1.23.4"));
        blob[16 + 15] = 0; // pointer format: not read
        assert_eq!(build_info_version(&blob), None);
    }
}
