//! Programs run as a container runs them, without a container runtime: in
//! their own mount and pid namespace (`unshare`), from a binary on a tmpfs
//! mounted inside that namespace only (so its path names nothing on the
//! host), optionally in a memory cgroup of the test's own with a limit.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use crate::Program;

/// A memory cgroup created under the test's own (the v1 `memory` hierarchy
/// where the host mounts one, else v2), with a limit; its processes are
/// killed and it is removed when dropped.
pub struct MemoryCgroup {
    /// Its directory under `/sys/fs/cgroup`.
    pub dir: PathBuf,
    /// Whether it is a v1 `memory` cgroup.
    v1: bool,
}

impl MemoryCgroup {
    /// Creates `name` beside the test's processes, limited to `limit` bytes.
    pub fn new(name: &str, limit: u64) -> Self {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let (dir, v1) = match own.lines().find_map(|l| l.split_once(":memory:")) {
            Some((_, path)) => (format!("/sys/fs/cgroup/memory{path}/{name}"), true),
            None => {
                let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
                (format!("/sys/fs/cgroup{path}/{name}"), false)
            }
        };
        let dir = PathBuf::from(dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let file = if v1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        fs::write(dir.join(file), limit.to_string()).unwrap();
        Self { dir, v1 }
    }

    /// Its path as `/proc/PID/cgroup` shows it (relative to the hierarchy).
    pub fn path(&self) -> String {
        let base = if self.v1 {
            "/sys/fs/cgroup/memory"
        } else {
            "/sys/fs/cgroup"
        };
        let rel = self.dir.strip_prefix(base).unwrap();
        format!("/{}", rel.display())
    }

    /// How many processes the kernel's OOM killer has killed in it.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.pids();
            for pid in &left {
                // SAFETY: kill(2) on processes of the test's own cgroup.
                unsafe { crate::libc_kill(*pid as i32, crate::SIGKILL) };
            }
            if (left.is_empty() && fs::remove_dir(&self.dir).is_ok()) || Instant::now() > deadline {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A program running in its own mount and pid namespace.
pub struct Contained {
    /// The `unshare` in front of it (its stdout is the program's); killing
    /// it kills the program (`--kill-child`), and with it the namespace.
    pub program: Program,
    /// The program's pid as the host sees it.
    pub pid: u32,
    /// Where the program's binary is inside its namespace: nothing on the
    /// host.
    pub path: PathBuf,
}

impl Contained {
    /// Starts `bin` with `args` in a new mount and pid namespace (pid 1
    /// there), run from a copy on a tmpfs mounted over `mount_dir` inside
    /// the namespace, in `cgroup` if given (joined before anything runs,
    /// so all its memory is charged there). Waits for its first line.
    pub fn start(
        bin: &Path,
        args: &[&str],
        mount_dir: &Path,
        cgroup: Option<&MemoryCgroup>,
    ) -> Self {
        Self::start_with(bin, &[], args, mount_dir, cgroup)
    }

    /// [`Contained::start`], with `files` copied beside the binary (only
    /// the namespace sees them).
    pub fn start_with(
        bin: &Path,
        files: &[&Path],
        args: &[&str],
        mount_dir: &Path,
        cgroup: Option<&MemoryCgroup>,
    ) -> Self {
        fs::create_dir_all(mount_dir).unwrap();
        let name = bin.file_name().unwrap().to_str().unwrap();
        let path = mount_dir.join(name);
        let join = cgroup
            .map(|c| format!("echo $$ > {}/cgroup.procs && ", c.dir.display()))
            .unwrap_or_default();
        // The outer shell joins the cgroup and becomes unshare; the inner
        // one, in the namespace, mounts, copies and becomes the program.
        let inner = format!(
            "mount -t tmpfs -o size=256m leak-test {dir} && cp {bin} {files} {dir}/ && exec {path} \"$@\"",
            dir = mount_dir.display(),
            bin = bin.display(),
            files = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "),
            path = path.display(),
        );
        let outer = format!(
            "{join}exec unshare --mount --pid --fork --kill-child --propagation private sh -c '{inner}' sh \"$@\""
        );
        let mut sh_args = vec!["-c", outer.as_str(), "sh"];
        sh_args.extend_from_slice(args);
        let program = Program::start(Path::new("sh"), &sh_args);
        let unshare = program.pid();
        let pid = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap()
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unshare ({unshare}) has no child"));
        assert!(
            !path.exists(),
            "{} exists on the host: not a private mount",
            path.display()
        );
        Self { program, pid, path }
    }

    /// The address the service printed ("listening on ADDR").
    pub fn addr(&self) -> String {
        self.program.addr()
    }

    /// Whether the program still runs (its zombie counts as gone).
    pub fn running(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                let (_, rest) = s.rsplit_once(')')?;
                rest.trim_start().chars().next()
            })
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    }

    /// Its pid inside its namespace, from `NSpid:` in `/proc/PID/status`.
    pub fn ns_pid(&self) -> Option<u32> {
        fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    }
}
