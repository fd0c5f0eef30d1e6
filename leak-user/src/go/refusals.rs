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
