//! leak never hurts what it runs beside: its output files are never
//! written through a link another user planted, carry the caller's umask,
//! and are whole or absent when the disk is full or the directory
//! read-only; reading a process it may not read is one line; and it runs
//! with no more privilege than it says (`leak heap` as the process's own
//! user; `leak trace` with the capabilities the README lists, one line
//! naming what is missing). Root only (mounts, setpriv); run through
//! `cargo xtask test`.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Output},
};

use leak_tests::*;

/// The unprivileged user the tests switch to.
const NOBODY: &str = "65534";

/// A service that has leaked a little, for `leak heap` to read.
fn service(name: &str) -> (Program, std::path::PathBuf) {
    let (_, prog, _, dir) = leaked_service("seed", "1.25.5", Variant::Plain, 200);
    let dir = dir.with_file_name(format!("safety-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    (prog, dir)
}

/// `leak heap --pid PID` with `args`, run through `sh -c` under `umask`.
fn leak_heap(pid: u32, umask: &str, args: &[&str]) -> Output {
    let mut line = format!("umask {umask}; exec \"$0\" heap --pid {pid}");
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .arg(leak_bin())
        .output()
        .expect("run leak heap")
}

/// Fails unless `out` failed with one line on stderr that contains `says`.
fn one_line(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(says), "{err}");
}

/// Names in `dir` (hidden ones too).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Mounts a tmpfs of `size` at `dir`; unmounted when the guard drops.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", opts, "leak-test"])
                .arg(dir),
            "mount tmpfs",
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Files are created with the caller's umask (0600 under 077, 0644 under
/// 022), as any tool's would be.
#[test]
fn outputs_follow_the_umask() {
    let (prog, dir) = service("umask");
    for (umask, mode) in [("077", 0o600), ("022", 0o644), ("027", 0o640)] {
        let json = dir.join(format!("heap-{umask}.json"));
        let out = leak_heap(prog.pid(), umask, &["--json", json.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = fs::metadata(&json).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}");
    }
}

/// A symbolic link another user planted at the output path (in a sticky,
/// world-writable directory like /tmp) is refused in one line before
/// anything is read, and the file it points to is untouched.
#[test]
fn a_planted_symlink_is_refused() {
    let (prog, dir) = service("symlink");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.join("victim");
    fs::write(&victim, "keep me").unwrap();
    let planted = dir.join("report.json");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    run_ok(
        Command::new("chown").args(["-h", NOBODY]).arg(&planted),
        "chown the link",
    );
    let out = leak_heap(prog.pid(), "022", &["--json", planted.to_str().unwrap()]);
    one_line(&out, "symbolic link owned by another user (uid 65534)");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    // leak's own link (root's) is written through, as before.
    let own = dir.join("own.json");
    std::os::unix::fs::symlink(dir.join("target.json"), &own).unwrap();
    let out = leak_heap(prog.pid(), "022", &["--json", own.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A full disk: one line naming the file and the reason, exit 1, and
/// nothing left behind that could pass for a report (no file, no
/// temporary).
#[test]
fn a_full_disk_leaves_no_partial_file() {
    let (prog, dir) = service("full");
    let mnt = dir.join("mnt");
    let _fs = Tmpfs::mount(&mnt, "size=64k");
    // Fill it, then free nothing.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=64"])
        .arg(format!("of={}", mnt.join("filler").display()))
        .output();
    let before = names(&mnt);
    let json = mnt.join("heap.json");
    let pprof = mnt.join("heap.pb.gz");
    let out = leak_heap(
        prog.pid(),
        "022",
        &[
            "--json",
            json.to_str().unwrap(),
            "--pprof",
            pprof.to_str().unwrap(),
        ],
    );
    // (leak heap may say something about the profile first.)
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let failed: Vec<&str> = err.lines().filter(|l| l.contains("cannot")).collect();
    assert_eq!(failed.len(), 1, "{err}");
    assert!(
        failed[0].contains("cannot write") && failed[0].contains("No space left on device"),
        "{err}"
    );
    assert_eq!(names(&mnt), before, "a file was left behind");
}

/// A read-only directory: one line before anything is read, no file.
#[test]
fn a_read_only_directory_is_one_line() {
    let (prog, dir) = service("readonly");
    let mnt = dir.join("ro");
    let _fs = Tmpfs::mount(&mnt, "size=64k,ro");
    let json = mnt.join("heap.json");
    let out = leak_heap(prog.pid(), "022", &["--json", json.to_str().unwrap()]);
    one_line(&out, "is not writable (Read-only file system");
    assert!(names(&mnt).is_empty());
}

/// `setpriv` arguments that run a command as nobody with capabilities
/// `caps` (e.g. "+sys_ptrace"; empty for none).
fn as_nobody(caps: &str) -> Vec<String> {
    let mut v: Vec<String> = ["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"]
        .map(String::from)
        .to_vec();
    let set = format!(
        "-all{}",
        if caps.is_empty() {
            String::new()
        } else {
            format!(",{caps}")
        }
    );
    v.push(format!("--inh-caps={set}"));
    v.push(format!("--ambient-caps={set}"));
    v
}

/// `leak heap` needs only the right to read the process's memory: as the
/// process's own user with no capability at all it reads it; as another
/// user it says in one line what it lacks; with CAP_SYS_PTRACE and
/// CAP_DAC_READ_SEARCH (what /proc/PID/mem, its user's and mode 0600,
/// takes) it reads root's process too.
#[test]
fn leak_heap_needs_only_the_right_to_read() {
    let bin = build_go("seed", "1.25.5", Variant::Plain);
    let dir = scratch("safety-least-privilege");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    // The program as nobody, leak heap as nobody.
    let own = Program::start_command(Command::new("setpriv").args(as_nobody("")).arg(&bin));
    send_requests(&own.addr(), "/work", 200);
    let json = dir.join("own.json");
    let out = Command::new("setpriv")
        .args(as_nobody(""))
        .arg(leak_bin())
        .args(["heap", "--pid", &own.pid().to_string(), "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::metadata(&json).unwrap().uid(), 65534);
    // Root's program: denied as nobody, in one line naming the remedy.
    let roots = Program::start(&bin, &[]);
    send_requests(&roots.addr(), "/work", 200);
    let run = |caps: &str| {
        Command::new("setpriv")
            .args(as_nobody(caps))
            .arg(leak_bin())
            .args(["heap", "--pid", &roots.pid().to_string()])
            .output()
            .unwrap()
    };
    one_line(&run(""), "permission denied (run leak as root, as the process's user, or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)");
    one_line(&run("+sys_ptrace"), "cannot read the memory of pid");
    let out = run("+sys_ptrace,+dac_read_search");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in use:"));
}

/// `leak trace` with exactly CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (root's
/// uid, nothing else): this kernel's perf uprobe events need CAP_SYS_ADMIN
/// as well, and leak says so in one line naming it; with it added, leak
/// traces.
#[test]
fn leak_trace_names_the_missing_capability() {
    let (prog, dir) = service("trace-caps");
    let run = |caps: &str| {
        let set = format!("-all,{caps}");
        Command::new("setpriv")
            .arg(format!("--inh-caps={set}"))
            .arg(format!("--ambient-caps={set}"))
            .arg(format!("--bounding-set={set}"))
            .arg(leak_bin())
            .args(["trace", "--pid", &prog.pid().to_string(), "--duration", "2"])
            .args(["--json"])
            .arg(dir.join("trace.json"))
            .output()
            .unwrap()
    };
    let out = run("+bpf,+perfmon,+sys_ptrace");
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // A kernel that lets perf's uprobe events through with CAP_PERFMON.
        eprintln!("leak trace ran with CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE alone");
    } else {
        let fatal: Vec<&str> = err.lines().filter(|l| l.contains("could not")).collect();
        assert_eq!(fatal.len(), 1, "{err}");
        assert!(fatal[0].contains("missing CAP_SYS_ADMIN"), "{err}");
    }
    let out = run("+bpf,+perfmon,+sys_ptrace,+sys_admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("trace.json").is_file());
    // Not root at all: nobody, with those four and CAP_DAC_OVERRIDE (root's
    // /proc/PID/mem is root's, mode 0600: the history read and the rate
    // write go through it).
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let json = dir.join("nobody.json");
    let out = Command::new("setpriv")
        .args(as_nobody(
            "+bpf,+perfmon,+sys_ptrace,+sys_admin,+dac_override",
        ))
        .arg(leak_bin())
        .args([
            "trace",
            "--pid",
            &prog.pid().to_string(),
            "--duration",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("denied"), "{err}");
    assert!(json.is_file());
}

/// `leak top` as a user who is not root: CAP_BPF and CAP_PERFMON load its
/// programs, CAP_DAC_READ_SEARCH lets it find the tracepoints in tracefs
/// (root's, mode 0700); without that one, one line naming it.
#[test]
fn leak_top_without_root() {
    let run = |caps: &str| {
        Command::new("setpriv")
            .args(as_nobody(caps))
            .arg(leak_bin())
            .args(["top", "--duration", "2"])
            .output()
            .unwrap()
    };
    one_line(&run("+bpf,+perfmon"), "missing CAP_DAC_READ_SEARCH");
    let out = run("+bpf,+perfmon,+dac_read_search");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("leak top"));
}
