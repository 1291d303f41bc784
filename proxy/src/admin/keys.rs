//! The admin API's key routes: the `portcullis keys` commands served by a running proxy on
//! its own keyring (so its caches see the change at once).
//!
//! | route                              | command                  |
//! |------------------------------------|--------------------------|
//! | `GET /keys`                        | `keys list`              |
//! | `GET /keys/{topic}`                | `keys status --topic`    |
//! | `POST /keys/{topic}/rotate`        | `keys rotate --topic`    |
//! | `POST /keys/{topic}/rewrap`        | `keys rewrap --topic`    |
//! | `POST /keys/{topic}/retire`        | `keys retire --topic`    |
//! | `POST /keys/{topic}/shred`         | `keys shred --topic`     |
//!
//! Every route needs the bearer token (reads too: key inventories name topics and show
//! rotation state). A command that changes keys is audited twice in the `key` category
//! (`sync`): the request, durable before anything changes (if it cannot be recorded the
//! command is refused, 503), and the outcome.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_audit::{AuditLog, Outcome};
use portcullis_crypto::Keyring;

use crate::encryption::key_admin::{self, KeyCommand};

/// Who the audit events of these routes name.
const BY: &str = "admin-api";

/// What the key routes need.
#[derive(Clone)]
pub struct KeysState {
    /// The proxy's keyring.
    pub keyring: Arc<Keyring>,
    /// The audit log the commands are recorded in.
    pub audit: AuditLog,
}

/// The key routes (the caller adds the token guard and the `Host` check).
pub fn router(state: KeysState) -> Router {
    Router::new()
        .route("/keys", get(list))
        .route("/keys/{topic}", get(status))
        .route("/keys/{topic}/{command}", post(change))
        .with_state(state)
}

/// The method and path of `command` on the admin API.
pub fn path_of(command: &KeyCommand) -> (&'static str, String) {
    match command.topic() {
        None => ("GET", "/keys".to_owned()),
        Some(topic) if !command.mutates() => ("GET", format!("/keys/{}", encode(topic))),
        Some(topic) => (
            "POST",
            format!("/keys/{}/{}", encode(topic), command.name()),
        ),
    }
}

/// Topic names are `[A-Za-z0-9._-]`, which need no escaping in a path; anything else is
/// percent-encoded so a bad name reaches the keyring (and its clear error) intact.
fn encode(topic: &str) -> String {
    topic
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn list(State(state): State<KeysState>) -> Response {
    execute(state, KeyCommand::List).await
}

async fn status(State(state): State<KeysState>, Path(topic): Path<String>) -> Response {
    execute(state, KeyCommand::Status { topic }).await
}

async fn change(
    State(state): State<KeysState>,
    Path((topic, command)): Path<(String, String)>,
) -> Response {
    let command = match KeyCommand::parse(&command, Some(topic)) {
        Ok(c) if c.mutates() => c,
        Ok(_) | Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                format!("no key command {command:?}\n"),
            )
                .into_response()
        }
    };
    let requested = key_admin::audit_event(&command, Outcome::Success, "requested", BY);
    if let Err(e) = state.audit.record(requested).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("refused: the key command could not be audited ({e})\n"),
        )
            .into_response();
    }
    execute(state, command).await
}

/// Runs `command` off the async workers and answers its JSON (400 for what the keyring
/// refused: unknown or shredded topic, a KEK still in use).
async fn execute(state: KeysState, command: KeyCommand) -> Response {
    let keyring = state.keyring.clone();
    let to_run = command.clone();
    let result = tokio::task::spawn_blocking(move || key_admin::run(&keyring, &to_run)).await;
    let result = match result {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the key command failed: {e}")),
    };
    if command.mutates() {
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut done = key_admin::audit_event(&command, outcome, "done", BY);
        if let Err(reason) = &result {
            done = done.reason(reason.clone());
        }
        if let Err(e) = state.audit.record(done).await {
            tracing::error!(command = command.name(), error = %e,
                "the outcome of a key command could not be audited");
        }
    }
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_routes() {
        assert_eq!(path_of(&KeyCommand::List), ("GET", "/keys".to_owned()));
        assert_eq!(
            path_of(&KeyCommand::Status {
                topic: "a.b".into()
            }),
            ("GET", "/keys/a.b".to_owned())
        );
        assert_eq!(
            path_of(&KeyCommand::Shred {
                topic: "x/y".into()
            }),
            ("POST", "/keys/x%2Fy/shred".to_owned())
        );
    }
}
