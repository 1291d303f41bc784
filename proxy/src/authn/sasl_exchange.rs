//! The Kafka side of SASL on one connection: SaslHandshake and SaslAuthenticate requests
//! (and the raw tokens of the legacy v0 flow) answered by the proxy, the session's principal
//! and lifetime, and re-authentication (KIP-368).
//!
//! States follow Kafka's `SaslServerAuthenticator`: a handshake picks the mechanism, then
//! tokens go back and forth until the mechanism succeeds or fails. After success the
//! session has a deadline (the earlier of the token's expiry and `auth.max_session_ms`,
//! sent to the client as `session_lifetime_ms`); the client re-authenticates on the same
//! connection with a new handshake, as the same principal, before the deadline. Requests
//! after the deadline close the connection, as a broker does.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use portcullis_auth::claimed_user::claimed_user;
use portcullis_auth::{
    AuthFailure, AuthSource, FailureKind, Mechanism, Principal, ServerSession, Step,
};

use crate::authn::{AuthService, ClientInfo};
use crate::codec::header::RequestHeader;
use crate::codec::response_frame::{raw_frame, response_frame};

/// What to send back, and whether the connection ends after it.
#[derive(Debug)]
pub struct Reply {
    /// The frame to write to the client (`None`: close without answering).
    pub frame: Option<Bytes>,
    /// Why the connection closes after the frame, if it does.
    pub close: Option<String>,
}

impl Reply {
    fn answer(frame: Bytes) -> Reply {
        Reply {
            frame: Some(frame),
            close: None,
        }
    }
    fn answer_and_close(frame: Bytes, reason: impl Into<String>) -> Reply {
        Reply {
            frame: Some(frame),
            close: Some(reason.into()),
        }
    }
    fn close(reason: impl Into<String>) -> Reply {
        Reply {
            frame: None,
            close: Some(reason.into()),
        }
    }
}

/// Encodes `body` as the answer to `header`'s request; the connection closes after it if
/// `close` says why.
fn encoded_reply<M: Encodable>(header: &RequestHeader, body: &M, close: Option<String>) -> Reply {
    let api = header.api_key;
    match (
        response_frame(api, header.api_version, header.correlation_id, body),
        close,
    ) {
        (Ok(frame), None) => Reply::answer(frame),
        (Ok(frame), Some(reason)) => Reply::answer_and_close(frame, reason),
        (Err(e), _) => Reply::close(format!("cannot encode {api:?} response: {e}")),
    }
}

enum Stage {
    /// A SaslHandshake may start (or restart) authentication.
    AwaitHandshake,
    /// A mechanism was chosen; tokens are exchanged.
    Exchange {
        mechanism: Mechanism,
        /// After a v0 handshake tokens come as raw frames without Kafka headers.
        legacy: bool,
        session: Option<ServerSession>,
        /// The user the first message named (PLAIN, SCRAM), for the per-user limit.
        claimed: Option<String>,
        /// The exchange's failure is already audited and counted (OAUTHBEARER's error
        /// challenge went out); its end must not count it again.
        failure_recorded: bool,
    },
}

/// The authentication state of one connection.
pub struct Session {
    stage: Stage,
    principal: Option<Principal>,
    deadline: Option<Instant>,
    failures: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal)
            .field("deadline", &self.deadline)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A connection that has not authenticated.
    pub fn new() -> Session {
        Session {
            stage: Stage::AwaitHandshake,
            principal: None,
            deadline: None,
            failures: 0,
        }
    }

    /// A connection authenticated by its certificate (no SASL, no session deadline).
    pub fn from_certificate(principal: Principal) -> Session {
        Session {
            stage: Stage::AwaitHandshake,
            principal: Some(principal),
            deadline: None,
            failures: 0,
        }
    }

    /// A connection on a listener without authentication.
    pub fn anonymous() -> Session {
        Session::from_certificate(Principal::anonymous())
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Whether the next frame is a raw SASL token (legacy v0 flow) rather than a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.stage, Stage::Exchange { legacy: true, .. })
    }

    /// Why the connection may no longer send non-SASL requests, if it may not: the session
    /// expired, or its user was removed from the store.
    pub fn check(&self, now: Instant, service: &AuthService) -> Result<(), &'static str> {
        let Some(principal) = &self.principal else {
            return Err("not authenticated");
        };
        if self.deadline.is_some_and(|d| now >= d) {
            return Err("session expired without re-authentication");
        }
        let from_store = matches!(
            principal.source,
            AuthSource::Sasl(Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::ScramSha512)
        );
        if from_store && !service.user_exists(&principal.name) {
            return Err("user removed from the credential store");
        }
        Ok(())
    }

    /// The mechanism and claimed user of a first login left in the middle (a client
    /// message was answered, no outcome yet), for the connection to record when it ends
    /// there. `None` when there is nothing unrecorded: no exchange, one already failed and
    /// recorded (OAUTHBEARER's error challenge), or a re-authentication.
    pub fn abandoned_exchange(&self) -> Option<(Mechanism, Option<String>)> {
        match &self.stage {
            Stage::Exchange {
                mechanism,
                session: Some(_),
                claimed,
                failure_recorded: false,
                ..
            } if self.principal.is_none() => Some((*mechanism, claimed.clone())),
            _ => None,
        }
    }

    /// The session deadline, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Answers a SaslHandshake or SaslAuthenticate request (`frame` is the whole frame).
    pub async fn sasl_request(
        &mut self,
        frame: &Bytes,
        header: &RequestHeader,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Reply {
        let api = header.api_key;
        let versions = api.valid_versions();
        if !(versions.min..=versions.max).contains(&header.api_version) {
            return Reply::close(format!("{api:?} v{} is not supported", header.api_version));
        }
        match api {
            ApiKey::SaslHandshake => self.handshake(frame, header, service, client).await,
            _ => self.authenticate(frame, header, service, client).await,
        }
    }

    /// Answers a SaslHandshake request (`frame` is the whole frame).
    pub async fn handshake(
        &mut self,
        frame: &Bytes,
        header: &RequestHeader,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Reply {
        let version = header.api_version;
        let reply = |error_code: i16, close: Option<&str>| {
            let body = SaslHandshakeResponse::default()
                .with_error_code(error_code)
                .with_mechanisms(
                    service
                        .mechanisms
                        .iter()
                        .map(|m| StrBytes::from_static_str(m.name()))
                        .collect(),
                );
            encoded_reply(header, &body, close.map(str::to_string))
        };
        let mut body = frame.slice(header.body_offset..);
        let Ok(request) = SaslHandshakeRequest::decode(&mut body, version) else {
            return Reply::close("malformed SaslHandshake request");
        };
        if !matches!(self.stage, Stage::AwaitHandshake) {
            return reply(
                ResponseError::IllegalSaslState.code(),
                Some("SaslHandshake during a SASL exchange"),
            );
        }
        if self
            .principal
            .as_ref()
            .is_some_and(|p| !matches!(p.source, AuthSource::Sasl(_)))
        {
            return reply(
                ResponseError::IllegalSaslState.code(),
                Some("SaslHandshake on a connection authenticated without SASL"),
            );
        }
        let offered = Mechanism::from_name(request.mechanism.as_str())
            .filter(|m| service.mechanisms.contains(m));
        let Some(mechanism) = offered else {
            let failure = AuthFailure::new(
                FailureKind::UnsupportedMechanism,
                None,
                format!(
                    "client asked for {:?}",
                    request
                        .mechanism
                        .as_str()
                        .chars()
                        .take(64)
                        .collect::<String>()
                ),
            );
            let close = match service.record_failure(client, "SASL", &failure).await {
                Ok(()) => "client asked for a SASL mechanism that is not enabled",
                Err(_) => AUDIT_UNAVAILABLE_CLOSE,
            };
            return reply(ResponseError::UnsupportedSaslMechanism.code(), Some(close));
        };
        if let Some(AuthSource::Sasl(first)) = self.principal.as_ref().map(|p| p.source) {
            if first != mechanism {
                return reply(
                    ResponseError::IllegalSaslState.code(),
                    Some("re-authentication must use the original mechanism"),
                );
            }
        }
        self.stage = Stage::Exchange {
            mechanism,
            legacy: version == 0,
            session: None,
            claimed: None,
            failure_recorded: false,
        };
        reply(0, None)
    }

    /// Answers a SaslAuthenticate request.
    pub async fn authenticate(
        &mut self,
        frame: &Bytes,
        header: &RequestHeader,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Reply {
        let mut body = frame.slice(header.body_offset..);
        let Ok(request) = SaslAuthenticateRequest::decode(&mut body, header.api_version) else {
            return Reply::close("malformed SaslAuthenticate request");
        };
        if !matches!(self.stage, Stage::Exchange { legacy: false, .. }) {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "SaslAuthenticate without a preceding SaslHandshake v1",
                )));
            return encoded_reply(
                header,
                &response,
                Some("SaslAuthenticate out of order".into()),
            );
        }
        let outcome = self.step(&request.auth_bytes, service, client).await;
        let (response, close) = match outcome {
            Outcome::Continue(challenge) => (
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(challenge)),
                None,
            ),
            Outcome::Authenticated {
                final_message,
                lifetime,
            } => (
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(final_message))
                    .with_session_lifetime_ms(
                        i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
                    ),
                None,
            ),
            Outcome::Failed { message, close } => (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(message))),
                close,
            ),
        };
        encoded_reply(header, &response, close)
    }

    /// Answers a raw token of the legacy flow (after a v0 SaslHandshake). Kafka closes such
    /// a connection on failure without an answer; so does the proxy.
    pub async fn raw_token(
        &mut self,
        token: &[u8],
        service: &AuthService,
        client: &ClientInfo,
    ) -> Reply {
        match self.step(token, service, client).await {
            Outcome::Continue(challenge) => Reply::answer(raw_frame(&challenge)),
            Outcome::Authenticated { final_message, .. } => {
                Reply::answer(raw_frame(&final_message))
            }
            Outcome::Failed { message, .. } => Reply::close(message),
        }
    }

    /// Feeds one client token to the mechanism and applies the result to the session.
    async fn step(&mut self, token: &[u8], service: &AuthService, client: &ClientInfo) -> Outcome {
        let Stage::Exchange {
            mechanism,
            session,
            claimed,
            failure_recorded,
            ..
        } = &mut self.stage
        else {
            return Outcome::Failed {
                message: "Authentication failed: unexpected SASL message",
                close: Some("SASL token without a handshake".into()),
            };
        };
        let mechanism = *mechanism;
        if *failure_recorded {
            // The failure was recorded with the error challenge; this message (the `\x01`
            // acknowledgement, or anything else) only ends the exchange.
            let failure = match session.as_mut() {
                Some(s) => failure_of(s.step(token).await),
                None => None,
            };
            let failure = failure.unwrap_or_else(|| {
                AuthFailure::new(FailureKind::IllegalState, None, "exchange already failed")
            });
            return self.conclude_failure(&failure, service);
        }
        if token.len() > service.settings.max_message_bytes {
            let failure = AuthFailure::new(
                FailureKind::Malformed,
                None,
                format!(
                    "SASL message of {} bytes exceeds auth.max_message_bytes",
                    token.len()
                ),
            );
            return self.fail(mechanism, failure, service, client).await;
        }
        if session.is_none() {
            *claimed = claimed_user(mechanism, token);
        }
        if service.source_blocked(&client.peer, claimed.as_deref()) {
            let failure = AuthFailure::new(
                FailureKind::RateLimited,
                claimed.clone(),
                "too many failed attempts from this address",
            );
            return self.fail(mechanism, failure, service, client).await;
        }
        if session.is_none() {
            *session = ServerSession::new(mechanism, &service.context());
        }
        let step = match session {
            Some(s) => s.step(token).await,
            None => Step::Failure(AuthFailure::new(
                FailureKind::IllegalState,
                None,
                format!("{mechanism} is not configured"),
            )),
        };
        match step {
            Step::Challenge(challenge) => {
                let pending = session
                    .as_ref()
                    .and_then(ServerSession::pending_failure)
                    .cloned();
                match pending {
                    Some(failure) => {
                        *failure_recorded = true;
                        self.announce_failure(mechanism, challenge, failure, service, client)
                            .await
                    }
                    None => Outcome::Continue(challenge),
                }
            }
            Step::Success(done) => self.succeed(done, service, client).await,
            Step::Failure(failure) => self.fail(mechanism, failure, service, client).await,
        }
    }

    /// The exchange has failed but the mechanism still sends a challenge (OAUTHBEARER's
    /// error status): the failure is audited and counted now, before the challenge goes
    /// out, because the client may hang up instead of acknowledging it.
    async fn announce_failure(
        &mut self,
        mechanism: Mechanism,
        challenge: Vec<u8>,
        failure: AuthFailure,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Outcome {
        if !self
            .record_failure(mechanism, &failure, service, client)
            .await
        {
            return Outcome::audit_unavailable();
        }
        Outcome::Continue(challenge)
    }

    async fn succeed(
        &mut self,
        done: portcullis_auth::Authenticated,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Outcome {
        self.stage = Stage::AwaitHandshake;
        let reauth = self.principal.is_some();
        if let Some(previous) = &self.principal {
            if previous.name != done.principal.name {
                let failure = AuthFailure::new(
                    FailureKind::BadCredentials,
                    Some(done.principal.name.clone()),
                    format!(
                        "re-authentication as a different principal (was {})",
                        previous.kafka_name()
                    ),
                );
                if service
                    .record_failure(client, done.principal.source.label(), &failure)
                    .await
                    .is_err()
                {
                    return Outcome::audit_unavailable();
                }
                return Outcome::Failed {
                    message: "Authentication failed: re-authentication must use the same principal",
                    close: Some("re-authentication as a different principal".into()),
                };
            }
        }
        let lifetime = session_lifetime(
            service.settings.max_session(),
            done.expires_at,
            SystemTime::now(),
        );
        // Under `sync` durability the success is on disk before the client hears of it; if
        // it cannot be recorded (`reject`), the client is not authenticated.
        if service
            .record_success(client, &done.principal, reauth)
            .await
            .is_err()
        {
            return Outcome::audit_unavailable();
        }
        self.deadline = Some(Instant::now() + lifetime);
        self.principal = Some(done.principal);
        Outcome::Authenticated {
            final_message: done.final_message,
            lifetime,
        }
    }

    async fn fail(
        &mut self,
        mechanism: Mechanism,
        failure: AuthFailure,
        service: &AuthService,
        client: &ClientInfo,
    ) -> Outcome {
        if !self
            .record_failure(mechanism, &failure, service, client)
            .await
        {
            return Outcome::audit_unavailable();
        }
        self.conclude_failure(&failure, service)
    }

    /// Counts a failure on this connection, records it (metric, per-source count, audit
    /// event) and waits the failure delay; false (and the exchange over) when the event
    /// could not be recorded under the `reject` policy.
    async fn record_failure(
        &mut self,
        mechanism: Mechanism,
        failure: &AuthFailure,
        service: &AuthService,
        client: &ClientInfo,
    ) -> bool {
        self.failures = self.failures.saturating_add(1);
        let recorded = service
            .record_failure(client, mechanism.name(), failure)
            .await;
        // The same pause whatever went wrong, so timing tells a guesser nothing.
        tokio::time::sleep(service.settings.failure_delay()).await;
        if recorded.is_err() {
            self.stage = Stage::AwaitHandshake;
            return false;
        }
        true
    }

    /// Ends a failed exchange whose failure is recorded: the answer, and whether the
    /// connection closes (re-authentication failed, or too many failures on it).
    fn conclude_failure(&mut self, failure: &AuthFailure, service: &AuthService) -> Outcome {
        self.stage = Stage::AwaitHandshake;
        let reauth = self.principal.is_some();
        let close = if reauth {
            Some("re-authentication failed".to_string())
        } else if self.failures >= service.settings.max_failed_attempts {
            Some(format!("authentication failed ({})", failure.kind.label()))
        } else {
            None
        };
        Outcome::Failed {
            message: failure.client_message(),
            close,
        }
    }
}

enum Outcome {
    Continue(Vec<u8>),
    Authenticated {
        final_message: Vec<u8>,
        lifetime: Duration,
    },
    Failed {
        message: &'static str,
        close: Option<String>,
    },
}

impl Outcome {
    /// The authentication event could not be recorded under the `reject` policy: the client
    /// gets an authentication failure and the connection closes (fail closed).
    fn audit_unavailable() -> Outcome {
        Outcome::Failed {
            message: AUDIT_UNAVAILABLE_MESSAGE,
            close: Some(AUDIT_UNAVAILABLE_CLOSE.into()),
        }
    }
}

/// The failure a step reached, if it ended in one.
fn failure_of(step: Step) -> Option<AuthFailure> {
    match step {
        Step::Failure(failure) => Some(failure),
        Step::Challenge(_) | Step::Success(_) => None,
    }
}

/// The message a client gets when its authentication is refused because the audit log
/// cannot record it.
pub const AUDIT_UNAVAILABLE_MESSAGE: &str =
    "Authentication failed: the audit log is unavailable, so the proxy refuses to authenticate";
const AUDIT_UNAVAILABLE_CLOSE: &str =
    "authentication event could not be audited (audit log unavailable)";

/// The session lifetime: the configured maximum, shortened to the credential's expiry.
pub fn session_lifetime(
    max: Duration,
    expires_at: Option<SystemTime>,
    now: SystemTime,
) -> Duration {
    match expires_at {
        None => max,
        Some(at) => at.duration_since(now).unwrap_or(Duration::ZERO).min(max),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::RequestHeader as WireHeader;
    use portcullis_audit::{
        AuditRejected, AuditSink, EmitOutcome, Event, MemorySink, RecordFuture,
    };
    use portcullis_auth::store::{Password, UserRecord, UserStore};

    use crate::codec::header::peek_request_header;
    use crate::config::auth::{AuthConfig, ListenerAuthConfig};

    /// A sink whose log is unavailable under the `reject` policy.
    struct Refusing;

    impl AuditSink for Refusing {
        fn emit(&self, _event: Event) -> EmitOutcome {
            EmitOutcome::Dropped
        }
        fn dropped(&self) -> u64 {
            0
        }
        fn record(&self, event: Event) -> RecordFuture<'_> {
            Box::pin(std::future::ready(Err(AuditRejected {
                category: event.category,
                action: event.action,
                reason: "test: log not writable".into(),
            })))
        }
    }

    fn service(dir: &std::path::Path, audit: Arc<dyn AuditSink>) -> AuthService {
        let users = dir.join("users.toml");
        let mut store = UserStore::empty();
        store
            .add(
                UserRecord::with_password("alice", vec![], &Password::new("alice-secret"), 4096)
                    .unwrap(),
            )
            .unwrap();
        store.save(&users).unwrap();
        let listener = ListenerAuthConfig {
            sasl_mechanisms: vec!["PLAIN".into()],
            ..ListenerAuthConfig::default()
        };
        let settings = AuthConfig {
            users_file: Some(users),
            failure_delay_ms: 1,
            ..AuthConfig::default()
        };
        AuthService::new(&listener, &settings, audit).unwrap()
    }

    fn frame<M: Encodable>(api: ApiKey, version: i16, body: &M) -> (Bytes, RequestHeader) {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        WireHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = i32::try_from(buf.len() - 4).unwrap();
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let frame = buf.freeze();
        let header = peek_request_header(&frame).unwrap();
        (frame, header)
    }

    /// Handshake + PLAIN authenticate as alice; the SaslAuthenticate answer and whether the
    /// connection closes after it.
    async fn plain_login(
        service: &AuthService,
        session: &mut Session,
    ) -> (SaslAuthenticateResponse, bool) {
        let client = ClientInfo {
            peer: "127.0.0.1:40000".parse().unwrap(),
            listener: "bootstrap".into(),
            tls_identity: None,
        };
        let (f, h) = frame(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        let reply = session.sasl_request(&f, &h, service, &client).await;
        assert!(reply.close.is_none(), "{reply:?}");
        let (f, h) = frame(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
        );
        let reply = session.sasl_request(&f, &h, service, &client).await;
        // Length prefix and correlation id, then a v1 (non-flexible) body.
        let mut body = reply.frame.clone().unwrap().slice(8..);
        let response = SaslAuthenticateResponse::decode(&mut body, 1).unwrap();
        (response, reply.close.is_some())
    }

    #[tokio::test]
    async fn success_is_answered_once_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(MemorySink::new());
        let service = service(dir.path(), sink.clone());
        let mut session = Session::new();
        let (response, close) = plain_login(&service, &mut session).await;
        assert_eq!(response.error_code, 0);
        assert!(!close);
        assert_eq!(session.principal().unwrap().name, "alice");
        let events = sink.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "sasl.PLAIN");
    }

    #[tokio::test]
    async fn an_unrecordable_success_is_an_authentication_failure_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path(), Arc::new(Refusing));
        let mut session = Session::new();
        let (response, close) = plain_login(&service, &mut session).await;
        assert_eq!(
            response.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert_eq!(
            response.error_message.as_deref(),
            Some(AUDIT_UNAVAILABLE_MESSAGE)
        );
        assert!(response
            .error_message
            .unwrap()
            .contains("audit log is unavailable"));
        assert!(close, "the connection must close");
        assert!(
            session.principal().is_none(),
            "the client must not be authenticated"
        );
    }

    #[test]
    fn lifetime_is_the_earlier_of_token_expiry_and_maximum() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let max = Duration::from_secs(3600);
        assert_eq!(session_lifetime(max, None, now), max);
        assert_eq!(
            session_lifetime(max, Some(now + Duration::from_secs(60)), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            session_lifetime(max, Some(now + Duration::from_secs(7200)), now),
            max
        );
        assert_eq!(
            session_lifetime(max, Some(now - Duration::from_secs(1)), now),
            Duration::ZERO
        );
    }
}
