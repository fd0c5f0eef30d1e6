//! What `/proc` says about a process's memory: the RSS counters the kernel
//! side may not have reported yet, and which processes exist.

use std::fs;

use leak_common::{RSS_ANON, RSS_FILE, RSS_MEMBERS, RSS_SHMEM, RSS_SWAP};

/// One process's memory as `/proc/PID/status` shows it, in bytes, indexed
/// like `kmem:rss_stat`'s counters (`RSS_FILE`, `RSS_ANON`, `RSS_SWAP`,
/// `RSS_SHMEM`).
pub type RssCounters = [u64; RSS_MEMBERS];

/// Parses the RSS lines of `/proc/PID/status`; `None` for a process without
/// memory of its own (a kernel thread, a zombie).
pub fn parse_status_rss(status: &str) -> Option<RssCounters> {
    let mut out = [0u64; RSS_MEMBERS];
    let mut found = false;
    for line in status.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "RssAnon" => RSS_ANON,
            "RssFile" => RSS_FILE,
            "RssShmem" => RSS_SHMEM,
            "VmSwap" => RSS_SWAP,
            _ => continue,
        };
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        out[slot] = kib * 1024;
        found |= slot != RSS_SWAP;
    }
    found.then_some(out)
}

/// The RSS counters of process `pid`, or `None` if it is gone or has no
/// memory of its own.
pub fn rss(pid: u32) -> Option<RssCounters> {
    parse_status_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Field `n` (1-based, as `man proc` numbers them) of a `/proc/PID/stat`
/// line. The command name, field 2, may hold spaces and parentheses, so
/// counting starts after its last ')'.
pub fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state).
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// Start of the heap (`start_brk`, field 47 of `/proc/PID/stat`): the
/// program break before the first `brk` call grew it.
pub fn start_brk(pid: u32) -> Option<u64> {
    stat_field(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, 47)
}

/// State letter (field 3) and start time (field 22, clock ticks after boot)
/// of process `pid`: with the pid, the start time names one process even
/// when pids are reused.
pub fn state(pid: u32) -> Option<(char, u64)> {
    parse_state(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// State letter and start time from a `/proc/PID/stat` line.
pub fn parse_state(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let state = rest.trim_start().chars().next()?;
    Some((state, stat_field(stat, 22)?))
}

/// Whether a state letter means the process has exited (zombie, dead).
pub fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Every process id in `/proc`, ascending.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Name:\tseed
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
VmRSS:\t   20480 kB
RssAnon:\t   16384 kB
RssFile:\t    4000 kB
RssShmem:\t      96 kB
VmSwap:\t      12 kB
Threads:\t8
";

    #[test]
    fn status_rss_by_member() {
        let rss = parse_status_rss(STATUS).unwrap();
        assert_eq!(rss[RSS_ANON], 16384 * 1024);
        assert_eq!(rss[RSS_FILE], 4000 * 1024);
        assert_eq!(rss[RSS_SHMEM], 96 * 1024);
        assert_eq!(rss[RSS_SWAP], 12 * 1024);
    }

    #[test]
    fn kernel_threads_have_no_rss() {
        assert_eq!(
            parse_status_rss("Name:\tkworker/0:1\nState:\tI (idle)\n"),
            None
        );
    }

    #[test]
    fn stat_fields_after_an_awkward_command_name() {
        let stat = "77 (a) b (c)) S 1 77 77 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 12345 1000 50";
        assert_eq!(stat_field(stat, 4), Some(1));
        assert_eq!(stat_field(stat, 22), Some(12345));
        assert_eq!(stat_field(stat, 60), None);
        assert_eq!(parse_state(stat), Some(('S', 12345)));
        assert!(is_dead('Z') && !is_dead('S'));
    }

    #[test]
    fn this_process_is_listed_and_has_memory() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        let rss = rss(me).unwrap();
        assert!(rss[RSS_ANON] + rss[RSS_FILE] > 0);
        assert!(state(me).is_some_and(|(s, _)| !is_dead(s)));
        assert!(start_brk(me).is_some());
    }
}
