//! leak leaves the target as it found it: the heap sampling rate it writes
//! (`--rate`, or turning sampling on) is put back however leak ends (Ctrl-C,
//! `--duration`, SIGKILL through its guard process), and stays with
//! `--keep-rate`. The target, `tests/go/ratewatch`, prints its own
//! `runtime.MemProfileRate` every 200 ms. Root only; run through `cargo
//! xtask test`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use leak_tests::*;

/// The rate leak is asked to write.
const RATE: u32 = 4096;
/// How soon after leak ends the program must show its old rate again.
const BACK_WITHIN: Duration = Duration::from_secs(3);

/// How a test ends leak.
#[derive(Clone, Copy, Debug)]
enum End {
    Signal(i32),
    Duration,
}

/// ratewatch built with Go `version`, running with sampling off, and leak
/// tracing it at `--rate 4096` (plus `extra` flags) once the program shows
/// that rate.
fn traced(version: &str, name: &str, end: End, extra: &[&str]) -> (Program, Leak, PathBuf) {
    let bin = build_go("ratewatch", version, Variant::Plain);
    let dir = scratch(&format!("restore-{name}-{version}"));
    let mut prog = Program::start_following(&bin, &[]);
    assert_eq!(prog.first_line.trim(), "rate=0", "starts with sampling off");
    let mut args = LeakArgs::trace(&bin)
        .pid(prog.pid())
        .opt("--rate", RATE)
        .opt("--interval", 1);
    if let End::Duration = end {
        args = args.opt("--duration", 3);
    }
    for f in extra {
        args = args.flag(f);
    }
    let leak = args.attach(&dir);
    let want = format!("rate={RATE}");
    assert!(
        prog.wait_line(Duration::from_secs(5), |l| l == want)
            .is_some(),
        "the program never showed rate {RATE}: {}",
        leak.stderr_text()
    );
    (prog, leak, dir)
}

/// Ends leak as `end` says, and returns when: at the signal, or when
/// `--duration` made it exit.
fn end_leak(leak: &mut Leak, end: End) -> Instant {
    match end {
        End::Signal(sig) => {
            leak.signal(sig);
            Instant::now()
        }
        End::Duration => {
            let status = leak.wait(60);
            assert!(status.success(), "leak failed: {}", leak.stderr_text());
            Instant::now()
        }
    }
}

/// Waits for leak to exit after a signal: successfully, unless killed.
fn leak_exits(leak: &mut Leak, end: End) {
    if let End::Signal(sig) = end {
        let status = leak.wait(60);
        if sig != SIGKILL {
            assert!(status.success(), "leak failed: {}", leak.stderr_text());
        }
    }
}

/// The rate is back to 0 within [`BACK_WITHIN`] of leak's end, and leak
/// (or, after SIGKILL, its guard) said so in one line.
fn rate_is_put_back(version: &str, name: &str, end: End) {
    let (mut prog, mut leak, _dir) = traced(version, name, end, &[]);
    let ended = end_leak(&mut leak, end);
    let back = prog.wait_line(BACK_WITHIN * 3, |l| l == "rate=0");
    let after = ended.elapsed();
    eprintln!("{name} {version}: rate=0 seen {after:?} after leak ended (printed every 200 ms)");
    leak_exits(&mut leak, end);
    assert!(
        back.is_some(),
        "rate never back to 0: {}",
        leak.stderr_text()
    );
    assert!(
        after <= BACK_WITHIN,
        "rate back to 0 only {after:?} after leak ended"
    );
    // The guard may print just after leak is gone.
    std::thread::sleep(Duration::from_millis(300));
    let err = leak.stderr_text();
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("MemProfileRate restored to 0"))
        .collect();
    assert_eq!(said.len(), 1, "one restore line: {err}");
    let by_guard = said[0].contains("guard");
    assert_eq!(by_guard, matches!(end, End::Signal(SIGKILL)), "{err}");
    assert!(prog.running(), "the program kept running");
    // And it stays put back.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        prog.lines_now().iter().all(|l| l == "rate=0"),
        "rate moved again after the restore"
    );
}

#[test]
fn sigint_go1_25() {
    rate_is_put_back("1.25.5", "sigint", End::Signal(SIGINT));
}

#[test]
fn duration_go1_25() {
    rate_is_put_back("1.25.5", "duration", End::Duration);
}

#[test]
fn sigkill_go1_25() {
    rate_is_put_back("1.25.5", "sigkill", End::Signal(SIGKILL));
}

/// Go ≤1.23 takes a new rate through a pass at 1: the restore needs none.
#[test]
fn sigint_go1_21() {
    rate_is_put_back("1.21.13", "sigint", End::Signal(SIGINT));
}

#[test]
fn sigkill_go1_21() {
    rate_is_put_back("1.21.13", "sigkill", End::Signal(SIGKILL));
}

/// Go 1.19 keeps the rate in .noptrbss, set by the runtime's init.
#[test]
fn sigint_go1_19() {
    rate_is_put_back("1.19.8", "sigint", End::Signal(SIGINT));
}

#[test]
fn sigkill_go1_19() {
    rate_is_put_back("1.19.8", "sigkill", End::Signal(SIGKILL));
}

/// `--keep-rate`: the written rate stays after leak exits, and no guard
/// touches it.
#[test]
fn keep_rate_go1_25() {
    let end = End::Signal(SIGINT);
    let (mut prog, mut leak, _dir) = traced("1.25.5", "keep", end, &["--keep-rate"]);
    end_leak(&mut leak, end);
    leak_exits(&mut leak, end);
    let want = format!("rate={RATE}");
    std::thread::sleep(BACK_WITHIN);
    let lines = prog.lines_now();
    assert!(lines.len() >= 5, "the program stopped printing: {lines:?}");
    assert!(
        lines.iter().all(|l| *l == want),
        "rate moved after leak exited with --keep-rate: {lines:?}"
    );
    let err = leak.stderr_text();
    assert!(!err.contains("restored"), "{err}");
    assert!(err.contains("--keep-rate"), "says the rate stays: {err}");
}

/// SIGKILL at moments spread over leak's whole life (before it attached,
/// while it wrote the rate, while it traced), each drawn afresh (the seed
/// is printed): the program keeps running at its own pace, and its rate is
/// 0 again within [`BACK_WITHIN`] whether or not leak had changed it.
#[test]
fn sigkill_at_random_moments_go1_25() {
    let bin = build_go("ratewatch", "1.25.5", Variant::Plain);
    let dir = scratch("restore-random-kill");
    let mut prog = Program::start_following(&bin, &[]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("random kill moments: seed {seed}");
    for round in 0..6 {
        // xorshift: a moment in [0, 2.5 s) after leak starts.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = Duration::from_millis(seed % 2500);
        let mut leak = LeakArgs::trace(&bin)
            .pid(prog.pid())
            .opt("--rate", RATE)
            .spawn(&dir);
        std::thread::sleep(at);
        leak.signal(SIGKILL);
        leak.wait(10);
        std::thread::sleep(BACK_WITHIN);
        let _ = prog.lines_now();
        // One more second of the program's own reports: at its pace (every
        // 200 ms), all at rate 0.
        std::thread::sleep(Duration::from_secs(1));
        let lines = prog.lines_now();
        assert!(
            prog.running(),
            "round {round} (kill at {at:?}): the program died"
        );
        assert!(
            lines.len() >= 4,
            "round {round} (kill at {at:?}): the program slowed: {lines:?}"
        );
        assert!(
            lines.iter().all(|l| l == "rate=0"),
            "round {round} (kill at {at:?}): rate not restored: {lines:?}\n{}",
            leak.stderr_text()
        );
        let wrote = leak.stderr_text().contains("turned it on");
        eprintln!("round {round}: killed at {at:?} (rate written: {wrote}), rate 0 again, program running");
    }
}
