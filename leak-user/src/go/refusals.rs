//! What leak refuses, on real files: each refusal is one line that says
//! what is missing, never "rebuild it".

use std::path::{Path, PathBuf};

use super::{
    elf::GoBinary,
    error::GoError,
    testutil::{self, Variant, VERSIONS},
};

/// A refusal's message: one line, no advice to rebuild.
fn one_line(err: &GoError) -> String {
    let msg = err.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(!msg.contains("rebuild"), "{msg}");
    msg
}

#[test]
fn arm64_is_refused_saying_what_is_missing() {
    let Some(path) = testutil::seed(VERSIONS[0], Variant::Arm64) else {
        return;
    };
    let err = GoBinary::open(&path).unwrap_err();
    assert!(matches!(err, GoError::UnsupportedArch { .. }), "{err:?}");
    let msg = one_line(&err);
    assert!(
        msg.contains("aarch64") && msg.contains("amd64 registers"),
        "{msg}"
    );
}

/// A copy of `bin` whose `.gopclntab` magic is `magic`, as an older Go
/// writes it.
fn with_magic(bin: &Path, magic: u32, name: &str) -> PathBuf {
    let plain = GoBinary::open(bin).unwrap();
    let section = plain.section(".gopclntab").expect(".gopclntab section");
    let at = section.file_offset.unwrap() as usize;
    let mut data = std::fs::read(bin).unwrap();
    data[at..at + 4].copy_from_slice(&magic.to_le_bytes());
    let out = testutil::repo_root().join(format!("target/test-go/{name}"));
    std::fs::write(&out, data).unwrap();
    out
}

/// Tables of Go 1.2–1.17 (no toolchain here: a 1.19 build with the old
/// magic stands in) are refused with the release range and what is missing.
#[test]
fn old_tables_are_refused_saying_what_is_missing() {
    let Some(plain) = testutil::seed(VERSIONS[0], Variant::Plain) else {
        return;
    };
    let cases = [
        (0xffff_fffa, "go1.16 or go1.17", "go1.18 and later"),
        (0xffff_fffb, "go1.2 to go1.15", "register ABI"),
    ];
    for (magic, release, missing) in cases {
        let path = with_magic(&plain, magic, &format!("seed-magic-{magic:x}"));
        let err = GoBinary::open(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(
            matches!(err, GoError::UnsupportedGoVersion { .. }),
            "{err:?}"
        );
        let msg = one_line(&err);
        assert!(msg.contains(release) && msg.contains(missing), "{msg}");
        assert!(
            msg.contains("leak supports go1.19, and go1.21 or later"),
            "{msg}"
        );
    }
}

/// `.gopclntab` of `data` (a plain build): its file range.
fn pclntab_range(path: &Path) -> std::ops::Range<usize> {
    let bin = GoBinary::open(path).unwrap();
    let s = bin.section(".gopclntab").expect(".gopclntab section");
    let at = s.file_offset.unwrap() as usize;
    at..at + s.size as usize
}

/// Opens `data` as leak opens an executable: an error is one line; a
/// binary that opens is driven through every reader (the fuzz targets'
/// driver), which must not panic.
fn open_damaged(data: &[u8]) {
    match GoBinary::from_data(PathBuf::from("damaged"), data.into()) {
        Err(e) => {
            one_line(&e);
        }
        Ok(_) => crate::fuzzing::go_binary(data),
    }
}

/// A binary cut short anywhere is refused in one line (or, cut past what
/// leak reads, read as it is); never a panic.
#[test]
fn truncated_binaries_are_one_line() {
    let Some(path) = testutil::seed(VERSIONS[0], Variant::Plain) else {
        return;
    };
    let data = std::fs::read(&path).unwrap();
    for n in 0..16 {
        let cut = data.len() * n / 16 + n;
        open_damaged(&data[..cut.min(data.len())]);
    }
}

/// A `.gopclntab` header whose counts and offsets point outside the table
/// or the address space: one line, never a panic.
#[test]
fn pclntab_offsets_out_of_range_are_one_line() {
    let Some(path) = testutil::seed(VERSIONS[0], Variant::Plain) else {
        return;
    };
    let tab = pclntab_range(&path);
    let data = std::fs::read(&path).unwrap();
    // nfunc, nfiles, textStart, then the five table offsets.
    for field in [8, 16, 24, 32, 40, 48, 56, 64] {
        for value in [u64::MAX, u64::MAX / 2, tab.len() as u64 + 1, 0] {
            let mut bad = data.clone();
            bad[tab.start + field..][..8].copy_from_slice(&value.to_le_bytes());
            open_damaged(&bad);
        }
    }
}

/// Bytes flipped at spread positions of the tables leak reads: no panic.
#[test]
fn bit_flipped_tables_never_panic() {
    let Some(path) = testutil::seed(VERSIONS[0], Variant::Plain) else {
        return;
    };
    let tab = pclntab_range(&path);
    let data = std::fs::read(&path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..48 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bad = data.clone();
        // Mostly the header and function table, sometimes anywhere in it.
        let span = if x & 1 == 0 { 4096 } else { tab.len() };
        bad[tab.start + (x >> 8) as usize % span] ^= (x >> 56) as u8 | 1;
        open_damaged(&bad);
    }
}
