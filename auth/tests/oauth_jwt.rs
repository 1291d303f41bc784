//! JWT validation against a JWKS served over loopback HTTP or read from a file: algorithms,
//! keys, claims, and the refetch rate limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "oauth_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use portcullis_auth::jwt::{JwtValidator, OAuthBearerConfig, TokenError};
use portcullis_auth::FailureKind;
use serde_json::json;
use support::*;

struct Idp {
    server: TestServer,
    rsa: Arc<TestKey>,
    ec: Arc<TestKey>,
    ed: Arc<TestKey>,
}

async fn idp() -> Idp {
    let rsa = Arc::new(TestKey::rsa("rsa1"));
    let ec = Arc::new(TestKey::ec("ec1"));
    let ed = Arc::new(TestKey::ed("ed1"));
    let doc = jwks(&[&rsa, &ec, &ed]);
    let server = TestServer::start(move |_| json_response(200, &doc)).await;
    Idp {
        server,
        rsa,
        ec,
        ed,
    }
}

fn config(idp: &Idp) -> OAuthBearerConfig {
    let mut c = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    c.jwks_url = Some(idp.server.url("/jwks"));
    c.allow_insecure_loopback_jwks = true;
    c.algorithms = vec!["RS256".into(), "ES256".into(), "EdDSA".into()];
    c.roles_claim = Some("roles".into());
    c
}

fn validator(c: OAuthBearerConfig) -> JwtValidator {
    JwtValidator::new(c).unwrap()
}

#[tokio::test]
async fn valid_tokens_of_every_key_type() {
    let idp = idp().await;
    let v = validator(config(&idp));
    for key in [&idp.rsa, &idp.ec, &idp.ed] {
        let mut c = claims("alice");
        c["roles"] = json!(["admin", "reader"]);
        let t = v.validate(&key.mint(&c)).await.unwrap();
        assert_eq!(t.principal, "alice");
        assert_eq!(t.roles, vec!["admin", "reader"]);
        let exp = c["exp"].as_u64().unwrap();
        assert_eq!(
            t.expires_at,
            std::time::UNIX_EPOCH + Duration::from_secs(exp)
        );
    }
    assert_eq!(idp.server.hits("/jwks"), 1, "the set is cached");
}

#[tokio::test]
async fn no_kid_uses_the_only_fitting_key() {
    let idp = idp().await;
    let v = validator(config(&idp));
    let t = idp.ec.mint_with_kid(None, &claims("bob"));
    assert_eq!(v.validate(&t).await.unwrap().principal, "bob");
}

#[tokio::test]
async fn time_claims_with_leeway() {
    let idp = idp().await;
    let v = validator(config(&idp));
    let mut c = claims("alice");
    c["exp"] = json!(now() - 120);
    let e = v.validate(&idp.rsa.mint(&c)).await.unwrap_err();
    assert_eq!(e, TokenError::Expired);
    assert_eq!(e.kind(), FailureKind::ExpiredToken);

    c["exp"] = json!(now() - 10);
    assert!(
        v.validate(&idp.rsa.mint(&c)).await.is_ok(),
        "within 30 s skew"
    );

    let mut c = claims("alice");
    c["nbf"] = json!(now() + 120);
    let e = v.validate(&idp.rsa.mint(&c)).await.unwrap_err();
    assert_eq!(e, TokenError::NotYetValid);
    assert_eq!(e.kind(), FailureKind::ExpiredToken);

    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("exp");
    let e = v.validate(&idp.rsa.mint(&c)).await.unwrap_err();
    assert_eq!(e.kind(), FailureKind::InvalidToken);
}

#[tokio::test]
async fn issuer_audience_and_principal_claims() {
    let idp = idp().await;
    let v = validator(config(&idp));
    let mut c = claims("alice");
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
        TokenError::WrongIssuer
    );
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
        TokenError::WrongIssuer
    );
    let mut c = claims("alice");
    c["aud"] = json!(["other", "another"]);
    assert_eq!(
        v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
        TokenError::WrongAudience
    );
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
        TokenError::WrongAudience
    );
    let mut c = claims("alice");
    c["aud"] = json!(["other", AUDIENCE]);
    assert!(v.validate(&idp.rsa.mint(&c)).await.is_ok());
    for sub in [json!(""), json!(42), json!(null), json!("a\nb")] {
        let mut c = claims("x");
        c["sub"] = sub;
        assert!(matches!(
            v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
            TokenError::BadClaim(_)
        ));
    }
    let mut c = claims("alice");
    c["roles"] = json!({"not": "a list"});
    assert!(matches!(
        v.validate(&idp.rsa.mint(&c)).await.unwrap_err(),
        TokenError::BadClaim(_)
    ));
}

#[tokio::test]
async fn roles_from_a_scope_string_and_a_custom_principal_claim() {
    let idp = idp().await;
    let mut cfg = config(&idp);
    cfg.roles_claim = Some("scope".into());
    cfg.principal_claim = "client_id".into();
    let v = validator(cfg);
    let mut c = claims("ignored");
    c["scope"] = json!("kafka:read kafka:write");
    c["client_id"] = json!("svc-orders");
    let t = v.validate(&idp.ed.mint(&c)).await.unwrap();
    assert_eq!(t.principal, "svc-orders");
    assert_eq!(t.roles, vec!["kafka:read", "kafka:write"]);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let idp = idp().await;
    let v = validator(config(&idp));
    for alg in ["none", "None", "NONE"] {
        let t = unsigned(&json!({"alg": alg, "kid": "rsa1"}), &claims("alice"));
        assert!(matches!(
            v.validate(&t).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed(_)
        ));
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let idp = idp().await;
    let v = validator(config(&idp));
    let n = idp.rsa.jwk["n"].as_str().unwrap().to_string();
    for secret in [idp.rsa.public_pem.as_bytes(), n.as_bytes()] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa1".into());
        let t = jsonwebtoken::encode(&header, &claims("alice"), &EncodingKey::from_secret(secret))
            .unwrap();
        let e = v.validate(&t).await.unwrap_err();
        assert!(matches!(e, TokenError::AlgorithmNotAllowed(_)), "{e:?}");
    }
    // HS256 cannot even be configured.
    let mut cfg = config(&idp);
    cfg.algorithms = vec!["HS256".into()];
    assert!(JwtValidator::new(cfg).is_err());
}

#[tokio::test]
async fn the_algorithm_must_fit_the_key_named_by_kid() {
    let idp = idp().await;
    let v = validator(config(&idp));
    // Signed with the EC key but claiming the RSA key's kid.
    let t = idp.ec.mint_with_kid(Some("rsa1"), &claims("alice"));
    assert!(matches!(
        v.validate(&t).await.unwrap_err(),
        TokenError::KeyAlgorithmMismatch { .. }
    ));
    // Configured algorithms are enforced even when the key would fit.
    let mut cfg = config(&idp);
    cfg.algorithms = vec!["RS256".into()];
    let v = validator(cfg);
    assert!(matches!(
        v.validate(&idp.ec.mint(&claims("alice")))
            .await
            .unwrap_err(),
        TokenError::AlgorithmNotAllowed(_)
    ));
}

#[tokio::test]
async fn tampered_signature_is_refused() {
    let idp = idp().await;
    let v = validator(config(&idp));
    let good = idp.rsa.mint(&claims("alice"));
    let other = idp.rsa.mint(&claims("mallory"));
    let (head, _) = other.rsplit_once('.').unwrap();
    let (_, sig) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{sig}");
    assert_eq!(
        v.validate(&forged).await.unwrap_err(),
        TokenError::BadSignature
    );
    for junk in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.e30"] {
        assert_eq!(
            v.validate(junk).await.unwrap_err().kind(),
            FailureKind::InvalidToken
        );
    }
}

#[tokio::test]
async fn unknown_kids_refetch_once_within_the_rate_limit() {
    let idp = idp().await;
    let v = validator(config(&idp));
    assert!(v.validate(&idp.rsa.mint(&claims("a"))).await.is_ok());
    assert_eq!(idp.server.hits("/jwks"), 1);
    let rogue = TestKey::rsa("rogue");
    let e = v.validate(&rogue.mint(&claims("a"))).await.unwrap_err();
    assert!(matches!(e, TokenError::UnknownKey(Some(_))), "{e:?}");
    assert_eq!(
        idp.server.hits("/jwks"),
        2,
        "one refetch for the unknown kid"
    );
    for i in 0..50 {
        let t = rogue.mint_with_kid(Some(&format!("random-{i}")), &claims("a"));
        assert!(v.validate(&t).await.is_err());
    }
    assert_eq!(
        idp.server.hits("/jwks"),
        2,
        "no more fetches within the interval"
    );
    // Known keys keep working meanwhile.
    assert!(v.validate(&idp.ed.mint(&claims("a"))).await.is_ok());
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_its_first_token() {
    let idp = idp().await;
    let mut cfg = config(&idp);
    cfg.jwks_min_refetch_secs = 1;
    let v = validator(cfg);
    assert!(v.validate(&idp.rsa.mint(&claims("a"))).await.is_ok());
    let new = Arc::new(TestKey::rsa("rsa2"));
    let doc = jwks(&[&idp.rsa, &new]);
    idp.server.set_handler(move |_| json_response(200, &doc));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        v.validate(&new.mint(&claims("b"))).await.unwrap().principal,
        "b"
    );
    assert_eq!(idp.server.hits("/jwks"), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_set() {
    let idp = idp().await;
    let v = validator(config(&idp));
    assert!(v.validate(&idp.rsa.mint(&claims("a"))).await.is_ok());
    idp.server
        .set_handler(|_| (500, "text/plain", b"down".to_vec()));
    assert!(v.keys().refresh().await.is_err());
    idp.server
        .set_handler(|_| (200, "application/json", b"{\"keys\": []}".to_vec()));
    assert!(
        v.keys().refresh().await.is_err(),
        "an empty set is not accepted"
    );
    idp.server
        .set_handler(|_| (200, "application/json", vec![b' '; 2 * 1024 * 1024]));
    assert!(v.keys().refresh().await.is_err(), "too large");
    assert!(v.validate(&idp.rsa.mint(&claims("a"))).await.is_ok());
    assert_eq!(v.keys().current().len(), 3);
}

#[tokio::test]
async fn an_unreachable_idp_fails_closed() {
    let idp = idp().await;
    idp.server.set_handler(|_| (503, "text/plain", Vec::new()));
    let v = validator(config(&idp));
    let e = v.validate(&idp.rsa.mint(&claims("a"))).await.unwrap_err();
    assert!(matches!(e, TokenError::KeysUnavailable(_)), "{e:?}");
    assert_eq!(e.kind(), FailureKind::InvalidToken);
}

#[test]
fn construction_needs_no_runtime_and_debug_shows_no_keys() {
    let rsa = TestKey::rsa("rsa1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&rsa]).to_string()).unwrap();
    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_file = Some(path.clone());
    let v = JwtValidator::new(cfg).unwrap();
    assert_eq!(v.keys().current().len(), 1);
    let debug = format!("{v:?}");
    assert!(!debug.contains(rsa.jwk["n"].as_str().unwrap()), "{debug}");

    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_url = Some("https://idp.example/jwks".into());
    assert!(JwtValidator::new(cfg).is_ok());

    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_file = Some(dir.path().join("missing.json"));
    assert!(JwtValidator::new(cfg).is_err());

    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_url = Some("http://idp.example/jwks".into());
    cfg.allow_insecure_loopback_jwks = true;
    assert!(JwtValidator::new(cfg).is_err(), "http only to loopback");
}

#[tokio::test]
async fn a_jwks_file_is_reread_when_a_new_kid_shows_up() {
    let old = TestKey::ec("old");
    let new = TestKey::ec("new");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old]).to_string()).unwrap();
    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_file = Some(path.clone());
    let v = JwtValidator::new(cfg).unwrap();
    assert!(v.validate(&old.mint(&claims("a"))).await.is_ok());
    assert!(v.validate(&new.mint(&claims("a"))).await.is_err());
    // Different length, so the change is seen even with a coarse mtime.
    std::fs::write(&path, jwks(&[&old, &new]).to_string()).unwrap();
    assert_eq!(
        v.validate(&new.mint(&claims("b"))).await.unwrap().principal,
        "b"
    );
    // A broken file keeps the last good set.
    std::fs::write(&path, "not json").unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(v.validate(&new.mint(&claims("c"))).await.is_ok());
}

#[tokio::test]
async fn a_url_source_refreshes_in_the_background() {
    use portcullis_auth::jwks::JwksCache;
    let idp = idp().await;
    let cache = JwksCache::from_url(
        &idp.server.url("/jwks"),
        true,
        Duration::from_millis(300),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        idp.server.hits("/jwks"),
        0,
        "nothing is fetched at construction"
    );
    cache
        .key_for(Some("ec1"), jsonwebtoken::Algorithm::ES256)
        .await
        .unwrap();
    assert_eq!(idp.server.hits("/jwks"), 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        idp.server.hits("/jwks") >= 3,
        "{}",
        idp.server.hits("/jwks")
    );
    // The task ends with the cache.
    drop(cache);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = idp.server.hits("/jwks");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(idp.server.hits("/jwks"), after);
}

#[tokio::test]
async fn a_missing_jwks_file_is_not_retried_for_every_token() {
    let key = TestKey::ec("k");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&key]).to_string()).unwrap();
    let mut cfg = OAuthBearerConfig::new(ISSUER, AUDIENCE);
    cfg.jwks_file = Some(path.clone());
    let v = JwtValidator::new(cfg).unwrap();
    std::fs::remove_file(&path).unwrap();
    let rogue = TestKey::ec("rogue");
    for _ in 0..20 {
        assert!(v.validate(&rogue.mint(&claims("a"))).await.is_err());
    }
    assert!(v.validate(&key.mint(&claims("a"))).await.is_ok());
    std::fs::write(&path, jwks(&[&key, &rogue]).to_string()).unwrap();
    assert!(v.validate(&rogue.mint(&claims("a"))).await.is_ok());
}
