//! Before authentication, one source must not be able to lock out or crowd out others:
//! failed logins are limited per address and user (not per address alone), every failed
//! login is audited and counted however the client leaves, and each source address has its
//! own limits on unauthenticated connections and on the rate of new connections.
//!
//! Other hosts are played by binding client sockets to other loopback addresses
//! (127.0.0.2, 127.0.0.3: Linux routes all of 127.0.0.0/8 to `lo`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use portcullis_tests::auth::{start, Auth};
use portcullis_tests::sasl_wire::{RawClient, SaslResult};
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
    wait_for_event(&s.proxy, "alice rate limited", |e| {
        authn_failure(e)
            && reason_has(e, "rate_limited")
            && e["details"]["attempted_user"] == "alice"
    });
    // ... while bob, behind the same address (a NAT), still logs in.
    assert_logged_in(
        plain_login(&addr, "bob", "bob-secret"),
        "bob from the address where alice is limited",
    );
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
