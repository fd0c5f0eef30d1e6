//! Helpers for leak's privileged integration tests: build the Go test
//! programs with real toolchains, run them, drive them over HTTP, run `leak`
//! against them, and read the ground truth (Go's own heap profile).
//!
//! The tests run as root through `cargo xtask test`, which sets `LEAK_BIN`
//! (the leak binary under test) and `LEAK_GO_ROOT` (the Go toolchains). Like
//! aya's own integration tests, helpers panic with a message rather than
//! return errors, so a failure shows where it happened.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

pub mod container;
mod debian;
pub mod gobuild;
pub mod goroutines;

pub use container::{Contained, MemoryCgroup};
pub use debian::{base64, debian_binary, free_port, request, request_ok, Daemon};
pub use gobuild::{build_go, esbuild, go, Variant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cmd` (`what` names it in messages) and returns its output; fails
/// the test, with the command's stderr, unless it ran and succeeded.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The leak binary under test.
pub fn leak_bin() -> PathBuf {
    let p = std::env::var_os("LEAK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/leak"));
    assert!(
        p.exists(),
        "{} missing: run the integration tests with `cargo xtask test`",
        p.display()
    );
    p
}

/// A `--json` report of leak, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sum of `field` (e.g. "outstanding_bytes") over the stacks of a JSON
/// report that pass through `function` (each stack once, however many of its
/// frames are that function).
pub fn sum_through(report: &serde_json::Value, function: &str, field: &str) -> f64 {
    stacks_where(report, |f| f == function)
        .iter()
        .map(|s| s[field].as_f64().unwrap())
        .sum()
}

/// The stacks of a JSON report with a frame whose function `matches`.
pub fn stacks_where(
    report: &serde_json::Value,
    matches: impl Fn(&str) -> bool,
) -> Vec<&serde_json::Value> {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["frames"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| matches(f["function"].as_str().unwrap_or("")))
        })
        .collect()
}

/// A running test program; killed when dropped.
pub struct Program {
    /// The process.
    pub child: Child,
    /// Its first line of output (for services: "listening on ADDR").
    pub first_line: String,
    /// Its later lines, when started with [`Program::start_following`].
    lines: Option<mpsc::Receiver<String>>,
}

impl Program {
    /// Starts `bin` with `args` and waits for its first line of output.
    pub fn start(bin: &Path, args: &[&str]) -> Self {
        Self::start_with(bin, args, false)
    }

    /// Like [`Program::start`], and keeps every later line of output for
    /// [`Program::wait_line`].
    pub fn start_following(bin: &Path, args: &[&str]) -> Self {
        Self::start_with(bin, args, true)
    }

    /// Like [`Program::start_command`], and keeps every later line of output
    /// for [`Program::wait_line`].
    pub fn start_following_command(command: &mut Command) -> Self {
        Self::spawn(command, true)
    }

    /// Sends signal `sig` to the program.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc_kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits at most `timeout` for a line of output (after those already
    /// taken) that satisfies `want`, and returns it; the lines before it
    /// are taken too. `None` on timeout or when the program is gone.
    pub fn wait_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let lines = self.lines.as_ref().expect("started with start_following");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = lines.recv_timeout(left).ok()?;
            if want(&line) {
                return Some(line);
            }
        }
    }

    /// Every line of output waiting now, without blocking.
    pub fn lines_now(&mut self) -> Vec<String> {
        let lines = self.lines.as_ref().expect("started with start_following");
        lines.try_iter().collect()
    }

    /// Starts `command` as it is set up (environment, arguments) and waits
    /// for its first line of output.
    pub fn start_command(command: &mut Command) -> Self {
        Self::spawn(command, false)
    }

    fn start_with(bin: &Path, args: &[&str], follow: bool) -> Self {
        Self::spawn(Command::new(bin).args(args), follow)
    }

    fn spawn(command: &mut Command, follow: bool) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", command.get_program()));
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut first_line = String::new();
        reader.read_line(&mut first_line).unwrap();
        // Keep draining so the program never blocks on a full pipe.
        let lines = if follow {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in reader.lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            Some(rx)
        } else {
            thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
            });
            None
        };
        Self {
            child,
            first_line,
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address a service printed ("listening on ADDR").
    pub fn addr(&self) -> String {
        self.first_line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a service: {:?}", self.first_line))
            .to_string()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET returning the body bytes; panics unless 200.
pub fn get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response without header end");
    let head = String::from_utf8_lossy(&resp[..head_end]);
    assert!(head.contains(" 200 "), "GET {path}: {head}");
    resp[head_end + 4..].to_vec()
}

/// Sends `n` requests to `path`, one after another.
pub fn send_requests(addr: &str, path: &str, n: usize) {
    for _ in 0..n {
        get(addr, path);
    }
}

/// A service that has already leaked: test program `prog` built with Go
/// `version` as `variant`, started, sent `requests` GETs of `/work`, and a
/// scratch directory named for the run. Returns the binary, the running
/// service, its address and the directory.
pub fn leaked_service(
    prog: &str,
    version: &str,
    variant: Variant,
    requests: usize,
) -> (PathBuf, Program, String, PathBuf) {
    let bin = build_go(prog, version, variant);
    let service = Program::start(&bin, &[]);
    let addr = service.addr();
    send_requests(&addr, "/work", requests);
    let dir = scratch(&format!("{prog}-{version}-{variant:?}"));
    (bin, service, addr, dir)
}

/// A running `leak` with its output captured to files.
pub struct Leak {
    /// The process.
    pub child: Child,
    /// Where its stdout goes.
    pub stdout: PathBuf,
    /// Where its stderr goes.
    pub stderr: PathBuf,
}

/// A scratch directory for one test, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/it-scratch").join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

impl Leak {
    /// Starts `leak` with `args`, output in `dir`.
    pub fn spawn(dir: &Path, args: &[&str]) -> Self {
        let stdout = dir.join("leak.stdout");
        let stderr = dir.join("leak.stderr");
        let child = Command::new(leak_bin())
            .args(args)
            // A panic is a failure: its backtrace says where.
            .env("RUST_BACKTRACE", "1")
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start leak");
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until leak says its probes are attached (`leak trace`: "tracing";
    /// `leak top`: "watching").
    pub fn wait_attached(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let err = self.stderr_text();
            if err.contains("leak: tracing") || err.contains("leak: watching") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "leak exited ({status}) before attaching: {}",
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("leak did not attach in 30 s: {}", self.stderr_text());
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc_kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for exit (at most `secs`), returning the status.
    pub fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("leak did not exit within {secs} s: {}", self.stderr_text());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops leak with `sig` (SIGINT or SIGTERM) and checks that it exits
    /// successfully within 60 s.
    pub fn stop(&mut self, sig: i32) {
        self.signal(sig);
        let status = self.wait(60);
        assert!(status.success(), "leak failed: {}", self.stderr_text());
    }

    /// Its stdout so far.
    pub fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Its stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// The command line of one `leak` run, built flag by flag: e.g.
/// `LeakArgs::trace(&bin).pid(pid).out("--folded", &f).attach(&dir)`.
#[derive(Clone, Debug)]
pub struct LeakArgs(Vec<String>);

impl LeakArgs {
    /// `leak trace --uprobe BIN`: a Go program's heap.
    pub fn trace(bin: &Path) -> Self {
        Self(vec![]).flag("trace").out("--uprobe", bin)
    }

    /// `leak trace` with no binary (give `--pid`): any program's heap growth.
    pub fn trace_any() -> Self {
        Self(vec![]).flag("trace")
    }

    /// `leak top`.
    pub fn top() -> Self {
        Self(vec![]).flag("top")
    }

    /// `--pid PID`.
    pub fn pid(self, pid: u32) -> Self {
        self.opt("--pid", pid)
    }

    /// `FLAG VALUE`, e.g. `.opt("--rate", 4096)`.
    pub fn opt(self, flag: &str, value: impl ToString) -> Self {
        self.flag(flag).flag(&value.to_string())
    }

    /// `FLAG PATH`, e.g. an output file.
    pub fn out(self, flag: &str, path: &Path) -> Self {
        self.opt(flag, path.to_str().expect("a UTF-8 path"))
    }

    /// One more argument as it is, e.g. `--read-only`.
    pub fn flag(mut self, arg: &str) -> Self {
        self.0.push(arg.to_string());
        self
    }

    /// Starts leak with these arguments, output in `dir`.
    pub fn spawn(self, dir: &Path) -> Leak {
        let args: Vec<&str> = self.0.iter().map(String::as_str).collect();
        Leak::spawn(dir, &args)
    }

    /// Starts leak, output in `dir`, and waits until its probes are attached.
    pub fn attach(self, dir: &Path) -> Leak {
        let mut leak = self.spawn(dir);
        leak.wait_attached();
        leak
    }
}

impl Drop for Leak {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGINT.
pub const SIGINT: i32 = 2;
/// SIGTERM.
pub const SIGTERM: i32 = 15;
/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGUSR1.
pub const SIGUSR1: i32 = 10;

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// One line of a folded file: frames root first, and bytes.
#[derive(Clone, Debug)]
pub struct FoldedStack {
    /// Frames, root first.
    pub frames: Vec<String>,
    /// Estimated outstanding bytes.
    pub bytes: u64,
}

impl FoldedStack {
    /// The leaf (allocating) frame.
    pub fn leaf(&self) -> &str {
        self.frames.last().map(String::as_str).unwrap_or("")
    }

    /// The frame under the leaf.
    pub fn caller(&self) -> &str {
        let n = self.frames.len();
        if n >= 2 {
            &self.frames[n - 2]
        } else {
            ""
        }
    }
}

/// Parses a folded file, most bytes first.
pub fn read_folded(path: &Path) -> Vec<FoldedStack> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut stacks: Vec<FoldedStack> = text
        .lines()
        .map(|l| {
            let (frames, bytes) = l.rsplit_once(' ').expect("folded line without count");
            FoldedStack {
                frames: frames.split(';').map(str::to_string).collect(),
                bytes: bytes.parse().expect("folded count is an integer"),
            }
        })
        .collect();
    stacks.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    stacks
}

/// Inuse_space bytes per function in a Go heap profile, as
/// `go tool pprof -top` computes them: (function, flat, cum), the function
/// named without the " (inline)" that Go 1.19's pprof adds. Cum counts
/// what the function's callees allocated on its behalf too (Go 1.27's own
/// profile puts `bytes.Repeat`'s bytes flat in `internal/bytealg.MakeNoZero`).
pub fn pprof_inuse(go_version: &str, profile: &Path) -> Vec<(String, u64, u64)> {
    pprof_top(go_version, profile, &["-sample_index=inuse_space"])
        .into_iter()
        .map(|(name, flat, cum)| {
            // Go 1.19's pprof marks inlined functions: "bytes.Repeat (inline)".
            let name = name.strip_suffix(" (inline)").unwrap_or(&name).to_string();
            (name, flat, cum)
        })
        .collect()
}

/// Bytes per entry of `go tool pprof -top ARGS` (a sample index, `-lines`
/// for one entry per `function file:line`): (entry, flat, cum), the entry
/// as pprof prints it, " (inline)" included.
pub fn pprof_top(go_version: &str, profile: &Path, args: &[&str]) -> Vec<(String, u64, u64)> {
    let out = run_ok(
        Command::new(go(go_version))
            .args(["tool", "pprof", "-top", "-unit=B", "-nodecount=100000"])
            .args(args)
            .arg(profile)
            .env("GOTOOLCHAIN", "local"),
        "go tool pprof",
    );
    let bytes = |s: &str| -> Option<u64> {
        if s == "0" {
            return Some(0);
        }
        s.strip_suffix('B')?.parse().ok()
    };
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some((f[5..].join(" "), bytes(f[0])?, bytes(f[3])?))
        })
        .collect()
}

/// Parses a leak text report's "heap in use at last GC" figures, in bytes,
/// one per report printed.
pub fn heap_at_last_gc(report: &str) -> Vec<f64> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("heap in use at last GC: "))
        .filter_map(|rest| {
            let mut f = rest.split_whitespace();
            let v: f64 = f.next()?.parse().ok()?;
            let mult = match f.next()? {
                "B" => 1.0,
                "KiB" => 1024.0,
                "MiB" => 1024.0 * 1024.0,
                "GiB" => 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            Some(v * mult)
        })
        .collect()
}

/// Checks a flame graph leak wrote: a whole SVG (it ends with `</svg>`)
/// that names each of `functions`.
pub fn assert_flamegraph(svg: &Path, functions: &[&str]) {
    let text = fs::read_to_string(svg).unwrap_or_else(|e| panic!("read {}: {e}", svg.display()));
    assert!(
        text.trim_end().ends_with("</svg>"),
        "{}: not a whole SVG",
        svg.display()
    );
    for f in functions {
        assert!(text.contains(f), "{}: no {f}", svg.display());
    }
}

/// Builds tests/c/NAME.c with frame pointers into target/it-c/NAME.
pub fn build_c(name: &str) -> PathBuf {
    let out_dir = root().join("target/it-c");
    fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let status = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-Wall", "-o"])
        .arg(&out)
        .arg(root().join(format!("tests/c/{name}.c")))
        .status()
        .expect("run cc");
    assert!(status.success(), "cc {name}.c failed");
    out
}

/// The line of test program `tests/FILE` (`c/cppleak.cpp`) marked
/// `LINE: MARK`.
pub fn marked_line(file: &str, mark: &str) -> u64 {
    let source = fs::read_to_string(root().join("tests").join(file)).unwrap();
    let marked = source
        .lines()
        .position(|l| l.contains(&format!("LINE: {mark}")));
    marked.unwrap_or_else(|| panic!("no line of {file} marked {mark}")) as u64 + 1
}

/// Builds test program `tests/c/{file}` (C or C++, by its extension) the
/// way a distribution builds it (`-O2`, no frame pointers, `-g`: the DWARF
/// a distribution ships apart, in a debug package) into target/it-c, named
/// without the extension.
pub fn build_optimized(file: &str) -> PathBuf {
    let out_dir = root().join("target/it-c");
    fs::create_dir_all(&out_dir).unwrap();
    let (name, compiler) = match file.rsplit_once('.') {
        Some((name, "cpp")) => (name, "c++"),
        Some((name, _)) => (name, "cc"),
        None => (file, "cc"),
    };
    let out = out_dir.join(format!("{name}-O2"));
    let status = Command::new(compiler)
        .args(["-O2", "-g", "-fomit-frame-pointer", "-Wall", "-o"])
        .arg(&out)
        .arg(root().join(format!("tests/c/{file}")))
        .status()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(status.success(), "{compiler} {file} failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_report_heap_lines() {
        let r = "leak trace · x\nheap in use at last GC: 19.5 MiB  outstanding since attach: 20.0 MiB (+1.0 MiB/s)\nheap in use at last GC: (after 2 GC cycles)  outstanding\nheap in use at last GC: 812 B  outstanding";
        assert_eq!(heap_at_last_gc(r), vec![19.5 * 1024.0 * 1024.0, 812.0]);
    }
}
