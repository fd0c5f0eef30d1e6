//! What can go wrong while reading a target program, each a line that
//! tells the user what to do next.

use std::path::PathBuf;

/// Everything that can go wrong while reading a target program.
///
/// Each message is one line that tells the user what to do next.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
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
}
