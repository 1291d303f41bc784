//! Why a policy directory, file or command was rejected.

use std::path::PathBuf;

/// Everything that can go wrong loading, reloading or querying policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A policy line is invalid: the file, its 1-based line number, and what is wrong.
    #[error("{}:{line}: {message}", file.display())]
    Invalid {
        /// The policy file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        message: String,
    },
    /// The casbin model (`model.conf`) is missing, does not parse, or does not fit the
    /// request and policy shapes Portcullis uses.
    #[error("{}: {message}", file.display())]
    Model {
        /// The model file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The directory holds no `*.csv` policy file.
    #[error("{}: no policy files (*.csv) found", dir.display())]
    NoPolicies {
        /// The policy directory.
        dir: PathBuf,
    },
    /// A command-line argument is invalid (`--resource`, `--operation`).
    #[error("{0}")]
    Usage(String),
}
