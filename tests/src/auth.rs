//! Client authentication for end-to-end tests.
//!
//! Credentials are made the way an operator makes them: users with the real
//! `portcullis users` command, certificates with `portcullis certs init` (plus rcgen for the
//! ones an operator would never make on purpose: expired, from a foreign CA). Tokens are
//! JWTs the test mints itself with its own ES256 key, published in a JWKS file the proxy
//! reads, so every token check (signature, issuer, audience, expiry) meets real input.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::proxy::proxy_binary;
use crate::{Broker, Proxy, ProxyOptions};

/// Issuer every test token carries (unless a test forges another).
pub const ISSUER: &str = "https://idp.portcullis.test";
/// Audience every test token carries (unless a test forges another).
pub const AUDIENCE: &str = "kafka";

/// The claims of a JWT, without verifying anything (what a client library does to learn
/// when its token expires).
pub fn unverified_claims(token: &str) -> Result<Value, String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| "token is not a JWT".to_string())?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("token payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("token payload is not JSON: {e}"))
}

/// Runs `portcullis users --store STORE ARGS...` with `stdin`; panics with its output on
/// failure; returns stdout.
pub fn users_cli(store: &Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(proxy_binary())
        .arg("users")
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis users");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("portcullis users");
    assert!(
        out.status.success(),
        "portcullis users {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Adds `name` with `password` and `roles` to the store.
pub fn add_user(store: &Path, name: &str, password: &str, roles: &[&str]) {
    let mut args = vec!["add", name, "--password-stdin"];
    let roles = roles.join(",");
    if !roles.is_empty() {
        args.extend(["--roles", &roles]);
    }
    users_cli(store, &args, &format!("{password}\n"));
}

/// Removes `name` from the store.
pub fn remove_user(store: &Path, name: &str) {
    users_cli(store, &["remove", name], "");
}

/// A test identity provider: an ES256 key, its JWKS file, and a token minter.
#[derive(Clone)]
pub struct TokenIssuer {
    key: jsonwebtoken::EncodingKey,
    kid: String,
    jwks_path: PathBuf,
    public_key_raw: Vec<u8>,
}

impl TokenIssuer {
    /// Makes a key with id `kid` and writes its JWKS to `dir/jwks.json`.
    pub fn new(dir: &Path, kid: &str) -> TokenIssuer {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate ES256 key");
        let key = jsonwebtoken::EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes())
            .expect("ES256 key as PEM");
        let raw = key_pair.public_key_raw().to_vec();
        let issuer = TokenIssuer {
            key,
            kid: kid.into(),
            jwks_path: dir.join("jwks.json"),
            public_key_raw: raw,
        };
        std::fs::write(&issuer.jwks_path, issuer.jwks().to_string()).expect("write JWKS");
        issuer
    }

    /// The JWKS document with this issuer's public key.
    pub fn jwks(&self) -> Value {
        // Uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = self.public_key_raw[1..].split_at(32);
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// The JWKS file the proxy reads.
    pub fn jwks_path(&self) -> &Path {
        &self.jwks_path
    }

    /// The raw public key bytes (for forging an HS256 token keyed with them).
    pub fn public_key_raw(&self) -> &[u8] {
        &self.public_key_raw
    }

    /// A valid token for `sub` with `roles` in a `groups` claim, valid for `ttl`.
    pub fn token(&self, sub: &str, roles: &[&str], ttl: Duration) -> String {
        let now = now_secs();
        self.sign(json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "groups": roles,
            "iat": now, "nbf": now - 5, "exp": now + ttl.as_secs() as i64,
        }))
    }

    /// Signs arbitrary claims with this issuer's key (for tokens with wrong claims).
    pub fn sign(&self, claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign token")
    }

    /// The `[auth.oauthbearer]` table for a proxy trusting this issuer.
    pub fn proxy_toml(&self) -> String {
        format!(
            "[auth.oauthbearer]\njwks_file = {}\nissuer = {}\naudience = [{}]\nalgorithms = [\"ES256\"]\nroles_claim = \"groups\"\n",
            toml_str(&self.jwks_path.to_string_lossy()),
            toml_str(ISSUER),
            toml_str(AUDIENCE)
        )
    }
}

/// A token with `alg: none` and no signature.
pub fn unsigned_token(sub: &str) -> String {
    let now = now_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300});
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// An HS256 token whose HMAC key is `secret` (the issuer's public key, in the classic
/// algorithm-confusion attack).
pub fn hs256_token(sub: &str, secret: &[u8], kid: &str) -> String {
    let now = now_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.into());
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now + 300});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign HS256")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes a client certificate for `cn` signed by the CA in `certs_dir` (`ca.pem`,
/// `ca.key` from `portcullis certs init`) that expired yesterday; returns (cert, key).
pub fn expired_client_cert(certs_dir: &Path, cn: &str, out_dir: &Path) -> (PathBuf, PathBuf) {
    let ca_pem = std::fs::read_to_string(certs_dir.join("ca.pem")).expect("read ca.pem");
    let ca_key = rcgen::KeyPair::from_pem(
        &std::fs::read_to_string(certs_dir.join("ca.key")).expect("ca.key"),
    )
    .expect("parse ca.key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).expect("CA as issuer");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign expired cert");
    let cert_path = out_dir.join(format!("expired-{cn}.pem"));
    let key_path = out_dir.join(format!("expired-{cn}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// Quotes `s` as a TOML string.
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// A broker, a proxy with authentication, and the credentials behind it.
pub struct Setup {
    /// The broker.
    pub broker: Broker,
    /// The proxy in front of it.
    pub proxy: Proxy,
    /// The credential store (alice/alice-secret, bob/bob-secret).
    pub users: PathBuf,
    /// The identity provider the proxy trusts.
    pub issuer: TokenIssuer,
    _dir: tempfile::TempDir,
}

/// What to turn on.
pub struct Auth<'a> {
    /// `listener.auth.sasl_mechanisms`.
    pub mechanisms: &'a [&'a str],
    /// Client-facing TLS.
    pub tls: bool,
    /// `[listener.auth]` lines beyond `sasl_mechanisms`.
    pub listener_extra: &'a str,
    /// `[auth]` lines beyond `users_file` (further tables may follow).
    pub auth_extra: &'a str,
}

impl Default for Auth<'_> {
    fn default() -> Self {
        Auth {
            mechanisms: &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"],
            tls: false,
            listener_extra: "",
            auth_extra: "",
        }
    }
}

/// Starts a broker and a proxy with `auth`, users alice and bob, and a token issuer.
pub fn start(auth: Auth<'_>) -> Setup {
    start_tuned(auth, |_| {})
}

/// [`start`], with further proxy options set by `tune` (for example a slower
/// `metadata_refresh_ms`).
pub fn start_tuned(auth: Auth<'_>, tune: impl FnOnce(&mut ProxyOptions)) -> Setup {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    add_user(&users, "alice", "alice-secret", &["producers"]);
    add_user(&users, "bob", "bob-secret", &["consumers", "analytics"]);
    let issuer = TokenIssuer::new(dir.path(), "key-1");
    let mechanisms: Vec<String> = auth.mechanisms.iter().map(|m| toml_str(m)).collect();
    let extra = format!(
        "[listener.auth]\nsasl_mechanisms = [{}]\n{}\n\n[auth]\nusers_file = {}\nusers_reload_ms = 200\nfailure_delay_ms = 10\n{}\n\n{}",
        mechanisms.join(", "),
        auth.listener_extra,
        toml_str(&users.to_string_lossy()),
        auth.auth_extra,
        issuer.proxy_toml(),
    );
    let mut options = ProxyOptions {
        tls: auth.tls,
        extra_toml: extra,
        ..ProxyOptions::default()
    };
    tune(&mut options);
    let proxy = Proxy::start_with(&broker, options);
    Setup {
        broker,
        proxy,
        users,
        issuer,
        _dir: dir,
    }
}
