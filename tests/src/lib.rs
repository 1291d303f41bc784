//! End-to-end harness for Portcullis: a real Kafka-compatible broker (tansu, pinned), the
//! real `portcullis` binary, and real Kafka clients (librdkafka through the `rdkafka` crate,
//! Python's confluent-kafka and kafka-python).
//!
//! Why it exists: the proxy's promise is that *nothing about a client's behaviour changes*
//! when it talks through Portcullis. Only real clients against a real broker can show that;
//! a mock broker would agree with whatever the proxy does. Every scenario in
//! [`scenarios`] therefore runs twice in the test suite: once straight against the broker
//! (`tests/direct.rs`) and once through the proxy (`tests/proxied.rs`). When a proxied test
//! fails, the direct twin says whether the broker or the proxy is to blame.
//!
//! Everything here has bounded waits: a hang becomes a failed test with the broker's and the
//! proxy's logs printed, never a stuck CI run.
//!
//! The modules, each one concern:
//! - [`ports`]: free loopback ports and port ranges for parallel tests.
//! - [`process`]: child processes that are killed on drop and print their logs on failure.
//! - [`broker`]: starts tansu on an ephemeral port.
//! - [`proxy`]: starts `portcullis serve` (plaintext or TLS) in front of a broker.
//! - [`endpoint`]: what a client connects to and which broker addresses it may be shown.
//! - [`kafka`]: rdkafka helpers (clients, topics, produce, consume).
//! - [`records`]: the awkward sample records and byte-exact comparisons.
//! - [`observe`]: what each client learned (broker addresses) and logged.
//! - [`wire`]: a few hand-encoded Kafka requests for readiness and raw pipelining checks.
//! - [`http`]: a minimal HTTP/1.1 GET for the proxy's admin endpoints.
//! - [`python`]: runs `tests/python/clients.py` in the test virtualenv.
//! - [`scenarios`]: the end-to-end scenarios shared by the direct and proxied suites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod audit_proxy;
pub mod auth;
pub mod authz;
pub mod bench;
pub mod broker;
pub mod encryption;
pub mod endpoint;
pub mod hostile;
pub mod http;
pub mod kafka;
pub mod observe;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod python;
pub mod records;
pub mod sasl_login;
pub mod sasl_wire;
pub mod scenarios;
pub mod token_endpoint;
pub mod wire;

pub use broker::Broker;
pub use endpoint::{AddressRules, ClientAuth, Endpoint, TokenSource};
pub use proxy::{Proxy, ProxyOptions};
pub use rdkafka;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Upper bound for one whole end-to-end test body. Generous for a loaded 2-core CI machine,
/// small enough that a hang fails well inside CI's budget.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Upper bound for one client operation (a delivery, a metadata request, a batch of reads).
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/portcullis`: where the install scripts put the broker
/// and the Python virtualenv.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("portcullis")
}

/// Runs `body` with [`TEST_TIMEOUT`]; a body still running then fails the test.
pub async fn with_test_timeout<F: Future>(name: &str, body: F) -> F::Output {
    with_timeout(TEST_TIMEOUT, name, body).await
}

/// Awaits `fut` for at most `limit`, panicking with `what` when it takes longer.
pub async fn with_timeout<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A fresh name for a topic or group, unique within this process and across runs, so tests
/// sharing a broker can never see each other's data.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{:x}",
        std::process::id(),
        ports::random_u64() & 0xffff
    )
}
