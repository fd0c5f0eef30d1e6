//! `leak goroutines`: a Go program's goroutines read from outside, held
//! against what the program serves at `/debug/pprof/goroutine?debug=1`
//! (the same groups, with the same counts), on every toolchain the tests
//! build, plain and stripped+PIE; and its refusals. Root only; run through
//! `cargo xtask test`.

use std::process::Command;

use leak_tests::{goroutines::*, *};

fn leak_goroutines(pid: u32, json: &std::path::Path) -> std::process::Output {
    Command::new(leak_bin())
        .args(["goroutines", "--pid", &pid.to_string(), "--json"])
        .arg(json)
        .output()
        .expect("run leak goroutines")
}

/// The program parks goroutines a dozen ways and then holds still: leak's
/// groups are its own profile's, stack for stack and count for count.
fn same_groups_as_own_profile(version: &str, variant: Variant) {
    let bin = build_go("goroutines", version, variant);
    let prog = Program::start(&bin, &[]);
    let addr = prog.addr();
    let dir = scratch(&format!("goroutines-{version}-{variant:?}"));
    let json = dir.join("g.json");
    let ctx = format!("go{version} {variant:?}");
    let mut last = String::new();
    // A goroutine of the previous request may still be exiting: read again.
    for attempt in 1..=3 {
        let own = own_groups(&String::from_utf8_lossy(&get(
            &addr,
            "/debug/pprof/goroutine?debug=1",
        )));
        let out = leak_goroutines(prog.pid(), &json);
        assert!(
            out.status.success(),
            "{ctx}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = leak_groups(&read_json(&json));
        assert!(
            own.len() >= 10,
            "{ctx}: only {} groups in {own:?}",
            own.len()
        );
        if ours == own {
            eprintln!(
                "{ctx}: {} groups, {} goroutines, equal (attempt {attempt})\n{}",
                own.len(),
                own.values().sum::<u64>(),
                String::from_utf8_lossy(&out.stdout)
            );
            return;
        }
        last = format!("own {own:#?}\nleak {ours:#?}");
    }
    panic!("{ctx}: leak's groups differ from the program's own:\n{last}");
}

#[test]
fn same_groups_as_own_profile_go1_19() {
    same_groups_as_own_profile("1.19.8", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_19_stripped_pie() {
    same_groups_as_own_profile("1.19.8", Variant::StrippedPie);
}

#[test]
fn same_groups_as_own_profile_go1_21() {
    same_groups_as_own_profile("1.21.13", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_25_stripped_pie() {
    same_groups_as_own_profile("1.25.5", Variant::StrippedPie);
}

#[test]
fn same_groups_as_own_profile_go1_27() {
    same_groups_as_own_profile("1.27.3", Variant::Plain);
}

#[test]
fn same_groups_as_own_profile_go1_27_stripped_pie() {
    same_groups_as_own_profile("1.27.3", Variant::StrippedPie);
}

/// Each refusal is one line and a non-zero exit, with no output file.
#[test]
fn bad_input_is_one_line() {
    let dir = scratch("goroutines-bad");
    let json = dir.join("g.json");
    let c = build_c("leaker");
    let native = Program::start(&c, &[]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--pid".into(), "4194300".into()],
            "no process with pid 4194300",
        ),
        (
            vec!["--pid".into(), native.pid().to_string()],
            "is not a Go program",
        ),
        (
            vec![
                "--pid".into(),
                native.pid().to_string(),
                "--chart".into(),
                "x.svg".into(),
            ],
            "--chart is not written by leak goroutines",
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(leak_bin())
            .arg("goroutines")
            .args(&args)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!json.exists(), "{args:?} left {}", json.display());
    }
}
