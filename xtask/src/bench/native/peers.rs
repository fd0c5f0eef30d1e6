//! What the native arms run besides leak: bpftrace's scripts and where
//! their probes land in the target, heaptrack (attached with `-p` or
//! started with its preload), and the kernel's run-time counts of leak's
//! eBPF programs.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    super::process::{Running, Stream},
    tools::HeaptrackMode,
    Metrics, Series,
};
use crate::bench::Kit;

/// bcc memleak's method in bpftrace: the size at malloc's entry, keyed by
/// thread; at its return the block's address keys (size, time, user
/// stack), as memleak's `allocs` map does; free deletes the address. Or,
/// for `EmptyProbes`, the same two uprobes with nothing in them. bpftrace
/// 0.17 attaches a library's uprobes in every process that maps it (its
/// `-p` is for USDT), so each probe keeps to `pid`.
pub fn bpftrace_script(arm: crate::bench::Arm, libc: &str, pid: &str) -> String {
    let only = format!("/pid == {pid}/");
    if arm == crate::bench::Arm::EmptyProbes {
        return format!("uprobe:{libc}:malloc {only} {{}} uprobe:{libc}:free {only} {{}}");
    }
    format!(
        "uprobe:{libc}:malloc {only} {{ @size[tid] = arg0; }} \
         uretprobe:{libc}:malloc {only} {{ @allocs[retval] = (@size[tid], nsecs, ustack); delete(@size[tid]); }} \
         uprobe:{libc}:free {only} {{ delete(@allocs[arg0]); }}"
    )
}

/// The C library a process maps and where its malloc and free are in it.
pub struct LibcProbes {
    pub path: String,
    pub malloc: u64,
    pub free: u64,
}

/// Finds the C library in /proc/PID/maps and its `malloc` and `free`
/// (from `nm -D`), at the address the library is loaded at.
pub fn libc_probes(pid: u32) -> Result<LibcProbes> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let (base, path) = maps
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = *f.get(5)?;
            let first = u64::from_str_radix(f[2], 16).ok()? == 0;
            let base = u64::from_str_radix(f[0].split('-').next()?, 16).ok()?;
            (first && path.ends_with("/libc.so.6")).then(|| (base, path.to_string()))
        })
        .with_context(|| format!("pid {pid} maps no libc.so.6"))?;
    let out = Command::new("nm")
        .args(["-D", "--defined-only", &path])
        .output()
        .context("cannot run nm")?;
    let nm = String::from_utf8_lossy(&out.stdout);
    let value =
        |name: &str| symbol_value(&nm, name).with_context(|| format!("no {name} in {path}"));
    Ok(LibcProbes {
        malloc: base + value("malloc")?,
        free: base + value("free")?,
        path,
    })
}

/// The value of the default version of `name` in `nm -D` output.
pub fn symbol_value(nm: &str, name: &str) -> Option<u64> {
    nm.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let sym = f.get(2)?.split('@').next()?;
        (sym == name && f[1] == "T").then(|| u64::from_str_radix(f[0], 16).ok())?
    })
}

/// The kernel counting the run time of every eBPF program while this
/// lives (`BPF_ENABLE_STATS`: counting ends when its fd is closed, even if
/// the bench dies; `kernel.bpf_stats_enabled` is left alone).
pub struct BpfStats {
    fd: i32,
}

/// `bpf(2)` command and stats type (linux/bpf.h).
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let attr = [BPF_STATS_RUN_TIME, 0, 0, 0];
        // SAFETY: attr is a live, zero-padded bpf_attr prefix of the size given.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        Ok(BpfStats { fd: fd as i32 })
    }

    /// Reads the calls and run time of `tracer`'s native programs from
    /// the fdinfo of its program fds (`prog_id`, `run_cnt`,
    /// `run_time_ns`), named through bpftool: `bpf_<probe>_calls` and
    /// `bpf_<probe>_ns` (per call).
    pub fn read(&self, tracer: u32, m: &mut Metrics) -> Result<()> {
        let names = prog_names()?;
        for fd in fs::read_dir(format!("/proc/{tracer}/fdinfo"))? {
            let info = fs::read_to_string(fd?.path()).unwrap_or_default();
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok())
            };
            let (Some(id), Some(calls), Some(ns)) =
                (field("prog_id:"), field("run_cnt:"), field("run_time_ns:"))
            else {
                continue;
            };
            let name = names.get(&(id as u64)).map_or("", |n| n.as_str());
            let Some((calls_key, ns_key)) = stat_keys(name) else {
                continue;
            };
            m.insert(calls_key, calls);
            if calls > 0.0 {
                m.insert(ns_key, ns / calls);
            }
        }
        Ok(())
    }
}

/// Every loaded eBPF program's name by id, from `bpftool --json prog show`.
fn prog_names() -> Result<std::collections::BTreeMap<u64, String>> {
    let out = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .context("cannot run bpftool")?;
    let progs: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("bpftool printed no JSON")?;
    Ok(progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, p["name"].as_str()?.to_string())))
        .collect())
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// The metric keys of one of leak's native programs (names are cut to
/// 15 characters by the kernel).
pub fn stat_keys(prog: &str) -> Option<(&'static str, &'static str)> {
    Some(match prog {
        p if p.starts_with("native_malloc") => ("bpf_malloc_calls", "bpf_malloc_ns"),
        p if p.starts_with("native_alloc_r") => ("bpf_return_calls", "bpf_return_ns"),
        p if p.starts_with("native_free") => ("bpf_free_calls", "bpf_free_ns"),
        _ => return None,
    })
}

/// heaptrack's process group, started here and killed whole if a run
/// fails half-way (heaptrack is a shell script with children: the
/// program, gdb, its interpreter), with the FIFO it leaves then.
pub struct Group(Option<u32>);

impl Group {
    /// The group has ended (its leader reaped): nothing left to kill.
    pub fn ended(mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill has no memory preconditions; the group is ours.
            unsafe { libc::kill(-(pgid as i32), libc::SIGKILL) };
            let _ = fs::remove_file(format!("/tmp/heaptrack_fifo{pgid}"));
        }
    }
}

/// One heaptrack run of `bin args`: attached with `-p` to the program
/// waiting to start, or starting it with heaptrack's preload, as
/// [`HeaptrackMode`] says works here.
pub fn heaptrack_run(kit: &Kit, bin: &Path, args: &[String]) -> Result<(Metrics, Series)> {
    let out = kit.scratch.join("heaptrack");
    let _ = fs::remove_file(out.with_extension("zst"));
    match &kit.native.heaptrack {
        HeaptrackMode::Attach => attached_run(bin, args, &out),
        HeaptrackMode::Preload(_) => preload_run(bin, args, &out),
        HeaptrackMode::Missing(why) => bail!("heaptrack skipped: {why}"),
    }
}

/// `heaptrack -o OUT BIN ARGS`: heaptrack starts the program with its
/// library preloaded; the program still waits to be told to go. Closing
/// stdin ends the program, then heaptrack (its file written).
fn preload_run(bin: &Path, args: &[String], out: &Path) -> Result<(Metrics, Series)> {
    let mut cmd = Command::new("heaptrack");
    cmd.arg("-o").arg(out).arg(bin).args(args).process_group(0);
    let mut heaptrack = Running::spawn(&mut cmd)?;
    let group = Group(Some(heaptrack.pid));
    heaptrack.wait_for("ready", Duration::from_secs(60), |s, l| {
        s == Stream::Stdout && l == "ready"
    })?;
    let mut m = go(&mut heaptrack, args)?;
    finish_heaptrack(heaptrack, group, &mut m)?;
    Ok((m, Series::new()))
}

/// `heaptrack -p PID` on the program while it waits to go.
fn attached_run(bin: &Path, args: &[String], out: &Path) -> Result<(Metrics, Series)> {
    let mut target = Running::spawn(Command::new(bin).args(args))?;
    target.wait_for("ready", Duration::from_secs(30), |s, l| {
        s == Stream::Stdout && l == "ready"
    })?;
    let (heaptrack, group) = attach(target.pid, out)?;
    let mut m = go(&mut target, args)?;
    let exit = target.close_and_reap(Duration::from_secs(30))?;
    m.insert("target_cpu_s", exit.cpu_seconds);
    finish_heaptrack(heaptrack, group, &mut m)?;
    Ok((m, Series::new()))
}

/// Sends go and reads the program's result (the work is the last argument).
fn go(to: &mut Running, args: &[String]) -> Result<Metrics> {
    to.send_line("go")?;
    let line = to.wait_for("result", Duration::from_secs(900), |s, l| {
        s == Stream::Stdout && l.starts_with('{')
    })?;
    let n = args.last().and_then(|n| n.parse().ok()).unwrap_or(1);
    super::result_metrics(&line, n)
}

/// Reaps heaptrack once the program has ended (or is told to by its stdin
/// closing): the time it takes to write its file, the allocations it saw.
fn finish_heaptrack(heaptrack: Running, group: Group, m: &mut Metrics) -> Result<()> {
    let t = Instant::now();
    let exit = heaptrack.close_and_reap(Duration::from_secs(300))?;
    group.ended();
    m.insert("stop_s", t.elapsed().as_secs_f64());
    if !exit.success {
        let last = exit.stderr.lines().last().unwrap_or("no message");
        bail!("heaptrack failed: {last}");
    }
    // Its closing stats come from its interpreter, on stderr.
    if let Some(n) = heaptrack_allocations(&format!("{}\n{}", exit.stdout, exit.stderr)) {
        m.insert("samples", n as f64);
    }
    Ok(())
}

/// `allocations: N` from heaptrack's closing stats.
pub fn heaptrack_allocations(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let (key, n) = l.trim().split_once(':')?;
        (key.trim() == "calls to allocation functions" || key.trim() == "allocations")
            .then(|| n.split_whitespace().next()?.parse().ok())?
    })
}

/// Attaches heaptrack to `pid` with `-p`; fails with gdb's complaint if
/// the injection did not happen (heaptrack itself carries on regardless).
pub fn attach(pid: u32, out: &Path) -> Result<(Running, Group)> {
    let mut cmd = Command::new("heaptrack");
    cmd.arg("-o")
        .arg(out)
        .args(["-p", &pid.to_string()])
        .process_group(0);
    let heaptrack = Running::spawn(&mut cmd)?;
    let group = Group(Some(heaptrack.pid));
    let line = heaptrack.wait_for("injection", Duration::from_secs(120), |_, l| {
        l == "injection finished" || injection_failed(l)
    })?;
    if injection_failed(&line) {
        bail!("heaptrack -p could not inject itself: gdb said {line:?}");
    }
    Ok((heaptrack, group))
}

/// A line of gdb's that means heaptrack's library is not in the process.
pub fn injection_failed(line: &str) -> bool {
    line.contains("No symbol \"heaptrack_inject\"")
        || line.starts_with("Couldn't write")
        || line.contains("ptrace: Operation not permitted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_default_symbol_versions() {
        let nm = "0000000000098ef0 T free@@GLIBC_2.2.5\n\
                  0000000000098930 T malloc@@GLIBC_2.2.5\n\
                  00000000000a0000 T malloc_usable_size@@GLIBC_2.2.5\n";
        assert_eq!(symbol_value(nm, "malloc"), Some(0x98930));
        assert_eq!(symbol_value(nm, "free"), Some(0x98ef0));
        assert_eq!(symbol_value(nm, "calloc"), None);
    }

    #[test]
    fn scripts_keep_to_the_target() {
        let s = bpftrace_script(crate::bench::Arm::EmptyProbes, "/l.so", "7");
        assert_eq!(
            s,
            "uprobe:/l.so:malloc /pid == 7/ {} uprobe:/l.so:free /pid == 7/ {}"
        );
        let m = bpftrace_script(crate::bench::Arm::Memleak, "/l.so", "7");
        assert!(m.contains(
            "uretprobe:/l.so:malloc /pid == 7/ { @allocs[retval] = (@size[tid], nsecs, ustack);"
        ));
    }

    #[test]
    fn reads_heaptrack_and_gdb() {
        assert_eq!(
            heaptrack_allocations("heaptrack stats:\n\tallocations:          \t2000003\n"),
            Some(2_000_003)
        );
        assert!(injection_failed(
            "No symbol \"heaptrack_inject\" in current context."
        ));
        assert!(!injection_failed("injection finished"));
        assert_eq!(
            stat_keys("native_alloc_re"),
            Some(("bpf_return_calls", "bpf_return_ns"))
        );
    }
}
