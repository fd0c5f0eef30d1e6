//! `cargo xtask fuzz`: a bounded run of every fuzz target in
//! `leak-user/fuzz/` (cargo-fuzz, libFuzzer), each for a few seconds from
//! its corpus under `target/fuzz/corpus/` (kept between runs) and its
//! seeds: the committed ones (`leak-user/fuzz/seeds/`), valid memory images
//! the walker targets write from the runtime table, and the Go test builds
//! (`target/test-go`) and Debian daemons (`target/it-deb`) when present.
//! A crash fails the task and names its input, to become a unit test.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{root, run_cmd};

/// The targets, in the order they run.
const TARGETS: &[&str] = &[
    "go_binary",
    "patched_binary",
    "version",
    "ring_record",
    "heap_records",
    "goroutines",
    "cgroup",
    "proc_text",
    "patched_native",
    "probe_placement",
    "demangle",
    "native_record",
];

/// Native objects `patched_native` mutates, if present: the C library,
/// the C++ one (`leak_user::fuzzing::SYSTEM_LIBRARIES`, whose code and
/// symbols also seed `probe_placement` and `demangle`), and the C and C++
/// test builds (`-O2`, no frame pointers, so their unwind tables are what a
/// walk needs).
const NATIVE_BASES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
    "target/it-c/cleak-O2",
    "target/it-c/cppleak-O2",
    "target/it-c/leaker",
];

/// Executables `patched_binary` mutates (paths under the workspace), if
/// built: the smallest test builds of each Go release, stripped and PIE or
/// with symbols, an arm64 one and one without build info.
const BASES: &[&str] = &[
    "target/test-go/1.19.8-stripped-pie/frames",
    "target/test-go/1.21.13-plain/frames",
    "target/test-go/1.25.5-stripped-pie/frames",
    "target/test-go/1.27.3-plain/frames",
    "target/test-go/1.21.13-stripped-pie/frames",
    "target/test-go/1.19.8-noversion/seed",
    "target/test-go/1.19.8-arm64/seed",
];

/// The longest input the raw `go_binary` target makes: headers and the
/// start of a file (whole executables are `patched_binary`'s: mutated
/// copies of them would fill the corpus with megabytes each).
const MAX_BINARY_LEN: usize = 64 << 10;

/// Options of `cargo xtask fuzz`.
pub struct Options {
    /// Seconds per target.
    pub seconds: u64,
    /// Only these targets (all if empty).
    pub targets: Vec<String>,
}

/// Builds the targets and runs each for `seconds`.
pub fn run(opts: Options) -> Result<()> {
    cargo_fuzz_installed()?;
    let started = Instant::now();
    let fuzz_dir = root().join("leak-user/fuzz");
    run_cmd(
        fuzz_cmd(&fuzz_dir)
            .args(["build", "--sanitizer", "none", "--fuzz-dir"])
            .arg(&fuzz_dir),
    )
    .context("building the fuzz targets")?;
    let built = started.elapsed().as_secs_f64();
    let mut lines = Vec::new();
    for &t in TARGETS {
        if opts.targets.is_empty() || opts.targets.iter().any(|x| x == t) {
            lines.push(run_target(&fuzz_dir, t, opts.seconds)?);
        }
    }
    eprintln!("fuzz: built in {built:.0} s; per target (runs, corpus files and bytes, seconds):");
    for l in &lines {
        eprintln!("  {l}");
    }
    eprintln!(
        "fuzz: {:.0} s in all, no crash",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Installs cargo-fuzz unless `cargo fuzz` answers.
fn cargo_fuzz_installed() -> Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz");
    run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz")
}

/// `cargo +nightly fuzz` in the fuzz crate's directory.
fn fuzz_cmd(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.args(["+nightly", "fuzz"]).current_dir(fuzz_dir);
    // Nested under `cargo xtask`: let cargo-fuzz pick its own toolchain.
    for var in ["CARGO", "RUSTC", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR"] {
        c.env_remove(var);
    }
    c
}

/// Runs one target for `seconds`; its summary line.
fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<String> {
    let work = root().join("target/fuzz");
    let corpus = work.join("corpus").join(target);
    let seeds = work.join("seeds").join(target);
    let artifacts = work.join("artifacts").join(target);
    for d in [&corpus, &seeds, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut c = fuzz_cmd(fuzz_dir);
    c.args(["run", "--sanitizer", "none", "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds);
    let committed = fuzz_dir.join("seeds").join(target);
    if committed.is_dir() {
        c.arg(&committed);
    }
    binary_seeds(target, &seeds, &mut c)?;
    c.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .env("LEAK_FUZZ_SEED_DIR", &seeds);
    if target == "go_binary" {
        c.arg(format!("-max_len={MAX_BINARY_LEN}"));
    }
    let started = Instant::now();
    let out = c
        .output()
        .with_context(|| format!("cannot run fuzz target {target}"))?;
    let secs = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // The panic and its message, libFuzzer's verdict and the input.
        let lines: Vec<&str> = log.lines().collect();
        let said: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("panicked at") || l.contains("ERROR: libFuzzer"))
            .flat_map(|(i, _)| lines[i..(i + 2).min(lines.len())].iter().copied())
            .chain(
                lines
                    .iter()
                    .copied()
                    .filter(|l| l.contains("Test unit written")),
            )
            .collect();
        let shown = if said.is_empty() {
            &lines[lines.len().saturating_sub(15)..]
        } else {
            &said[..]
        };
        bail!("fuzz target {target} failed:\n{}", shown.join("\n"));
    }
    let runs = stat(&log, "stat::number_of_executed_units:").unwrap_or(0);
    let (files, bytes) = dir_size(&corpus);
    Ok(format!(
        "{target:<15} {runs:>10} runs  {files:>5} files {bytes:>9} B  {secs:>5.1} s"
    ))
}

/// Seeds from executables: for `go_binary`, the first 4 KiB of every base
/// and Debian daemon (ELF and program headers); for
/// `patched_binary`, the bases themselves go through `LEAK_FUZZ_BINARIES`
/// and the seeds are a few patch lists.
fn binary_seeds(target: &str, seeds: &Path, c: &mut Command) -> Result<()> {
    let bases: Vec<PathBuf> = BASES
        .iter()
        .map(|p| root().join(p))
        .filter(|p| p.is_file())
        .collect();
    match target {
        "go_binary" => {
            let daemons = ["caddy", "prometheus", "etcd-server"]
                .iter()
                .filter_map(|d| find_file(&root().join("target/it-deb").join(d)));
            for (i, p) in bases.iter().cloned().chain(daemons).enumerate() {
                let data = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
                fs::write(
                    seeds.join(format!("head-{i}")),
                    &data[..data.len().min(4096)],
                )?;
            }
        }
        "patched_binary" => {
            if bases.is_empty() {
                bail!("patched_binary needs the Go test builds (target/test-go): run `cargo xtask test` first");
            }
            patch_seeds(&bases, seeds, c)?;
        }
        "patched_native" => {
            // The system's libraries are always there; the test builds
            // once `cargo xtask test` has run.
            let natives: Vec<PathBuf> = NATIVE_BASES
                .iter()
                .map(|p| root().join(p))
                .filter(|p| p.is_file())
                .collect();
            if natives.is_empty() {
                bail!("patched_native finds none of {NATIVE_BASES:?}");
            }
            patch_seeds(&natives, seeds, c)?;
        }

        _ => {}
    }
    Ok(())
}

/// The seeds of a target that patches `bases` (named to it in
/// `LEAK_FUZZ_BINARIES`): each base untouched, and each cut in half.
fn patch_seeds(bases: &[PathBuf], seeds: &Path, c: &mut Command) -> Result<()> {
    let list: Vec<String> = bases.iter().map(|p| p.display().to_string()).collect();
    c.env("LEAK_FUZZ_BINARIES", list.join(":"));
    for i in 0..bases.len() as u8 {
        fs::write(seeds.join(format!("base-{i}")), [i, 0])?;
        fs::write(seeds.join(format!("half-{i}")), [i, 128])?;
    }
    Ok(())
}

/// The largest regular file under `dir` (a Debian package's executable).
fn find_file(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).ok()?.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && best.as_ref().is_none_or(|b| meta.len() > b.0) {
                best = Some((meta.len(), e.path()));
            }
        }
    }
    best.map(|b| b.1)
}

/// A `stat::name: N` line of libFuzzer's final statistics.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

/// Files in `dir` and their bytes.
fn dir_size(dir: &Path) -> (usize, u64) {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
        })
        .unwrap_or((0, 0))
}
