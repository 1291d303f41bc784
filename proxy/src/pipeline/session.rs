//! The session stage: authentication before anything else, and a live session after.
//!
//! Before the client authenticated only ApiVersions (answered by the api gate) and SASL are
//! served; any other request closes the connection. SaslHandshake and SaslAuthenticate are
//! answered here, by the connection's [`Session`](crate::authn::sasl_exchange::Session) in
//! [`ConnectionState`], which also serves re-authentication (KIP-368). After
//! authentication every request is checked against the session: its lifetime and whether
//! its user is still in the credential store.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

use crate::authn::sasl_exchange::{Reply, Session};
use crate::authn::AuthService;
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::{handling, Handling};
use crate::pipeline::{Answer, ConnectionState, Flow, Request, Stage, Step};

/// Serves SASL and keeps everything else behind a valid session.
#[derive(Debug)]
pub struct SessionStage {
    auth: Arc<AuthService>,
}

impl SessionStage {
    /// The stage for a listener authenticating with `auth`.
    pub fn new(auth: Arc<AuthService>) -> SessionStage {
        SessionStage { auth }
    }
}

impl Stage for SessionStage {
    fn name(&self) -> &'static str {
        "session"
    }

    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        match handling(api) {
            Handling::Sasl if !self.auth.sasl_enabled() => None,
            _ => Some(offered),
        }
    }

    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        let header = &request.header;
        let api = header.api_key;
        if handling(api) != Handling::Sasl {
            return checked_session(&self.auth, state, api).into();
        }
        if !self.auth.sasl_enabled() {
            return Flow::Close(ConnectionEnd::Refused {
                api,
                version: header.api_version,
                reason: "SASL is not enabled on this listener",
            })
            .into();
        }
        if state.forwarded && api == ApiKey::SaslHandshake && header.api_version == 0 {
            return Flow::Close(ConnectionEnd::Authentication(
                "re-authentication needs SaslHandshake v1 or later".into(),
            ))
            .into();
        }
        let auth = &self.auth;
        Step::Pending(Box::pin(async move {
            let ConnectionState {
                session,
                client,
                principal_epoch,
                ..
            } = state;
            let reply = session
                .sasl_request(&request.frame, &request.header, auth, client)
                .await;
            settle_reply(reply, session, principal_epoch)
        }))
    }
}

/// Whether a non-SASL request may pass: only on a live, authenticated session.
fn checked_session(auth: &AuthService, state: &ConnectionState, api: ApiKey) -> Flow {
    if api == ApiKey::ApiVersions {
        return Flow::Continue;
    }
    if state.session.principal().is_none() {
        return Flow::Close(ConnectionEnd::Unauthenticated(api));
    }
    match state.session.check(Instant::now(), auth) {
        Ok(()) => Flow::Continue,
        Err(reason) => Flow::Close(ConnectionEnd::SessionEnded(reason)),
    }
}

/// The flow for a SASL reply (a request's or a legacy raw token's). A step that leaves the
/// session authenticated (re-)establishes its principal, which may bring new roles: the
/// epoch moves so that later decisions use them.
pub fn settle_reply(reply: Reply, session: &Session, principal_epoch: &mut u64) -> Flow {
    if reply.close.is_none() && session.principal().is_some() {
        *principal_epoch += 1;
    }
    reply_flow(reply)
}

fn reply_flow(reply: Reply) -> Flow {
    let close = reply.close.map(ConnectionEnd::Authentication);
    match (reply.frame, close) {
        (Some(frame), close) => Flow::Answer {
            answer: Answer::Frame(frame),
            close,
        },
        (None, Some(end)) => Flow::Close(end),
        (None, None) => Flow::Drop,
    }
}
