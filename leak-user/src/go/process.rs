//! One running Go process as every reader of its runtime sees it: the
//! program it runs, where that program is loaded, and its memory, opened
//! once and handed to each reader (heap records, goroutines; heap
//! statistics beside them).

use std::rc::Rc;

use super::{error::GoError, GoBinary, Program};
use crate::process::{
    self,
    exe::ExePath,
    memory::{Memory, ProcessMemory},
};

/// A live Go process, ready to be read.
pub(crate) struct GoProcess {
    pid: u32,
    program: Rc<Program>,
    bias: u64,
    memory: Box<dyn Memory>,
}

impl GoProcess {
    /// Opens process `pid`, which runs `program`: its load bias from its
    /// memory map, and its memory.
    pub(crate) fn open(program: Rc<Program>, pid: u32) -> Result<Self, GoError> {
        let bias = program.load_bias(pid).ok_or_else(|| GoError::NotMapped {
            pid,
            path: program.path.clone(),
        })?;
        let memory = ProcessMemory::open(pid).map_err(|e| memory_error(pid, e))?;
        Ok(Self::with_memory(program, pid, bias, Box::new(memory)))
    }

    /// A process whose bias and memory are given (tests read a fake).
    pub(crate) fn with_memory(
        program: Rc<Program>,
        pid: u32,
        bias: u64,
        memory: Box<dyn Memory>,
    ) -> Self {
        Self {
            pid,
            program,
            bias,
            memory,
        }
    }

    /// Opens process `pid` after checking that it runs a Go program.
    pub(crate) fn open_pid(pid: u32) -> Result<Self, GoError> {
        let opened = go_process(pid)
            .and_then(|(exe, bin)| Self::open(Rc::new(Program::of(bin, &exe)?), pid));
        match opened {
            // Its executable (through /proc) or its map gone under the
            // read: the process exited, which is what to say.
            Err(GoError::Io { .. } | GoError::NotMapped { .. }) if !process::alive(pid) => {
                Err(GoError::ExitedMidRead {
                    pid,
                    what: "executable",
                })
            }
            other => other,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The program it runs.
    pub(crate) fn program(&self) -> &Rc<Program> {
        &self.program
    }

    /// Load bias of the program in the process (0 unless PIE).
    pub(crate) fn bias(&self) -> u64 {
        self.bias
    }

    /// Its memory.
    pub(crate) fn memory(&self) -> &dyn Memory {
        self.memory.as_ref()
    }

    /// Runtime address of a link-time address of the program.
    pub(crate) fn runtime_addr(&self, link_addr: u64) -> u64 {
        link_addr.wrapping_add(self.bias)
    }

    /// Whether runtime address `pc` (a return address) is inside one of
    /// the program's functions.
    pub(crate) fn is_code(&self, pc: u64) -> bool {
        self.program
            .bin
            .pclntab()
            .find_func(pc.wrapping_sub(self.bias).wrapping_sub(1))
            .is_some()
    }

    /// The error of a failed read: the process exited meanwhile (one line
    /// that says so), or `e` with what was being read.
    pub(crate) fn read_failure(&self, what: &'static str, e: GoError) -> GoError {
        read_failure(self.pid, process::alive(self.pid), what, e)
    }
}

/// A read of `pid`'s memory failed with `e`: if the process is gone
/// (`alive` false) that is why, in one line; else `e` with the pid.
pub(crate) fn read_failure(pid: u32, alive: bool, what: &'static str, e: GoError) -> GoError {
    if alive {
        GoError::ReadFailed {
            pid,
            what,
            source: Box::new(e),
        }
    } else {
        GoError::ExitedMidRead { pid, what }
    }
}

/// Why a process's memory cannot be opened, in one line.
fn memory_error(pid: u32, e: std::io::Error) -> GoError {
    match e.kind() {
        std::io::ErrorKind::NotFound => GoError::NoProcess(pid),
        std::io::ErrorKind::PermissionDenied => GoError::MemoryDenied(pid),
        _ => GoError::MemoryOpen { pid, source: e },
    }
}

/// The executable of process `pid` if it is a Go program (opened through
/// `/proc/PID/exe`, so a container's binary is found too).
pub(crate) fn go_executable(pid: u32) -> std::io::Result<Option<ExePath>> {
    let exe = ExePath::of_process(pid)?;
    Ok(GoBinary::open(&exe.open).is_ok().then_some(exe))
}

/// Fails unless `pid` runs a Go program; returns its executable, opened
/// (parsed once: the caller builds on it).
pub(crate) fn go_process(pid: u32) -> Result<(ExePath, GoBinary), GoError> {
    if !process::alive(pid) {
        return Err(GoError::NoProcess(pid));
    }
    let exe = ExePath::of_process(pid).map_err(|e| GoError::Exe { pid, source: e })?;
    match GoBinary::open(&exe.open) {
        Ok(bin) => Ok((exe, bin)),
        Err(_) => Err(GoError::NotGoProcess {
            pid,
            exe: exe.name.display().to_string(),
        }),
    }
}
