//! Source lines and inlined frames of native code, from DWARF
//! (`.debug_info`, `.debug_line`) read with blazesym: the object's own, or
//! a separate debug file found the way gdb and perf find one — by build ID
//! (`DIR/.build-id/ab/cdef….debug`), else by `.gnu_debuglink` (next to the
//! object, in its `.debug/`, and under `DIR/` followed by the object's
//! directory), each path looked for in the process's own root first (a
//! container's debug files), then on the host.
//!
//! blazesym over addr2line (both on gimli), measured on libc's debug file
//! and on an 87 MB Rust debug build (release, best of three): for 100,000
//! distinct pcs, 161 against 136 ms and 434 against 508 ms, the same peak
//! RSS (46, 138 against 144 MiB); for ten pcs, what a trace meets in most
//! objects, blazesym needs 12 MiB of heap for libc where addr2line needs
//! 32, having parsed every compilation unit up front. blazesym maps the file
//! and parses a unit when a lookup first needs it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use blazesym::symbolize::{
    source::{Elf, Source},
    CodeInfo, Input, Symbolized, Symbolizer,
};
use object::{CompressionFormat, Object, ObjectSection, SectionKind};

/// Where separate debug files are looked for when `--debug-dir` is not
/// given.
pub(crate) const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// The most an object's compressed DWARF sections may inflate to: past
/// it the object is named by its symbols only, its DWARF costing more
/// memory than a whole trace should.
const MAX_INFLATED: u64 = 64 << 20;

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
    /// The file that holds it (the object, or its debug file).
    path: PathBuf,
    symbolizer: Symbolizer,
}

impl Dwarf {
    /// The DWARF in the ELF file at `path`; `None` if it has none (no
    /// `.debug_info`, or one stripped to a placeholder), or too much.
    pub(crate) fn open(path: &Path) -> Option<Self> {
        let data = map(path)?;
        let elf = object::File::parse(&data[..]).ok()?;
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
        let symbolizer = Symbolizer::builder()
            .enable_auto_reload(false)
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(false)
            .set_debug_dirs(Some::<[&Path; 0]>([]))
            .build();
        let dwarf = Self {
            path: path.to_path_buf(),
            symbolizer,
        };
        // Read its tables now, not in the middle of a burst of samples.
        dwarf.frames(elf.entry());
        Some(dwarf)
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
        let mut elf = Elf::new(&self.path);
        elf.debug_syms = true;
        let found = self
            .symbolizer
            .symbolize_single(&Source::Elf(elf), Input::VirtOffset(addr));
        let Ok(Symbolized::Sym(sym)) = found else {
            return Vec::new();
        };
        let Some(code) = sym.code_info.as_deref() else {
            // A symbol, no line: the symbol tables say as much.
            return Vec::new();
        };
        // blazesym gives the outermost function first, each with the line
        // in it (where it calls the next).
        let frame = |name: &str, code: Option<&CodeInfo>| SourceFrame {
            function: Some(name.to_string()).filter(|n| !n.is_empty()),
            file: code.map(|c| c.to_path().to_string_lossy().into_owned()),
            line: code.and_then(|c| c.line).unwrap_or(0),
        };
        let mut out: Vec<SourceFrame> = sym
            .inlined
            .iter()
            .rev()
            .map(|f| frame(&f.name, f.code_info.as_ref()))
            .collect();
        out.push(frame(&sym.name, Some(code)));
        out
    }
}

/// The file at `path`, mapped read-only.
fn map(path: &Path) -> Option<memmap2::Mmap> {
    let file = fs::File::open(path).ok()?;
    // SAFETY: mapped read-only and private, and dropped before anything
    // else may change the file; like any debugger, leak trusts debug files
    // not to be truncated under it.
    unsafe { memmap2::Mmap::map(&file) }.ok()
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
