//! Goroutine groups read back from both sides: the program's own
//! `/debug/pprof/goroutine?debug=1` and `leak goroutines --json`, keyed
//! the same way (`function:line` frames, leaf first) so they compare.

use std::collections::BTreeMap;

/// A stack as `function:line` frames, leaf first.
pub type Stack = Vec<String>;

/// `?debug=1`: goroutines per stack, without those serving the profile
/// request itself (they exist only while it is served).
pub fn own_groups(text: &str) -> BTreeMap<Stack, u64> {
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

pub fn serves_the_request(stack: &Stack) -> bool {
    stack.iter().any(|f| {
        f.starts_with("runtime/pprof.")
            || f.starts_with("net/http.(*conn)")
            || f.starts_with("net/http.(*connReader)")
    })
}

/// leak's JSON: goroutines per stack, the same way.
pub fn leak_groups(report: &serde_json::Value) -> BTreeMap<Stack, u64> {
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
