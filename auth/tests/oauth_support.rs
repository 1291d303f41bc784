//! Shared helpers of the OAuth tests: a tiny loopback HTTP/1.1 server, test keys in the
//! shapes jsonwebtoken and a JWKS need, and token minting. Included by the `oauth_*` tests
//! with `#[path]`; as its own test target it holds no tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// What the handler answers: status, content type, body.
pub type Response = (u16, &'static str, Vec<u8>);

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A loopback HTTP server answering every request with a replaceable handler and counting
/// requests per path.
#[derive(Clone)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    handler: Arc<Mutex<Handler>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    /// Binds a loopback port and serves in the background.
    pub async fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TestServer {
            addr: listener.local_addr().unwrap(),
            handler: Arc::new(Mutex::new(Arc::new(handler))),
            hits: Arc::default(),
            requests: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    *s.hits
                        .lock()
                        .unwrap()
                        .entry(request.path.clone())
                        .or_default() += 1;
                    let handler = s.handler.lock().unwrap().clone();
                    let (status, content_type, body) = handler(&request);
                    s.requests.lock().unwrap().push(request);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        server
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replaces the handler.
    pub fn set_handler(&self, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Every request seen.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// A JSON response.
pub fn json_response(status: u16, body: &Value) -> Response {
    (status, "application/json", body.to_string().into_bytes())
}

/// A signing key with its public JWK.
pub struct TestKey {
    /// The algorithm it signs with.
    pub alg: Algorithm,
    /// Its key id.
    pub kid: String,
    /// The private key for jsonwebtoken.
    pub encoding: EncodingKey,
    /// The public JWK.
    pub jwk: Value,
    /// The public key as PEM (for the HMAC confusion attack).
    pub public_pem: String,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads one DER TLV: (tag, content, rest).
fn der(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, start) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        0x81 => (input[2] as usize, 3),
        0x82 => (((input[2] as usize) << 8) | input[3] as usize, 4),
        0x83 => (
            ((input[2] as usize) << 16) | ((input[3] as usize) << 8) | input[4] as usize,
            5,
        ),
        other => panic!("unsupported DER length {other:#x}"),
    };
    (tag, &input[start..start + len], &input[start + len..])
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

impl TestKey {
    /// A fresh RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        // PKCS#8 PrivateKeyInfo -> the PKCS#1 RSAPrivateKey inside, which jsonwebtoken's
        // aws-lc backend wants.
        let pkcs8 = pair.serialize_der();
        let (_, info, _) = der(&pkcs8);
        let (_, _version, rest) = der(info);
        let (_, _alg, rest) = der(rest);
        let (tag, pkcs1, _) = der(rest);
        assert_eq!(tag, 0x04);
        // RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }
        let raw = pair.public_key_raw();
        let (_, seq, _) = der(raw);
        let (_, n, rest) = der(seq);
        let (_, e, _) = der(rest);
        TestKey {
            alg: Algorithm::RS256,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_der(pkcs1),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": b64(strip_zeros(n)), "e": b64(strip_zeros(e))}),
            public_pem: pair.public_key_pem(),
        }
    }

    /// A fresh P-256 key for ES256.
    pub fn ec(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        assert_eq!(raw.len(), 65);
        TestKey {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                        "x": b64(&raw[1..33]), "y": b64(&raw[33..])}),
            public_pem: pair.public_key_pem(),
        }
    }

    /// A fresh Ed25519 key for EdDSA.
    pub fn ed(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": b64(pair.public_key_raw())}),
            public_pem: pair.public_key_pem(),
        }
    }

    /// Signs `claims` with this key, with a `kid` header unless `kid` is `None`.
    pub fn mint_with_kid(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// Signs `claims` with this key and its `kid`.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_kid(Some(&self.kid), claims)
    }
}

/// A JWKS document holding these keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// The issuer of test tokens.
pub const ISSUER: &str = "https://idp.test";
/// The audience of test tokens.
pub const AUDIENCE: &str = "kafka";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that pass the default test configuration, for subject `sub`.
pub fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": now() + 600, "iat": now()})
}

/// A hand-made unsigned token with this header.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A counter usable from handlers.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Increments and returns the new value.
pub fn bump(c: &AtomicUsize) -> usize {
    c.fetch_add(1, Ordering::SeqCst) + 1
}
