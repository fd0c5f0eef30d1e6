//! Building the Go test programs with real toolchains, and the Go binaries
//! of others the tests run (esbuild from npm).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::root;

/// The `go` command of toolchain `version` (e.g. "1.25.5"; "1.19.8" is
/// Debian's golang-1.19-go, which `cargo xtask setup` links there).
pub fn go(version: &str) -> PathBuf {
    let dir = std::env::var_os("LEAK_GO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tools"));
    let go = dir.join(format!("go-{version}/bin/go"));
    assert!(
        go.exists(),
        "{} missing: run `cargo xtask setup`",
        go.display()
    );
    go
}

/// How a test program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `go build`.
    Plain,
    /// `-ldflags='-s -w' -buildmode=pie`: no symbols, no DWARF, relocated.
    StrippedPie,
    /// `-ldflags='-s -w'`, `.go.buildinfo` cut out and the text of
    /// `runtime.buildVersion` blanked ("go1.19.8" → "go0.00.0"): nothing in
    /// the file names the release, so leak infers it from the runtime's
    /// functions. The program runs as before (only `runtime.Version()`
    /// reads that text).
    NoVersion,
}

/// Where test program `prog` comes from: its directory of tests/go and its
/// build tags. `seednoprof` is `seed` without its `net/http/pprof` import
/// (`shortjobnoprof` likewise),
/// so Go starts it with heap sampling off.
fn go_source(prog: &str) -> (&str, Option<&str>) {
    match prog {
        "seednoprof" => ("seed", Some("noprof")),
        "shortjobnoprof" => ("shortjob", Some("noprof")),
        _ => (prog, None),
    }
}

/// Builds test program `prog` (a directory of tests/go, or a build of one
/// with tags: see [`go_source`]) with Go `version`, once per test run, and
/// returns the binary's path.
pub fn build_go(prog: &str, version: &str, variant: Variant) -> PathBuf {
    let out_dir = root().join("target/it-go");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{prog}-{version}-{variant:?}").to_lowercase());
    let mut cmd = Command::new(go(version));
    cmd.arg("build")
        .arg("-o")
        .arg(&out)
        .current_dir(root().join("tests/go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", root().join("target/gocache"));
    match variant {
        Variant::Plain => {}
        Variant::StrippedPie => {
            cmd.args(["-ldflags=-s -w", "-buildmode=pie"]);
        }
        Variant::NoVersion => {
            cmd.args(["-ldflags=-s -w"]);
        }
    }
    if variant == Variant::NoVersion {
        // go build leaves an output it thinks up to date (its build id is
        // still there) alone: rebuild, so the blanking below finds its text.
        let _ = fs::remove_file(&out);
    }
    let (source, tags) = go_source(prog);
    if let Some(tags) = tags {
        cmd.args(["-tags", tags]);
    }
    cmd.arg(format!("./{source}"));
    let status = cmd.status().expect("run go build");
    assert!(status.success(), "go build {prog} with {version} failed");
    if variant == Variant::NoVersion {
        blank_version(&out, version);
    }
    out
}

/// esbuild from npm (`@esbuild/linux-x64`, a pinned release): a stripped
/// Go binary with no build info that somebody else builds and ships.
/// Downloaded once, with `npm pack`, into target/it-npm.
pub fn esbuild() -> PathBuf {
    const PACKAGE: &str = "@esbuild/linux-x64@0.28.2";
    let dir = root().join("target/it-npm");
    let bin = dir.join("package/bin/esbuild");
    if bin.exists() {
        return bin;
    }
    fs::create_dir_all(&dir).unwrap();
    let out = crate::run_ok(
        Command::new("npm")
            .args(["pack", "--silent", PACKAGE])
            .current_dir(&dir),
        &format!("npm pack {PACKAGE} (Node.js is on every machine of this kind)"),
    );
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let status = Command::new("tar")
        .args(["xzf", &tarball])
        .current_dir(&dir)
        .status()
        .expect("run tar");
    assert!(status.success() && bin.exists(), "unpack {tarball}");
    bin
}

/// Cuts `.go.buildinfo` out of `bin` and overwrites each `go{version}` in
/// it with as many bytes of `go0.00.0`-like text.
fn blank_version(bin: &Path, version: &str) {
    let status = Command::new("objcopy")
        .args(["--remove-section", ".go.buildinfo"])
        .arg(bin)
        .status()
        .expect("run objcopy (binutils)");
    assert!(status.success(), "objcopy failed on {}", bin.display());
    let mut data = fs::read(bin).unwrap();
    let text = format!("go{version}").into_bytes();
    let blank: Vec<u8> = text
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if i >= 2 && b.is_ascii_digit() {
                b'0'
            } else {
                b
            }
        })
        .collect();
    let mut found = 0;
    let mut i = 0;
    while let Some(at) = data[i..].windows(text.len()).position(|w| w == text) {
        data[i + at..i + at + text.len()].copy_from_slice(&blank);
        i += at + text.len();
        found += 1;
    }
    assert!(found > 0, "{}: no {version} text", bin.display());
    fs::write(bin, data).unwrap();
}
