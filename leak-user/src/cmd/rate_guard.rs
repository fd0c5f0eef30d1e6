//! `leak __rate-guard` (hidden): the process `leak trace` starts on its first
//! write into a target, to put the target's `MemProfileRate` back if leak
//! dies before it can (the protocol is in [`crate::sampling::guard`]).
//!
//! It has to outlive what kills leak: it ignores SIGINT, SIGTERM, SIGHUP
//! and SIGQUIT (leak starts it in its own process group, so Ctrl-C on the
//! terminal does not reach it anyway) and SIGTTOU (a background process
//! group writing to a terminal set to `tostop` would be stopped), asks the OOM killer to spare it
//! (`oom_score_adj` -1000, which needs CAP_SYS_RESOURCE; without it its
//! small size still ranks it far below leak), holds no more than a line per
//! traced process, and exits as soon as leak says `done` or is gone. No
//! async runtime, no threads.

use std::{
    fs,
    io::{self, Write},
};

use anyhow::Result;

use crate::{
    process::memory::ProcessMemory,
    sampling::{self, guard},
};

/// The hidden subcommand that runs the guard.
pub use crate::sampling::guard::GUARD_COMMAND;

/// Runs the guard until leak says `done` or goes away.
pub fn run() -> Result<u8> {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGTTOU,
    ] {
        // SAFETY: setting a signal's disposition to "ignore" touches no
        // memory of ours.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    if let Err(e) = fs::write("/proc/self/oom_score_adj", "-1000") {
        log::debug!("rate guard: cannot lower its oom_score_adj: {e}");
    }
    let open = ProcessMemory::open_writable;
    let Some(outstanding) = guard::follow_holding(io::stdin().lock(), open) else {
        return Ok(0); // leak put everything back itself
    };
    // Never eprintln!: it panics when stderr is gone (leak's reader may have
    // died with it), and every entry must still be restored.
    let mut stderr = io::stderr();
    for (e, mem) in outstanding {
        let line = match guard::restore(&e, &mem) {
            Ok(Some(decision)) => {
                let note = " (by leak's guard: leak ended without restoring it)";
                sampling::restore_line(e.pid, decision, &e.written, note)
            }
            Ok(None) => None, // the process is gone
            Err(err) => Some(format!(
                "leak: pid {}: cannot restore MemProfileRate to {}: {err}",
                e.pid, e.written.original
            )),
        };
        if let Some(line) = line {
            let _ = writeln!(stderr, "{line}");
        }
    }
    Ok(0)
}
