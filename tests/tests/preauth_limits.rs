//! Before authentication, one source must not be able to lock out or crowd out others:
//! failed logins are limited per address and user (not per address alone), every failed
//! login is audited and counted however the client leaves, and each source address has its
//! own limits on unauthenticated connections and on the rate of new connections.
//!
//! Other hosts are played by binding client sockets to other loopback addresses
//! (127.0.0.2, 127.0.0.3: Linux routes all of 127.0.0.0/8 to `lo`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use portcullis_tests::auth::{start, Auth};
use portcullis_tests::sasl_wire::{connect_from, RawClient, SaslResult};
use portcullis_tests::Proxy;
use serde_json::Value;

/// Waits (the audit writer batches) until an event matching `pred` is in the audit log.
fn wait_for_event(proxy: &Proxy, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = proxy.audit_events().into_iter().find(|e| pred(e)) {
            return e;
        }
        if Instant::now() > deadline {
            panic!(
                "no audit event {what}; events:\n{}",
                proxy
                    .audit_events()
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn authn_failure(e: &Value) -> bool {
    e["category"] == "authn" && e["outcome"] == "failure"
}

fn reason_has(e: &Value, needle: &str) -> bool {
    e["reason"].as_str().is_some_and(|r| r.contains(needle))
}

fn plain_login(addr: &str, user: &str, password: &str) -> SaslResult {
    RawClient::connect(addr)
        .unwrap()
        .login_password("PLAIN", user, password)
        .unwrap()
}

fn assert_logged_in(result: SaslResult, who: &str) {
    assert!(
        matches!(result, SaslResult::Ok { .. }),
        "{who} could not log in: {result:?}"
    );
}

fn assert_rate_limited(result: SaslResult, who: &str) {
    match result {
        SaslResult::Failed { message, .. } => {
            assert!(message.contains("too many"), "{who}: {message}")
        }
        other => panic!("{who} was not rate limited: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The failure limiter is keyed by address and user.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_its_failure_limit_does_not_lock_out_another_user_at_the_same_address() {
    let s = start(Auth {
        auth_extra: "source_failure_limit = 3\nsource_failure_window_ms = 60000",
        ..Auth::default()
    });
    let addr = s.proxy.bootstrap();
    for _ in 0..3 {
        let result = plain_login(&addr, "alice", "guess");
        assert!(matches!(result, SaslResult::Failed { .. }), "{result:?}");
    }
    // alice is limited at this address, even with her right password...
    assert_rate_limited(plain_login(&addr, "alice", "alice-secret"), "alice");
    // ... while bob, behind the same address (a NAT), still logs in.
    assert_logged_in(
        plain_login(&addr, "bob", "bob-secret"),
        "bob from the address where alice is limited",
    );
    wait_for_event(&s.proxy, "alice rate limited", |e| {
        authn_failure(e)
            && reason_has(e, "rate_limited")
            && e["details"]["attempted_user"] == "alice"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_looser_address_cap_holds_and_limited_retries_do_not_count_towards_it() {
    let s = start(Auth {
        auth_extra: "source_failure_limit = 3\nsource_failure_address_limit = 6\nsource_failure_window_ms = 60000",
        ..Auth::default()
    });
    let addr = s.proxy.bootstrap();
    for _ in 0..3 {
        let result = plain_login(&addr, "alice", "guess");
        assert!(matches!(result, SaslResult::Failed { .. }), "{result:?}");
    }
    // alice retries while limited: those refusals are not counted again, so they cannot
    // push the address over its cap of 6 and lock bob out.
    for _ in 0..5 {
        assert_rate_limited(plain_login(&addr, "alice", "alice-secret"), "alice");
    }
    assert_logged_in(plain_login(&addr, "bob", "bob-secret"), "bob");
    // Spraying over other user names reaches the address cap: everyone there is refused.
    for user in ["carol", "dave", "erin"] {
        let result = plain_login(&addr, user, "guess");
        assert!(matches!(result, SaslResult::Failed { .. }), "{result:?}");
    }
    assert_rate_limited(
        plain_login(&addr, "bob", "bob-secret"),
        "bob over the address cap",
    );
}

// ---------------------------------------------------------------------------------------
// Every failed login is audited and counted, however the client leaves.

/// A client that sends an invalid OAUTHBEARER token, reads the RFC 7628 error challenge and
/// hangs up instead of acknowledging it with `\x01`.
fn oauth_and_hang_up(addr: &str, token: &str) {
    let mut raw = RawClient::connect(addr).unwrap();
    assert_eq!(raw.handshake(1, "OAUTHBEARER").unwrap().error_code, 0);
    let first = format!("n,,\x01auth=Bearer {token}\x01\x01");
    let response = raw.authenticate(first.as_bytes()).unwrap();
    assert_eq!(response.error_code, 0, "the error comes as a challenge");
    let challenge: Value = serde_json::from_slice(&response.auth_bytes)
        .unwrap_or_else(|e| panic!("the challenge is not the JSON error status: {e}"));
    assert_eq!(challenge["status"], "invalid_token");
    drop(raw);
}

fn oauth_failures(proxy: &Proxy) -> usize {
    proxy
        .audit_events()
        .into_iter()
        .filter(|e| authn_failure(e) && e["mechanism"] == "OAUTHBEARER")
        .count()
}

fn forged_token() -> String {
    let dir = tempfile::tempdir().unwrap();
    let stranger = portcullis_tests::auth::TokenIssuer::new(dir.path(), "key-1");
    stranger.token("carol", &[], Duration::from_secs(300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_oauthbearer_login_whose_client_hangs_up_is_audited() {
    let s = start(Auth::default());
    let addr = s.proxy.bootstrap();
    let forged = forged_token();
    oauth_and_hang_up(&addr, &forged);
    wait_for_event(
        &s.proxy,
        "OAUTHBEARER failure of a client that hung up",
        |e| authn_failure(e) && e["mechanism"] == "OAUTHBEARER" && reason_has(e, "invalid_token"),
    );
    let text = serde_json::to_string(&s.proxy.audit_events()).unwrap();
    assert!(
        !text.contains(&forged),
        "the token must not be in the audit log"
    );

    // A client that does acknowledge gets the failure answer, recorded once.
    let mut raw = RawClient::connect(&addr).unwrap();
    match raw.login_oauth(&forged).unwrap() {
        SaslResult::Failed { .. } => {}
        other => panic!("forged token accepted: {other:?}"),
    }
    drop(raw);
    let deadline = Instant::now() + Duration::from_secs(10);
    while oauth_failures(&s.proxy) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        oauth_failures(&s.proxy),
        2,
        "one failure event per failed login (hung up, acknowledged)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_oauthbearer_login_whose_client_hangs_up_is_counted_by_the_limiter() {
    let s = start(Auth {
        auth_extra: "source_failure_limit = 2\nsource_failure_address_limit = 2\nsource_failure_window_ms = 60000",
        ..Auth::default()
    });
    let addr = s.proxy.bootstrap();
    let forged = forged_token();
    oauth_and_hang_up(&addr, &forged);
    oauth_and_hang_up(&addr, &forged);
    // Both failures count against the address (cap 2; a token names no trusted user): the
    // next login from it is refused without its credentials being checked.
    assert_rate_limited(
        plain_login(&addr, "alice", "alice-secret"),
        "alice after two failed logins from her address",
    );
}

// ---------------------------------------------------------------------------------------
// Per-source limits before authentication.

fn loopback(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, last])
}

/// Opens `n` TCP connections to `addr` from `source` that never send a byte; returns them
/// with, for each, whether the proxy had closed it 500 ms after the last was opened.
fn idle_connections(addr: &str, source: std::net::IpAddr, n: usize) -> Vec<(TcpStream, bool)> {
    let streams: Vec<TcpStream> = (0..n)
        .map(|i| {
            connect_from(addr, source)
                .unwrap_or_else(|e| panic!("connection {i} from {source}: {e}"))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    streams
        .into_iter()
        .map(|stream| {
            let closed = is_closed(&stream);
            (stream, closed)
        })
        .collect()
}

/// Whether the peer has closed `stream` (EOF or reset, without waiting).
fn is_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

fn login_from(addr: &str, source: std::net::IpAddr, user: &str, password: &str) -> SaslResult {
    let mut raw = RawClient::connect_from(addr, source).unwrap();
    match raw.login_password("PLAIN", user, password) {
        Ok(result) => {
            if matches!(result, SaslResult::Ok { .. }) {
                raw.metadata()
                    .unwrap_or_else(|e| panic!("{user} logged in but Metadata failed: {e}"));
            }
            result
        }
        Err(e) => panic!("{user} from {source} could not even reach the login: {e}"),
    }
}

fn refused_events(proxy: &Proxy, source: &str) -> Vec<Value> {
    proxy
        .audit_events()
        .into_iter()
        .filter(|e| e["action"] == "connection.refused" && e["client_addr"] == source)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_holding_idle_connections_cannot_keep_another_from_logging_in() {
    // Global limit 100 (over every listener); per-source default 64 unauthenticated.
    let s = start(Auth {
        auth_extra: "\n[limits]\nmax_connections = 100",
        ..Auth::default()
    });
    let addr = s.proxy.bootstrap();
    let attacker = idle_connections(&addr, loopback(2), 100);
    let closed = attacker.iter().filter(|(_, closed)| *closed).count();
    // The victim, from another host, connects and logs in while the attacker's idle
    // connections are all still open.
    let victim = login_from(&addr, loopback(1), "alice", "alice-secret");
    assert_logged_in(victim, "alice from 127.0.0.1 while 127.0.0.2 floods");
    assert_logged_in(
        login_from(&addr, loopback(3), "bob", "bob-secret"),
        "bob from 127.0.0.3",
    );
    assert_eq!(
        closed, 36,
        "of 100 idle connections from one source, all beyond the 64 it may hold \
         unauthenticated are closed at once"
    );
    let metrics = portcullis_tests::hostile::metrics_text(s.proxy.admin_addr());
    let rejected = portcullis_tests::hostile::metric_sum(
        &metrics,
        "portcullis_connections_rejected_total",
        "reason=\"per_source_unauthenticated\"",
    );
    assert_eq!(rejected, 36.0, "metric of refused connections");
    wait_for_event(&s.proxy, "refusal of 127.0.0.2", |e| {
        e["action"] == "connection.refused"
            && e["client_addr"] == "127.0.0.2"
            && reason_has(e, "per_source_unauthenticated")
    });
    let events = refused_events(&s.proxy, "127.0.0.2");
    assert!(
        events.len() <= 2,
        "refusals are audited aggregated, not one event per connection: {events:?}"
    );
    drop(attacker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_opening_connections_too_fast_is_refused_and_reported_aggregated() {
    let s = start(Auth {
        auth_extra: "\n[limits.per_source]\nhandshakes_per_sec = 2\nhandshake_burst = 5\nreport_interval_ms = 1000",
        ..Auth::default()
    });
    let addr = s.proxy.bootstrap();
    let started = Instant::now();
    let flood = idle_connections(&addr, loopback(4), 30);
    let elapsed = started.elapsed();
    let open = flood.iter().filter(|(_, closed)| !closed).count();
    // A burst of 5 plus 2 per second while the connections were being opened.
    let allowed = 5 + (elapsed.as_secs_f64() * 2.0).ceil() as usize;
    assert!(
        (5..=allowed).contains(&open),
        "{open} of 30 connections opened in {elapsed:?} were admitted (at most {allowed})"
    );
    assert_logged_in(
        login_from(&addr, loopback(1), "alice", "alice-secret"),
        "alice from another source",
    );
    let summary = wait_for_event(&s.proxy, "aggregated refusal count", |e| {
        e["action"] == "connection.refused"
            && e["client_addr"] == "127.0.0.4"
            && e["details"]["first"] == false
    });
    let first = refused_events(&s.proxy, "127.0.0.4")
        .into_iter()
        .find(|e| e["details"]["first"] == true)
        .expect("the first refusal is reported at once");
    let reported = summary["details"]["refused"].as_u64().unwrap()
        + first["details"]["refused"].as_u64().unwrap();
    assert_eq!(
        reported as usize,
        30 - open,
        "every refusal counted: {summary}"
    );
    assert!(
        reason_has(&summary, "per_source_handshake_rate"),
        "{summary}"
    );
    drop(flood);
}

// ---------------------------------------------------------------------------------------
// A login left in the middle is a failed login too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_login_abandoned_after_the_server_challenge_is_audited_as_failed() {
    let s = start(Auth::default());
    let mut raw = RawClient::connect(&s.proxy.bootstrap()).unwrap();
    assert_eq!(raw.handshake(1, "SCRAM-SHA-256").unwrap().error_code, 0);
    let first = raw.authenticate(b"n,,n=alice,r=abcdefghijkl").unwrap();
    assert_eq!(first.error_code, 0);
    assert!(
        first.auth_bytes.starts_with(b"r=abcdefghijkl"),
        "no server-first"
    );
    drop(raw);
    let event = wait_for_event(&s.proxy, "abandoned SCRAM login", |e| {
        authn_failure(e) && e["mechanism"] == "SCRAM-SHA-256" && reason_has(e, "abandoned")
    });
    assert_eq!(event["details"]["attempted_user"], "alice", "{event}");
    // A connection that only asked for a mechanism, and a completed login, leave none.
    let mut raw = RawClient::connect(&s.proxy.bootstrap()).unwrap();
    assert_eq!(raw.handshake(1, "PLAIN").unwrap().error_code, 0);
    drop(raw);
    assert_logged_in(
        plain_login(&s.proxy.bootstrap(), "bob", "bob-secret"),
        "bob",
    );
    std::thread::sleep(Duration::from_millis(500));
    let abandoned = s
        .proxy
        .audit_events()
        .into_iter()
        .filter(|e| authn_failure(e) && reason_has(e, "abandoned"))
        .count();
    assert_eq!(abandoned, 1, "only the SCRAM exchange was abandoned");
}
