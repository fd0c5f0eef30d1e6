//! The memory of another process, through `/proc/PID/mem`: one open handle
//! per process, reads that never stop it, and the one write leak ever makes
//! (`runtime.MemProfileRate`). Readers take the [`Memory`] trait, so they
//! are tested on a fake.

use std::{fs, io, os::unix::fs::FileExt};

/// Memory that can be read at an address.
pub(crate) trait Memory {
    /// Fills `buf` from `addr`.
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()>;

    /// A little-endian `i64` at `addr`.
    fn read_i64(&self, addr: u64) -> io::Result<i64> {
        let mut b = [0u8; 8];
        self.read_at(addr, &mut b)?;
        Ok(i64::from_le_bytes(b))
    }
}

/// A read of another process's memory that failed: where, and what the OS
/// said (the process exited, or the address is not mapped).
#[derive(Debug, thiserror::Error)]
#[error("cannot read the process's memory at {addr:#x}: {source}")]
pub(crate) struct ReadFailed {
    /// Where.
    pub addr: u64,
    /// What the OS said.
    #[source]
    pub source: io::Error,
}

/// Fills `buf` from `addr` of `mem`, saying where a failed read was.
pub(crate) fn read_exact(mem: &dyn Memory, addr: u64, buf: &mut [u8]) -> Result<(), ReadFailed> {
    mem.read_at(addr, buf)
        .map_err(|source| ReadFailed { addr, source })
}

/// A little-endian `u64` at `addr` of `mem`.
pub(crate) fn read_u64(mem: &dyn Memory, addr: u64) -> Result<u64, ReadFailed> {
    let mut b = [0u8; 8];
    read_exact(mem, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A little-endian `u32` at `addr` of `mem`.
pub(crate) fn read_u32(mem: &dyn Memory, addr: u64) -> Result<u32, ReadFailed> {
    let mut b = [0u8; 4];
    read_exact(mem, addr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Memory that can also be written (one `i64` at a time: all leak ever
/// writes).
pub(crate) trait MemoryMut: Memory {
    /// Writes a little-endian `i64` at `addr`.
    fn write_i64(&self, addr: u64, value: i64) -> io::Result<()>;
}

/// One process's memory, opened once.
#[derive(Debug)]
pub(crate) struct ProcessMemory {
    pid: u32,
    file: fs::File,
    /// `file` was opened for writing too.
    writable: bool,
}

impl ProcessMemory {
    /// Opens the memory of process `pid` for reading.
    pub(crate) fn open(pid: u32) -> io::Result<Self> {
        Ok(Self {
            pid,
            file: fs::File::open(format!("/proc/{pid}/mem"))?,
            writable: false,
        })
    }

    /// Opens the memory of process `pid` for reading and writing, with one
    /// handle: every access goes to the process it opened, even if the pid
    /// is reused meanwhile (the rate guard's restore).
    pub(crate) fn open_writable(pid: u32) -> io::Result<Self> {
        Ok(Self {
            pid,
            file: fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/{pid}/mem"))?,
            writable: true,
        })
    }
}

impl Memory for ProcessMemory {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr)
    }
}

impl MemoryMut for ProcessMemory {
    /// Writes through the handle opened with the process, never a new one:
    /// a process that `exec`ed since has new memory, which the old handle
    /// no longer reaches (the write fails rather than land in another
    /// program). A handle opened read-only cannot write.
    fn write_i64(&self, addr: u64, value: i64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the memory of pid {} was opened read-only", self.pid),
            ));
        }
        self.file.write_all_at(&value.to_le_bytes(), addr)
    }
}

/// Memory made of a few byte ranges, for tests of what reads (and writes)
/// memory.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeMemory(pub std::cell::RefCell<Vec<(u64, Vec<u8>)>>);

#[cfg(test)]
impl FakeMemory {
    /// Memory holding `values` at their addresses.
    pub(crate) fn with_i64s(values: &[(u64, i64)]) -> Self {
        Self(std::cell::RefCell::new(
            values
                .iter()
                .map(|(a, v)| (*a, v.to_le_bytes().to_vec()))
                .collect(),
        ))
    }
}

#[cfg(test)]
impl MemoryMut for FakeMemory {
    fn write_i64(&self, addr: u64, value: i64) -> io::Result<()> {
        for (start, bytes) in self.0.borrow_mut().iter_mut() {
            if addr >= *start && addr + 8 <= *start + bytes.len() as u64 {
                let from = (addr - *start) as usize;
                bytes[from..from + 8].copy_from_slice(&value.to_le_bytes());
                return Ok(());
            }
        }
        Err(io::Error::other(format!("{addr:#x} is not mapped")))
    }
}

#[cfg(test)]
impl Memory for FakeMemory {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        for (start, bytes) in self.0.borrow().iter() {
            let end = start + bytes.len() as u64;
            if addr >= *start && addr + buf.len() as u64 <= end {
                let from = (addr - start) as usize;
                buf.copy_from_slice(&bytes[from..from + buf.len()]);
                return Ok(());
            }
        }
        Err(io::Error::other(format!("{addr:#x} is not mapped")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_own_memory() {
        let cell = Box::new(0x1234i64);
        let addr = &*cell as *const i64 as u64;
        let mem = ProcessMemory::open(std::process::id()).unwrap();
        assert!(mem.write_i64(addr, 77).is_err(), "read-only");
        let mem = ProcessMemory::open_writable(std::process::id()).unwrap();
        assert_eq!(mem.read_i64(addr).unwrap(), 0x1234);
        mem.write_i64(addr, 77).unwrap();
        assert_eq!(unsafe { std::ptr::read_volatile(&*cell) }, 77);
    }

    #[test]
    fn fake_memory_reads_inside_its_ranges_only() {
        let fake = FakeMemory::with_i64s(&[(0x1000, 42)]);
        assert_eq!(fake.read_i64(0x1000).unwrap(), 42);
        assert!(fake.read_i64(0x1004).is_err());
        fake.write_i64(0x1000, 7).unwrap();
        assert_eq!(fake.read_i64(0x1000).unwrap(), 7);
    }
}
