//! The Go programs leak-user's own tests read, built by the test harness's
//! one Go builder (`leak_tests::gobuild`), once per toolchain and variant.
//!
//! Toolchains are `$LEAK_GO_ROOT/go-<ver>/bin/go` (default
//! `<repo>/target/tools`, where `cargo xtask setup` installs them, linking
//! Debian's `/usr/lib/go-1.19` there as `go-1.19.8`). Binaries are cached in
//! `<repo>/target/test-go/<ver>-<variant>/`, keyed by a hash of the Go
//! sources. A missing toolchain or tool skips the test with a printed
//! reason; a failed build panics.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The Go releases the tests cover, one per runtime-table era, oldest
/// first. 1.19.8 is Debian 12's (golang-1.19-go), what its Go daemons are
/// built with.
pub(crate) const VERSIONS: [&str; 4] = ["1.19.8", "1.21.13", "1.25.5", "1.27.3"];

pub(crate) use leak_tests::gobuild::{go_tool, Variant};

/// The repository root (holds `tests/go` and `target/`).
pub(crate) fn repo_root() -> PathBuf {
    leak_tests::root()
}

/// The `seed` service (leak in `main.(*RequestTracker).Track`) built with Go
/// `version` as `variant`, or `None` (after printing why) if this machine
/// cannot build it.
pub(crate) fn seed(version: &str, variant: Variant) -> Option<PathBuf> {
    let module = repo_root().join("tests/go");
    build(version, variant, &module, "./seed", "seed")
}

/// `tests/go/goroutines`: a quiet program with a dozen groups of parked
/// goroutines, each blocked a different way, that serves its own
/// goroutine profile (prints `listening ADDR` once they are parked).
pub(crate) fn goroutines_program(version: &str, variant: Variant) -> Option<PathBuf> {
    let module = repo_root().join("tests/go");
    build(version, variant, &module, "./goroutines", "goroutines")
}

/// A small program that prints, for PCs inside inlined code, the frames
/// `runtime.CallersFrames` gives: ground truth for inline-tree expansion.
/// Its output lines are `pc<TAB>function<TAB>file:line`, one per frame, in
/// the order the runtime yields them.
/// The first line, `@<hex>`, is the run-time entry of `main.notInlined`,
/// from which a test computes the load bias of a PIE build.
pub(crate) fn frames_program(version: &str, variant: Variant) -> Option<PathBuf> {
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

/// Builds `package` of the Go module at `module` as `name`, once per
/// toolchain, variant and source (the harness's one Go build).
fn build(
    version: &str,
    variant: Variant,
    module: &Path,
    package: &str,
    name: &str,
) -> Option<PathBuf> {
    let program = leak_tests::gobuild::GoProgram {
        module,
        package,
        tags: None,
        name,
    };
    leak_tests::gobuild::build_cached(version, variant, program)
}

/// Runs `go tool addr2line` of toolchain `version` on `pcs`: for each,
/// `(function, file, line)`, with `("?", 0)` for file and line when the
/// tables have no entry for the pc.
pub(crate) fn go_addr2line(version: &str, bin: &Path, pcs: &[u64]) -> Vec<(String, String, u32)> {
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

/// The seed of each toolchain as the tests of a find by disassembly need
/// it: `check(version, plain build, its row, stripped builds)`, where the
/// plain build keeps `.symtab` (what the find must equal) and the stripped
/// and stripped+PIE builds have none (where the find must work alone).
pub(crate) fn plain_and_stripped_seeds(
    mut check: impl FnMut(
        &str,
        &crate::go::GoBinary,
        &'static crate::go::table::RuntimeProbes,
        &[(Variant, crate::go::GoBinary)],
    ),
) {
    use crate::go::{table::probes_for, GoBinary};
    for v in VERSIONS {
        let Some(plain) = seed(v, Variant::Plain) else {
            continue;
        };
        let plain = GoBinary::open(&plain).unwrap();
        let row = probes_for(&plain.go_version().0).unwrap();
        let stripped: Vec<(Variant, GoBinary)> = [Variant::Stripped, Variant::StrippedPie]
            .into_iter()
            .map(|variant| {
                let path = seed(v, variant).unwrap();
                (variant, GoBinary::open(&path).unwrap())
            })
            .collect();
        check(v, &plain, row, &stripped);
    }
}
