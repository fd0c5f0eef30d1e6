//! leak never hurts what it runs beside: its output files are never
//! written through a link another user planted, carry the caller's umask,
//! and are whole or absent when the disk is full or the directory
//! read-only. Root only (mounts, chown); run through `cargo xtask test`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use leak_tests::*;

/// The unprivileged user that plants links.
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
