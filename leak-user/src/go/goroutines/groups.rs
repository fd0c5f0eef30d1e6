//! Goroutines grouped as Go's `/debug/pprof/goroutine?debug=1` groups
//! them: one group per identical stack, the runtime's own goroutines left
//! out, largest group first. Goroutines with no stack in a read (running,
//! or moving under it) are grouped by state, start function and creator
//! instead, and say so.

use std::{collections::HashMap, time::Duration};

use super::{walk::State, Goroutine, Snapshot};
use crate::frame::Frame;

/// Goroutines that share a stack.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Group {
    /// The stack, leaf first, as pprof shows it; empty for goroutines read
    /// with no stack (see `unstable`).
    pub frames: Vec<Frame>,
    /// Goroutines in the group.
    pub count: usize,
    /// Their state as Go prints it (`chan receive`, `running`); the most
    /// common one if they differ.
    pub state: String,
    /// Of them, how many Go's own goroutine leak profile proved leaked (it
    /// marks them `_Gleaked` when the program's leak profile runs).
    pub proven_leaked: usize,
    /// Why they wait, in the target's own words (the most common reason), if
    /// they wait.
    pub wait_reason: Option<String>,
    /// The `go` statement that started them (the most common one).
    pub created_by: Option<Frame>,
    /// Their function (the most common one).
    pub start: Option<Frame>,
    /// The longest any of them has waited (as fine as the program's GC
    /// cadence: Go sets a wait's start lazily).
    pub oldest_wait: Option<Duration>,
    /// Bytes their stacks take.
    pub stack_bytes: u64,
    /// The goroutines had no stack in this read: running, in a syscall,
    /// or changing under it.
    pub unstable: bool,
    /// Their ids, lowest first.
    pub goids: Vec<u64>,
}

/// What makes goroutines one group.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Stack(Vec<Frame>),
    NoStack {
        state: String,
        start: Option<Frame>,
        created_by: Option<Frame>,
    },
}

/// The user goroutines of `snapshot` (the runtime's left out, as pprof
/// does) grouped by identical stack, largest group first (then by stack,
/// so the order is stable).
pub(crate) fn group(snapshot: &Snapshot) -> Vec<Group> {
    let mut members: HashMap<Key, Vec<&Goroutine>> = HashMap::new();
    for g in snapshot.user() {
        let key = match &g.frames {
            Ok(frames) => Key::Stack(frames.clone()),
            Err(_) => Key::NoStack {
                state: g.state_name().to_string(),
                start: g.start.clone(),
                created_by: g.created_by.clone(),
            },
        };
        members.entry(key).or_default().push(g);
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|(key, gs)| summarize(key, &gs))
        .collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| names(&a.frames).cmp(&names(&b.frames)))
            .then_with(|| a.goids.cmp(&b.goids))
    });
    groups
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| &*f.function).collect()
}

fn summarize(key: Key, gs: &[&Goroutine]) -> Group {
    let (frames, unstable) = match key {
        Key::Stack(frames) => (frames, false),
        Key::NoStack { .. } => (Vec::new(), true),
    };
    let mut goids: Vec<u64> = gs.iter().map(|g| g.goid).collect();
    goids.sort_unstable();
    Group {
        frames,
        count: gs.len(),
        state: most_common(gs.iter().map(|g| g.state_name().to_string())).unwrap_or_default(),
        // Go's own goroutine leak profile (1.26 on) marks what it proved.
        proven_leaked: gs.iter().filter(|g| g.state == State::Leaked).count(),
        wait_reason: most_common(
            gs.iter()
                .filter_map(|g| g.wait_reason.as_deref().map(String::from)),
        ),
        created_by: most_common(gs.iter().filter_map(|g| g.created_by.clone())),
        start: most_common(gs.iter().filter_map(|g| g.start.clone())),
        oldest_wait: gs.iter().filter_map(|g| g.waiting_for).max(),
        stack_bytes: gs.iter().map(|g| g.stack_bytes).sum(),
        unstable,
        goids,
    }
}

/// The value seen most often (the first seen among equals).
fn most_common<T: Eq + std::hash::Hash + Clone>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    let mut index: HashMap<T, usize> = HashMap::new();
    for v in values {
        match index.get(&v) {
            Some(&i) => counts[i].1 += 1,
            None => {
                index.insert(v.clone(), counts.len());
                counts.push((v, 1));
            }
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::goroutines::walk::Unstable;

    fn g(goid: u64, stack: Option<&[&str]>, reason: &str, wait_secs: u64) -> Goroutine {
        Goroutine {
            goid,
            state: State::Waiting,
            wait_reason: Some(reason.into()),
            waiting_for: (wait_secs > 0).then(|| Duration::from_secs(wait_secs)),
            start: Some(Frame::named("main.worker")),
            created_by: Some(Frame::new("main.main", "main.go", 12, false)),
            stack_bytes: 8192,
            frames: stack
                .map(|s| s.iter().map(|f| Frame::named(f)).collect())
                .ok_or(Unstable::OnCpu),
            system: false,
        }
    }

    #[test]
    fn goroutines_go_marked_leaked_are_shown_proven() {
        let send: &[&str] = &["main.leak"];
        let mut gs = vec![
            g(1, Some(send), "chan send", 0),
            g(2, Some(send), "chan send", 0),
        ];
        gs[1].state = State::Leaked;
        let snapshot = Snapshot { goroutines: gs };
        let groups = group(&snapshot);
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].state.as_str(), groups[0].proven_leaked),
            ("chan send", 1)
        );
    }

    #[test]
    fn groups_identical_stacks_largest_first() {
        let send: &[&str] = &["main.leak", "main.handler"];
        let recv: &[&str] = &["main.worker"];
        let mut gs = vec![
            g(10, Some(recv), "chan receive", 5),
            g(11, Some(send), "chan send", 60),
            g(12, Some(send), "chan send", 0),
            g(13, Some(send), "chan send", 120),
            g(14, None, "", 0),
        ];
        gs[4].state = State::Running;
        gs[4].wait_reason = None;
        // The runtime's own goroutines are not counted.
        let mut system = g(2, Some(&["runtime.forcegchelper"]), "force gc (idle)", 0);
        system.system = true;
        gs.push(system);
        let groups = group(&Snapshot { goroutines: gs });
        let summary: Vec<_> = groups
            .iter()
            .map(|g| (names(&g.frames), g.count, g.state.as_str(), g.unstable))
            .collect();
        assert_eq!(
            summary,
            [
                (vec!["main.leak", "main.handler"], 3, "chan send", false),
                (vec![], 1, "running", true),
                (vec!["main.worker"], 1, "chan receive", false),
            ]
        );
        let leak = &groups[0];
        assert_eq!(leak.oldest_wait, Some(Duration::from_secs(120)));
        assert_eq!(leak.stack_bytes, 3 * 8192);
        assert_eq!(leak.goids, [11, 12, 13]);
        assert_eq!(&*leak.created_by.as_ref().unwrap().function, "main.main");
        assert_eq!(&*groups[1].start.as_ref().unwrap().function, "main.worker");
    }

    #[test]
    fn the_most_common_value_wins_ties_to_the_first() {
        assert_eq!(most_common([1, 2, 2, 3].into_iter()), Some(2));
        assert_eq!(most_common([3, 1].into_iter()), Some(3));
        assert_eq!(most_common(std::iter::empty::<u8>()), None);
    }
}
