//! Hostile and broken targets, end to end: an executable cut short or
//! built for arm64, a zombie. Each is one line on stderr and exit 1, never
//! a panic. (Damaged tables are unit tests on real files, `go/refusals.rs`,
//! and fuzz targets.) Root only; run through `cargo xtask test`.

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use leak_tests::*;

fn leak(args: &[&str]) -> Output {
    Command::new(leak_bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run leak")
}

/// One line on stderr containing `says`, exit 1, no panic.
fn one_line(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(says), "{err}");
}

/// `leak trace --uprobe` on an executable cut in half, and on one built for
/// arm64.
#[test]
fn broken_executables_are_one_line() {
    let dir = scratch("hostile-executables");
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    let data = fs::read(&seed).unwrap();
    let half = dir.join("half");
    fs::write(&half, &data[..data.len() / 2]).unwrap();
    let path = half.to_str().unwrap();
    one_line(
        &leak(&["trace", "--uprobe", path, "--duration", "1"]),
        "half",
    );
    let arm = build_go("seed", "1.19.8", Variant::Arm64);
    let out = leak(&[
        "trace",
        "--uprobe",
        arm.to_str().unwrap(),
        "--duration",
        "1",
    ]);
    one_line(&out, "aarch64");
}

/// A Go program that has exited but whose parent has not reaped it: every
/// command says so in one line.
#[test]
fn a_zombie_is_one_line() {
    let seed = build_go("seed", "1.25.5", Variant::Plain);
    // sh starts the program, then becomes sleep, which never reaps it.
    let parent = Program::start(
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "'{}' >/dev/null 2>&1 & echo $!; exec sleep 60",
                seed.display()
            ),
        ],
    );
    let pid: u32 = parent.first_line.trim().parse().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let state = || fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    while !state().contains(") Z ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(state().contains(") Z "), "not a zombie: {}", state());
    let p = pid.to_string();
    for args in [
        vec!["heap", "--pid", &p],
        vec!["goroutines", "--pid", &p],
        vec!["trace", "--pid", &p, "--duration", "1"],
    ] {
        one_line(&leak(&args), "has exited (a zombie");
    }
    drop(parent);
}
