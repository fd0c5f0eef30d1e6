//! Processes as `/proc` shows them: which ones run a binary, where the binary
//! is mapped in each, and reading or writing one word of their memory.

use std::{
    fs,
    io::{self, Read},
    os::unix::fs::{FileExt, MetadataExt},
    path::Path,
};

/// Identity of a file on disk: the same binary seen through different paths
/// (symlinks, `/proc/PID/exe`, a container's root) has the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// The id of the file at `path` (symlinks followed).
    pub fn of(path: &Path) -> io::Result<Self> {
        let md = fs::metadata(path)?;
        Ok(Self {
            dev: md.dev(),
            ino: md.ino(),
        })
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the last ')' of the command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether process `pid` runs the binary `id`; `None` when there is no such
/// process (or it is gone).
pub fn runs_binary(pid: u32, id: FileId) -> Option<bool> {
    if !alive(pid) {
        return None;
    }
    match FileId::of(Path::new(&format!("/proc/{pid}/exe"))) {
        Ok(exe) => Some(exe == id),
        // Kernel threads have no exe; a process may exit under us.
        Err(_) => Some(false),
    }
}

/// Every live process whose executable is `id`, in pid order.
pub fn processes_running(id: FileId) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| runs_binary(*pid, id) == Some(true))
        .collect();
    pids.sort_unstable();
    pids
}

/// The command name of a process (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end().to_string())
}

/// One loadable segment of an ELF file: where it sits in the file and where
/// it asks to be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`.
    pub filesz: u64,
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Inode of the mapped file (0 for anonymous memory).
    pub inode: u64,
    /// Path, if any.
    pub path: String,
}

/// Parses `/proc/PID/maps` text.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let _perms = f.next()?;
            let offset = f.next()?;
            let _dev = f.next()?;
            let inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                inode: inode.parse().ok()?,
                path,
            })
        })
        .collect()
}

/// The load bias of a binary in a process: runtime address minus the
/// address the ELF file asks for (0 for a non-PIE executable). Found from
/// the first mapping of the file (`inode`) whose offset starts a segment.
pub fn load_bias(maps: &[Mapping], inode: u64, segments: &[Segment]) -> Option<u64> {
    const PAGE: u64 = 4096;
    maps.iter().filter(|m| m.inode == inode).find_map(|m| {
        let seg = segments
            .iter()
            .find(|s| s.offset & !(PAGE - 1) == m.offset)?;
        // The mapping starts at the page holding the segment's first byte.
        let want = seg.vaddr - (seg.offset - m.offset);
        Some(m.start.wrapping_sub(want))
    })
}

/// The load bias of `inode` in process `pid`, read from its maps.
pub fn process_load_bias(pid: u32, inode: u64, segments: &[Segment]) -> Option<u64> {
    let mut text = String::new();
    fs::File::open(format!("/proc/{pid}/maps"))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    load_bias(&parse_maps(&text), inode, segments)
}

/// Reads a little-endian `i64` at `addr` in process `pid`.
pub fn read_i64(pid: u32, addr: u64) -> io::Result<i64> {
    let mem = fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, addr)?;
    Ok(i64::from_le_bytes(buf))
}

/// Writes a little-endian `i64` at `addr` in process `pid`.
pub fn write_i64(pid: u32, addr: u64, value: i64) -> io::Result<()> {
    let mem = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    mem.write_all_at(&value.to_le_bytes(), addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c8a00000-55d0c8c6f000 r--p 00000000 fd:01 1234 /srv/seed
55d0c8c6f000-55d0c8f3a000 r-xp 0026f000 fd:01 1234 /srv/seed
7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn parses_maps_lines() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[1].start, 0x55d0c8c6f000);
        assert_eq!(maps[1].offset, 0x26f000);
        assert_eq!(maps[1].inode, 1234);
        assert_eq!(maps[1].path, "/srv/seed");
        assert_eq!(maps[2].path, "[stack]");
    }

    #[test]
    fn pie_bias_is_start_minus_vaddr() {
        let segs = [
            Segment {
                vaddr: 0,
                offset: 0,
                filesz: 0x26f000,
            },
            Segment {
                vaddr: 0x270000,
                offset: 0x26f000,
                filesz: 0x2cb000,
            },
        ];
        let bias = load_bias(&parse_maps(MAPS), 1234, &segs).unwrap();
        assert_eq!(bias, 0x55d0c8a00000);
    }

    #[test]
    fn non_pie_bias_is_zero() {
        let maps = parse_maps("00400000-0067e000 r-xp 00000000 fd:01 99 /srv/app\n");
        let segs = [Segment {
            vaddr: 0x400000,
            offset: 0,
            filesz: 0x27e000,
        }];
        assert_eq!(load_bias(&maps, 99, &segs), Some(0));
        assert_eq!(load_bias(&maps, 100, &segs), None);
    }

    #[test]
    fn this_process_is_alive_and_runs_its_exe() {
        let me = std::process::id();
        assert!(alive(me));
        let id = FileId::of(Path::new("/proc/self/exe")).unwrap();
        assert_eq!(runs_binary(me, id), Some(true));
        assert!(processes_running(id).contains(&me));
        assert_eq!(runs_binary(u32::MAX - 1, id), None);
    }

    #[test]
    fn reads_and_writes_own_memory() {
        let cell = Box::new(0x1234i64);
        let addr = &*cell as *const i64 as u64;
        let me = std::process::id();
        assert_eq!(read_i64(me, addr).unwrap(), 0x1234);
        write_i64(me, addr, 77).unwrap();
        assert_eq!(unsafe { std::ptr::read_volatile(&*cell) }, 77);
    }
}
