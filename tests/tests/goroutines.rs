//! `leak goroutines`: a Go program's goroutines read from outside, held
//! against what the program serves at `/debug/pprof/goroutine?debug=1`
//! (the same groups, with the same counts), on every toolchain the tests
//! build, plain and stripped+PIE; and its refusals. Root only; run through
//! `cargo xtask test`.

use std::{collections::BTreeMap, process::Command};

use leak_tests::*;

/// A stack as `function:line` frames, leaf first.
type Stack = Vec<String>;

/// `?debug=1`: goroutines per stack, without those serving the profile
/// request itself (they exist only while it is served).
fn own_groups(text: &str) -> BTreeMap<Stack, u64> {
    let mut groups = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut lines = block
            .lines()
            .skip_while(|l| l.starts_with("goroutine profile"));
        let Some((count, _)) = lines.next().and_then(|h| h.split_once(" @ ")) else {
            continue;
        };
        let stack: Stack = lines
            .filter(|l| l.starts_with("#\t"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split('\t').filter(|f| !f.is_empty()).collect();
                let (function, _) = fields.get(2)?.rsplit_once("+0x")?;
                let (_, line) = fields.get(3)?.rsplit_once(':')?;
                Some(format!("{function}:{line}"))
            })
            .collect();
        if stack.is_empty() || serves_the_request(&stack) {
            continue;
        }
        *groups.entry(stack).or_default() += count.parse::<u64>().unwrap();
    }
    groups
}

fn serves_the_request(stack: &Stack) -> bool {
    stack.iter().any(|f| {
        f.starts_with("runtime/pprof.")
            || f.starts_with("net/http.(*conn)")
            || f.starts_with("net/http.(*connReader)")
    })
}

/// leak's JSON: goroutines per stack, the same way.
fn leak_groups(report: &serde_json::Value) -> BTreeMap<Stack, u64> {
    let mut groups = BTreeMap::new();
    for g in report["goroutines"]["groups"].as_array().unwrap() {
        let stack: Stack = g["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{}:{}", f["function"].as_str().unwrap(), f["line"]))
            .collect();
        if stack.is_empty() || serves_the_request(&stack) {
            continue;
        }
        *groups.entry(stack).or_default() += g["count"].as_u64().unwrap();
    }
    groups
}

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
