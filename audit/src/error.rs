//! Errors from starting an audit sink.

use std::path::PathBuf;

/// Why an audit sink could not be started.
///
/// Once a sink runs it never fails its caller: write errors are logged and counted instead
/// (see [`JsonLinesSink::write_errors`](crate::JsonLinesSink::write_errors)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The audit log file could not be opened or created.
    #[error("cannot open audit log {}: {source}", path.display())]
    Open {
        /// The file that could not be opened.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A queue capacity of zero was requested; a sink needs room for at least one event.
    #[error("audit queue capacity must be at least 1")]
    ZeroCapacity,
    /// The sink was started outside a tokio runtime, so its writer task has nowhere to run.
    #[error("the audit writer must be started from within a tokio runtime")]
    NoRuntime,
}
