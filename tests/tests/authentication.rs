//! Client authentication at the proxy, end to end: real clients (librdkafka through rdkafka,
//! and a raw client where the exact answer matters) through `portcullis serve` to tansu.
//!
//! Every mechanism is shown to work and every negative case to be refused with the right
//! error and an audit event. Users are made with the real `portcullis users` command,
//! tokens are minted by the test with its own key (published in a JWKS file), client
//! certificates come from `portcullis certs init`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use portcullis_tests::auth::{
    expired_client_cert, hs256_token, now_secs, remove_user, start, unsigned_token, Auth,
    TokenIssuer, AUDIENCE, ISSUER,
};
use portcullis_tests::kafka::FetchMetadata;
use portcullis_tests::sasl_wire::{RawClient, SaslResult};
use portcullis_tests::{http, kafka, scenarios, with_test_timeout, Proxy};
use serde_json::{json, Value};

/// Audit events of the proxy so far, parsed.
fn audit_events(proxy: &Proxy) -> Vec<Value> {
    proxy.audit_events()
}

/// Every audit event as one text, to search for secrets.
fn audit_text(proxy: &Proxy) -> String {
    serde_json::to_string(&proxy.audit_events()).unwrap()
}

/// Waits (the audit writer batches) until an event matching `pred` is in the audit file.
fn wait_for_event(proxy: &Proxy, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = audit_events(proxy).into_iter().find(|e| pred(e)) {
            return e;
        }
        if Instant::now() > deadline {
            panic!(
                "no audit event {what}; events:\n{}",
                audit_events(proxy)
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn authn(e: &Value, outcome: &str) -> bool {
    e["category"] == "authn" && e["outcome"] == outcome
}

fn reason_has(e: &Value, needle: &str) -> bool {
    e["reason"].as_str().is_some_and(|r| r.contains(needle))
}

/// An rdkafka producer's metadata request fails (the client cannot authenticate).
fn assert_client_refused(ep: &portcullis_tests::Endpoint, what: &str) {
    let producer = kafka::producer(ep, &[]);
    let result = producer.metadata(None, Duration::from_secs(4));
    assert!(
        result.is_err(),
        "{what}: the client got metadata through the proxy without valid credentials"
    );
}

fn bootstrap(setup: &portcullis_tests::auth::Setup) -> String {
    setup.proxy.bootstrap()
}

// ---------------------------------------------------------------------------------------
// Each mechanism works end to end with librdkafka.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha512_over_tls_produces_and_consumes() {
    let mut s = start(Auth {
        tls: true,
        ..Auth::default()
    });
    let ep = s
        .proxy
        .endpoint()
        .with_password("SCRAM-SHA-512", "alice", "alice-secret");
    with_test_timeout(
        "SCRAM-SHA-512 over TLS",
        scenarios::produce_consume_codec(&ep, "lz4"),
    )
    .await;
    let e = wait_for_event(&s.proxy, "SCRAM success", |e| {
        authn(e, "success") && e["principal"] == "User:alice" && e["mechanism"] == "SCRAM-SHA-512"
    });
    assert_eq!(e["roles"], json!(["producers"]), "{e}");
    s.proxy.assert_running();
    s.broker.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha256_and_plain_produce_and_consume() {
    let mut s = start(Auth::default());
    for (mechanism, user, password) in [
        ("SCRAM-SHA-256", "bob", "bob-secret"),
        ("PLAIN", "alice", "alice-secret"),
    ] {
        let ep = s.proxy.endpoint().with_password(mechanism, user, password);
        with_test_timeout(mechanism, scenarios::produce_consume_codec(&ep, "none")).await;
        wait_for_event(&s.proxy, mechanism, |e| {
            authn(e, "success")
                && e["mechanism"] == mechanism
                && e["principal"] == format!("User:{user}")
        });
    }
    s.proxy.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_with_a_valid_token_produces_and_consumes() {
    let mut s = start(Auth::default());
    let token = s
        .issuer
        .token("carol", &["analytics", "readers"], Duration::from_secs(600));
    let ep = s
        .proxy
        .endpoint()
        .with_oauth(Arc::new(move || token.clone()));
    // rdkafka's AdminClient does not serve librdkafka's token-refresh events, so the topic
    // is created by a SCRAM admin; producer and consumer use the token.
    let admin_ep = s
        .proxy
        .endpoint()
        .with_password("SCRAM-SHA-512", "alice", "alice-secret");
    with_test_timeout("OAUTHBEARER", async {
        let topic = portcullis_tests::unique_name("oauth");
        kafka::create_topic(&admin_ep, &topic, 1).await;
        let recs = kafka::sample_records(20, 1, 7);
        let producer = kafka::producer(&ep, &[("compression.type", "zstd")]);
        let placements = kafka::produce_all(&producer, &topic, &recs).await;
        let back = kafka::read_back(&ep, &topic, 1, recs.len()).await;
        kafka::assert_same_records(&recs, &placements, &back);
    })
    .await;
    let e = wait_for_event(&s.proxy, "OAUTHBEARER success", |e| {
        authn(e, "success") && e["mechanism"] == "OAUTHBEARER"
    });
    assert_eq!(e["principal"], "User:carol", "{e}");
    assert_eq!(e["roles"], json!(["analytics", "readers"]), "{e}");
    s.proxy.assert_running();
}

// ---------------------------------------------------------------------------------------
// Negative cases: refused with the right error, audited.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_and_unknown_users_are_refused_alike() {
    let s = start(Auth::default());
    let addr = bootstrap(&s);
    let mut messages = Vec::new();
    for (mechanism, user, password) in [
        ("SCRAM-SHA-512", "alice", "wrong"),
        ("SCRAM-SHA-512", "mallory", "whatever"),
        ("PLAIN", "alice", "wrong"),
        ("PLAIN", "mallory", "whatever"),
    ] {
        let mut raw = RawClient::connect(&addr).unwrap();
        match raw.login_password(mechanism, user, password).unwrap() {
            SaslResult::Failed { code, message } => {
                assert_eq!(
                    code,
                    ResponseError::SaslAuthenticationFailed.code(),
                    "{mechanism} {user}"
                );
                messages.push(message);
            }
            other => panic!("{mechanism} {user}/{password}: {other:?}"),
        }
        assert!(
            raw.closed_within(Duration::from_secs(5)),
            "connection stays open after failure"
        );
        let reason = if user == "mallory" {
            "unknown_user"
        } else {
            "bad_credentials"
        };
        wait_for_event(&s.proxy, &format!("{mechanism} {user} failure"), |e| {
            authn(e, "failure") && e["mechanism"] == mechanism && reason_has(e, reason)
        });
    }
    assert!(
        messages.windows(2).all(|w| w[0] == w[1]),
        "the client can tell unknown users from bad passwords: {messages:?}"
    );
    assert!(!messages[0].contains("mallory") && !messages[0].contains("wrong"));
    // And librdkafka gets nowhere with a bad password.
    assert_client_refused(
        &s.proxy
            .endpoint()
            .with_password("SCRAM-SHA-256", "alice", "wrong"),
        "rdkafka with a wrong password",
    );
    let log = s.proxy.log();
    for secret in ["alice-secret", "bob-secret", "whatever"] {
        assert!(!log.contains(secret), "the proxy log contains a password");
    }
    let audit = audit_text(&s.proxy);
    for secret in ["alice-secret", "bob-secret", "whatever"] {
        assert!(!audit.contains(secret), "the audit log contains a password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_that_is_not_enabled_is_refused_listing_the_enabled_ones() {
    let s = start(Auth {
        mechanisms: &["SCRAM-SHA-512"],
        ..Auth::default()
    });
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    match raw
        .login_password("PLAIN", "alice", "alice-secret")
        .unwrap()
    {
        SaslResult::Handshake { code, mechanisms } => {
            assert_eq!(code, ResponseError::UnsupportedSaslMechanism.code());
            assert_eq!(mechanisms, vec!["SCRAM-SHA-512".to_string()]);
        }
        other => panic!("PLAIN on a SCRAM-only listener: {other:?}"),
    }
    assert!(raw.closed_within(Duration::from_secs(5)));
    wait_for_event(&s.proxy, "unsupported mechanism", |e| {
        authn(e, "failure") && reason_has(e, "unsupported_mechanism")
    });
    assert_client_refused(
        &s.proxy
            .endpoint()
            .with_password("PLAIN", "alice", "alice-secret"),
        "rdkafka with PLAIN on a SCRAM-only listener",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() {
    let s = start(Auth::default());
    let addr = bootstrap(&s);
    let dir = tempfile::tempdir().unwrap();
    let stranger = TokenIssuer::new(dir.path(), "key-1");
    let now = now_secs();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            s.issuer.sign(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": now - 120})),
            "expired_token",
        ),
        (
            "signed by an unknown key",
            stranger.token("carol", &[], Duration::from_secs(300)),
            "invalid_token",
        ),
        (
            "wrong issuer",
            s.issuer.sign(json!({"iss": "https://evil.test", "aud": AUDIENCE, "sub": "carol", "exp": now + 300})),
            "invalid_token",
        ),
        (
            "wrong audience",
            s.issuer.sign(json!({"iss": ISSUER, "aud": "other", "sub": "carol", "exp": now + 300})),
            "invalid_token",
        ),
        ("alg none", unsigned_token("carol"), "invalid_token"),
        (
            "HS256 keyed with the public key",
            hs256_token("carol", s.issuer.public_key_raw(), "key-1"),
            "invalid_token",
        ),
    ];
    for (what, token, reason) in cases {
        let mut raw = RawClient::connect(&addr).unwrap();
        match raw.login_oauth(&token).unwrap() {
            SaslResult::Failed { code, .. } => {
                assert_eq!(
                    code,
                    ResponseError::SaslAuthenticationFailed.code(),
                    "{what}"
                )
            }
            other => panic!("token {what}: {other:?}"),
        }
        wait_for_event(&s.proxy, what, |e| {
            authn(e, "failure") && e["mechanism"] == "OAUTHBEARER" && reason_has(e, reason)
        });
        assert!(!audit_text(&s.proxy).contains(&token));
    }
    let expired = s
        .issuer
        .sign(json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": now - 120}));
    assert_client_refused(
        &s.proxy
            .endpoint()
            .with_oauth(Arc::new(move || expired.clone())),
        "rdkafka with an expired token",
    );
}

// ---------------------------------------------------------------------------------------
// Nothing reaches the broker before authentication.

fn upstream_connections(proxy: &Proxy) -> u64 {
    let r = http::get(proxy.admin_addr(), "/metrics", Duration::from_secs(5)).unwrap();
    r.body
        .lines()
        .find(|l| l.starts_with("portcullis_upstream_connections_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no upstream connection metric in:\n{}", r.body)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_forwarded_and_no_upstream_connection_is_opened_before_authentication() {
    let s = start(Auth::default());
    let addr = bootstrap(&s);
    assert_eq!(upstream_connections(&s.proxy), 0);
    // A request other than ApiVersions/SASL before authenticating closes the connection.
    let mut raw = RawClient::connect(&addr).unwrap();
    assert!(
        raw.metadata().is_err(),
        "Metadata answered before authentication"
    );
    assert!(raw.closed_within(Duration::from_secs(5)));
    // A failed authentication does not open one either.
    let mut raw = RawClient::connect(&addr).unwrap();
    let _ = raw
        .login_password("SCRAM-SHA-256", "alice", "wrong")
        .unwrap();
    // SaslAuthenticate before SaslHandshake is out of order.
    let mut raw = RawClient::connect(&addr).unwrap();
    let response = raw.authenticate(b"\0alice\0alice-secret").unwrap();
    assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
    assert!(raw.closed_within(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        upstream_connections(&s.proxy),
        0,
        "an unauthenticated connection opened an upstream connection"
    );
    // After authenticating, the first forwarded request opens one.
    let mut raw = RawClient::connect(&addr).unwrap();
    assert!(matches!(
        raw.login_password("PLAIN", "alice", "alice-secret")
            .unwrap(),
        SaslResult::Ok { .. }
    ));
    raw.metadata().expect("metadata after authenticating");
    assert_eq!(upstream_connections(&s.proxy), 1);
    wait_for_event(&s.proxy, "unauthenticated close", |e| {
        e["action"] == "connection.close" && reason_has(e, "before authentication")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_v0_handshake_with_raw_tokens_works() {
    let s = start(Auth::default());
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    let handshake = raw.handshake(0, "PLAIN").unwrap();
    assert_eq!(handshake.error_code, 0);
    raw.send_raw(b"\0alice\0alice-secret").unwrap();
    let answer = raw.read_frame().unwrap();
    assert!(answer.is_empty(), "PLAIN's final server token is empty");
    raw.metadata().expect("metadata after a legacy-flow login");
    // A wrong password in the legacy flow closes the connection without an answer.
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    assert_eq!(raw.handshake(0, "PLAIN").unwrap().error_code, 0);
    raw.send_raw(b"\0alice\0wrong").unwrap();
    assert!(raw.closed_within(Duration::from_secs(5)));
}

// ---------------------------------------------------------------------------------------
// Sessions: lifetime, re-authentication, expiry, removed users.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reauthenticates_within_the_session_lifetime() {
    let mut s = start(Auth {
        auth_extra: "max_session_ms = 3000",
        ..Auth::default()
    });
    let ep = s
        .proxy
        .endpoint()
        .with_password("SCRAM-SHA-256", "alice", "alice-secret");
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    match raw
        .login_password("SCRAM-SHA-256", "alice", "alice-secret")
        .unwrap()
    {
        SaslResult::Ok {
            session_lifetime_ms,
        } => {
            assert!(
                (1..=3000).contains(&session_lifetime_ms),
                "{session_lifetime_ms}"
            )
        }
        other => panic!("{other:?}"),
    }
    with_test_timeout("produce across re-authentications", async {
        let topic = portcullis_tests::unique_name("reauth");
        kafka::create_topic(&ep, &topic, 1).await;
        let producer = kafka::producer(&ep, &[]);
        let recs = kafka::small_records(4, 0, 64);
        for rec in &recs {
            kafka::produce_all(&producer, &topic, std::slice::from_ref(rec)).await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
    })
    .await;
    wait_for_event(&s.proxy, "a re-authentication", |e| {
        authn(e, "success") && e["details"]["reauthentication"] == true
    });
    // The raw connection did not re-authenticate: it has been closed.
    assert!(
        raw.metadata().is_err(),
        "a session past its lifetime still works"
    );
    wait_for_event(&s.proxy, "session expiry", |e| {
        e["action"] == "connection.close" && reason_has(e, "session expired")
    });
    s.proxy.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_stops_working_and_lifetime_follows_the_token() {
    let s = start(Auth::default());
    let token = s.issuer.token("carol", &[], Duration::from_secs(3));
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    match raw.login_oauth(&token).unwrap() {
        SaslResult::Ok {
            session_lifetime_ms,
        } => assert!(
            (1..=3000).contains(&session_lifetime_ms),
            "lifetime {session_lifetime_ms} exceeds the token's"
        ),
        other => panic!("{other:?}"),
    }
    raw.metadata().expect("metadata while the token is valid");
    std::thread::sleep(Duration::from_millis(3500));
    assert!(raw.metadata().is_err(), "an expired token still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_as_someone_else_is_refused() {
    let s = start(Auth::default());
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    assert!(matches!(
        raw.login_password("PLAIN", "alice", "alice-secret")
            .unwrap(),
        SaslResult::Ok { .. }
    ));
    raw.metadata().unwrap();
    match raw.login_password("PLAIN", "bob", "bob-secret").unwrap() {
        SaslResult::Failed { code, .. } => {
            assert_eq!(code, ResponseError::SaslAuthenticationFailed.code())
        }
        other => panic!("re-authentication as bob: {other:?}"),
    }
    assert!(raw.closed_within(Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_is_cut_off_and_cannot_come_back() {
    let s = start(Auth::default());
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    assert!(matches!(
        raw.login_password("SCRAM-SHA-512", "bob", "bob-secret")
            .unwrap(),
        SaslResult::Ok { .. }
    ));
    raw.metadata().unwrap();
    remove_user(&s.users, "bob");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        raw.metadata().is_err(),
        "a removed user's connection still works"
    );
    let mut again = RawClient::connect(&bootstrap(&s)).unwrap();
    assert!(matches!(
        again
            .login_password("SCRAM-SHA-512", "bob", "bob-secret")
            .unwrap(),
        SaslResult::Failed { .. }
    ));
    wait_for_event(&s.proxy, "removed user", |e| {
        e["action"] == "connection.close" && reason_has(e, "user removed")
    });
}

// ---------------------------------------------------------------------------------------
// Hardening.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_source_are_rate_limited() {
    let s = start(Auth {
        auth_extra: "source_failure_limit = 3\nsource_failure_window_ms = 60000",
        ..Auth::default()
    });
    for _ in 0..3 {
        let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
        let _ = raw.login_password("PLAIN", "alice", "guess").unwrap();
    }
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    match raw
        .login_password("PLAIN", "alice", "alice-secret")
        .unwrap()
    {
        SaslResult::Failed { message, .. } => assert!(message.contains("too many"), "{message}"),
        other => panic!("the right password got through a rate limit: {other:?}"),
    }
    wait_for_event(&s.proxy, "rate limited", |e| {
        authn(e, "failure") && reason_has(e, "rate_limited")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_finish_authenticating_is_closed() {
    let s = start(Auth {
        auth_extra: "timeout_ms = 1500",
        ..Auth::default()
    });
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    assert_eq!(raw.handshake(1, "PLAIN").unwrap().error_code, 0);
    let started = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(10)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    // Oversized SASL frames before authentication are refused without buffering them.
    let mut raw = RawClient::connect(&bootstrap(&s)).unwrap();
    assert_eq!(raw.handshake(1, "PLAIN").unwrap().error_code, 0);
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let _ = raw.authenticate(&huge);
    assert!(raw.closed_within(Duration::from_secs(5)));
}

// ---------------------------------------------------------------------------------------
// mTLS.

fn certs_dir(proxy: &Proxy) -> PathBuf {
    proxy.dir().join("certs")
}

fn client_cert(proxy: &Proxy, name: &str) -> (PathBuf, PathBuf) {
    let dir = certs_dir(proxy);
    (
        dir.join(format!("client-{name}.pem")),
        dir.join(format!("client-{name}.key")),
    )
}

fn mtls_listener(required: bool, certificate_authenticates: bool) -> String {
    // The CA path is only known once the proxy wrote its certificates; the harness writes
    // them into `certs/` next to the config, so a relative path works.
    format!(
        "client_auth = \"{}\"\nclient_ca = \"certs/ca.pem\"\ncertificate_authenticates = {certificate_authenticates}",
        if required { "required" } else { "optional" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_alone_authenticates_and_bad_ones_are_refused() {
    let mut s = start(Auth {
        mechanisms: &[],
        tls: true,
        listener_extra: &mtls_listener(true, true),
        auth_extra: "[auth.mtls]\nroles_from = \"ou\"",
    });
    let (cert, key) = client_cert(&s.proxy, "alice");
    let ep = s.proxy.endpoint().with_client_cert(cert, key);
    with_test_timeout("mTLS", scenarios::produce_consume_codec(&ep, "snappy")).await;
    let e = wait_for_event(&s.proxy, "mTLS success", |e| {
        authn(e, "success") && e["mechanism"] == "TLS"
    });
    assert_eq!(e["principal"], "User:alice", "{e}");
    assert_eq!(e["roles"], json!(["dev"]), "{e}");

    // A certificate from another CA.
    let foreign = tempfile::tempdir().unwrap();
    portcullis_certs(foreign.path());
    let untrusted = s.proxy.endpoint().with_client_cert(
        foreign.path().join("client-alice.pem"),
        foreign.path().join("client-alice.key"),
    );
    assert_client_refused(&untrusted, "a certificate from an untrusted CA");
    // An expired certificate from the right CA.
    let (cert, key) = expired_client_cert(&certs_dir(&s.proxy), "alice", foreign.path());
    assert_client_refused(
        &s.proxy.endpoint().with_client_cert(cert, key),
        "an expired certificate",
    );
    // No certificate at all.
    assert_client_refused(&s.proxy.endpoint(), "no client certificate");
    wait_for_event(&s.proxy, "certificate failure", |e| {
        authn(e, "failure") && e["mechanism"] == "TLS"
    });
    s.proxy.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_on_a_tls_listener_with_client_certificates() {
    let s = start(Auth {
        mechanisms: &["SCRAM-SHA-512"],
        tls: true,
        listener_extra: &mtls_listener(false, false),
        ..Auth::default()
    });
    let (cert, key) = client_cert(&s.proxy, "bob");
    let ep = s
        .proxy
        .endpoint()
        .with_client_cert(cert, key)
        .with_password("SCRAM-SHA-512", "alice", "alice-secret");
    with_test_timeout(
        "SASL + client certificate",
        scenarios::produce_consume_codec(&ep, "none"),
    )
    .await;
    let e = wait_for_event(&s.proxy, "SASL success with TLS identity", |e| {
        authn(e, "success") && e["mechanism"] == "SCRAM-SHA-512"
    });
    assert_eq!(
        e["principal"], "User:alice",
        "SASL decides the principal: {e}"
    );
    assert!(
        e["tls_identity"]
            .as_str()
            .is_some_and(|t| t.contains("CN=bob")),
        "the certificate is recorded as the TLS identity: {e}"
    );
    // The certificate alone is not enough on this listener.
    let (cert, key) = client_cert(&s.proxy, "bob");
    assert_client_refused(
        &s.proxy.endpoint().with_client_cert(cert, key),
        "a certificate without SASL where SASL is required",
    );
}

fn portcullis_certs(out: &Path) {
    let status = std::process::Command::new(portcullis_tests::proxy::proxy_binary())
        .args(["certs", "init", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------------------
// The proxy's own credentials upstream: a second portcullis in front of the first checks
// them (each side of each mechanism meets an implementation that verifies it).

/// A plaintext proxy in front of `s.proxy`, logging in to it as configured by `extra`.
fn front_proxy(s: &portcullis_tests::auth::Setup, extra: String) -> Proxy {
    Proxy::start_upstream(
        &[s.proxy.bootstrap()],
        &[s.broker.port()],
        portcullis_tests::ProxyOptions {
            extra_toml: extra,
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_scram_and_plain_logins_are_checked_by_a_second_proxy() {
    let s = start(Auth::default());
    portcullis_tests::auth::add_user(&s.users, "proxy-b", "b-secret", &[]);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "b-secret\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let extra = format!(
            "[upstream.sasl]\nmechanism = \"{mechanism}\"\nusername = \"proxy-b\"\npassword_file = {}\n",
            portcullis_tests::auth::toml_str(&password.to_string_lossy())
        );
        let mut front = front_proxy(&s, extra);
        with_test_timeout(
            mechanism,
            scenarios::produce_consume_codec(&front.endpoint(), "none"),
        )
        .await;
        wait_for_event(&s.proxy, "the front proxy's login", |e| {
            authn(e, "success") && e["principal"] == "User:proxy-b" && e["mechanism"] == mechanism
        });
        assert!(
            !front.log().contains("b-secret"),
            "the upstream password is in the log"
        );
        front.assert_running();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_oauthbearer_uses_client_credentials_tokens() {
    let s = start(Auth::default());
    // The token endpoint mints with the issuer the back proxy trusts.
    let issuer = Arc::new(s.issuer.clone());
    let endpoint = portcullis_tests::token_endpoint::TokenEndpoint::start(
        "portcullis-front",
        "client-secret-value",
        600,
        {
            let issuer = issuer.clone();
            move || issuer.token("svc-front", &["proxies"], Duration::from_secs(600))
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "client-secret-value\n").unwrap();
    let extra = format!(
        "[upstream.sasl]\nmechanism = \"OAUTHBEARER\"\n\n[upstream.sasl.oauth]\ntoken_url = {}\nclient_id = \"portcullis-front\"\nclient_secret_file = {}\nallow_insecure_loopback = true\n",
        portcullis_tests::auth::toml_str(&endpoint.url()),
        portcullis_tests::auth::toml_str(&secret.to_string_lossy())
    );
    let mut front = front_proxy(&s, extra);
    with_test_timeout(
        "upstream OAUTHBEARER",
        scenarios::produce_consume_codec(&front.endpoint(), "none"),
    )
    .await;
    wait_for_event(&s.proxy, "the front proxy's token login", |e| {
        authn(e, "success") && e["principal"] == "User:svc-front" && e["mechanism"] == "OAUTHBEARER"
    });
    assert!(endpoint.issued() >= 1);
    assert!(
        endpoint.issued() <= 3,
        "tokens are cached, not fetched per connection ({} fetched)",
        endpoint.issued()
    );
    assert!(!front.log().contains("client-secret-value"));
    front.assert_running();
}
