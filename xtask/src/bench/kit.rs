//! The kit a bench run measures with: the leak binary (a fresh release
//! build or one given with `--leak`), the Go workloads built with one
//! toolchain, bpftrace (installed from Debian if missing) and where each
//! workload's `runtime.mallocgc` is, for the peer's probe; the native
//! workload and its peers (`native::Tools`). Only what the run's workloads
//! need is built.

use std::{collections::BTreeMap, fs, path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use super::{native, tracer, Arm, Workload, GO_VERSION};
use crate::{build, go_bin, root, run_cmd};

/// Built programs and tools.
pub struct Kit {
    pub leak: PathBuf,
    /// The binary came from `--leak`, not from a build of this tree.
    pub leak_given: bool,
    pub bpftrace: PathBuf,
    pub bpftrace_version: String,
    /// Where each workload program's `runtime.mallocgc` is: the peer's probe.
    pub mallocgc: BTreeMap<String, u64>,
    pub go_version: String,
    /// `leak top --help` works (the subcommand has landed).
    pub leak_top: bool,
    pub bin_dir: PathBuf,
    /// Scratch directory for the scale arm's outputs.
    pub scratch: PathBuf,
    /// The native arms' workload and tools.
    pub native: native::Tools,
}

impl Kit {
    /// A built workload program.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The arms of `w` that can run here (a native arm whose tool is
    /// missing is skipped; the report says why).
    pub fn arms(&self, w: Workload) -> Vec<Arm> {
        let arms = w.arms(self.leak_top).into_iter();
        arms.filter(|&a| !w.is_native() || self.native.skipped(a).is_none())
            .collect()
    }
}

/// Builds leak (release) and the programs of `workloads`; finds bpftrace
/// and `leak top`.
pub fn prepare(leak: Option<PathBuf>, workloads: &[Workload]) -> Result<Kit> {
    let leak_given = leak.is_some();
    let leak = match leak {
        Some(p) => {
            fs::canonicalize(&p).with_context(|| format!("--leak {}: no such file", p.display()))?
        }
        None => build(true)?,
    };
    let bin_dir = root().join("target/bench/bin");
    let scratch = root().join("target/bench/scratch");
    fs::create_dir_all(&bin_dir)?;
    fs::create_dir_all(&scratch)?;
    let go = go_bin(GO_VERSION);
    let go_workloads: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| !w.is_native())
        .collect();
    let programs: std::collections::BTreeSet<&str> = go_workloads
        .iter()
        .map(|w| w.program())
        .chain(
            ["benchload"]
                .into_iter()
                .filter(|_| !go_workloads.is_empty()),
        )
        .collect();
    for program in programs {
        run_cmd(
            Command::new(&go)
                .args(["build", "-o"])
                .arg(bin_dir.join(program))
                .arg(format!("./{program}"))
                .current_dir(root().join("tests/go"))
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", "-mod=mod")
                .env("GOCACHE", root().join("target/gocache")),
        )
        .with_context(|| format!("building {program}"))?;
    }
    let mut mallocgc = BTreeMap::new();
    for program in go_workloads.iter().map(|w| w.program()) {
        let addr = tracer::mallocgc_address(&go, &bin_dir.join(program))?;
        mallocgc.insert(program.to_string(), addr);
    }
    let go_version = first_line(Command::new(&go).arg("version"))?;
    let (bpftrace, bpftrace_version) = if go_workloads.is_empty() {
        ("bpftrace".into(), String::new())
    } else {
        ensure_bpftrace()?
    };
    let native = if workloads.iter().any(|w| w.is_native()) {
        let known = Some(bpftrace_version.clone()).filter(|v| !v.is_empty());
        native::Tools::prepare(&bin_dir, &scratch, known)?
    } else {
        native::Tools::none()
    };
    let bpftrace_version = match (&native.bpftrace, bpftrace_version.is_empty()) {
        (Ok(v), true) => v.clone(),
        (_, _) => bpftrace_version,
    };
    let leak_top = Command::new(&leak)
        .args(["top", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    Ok(Kit {
        leak,
        leak_given,
        bpftrace,
        bpftrace_version,
        mallocgc,
        go_version,
        leak_top,
        bin_dir,
        scratch,
        native,
    })
}

fn first_line(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// bpftrace from Debian, installed if missing.
fn ensure_bpftrace() -> Result<(PathBuf, String)> {
    let version = || first_line(Command::new("bpftrace").arg("--version")).ok();
    if let Some(v) = version().filter(|v| !v.is_empty()) {
        return Ok(("bpftrace".into(), v));
    }
    eprintln!("bench: installing bpftrace (apt-get)");
    let quiet = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !(quiet(&["update", "-qq"]) && quiet(&["install", "-y", "-qq", "bpftrace"])) {
        bail!("bpftrace is missing and `apt-get install -y bpftrace` failed: install it and rerun");
    }
    match version().filter(|v| !v.is_empty()) {
        Some(v) => Ok(("bpftrace".into(), v)),
        None => bail!("bpftrace was installed but `bpftrace --version` does not run"),
    }
}
