//! What the native arms need besides leak: the workload built with the C
//! compiler, heaptrack (and whether its `-p` works here), bpftrace and
//! bpftool. A missing tool skips its arms, and the report says so.

use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, Result};

use super::{
    super::process::{Running, Stream},
    peers, PROGRAM,
};
use crate::{bench::Arm, root, run_cmd};

/// How the heaptrack arm runs heaptrack.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaptrackMode {
    /// `heaptrack -p PID`: gdb injects it into the waiting program.
    Attach,
    /// `heaptrack PROGRAM`: its library preloaded at start (the same
    /// hooks); the reason `-p` is not used.
    Preload(String),
    /// Not installed (or not runnable): the reason.
    Missing(String),
}

/// The native arms' tools.
pub struct Tools {
    /// The native workloads are in this run (else nothing was looked for).
    pub wanted: bool,
    /// `cc --version`'s first line.
    pub cc: String,
    pub heaptrack: HeaptrackMode,
    pub heaptrack_version: String,
    /// bpftrace's version, or why it is missing.
    pub bpftrace: Result<String, String>,
    /// bpftool runs (it reads the eBPF programs' run-time counts).
    pub bpftool: bool,
}

impl Tools {
    /// No native workload in this run.
    pub fn none() -> Tools {
        Tools {
            wanted: false,
            cc: String::new(),
            heaptrack: HeaptrackMode::Missing("not looked for".into()),
            heaptrack_version: String::new(),
            bpftrace: Err("not looked for".into()),
            bpftool: false,
        }
    }

    /// Builds the workload into `bin_dir` and finds the tools; `bpftrace`
    /// is its version if the Go arms already made sure of it.
    pub fn prepare(bin_dir: &Path, scratch: &Path, bpftrace: Option<String>) -> Result<Tools> {
        let bin = bin_dir.join(PROGRAM);
        run_cmd(
            Command::new("cc")
                .args(["-O2", "-fomit-frame-pointer", "-Wall", "-o"])
                .arg(&bin)
                .arg(root().join(format!("tests/c/{PROGRAM}.c"))),
        )
        .context("building the native workload (a C compiler is needed: apt-get install gcc)")?;
        let heaptrack_version = version("heaptrack");
        let heaptrack = match &heaptrack_version {
            None => HeaptrackMode::Missing(
                "heaptrack is not installed (apt-get install heaptrack)".into(),
            ),
            Some(_) => match probe_attach(&bin, scratch) {
                Ok(()) => HeaptrackMode::Attach,
                Err(e) => HeaptrackMode::Preload(format!("{e:#}")),
            },
        };
        let bpftrace = bpftrace
            .or_else(|| version("bpftrace"))
            .ok_or_else(|| "bpftrace is not installed (apt-get install bpftrace)".to_string());
        let tools = Tools {
            wanted: true,
            cc: version("cc").unwrap_or_default(),
            heaptrack,
            heaptrack_version: heaptrack_version.unwrap_or_default(),
            bpftrace,
            bpftool: version("bpftool").is_some(),
        };
        for arm in [Arm::Heaptrack, Arm::Memleak, Arm::LeakBpfStats] {
            if let Some(why) = tools.skipped(arm) {
                eprintln!("bench: native arm {} skipped: {why}", arm.name());
            }
        }
        if let HeaptrackMode::Preload(why) = &tools.heaptrack {
            eprintln!("bench: heaptrack -p does not work here ({why}); heaptrack starts the program instead");
        }
        Ok(tools)
    }

    /// Why `arm` cannot run here, if it cannot.
    pub fn skipped(&self, arm: Arm) -> Option<String> {
        match arm {
            Arm::Heaptrack => match &self.heaptrack {
                HeaptrackMode::Missing(why) => Some(why.clone()),
                _ => None,
            },
            Arm::Memleak | Arm::EmptyProbes => self.bpftrace.as_ref().err().cloned(),
            Arm::LeakBpfStats if !self.bpftool => {
                Some("bpftool is not installed (apt-get install bpftool)".into())
            }
            _ => None,
        }
    }
}

/// The first line `tool --version` prints, if it runs.
fn version(tool: &str) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

/// Tries `heaptrack -p` on the workload waiting to start (one pair of
/// work): gdb must be able to call into it.
fn probe_attach(bin: &Path, scratch: &Path) -> Result<()> {
    let mut target = Running::spawn(Command::new(bin).args(["-mode", "churn", "-n", "1"]))?;
    target.wait_for("ready", Duration::from_secs(30), |s, l| {
        s == Stream::Stdout && l == "ready"
    })?;
    let (heaptrack, group) = peers::attach(target.pid, &scratch.join("heaptrack-probe"))?;
    target.send_line("go")?;
    target.close_and_reap(Duration::from_secs(30))?;
    heaptrack.close_and_reap(Duration::from_secs(60))?;
    group.ended();
    Ok(())
}
