//! A loopback OAuth 2.0 token endpoint for the client-credentials flow, so the proxy's own
//! upstream OAUTHBEARER login meets a real HTTP exchange. It checks the client id and
//! secret (HTTP Basic or form body), answers with a token from a caller-supplied minter, and
//! counts the tokens it issued.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A running token endpoint (a thread; it stops with the process).
pub struct TokenEndpoint {
    addr: SocketAddr,
    issued: Arc<AtomicUsize>,
}

impl TokenEndpoint {
    /// Serves `POST /token` for `client_id`/`secret` with tokens from `mint` valid for
    /// `expires_in` seconds.
    pub fn start(
        client_id: &str,
        secret: &str,
        expires_in: u64,
        mint: impl Fn() -> String + Send + 'static,
    ) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token endpoint");
        let addr = listener.local_addr().expect("addr");
        let issued = Arc::new(AtomicUsize::new(0));
        let counter = issued.clone();
        let basic = STANDARD.encode(format!("{client_id}:{secret}"));
        let form_id = format!("client_id={client_id}");
        let form_secret = format!("client_secret={secret}");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut head = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end().to_string();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push(line);
                }
                let mut body = vec![0u8; length.min(64 * 1024)];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).to_string();
                let basic_ok = head.iter().any(|h| {
                    h.to_ascii_lowercase().starts_with("authorization:") && h.ends_with(&basic)
                });
                let form_ok = body.contains(&form_id) && body.contains(&form_secret);
                let grant_ok = body.contains("grant_type=client_credentials");
                let (status, payload) = if (basic_ok || form_ok) && grant_ok {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (
                        "200 OK",
                        serde_json::json!({
                            "access_token": mint(),
                            "token_type": "Bearer",
                            "expires_in": expires_in,
                        })
                        .to_string(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"error":"invalid_client"}"#.to_string(),
                    )
                };
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                    payload.len()
                );
            }
        });
        TokenEndpoint { addr, issued }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}
