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
