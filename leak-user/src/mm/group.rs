//! `leak top --by container`: one row per container, adding up its
//! processes. A process outside any container counts under its memory
//! cgroup (a systemd service, a session), one without a readable cgroup
//! under "(no cgroup)". Pure: rows in, rows out.

use std::collections::BTreeMap;

use crate::analysis::trend::{self, Thresholds};

use super::watch::{rank, Reading, Row, VerdictFrom};

/// What groups processes: a container, or else a cgroup.
pub(crate) fn group_key(row: &Row) -> String {
    match &row.cgroup {
        Some(view) => match &view.cgroup.container {
            Some(c) => format!("{} {}", c.runtime, short_id(&c.id)),
            None => view.cgroup.path.clone(),
        },
        None => "(no cgroup)".to_string(),
    }
}

/// A container id as runtimes show it: its first 12 characters.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One row per group of `rows` (processes), in ranking order: RSS summed
/// reading by reading (every process is read at the same instants), the
/// latest readings summed, judged by the same rule as a process. The
/// group's cgroup is its first process's; `members` lists its pids.
pub(crate) fn by_container(rows: Vec<Row>) -> Vec<Row> {
    let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in rows {
        groups.entry(group_key(&row)).or_default().push(row);
    }
    let mut out: Vec<Row> = groups
        .into_iter()
        .map(|(key, members)| sum(key, members))
        .collect();
    rank(&mut out);
    out
}

/// The row of one group.
fn sum(key: String, members: Vec<Row>) -> Row {
    // Readings are keyed by the millisecond they were taken at.
    let mut series: BTreeMap<i64, f64> = BTreeMap::new();
    let mut latest = Reading::default();
    for m in &members {
        for &(t, bytes) in &m.series {
            *series.entry((t * 1000.0).round() as i64).or_default() += bytes;
        }
        for (sum, v) in latest.rss.iter_mut().zip(m.latest.rss) {
            *sum += v;
        }
        latest.mapped_bytes += m.latest.mapped_bytes;
        latest.advised_away_bytes += m.latest.advised_away_bytes;
    }
    let series: Vec<(f64, f64)> = series
        .into_iter()
        .map(|(ms, bytes)| (ms as f64 / 1000.0, bytes))
        .collect();
    let trend = trend::assess(&series, None, &Thresholds::PROCESS);
    let change_bytes = match (series.first(), series.last()) {
        (Some(a), Some(b)) => b.1 - a.1,
        _ => 0.0,
    };
    let mut pids: Vec<u32> = members.iter().map(|m| m.pid).collect();
    pids.sort_unstable();
    Row {
        pid: pids[0],
        command: key,
        latest,
        series,
        change_bytes,
        rss_trend: trend.clone(),
        trend,
        verdict_from: VerdictFrom::Rss,
        go_heap: None,
        goroutines: None,
        cgroup: members.iter().find_map(|m| m.cgroup.clone()),
        host_available: members.first().and_then(|m| m.host_available),
        members: pids,
        ns_pid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::trend::Verdict,
        mm::watch::{CgroupView, Watch},
        process::cgroup::{Cgroup, Container},
    };
    use leak_common::RSS_ANON;

    const MIB: f64 = 1024.0 * 1024.0;

    fn view(path: &str, container: Option<&str>) -> CgroupView {
        CgroupView {
            cgroup: Cgroup {
                path: path.to_string(),
                v1: true,
                container: container.map(|id| Container {
                    runtime: "docker",
                    id: id.to_string(),
                }),
                pod_uid: None,
            },
            pod: None,
            memory: None,
            oom_kills_watched: 0,
        }
    }

    /// Two processes of one container, each leaking half as fast as the
    /// container, and a steady service: the container's row adds them up
    /// and leaks; the service's row is its own.
    #[test]
    fn a_containers_processes_add_up() {
        let mut w = Watch::new();
        for i in 0..=30 {
            let t = f64::from(i) * 2.0;
            let mut r = Reading::default();
            r.rss[RSS_ANON] = ((10.0 + t / 4.0) * MIB) as u64;
            w.record(10, "app", t, r);
            w.record(11, "worker", t, r);
            r.rss[RSS_ANON] = (50.0 * MIB) as u64;
            w.record(20, "sshd", t, r);
        }
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let mut rows = w.rows();
        for r in &mut rows {
            r.cgroup = Some(match r.pid {
                20 => view("/system.slice/ssh.service", None),
                _ => view(&format!("/system.slice/docker-{id}.scope"), Some(id)),
            });
        }
        let groups = by_container(rows);
        assert_eq!(groups.len(), 2);
        let c = &groups[0];
        assert_eq!(c.command, "docker 0123456789ab");
        assert_eq!(c.members, vec![10, 11]);
        assert_eq!(c.trend.verdict, Verdict::Leaking, "{}", c.trend.reason);
        assert_eq!(c.latest.resident(), 2 * ((10.0 + 60.0 / 4.0) * MIB) as u64);
        assert_eq!(c.series.len(), 31);
        assert!(
            (c.trend.slope - MIB / 2.0).abs() < 1024.0,
            "{}",
            c.trend.slope
        );
        let s = &groups[1];
        assert_eq!(s.command, "/system.slice/ssh.service");
        assert_eq!(s.members, vec![20]);
        assert_eq!(s.trend.verdict, Verdict::Steady);
    }

    #[test]
    fn processes_without_a_cgroup_group_together() {
        let mut w = Watch::new();
        w.record(1, "a", 0.0, Reading::default());
        w.record(2, "b", 0.0, Reading::default());
        let groups = by_container(w.rows());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].command, "(no cgroup)");
        assert_eq!(groups[0].members, vec![1, 2]);
    }
}
