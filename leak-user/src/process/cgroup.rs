//! A process's memory control group, the container and Kubernetes pod it
//! belongs to, and the memory limit it races: from `/proc/PID/cgroup` and
//! the cgroup files, with no container runtime client.
//!
//! `/proc/PID/cgroup` has a line per hierarchy, `ID:CONTROLLERS:PATH`. The
//! memory controller's path is the one that counts: the `memory` line of a
//! v1 hierarchy where the host mounts one (this kind of machine does), else
//! the v2 line `0::PATH`. Container runtimes name their cgroups after the
//! container: docker `docker-<id>.scope` (systemd driver) or `/docker/<id>`
//! (cgroupfs), containerd `cri-containerd-<id>.scope` or `…:cri-containerd:<id>`,
//! cri-o `crio-<id>.scope`, podman `libpod-<id>.scope` (its `…-conmon-…`
//! monitor is not the container); Kubernetes puts pods under
//! `kubepods…pod<uid>`, writing the uid's dashes as `_` in systemd slice
//! names.
//!
//! The effective limit is the smallest of the cgroup's and its ancestors'
//! (`memory.max`, v1 `memory.limit_in_bytes`); what races it is the memory
//! the kernel cannot reclaim (anon and shmem: page cache is reclaimed before
//! anything is OOM-killed), never raw usage.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Where the v1 memory hierarchy and the v2 hierarchy are mounted.
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";
const V2_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// A v1 limit at or above this is "no limit" (the kernel's
/// `PAGE_COUNTER_MAX` pages, rounded).
const V1_UNLIMITED: u64 = 1 << 62;

/// A process's memory cgroup, as `/proc/PID/cgroup` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cgroup {
    /// The path, from the hierarchy's root (`/` for the root).
    pub path: String,
    /// Whether the path is in the v1 memory hierarchy (else v2).
    pub v1: bool,
    /// The container, when a runtime named the cgroup after one.
    pub container: Option<Container>,
    /// The Kubernetes pod's uid, with its dashes.
    pub pod_uid: Option<String>,
}

/// A container, as its runtime names its cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Container {
    /// `docker`, `containerd`, `cri-o`, `podman`, or `kubernetes` (a pod's
    /// container under the cgroupfs driver, runtime unnamed).
    pub runtime: &'static str,
    /// The container id (64 hex digits for every runtime here).
    pub id: String,
}

/// The memory cgroup of a `/proc/PID/cgroup` text: its `memory` v1 line,
/// else its v2 line.
pub(crate) fn parse(text: &str) -> Option<Cgroup> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(cgroup(path, true));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(cgroup(path, false));
        }
    }
    v2
}

fn cgroup(path: &str, v1: bool) -> Cgroup {
    Cgroup {
        path: path.to_string(),
        v1,
        container: container_of(path),
        pod_uid: pod_uid_of(path),
    }
}

/// The container a cgroup path names, from its last components.
fn container_of(path: &str) -> Option<Container> {
    let mut components = path.rsplit('/').filter(|c| !c.is_empty());
    let last = components.next()?;
    let scoped = |prefix: &str| {
        last.strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(".scope"))
            .filter(|id| is_container_id(id))
    };
    let named = [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    for (prefix, runtime) in named {
        if let Some(id) = scoped(prefix) {
            return Some(Container {
                runtime,
                id: id.to_string(),
            });
        }
    }
    if let Some((_, id)) = last.rsplit_once(":cri-containerd:") {
        return is_container_id(id).then(|| Container {
            runtime: "containerd",
            id: id.to_string(),
        });
    }
    let parent = components.next().unwrap_or_default();
    let runtime = match parent {
        "docker" => "docker",
        p if p.starts_with("pod") && path.contains("kubepods") => "kubernetes",
        _ => return None,
    };
    is_container_id(last).then(|| Container {
        runtime,
        id: last.to_string(),
    })
}

/// 64 hex digits: what every runtime here uses for a container id (which
/// also leaves podman's `libpod-conmon-<id>` monitor out).
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The Kubernetes pod uid in a `kubepods` path: `pod<uid>` as a cgroupfs
/// directory, or `…-pod<uid with _>.slice` under systemd.
fn pod_uid_of(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    path.split('/').find_map(|c| {
        // `…pod<uid>.slice:cri-containerd:<id>` (systemd driver, v1).
        let c = c.split(':').next().unwrap_or(c);
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let uid = c
            .rsplit_once("-pod")
            .map(|(_, u)| u)
            .or(c.strip_prefix("pod"))?;
        let uid = uid.replace('_', "-");
        (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
    })
}

/// What the kernel says of a cgroup's memory now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Memory {
    /// The smallest limit of the cgroup and its ancestors; `None`: none.
    pub limit: Option<u64>,
    /// Memory charged to the cgroup (page cache included).
    pub usage: u64,
    /// What reclaim cannot free: anon + shmem.
    pub unreclaimable: u64,
    /// Processes the kernel OOM-killed in it (v2 `memory.events`; v1
    /// `memory.oom_control`'s `oom_kill`).
    pub oom_kills: u64,
}

impl Cgroup {
    /// The cgroup's directory in its hierarchy.
    fn dir(&self) -> Option<PathBuf> {
        let rel = self.path.trim_start_matches('/');
        if self.v1 {
            return Some(Path::new(V1_MEMORY).join(rel));
        }
        V2_ROOTS
            .iter()
            .map(|root| Path::new(root).join(rel))
            .find(|d| d.join("memory.current").is_file() || d.join("cgroup.procs").is_file())
    }

    /// Its memory now, read from the cgroup files; `None` if they cannot
    /// be read (a hierarchy not mounted here).
    pub(crate) fn memory(&self) -> Option<Memory> {
        let dir = self.dir()?;
        let (limit_file, usage_file) = if self.v1 {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        } else {
            ("memory.max", "memory.current")
        };
        let usage = read_u64(&dir.join(usage_file))?;
        let stat = fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        let (anon, shmem) = if self.v1 {
            (
                stat_field(&stat, "total_rss"),
                stat_field(&stat, "total_shmem"),
            )
        } else {
            (stat_field(&stat, "anon"), stat_field(&stat, "shmem"))
        };
        let events = if self.v1 {
            fs::read_to_string(dir.join("memory.oom_control"))
        } else {
            fs::read_to_string(dir.join("memory.events"))
        };
        Some(Memory {
            limit: effective_limit(&dir, limit_file, self.v1),
            usage,
            unreclaimable: anon + shmem,
            oom_kills: stat_field(&events.unwrap_or_default(), "oom_kill"),
        })
    }
}

/// The smallest limit of `dir` and its ancestors in the hierarchy.
fn effective_limit(dir: &Path, file: &str, v1: bool) -> Option<u64> {
    dir.ancestors()
        .take_while(|d| d.join(file).is_file() || d.join("cgroup.procs").is_file())
        .filter_map(|d| read_limit(&d.join(file), v1))
        .min()
}

/// A limit file's value: `max` (v2) or a huge number (v1) is no limit.
fn read_limit(file: &Path, v1: bool) -> Option<u64> {
    let text = fs::read_to_string(file).ok()?;
    parse_limit(&text, v1)
}

fn parse_limit(text: &str, v1: bool) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (!v1 || v < V1_UNLIMITED).then_some(v)
}

fn read_u64(file: &Path) -> Option<u64> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file; 0 if absent.
fn stat_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// The memory cgroup of process `pid`.
pub(crate) fn of(pid: u32) -> Option<Cgroup> {
    parse(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

#[cfg(test)]
mod tests;
