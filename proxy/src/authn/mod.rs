//! What every connection shares for authenticating clients: the offered mechanisms, the
//! credential sources, the hardening limits, and how outcomes are audited and counted.
//!
//! The per-connection state machine lives in `sasl_exchange`; this module is the part that
//! outlives connections (the user store that reloads, the JWT validator with its key cache,
//! the per-source failure counts).

pub mod guard;
pub mod sasl_exchange;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use portcullis_audit::{AuditRejected, AuditSink, Category, Event, Outcome, Recorded};
use portcullis_auth::jwt::JwtValidator;
use portcullis_auth::mtls::{PrincipalMapper, TlsIdentity};
use portcullis_auth::sasl::SaslContext;
use portcullis_auth::store::{SharedUserStore, UserStore};
use portcullis_auth::{AuthFailure, FailureKind, Mechanism, Principal};

use crate::authn::guard::FailureLimiter;
use crate::config::auth::{AuthConfig, ClientAuth, ListenerAuthConfig};
use crate::metrics::{AUDIT_REJECTED, AUTHENTICATIONS};

/// Authentication settings and state shared by every connection of a listener.
pub struct AuthService {
    /// Mechanisms offered, in the order clients see them.
    pub mechanisms: Vec<Mechanism>,
    /// Whether a verified client certificate alone authenticates.
    pub certificate_authenticates: bool,
    /// Limits and timeouts.
    pub settings: AuthConfig,
    /// PLAIN/SCRAM credentials, reloaded while the proxy runs.
    pub users: Option<Arc<SharedUserStore>>,
    /// OAUTHBEARER token validation.
    pub jwt: Option<Arc<JwtValidator>>,
    /// Client certificate -> principal, on listeners that request certificates.
    pub mtls: Option<PrincipalMapper>,
    /// Failed attempts per source address.
    pub limiter: FailureLimiter,
    /// Where authentication events go.
    pub audit: Arc<dyn AuditSink>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("mechanisms", &self.mechanisms)
            .field("certificate_authenticates", &self.certificate_authenticates)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// Builds the service from configuration: loads the user store and the JWT validator.
    pub fn new(
        listener: &ListenerAuthConfig,
        settings: &AuthConfig,
        audit: Arc<dyn AuditSink>,
    ) -> anyhow::Result<AuthService> {
        let users = match &settings.users_file {
            Some(path) => {
                Some(Arc::new(SharedUserStore::load(path).map_err(|e| {
                    anyhow::anyhow!("auth.users_file {}: {e}", path.display())
                })?))
            }
            None => None,
        };
        let jwt = match &settings.oauthbearer {
            Some(config) => Some(Arc::new(
                JwtValidator::new(config.clone())
                    .map_err(|e| anyhow::anyhow!("auth.oauthbearer: {e}"))?,
            )),
            None => None,
        };
        let mtls = if listener.client_auth == ClientAuth::None {
            None
        } else {
            let config = settings.mtls.clone().unwrap_or_default();
            Some(PrincipalMapper::new(&config).map_err(|e| anyhow::anyhow!("auth.mtls: {e}"))?)
        };
        Ok(AuthService {
            mechanisms: listener.mechanisms(),
            certificate_authenticates: listener.certificate_authenticates,
            settings: settings.clone(),
            users,
            jwt,
            mtls,
            limiter: FailureLimiter::new(
                settings.source_failure_limit,
                settings.address_failure_limit(),
                std::time::Duration::from_millis(settings.source_failure_window_ms),
            ),
            audit,
        })
    }

    /// Whether clients must authenticate before anything is forwarded.
    pub fn required(&self) -> bool {
        !self.mechanisms.is_empty() || self.certificate_authenticates
    }

    /// Whether SASL is offered.
    pub fn sasl_enabled(&self) -> bool {
        !self.mechanisms.is_empty()
    }

    /// The credentials as of now, for one exchange.
    pub fn context(&self) -> SaslContext {
        SaslContext {
            users: self
                .users
                .as_ref()
                .map(|u| u.current())
                .unwrap_or_else(|| Arc::new(UserStore::empty())),
            jwt: self.jwt.clone(),
        }
    }

    /// Whether a PLAIN/SCRAM principal still exists in the store.
    pub fn user_exists(&self, name: &str) -> bool {
        self.users
            .as_ref()
            .is_some_and(|u| u.current().contains(name))
    }

    /// Whether an attempt from `peer` as `user` (when the client named one) must be
    /// refused now: too many recent failures of that user from there, or of the address.
    pub fn source_blocked(&self, peer: &SocketAddr, user: Option<&str>) -> bool {
        self.limiter.is_blocked(peer.ip(), user, Instant::now())
    }

    /// Records a success: metric and audit event, waiting as the `authn` category's policy
    /// says (under `sync`, until the event is durable).
    ///
    /// # Errors
    ///
    /// [`AuditRejected`] when the event could not be made durable under the `reject` policy:
    /// the client must not be told it authenticated.
    pub async fn record_success(
        &self,
        client: &ClientInfo,
        principal: &Principal,
        reauth: bool,
    ) -> Result<(), AuditRejected> {
        let mechanism = principal.source.label();
        metrics::counter!(AUTHENTICATIONS, "mechanism" => mechanism, "outcome" => "success")
            .increment(1);
        let action = action_for(principal.source.label());
        let mut event = Event::new(Category::Authn, action, Outcome::Success)
            .principal(principal.kafka_name())
            .roles(principal.roles.iter().cloned())
            .mechanism(mechanism)
            .client_addr(client.peer)
            .listener(client.listener.clone())
            .detail("reauthentication", reauth);
        if let Some(id) = &client.tls_identity {
            event = event.tls_identity(id.subject.clone());
        }
        self.recorded(self.audit.record(event).await)
    }

    /// Records a failure that is answered to the client (metric, per-source count, audit
    /// event), waiting as the `authn` category's policy says before the answer goes out.
    ///
    /// # Errors
    ///
    /// [`AuditRejected`] when the event could not be made durable under the `reject` policy.
    pub async fn record_failure(
        &self,
        client: &ClientInfo,
        mechanism: &str,
        failure: &AuthFailure,
    ) -> Result<(), AuditRejected> {
        let event = self.failure_event(client, mechanism, failure);
        self.recorded(self.audit.record(event).await)
    }

    /// Records a failure that ends the connection without an answer (a TLS handshake): the
    /// same event as [`record_failure`](AuthService::record_failure), emitted without
    /// waiting, because there is no reply to hold back.
    pub fn note_failure(&self, client: &ClientInfo, mechanism: &str, failure: &AuthFailure) {
        let event = self.failure_event(client, mechanism, failure);
        self.audit.emit(event);
    }

    fn recorded(&self, result: Result<Recorded, AuditRejected>) -> Result<(), AuditRejected> {
        match result {
            Ok(_) => Ok(()),
            Err(rejected) => {
                metrics::counter!(AUDIT_REJECTED, "category" => "authn").increment(1);
                tracing::error!(error = %rejected, "authentication refused: audit log unavailable");
                Err(rejected)
            }
        }
    }

    /// Metric, per-source count, log line and the audit event of a failure. Refusals by
    /// the limiter itself are not counted again: a client retrying while its user is
    /// limited must not push the whole address over its cap.
    fn failure_event(&self, client: &ClientInfo, mechanism: &str, failure: &AuthFailure) -> Event {
        if failure.kind != FailureKind::RateLimited {
            self.limiter.record_failure(
                client.peer.ip(),
                failure.attempted_user.as_deref(),
                Instant::now(),
            );
        }
        metrics::counter!(AUTHENTICATIONS, "mechanism" => mechanism.to_string(), "outcome" => failure.kind.label())
            .increment(1);
        tracing::info!(
            peer = %client.peer,
            mechanism,
            reason = failure.kind.label(),
            detail = %failure.detail,
            "authentication failed"
        );
        let mut event = Event::new(Category::Authn, action_for(mechanism), Outcome::Failure)
            .mechanism(mechanism)
            .client_addr(client.peer)
            .listener(client.listener.clone())
            .reason(format!("{}: {}", failure.kind.label(), failure.detail));
        if let Some(user) = &failure.attempted_user {
            event = event.detail("attempted_user", user.clone());
        }
        if let Some(id) = &client.tls_identity {
            event = event.tls_identity(id.subject.clone());
        }
        event
    }
}

fn action_for(mechanism: &str) -> String {
    if mechanism == "TLS" {
        "tls.client-certificate".into()
    } else {
        format!("sasl.{mechanism}")
    }
}

/// Who is on the other end of one connection, before and after authentication.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's label (`bootstrap`, `broker-1`).
    pub listener: String,
    /// The verified client certificate's identity, if one was presented.
    pub tls_identity: Option<TlsIdentity>,
}
