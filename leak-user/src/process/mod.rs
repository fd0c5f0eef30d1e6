//! Processes as `/proc` shows them, read in one place: which exist, what
//! they run, their state and memory counters ([`maps`]: their mappings and
//! where a binary is loaded; [`memory`]: reading and writing their memory
//! through one handle per process).

pub(crate) mod cgroup;
pub(crate) mod exe;
pub(crate) mod maps;
pub(crate) mod memory;

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use leak_common::{RSS_ANON, RSS_FILE, RSS_MEMBERS, RSS_SHMEM, RSS_SWAP};

/// Identity of a file on disk: the same binary seen through different paths
/// (symlinks, `/proc/PID/exe`, a container's root) has the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// The id of the file at `path` (symlinks followed).
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        let md = fs::metadata(path)?;
        Ok(Self {
            dev: md.dev(),
            ino: md.ino(),
        })
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|(s, _)| !is_dead(s))
}

/// Now, in clock ticks since boot: the unit of a process's start time in
/// `/proc/PID/stat`.
pub(crate) fn boot_ticks() -> Option<u64> {
    let uptime = fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some((secs * hz as f64) as u64)
}

/// Sends signal `sig` to process `pid`.
pub(crate) fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory preconditions.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Why there is no process `pid` to read, in a few words: none, or one
/// that has exited and waits for its parent to reap it (a zombie keeps
/// its pid but neither memory nor executable).
pub(crate) fn not_there(pid: &u32) -> String {
    if state(*pid).is_some_and(|(s, _)| is_dead(s)) {
        format!(
            "pid {pid} has exited (a zombie its parent has not reaped yet): nothing left to read"
        )
    } else {
        format!("no process with pid {pid}")
    }
}

/// What reading another process's executable and memory takes, for the
/// line that says it was denied: `/proc/PID/mem` is its user's, mode 0600,
/// and opening it also passes the ptrace check.
pub(crate) const READ_REMEDY: &str =
    "run leak as root, as the process's user, or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH";

/// Lets a stopped process go on (SIGCONT).
pub(crate) fn resume(pid: u32) {
    signal(pid, libc::SIGCONT);
}

/// The path of process `pid`'s executable as the process sees it (in its
/// own mount namespace: it may name nothing on the host; open it through
/// [`exe::ExePath`]); an error that says "no process" when
/// there is none.
pub(crate) fn exe(pid: u32) -> io::Result<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => io::Error::new(e.kind(), not_there(&pid)),
        io::ErrorKind::PermissionDenied => io::Error::new(
            e.kind(),
            format!("cannot read the executable of pid {pid}: permission denied ({READ_REMEDY})"),
        ),
        _ => io::Error::new(
            e.kind(),
            format!("cannot read the executable of pid {pid}: {e}"),
        ),
    })
}

/// Whether process `pid` runs the binary `id`; `None` when there is no such
/// process (or it is gone).
pub(crate) fn runs_binary(pid: u32, id: FileId) -> Option<bool> {
    if !alive(pid) {
        return None;
    }
    match FileId::of(Path::new(&format!("/proc/{pid}/exe"))) {
        Ok(exe) => Some(exe == id),
        // Kernel threads have no exe; a process may exit under us.
        Err(_) => Some(false),
    }
}

/// Every live process whose executable is `id`, in pid order.
pub(crate) fn processes_running(id: FileId) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| runs_binary(*pid, id) == Some(true))
        .collect()
}

/// The command name of a process (`/proc/PID/comm`).
pub(crate) fn comm(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end().to_string())
}

/// One process's memory as `/proc/PID/status` shows it, in bytes, indexed
/// like `kmem:rss_stat`'s counters (`RSS_FILE`, `RSS_ANON`, `RSS_SWAP`,
/// `RSS_SHMEM`).
pub(crate) type RssCounters = [u64; RSS_MEMBERS];

/// Parses the RSS lines of `/proc/PID/status`; `None` for a process without
/// memory of its own (a kernel thread, a zombie).
pub(crate) fn parse_status_rss(status: &str) -> Option<RssCounters> {
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
        out[slot] = kib.saturating_mul(1024);
        found |= slot != RSS_SWAP;
    }
    found.then_some(out)
}

/// The RSS counters of process `pid`, or `None` if it is gone or has no
/// memory of its own.
pub(crate) fn rss(pid: u32) -> Option<RssCounters> {
    parse_status_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Process `pid`'s pid in its own pid namespace (a container's), when that
/// is not the one leak sees it in; `None` for a process of leak's own
/// namespace, or one that is gone.
pub(crate) fn ns_pid(pid: u32) -> Option<u32> {
    parse_ns_pid(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The innermost pid of the `NSpid:` line of `/proc/PID/status` (the pid in
/// each nested pid namespace, outermost first), when there is more than one.
pub(crate) fn parse_ns_pid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Vec<&str> = line.split_whitespace().collect();
    match pids.as_slice() {
        [_, .., inner] => inner.parse().ok(),
        _ => None,
    }
}

/// Field `n` (1-based, as `man proc` numbers them) of a `/proc/PID/stat`
/// line. The command name, field 2, may hold spaces and parentheses, so
/// counting starts after its last ')'.
pub(crate) fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state).
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// Start of the heap (`start_brk`, field 47 of `/proc/PID/stat`): the
/// program break before the first `brk` call grew it.
pub(crate) fn start_brk(pid: u32) -> Option<u64> {
    stat_field(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, 47)
}

/// State letter (field 3) and start time (field 22, clock ticks after boot)
/// of process `pid`: with the pid, the start time names one process even
/// when pids are reused.
pub(crate) fn state(pid: u32) -> Option<(char, u64)> {
    parse_state(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// State letter and start time from a `/proc/PID/stat` line.
pub(crate) fn parse_state(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let state = rest.trim_start().chars().next()?;
    Some((state, stat_field(stat, 22)?))
}

/// One process, named so that a reused pid is never taken for it: its pid
/// and its start time (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    /// The process id.
    pub pid: u32,
    /// Its start time, from `/proc/PID/stat`.
    pub start_time: u64,
}

impl Identity {
    /// The process running as `pid` now; `None` if there is none, or only
    /// its zombie.
    pub(crate) fn of_live(pid: u32) -> Option<Self> {
        match state(pid)? {
            (s, _) if is_dead(s) => None,
            (_, start_time) => Some(Self { pid, start_time }),
        }
    }

    /// Whether this very process still runs (not another one given its pid).
    pub(crate) fn is_running(&self) -> bool {
        Self::of_live(self.pid) == Some(*self)
    }
}

/// Whether a state letter means the process has exited (zombie, dead).
pub(crate) fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Every process id in `/proc`, ascending.
pub(crate) fn pids() -> Vec<u32> {
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

    #[test]
    fn boot_ticks_count_as_start_times_do() {
        let (_, started) = state(std::process::id()).unwrap();
        let now = boot_ticks().unwrap();
        assert!(started <= now, "started at {started}, now {now}");
        assert!(
            now - started < 100 * 3600,
            "a test runs for less than an hour"
        );
    }
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
    fn ns_pid_is_the_innermost_of_several() {
        assert_eq!(parse_ns_pid(STATUS), None, "no NSpid line");
        let host = "Name:\tseed\nNSpid:\t4242\nThreads:\t8\n";
        assert_eq!(parse_ns_pid(host), None, "leak's own namespace");
        let container = "Name:\tseed\nNSpid:\t4321\t1\n";
        assert_eq!(parse_ns_pid(container), Some(1));
        let nested = "NSpid:\t4321\t57\t7\nNSpgid:\t4321\t57\t7\n";
        assert_eq!(parse_ns_pid(nested), Some(7));
        assert_eq!(parse_ns_pid("NSpid:\t4321\tx\n"), None, "garbled");
        assert_eq!(parse_ns_pid("NSpid:\n"), None);
    }

    #[test]
    fn this_process_is_in_the_namespace_it_sees() {
        assert_eq!(ns_pid(std::process::id()), None);
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

    #[test]
    fn this_process_is_alive_and_runs_its_exe() {
        let me = std::process::id();
        assert!(alive(me));
        let id = FileId::of(Path::new("/proc/self/exe")).unwrap();
        assert_eq!(runs_binary(me, id), Some(true));
        assert!(processes_running(id).contains(&me));
        assert_eq!(runs_binary(u32::MAX - 1, id), None);
    }
}

/// The host's available memory (`MemAvailable` of `/proc/meminfo`), bytes.
pub(crate) fn mem_available() -> Option<u64> {
    parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemAvailable:` of a `/proc/meminfo` text, in bytes.
pub(crate) fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod meminfo_tests {
    #[test]
    fn available_memory_from_meminfo() {
        let text =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(super::parse_mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(super::parse_mem_available("MemTotal: 1 kB\n"), None);
        assert!(super::mem_available().is_some_and(|b| b > 0));
        // Found by fuzzing (proc_text): a huge count overflowed.
        let huge = format!("MemAvailable: {} kB\n", u64::MAX);
        assert_eq!(super::parse_mem_available(&huge), Some(u64::MAX));
        let status = format!("RssAnon: {} kB\nRssFile: 1 kB\n", u64::MAX / 2);
        let anon = leak_common::RSS_ANON;
        assert_eq!(super::parse_status_rss(&status).unwrap()[anon], u64::MAX);
    }
}
