//! Go daemons nobody on the team wrote, as Debian ships them (built with
//! go1.19.8, stripped, cgo on): fetched once with `apt-get download` and
//! unpacked with `dpkg -x` under target/it-deb, never installed; started on
//! 127.0.0.1 with a private data directory, and driven over plain HTTP.

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::root;

/// The file `path` (e.g. "usr/bin/etcd") of Debian package `pkg`, unpacked
/// into target/it-deb/PKG on first use. A package that cannot be
/// downloaded fails the test saying so: CI has Debian's mirror.
pub fn debian_binary(pkg: &str, path: &str) -> PathBuf {
    let dir = root().join("target/it-deb");
    let unpacked = dir.join(pkg);
    let bin = unpacked.join(path);
    if bin.exists() {
        return bin;
    }
    fs::create_dir_all(&dir).unwrap();
    let deb = match find_deb(&dir, pkg) {
        Some(deb) => deb,
        None => {
            let mut out = apt_get(&dir, &["download", pkg]);
            if !out.status.success() {
                // A fresh machine may have no package lists yet.
                let update = apt_get(&dir, &["update"]);
                assert!(
                    update.status.success(),
                    "apt-get update (needed to download {pkg}) failed: {}",
                    String::from_utf8_lossy(&update.stderr)
                );
                out = apt_get(&dir, &["download", pkg]);
            }
            assert!(
                out.status.success(),
                "cannot download Debian package {pkg} (these tests need Debian's mirror): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            find_deb(&dir, pkg).unwrap_or_else(|| panic!("apt-get download {pkg}: no .deb"))
        }
    };
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .expect("run dpkg");
    assert!(status.success(), "dpkg -x {} failed", deb.display());
    assert!(bin.exists(), "{}: no {path} in the package", deb.display());
    bin
}

fn apt_get(dir: &Path, args: &[&str]) -> Output {
    Command::new("apt-get")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run apt-get (these tests need a Debian machine)")
}

/// The .deb of `pkg` already in `dir` (`PKG_VERSION_ARCH.deb`).
fn find_deb(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    fs::read_dir(dir)
        .ok()?
        .map_while(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
}

/// A TCP port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running daemon, its output in `DIR/daemon.log`; killed when dropped.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `bin` with `args` in `dir`, with HOME and the XDG
    /// directories there too (nothing written outside it).
    pub fn start(bin: &Path, args: &[String], dir: &Path) -> Self {
        let log = dir.join("daemon.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Self { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The last lines of its output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits (at most `secs`) until `GET addr path` answers 200.
    pub fn wait_ready(&mut self, addr: &str, path: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "daemon exited ({status}) before answering:\n{}",
                    self.log_tail()
                );
            }
            if matches!(request(addr, "GET", path, None), Ok((200, _))) {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "daemon did not answer {addr}{path} in {secs} s:\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (a new connection, closed by the server after the
/// answer): its status and body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(b) = body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    req += "\r\n";
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    s.write_all(&bytes)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let bad = || std::io::Error::other("not an HTTP response");
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&resp[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, resp[head_end + 4..].to_vec()))
}

/// `request`, which must answer 200; panics otherwise.
pub fn request_ok(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    match request(addr, method, path, body) {
        Ok((200, body)) => body,
        Ok((status, body)) => panic!(
            "{method} {addr}{path}: {status} {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => panic!("{method} {addr}{path}: {e}"),
    }
}

/// Standard base64 (with padding), as etcd's JSON gateway takes keys and
/// values.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }
}
