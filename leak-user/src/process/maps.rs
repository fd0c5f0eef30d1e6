//! The mappings of a process (`/proc/PID/maps`) and what follows from
//! them: where a binary was loaded (its load bias), its code, its heap.

use std::fs;

/// One loadable segment of an ELF file: where it sits in the file and where
/// it asks to be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`.
    pub filesz: u64,
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Inode of the mapped file (0 for anonymous memory).
    pub inode: u64,
    /// Mapped executable (`x` in its permissions).
    pub executable: bool,
    /// Path, if any.
    pub path: String,
}

/// Parses `/proc/PID/maps` text.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            let offset = f.next()?;
            let _dev = f.next()?;
            let inode = f.next()?;
            let path = f.collect::<Vec<_>>().join(" ");
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                inode: inode.parse().ok()?,
                executable: perms.contains('x'),
                path,
            })
        })
        .collect()
}

/// The load bias of a binary in a process: runtime address minus the
/// address the ELF file asks for (0 for a non-PIE executable). Found from
/// the first mapping of the file (`inode`) whose offset starts a segment.
pub(crate) fn load_bias(maps: &[Mapping], inode: u64, segments: &[Segment]) -> Option<u64> {
    const PAGE: u64 = 4096;
    maps.iter().filter(|m| m.inode == inode).find_map(|m| {
        let seg = segments
            .iter()
            .find(|s| s.offset & !(PAGE - 1) == m.offset)?;
        // The mapping starts at the page holding the segment's first byte.
        // (Wrapping: the segments come from a file that may be corrupt.)
        let want = seg.vaddr.wrapping_sub(seg.offset - m.offset);
        Some(m.start.wrapping_sub(want))
    })
}

/// The load bias of `inode` in process `pid`, read from its maps.
pub(crate) fn process_load_bias(pid: u32, inode: u64, segments: &[Segment]) -> Option<u64> {
    load_bias(&of(pid).ok()?, inode, segments)
}

/// The mappings of process `pid`.
pub(crate) fn of(pid: u32) -> std::io::Result<Vec<Mapping>> {
    Ok(parse_maps(&fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

/// The program break of `pid` now: the end of its `[heap]` mapping.
pub(crate) fn program_break(pid: u32) -> Option<u64> {
    of(pid)
        .ok()?
        .iter()
        .find(|m| m.path == "[heap]")
        .map(|m| m.end)
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
        assert!(maps[1].executable && !maps[0].executable);
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
}
