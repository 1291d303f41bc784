//! The audit part of the proxy's admin HTTP API, as an axum [`Router`] over a running
//! [`AuditLog`].
//!
//! The proxy nests it under its admin server (which owns authentication of admin callers) so
//! `portcullis audit ...` can work against a running proxy, whose data directory is locked.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /audit/query?principal=&category=&action=&outcome=&resource=&client_addr=&since=&until=&newest_first=true&limit=` | JSON array of events |
//! | `GET /audit/tail?n=20&after=SEQ` | JSON array of events, oldest first |
//! | `GET /audit/checkpoint` | latest signed checkpoint (text) |
//! | `POST /audit/checkpoint` | signs one now if the log grew; returns it (text) |
//! | `GET /audit/pubkey` | verifier keys, oldest first, one per line (text) |
//! | `GET /audit/prove/{seq}` | inclusion proof file (JSON) |
//! | `POST /audit/rotate-key` | rotates the signing key; returns the new verifier key (text) |
//! | `POST /audit/verify` | verifies the log (body: [`VerifyRequest`]); answers [`VerifyAnswer`] |
//! | `GET /audit/export?from=&to=&format=jsonl\|ocsf` | an export directory as [`ExportAnswer`] (built in a fresh private temporary directory, then removed) |
//!
//! The calls that change the log (`POST /audit/checkpoint`, `POST /audit/rotate-key`) and the
//! export are admin actions: each first records an `admin` event (`admin.audit.<verb>`, with
//! the caller's address when the server provides `ConnectInfo`) through
//! [`AuditLog::record`], and is refused with 503 when that event cannot be recorded under the
//! `admin` category's `reject` policy.

#![allow(clippy::result_large_err)] // handlers answer with a Response either way

use crate::anchor::SharedAnchor;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::checkpoint::SignedCheckpoint;
use crate::event::{Category, Event, Outcome};
use crate::export::ExportFormat;
use crate::log::AuditLog;
use crate::note::VerifierKey;
use crate::read::{self, QueryFilter, ReadError};
use crate::verify::{verify_store, ExternalCheckpoint, VerifyOptions};

/// The body of `POST /audit/verify`: what `portcullis audit verify` would read from files.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct VerifyRequest {
    /// Trusted verifier keys (default: the log's first key).
    #[serde(default)]
    pub keys: Vec<String>,
    /// A saved checkpoint note: verify only what was appended after it (and that it is still
    /// a prefix of the log).
    #[serde(default)]
    pub since_checkpoint: Option<String>,
    /// The text of an anchor file (checkpoints published off the host).
    #[serde(default)]
    pub anchor: Option<String>,
    /// Notes read from an anchor several logs share (the Kafka anchor topic); only this
    /// log's checkpoints are checked.
    #[serde(default)]
    pub shared_anchor: Option<SharedAnchor>,
}

/// The answer of `POST /audit/verify`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VerifyAnswer {
    /// Whether the log verifies.
    pub ok: bool,
    /// The report, as `portcullis audit verify` prints it.
    pub report: String,
}

/// The answer of `GET /audit/export`: the files of an export directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExportAnswer {
    /// First sequence number exported.
    pub from: u64,
    /// One past the last.
    pub to: u64,
    /// Checkpoints covering the range.
    pub checkpoints: usize,
    /// File name -> content.
    pub files: BTreeMap<String, String>,
}

/// The router; nest it in the admin server: `admin.merge(portcullis_audit::admin_api::router(log))`.
pub fn router(log: AuditLog) -> Router {
    Router::new()
        .route("/audit/query", get(query))
        .route("/audit/tail", get(tail))
        .route("/audit/checkpoint", get(checkpoint).post(checkpoint_now))
        .route("/audit/pubkey", get(pubkey))
        .route("/audit/prove/{seq}", get(prove))
        .route("/audit/rotate-key", post(rotate_key))
        .route("/audit/verify", post(verify))
        .route("/audit/export", get(export))
        .with_state(log)
}

fn error(status: StatusCode, msg: impl ToString) -> Response {
    (status, msg.to_string()).into_response()
}

fn read_error(e: ReadError) -> Response {
    match e {
        ReadError::Unavailable(m) => error(StatusCode::NOT_FOUND, m),
        ReadError::Store(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Decodes `%XX` and `+` in a query-string component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(raw: Option<String>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn enum_value<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T, Response> {
    serde_json::from_value(serde_json::Value::String(v.to_owned()))
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("bad {key}: {v:?}")))
}

fn filter_from(raw: Option<String>) -> Result<QueryFilter, Response> {
    let mut f = QueryFilter::default();
    for (k, v) in params(raw) {
        match k.as_str() {
            "since" => f.since = Some(v),
            "until" => f.until = Some(v),
            "principal" => f.principal = Some(v),
            "category" => f.category = Some(enum_value(&k, &v)?),
            "outcome" => f.outcome = Some(enum_value(&k, &v)?),
            "action" => f.action = Some(v),
            "resource" => f.resource = Some(v),
            "client_addr" => f.client_addr = Some(v),
            "newest_first" => f.newest_first = v == "true" || v == "1",
            "limit" => {
                f.limit = v
                    .parse()
                    .map_err(|_| error(StatusCode::BAD_REQUEST, "bad limit"))?;
            }
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {k}"),
                ))
            }
        }
    }
    Ok(f)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(read_error),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn query(State(log): State<AuditLog>, RawQuery(raw): RawQuery) -> Response {
    let filter = match filter_from(raw) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match blocking(move || read::query(log.store(), &filter)).await {
        Ok(events) => Json(events).into_response(),
        Err(r) => r,
    }
}

async fn tail(State(log): State<AuditLog>, RawQuery(raw): RawQuery) -> Response {
    let mut n = 20usize;
    let mut after = None;
    for (k, v) in params(raw) {
        match (k.as_str(), v.parse::<u64>()) {
            ("n", Ok(x)) => n = usize::try_from(x).unwrap_or(usize::MAX).min(10_000),
            ("after", Ok(x)) => after = Some(x),
            _ => return error(StatusCode::BAD_REQUEST, format!("bad parameter {k}")),
        }
    }
    let res = blocking(move || match after {
        Some(a) => read::entries_after(log.store(), Some(a), n),
        None => read::tail(log.store(), n),
    })
    .await;
    match res {
        Ok(entries) => {
            let events: Vec<Event> = entries
                .iter()
                .filter_map(|(_, b)| serde_json::from_slice(b).ok())
                .collect();
            Json(events).into_response()
        }
        Err(r) => r,
    }
}

async fn checkpoint(State(log): State<AuditLog>) -> Response {
    match read::latest_checkpoint(log.store()) {
        Ok(note) => note.into_response(),
        Err(e) => read_error(e),
    }
}

/// Records the admin action `verb` before it runs; `Err` (503) when the `admin` policy says
/// the action may not run unrecorded.
async fn admit(log: &AuditLog, parts: &Parts, verb: &str) -> Result<(), Response> {
    let mut event = Event::new(
        Category::Admin,
        format!("admin.audit.{verb}"),
        Outcome::Allow,
    )
    .reason(format!("{} {}", parts.method, parts.uri.path()));
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        event = event.client_addr(*addr);
    }
    match log.record(event).await {
        Ok(_) => Ok(()),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("refused: {e}"),
        )),
    }
}

async fn checkpoint_now(State(log): State<AuditLog>, parts: Parts) -> Response {
    if let Err(r) = admit(&log, &parts, "checkpoint").await {
        return r;
    }
    match log.checkpoint_now().await {
        Ok(note) => note.into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn pubkey(State(log): State<AuditLog>) -> Response {
    match read::verifier_keys(log.store()) {
        Ok(keys) => (keys.join("\n") + "\n").into_response(),
        Err(e) => read_error(e),
    }
}

async fn prove(State(log): State<AuditLog>, Path(seq): Path<u64>) -> Response {
    match blocking(move || read::prove(log.store(), seq)).await {
        Ok(p) => Json(p).into_response(),
        Err(r) => r,
    }
}

async fn rotate_key(State(log): State<AuditLog>, parts: Parts) -> Response {
    if let Err(r) = admit(&log, &parts, "rotate-key").await {
        return r;
    }
    match log.rotate_key().await {
        Ok(key) => (key.to_string() + "\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Builds verification options from what a caller sent (keys, saved checkpoint, anchor text,
/// notes of a shared anchor, of which those of the log named `origin` are kept).
///
/// # Errors
///
/// A message naming the input that does not parse.
pub fn verify_options(req: &VerifyRequest, origin: &str) -> Result<VerifyOptions, String> {
    let mut opts = VerifyOptions::default();
    for k in &req.keys {
        opts.keys
            .push(VerifierKey::parse(k.trim()).map_err(|e| format!("key {k:?}: {e}"))?);
    }
    if let Some(text) = &req.since_checkpoint {
        let checkpoint =
            SignedCheckpoint::parse(text).map_err(|e| format!("saved checkpoint: {e}"))?;
        opts.since = Some(ExternalCheckpoint {
            checkpoint,
            source: "saved checkpoint".into(),
        });
    }
    if let Some(text) = &req.anchor {
        for (i, cp) in crate::verify::parse_anchor(text).into_iter().enumerate() {
            let checkpoint = cp.map_err(|e| format!("anchor checkpoint {}: {e}", i + 1))?;
            opts.anchors.push(ExternalCheckpoint {
                checkpoint,
                source: "anchor".into(),
            });
        }
    }
    if let Some(shared) = &req.shared_anchor {
        opts.anchors.extend(shared.checkpoints_of(Some(origin))?.0);
    }
    Ok(opts)
}

async fn verify(State(log): State<AuditLog>, Json(req): Json<VerifyRequest>) -> Response {
    let opts = match verify_options(&req, log.origin()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let res = blocking(move || {
        let report = verify_store(log.store(), &opts);
        let mut text = Vec::new();
        let ok = report.ok();
        // Writing into a Vec cannot fail.
        let _ = crate::cli::print_report(&report, &mut text);
        Ok(VerifyAnswer {
            ok,
            report: String::from_utf8_lossy(&text).into_owned(),
        })
    })
    .await;
    match res {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => r,
    }
}

async fn export(State(log): State<AuditLog>, parts: Parts) -> Response {
    let mut from = None;
    let mut to = None;
    let mut format = ExportFormat::Jsonl;
    for (k, v) in params(parts.uri.query().map(str::to_owned)) {
        match k.as_str() {
            "from" | "to" => match v.parse::<u64>() {
                Ok(x) if k == "from" => from = Some(x),
                Ok(x) => to = Some(x),
                Err(_) => return error(StatusCode::BAD_REQUEST, format!("bad {k}")),
            },
            "format" => match v.as_str() {
                "jsonl" => format = ExportFormat::Jsonl,
                "ocsf" => format = ExportFormat::Ocsf,
                _ => return error(StatusCode::BAD_REQUEST, "format is jsonl or ocsf"),
            },
            _ => return error(StatusCode::BAD_REQUEST, format!("unknown parameter {k}")),
        }
    }
    if let Err(r) = admit(&log, &parts, "export").await {
        return r;
    }
    let res = blocking(move || {
        // A fresh directory with an unpredictable name, created mode 0700 (mkdir fails on
        // anything already there), removed when dropped: nothing another local user planted
        // in the temporary directory is used or followed.
        let dir = tempfile::Builder::new()
            .prefix("portcullis-export-")
            .tempdir()
            .map_err(|e| ReadError::Unavailable(format!("export directory: {e}")))?;
        export_files(&log, dir.path(), format, from, to)
    })
    .await;
    match res {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => r,
    }
}

fn export_files(
    log: &AuditLog,
    dir: &std::path::Path,
    format: ExportFormat,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<ExportAnswer, ReadError> {
    let summary = crate::export::export(log.store(), dir, format, from, to)?;
    let mut files = BTreeMap::new();
    let listing =
        std::fs::read_dir(dir).map_err(|e| ReadError::Unavailable(format!("export: {e}")))?;
    for item in listing {
        let item = item.map_err(|e| ReadError::Unavailable(format!("export: {e}")))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(item.path())
            .map_err(|e| ReadError::Unavailable(format!("export {name}: {e}")))?;
        files.insert(name, text);
    }
    Ok(ExportAnswer {
        from: summary.from,
        to: summary.to,
        checkpoints: summary.checkpoints,
        files,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        assert_eq!(decode("2025-01-31T12%3A00"), "2025-01-31T12:00");
        assert_eq!(decode("a+b%"), "a b%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        let f = filter_from(Some(
            "principal=alice&category=authn&newest_first=true&limit=5".into(),
        ))
        .unwrap();
        assert_eq!(f.principal.as_deref(), Some("alice"));
        assert_eq!(f.limit, 5);
        assert!(filter_from(Some("bogus=1".into())).is_err());
        assert!(filter_from(Some("category=nope".into())).is_err());
    }
}
