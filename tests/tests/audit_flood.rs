//! The audit flood of issue 13, reproduced end to end (acceptance, first line).
//!
//! bob (role consumers, no grant on any of the names) sends three Metadata v4 requests, each
//! naming 50,000 distinct topics he may not describe (about 500 KB each) with a 32,000-byte
//! client id, while alice logs in once a second. Every name is authorized and denied (the
//! default `limits.max_topics_per_request` of 100,000 lets the whole request through, so
//! this exercises the full path: decision, per-connection denial aggregation, the
//! per-principal event budget, client-id truncation, capped metric labels). Then: the
//! proxy's RSS grew by less than 100 MiB, its audit directory by less than 10 MiB,
//! `/metrics` has fewer than 5,000 lines, and every one of alice's logins was answered
//! within a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::protocol::Decodable;
use portcullis_tests::auth::{start, Auth};
use portcullis_tests::authz::PolicyDir;
use portcullis_tests::hostile::metrics_text;
use portcullis_tests::sasl_wire::{RawClient, SaslResult};
use portcullis_tests::with_test_timeout;

/// bob may read orders topics only; alice produces to them.
const RULES: &str = "\
p, Role:consumers, topic, orders*, Read, allow
p, Role:producers, topic, orders*, Write, allow
";

const NAMES: usize = 50_000;
const CLIENT_ID_BYTES: usize = 32_000;

use portcullis_tests::process::proc_status_bytes as status_bytes;

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Metadata v4 (header v1) naming `NAMES` distinct topics of round `round`, with a
/// `CLIENT_ID_BYTES`-byte client id. Returned without the length prefix.
fn flood_request(correlation_id: i32, round: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLIENT_ID_BYTES + NAMES * 10 + 64);
    out.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    out.extend_from_slice(&4i16.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(CLIENT_ID_BYTES as i16).to_be_bytes());
    out.extend(std::iter::repeat_n(b'c', CLIENT_ID_BYTES));
    out.extend_from_slice(&(NAMES as i32).to_be_bytes());
    for i in 0..NAMES {
        let name = format!("x{round}{i:06}");
        out.extend_from_slice(&(name.len() as i16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    out.push(0); // allow_auto_topic_creation
    out
}

/// Logs alice in once a second until `stop`; returns each login's duration.
fn alice_logs_in(addr: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut took = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut client = RawClient::connect(&addr).expect("alice connects");
        let result = client.login_password("PLAIN", "alice", "alice-secret");
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Ok(SaslResult::Ok { .. })),
            "alice's login {} failed after {elapsed:?}: {result:?}",
            took.len() + 1
        );
        took.push(elapsed);
        std::thread::sleep(Duration::from_secs(1).saturating_sub(elapsed));
    }
    took
}

/// bob's three flood requests; returns how many names each answer denied.
fn bob_floods(addr: &str) -> Vec<usize> {
    let mut client = RawClient::connect(addr).expect("bob connects");
    let login = client
        .login_password("PLAIN", "bob", "bob-secret")
        .expect("bob logs in");
    assert!(
        matches!(login, SaslResult::Ok { .. }),
        "bob's login: {login:?}"
    );
    let mut denied = Vec::new();
    for round in 0..3 {
        let correlation = 100 + round as i32;
        client
            .send_raw(&flood_request(correlation, round))
            .expect("send flood");
        let mut body = Bytes::from(client.read_frame().expect("answer to the flood"));
        let got = i32::from_be_bytes(body[..4].try_into().unwrap());
        assert_eq!(got, correlation);
        let _ = body.split_to(4);
        let answer = MetadataResponse::decode(&mut body, 4).expect("Metadata v4 answer");
        denied.push(answer.topics.iter().filter(|t| t.error_code == 29).count());
    }
    denied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_denied_names_is_cheap_and_does_not_lock_others_out() {
    with_test_timeout("audit flood", async {
        let policies = PolicyDir::new(RULES);
        let s = start(Auth {
            mechanisms: &["PLAIN"],
            auth_extra: &policies.proxy_toml(""),
            ..Auth::default()
        });
        let pid = s.proxy.pid();
        let addr = s.proxy.bootstrap();
        // Warm up: one login of each and one metadata request, so lazily built state exists.
        {
            let mut c = RawClient::connect(&addr).unwrap();
            c.login_password("PLAIN", "bob", "bob-secret").unwrap();
            c.metadata().unwrap();
        }
        std::thread::sleep(Duration::from_secs(2));
        let rss_before = status_bytes(pid, "VmRSS:");
        let audit_before = dir_bytes(s.proxy.audit_dir());

        let stop = Arc::new(AtomicBool::new(false));
        let alice = {
            let (addr, stop) = (addr.clone(), stop.clone());
            tokio::task::spawn_blocking(move || alice_logs_in(addr, stop))
        };
        let started = Instant::now();
        let denied = {
            let addr = addr.clone();
            tokio::task::spawn_blocking(move || bob_floods(&addr)).await.unwrap()
        };
        let flood_took = started.elapsed();
        // Keep alice logging in while the audit log writes what the flood left.
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let logins = alice.await.unwrap();
        std::thread::sleep(Duration::from_secs(2));

        let rss_after = status_bytes(pid, "VmRSS:");
        let peak = status_bytes(pid, "VmHWM:");
        let audit_after = dir_bytes(s.proxy.audit_dir());
        let metrics = metrics_text(s.proxy.admin_addr());
        let slowest = logins.iter().max().copied().unwrap_or_default();
        eprintln!(
            "flood took {flood_took:?}; denied per request {denied:?}; RSS {} -> {} MiB (peak {} MiB); audit dir {} -> {} KiB; /metrics {} lines; {} logins, slowest {slowest:?}",
            rss_before >> 20,
            rss_after >> 20,
            peak >> 20,
            audit_before >> 10,
            audit_after >> 10,
            metrics.lines().count(),
            logins.len()
        );
        assert_eq!(denied, vec![NAMES; 3], "every name denied in every answer");
        assert!(
            rss_after.saturating_sub(rss_before) < 100 << 20,
            "proxy RSS grew by {} MiB",
            rss_after.saturating_sub(rss_before) >> 20
        );
        assert!(
            audit_after.saturating_sub(audit_before) < 10 << 20,
            "audit log grew by {} KiB",
            audit_after.saturating_sub(audit_before) >> 10
        );
        assert!(metrics.lines().count() < 5_000, "/metrics has {} lines", metrics.lines().count());
        assert!(logins.len() >= 3, "alice logged in only {} times", logins.len());
        assert!(slowest < Duration::from_secs(1), "a login took {slowest:?}: {logins:?}");

        // The flood is in the log, summarised: bob's budget ran out and said so, and the
        // denials kept carry a cut client id with the full id's hash.
        let events = s.proxy.audit_events();
        assert!(
            events.iter().any(|e| e["action"] == "audit.budget.exceeded"
                && e["principal"] == "User:bob"),
            "no audit.budget.exceeded event for bob"
        );
        let deny = events
            .iter()
            .find(|e| e["outcome"] == "deny" && e["principal"] == "User:bob")
            .expect("a denial of bob's");
        assert!(deny["client_id"].as_str().unwrap().len() < 300, "client id not cut");
        assert_eq!(deny["details"]["client_id_bytes"], CLIENT_ID_BYTES);
    })
    .await;
}
