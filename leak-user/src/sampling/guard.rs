//! The rate guard: a small process that puts a target's `MemProfileRate`
//! back if leak dies (SIGKILL, the OOM killer, a crash) before it can.
//!
//! On its first write into a target, leak starts itself again as
//! `leak __rate-guard` with a pipe on its stdin, and before each write sends
//! it one line saying what it is about to write where. When leak has put
//! everything back itself it says `done` and the guard exits. If the pipe
//! ends without `done`, leak is gone: the guard restores each outstanding
//! rate by the rule leak uses ([`super::restore_decision`]), then exits.
//!
//! The protocol, one message a line:
//! - `set PID START ADDR ORIGINAL VALUES`: leak is writing into process PID
//!   (start time START, clock ticks after boot, as in `/proc/PID/stat`) at
//!   address ADDR (hex); ORIGINAL is the value to put back, VALUES (comma
//!   separated) the values leak may leave there. A later `set` for the same
//!   pid replaces the earlier one.
//! - `forget PID`: leak has dealt with that process (restored it, or found
//!   it changed by someone else or gone).
//! - `done`: leak has dealt with everything; exit without touching anything.

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, BufRead, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{Restore, Written};
use crate::{
    process::{memory::ProcessMemory, Identity},
    sampling,
};

/// The hidden subcommand that runs the guard.
pub const GUARD_COMMAND: &str = "__rate-guard";

/// How long leak waits at exit for the guard to go, after `done`.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// One rate leak wrote (or is about to write) into a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The process.
    pub pid: u32,
    /// Its start time: with the pid, names that one process.
    pub start_time: u64,
    /// Where `runtime.MemProfileRate` is in its memory.
    pub addr: u64,
    /// What was there and what leak wrote.
    pub written: Written,
}

/// A message from leak to its guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// leak is writing this.
    Set(Entry),
    /// leak has dealt with this process.
    Forget(u32),
    /// leak has dealt with everything.
    Done,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Set(e) => {
                let values: Vec<String> = e.written.values.iter().map(i64::to_string).collect();
                write!(
                    f,
                    "set {} {} {:#x} {} {}",
                    e.pid,
                    e.start_time,
                    e.addr,
                    e.written.original,
                    values.join(",")
                )
            }
            Message::Forget(pid) => write!(f, "forget {pid}"),
            Message::Done => f.write_str("done"),
        }
    }
}

impl Message {
    /// Parses one line; `None` if it is not a message.
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut w = line.split_whitespace();
        let msg = match w.next()? {
            "set" => {
                let pid = w.next()?.parse().ok()?;
                let start_time = w.next()?.parse().ok()?;
                let addr = u64::from_str_radix(w.next()?.strip_prefix("0x")?, 16).ok()?;
                let original = w.next()?.parse().ok()?;
                let values = w
                    .next()?
                    .split(',')
                    .map(|v| v.parse().ok())
                    .collect::<Option<Vec<i64>>>()?;
                Message::Set(Entry {
                    pid,
                    start_time,
                    addr,
                    written: Written { original, values },
                })
            }
            "forget" => Message::Forget(w.next()?.parse().ok()?),
            "done" => Message::Done,
            _ => return None,
        };
        w.next().is_none().then_some(msg)
    }
}

/// Where leak tells its guard what it writes (a fake in tests).
pub(crate) trait Guard {
    /// Sends one message; the first `Set` starts the guard, `Done` ends it.
    fn send(&mut self, message: &Message);
}

/// The guard process, started on the first `Set`.
#[derive(Debug, Default)]
pub(crate) struct GuardProcess {
    child: Option<Child>,
    /// It could not be started or reached: said once, not tried again.
    failed: bool,
}

impl GuardProcess {
    /// A guard not started yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts `leak __rate-guard` (this very executable, even if replaced on
    /// disk since) in its own process group, so Ctrl-C on the terminal does
    /// not reach it.
    fn spawn() -> io::Result<Child> {
        Command::new("/proc/self/exe")
            .arg0("leak")
            .arg(GUARD_COMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
    }

    fn fail(&mut self, why: &str) {
        if !self.failed {
            eprintln!("leak: {why}: if leak is killed, MemProfileRate stays as leak wrote it");
        }
        self.failed = true;
        self.child = None;
    }

    /// Says `done`, closes the pipe and waits a little for the guard to go.
    fn finish(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{}", Message::Done);
        }
        let until = Instant::now() + EXIT_WAIT;
        while Instant::now() < until {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && status.signal().is_none() {
                        log::debug!("rate guard exited with {status}");
                    }
                    return;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        }
        // It exits on its own once it reads `done`: do not wait for it.
    }
}

impl Guard for GuardProcess {
    fn send(&mut self, message: &Message) {
        if *message == Message::Done {
            return self.finish();
        }
        if self.failed {
            return;
        }
        if self.child.is_none() {
            if !matches!(message, Message::Set(_)) {
                return; // nothing to guard yet
            }
            match Self::spawn() {
                Ok(c) => self.child = Some(c),
                Err(e) => return self.fail(&format!("cannot start the rate guard: {e}")),
            }
        }
        let stdin = self.child.as_mut().and_then(|c| c.stdin.as_mut());
        if let Some(Err(e)) = stdin.map(|s| writeln!(s, "{message}")) {
            self.fail(&format!("the rate guard is gone ({e})"));
        }
    }
}

/// The guard's side: reads leak's messages until `done` (returns `None`:
/// nothing left to do) or the end of input (leak is gone: returns the
/// entries it never settled, in pid order). Lines that are not messages are
/// skipped; a read error counts as the end.
#[cfg(test)]
pub(crate) fn follow(input: impl BufRead) -> Option<Vec<Entry>> {
    follow_holding(input, |_| Ok(())).map(|v| v.into_iter().map(|(e, _)| e).collect())
}

/// [`follow`], opening each process's memory with `open` when leak says it
/// is about to write there, and returning each unsettled entry with that
/// handle. A handle on `/proc/PID/mem` stays bound to the memory it opened:
/// if the process has since `exec`ed another program (same pid, same start
/// time, new memory), reads and writes through it fail, and the restore
/// touches nothing.
pub(crate) fn follow_holding<M>(
    input: impl BufRead,
    mut open: impl FnMut(u32) -> io::Result<M>,
) -> Option<Vec<(Entry, io::Result<M>)>> {
    let mut outstanding = BTreeMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        match Message::parse(&line) {
            Some(Message::Set(e)) => {
                let mem = open(e.pid);
                outstanding.insert(e.pid, (e, mem));
            }
            Some(Message::Forget(pid)) => {
                outstanding.remove(&pid);
            }
            Some(Message::Done) => return None,
            None => log::debug!("rate guard: not a message: {line:?}"),
        }
    }
    Some(outstanding.into_values().collect())
}

/// Restores one entry through `mem`, the handle opened when leak said it
/// would write (see [`follow_holding`]), by the rule leak itself uses.
/// `None` when the process is gone, its pid now names another process, or
/// its memory is no longer the one leak wrote to (it `exec`ed since).
pub(crate) fn restore(e: &Entry, mem: &io::Result<ProcessMemory>) -> io::Result<Option<Restore>> {
    let mem = match mem {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io::Error::new(err.kind(), err.to_string())),
    };
    let wrote_to = Identity {
        pid: e.pid,
        start_time: e.start_time,
    };
    if !wrote_to.is_running() {
        return Ok(None);
    }
    sampling::restore_in(mem, e.addr, &e.written)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::process::memory::Memory;

    fn entry(pid: u32, original: i64, values: &[i64]) -> Entry {
        Entry {
            pid,
            start_time: 12345,
            addr: 0x7f00_1234_5678,
            written: Written {
                original,
                values: values.to_vec(),
            },
        }
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Set(entry(4242, 0, &[4096])),
            Message::Set(entry(7, 524288, &[1, 4096])),
            Message::Forget(4242),
            Message::Done,
        ] {
            let line = m.to_string();
            assert_eq!(Message::parse(&line), Some(m), "{line}");
        }
        assert_eq!(
            Message::Set(entry(4242, 0, &[1, 4096])).to_string(),
            "set 4242 12345 0x7f0012345678 0 1,4096"
        );
    }

    #[test]
    fn what_is_not_a_message() {
        for bad in [
            "",
            "hello",
            "set 1 2 3 4 5",             // address not in hex
            "set 1 2 0x10 0",            // no values
            "set 1 2 0x10 0 4096 extra", // trailing word
            "set 1 2 0x10 0 4096,",      // empty value
            "set -1 2 0x10 0 4096",      // no such pid
            "forget",
            "forget x",
            "done now",
        ] {
            assert_eq!(Message::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn done_leaves_nothing_to_do() {
        let input = "set 10 1 0x10 0 4096\nset 11 1 0x10 0 4096\ndone\n";
        assert_eq!(follow(input.as_bytes()), None);
    }

    #[test]
    fn end_of_input_without_done_leaves_what_was_not_forgotten() {
        let input = "set 10 1 0x10 0 1,4096\nset 11 1 0x10 0 4096\nnoise\n\
                     set 10 1 0x10 0 4096\nforget 11\nset 12 1 0x20 524288 4096";
        let at = |pid, addr, original| Entry {
            pid,
            start_time: 1,
            addr,
            written: Written {
                original,
                values: vec![4096],
            },
        };
        assert_eq!(
            follow(input.as_bytes()),
            Some(vec![at(10, 0x10, 0), at(12, 0x20, 524288)])
        );
        assert_eq!(follow("".as_bytes()), Some(vec![]));
    }

    #[test]
    fn restores_in_a_live_process_only_what_leak_left() {
        // This test process stands for the target.
        let cell = Box::new(AtomicI64::new(4096));
        let (_, start_time) = crate::process::state(std::process::id()).unwrap();
        let mut e = Entry {
            pid: std::process::id(),
            start_time: start_time + 1,
            addr: cell.as_ptr() as u64,
            written: Written {
                original: 0,
                values: vec![4096],
            },
        };
        let now = || cell.load(Ordering::SeqCst);
        let mem = ProcessMemory::open_writable(e.pid);
        // Another process under the same pid: untouched.
        assert_eq!(restore(&e, &mem).unwrap(), None);
        assert_eq!(now(), 4096);
        e.start_time = start_time;
        assert_eq!(restore(&e, &mem).unwrap(), Some(Restore::Write(0)));
        assert_eq!(now(), 0);
        // Changed by someone else since: left alone.
        cell.store(8192, Ordering::SeqCst);
        assert_eq!(
            restore(&e, &mem).unwrap(),
            Some(Restore::ChangedSince(8192))
        );
        assert_eq!(now(), 8192);
        // A process that is gone.
        e.pid = u32::MAX - 1;
        let gone = ProcessMemory::open_writable(e.pid);
        assert_eq!(restore(&e, &gone).unwrap(), None);
    }

    /// A process that `exec`ed another program after leak wrote to it keeps
    /// its pid and start time but not its memory: the handle the guard
    /// opened at the write reaches nothing, and nothing is written.
    #[test]
    fn a_process_that_execed_since_is_not_written() {
        use std::process::{Command, Stdio};
        let mut child = Command::new("sh")
            .args(["-c", "read x; exec sleep 30"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (_, start_time) = crate::process::state(pid).unwrap();
        let mem = ProcessMemory::open_writable(pid);
        assert!(mem.is_ok(), "{mem:?}");
        let sh = crate::process::exe(pid).unwrap();
        writeln!(child.stdin.as_mut().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::process::exe(pid).is_ok_and(|p| p == sh) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_ne!(crate::process::exe(pid).unwrap(), sh, "it never exec'ed");
        // An address the new program maps, holding a value leak "wrote":
        // a handle opened now would restore there.
        let addr = crate::process::maps::of(pid).unwrap()[0].start;
        let there = ProcessMemory::open_writable(pid)
            .unwrap()
            .read_i64(addr)
            .unwrap();
        let e = Entry {
            pid,
            start_time,
            addr,
            written: Written {
                original: there.wrapping_add(1),
                values: vec![there],
            },
        };
        assert_eq!(restore(&e, &mem).unwrap(), None);
        let now = ProcessMemory::open_writable(pid)
            .unwrap()
            .read_i64(addr)
            .unwrap();
        assert_eq!(now, there, "written into the program it exec'ed");
        let _ = child.kill();
        let _ = child.wait();
    }
}
