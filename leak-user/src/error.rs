//! The errors of the pipelines, the session and the outputs, each one line
//! for the user. The layers below have their own ([`GoError`],
//! [`ProbeError`], the BTF layout's); they are carried here as they are.
//! Only `cmd/` and `main.rs` add context with anyhow.

use std::io;

use crate::{go::GoError, probes::ProbeError};

/// What stopped a pipeline, an output or the session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Reading a Go program or process failed.
    #[error(transparent)]
    Go(#[from] GoError),
    /// Loading or attaching the probes failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The request cannot be served as asked: a pid that is not there, an
    /// output the mode cannot write, sampling off under `--read-only`.
    #[error("{0}")]
    Refused(String),
    /// An operation on a file, a process or the terminal failed.
    #[error("{what}: {source}")]
    Io {
        /// What leak was doing.
        what: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A kernel map could not be read or written.
    #[error("{what}: {source}")]
    Map {
        /// What leak was doing.
        what: String,
        /// What aya said.
        #[source]
        source: aya::maps::MapError,
    },
}

/// A result of the pipelines, the session and the outputs.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails with [`Error::Refused`], formatted.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Refused(format!($($arg)*)))
    };
}
pub(crate) use refuse;

/// Names what failed, for errors of the OS and of kernel maps.
pub(crate) trait Context<T> {
    /// The error with `what` leak was doing.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, aya::maps::MapError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Map {
            what: what(),
            source,
        })
    }
}
