//! Bearer-token protection of the admin API's `/audit/...` routes.
//!
//! Those routes read the audit log (principals, client addresses, resources), sign
//! checkpoints, export and rotate the audit signing key. There is always a token:
//!
//! - `admin.token_file` set: every `/audit/...` request must carry
//!   `Authorization: Bearer <token>`. Required when the listener is not on loopback.
//! - `admin.token_file` not set (loopback only): the proxy creates a token at first start in
//!   `<audit.data_dir>/admin.token` ([`GENERATED_TOKEN_FILE`], 64 hex characters, mode 0600,
//!   never overwritten) and logs where it is, never what it is. Reads (`GET`) are open to the
//!   host's own users as before; every mutating request (`POST`, `PUT`, `DELETE`, ...: key
//!   rotation, signing a checkpoint, verification) needs the token, so a web page the
//!   operator's browser opens cannot trigger them (a cross-site form can send a `POST`, never
//!   an `Authorization` header). `portcullis audit --config FILE` finds the token the same way.
//!
//! A refused call is answered 401 and written to the audit log (`admin` / `admin.auth` /
//! `deny`), never with the token it presented. `/metrics`, `/healthz` and `/readyz` stay open
//! for scrapers and orchestrators.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_audit::{AuditSink, Category, Event, Outcome};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token accepted (characters).
pub const MIN_TOKEN_LEN: usize = 24;

/// The token file the proxy creates in `audit.data_dir` when `admin.token_file` is not set.
pub const GENERATED_TOKEN_FILE: &str = "admin.token";

/// Random bytes in a generated token (written as hex).
const GENERATED_TOKEN_BYTES: usize = 32;

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

    /// Loads the token at `path`, creating it first if there is no file: 32 random bytes
    /// as hex, written with `create_new` (never through a planted file or symlink) and mode
    /// 0600. An existing file must not be readable or writable by group or others. Returns
    /// the token and whether it was created.
    ///
    /// # Errors
    ///
    /// Why the token cannot be created or used; never its content.
    pub fn load_or_create(path: &Path) -> Result<(AdminToken, bool), String> {
        match create_token_file(path) {
            Ok(token) => return Ok((AdminToken::new(&token)?, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::symlink_metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if !meta.file_type().is_file() {
                return Err(format!("{} is not a plain file", path.display()));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} is accessible to other users (mode {mode:o}); chmod 600 it",
                    path.display()
                ));
            }
        }
        Ok((AdminToken::load(path)?, false))
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// Creates `path` with a fresh random token; `AlreadyExists` if there is a file (or link).
fn create_token_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write as _;
    let mut bytes = [0u8; GENERATED_TOKEN_BYTES];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no secure random numbers"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// The admin token of a configuration and whether reads need it: `admin.token_file` if set
/// (reads need it), else the token in `<audit.data_dir>/admin.token`, created if missing
/// (only mutating requests need it). Logs where the token is, never the token.
///
/// # Errors
///
/// Why the token cannot be loaded or created.
pub fn for_config(config: &crate::config::Config) -> Result<(Arc<AdminToken>, bool), String> {
    if let Some(file) = &config.admin.token_file {
        let token = AdminToken::load(file).map_err(|e| format!("admin.token_file: {e}"))?;
        return Ok((Arc::new(token), true));
    }
    let path = config.admin_token_path();
    let (token, created) =
        AdminToken::load_or_create(&path).map_err(|e| format!("admin token: {e}"))?;
    if created {
        tracing::info!(file = %path.display(), "created the admin API token (admin.token_file not set); mutating admin requests need it");
    } else {
        tracing::info!(file = %path.display(), "admin API token (admin.token_file not set); mutating admin requests need it");
    }
    Ok((Arc::new(token), false))
}

/// What [`require_token`] needs.
#[derive(Clone)]
pub struct TokenGuard {
    /// The token callers must present.
    pub token: Arc<AdminToken>,
    /// Where refused calls are recorded.
    pub audit: Arc<dyn AuditSink>,
    /// Whether reads (`GET`, `HEAD`) need the token too; mutating requests always do.
    pub reads_need_token: bool,
}

/// Middleware: passes the request on only with `Authorization: Bearer <token>`.
pub async fn require_token(
    State(guard): State<TokenGuard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if read && !guard.reads_need_token {
        return next.run(request).await;
    }
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
        format!("{reason}: this admin request needs Authorization: Bearer <admin token> (admin.token_file, else <audit.data_dir>/admin.token)\n"),
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

    #[cfg(unix)]
    #[test]
    fn a_missing_token_is_created_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATED_TOKEN_FILE);
        let (first, created) = AdminToken::load_or_create(&path).unwrap();
        assert!(created);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 2 * GENERATED_TOKEN_BYTES, "{text}");
        assert!(first.matches(text.trim()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = AdminToken::load_or_create(&path).unwrap();
        assert!(!created, "an existing token is never replaced");
        assert!(again.matches(text.trim()));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = AdminToken::load_or_create(&path).unwrap_err();
        assert!(err.contains("other users"), "{err}");
        assert!(!err.contains(text.trim()), "{err}");

        // A planted link is not followed (nor written through).
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "").unwrap();
        let link = dir.path().join("linked.token");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(AdminToken::load_or_create(&link).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "");
    }
}
