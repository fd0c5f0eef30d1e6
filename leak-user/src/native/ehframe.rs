//! A check of an object's `.eh_frame_hdr` before the unwinder trusts it:
//! its search table must point into `.eh_frame`. A damaged (or hostile)
//! table whose entry points below `.eh_frame` makes the DWARF reader under
//! the unwinder subtract past zero (a panic in a build with overflow
//! checks, a wild offset without). Without the header the unwinder builds
//! its own index from `.eh_frame`, so a bad one is simply left out.

use std::ops::Range;

use gimli::{BaseAddresses, EhFrameHdr, LittleEndian};

/// Whether the `.eh_frame_hdr` section `hdr` (linked at `hdr_svma`) can be
/// handed to the unwinder with `.eh_frame` at `eh_frame`: it parses, it
/// names `.eh_frame`'s address, and every entry of its table points inside
/// `.eh_frame`.
pub(crate) fn hdr_fits(hdr: &[u8], hdr_svma: u64, eh_frame: Range<u64>) -> bool {
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(hdr_svma)
        .set_eh_frame(eh_frame.start);
    let Ok(parsed) = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8) else {
        return false;
    };
    if parsed.eh_frame_ptr().direct().ok() != Some(eh_frame.start) {
        return false;
    }
    let Some(table) = parsed.table() else {
        // No table: the unwinder does not search it.
        return true;
    };
    let mut entries = table.iter(&bases);
    loop {
        match entries.next() {
            Ok(None) => return true,
            Ok(Some((_, fde))) if fde.direct().is_ok_and(|p| eh_frame.contains(&p)) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSection};

    /// The C library's header fits its `.eh_frame`; one entry pointed
    /// below it (found by fuzzing: the unwinder's DWARF reader then
    /// subtracted past zero) or past its end does not, nor a header that
    /// names another `.eh_frame`.
    #[test]
    fn a_table_pointing_outside_eh_frame_is_refused() {
        let data = std::fs::read("/usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let file = object::File::parse(&*data).unwrap();
        let section = |name| {
            let s = file.section_by_name(name).unwrap();
            (
                s.address(),
                s.address()..s.address() + s.size(),
                s.data().unwrap().to_vec(),
            )
        };
        let (hdr_at, _, hdr) = section(".eh_frame_hdr");
        let (_, eh_frame, _) = section(".eh_frame");
        assert!(hdr_fits(&hdr, hdr_at, eh_frame.clone()));
        // The usual encodings: eh_frame_ptr sdata4 pcrel, fde_count
        // udata4, table entries (location, FDE) datarel sdata4 from byte 12.
        assert_eq!(&hdr[..4], &[1, 0x1b, 0x03, 0x3b]);
        let mut below = hdr.clone();
        let fde_of_first = 12 + 4;
        let at = |h: &[u8]| i32::from_le_bytes(h[fde_of_first..][..4].try_into().unwrap());
        let to_start = (eh_frame.start - hdr_at) as i32;
        below[fde_of_first..][..4].copy_from_slice(&(to_start - 8).to_le_bytes());
        assert!(!hdr_fits(&below, hdr_at, eh_frame.clone()));
        let mut past = hdr.clone();
        let to_end = (eh_frame.end - hdr_at) as i32;
        past[fde_of_first..][..4].copy_from_slice(&to_end.to_le_bytes());
        assert!(at(&past) > at(&hdr));
        assert!(!hdr_fits(&past, hdr_at, eh_frame.clone()));
        let elsewhere = eh_frame.start + 16..eh_frame.end;
        assert!(!hdr_fits(&hdr, hdr_at, elsewhere));
        assert!(!hdr_fits(&hdr[..3], hdr_at, eh_frame));
    }
}
