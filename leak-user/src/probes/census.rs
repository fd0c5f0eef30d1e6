//! leak's kernel maps that hold something per process: entries of a
//! process that has exited are removed (a long run must not keep state for
//! every process it ever saw, and the pid may name another process next),
//! and at exit each map's entries are counted, with how many name a
//! process that has exited, and logged at debug level
//! (`RUST_LOG=leak_user::probes::census=debug` shows this line alone).

use aya::{
    maps::{HashMap, MapData, MapError, PerCpuHashMap},
    Pod,
};

use crate::process;

/// One map's entries, by the process each belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Entries in the map.
    pub entries: usize,
    /// Of those, entries whose process has exited.
    pub exited: usize,
}

impl Census {
    /// The census of entries belonging to `tgids` (one per entry), by
    /// whether each is `alive`.
    pub(crate) fn of(tgids: impl IntoIterator<Item = u32>, alive: impl Fn(u32) -> bool) -> Self {
        tgids.into_iter().fold(Census::default(), |c, tgid| Census {
            entries: c.entries + 1,
            exited: c.exited + usize::from(!alive(tgid)),
        })
    }
}

/// The keys of `entries` (key, process) whose process is not `alive`.
pub(crate) fn exited<K>(
    entries: impl IntoIterator<Item = (K, u32)>,
    alive: impl Fn(u32) -> bool,
) -> Vec<K> {
    entries
        .into_iter()
        .filter(|(_, tgid)| !alive(*tgid))
        .map(|(k, _)| k)
        .collect()
}

/// A map whose entries each belong to a process.
pub(crate) trait PerProcess {
    /// The map's key.
    type Key;
    /// Every entry's key and the process it belongs to.
    fn owners(&self) -> Vec<(Self::Key, u32)>;
    /// Removes the entry with this key.
    fn remove_key(&mut self, key: &Self::Key) -> Result<(), MapError>;
}

/// A `HashMap` whose entries belong to the process `tgid_of` their key and
/// value names.
pub(crate) struct Owned<'a, K: Pod, V: Pod> {
    pub map: &'a mut HashMap<MapData, K, V>,
    pub tgid_of: fn(&K, &V) -> u32,
}

impl<K: Pod, V: Pod> PerProcess for Owned<'_, K, V> {
    type Key = K;

    fn owners(&self) -> Vec<(K, u32)> {
        self.map
            .iter()
            .flatten()
            .map(|(k, v)| (k, (self.tgid_of)(&k, &v)))
            .collect()
    }

    fn remove_key(&mut self, key: &K) -> Result<(), MapError> {
        self.map.remove(key)
    }
}

impl<V: Pod> PerProcess for PerCpuHashMap<MapData, u32, V> {
    type Key = u32;

    fn owners(&self) -> Vec<(u32, u32)> {
        self.keys().flatten().map(|k| (k, k)).collect()
    }

    fn remove_key(&mut self, key: &u32) -> Result<(), MapError> {
        self.remove(key)
    }
}

/// Removes from `map` every entry of a process that has exited; how many.
pub(crate) fn sweep<M: PerProcess>(map: &mut M) -> usize {
    let gone = exited(map.owners(), process::alive);
    gone.iter().filter(|k| map.remove_key(k).is_ok()).count()
}

/// Counts `map`'s entries now, and those of processes that have exited.
pub(crate) fn count<M: PerProcess>(map: &M) -> Census {
    Census::of(map.owners().into_iter().map(|(_, t)| t), process::alive)
}

/// Logs each named map's census at debug level, on one line.
pub(crate) fn log(maps: &[(&str, Census)]) {
    log::debug!("{}", line(maps));
}

/// The census line: "kernel maps by process at exit: NAME N entries (M of
/// exited processes), …".
pub(crate) fn line(maps: &[(&str, Census)]) -> String {
    let parts: Vec<String> = maps
        .iter()
        .map(|(name, c)| {
            format!(
                "{name} {} entries ({} of exited processes)",
                c.entries, c.exited
            )
        })
        .collect();
    format!("kernel maps by process at exit: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_exited_processes_are_counted_and_picked() {
        let alive = |t: u32| t.is_multiple_of(2);
        let c = Census::of([2, 3, 4, 5, 5], alive);
        assert_eq!(
            c,
            Census {
                entries: 5,
                exited: 3
            }
        );
        let gone = exited([("a", 2), ("b", 3), ("c", 5), ("d", 8)], alive);
        assert_eq!(gone, vec!["b", "c"]);
        assert_eq!(
            line(&[("MM_STATS", c), ("MM_OWNERS", Census::default())]),
            "kernel maps by process at exit: MM_STATS 5 entries (3 of exited processes), \
             MM_OWNERS 0 entries (0 of exited processes)"
        );
    }
}
