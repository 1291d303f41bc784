//! Bearer-token protection of the admin API's `/audit/...` routes.
//!
//! Those routes read the audit log (principals, client addresses, resources), sign
//! checkpoints, export and rotate the audit signing key. On loopback the host's own users are
//! trusted; anywhere else the proxy refuses to start unless `admin.token_file` names a token,
//! and then every `/audit/...` request must carry `Authorization: Bearer <token>`. A refused
//! call is answered 401 and written to the audit log (`admin` / `admin.auth` / `deny`), never
//! with the token it presented. `/metrics`, `/healthz` and `/readyz` stay open for scrapers
//! and orchestrators.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_audit::{AuditSink, Category, Event, Outcome};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted (characters).
pub const MIN_TOKEN_LEN: usize = 24;

/// The admin token, kept only as its SHA-256 (compared in constant time).
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads the token from `path` (surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// Why the file cannot serve as a token (unreadable, too short, contains whitespace);
    /// never the file's content.
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AdminToken::new(text.trim()).map_err(|why| format!("{}: {why}", path.display()))
    }

    /// A token from its text.
    ///
    /// # Errors
    ///
    /// Why `token` is too weak to protect the admin API.
    pub fn new(token: &str) -> Result<AdminToken, String> {
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters (for example the output of `openssl rand -hex 32`)"
            ));
        }
        if token.chars().any(char::is_whitespace) {
            return Err("the token must not contain whitespace".into());
        }
        Ok(AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// What [`require_token`] needs.
#[derive(Clone)]
pub struct TokenGuard {
    /// The token callers must present.
    pub token: Arc<AdminToken>,
    /// Where refused calls are recorded.
    pub audit: Arc<dyn AuditSink>,
}

/// Middleware: passes the request on only with `Authorization: Bearer <token>`.
pub async fn require_token(
    State(guard): State<TokenGuard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let reason = match presented {
        Some(token) if guard.token.matches(token.trim()) => return next.run(request).await,
        Some(_) => "wrong bearer token",
        None => "no bearer token",
    };
    guard.audit.emit(
        Event::new(Category::Admin, "admin.auth", Outcome::Deny)
            .client_addr(peer)
            .reason(reason)
            .detail("path", request.uri().path().to_string()),
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{reason}: the audit API needs Authorization: Bearer <admin.token_file>\n"),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_weak_ones_are_refused() {
        let token = AdminToken::new("0123456789abcdef0123456789abcdef").unwrap();
        assert!(token.matches("0123456789abcdef0123456789abcdef"));
        assert!(!token.matches("0123456789abcdef0123456789abcdee"));
        assert!(!token.matches(""));
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("0123456789abcdef 0123456789abcdef").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123456789abcdef\n").unwrap();
        assert!(AdminToken::load(&path)
            .unwrap()
            .matches("0123456789abcdef0123456789abcdef"));
        std::fs::write(&path, "tiny-secret\n").unwrap();
        let err = AdminToken::load(&path).unwrap_err();
        assert!(!err.contains("tiny-secret"), "{err}");
    }
}
