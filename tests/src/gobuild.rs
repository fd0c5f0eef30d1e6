//! Building the Go test programs with real toolchains, and the Go binaries
//! of others the tests run (esbuild from npm).

use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
};

use crate::root;

/// Where the toolchains are: `$LEAK_GO_ROOT`, else `<repo>/target/tools`
/// (where `cargo xtask setup` installs them).
fn go_root() -> PathBuf {
    std::env::var_os("LEAK_GO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tools"))
}

/// The `go` command of toolchain `version` (e.g. "1.25.5"; "1.19.8" is
/// Debian's golang-1.19-go, which `cargo xtask setup` links there), if
/// installed.
pub fn go_tool(version: &str) -> Option<PathBuf> {
    let go = go_root().join(format!("go-{version}/bin/go"));
    go.is_file().then_some(go)
}

/// The `go` command of toolchain `version`; fails the test if it is not
/// installed.
pub fn go(version: &str) -> PathBuf {
    go_tool(version).unwrap_or_else(|| {
        panic!(
            "{} missing: run `cargo xtask setup`",
            go_root().join(format!("go-{version}/bin/go")).display()
        )
    })
}

/// How a test program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `go build`.
    Plain,
    /// `-ldflags='-s -w'`: no `.symtab`, no DWARF.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// `-ldflags='-s -w' -buildmode=pie`: no symbols, no DWARF, relocated.
    StrippedPie,
    /// Stripped, then `objcopy --remove-section .go.buildinfo`: `go version`
    /// then says "not a Go executable", and the program still runs (the
    /// runtime never reads that section). `-buildvcs=false` or `-trimpath`
    /// only shrink the build info; the Go linker always writes the section.
    NoBuildInfo,
    /// As [`Variant::NoBuildInfo`], and the text of `runtime.buildVersion`
    /// blanked too ("go1.19.8" → "go0.00.0"): nothing in the file names the
    /// release, so leak infers it from the runtime's functions. The program
    /// runs as before (only `runtime.Version()` reads that text).
    NoVersion,
    /// `-buildmode=pie -ldflags='-linkmode=external -s -w'` with cgo: the
    /// C linker folds `.gopclntab` into `.data.rel.ro`, and `.text` starts
    /// before `runtime.text`.
    ExternalPie,
    /// `GOARCH=arm64 go build`: a program leak cannot trace.
    Arm64,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::StrippedPie => "stripped-pie",
            Variant::NoBuildInfo => "nobuildinfo",
            Variant::NoVersion => "noversion",
            Variant::ExternalPie => "external-pie",
            Variant::Arm64 => "arm64",
        }
    }

    fn go_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Plain | Variant::Arm64 => &[],
            Variant::Stripped | Variant::NoBuildInfo | Variant::NoVersion => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
            Variant::StrippedPie => &["-buildmode=pie", "-ldflags=-s -w"],
            Variant::ExternalPie => &["-buildmode=pie", "-ldflags=-linkmode=external -s -w"],
        }
    }

    /// Whether the variant keeps `.symtab`.
    pub fn has_symtab(self) -> bool {
        matches!(self, Variant::Plain | Variant::Pie)
    }

    /// Whether the binary is position independent.
    pub fn is_pie(self) -> bool {
        matches!(
            self,
            Variant::Pie | Variant::StrippedPie | Variant::ExternalPie
        )
    }

    /// The tool the variant needs besides Go, if this machine lacks it.
    fn missing_tool(self) -> Option<&'static str> {
        let tool = match self {
            Variant::NoBuildInfo | Variant::NoVersion => "objcopy",
            Variant::ExternalPie => "gcc",
            _ => return None,
        };
        (!have(tool)).then_some(tool)
    }
}

/// Whether `tool` runs (for objcopy and gcc).
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One Go program to build: `package` (a directory, `./seed`) of the module
/// at `module`, with build `tags`, saved as `name`.
#[derive(Clone, Copy, Debug)]
pub struct GoProgram<'a> {
    /// The module's directory (holds `go.mod`).
    pub module: &'a Path,
    /// The package, relative to the module.
    pub package: &'a str,
    /// Build tags, if any.
    pub tags: Option<&'a str>,
    /// The binary's file name.
    pub name: &'a str,
}

/// Builds are serialised: the machine may have two cores, and two tests
/// must not write the same cache entry at once.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds `program` with Go `version` as `variant`, once: binaries are kept
/// in `<repo>/target/test-go/<version>-<variant>/`, keyed by a hash of the
/// Go sources. `None` (after printing why) when this machine lacks the
/// toolchain or a tool the variant needs; a failed build fails the test.
pub fn build_cached(version: &str, variant: Variant, program: GoProgram<'_>) -> Option<PathBuf> {
    let Some(go) = go_tool(version) else {
        eprintln!("skipped: Go {version} toolchain not found (set LEAK_GO_ROOT to a dir with go-{version}/bin/go)");
        return None;
    };
    if let Some(tool) = variant.missing_tool() {
        eprintln!("skipped: {tool} not installed; the {variant:?} build needs it");
        return None;
    }
    let test_go = root().join("target/test-go");
    let dir = test_go.join(format!("{version}-{}", variant.name()));
    let out = dir.join(program.name);
    let stamp = dir.join(format!("{}.source-hash", program.name));
    let hash = format!(
        "{:?}",
        (source_hash(program.module, program.package), program.tags)
    );

    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if out.is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(&hash) {
        return Some(out);
    }
    fs::create_dir_all(&dir).expect("create test-go cache dir");
    let tmp = dir.join(format!("{}.tmp", program.name));
    let mut go_build = Command::new(&go);
    go_build
        .current_dir(program.module)
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", test_go.join(format!("gocache-{version}")))
        .env("GOFLAGS", "")
        .env(
            "GOARCH",
            if variant == Variant::Arm64 {
                "arm64"
            } else {
                "amd64"
            },
        )
        .env(
            "CGO_ENABLED",
            // Programs whose package imports "C" are cgo whatever the variant.
            if variant == Variant::ExternalPie || program.name.starts_with("cgo") {
                "1"
            } else {
                "0"
            },
        )
        .arg("build")
        .args(variant.go_flags())
        .args(program.tags.iter().flat_map(|t| ["-tags", t]))
        .arg("-o")
        .arg(&tmp)
        .arg(program.package);
    crate::run_ok(
        &mut go_build,
        &format!("go{version} build {variant:?} of {}", program.package),
    );
    if matches!(variant, Variant::NoBuildInfo | Variant::NoVersion) {
        remove_build_info(&tmp);
    }
    if variant == Variant::NoVersion {
        blank_version(&tmp, version);
    }
    fs::rename(&tmp, &out).expect("move built binary into place");
    fs::write(&stamp, &hash).expect("write source stamp");
    Some(out)
}

/// Hash of `go.mod` and the `.go` files of the package: the cache key.
fn source_hash(module: &Path, package: &str) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "go") || path.ends_with("go.mod") {
                files.push(path);
            }
        }
    }
    let mut files = vec![module.join("go.mod")];
    walk(&module.join(package), &mut files);
    // The packages every test program may import.
    walk(&module.join("internal"), &mut files);
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// Where test program `prog` comes from: its directory of tests/go and its
/// build tags. `seednoprof` is `seed` without its `net/http/pprof` import
/// (`shortjobnoprof` likewise), so Go starts it with heap sampling off.
fn go_source(prog: &str) -> (&str, Option<&str>) {
    match prog {
        "seednoprof" => ("seed", Some("noprof")),
        "shortjobnoprof" => ("shortjob", Some("noprof")),
        _ => (prog, None),
    }
}

/// Builds test program `prog` (a directory of tests/go, or a build of one
/// with tags: see [`go_source`]) with Go `version`, and returns the
/// binary's path; the toolchain must be there (`cargo xtask setup`).
pub fn build_go(prog: &str, version: &str, variant: Variant) -> PathBuf {
    let (source, tags) = go_source(prog);
    let module = root().join("tests/go");
    let package = format!("./{source}");
    let program = GoProgram {
        module: &module,
        package: &package,
        tags,
        name: prog,
    };
    build_cached(version, variant, program)
        .unwrap_or_else(|| panic!("cannot build {prog} with go{version} as {variant:?}"))
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

/// Cuts `.go.buildinfo` out of `bin`.
fn remove_build_info(bin: &Path) {
    crate::run_ok(
        Command::new("objcopy")
            .args(["--remove-section", ".go.buildinfo"])
            .arg(bin),
        "objcopy (binutils)",
    );
}

/// Overwrites each `go{version}` in `bin` with as many bytes of
/// `go0.00.0`-like text.
fn blank_version(bin: &Path, version: &str) {
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
