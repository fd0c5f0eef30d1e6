//! Real Go programs read from outside, against their own goroutine
//! profile: `tests/go/goroutines` (a dozen groups of parked goroutines)
//! built by each toolchain, plain and stripped+PIE, started here, read
//! through its memory, and compared with its `/debug/pprof/goroutine`:
//! `?debug=1` (the same groups with the same counts) and `?debug=2` (each
//! parked goroutine's stack and state). Reading another process's memory
//! needs root (or ptrace rights over it): without them the test says so
//! and skips.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    rc::Rc,
};

use leak_tests::goroutines::{own_groups, serves_the_request, Stack};

use super::{group, read_once, walk::State, Snapshot};
use crate::go::{
    testutil::{self, Variant, VERSIONS},
    GoProcess, Program,
};

/// One goroutine of `?debug=2`.
struct Traceback {
    state: String,
    functions: Vec<String>,
    created_by: Option<String>,
}

/// `?debug=2`: each goroutine by id.
fn parse_debug2(text: &str) -> HashMap<u64, Traceback> {
    let mut out = HashMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(header) = lines.next().and_then(|h| h.strip_prefix("goroutine ")) else {
            continue;
        };
        let (id, rest) = header.split_once(' ').unwrap();
        let state = rest
            .split_once('[')
            .unwrap()
            .1
            .split([',', ']'])
            .next()
            .unwrap();
        let mut tb = Traceback {
            state: state.to_string(),
            functions: Vec::new(),
            created_by: None,
        };
        for line in lines.filter(|l| !l.starts_with('\t')) {
            if let Some(creator) = line.strip_prefix("created by ") {
                let creator = creator.split(" in goroutine ").next().unwrap();
                tb.created_by = Some(creator.to_string());
            } else if let Some((function, _)) = line.rsplit_once('(') {
                tb.functions.push(function.to_string());
            }
        }
        out.insert(id.parse().unwrap(), tb);
    }
    out
}

/// What Go's traceback shows of a stack (`showfuncinfo`): no unexported
/// runtime function.
fn traceback_shows(function: &str) -> bool {
    match function.strip_prefix("runtime.") {
        Some(rest) => rest.starts_with(|c: char| c.is_ascii_uppercase()),
        None => true,
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect to the test program");
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    body.to_string()
}

/// The test program, started and killed with the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts the program; its address once its goroutines are parked.
fn start(path: &std::path::Path) -> (Running, String) {
    let mut child = Command::new(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the test program");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("its address");
    (Running(child), addr.to_string())
}

/// Our groups keyed as the harness keys `?debug=1`'s (`function:line`
/// frames), less the profile request's own goroutines. Goroutines read with
/// no stack (a request's goroutine running as it was read: at most a
/// couple on this quiet program) are left out.
fn our_groups(snapshot: &Snapshot) -> BTreeMap<Stack, u64> {
    assert!(snapshot.unstable() <= 2, "{:#?}", group(snapshot));
    let mut out = BTreeMap::new();
    for g in group(snapshot).into_iter().filter(|g| !g.unstable) {
        let stack: Stack = g
            .frames
            .iter()
            .map(|f| format!("{}:{}", f.function, f.line))
            .collect();
        if !stack.is_empty() && !serves_the_request(&stack) {
            *out.entry(stack).or_default() += g.count as u64;
        }
    }
    out
}

/// Of our parked goroutines, how many `?debug=2` shows with the same
/// stack (function names), state and creator; and how many there are.
fn tracebacks_matched(snapshot: &Snapshot, debug2: &HashMap<u64, Traceback>) -> (usize, usize) {
    let parked = snapshot
        .user()
        .filter(|g| g.state == State::Waiting && g.frames.is_ok());
    let (mut matched, mut total) = (0, 0);
    for g in parked {
        total += 1;
        let Some(tb) = debug2.get(&g.goid) else {
            eprintln!("goroutine {} is not in ?debug=2", g.goid);
            continue;
        };
        let ours: Vec<String> = g
            .frames
            .as_ref()
            .unwrap()
            .iter()
            .map(|f| f.function.to_string())
            .filter(|f| traceback_shows(f))
            .collect();
        let creator = g.created_by.as_ref().map(|f| f.function.to_string());
        let same_creator = g.goid == 1 || creator == tb.created_by;
        if ours == tb.functions && g.state_name() == tb.state && same_creator {
            matched += 1;
        } else {
            eprintln!(
                "goroutine {}: ours {ours:?} [{}] by {creator:?}; Go's {:?} [{}] by {:?}",
                g.goid,
                g.state_name(),
                tb.functions,
                tb.state,
                tb.created_by
            );
        }
    }
    (matched, total)
}

/// One build: our groups are `?debug=1`'s, and ≥ 95 % of parked
/// goroutines have `?debug=2`'s stack, state and creator.
fn check(version: &str, variant: Variant) {
    let Some(path) = testutil::goroutines_program(version, variant) else {
        return;
    };
    let ctx = format!("go{version} {variant:?}");
    let (running, addr) = start(&path);
    let program = Rc::new(Program::open(&path).unwrap_or_else(|e| panic!("{ctx}: {e}")));
    let process = GoProcess::open(program, running.0.id()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let mut last = None;
    // The profile request's own goroutines come and go: a few tries.
    for _ in 0..5 {
        let snapshot = read_once(&process).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let theirs = own_groups(&get(&addr, "/debug/pprof/goroutine?debug=1"));
        let ours = our_groups(&snapshot);
        if ours == theirs {
            let debug2 = parse_debug2(&get(&addr, "/debug/pprof/goroutine?debug=2"));
            let (matched, total) = tracebacks_matched(&snapshot, &debug2);
            assert!(total >= 30, "{ctx}: {total} parked goroutines");
            assert!(
                matched * 100 >= total * 95,
                "{ctx}: {matched} of {total} tracebacks match"
            );
            eprintln!(
                "{ctx}: {} groups, {} goroutines ({} the runtime's), {matched}/{total} tracebacks match",
                ours.len(),
                snapshot.user().count(),
                snapshot.goroutines.len() - snapshot.user().count()
            );
            return;
        }
        last = Some((ours, theirs));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (ours, theirs) = last.unwrap();
    let only = |a: &BTreeMap<Stack, u64>, b: &BTreeMap<Stack, u64>| -> Vec<String> {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| format!("{v} × {k:?}"))
            .collect()
    };
    panic!(
        "{ctx}: groups differ\nours only: {:#?}\nGo's only: {:#?}",
        only(&ours, &theirs),
        only(&theirs, &ours)
    );
}

fn can_read_memory() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: reading another process's memory needs root");
    }
    root
}

#[test]
fn goroutines_read_from_outside_are_gos_own_profile() {
    if !can_read_memory() {
        return;
    }
    for v in VERSIONS {
        for variant in [Variant::Plain, Variant::StrippedPie] {
            check(v, variant);
        }
    }
}
