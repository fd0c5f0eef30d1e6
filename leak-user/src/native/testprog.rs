//! C programs built and run by the native layer's tests: each prints one
//! code address and waits, so the test can look at it while it runs (its
//! own child: no root needed).

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// A fresh scratch directory for test `name`.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leak-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds C `source` with `cc FLAGS` into `dir/prog`; `None` (the test
/// skips) where there is no C compiler.
pub(crate) fn build(dir: &Path, source: &str, flags: &[&str]) -> Option<PathBuf> {
    let src = dir.join("prog.c");
    fs::write(&src, source).unwrap();
    let bin = dir.join("prog");
    match Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(bin),
        other => {
            eprintln!("skipped: cannot build a C program with cc ({other:?})");
            None
        }
    }
}

/// A test program running, stopped after printing an address.
pub(crate) struct Running {
    child: Child,
    /// The address it printed.
    pub addr: u64,
}

impl Running {
    /// Starts `bin` and reads the address it prints.
    pub(crate) fn start(bin: &Path) -> Self {
        let mut child = Command::new(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = u64::from_str_radix(line.trim().trim_start_matches("0x"), 16).unwrap();
        Self { child, addr }
    }

    /// Its process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
