//! Child processes the bench drives: Go workloads that talk a line
//! protocol on stdin/stdout, and tracers that are told to stop with SIGINT
//! and reaped with `wait4` for their CPU time and peak RSS.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A running child whose output is read line by line on threads, so its
/// pipes never fill up; each line is kept and also passed on as it comes.
pub struct Running {
    child: Option<Child>,
    pub pid: u32,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Stream, String)>,
    readers: Vec<JoinHandle<String>>,
    pub started: Instant,
}

/// How a reaped child ended and what it cost.
#[derive(Debug)]
pub struct Exit {
    pub success: bool,
    /// User plus system CPU time of the whole process.
    pub cpu_seconds: f64,
    /// Peak resident set size (ru_maxrss).
    pub peak_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

fn reader(
    stream: Stream,
    mut from: impl Read + Send + 'static,
    to: Sender<(Stream, String)>,
) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut all = String::new();
        let mut buf = BufReader::new(&mut from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match buf.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    all.push_str(&text);
                    let _ = to.send((stream, text.trim_end().to_string()));
                }
            }
        }
        all
    })
}

impl Running {
    /// Starts `cmd` with all three streams piped.
    pub fn spawn(cmd: &mut Command) -> Result<Running> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        let (tx, lines) = mpsc::channel();
        let readers = vec![
            reader(
                Stream::Stdout,
                child.stdout.take().expect("piped"),
                tx.clone(),
            ),
            reader(Stream::Stderr, child.stderr.take().expect("piped"), tx),
        ];
        Ok(Running {
            pid: child.id(),
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            readers,
            started: Instant::now(),
        })
    }

    /// Waits for the next line that `wanted` accepts, within `timeout`.
    /// Fails if the process closes its output first.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(Stream, &str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    if wanted(stream, &line) {
                        return Ok(line);
                    }
                    seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no {what} within {timeout:?} (output: {})", tail(&seen))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("exited before {what} (output: {})", tail(&seen))
                }
            }
        }
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// CPU seconds used so far by all threads: nanoseconds on CPU from each
    /// thread's /proc/PID/task/TID/schedstat (clock ticks in /proc/PID/stat
    /// are 10 ms, too coarse for a tracer that is mostly asleep), or
    /// utime + stime from /proc/PID/stat if schedstat is missing.
    pub fn cpu_seconds_so_far(&self) -> Result<f64> {
        cpu_seconds_of(self.pid)
    }

    /// Sends `signal`, then reaps the process, waiting at most `timeout`
    /// (then it is killed and this fails). Returns the exit and how long
    /// the process took to go after the signal.
    pub fn signal_and_reap(mut self, signal: i32, timeout: Duration) -> Result<(Exit, Duration)> {
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.pid as i32, signal) };
        let sent = Instant::now();
        let exit = self.reap(timeout)?;
        Ok((exit, sent.elapsed()))
    }

    /// Closes stdin (the workloads' cue to exit) and reaps the process.
    pub fn close_and_reap(mut self, timeout: Duration) -> Result<Exit> {
        self.stdin = None;
        self.reap(timeout)
    }

    fn reap(&mut self, timeout: Duration) -> Result<Exit> {
        self.stdin = None;
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        // SAFETY: rusage is plain old data; zeroed is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: pointers are to live locals; the pid is our child,
            // which std has not reaped (we never call Child::wait/try_wait).
            let r = unsafe { libc::wait4(self.pid as i32, &mut status, libc::WNOHANG, &mut usage) };
            if r == self.pid as i32 {
                break;
            }
            if r < 0 {
                bail!("wait4({}): {}", self.pid, std::io::Error::last_os_error());
            }
            if Instant::now() >= deadline {
                self.kill_and_reap();
                bail!("did not exit within {timeout:?}; killed");
            }
            thread::sleep(Duration::from_millis(2));
        }
        self.child = None;
        let mut outs = self.readers.drain(..).map(|r| r.join().unwrap_or_default());
        let stdout = outs.next().unwrap_or_default();
        let stderr = outs.next().unwrap_or_default();
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok(Exit {
            success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            cpu_seconds: secs(usage.ru_utime) + secs(usage.ru_stime),
            peak_rss_kib: usage.ru_maxrss.max(0) as u64,
            stdout,
            stderr,
        })
    }

    fn kill_and_reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Running {
    /// A run that failed half-way leaves no process behind.
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// CPU seconds used so far by all threads of process `pid` (see
/// [`Running::cpu_seconds_so_far`]).
pub fn cpu_seconds_of(pid: u32) -> Result<f64> {
    let mut ns = 0u64;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        if let Some(n) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            ns += n;
            threads += 1;
        }
    }
    if threads > 0 {
        return Ok(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    cpu_seconds_from_stat(&stat, clock_ticks()).context("unreadable /proc/PID/stat")
}

/// The last few lines of some output, on one line, for an error message.
fn tail(lines: &[String]) -> String {
    let start = lines.len().saturating_sub(3);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "none".into()
    } else {
        t
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line, in seconds.
/// The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last ')'.
pub fn cpu_seconds_from_stat(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_stat_counts_from_the_last_paren() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds_from_stat(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_from_stat("garbage", 100.0), None);
    }
}
