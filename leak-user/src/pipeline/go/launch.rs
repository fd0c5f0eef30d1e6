//! `leak trace -- CMD [ARGS…]`: leak starts the program itself, as
//! heaptrack, valgrind and perf do, so it is traced from its first
//! allocation.
//!
//! The command is found as a shell finds it (a path, or a name looked up in
//! `PATH`; 127 if there is none, 126 if it cannot be run). It starts under
//! `/bin/sh`, which stops itself before it `exec`s the program (the pid
//! stays the same): leak attaches in that pause and marks the pid, so the
//! kernel side stops the program again at `runtime.main`, after the Go
//! runtime's start-up (which turns sampling off in programs that link no
//! heap profiler) and before `main.main`. There leak sets the sampling rate
//! and continues it. stdin, stdout and stderr are the program's; its exit
//! status is leak's.

use std::{
    ffi::OsString,
    fs,
    io::IsTerminal,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use crate::error::{refuse, Context as _, Result};

use super::{processes::RatePolicy, GoPipeline, Options};
use crate::go::Program;
use crate::{process, session};

/// A command that cannot be run, as a shell says it: its exit status (126
/// not executable, 127 not found) and the one line why.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct NotRun {
    /// The shell's exit status.
    pub code: u8,
    /// Why, in one line.
    pub message: String,
}

/// How long the shell may take to stop itself.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `command` is, as a shell would find it; a shell's exit status and
/// message when it cannot be run.
pub(crate) fn resolve(command: &OsString) -> Result<PathBuf, NotRun> {
    let name = Path::new(command);
    let shown = name.display().to_string();
    let candidates: Vec<PathBuf> = if shown.contains('/') {
        vec![name.to_path_buf()]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
            .unwrap_or_default()
    };
    let mut not_executable = None;
    for path in candidates {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(path);
        }
        not_executable.get_or_insert(path);
    }
    Err(match not_executable {
        Some(path) => NotRun {
            code: 126,
            message: format!(
                "{}: permission denied (not an executable file)",
                path.display()
            ),
        },
        None => NotRun {
            code: 127,
            message: format!("{shown}: command not found"),
        },
    })
}

/// Starts `program` with `args` under a shell that stops itself before it
/// execs the program; returns once it has stopped.
pub(crate) fn spawn_paused(program: &Path, args: &[OsString]) -> Result<Child> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"kill -STOP $$ && exec "$0" "$@""#)
        .arg(program)
        .args(args)
        .spawn()
        .context(|| "cannot start /bin/sh to run the program".into())?;
    let pid = child.id();
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match process::state(pid) {
            Some(('T', _)) => return Ok(child),
            Some(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(1)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                refuse!(
                    "the shell that starts {} did not stop as asked",
                    program.display()
                );
            }
        }
    }
}

pub(crate) use crate::process::{resume, signal};

/// leak's exit status for the program's: its code, or 128 + the signal
/// that ended it, as a shell reports it.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

/// `leak trace -- CMD`: traces `child` (started paused by
/// [`launch::spawn_paused`]) from its first allocation until it exits, then
/// writes every output; returns the program's exit status, leak's own.
pub(crate) fn run_launched(
    program: Program,
    mut options: Options,
    mut child: std::process::Child,
) -> Result<u8> {
    let pid = child.id();
    options.pid = Some(pid);
    options.launched = true;
    let traced = session::block_on(super::trace(options, std::rc::Rc::new(program)));
    if traced.is_err() {
        // Never left stopped, never run untraced: it goes with leak.
        let _ = child.kill();
    } else {
        resume(pid);
    }
    let status = child
        .wait()
        .context(|| "cannot wait for the program".into())?;
    traced?;
    Ok(exit_code(status))
}

impl GoPipeline {
    /// The program leak started is stopped at `runtime.main`: set its rate
    /// (as for any process) and let it go.
    pub(super) fn start_launched(&mut self, pid: u32) {
        let policy = RatePolicy {
            resume_after_one: Some(pid),
            ..self.rate_policy()
        };
        let binary = self.program.path.display().to_string();
        if let Err(e) = self.core.procs.check_rate(pid, &policy, &binary) {
            eprintln!("leak: {e:#}");
        }
        resume(pid);
    }

    /// Whether SIGINT/SIGTERM stops the trace: not while the program leak
    /// started runs (it gets the signal; leak stops when it exits).
    pub(super) fn signal_stops(&mut self, name: &'static str) -> bool {
        match (self.options.launched, self.options.pid) {
            (true, Some(pid)) => launched_signal_stops(pid, name),
            _ => true,
        }
    }
}

/// SIGINT/SIGTERM while the program leak started (`pid`) runs: it gets the
/// signal, and leak stops when it exits (false); once it is gone, leak
/// stops (true).
pub(crate) fn launched_signal_stops(pid: u32, name: &'static str) -> bool {
    if !process::alive(pid) {
        return true;
    }
    // A Ctrl-C typed at the terminal reached the program too (it is in
    // leak's process group): passing it on would be a second one, which
    // many programs take as "quit now". A signal sent to leak alone is
    // passed on. Either way leak stops when the program exits.
    let from_terminal = name == "SIGINT" && std::io::stdin().is_terminal();
    if from_terminal {
        eprintln!("leak: {name}: the program has it too; stopping when it exits");
    } else {
        eprintln!("leak: {name}: passed to pid {pid}; stopping when it exits");
        let sig = if name == "SIGINT" {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        signal(pid, sig);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_as_a_shell_does() {
        assert!(resolve(&"sh".into()).unwrap().ends_with("sh"));
        assert_eq!(
            resolve(&"/bin/sh".into()).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let e = resolve(&"no-such-command-leak".into()).unwrap_err();
        assert_eq!(e.code, 127);
        assert!(e.to_string().contains("command not found"), "{e}");
        let e = resolve(&"/etc/passwd".into()).unwrap_err();
        assert_eq!(e.code, 126, "{e}");
        let e = resolve(&"/no/such/file".into()).unwrap_err();
        assert_eq!(e.code, 127);
    }

    #[test]
    fn exit_codes_are_a_shells() {
        let status = |raw: i32| ExitStatus::from_raw(raw);
        assert_eq!(exit_code(status(3 << 8)), 3);
        assert_eq!(exit_code(status(0)), 0);
        assert_eq!(exit_code(status(libc::SIGKILL)), 137);
    }

    #[test]
    fn a_paused_program_runs_when_resumed() {
        let mut child = spawn_paused(Path::new("/bin/true"), &[]).unwrap();
        assert!(matches!(process::state(child.id()), Some(('T', _))));
        resume(child.id());
        assert!(child.wait().unwrap().success());
    }
}
