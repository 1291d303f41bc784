//! The OAUTHBEARER server mechanism: Kafka's client message, the RFC 7628 error flow, and
//! arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "oauth_support.rs"]
mod support;

use std::sync::Arc;

use portcullis_auth::jwt::{JwtValidator, OAuthBearerConfig};
use portcullis_auth::oauth_client::{client_first_message, BearerToken};
use portcullis_auth::oauthbearer::OAuthBearerServer;
use portcullis_auth::{AuthSource, FailureKind, Mechanism, Step};
use proptest::prelude::*;
use serde_json::json;
use support::*;

struct Setup {
    key: TestKey,
    validator: Arc<JwtValidator>,
    _dir: tempfile::TempDir,
}

fn setup(tune: impl FnOnce(&mut OAuthBearerConfig)) -> Setup {
    let key = TestKey::ec("k1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key]).to_string()).unwrap();
    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_file = Some(path);
    cfg.roles_claim = Some("groups".into());
    tune(&mut cfg);
    Setup {
        key,
        validator: Arc::new(JwtValidator::new(cfg).unwrap()),
        _dir: dir,
    }
}

fn message(token: &str, authzid: Option<&str>) -> Vec<u8> {
    client_first_message(
        &BearerToken::new(token, std::time::SystemTime::now()),
        authzid,
    )
}

#[tokio::test]
async fn success_gives_the_principal_roles_and_expiry() {
    let s = setup(|_| {});
    let mut c = claims("alice");
    c["groups"] = json!(["ops"]);
    let mut server = OAuthBearerServer::new(s.validator.clone());
    let Step::Success(auth) = server.step(&message(&s.key.mint(&c), None)).await else {
        panic!("expected success");
    };
    assert_eq!(auth.principal.name, "alice");
    assert_eq!(auth.principal.roles, vec!["ops"]);
    assert_eq!(
        auth.principal.source,
        AuthSource::Sasl(Mechanism::OAuthBearer)
    );
    assert!(auth.final_message.is_empty());
    assert_eq!(
        auth.expires_at,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(c["exp"].as_u64().unwrap()))
    );
    let Step::Failure(f) = server.step(b"\x01").await else {
        panic!("expected failure after success");
    };
    assert_eq!(f.kind, FailureKind::IllegalState);
}

#[tokio::test]
async fn extensions_are_accepted_and_authzid_must_match() {
    let s = setup(|_| {});
    let token = s.key.mint(&claims("alice"));
    let with_ext = format!(
        "n,a=alice,\x01auth=Bearer {token}\x01traceId=abc 1\x01logicalCluster=lkc-1\x01\x01"
    );
    let mut server = OAuthBearerServer::new(s.validator.clone());
    assert!(matches!(
        server.step(with_ext.as_bytes()).await,
        Step::Success(_)
    ));
    let mut server = OAuthBearerServer::new(s.validator.clone());
    let Step::Failure(f) = server.step(&message(&token, Some("bob"))).await else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, FailureKind::InvalidToken);
    assert!(!f.detail.contains(&token));
}

#[tokio::test]
async fn invalid_token_follows_the_rfc7628_error_flow() {
    let s = setup(|_| {});
    let mut c = claims("mallory");
    c["iss"] = json!("https://evil.test");
    let token = s.key.mint(&c);
    let mut server = OAuthBearerServer::new(s.validator.clone());
    let Step::Challenge(challenge) = server.step(&message(&token, None)).await else {
        panic!("expected the error challenge");
    };
    let body: serde_json::Value = serde_json::from_slice(&challenge).unwrap();
    assert_eq!(body, json!({"status": "invalid_token"}));
    let Step::Failure(f) = server.step(b"\x01").await else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, FailureKind::InvalidToken);
    assert_eq!(f.attempted_user, None, "the unverified sub is not trusted");
    assert!(!f.detail.contains(&token));
    assert!(f.detail.contains("issuer"), "{}", f.detail);
    let Step::Failure(f) = server.step(b"\x01").await else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, FailureKind::IllegalState);
}

#[tokio::test]
async fn expired_tokens_are_reported_as_such_and_the_challenge_carries_hints() {
    let s = setup(|c| {
        c.error_scope = Some("kafka".into());
        c.error_openid_configuration =
            Some("https://idp.test/.well-known/openid-configuration".into());
    });
    let mut c = claims("alice");
    c["exp"] = json!(now() - 3600);
    let mut server = OAuthBearerServer::new(s.validator.clone());
    let Step::Challenge(challenge) = server.step(&message(&s.key.mint(&c), None)).await else {
        panic!("expected the error challenge");
    };
    let body: serde_json::Value = serde_json::from_slice(&challenge).unwrap();
    assert_eq!(
        body,
        json!({"status": "invalid_token", "scope": "kafka",
               "openid-configuration": "https://idp.test/.well-known/openid-configuration"})
    );
    let Step::Failure(f) = server.step(b"\x01").await else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, FailureKind::ExpiredToken);
}

#[tokio::test]
async fn anything_but_the_acknowledgement_after_the_challenge_is_illegal() {
    let s = setup(|_| {});
    let mut server = OAuthBearerServer::new(s.validator.clone());
    assert!(matches!(
        server.step(&message("not.a.jwt", None)).await,
        Step::Challenge(_)
    ));
    let Step::Failure(f) = server.step(&message(&s.key.mint(&claims("a")), None)).await else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, FailureKind::IllegalState);
}

#[tokio::test]
async fn malformed_messages_fail_at_once() {
    let s = setup(|_| {});
    for bad in [
        &b""[..],
        b"\x01",
        b"n,,auth=Bearer x\x01\x01",
        b"n,,\x01auth=Bearer x\x01",
        b"n,,\x01\x01",
        b"p=x,,\x01auth=Bearer x\x01\x01",
    ] {
        let mut server = OAuthBearerServer::new(s.validator.clone());
        let Step::Failure(f) = server.step(bad).await else {
            panic!("expected failure for {bad:?}");
        };
        assert_eq!(f.kind, FailureKind::Malformed);
    }
    let mut server = OAuthBearerServer::new(s.validator.clone());
    let huge = message(&"a".repeat(70 * 1024), None);
    assert!(
        matches!(server.step(&huge).await, Step::Failure(f) if f.kind == FailureKind::Malformed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics(
        first in proptest::collection::vec(any::<u8>(), 0..512),
        second in proptest::collection::vec(any::<u8>(), 0..16),
        token in "[A-Za-z0-9._~+/=-]{0,200}",
    ) {
        let s = setup(|_| {});
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut server = OAuthBearerServer::new(s.validator.clone());
            let _ = server.step(&first).await;
            let _ = server.step(&second).await;
            let mut server = OAuthBearerServer::new(s.validator.clone());
            let _ = server.step(&message(&token, None)).await;
            let _ = server.step(&second).await;
        });
    }
}
