//! What can go wrong while reading a Go program (its executable, or a
//! running process's runtime), each a line that tells the user what to do
//! next.

use std::path::PathBuf;

/// Everything that can go wrong while reading a Go program.
///
/// Each message is one line that tells the user what to do next.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GoError {
    /// The path does not exist.
    #[error("{0}: no such file; pass the path of the program's executable (for a running process: /proc/PID/exe)")]
    NotFound(PathBuf),
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF executable (a script, a PE/Mach-O file, …).
    #[error("{0} is not an ELF executable; leak traces Linux programs (for a wrapper script, pass the program it starts)")]
    NotElf(PathBuf),
    /// An ELF file without a Go symbol table.
    #[error("{0} is not a Go program: it has no .gopclntab")]
    NotGo(PathBuf),
    /// Built for a CPU leak cannot trace yet.
    #[error("{path} is built for {arch}: leak reads only x86_64 programs (its probes take Go's arguments from amd64 registers and it finds runtime variables by decoding x86-64 code)")]
    UnsupportedArch {
        /// The file.
        path: PathBuf,
        /// The architecture it was built for.
        arch: String,
    },
    /// Go's tables are present but do not decode.
    #[error("{path}: cannot decode Go's symbol table (.gopclntab): {reason}; is the file truncated or packed (upx)?")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What did not add up.
        reason: String,
    },
    /// The Go version has no row in the runtime table.
    #[error("the program was built with {version}: {missing}; leak supports {supported}")]
    UnsupportedGoVersion {
        /// The detected version, e.g. `go1.20.3`.
        version: String,
        /// What leak lacks for it, e.g. no row in the runtime table.
        missing: String,
        /// The supported range, e.g. `go1.19, and go1.21 or later`.
        supported: &'static str,
    },
    /// A runtime function the probes need is not in the binary.
    #[error("{path} has no function {name}{suggestions}; leak cannot probe this program")]
    MissingFunction {
        /// The file.
        path: PathBuf,
        /// The function that was looked for.
        name: String,
        /// `" (did you mean …?)"` or empty.
        suggestions: String,
    },
    /// `runtime.MemProfileRate` could not be located.
    #[error("{path}: cannot locate runtime.MemProfileRate ({reason}), so leak can neither read nor set the sampling rate")]
    MemProfileRateNotFound {
        /// The file.
        path: PathBuf,
        /// Why the search failed.
        reason: String,
    },
    /// Go's heap profile records (`runtime.mbuckets`) could not be located.
    #[error("{path}: cannot locate Go's heap profile records ({reason})")]
    HeapRecordsNotFound {
        /// The file.
        path: PathBuf,
        /// Why the search failed.
        reason: String,
    },
    /// Go's list of goroutines (`runtime.allgs`) could not be located.
    #[error("{path}: cannot locate Go's list of goroutines ({reason})")]
    GoroutinesNotFound {
        /// The file.
        path: PathBuf,
        /// Why the search failed.
        reason: String,
    },
    /// The GC's figures (`runtime.gcController`, `memstats.numgc`) could
    /// not be located.
    #[error("{path}: cannot locate Go's GC statistics ({reason})")]
    GcStatsNotFound {
        /// The file.
        path: PathBuf,
        /// Why the search failed.
        reason: String,
    },
    /// A function the probes need lies outside every loadable segment.
    #[error("{function} at {addr:#x} is outside every loadable segment")]
    OutsideSegments {
        /// The function.
        function: String,
        /// Its probe address.
        addr: u64,
    },
    /// No such process.
    #[error("{}", crate::process::not_there(.0))]
    NoProcess(u32),
    /// `/proc/PID/exe` could not be read (the message names the pid).
    #[error("{source}")]
    Exe {
        /// The process.
        pid: u32,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The process runs something that is not Go.
    #[error("pid {pid} ({exe}) is not a Go program: Go heap profiles exist only in Go programs")]
    NotGoProcess {
        /// The process.
        pid: u32,
        /// Its executable.
        exe: String,
    },
    /// The program is not in the process's memory map.
    #[error("pid {pid}: cannot find {} in its memory map", path.display())]
    NotMapped {
        /// The process.
        pid: u32,
        /// The program.
        path: PathBuf,
    },
    /// Reading another process's memory is not allowed.
    #[error("cannot read the memory of pid {0}: permission denied ({remedy})", remedy = crate::process::READ_REMEDY)]
    MemoryDenied(u32),
    /// The process's memory could not be opened.
    #[error("cannot open the memory of pid {pid}: {source}")]
    MemoryOpen {
        /// The process.
        pid: u32,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The process exited while it was read.
    #[error("pid {pid} exited while leak read its {what}")]
    ExitedMidRead {
        /// The process.
        pid: u32,
        /// What was read ("heap profile").
        what: &'static str,
    },
    /// A read of a live process failed.
    #[error("pid {pid}: cannot read its {what}: {source}")]
    ReadFailed {
        /// The process.
        pid: u32,
        /// What was read.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<GoError>,
    },
    /// What was located in the binary is not what it should be in memory.
    #[error("pid {pid}: what leak located in {} is not its {what}: {reason}", path.display())]
    NotWhatWasLocated {
        /// The process.
        pid: u32,
        /// The program.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// What did not fit.
        reason: String,
    },
    /// Go's heap records could not be read (see [`super::records::walk::ReadError`]).
    #[error("pid {pid}: {source}")]
    Records {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: super::records::walk::ReadError,
    },
    /// Go's goroutines could not be read (see [`super::goroutines::walk::ReadError`]).
    #[error("pid {pid}: {source}")]
    Goroutines {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: super::goroutines::walk::ReadError,
    },
    /// A read of memory failed.
    #[error(transparent)]
    Memory(#[from] crate::process::memory::ReadFailed),
    /// Nothing to read: why, in a line.
    #[error("pid {pid}: no heap profile to read: {why}")]
    NoHeapProfile {
        /// The process.
        pid: u32,
        /// Why.
        why: String,
    },
}
