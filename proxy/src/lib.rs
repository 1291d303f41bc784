//! Portcullis: a security and governance proxy for Apache Kafka.
//!
//! The library holds everything the `portcullis` binary runs; the binary is only the CLI.
//! Protocol logic (header peeking, ApiVersions, address rewriting) is plain functions over
//! bytes and decoded messages so it is tested without sockets; `connection` is the thin
//! async shell that moves frames between a client and its upstream broker.

pub mod address_rewrite;
pub mod admin_http;
pub mod admin_token;
pub mod api_table;
pub mod api_versions;
pub mod auth_config;
pub mod auth_guard;
pub mod authn;
pub mod authz;
pub mod authz_config;
pub mod authz_request;
pub mod authz_response;
pub mod broker_map;
pub mod certs;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod frame;
pub mod header;
pub mod kafka_anchor;
pub mod listener;
pub mod metrics;
pub mod request_check;
pub mod response_frame;
pub mod sasl_exchange;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod upstream_sasl;
