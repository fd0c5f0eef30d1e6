//! `leak trace --syscalls --pid` on a program that is not Go: heap growth
//! (brk and mmap stacks) of a leaking C program, through the real
//! tracepoints. Root only; run through `cargo xtask test`.

use std::process::Command;

use leak_tests::*;

/// The C leaker (1 KiB malloc per millisecond, from the main arena, which
/// glibc grows with brk) traced for 20 s: the stack holding the most mapped
/// bytes runs through the leaking function, and the reports are written.
#[test]
fn c_heap_growth_stack_names_the_leaking_function() {
    let bin = build_c("leaker");
    let dir = scratch("heapgrowth-c");
    let leaker = Program::start(&bin, &["-t", "60"]);
    let folded = dir.join("leaker.folded");
    let svg = dir.join("leaker.svg");
    let mut leak = LeakArgs::trace_any()
        .pid(leaker.pid())
        .flag("--syscalls")
        .opt("--duration", 20)
        .out("--folded", &folded)
        .out("--flamegraph", &svg)
        .attach(&dir);
    let status = leak.wait(60);
    assert!(status.success(), "leak failed: {}", leak.stderr_text());

    let stacks = read_folded(&folded);
    let top = stacks.first().expect("no stacks in folded output");
    eprintln!("top stack ({} B): {}", top.bytes, top.frames.join(";"));
    assert!(
        top.frames.iter().any(|f| f == "leak_request_buffer"),
        "top stack: {:?}",
        top.frames
    );
    // Nominally 1 MiB/s for 20 s (about 0.85 MiB/s measured); a loaded
    // host sleeps longer between blocks.
    assert!(top.bytes > 5 << 20, "only {} B on the top stack", top.bytes);
    assert_flamegraph(&svg, &["leak_request_buffer"]);
    let report = leak.stdout_text();
    assert!(report.contains("final report"), "{report}");
}

/// `leak trace` without --uprobe or --pid: one line, non-zero exit.
#[test]
fn trace_without_a_target_is_one_line() {
    let out = Command::new(leak_bin()).arg("trace").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--pid"), "{err}");
}
