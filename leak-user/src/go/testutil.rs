//! Builds real Go programs for the tests, once per toolchain and variant.
//!
//! Toolchains are `$LEAK_GO_ROOT/go-<ver>/bin/go` (default
//! `<repo>/target/tools`, where `cargo xtask setup` installs them, linking
//! Debian's `/usr/lib/go-1.19` there as `go-1.19.8`; `<repo>` is
//! `$LEAK_REPO_ROOT` or the parent of this crate). Binaries are cached in
//! `<repo>/target/test-go/<ver>-<variant>/`, keyed by a hash of the Go
//! sources. A missing toolchain or tool skips the test with a printed
//! reason; a failed build panics.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
};

/// The Go releases the tests cover, one per runtime-table era, oldest
/// first. 1.19.8 is Debian 12's (golang-1.19-go), what its Go daemons are
/// built with.
pub const VERSIONS: [&str; 4] = ["1.19.8", "1.21.13", "1.25.5", "1.27.3"];

/// How a test program is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `go build`.
    Plain,
    /// `-ldflags='-s -w'`: no `.symtab`, no DWARF.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// `-buildmode=pie -ldflags='-s -w'`.
    StrippedPie,
    /// Stripped, then `objcopy --remove-section .go.buildinfo`: `go version`
    /// then says "not a Go executable", and the program still runs (the
    /// runtime never reads that section). `-buildvcs=false` or `-trimpath`
    /// only shrink the build info; the Go linker always writes the section.
    NoBuildInfo,
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
            Variant::ExternalPie => "external-pie",
            Variant::Arm64 => "arm64",
        }
    }

    fn go_flags(self) -> &'static [&'static str] {
        match self {
            Variant::Plain | Variant::Arm64 => &[],
            Variant::Stripped | Variant::NoBuildInfo => &["-ldflags=-s -w"],
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
}

/// The repository root (holds `tests/go` and `target/`).
pub fn repo_root() -> PathBuf {
    std::env::var_os("LEAK_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// The `go` command of toolchain `version`, if installed.
pub fn go_tool(version: &str) -> Option<PathBuf> {
    let root = std::env::var_os("LEAK_GO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/tools"));
    let go = root.join(format!("go-{version}/bin/go"));
    go.is_file().then_some(go)
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

/// Builds are serialised: the machine may have two cores, and two tests
/// must not write the same cache entry at once.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The `seed` service (leak in `main.(*RequestTracker).Track`) built with Go
/// `version` as `variant`, or `None` (after printing why) if this machine
/// cannot build it.
pub fn seed(version: &str, variant: Variant) -> Option<PathBuf> {
    let module = repo_root().join("tests/go");
    build(version, variant, &module, "./seed", "seed")
}

/// `tests/go/goroutines`: a quiet program with a dozen groups of parked
/// goroutines, each blocked a different way, that serves its own
/// goroutine profile (prints `listening ADDR` once they are parked).
pub fn goroutines_program(version: &str, variant: Variant) -> Option<PathBuf> {
    let module = repo_root().join("tests/go");
    build(version, variant, &module, "./goroutines", "goroutines")
}

/// A small program that prints, for PCs inside inlined code, the frames
/// `runtime.CallersFrames` gives: ground truth for inline-tree expansion.
/// Its output lines are `pc<TAB>function<TAB>file:line`, one per frame, in
/// the order the runtime yields them.
/// The first line, `@<hex>`, is the run-time entry of `main.notInlined`,
/// from which a test computes the load bias of a PIE build.
pub fn frames_program(version: &str, variant: Variant) -> Option<PathBuf> {
    let module = repo_root().join("target/test-go/src-frames");
    std::fs::create_dir_all(&module).expect("create frames module dir");
    write_if_changed(&module.join("go.mod"), "module framesprobe\n\ngo 1.21\n");
    write_if_changed(&module.join("main.go"), FRAMES_MAIN_GO);
    build(version, variant, &module, ".", "frames")
}

const FRAMES_MAIN_GO: &str = r##"// Prints the frames of call stacks that pass through inlined functions.
package main

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
)

type box struct{ pcs []uintptr }

func (b *box) capture() {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(1, pcs)
	b.pcs = pcs[:n]
}

func leaf(b *box)   { b.capture() }
func middle(b *box) { leaf(b) }
func outer(b *box)  { middle(b) }

//go:noinline
func notInlined(b *box) { outer(b) }

func generic[T any](b *box, v T) { _ = fmt.Sprint(v); middle(b) }

//go:noinline
func viaGeneric(b *box) { generic(b, 3) }

func show(pcs []uintptr) {
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		fmt.Printf("%x\t%s\t%s:%d\n", f.PC, f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
}

func main() {
	fmt.Printf("@%x\n", reflect.ValueOf(notInlined).Pointer())
	var a, b, c box
	notInlined(&a)
	viaGeneric(&b)
	func() { strings.Map(func(r rune) rune { c.capture(); return r }, "x") }()
	for _, x := range []*box{&a, &b, &c} {
		for _, pc := range x.pcs {
			fmt.Printf("#%x\n", pc)
		}
		show(x.pcs)
	}
}
"##;

fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(contents) {
        std::fs::write(path, contents).expect("write Go test source");
    }
}

/// Hash of `go.mod` and the `.go` files of the package: the cache key.
fn source_hash(module: &Path, package: &str) -> u64 {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
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
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

fn build(
    version: &str,
    variant: Variant,
    module: &Path,
    package: &str,
    name: &str,
) -> Option<PathBuf> {
    let Some(go) = go_tool(version) else {
        eprintln!("skipped: Go {version} toolchain not found (set LEAK_GO_ROOT to a dir with go-{version}/bin/go)");
        return None;
    };
    if variant == Variant::NoBuildInfo && !have("objcopy") {
        eprintln!("skipped: objcopy (binutils) not installed; needed to cut .go.buildinfo");
        return None;
    }
    if variant == Variant::ExternalPie && !have("gcc") {
        eprintln!("skipped: gcc not installed; needed for -linkmode=external");
        return None;
    }
    let test_go = repo_root().join("target/test-go");
    let dir = test_go.join(format!("{version}-{}", variant.name()));
    let out = dir.join(name);
    let stamp = dir.join(format!("{name}.source-hash"));
    let hash = source_hash(module, package).to_string();

    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if out.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&hash) {
        return Some(out);
    }
    std::fs::create_dir_all(&dir).expect("create test-go cache dir");
    let tmp = dir.join(format!("{name}.tmp"));
    let output = Command::new(&go)
        .current_dir(module)
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
            if variant == Variant::ExternalPie {
                "1"
            } else {
                "0"
            },
        )
        .arg("build")
        .args(variant.go_flags())
        .arg("-o")
        .arg(&tmp)
        .arg(package)
        .output()
        .expect("run go build");
    assert!(
        output.status.success(),
        "go{version} build {variant:?} of {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if variant == Variant::NoBuildInfo {
        let status = Command::new("objcopy")
            .args(["--remove-section", ".go.buildinfo"])
            .arg(&tmp)
            .status()
            .expect("run objcopy");
        assert!(status.success(), "objcopy failed on {}", tmp.display());
    }
    std::fs::rename(&tmp, &out).expect("move built binary into place");
    std::fs::write(&stamp, &hash).expect("write source stamp");
    Some(out)
}

/// Runs `go tool addr2line` of toolchain `version` on `pcs`: for each,
/// `(function, file, line)`, with `("?", 0)` for file and line when the
/// tables have no entry for the pc.
pub fn go_addr2line(version: &str, bin: &Path, pcs: &[u64]) -> Vec<(String, String, u32)> {
    use std::io::Write;
    let go = go_tool(version).expect("toolchain checked by the caller");
    let mut child = Command::new(go)
        .args(["tool", "addr2line"])
        .arg(bin)
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run go tool addr2line");
    let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
    // addr2line answers line by line; write everything, then read.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("addr2line output");
    writer.join().expect("writer thread").expect("write pcs");
    assert!(output.status.success(), "go tool addr2line failed");
    let text = String::from_utf8(output.stdout).expect("utf-8 output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        pcs.len() * 2,
        "addr2line answered {} lines",
        lines.len()
    );
    lines
        .chunks(2)
        .map(|pair| {
            let (file, line) = pair[1].rsplit_once(':').expect("file:line");
            let line: i64 = line
                .parse()
                .unwrap_or_else(|_| panic!("addr2line said {pair:?}"));
            // No line table entry (padding after the code): ":-1".
            if line < 0 {
                return (pair[0].to_owned(), "?".to_owned(), 0);
            }
            (pair[0].to_owned(), file.to_owned(), line as u32)
        })
        .collect()
}
