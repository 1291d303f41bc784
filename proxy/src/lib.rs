//! Portcullis: a security and governance proxy for Apache Kafka.
//!
//! The library holds everything the `portcullis` binary runs; the binary is only the CLI.
//! Protocol logic (header peeking, ApiVersions, address rewriting) is plain functions over
//! bytes and decoded messages so it is tested without sockets; `connection` is the thin
//! async shell that moves frames between a client and its upstream broker.

pub mod admin;
pub mod audit;
pub mod authn;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod encryption;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod server;
