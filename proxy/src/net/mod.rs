//! Sockets: client listeners, TLS on both sides, and upstream connections to brokers
//! (with the proxy's own SASL credentials).

pub mod listener;
pub mod source_gate;
pub mod source_key;
pub mod source_report;
pub mod tls;
pub mod upstream;
pub mod upstream_sasl;
