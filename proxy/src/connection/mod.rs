//! One client connection, served by one task: read requests, run them through the
//! stage chain (`crate::pipeline`), forward them in order on the connection's own upstream
//! connection, and deliver responses in request order.
//!
//! The task is a thin shell that moves frames. It polls both sockets itself (see `side`):
//! client frames go through the chain and then upstream or back as local answers; broker
//! frames are matched with the oldest request owed an answer (Kafka answers in request
//! order on a connection) and go back through the chain to the client. At most
//! `max_inflight_requests` requests are owed at once, and neither side's outgoing queue
//! grows past a bound before the proxy stops reading what would feed it, so a slow client
//! or broker costs bounded memory.
//!
//! Before anything needs the cluster, the connection has no upstream connection at all:
//! ApiVersions and SASL are answered locally, and the upstream is opened by the first
//! request that must be forwarded, which on a listener with authentication is only ever
//! after the client authenticated. Until then frames are bounded by
//! `auth.max_message_bytes` and the whole exchange by `auth.timeout_ms`.

mod side;
mod task;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use portcullis_auth::{AuthSource, Principal};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::authn::sasl_exchange::Session;
use crate::authn::{AuthService, ClientInfo};
use crate::cluster::broker_map::BrokerMap;
use crate::cluster::ClusterView;
use crate::codec::frame::FrameError;
use crate::codec::header::HeaderError;
use crate::config::LimitsConfig;
use crate::net::source_gate::PreAuthPermit;
use crate::net::upstream::{Connector, UpstreamError};
use crate::pipeline::address_rewrite::RewriteError;
use crate::pipeline::authz::AuthzService;
use crate::pipeline::validation::RequestCheckError;
use task::Connection;

/// Which broker a listener stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bootstrap listener: any bootstrap broker will do.
    Bootstrap,
    /// The listener of one broker.
    Broker(i32),
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// Limits and timeouts.
    pub limits: LimitsConfig,
    /// Opens upstream connections.
    pub connector: Arc<Connector>,
    /// Node id -> proxy port.
    pub brokers: Arc<BrokerMap>,
    /// Negotiated api versions.
    pub cluster: Arc<ClusterView>,
    /// Client authentication.
    pub auth: Arc<AuthService>,
    /// Authorization, when `[authorization]` is configured.
    pub authz: Option<Arc<AuthzService>>,
    /// Record encryption, when `[encryption]` is configured.
    pub encryption: Option<Arc<crate::pipeline::encryption::EncryptionService>>,
}

/// Byte and request counts of one connection, for its close event.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Bytes read from the client.
    pub bytes_in: AtomicU64,
    /// Bytes written to the client.
    pub bytes_out: AtomicU64,
    /// Requests read from the client.
    pub requests: AtomicU64,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnd {
    /// The client-facing TLS handshake failed or timed out.
    #[error("TLS handshake: {0}")]
    TlsHandshake(String),
    /// The client closed the connection between requests.
    #[error("client closed the connection")]
    ClientClosed,
    /// Reading a client frame failed (oversized, truncated, timed out, socket error).
    #[error("client: {0}")]
    ClientFrame(#[from] FrameError),
    /// The client's request header is malformed.
    #[error("client sent a malformed request header: {0}")]
    BadHeader(#[from] HeaderError),
    /// The client asked for an api key or version the proxy does not serve.
    #[error("refused {api:?} v{version}: {reason}")]
    Refused {
        /// Api key.
        api: ApiKey,
        /// Version.
        version: i16,
        /// Why.
        reason: &'static str,
    },
    /// The request is malformed or hostile; it was not forwarded.
    #[error("malformed request: {0}")]
    BadRequest(#[from] RequestCheckError),
    /// The request names more items than `[limits]` allows and its api cannot be answered
    /// with an error (see `pipeline::limits`).
    #[error("request over the limits: {0}")]
    OverLimit(String),
    /// The upstream cluster has not answered yet, so nothing can be served.
    #[error("upstream cluster unavailable")]
    ClusterUnavailable,
    /// Connecting to the broker failed.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// The broker closed or broke the connection, or sent something unexpected.
    #[error("broker: {0}")]
    Broker(String),
    /// A response could not be rewritten (it would have leaked broker addresses).
    #[error("response rewrite failed: {0}")]
    Rewrite(#[from] RewriteError),
    /// Writing to the client failed.
    #[error("client write failed: {0}")]
    ClientWrite(std::io::Error),
    /// Authentication failed or the SASL exchange broke the protocol.
    #[error("authentication: {0}")]
    Authentication(String),
    /// The client did not authenticate within `auth.timeout_ms`.
    #[error("authentication not completed in time")]
    AuthTimeout,
    /// The client sent a request that needs authentication before authenticating.
    #[error("{0:?} before authentication")]
    Unauthenticated(ApiKey),
    /// The session ended: it expired without re-authentication, or its user was removed.
    #[error("session ended: {0}")]
    SessionEnded(&'static str),
}

impl ConnectionEnd {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectionEnd::TlsHandshake(_) => "tls_handshake",
            ConnectionEnd::ClientClosed => "client_closed",
            ConnectionEnd::ClientFrame(FrameError::TooLarge { .. }) => "frame_too_large",
            ConnectionEnd::ClientFrame(FrameError::Timeout { .. }) => "timeout",
            ConnectionEnd::ClientFrame(_) => "client_io",
            ConnectionEnd::BadHeader(_) => "bad_header",
            ConnectionEnd::Refused { .. } => "refused_api",
            ConnectionEnd::BadRequest(_) => "bad_request",
            ConnectionEnd::OverLimit(_) => "request_limit",
            ConnectionEnd::ClusterUnavailable => "cluster_unavailable",
            ConnectionEnd::Upstream(_) => "upstream_connect",
            ConnectionEnd::Broker(_) => "broker",
            ConnectionEnd::Rewrite(_) => "rewrite",
            ConnectionEnd::ClientWrite(_) => "client_write",
            ConnectionEnd::Authentication(_) => "authentication",
            ConnectionEnd::AuthTimeout => "auth_timeout",
            ConnectionEnd::Unauthenticated(_) => "unauthenticated",
            ConnectionEnd::SessionEnded(_) => "session_ended",
        }
    }
}

/// Serves one client connection until it ends; returns why it ended. `pre_auth` is the
/// connection's place among its source's unauthenticated connections, given back once it
/// authenticates.
pub async fn serve<S>(
    stream: S,
    target: Target,
    shared: Arc<Shared>,
    stats: Arc<ConnectionStats>,
    client: ClientInfo,
    pre_auth: PreAuthPermit,
) -> ConnectionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session = match initial_session(&shared.auth, &client).await {
        Ok(s) => s,
        Err(end) => return end,
    };
    Connection::new(stream, target, shared, stats, client, session, pre_auth)
        .run()
        .await
}

/// Room for a request header (client id included) on top of `auth.max_message_bytes` in
/// frames read before authentication.
pub(crate) const PRE_AUTH_HEADER_ALLOWANCE: usize = 4096;

/// The session a new connection starts with: anonymous on listeners without
/// authentication, authenticated by its certificate where that is enough, else none yet.
async fn initial_session(
    auth: &AuthService,
    client: &ClientInfo,
) -> Result<Session, ConnectionEnd> {
    if !auth.required() {
        return Ok(Session::anonymous());
    }
    if auth.certificate_authenticates {
        if let Some(identity) = &client.tls_identity {
            let principal = Principal {
                name: identity.principal.clone(),
                roles: identity.roles.clone(),
                source: AuthSource::Tls,
            };
            // A certificate-authenticated connection is served only once its `sync` authn
            // event is durable; under `reject` it is closed if that cannot be done.
            if auth
                .record_success(client, &principal, false)
                .await
                .is_err()
            {
                return Err(ConnectionEnd::Authentication(
                    "authentication event could not be audited (audit log unavailable)".into(),
                ));
            }
            return Ok(Session::from_certificate(principal));
        }
        if !auth.sasl_enabled() {
            let failure = portcullis_auth::AuthFailure::new(
                portcullis_auth::FailureKind::BadCredentials,
                None,
                "no client certificate",
            );
            // The connection closes either way; the failure is recorded before it does.
            let _ = auth.record_failure(client, "TLS", &failure).await;
            return Err(ConnectionEnd::Authentication(
                "a client certificate is required".into(),
            ));
        }
    }
    Ok(Session::new())
}
