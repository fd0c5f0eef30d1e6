//! Unit tests of the pclntab decoders on hand-made tables; the checks
//! against real binaries are in `target/tests.rs`.

use super::{
    lines::{pcvalue, read_varint},
    names::{edit_distance, normalize, print_name},
};

/// Encodes a pc-value table the way cmd/internal/obj does.
fn encode(pairs: &[(i32, u32)], min_lc: u32) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    let mut prev = -1i32;
    for &(value, pc_len) in pairs {
        let delta = value - prev;
        let zigzag = ((delta << 1) ^ (delta >> 31)) as u32;
        varint(&mut out, zigzag);
        varint(&mut out, pc_len / min_lc);
        prev = value;
    }
    out.push(0);
    out
}

#[test]
fn varint_decodes_multibyte_and_rejects_truncation() {
    let mut pos = 0;
    assert_eq!(read_varint(&[0x05], &mut pos), Some(5));
    pos = 0;
    assert_eq!(read_varint(&[0xe5, 0x8e, 0x26], &mut pos), Some(624_485));
    assert_eq!(pos, 3);
    pos = 0;
    assert_eq!(read_varint(&[0x80, 0x80], &mut pos), None);
    pos = 0;
    assert_eq!(
        read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut pos),
        Some(u32::MAX)
    );
}

#[test]
fn pcvalue_walks_zigzag_deltas() {
    // line 10 for 4 bytes, 12 for 6 bytes, 7 for 300 bytes.
    let table = encode(&[(10, 4), (12, 6), (7, 300)], 1);
    let mut pctab = vec![0xaa]; // offset 0 means "no table"
    pctab.extend_from_slice(&table);
    let at = |pc: u64| pcvalue(&pctab, 1, 0x1000, 0x1000 + pc, 1);
    assert_eq!(at(0), Some(10));
    assert_eq!(at(3), Some(10));
    assert_eq!(at(4), Some(12));
    assert_eq!(at(9), Some(12));
    assert_eq!(at(10), Some(7));
    assert_eq!(at(309), Some(7));
    assert_eq!(at(310), None);
}

#[test]
fn pcvalue_scales_pc_by_quantum_and_handles_minus_one() {
    // -1 (not inlined) for 8 bytes, then inline index 0 for 8 bytes.
    let table = encode(&[(-1, 8), (0, 8)], 4);
    let at = |pc: u64| pcvalue(&table, 0, 0, pc, 4);
    assert_eq!(at(7), Some(-1));
    assert_eq!(at(8), Some(0));
    assert_eq!(at(16), None);
}

#[test]
fn generic_names_print_like_the_runtime() {
    assert_eq!(
        print_name("main.generic[go.shape.int]"),
        "main.generic[...]"
    );
    // Everything from the first '[' to the last ']' goes, as in Go.
    assert_eq!(
        print_name("main.(*T[go.shape.string]).M"),
        "main.(*T[...]).M"
    );
    assert_eq!(print_name("main.main"), "main.main");
}

#[test]
fn near_match_helpers() {
    assert_eq!(
        normalize("main.(*RequestTracker).Track"),
        "main.requesttracker.track"
    );
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
}

/// A table over `tab` with no segments, its function table at 0 and its
/// text base and `gofunc` as given.
fn bare_table(tab: Vec<u8>, text_start: u64, gofunc: Option<u64>) -> super::Pclntab {
    use std::sync::{Arc, OnceLock};
    let data: Arc<[u8]> = tab.into();
    super::Pclntab {
        table_len: data.len(),
        data,
        base: 0,
        header_vaddr: 0,
        format: super::PclntabFormat::Go120,
        min_lc: 1,
        nfunc: 1,
        text_start,
        text_start_source: super::TextStartSource::Header,
        funcname_off: 0,
        cu_off: 0,
        filetab_off: 0,
        pctab_off: 0,
        pcln_off: 0,
        moduledata: None,
        gofunc,
        segments: Vec::new(),
        by_name: OnceLock::new(),
        wrapper_func_id: OnceLock::new(),
    }
}

/// Found by fuzzing (go_binary): a `gofunc` or text base near the top of
/// the address space overflowed when an offset was added; such an address
/// is not in the file, and is no function and no inline tree.
#[test]
fn addresses_past_the_top_of_memory_are_none() {
    // functab: entry 0x10 at funcoff 16; end 0x20; then a `_func` with
    // 0 pcdata and 4 funcdata whose offsets are 0x100.
    let mut tab = vec![0u8; 16 + 44 + 4 * 4];
    tab[0..4].copy_from_slice(&0x10u32.to_le_bytes());
    tab[4..8].copy_from_slice(&16u32.to_le_bytes());
    tab[8..12].copy_from_slice(&0x20u32.to_le_bytes());
    tab[16..20].copy_from_slice(&0x10u32.to_le_bytes()); // _func.entryOff
    tab[16 + 43] = 4; // nfuncdata
    for i in 0..4 {
        tab[16 + 44 + 4 * i..][..4].copy_from_slice(&0x100u32.to_le_bytes());
    }
    let t = bare_table(tab.clone(), 0x40_0000, Some(u64::MAX - 8));
    let raw = t.raw_func(0).unwrap();
    assert_eq!(t.funcdata_vaddr(&raw, super::FUNCDATA_INL_TREE), None);
    assert!(t.frames(0x40_0010).len() <= 1);
    let t = bare_table(tab, u64::MAX - 8, None);
    assert!(t.raw_func(0).is_none());
    assert_eq!(t.find_func(u64::MAX - 4), None);
}
