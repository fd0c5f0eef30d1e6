//! Source lines and inlined frames of native code, from DWARF
//! (`.debug_info`, `.debug_line`) read with `addr2line` over `gimli`: the
//! object's own, or a separate debug file found the way gdb and perf find
//! one — by build ID (`DIR/.build-id/ab/cdef….debug`), else by
//! `.gnu_debuglink` (next to the object, in its `.debug/`, and under
//! `DIR/` followed by the object's directory), each path looked for in the
//! process's own root first (a container's debug files), then on the host.
//!
//! A debug file is mapped, not read: only the pages lookups touch are in
//! memory (compressed sections are inflated once), and addr2line parses
//! each compilation unit's lines and functions once, when first asked.

use std::{
    borrow::Cow,
    fs,
    io::Read,
    ops::{Deref, Range},
    path::{Path, PathBuf},
    sync::Arc,
};

use object::{CompressionFormat, Object, ObjectSection, SectionKind};

/// Where separate debug files are looked for when `--debug-dir` is not
/// given.
pub(crate) const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// The most an object's compressed DWARF sections may inflate to: past
/// it the object is named by its symbols only, its DWARF costing more
/// memory than a whole trace should.
const MAX_INFLATED: u64 = 64 << 20;

/// What holds a DWARF section's bytes: the mapped file, or the inflated
/// copy of a compressed section.
#[derive(Debug)]
enum Backing {
    Mapped(memmap2::Mmap),
    Inflated(Vec<u8>),
}

impl Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Inflated(v) => v,
        }
    }
}

/// The bytes of one DWARF section, shared by the readers addr2line keeps.
#[derive(Clone, Debug)]
pub(crate) struct Bytes {
    backing: Arc<Backing>,
    range: Range<usize>,
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.backing[self.range.clone()]
    }
}

// SAFETY: the bytes are owned by the `Arc`, never written and never moved
// while it lives; every clone derefs to the same address.
unsafe impl gimli::StableDeref for Bytes {}
unsafe impl gimli::CloneStableDeref for Bytes {}

type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// One frame at a code address, as the DWARF says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceFrame {
    /// The function's linkage name (mangled) or plain name, if known.
    pub function: Option<String>,
    /// The source file, with its directory, if known.
    pub file: Option<String>,
    /// The source line, 0 if unknown.
    pub line: u32,
}

/// The DWARF of one object, ready for lookups.
pub(crate) struct Dwarf {
    context: addr2line::Context<Reader>,
}

impl Dwarf {
    /// The DWARF in the ELF file at `path`; `None` if it has none (no
    /// `.debug_info`, or one stripped to a placeholder).
    pub(crate) fn open(path: &Path) -> Option<Self> {
        let map = map(path)?;
        let elf = object::File::parse(&map[..]).ok()?;
        let info = elf.section_by_name(".debug_info")?;
        if info.kind() == SectionKind::UninitializedData || info.size() == 0 {
            return None;
        }
        let inflated = inflated_size(&elf);
        if inflated > MAX_INFLATED {
            log::warn!(
                "{}: {} MiB of compressed DWARF, more than leak inflates: symbols only",
                path.display(),
                inflated >> 20
            );
            return None;
        }
        let endian = if elf.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let dwarf = gimli::Dwarf::load(|id| {
            Ok::<_, gimli::Error>(gimli::EndianReader::new(
                section(&elf, &map, id.name()),
                endian,
            ))
        })
        .ok()?;
        let context = addr2line::Context::from_dwarf(dwarf).ok()?;
        Some(Self { context })
    }

    /// The DWARF of the object at `path` (opened from the host), seen as
    /// `seen_as` by the process: its own, else a separate debug file under
    /// `dirs`, looked for through `root` first (the process's
    /// `/proc/PID/root`).
    pub(crate) fn find(path: &Path, seen_as: &Path, root: &Path, dirs: &[PathBuf]) -> Option<Self> {
        if let Some(own) = Self::open(path) {
            return Some(own);
        }
        let map = map(path)?;
        let elf = object::File::parse(&map[..]).ok()?;
        let build_id = elf.build_id().ok().flatten();
        let link = elf.gnu_debuglink().ok().flatten();
        debug_file_candidates(build_id, link.map(|l| l.0), seen_as, dirs)
            .into_iter()
            .flat_map(|(p, by_link)| {
                [root.join(p.strip_prefix("/").unwrap_or(&p)), p].map(|p| (p, by_link))
            })
            .filter(|(p, by_link)| !by_link || link.is_some_and(|l| crc_of(p) == Some(l.1)))
            .find_map(|(p, _)| Self::open(&p))
    }

    /// The frames at link-time address `addr`, innermost (inlined) first,
    /// ending with the function whose code it is; empty if the DWARF does
    /// not cover `addr`.
    pub(crate) fn frames(&self, addr: u64) -> Vec<SourceFrame> {
        let mut out = Vec::new();
        let Ok(mut frames) = self.context.find_frames(addr).skip_all_loads() else {
            return out;
        };
        while let Ok(Some(f)) = frames.next() {
            let location = f.location.as_ref();
            out.push(SourceFrame {
                function: f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(Cow::into_owned),
                file: location.and_then(|l| l.file).map(str::to_string),
                line: location.and_then(|l| l.line).unwrap_or(0),
            });
        }
        out
    }
}

/// The file at `path`, mapped read-only.
fn map(path: &Path) -> Option<Arc<Backing>> {
    let file = fs::File::open(path).ok()?;
    // SAFETY: mapped read-only and private; like any debugger, leak trusts
    // debug files not to be truncated under it.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    Some(Arc::new(Backing::Mapped(map)))
}

/// The bytes of section `name` of `elf` (parsed from `map`): a range of the
/// mapping, or its inflated copy; empty if absent or unreadable.
fn section(elf: &object::File, map: &Arc<Backing>, name: &str) -> Bytes {
    let empty = || Bytes {
        backing: Arc::new(Backing::Inflated(Vec::new())),
        range: 0..0,
    };
    match section_data(elf, name) {
        Some(Cow::Borrowed(data)) => {
            let start = data.as_ptr() as usize - map.as_ptr() as usize;
            Bytes {
                backing: map.clone(),
                range: start..start + data.len(),
            }
        }
        Some(Cow::Owned(data)) => Bytes {
            range: 0..data.len(),
            backing: Arc::new(Backing::Inflated(data)),
        },
        None => empty(),
    }
}

/// What the compressed DWARF sections of `elf` inflate to, in bytes.
fn inflated_size(elf: &object::File) -> u64 {
    elf.sections()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with(".debug_")))
        .filter_map(|s| s.compressed_data().ok())
        .filter(|c| c.format != CompressionFormat::None)
        .map(|c| c.uncompressed_size)
        .sum()
}

/// The contents of section `name` of `elf`, inflated if compressed with
/// zlib; `None` if absent, unreadable, or compressed otherwise.
pub(crate) fn section_data<'a>(elf: &object::File<'a>, name: &str) -> Option<Cow<'a, [u8]>> {
    let compressed = elf.section_by_name(name)?.compressed_data().ok()?;
    match compressed.format {
        CompressionFormat::None => Some(Cow::Borrowed(compressed.data)),
        CompressionFormat::Zlib => {
            let mut out = Vec::with_capacity(compressed.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .read_to_end(&mut out)
                .ok()?;
            Some(Cow::Owned(out))
        }
        _ => None,
    }
}

/// Where a separate debug file may be, best first, as gdb looks: by build
/// ID under each of `dirs`, then by debug link next to the object
/// (`seen_as`), in its `.debug/`, and under each of `dirs`. The flag says a
/// path is found by debug link (its CRC must match).
fn debug_file_candidates(
    build_id: Option<&[u8]>,
    link: Option<&[u8]>,
    seen_as: &Path,
    dirs: &[PathBuf],
) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 1) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        for dir in dirs {
            let file = format!("{}/{}.debug", &hex[..2], &hex[2..]);
            out.push((dir.join(".build-id").join(file), false));
        }
    }
    let (Some(link), Some(object_dir)) = (link, seen_as.parent()) else {
        return out;
    };
    let link = Path::new(std::str::from_utf8(link).unwrap_or_default());
    if link.as_os_str().is_empty() {
        return out;
    }
    out.push((object_dir.join(link), true));
    out.push((object_dir.join(".debug").join(link), true));
    for dir in dirs {
        let relative = object_dir.strip_prefix("/").unwrap_or(object_dir);
        out.push((dir.join(relative).join(link), true));
    }
    out
}

/// The CRC-32 of the file at `path`, as `.gnu_debuglink` records it.
fn crc_of(path: &Path) -> Option<u32> {
    let map = map(path)?;
    let mut crc = flate2::Crc::new();
    crc.update(&map);
    Some(crc.sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{elfsym::ProcessSymbols, testprog};
    use std::process::Command;

    /// `helper` is inlined into `outer`; the address printed is the return
    /// address of its call to `note`, in `helper`'s code inside `outer`.
    const INLINED: &str = r#"#include <stdio.h>
static void *seen;
__attribute__((noinline)) void note(void) { seen = __builtin_return_address(0); __asm__ volatile(""); }
static inline __attribute__((always_inline)) int helper(int n)
{
    note(); /* MARK helper calls note */
    return n * 2;
}
__attribute__((noinline)) int outer(int n)
{
    return helper(n) + 1; /* MARK outer calls helper */
}
int main(int argc, char **argv)
{
    (void)argv;
    int r = outer(argc);
    printf("%p\n", seen);
    fflush(stdout);
    getchar();
    return r == 3 ? 0 : 1;
}
"#;

    /// The line of `INLINED` that carries `marker`.
    fn line_of(marker: &str) -> u32 {
        let i = INLINED.lines().position(|l| l.contains(marker));
        i.expect("marker in the source") as u32 + 1
    }

    /// The frames of the running `bin` at the return address it prints,
    /// separate debug files looked for under `dirs`.
    fn frames_of(bin: &Path, dirs: &[PathBuf]) -> Vec<crate::frame::Frame> {
        let prog = testprog::Running::start(bin);
        let mut syms = ProcessSymbols::with_debug_dirs(prog.pid(), dirs).unwrap();
        syms.frames(prog.addr - 1)
            .expect("address in the program's code")
    }

    /// The chain at the address is `helper` (inlined, at its call to
    /// `note`) then `outer` (at its call to `helper`), in prog.c.
    fn assert_inline_chain(frames: &[crate::frame::Frame], bin: &Path) {
        let got: Vec<(&str, &str, u32, bool)> = frames
            .iter()
            .map(|f| {
                let file = f.file.rsplit('/').next().unwrap_or_default();
                (&*f.function, file, f.line, f.inlined)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("helper", "prog.c", line_of("MARK helper calls note"), true),
                ("outer", "prog.c", line_of("MARK outer calls helper"), false),
            ]
        );
        assert!(frames.iter().all(|f| *f.object == *bin.to_str().unwrap()));
    }

    fn run(tool: &str, args: &[&std::ffi::OsStr]) {
        let status = Command::new(tool).args(args).status().unwrap();
        assert!(status.success(), "{tool} {args:?}");
    }

    /// Keeps the DWARF of `bin` in `bin.debug` only, linked by name.
    fn split_debug(bin: &Path) -> PathBuf {
        let debug = bin.with_extension("debug");
        run(
            "objcopy",
            &["--only-keep-debug".as_ref(), bin.as_ref(), debug.as_ref()],
        );
        run("strip", &["--strip-debug".as_ref(), bin.as_ref()]);
        let link = format!("--add-gnu-debuglink={}", debug.display());
        run("objcopy", &[link.as_ref(), bin.as_ref()]);
        assert!(Dwarf::open(bin).is_none(), "still has its DWARF");
        debug
    }

    #[test]
    fn inlined_frames_with_their_lines() {
        let dir = testprog::scratch("dwarf-inline");
        let Some(bin) = testprog::build(&dir, INLINED, &["-O2", "-g"]) else {
            return;
        };
        assert_inline_chain(&frames_of(&bin, &[]), &bin);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Compressed DWARF (`-gz`) is inflated and read the same.
    #[test]
    fn compressed_sections() {
        let dir = testprog::scratch("dwarf-gz");
        let Some(bin) = testprog::build(&dir, INLINED, &["-O2", "-g", "-gz=zlib"]) else {
            return;
        };
        let data = fs::read(&bin).unwrap();
        let inflated = inflated_size(&object::File::parse(&*data).unwrap());
        assert!((1..MAX_INFLATED).contains(&inflated), "{inflated}");
        assert_inline_chain(&frames_of(&bin, &[]), &bin);
        let _ = fs::remove_dir_all(&dir);
    }

    /// The DWARF moved to a separate file is found by build ID under a
    /// debug directory, then by debug link under one.
    #[test]
    fn separate_debug_files() {
        let dir = testprog::scratch("dwarf-split");
        let flags = ["-O2", "-g", "-Wl,--build-id"];
        let Some(bin) = testprog::build(&dir, INLINED, &flags) else {
            return;
        };
        let debug = split_debug(&bin);
        let data = fs::read(&bin).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let id: String = elf
            .build_id()
            .unwrap()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Without a debug directory, and beside the program under another
        // name than its link: no DWARF.
        let moved = debug.with_extension("moved");
        fs::rename(&debug, &moved).unwrap();
        assert_eq!(frames_of(&bin, &[]).len(), 1);
        // By build ID.
        let by_id = dir.join("by-id");
        let under = by_id.join(".build-id").join(&id[..2]);
        fs::create_dir_all(&under).unwrap();
        fs::copy(&moved, under.join(format!("{}.debug", &id[2..]))).unwrap();
        assert_inline_chain(&frames_of(&bin, &[by_id]), &bin);
        // By debug link, under DIR/ then the program's directory.
        let by_link = dir.join("by-link");
        let under = by_link.join(dir.strip_prefix("/").unwrap());
        fs::create_dir_all(&under).unwrap();
        fs::copy(&moved, under.join("prog.debug")).unwrap();
        assert_inline_chain(&frames_of(&bin, std::slice::from_ref(&by_link)), &bin);
        // A file of that name whose CRC differs is not it.
        fs::write(under.join("prog.debug"), b"not the debug file").unwrap();
        assert_eq!(frames_of(&bin, &[by_link]).len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_file_candidates_as_gdb_looks() {
        let dirs = [PathBuf::from("/usr/lib/debug"), PathBuf::from("/d")];
        let got = debug_file_candidates(
            Some(&[0xab, 0xcd, 0xef]),
            Some(b"app.debug"),
            Path::new("/srv/bin/app"),
            &dirs,
        );
        let got: Vec<(&str, bool)> = got.iter().map(|(p, l)| (p.to_str().unwrap(), *l)).collect();
        assert_eq!(
            got,
            [
                ("/usr/lib/debug/.build-id/ab/cdef.debug", false),
                ("/d/.build-id/ab/cdef.debug", false),
                ("/srv/bin/app.debug", true),
                ("/srv/bin/.debug/app.debug", true),
                ("/usr/lib/debug/srv/bin/app.debug", true),
                ("/d/srv/bin/app.debug", true),
            ]
        );
        assert!(debug_file_candidates(None, None, Path::new("/a"), &dirs).is_empty());
    }
}
