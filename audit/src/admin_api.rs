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

#![allow(clippy::result_large_err)] // handlers answer with a Response either way

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::event::Event;
use crate::log::AuditLog;
use crate::read::{self, QueryFilter, ReadError};

/// The router; nest it in the admin server: `admin.merge(portcullis_audit::admin_api::router(log))`.
pub fn router(log: AuditLog) -> Router {
    Router::new()
        .route("/audit/query", get(query))
        .route("/audit/tail", get(tail))
        .route("/audit/checkpoint", get(checkpoint).post(checkpoint_now))
        .route("/audit/pubkey", get(pubkey))
        .route("/audit/prove/{seq}", get(prove))
        .route("/audit/rotate-key", post(rotate_key))
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

async fn checkpoint_now(State(log): State<AuditLog>) -> Response {
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

async fn rotate_key(State(log): State<AuditLog>) -> Response {
    match log.rotate_key().await {
        Ok(key) => (key.to_string() + "\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
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
