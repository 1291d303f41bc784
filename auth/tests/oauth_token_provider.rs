//! The client-credentials token provider against a loopback token endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "oauth_support.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use portcullis_auth::oauth_client::{ClientAuthMethod, ClientCredentialsConfig, TokenProvider};
use serde_json::json;
use support::*;

const SECRET: &str = "s3cr3t-client-secret";

async fn endpoint(expires_in: u64) -> TestServer {
    let n = counter();
    TestServer::start(move |_| {
        let i = bump(&n);
        json_response(
            200,
            &json!({"access_token": format!("tok-{i}"), "token_type": "Bearer", "expires_in": expires_in}),
        )
    })
    .await
}

fn config(server: &TestServer, dir: &tempfile::TempDir) -> ClientCredentialsConfig {
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\nsecond line ignored\n")).unwrap();
    let mut c = ClientCredentialsConfig::new(server.url("/token"), "proxy");
    c.client_secret_file = Some(path);
    c.allow_insecure_loopback = true;
    c
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace('+', " ")))
        .collect()
}

#[tokio::test]
async fn fetches_once_and_serves_from_the_cache() {
    let server = endpoint(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server, &dir);
    c.scope = Some("kafka:produce kafka:consume".into());
    c.audience = Some("kafka-cluster".into());
    let p = TokenProvider::new(c).unwrap();
    let t = p.token().await.unwrap();
    assert_eq!(t.secret(), "tok-1");
    assert!(t.expires_at() > std::time::SystemTime::now() + Duration::from_secs(3500));
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    assert_eq!(server.hits("/token"), 1);

    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    let params = form(&req.body);
    let get = |k: &str| params.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    assert_eq!(get("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(get("scope").as_deref(), Some("kafka:produce kafka:consume"));
    assert_eq!(get("audience").as_deref(), Some("kafka-cluster"));
    assert!(get("client_secret").is_none(), "basic auth by default");
    assert!(req
        .headers
        .get("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn post_auth_sends_the_secret_in_the_body() {
    let server = endpoint(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server, &dir);
    c.client_auth = ClientAuthMethod::Post;
    let p = TokenProvider::new(c).unwrap();
    p.token().await.unwrap();
    let req = &server.requests()[0];
    let params = form(&req.body);
    assert!(params.contains(&("client_secret".into(), SECRET.into())));
    assert!(!req.headers.contains_key("authorization"));
}

#[tokio::test]
async fn renews_before_expiry() {
    // 3 s lifetime: renewed after half of it (the 60 s margin cannot apply).
    let server = endpoint(3).await;
    let dir = tempfile::tempdir().unwrap();
    let p = TokenProvider::new(config(&server, &dir)).unwrap();
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(p.token().await.unwrap().secret(), "tok-2");
    assert_eq!(server.hits("/token"), 2);
}

#[tokio::test]
async fn a_failed_renewal_keeps_a_still_valid_token() {
    let server = endpoint(3).await;
    let dir = tempfile::tempdir().unwrap();
    let p = TokenProvider::new(config(&server, &dir)).unwrap();
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    server.set_handler(|_| (500, "text/plain", b"down".to_vec()));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    assert_eq!(server.hits("/token"), 2);
    // Within the retry pause, no new request.
    assert_eq!(p.token().await.unwrap().secret(), "tok-1");
    assert_eq!(server.hits("/token"), 2);
}

#[tokio::test]
async fn errors_never_show_secrets() {
    let server = TestServer::start(|_| {
        json_response(
            401,
            &json!({"error": "invalid_client", "error_description": "bad client"}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = TokenProvider::new(config(&server, &dir)).unwrap();
    let e = p.token().await.unwrap_err().to_string();
    assert!(e.contains("invalid_client"), "{e}");
    assert!(!e.contains(SECRET));

    // A success body that does not parse: the token in it must not leak into the error.
    server.set_handler(|_| {
        json_response(
            200,
            &json!({"access_token": "leaky-token", "token_type": "Bearer", "expires_in": "soon"}),
        )
    });
    let e = p.token().await.unwrap_err().to_string();
    assert!(!e.contains("leaky-token"), "{e}");

    let debug = format!("{p:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    let t = portcullis_auth::oauth_client::BearerToken::new("tok-x", std::time::SystemTime::now());
    assert!(!format!("{t:?}").contains("tok-x"));
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch() {
    let server = endpoint(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(TokenProvider::new(config(&server, &dir)).unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.token().await.unwrap().secret().to_string() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "tok-1");
    }
    assert_eq!(server.hits("/token"), 1);
}

#[test]
fn construction_reads_the_secret_and_checks_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClientCredentialsConfig::new("http://127.0.0.1:9/token", "proxy");
    c.allow_insecure_loopback = true;
    assert!(TokenProvider::new(c.clone()).is_err(), "no secret source");
    c.client_secret_file = Some(dir.path().join("missing"));
    let e = TokenProvider::new(c.clone()).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    c.client_secret_file = Some(empty);
    assert!(TokenProvider::new(c.clone()).is_err(), "empty secret");
    c.client_secret_file = None;
    c.client_secret_env = Some("PORTCULLIS_TEST_UNSET_SECRET_VAR".into());
    assert!(TokenProvider::new(c.clone()).is_err());
    let mut c = ClientCredentialsConfig::new("http://idp.example/token", "proxy");
    c.client_secret_env = Some("PATH".into());
    assert!(
        TokenProvider::new(c).is_err(),
        "http needs loopback and the option"
    );
}
