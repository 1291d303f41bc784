//! Subcommands of the `portcullis` binary that are more than a call into a crate.

pub mod certs;
pub mod decrypt;
pub mod keys;
