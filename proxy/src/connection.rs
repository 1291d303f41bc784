//! One client connection: read requests, forward them in order on the connection's own
//! upstream connection, and deliver responses in request order.
//!
//! Two halves run concurrently. The *forwarder* reads client frames, decides per request
//! (answer locally, forward, refuse), and for every request that will get a response queues
//! a `Pending` entry *before* writing the request upstream. The *pump* takes `Pending`
//! entries in order: a local answer is written as is; an upstream one waits for the broker's
//! next response (Kafka answers in request order on a connection), checks the correlation
//! id, rewrites addresses where needed, and writes it to the client. The queue is bounded by
//! `max_inflight_requests`, so a slow client or broker stops the forwarder from reading more
//! instead of growing memory. Produce with acks=0 queues nothing, because no response comes.
//!
//! Before anything needs the cluster, the connection has no upstream connection at all:
//! ApiVersions and SASL are answered locally, and the upstream is opened by the first
//! request that must be forwarded, which on a listener with authentication is only ever
//! after the client authenticated. Until then frames are bounded by
//! `auth.max_message_bytes` and the whole exchange by `auth.timeout_ms`. Afterwards every
//! forwarded request is checked against the session (lifetime, user still in the store);
//! re-authentication (KIP-368) is answered locally in request order like any local answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use portcullis_auth::{AuthSource, Principal};
use portcullis_policy::api_acl;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use crate::address_rewrite::{rewrite_response, RewriteError};
use crate::api_table::{handling, response_needs_rewrite, Handling};
use crate::api_versions::{api_versions_response_frame, Negotiated};
use crate::authn::{AuthService, ClientInfo};
use crate::authz::{AuthzService, ConnectionPermissions, RequestContext};
use crate::authz_request::{authorize_request, Action};
use crate::authz_response::{apply_fix, ResponseFix};
use crate::broker_map::BrokerMap;
use crate::cluster::ClusterView;
use crate::config::LimitsConfig;
use crate::frame::{build_frame, FrameError, FrameReader, LENGTH_PREFIX};
use crate::header::{
    peek_request_header, peek_response_header, produce_acks, with_produce_acks, HeaderError,
    RequestHeader,
};
use crate::metrics;
use crate::request_check::{check_request, RequestCheckError};
use crate::response_frame::response_kind_frame;
use crate::sasl_exchange::{Reply, Session};
use crate::upstream::{BoxedStream, Connector, UpstreamError};

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

/// A response the pump owes the client, in request order.
enum Pending {
    /// Already built by the proxy.
    Local(Bytes),
    /// Will come from the broker.
    Upstream {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        started: Instant,
        /// False for a response the client did not ask for (acks=0 Produce, which the
        /// proxy sends upstream as acks=1): it is checked and dropped.
        deliver: bool,
        /// What authorization changes in the response.
        fix: Option<ResponseFix>,
    },
}

/// What to do with one request.
enum Decision {
    Answer(Bytes),
    /// SaslHandshake or SaslAuthenticate, for the connection's [`Session`].
    Sasl,
    /// Forward upstream. `fire_and_forget` marks an acks=0 Produce: the client expects no
    /// response, but brokers differ (tansu 0.6.0 answers anyway), so the proxy sends it as
    /// acks=1 and drops the answer, which keeps responses and requests matched.
    Forward {
        fire_and_forget: bool,
        /// The decoded request, kept for the authorizer (when authorization is on).
        request: Option<Box<RequestKind>>,
    },
}

/// Serves one client connection until it ends; returns why it ended.
pub async fn serve<S>(
    stream: S,
    target: Target,
    shared: Arc<Shared>,
    stats: Arc<ConnectionStats>,
    client: ClientInfo,
) -> ConnectionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client_r, mut client_w) = tokio::io::split(stream);
    let limits = &shared.limits;
    let auth = shared.auth.clone();
    let mut session = match initial_session(&auth, &client).await {
        Ok(s) => s,
        Err(end) => return end,
    };
    let pre_auth_limit = limits.max_frame_bytes.min(
        auth.settings
            .max_message_bytes
            .saturating_add(PRE_AUTH_HEADER_ALLOWANCE),
    );
    let mut reader = FrameReader::new(
        client_r,
        if session.principal().is_some() {
            limits.max_frame_bytes
        } else {
            pre_auth_limit
        },
    );
    let auth_deadline = Instant::now() + auth.settings.timeout();

    // Phase 1: no upstream connection until an authenticated request needs one.
    let mut first = true;
    let (frame, header, decision) = loop {
        // The first request must come within the handshake timeout, whole; authentication
        // must finish within the authentication timeout.
        let (mut idle, mut frame_time) = if first {
            (limits.handshake_timeout(), limits.handshake_timeout())
        } else {
            (limits.idle_timeout(), limits.frame_timeout())
        };
        first = false;
        if session.principal().is_none() {
            let left = auth_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return ConnectionEnd::AuthTimeout;
            }
            idle = idle.min(left);
            frame_time = frame_time.min(left);
        }
        if session.expects_raw_token() {
            let token = match reader.next_frame_timed(idle, frame_time).await {
                Ok(Some(token)) => token,
                Ok(None) => return ConnectionEnd::ClientClosed,
                Err(e) => return unauthenticated_end(&session, e.into()),
            };
            count_in(&stats, token.len());
            let reply = session
                .raw_token(
                    token.get(LENGTH_PREFIX..).unwrap_or_default(),
                    &auth,
                    &client,
                )
                .await;
            if let Err(end) = send_reply(&mut client_w, reply, &stats).await {
                return end;
            }
        } else {
            let request = next_request(&mut reader, idle, frame_time, &shared, &stats).await;
            match request {
                Ok((_, header, Decision::Answer(response))) => {
                    let started = Instant::now();
                    if let Err(e) = write_frame(&mut client_w, &response).await {
                        return ConnectionEnd::ClientWrite(e);
                    }
                    count_out(&stats, response.len());
                    let m = metrics::api(header.api_key);
                    m.duration.record(started.elapsed().as_secs_f64());
                }
                Ok((frame, header, Decision::Sasl)) => {
                    let reply = session.sasl_request(&frame, &header, &auth, &client).await;
                    if let Err(end) = send_reply(&mut client_w, reply, &stats).await {
                        return end;
                    }
                }
                Ok(forward) => {
                    if session.principal().is_none() {
                        return ConnectionEnd::Unauthenticated(forward.1.api_key);
                    }
                    if let Err(reason) = session.check(Instant::now(), &auth) {
                        return ConnectionEnd::SessionEnded(reason);
                    }
                    break forward;
                }
                Err(end) => return unauthenticated_end(&session, end),
            }
        }
        if session.principal().is_some() {
            reader.set_max_frame(limits.max_frame_bytes);
        }
    };

    // Phase 2: open the upstream connection and run both halves.
    let upstream = match connect_upstream(target, &shared).await {
        Ok(s) => {
            ::metrics::counter!(crate::metrics::UPSTREAM_CONNECTIONS).increment(1);
            s
        }
        Err(e) => {
            ::metrics::counter!(crate::metrics::UPSTREAM_CONNECT_FAILURES).increment(1);
            return e;
        }
    };
    let (upstream_r, upstream_w) = tokio::io::split(upstream);
    let (tx, rx) = mpsc::channel(limits.max_inflight_requests);
    let response_perms = shared
        .authz
        .as_ref()
        .map(|a| a.connection(session.principal(), &client, false));
    let pump = pump_responses(
        rx,
        FrameReader::new(upstream_r, limits.max_response_frame_bytes),
        client_w,
        shared.clone(),
        (stats.clone(), response_perms),
    );
    let forward = forward_requests(
        (frame, header, decision),
        reader,
        upstream_w,
        tx,
        shared.clone(),
        stats,
        (session, client),
    );
    tokio::pin!(pump, forward);
    // Why the client side stopped, once it has. Like a broker, the proxy still delivers
    // every response it owes for requests it already forwarded (a refused request later in
    // a pipeline must not swallow the acknowledgement of a write that happened), then
    // closes with that reason.
    let mut forward_end: Option<ConnectionEnd> = None;
    loop {
        tokio::select! {
            end = &mut forward, if forward_end.is_none() => forward_end = Some(end),
            end = &mut pump => {
                return match (end, forward_end) {
                    (Err(e), _) => e,
                    (Ok(()), Some(reason)) => reason,
                    (Ok(()), None) => ConnectionEnd::ClientClosed,
                };
            }
        }
    }
}

/// Reads the next client request, counts it and decides what to do with it. A clean end
/// of stream between requests is `Err(ClientClosed)`.
async fn next_request<C: AsyncRead + Unpin>(
    reader: &mut FrameReader<C>,
    idle: Duration,
    frame_time: Duration,
    shared: &Shared,
    stats: &ConnectionStats,
) -> Result<(Bytes, RequestHeader, Decision), ConnectionEnd> {
    let frame = reader
        .next_frame_timed(idle, frame_time)
        .await?
        .ok_or(ConnectionEnd::ClientClosed)?;
    count_in(stats, frame.len());
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let header = peek_request_header(&frame)?;
    if handling(header.api_key) == Handling::Sasl {
        metrics::api(header.api_key).requests.increment(1);
        if !shared.auth.sasl_enabled() {
            metrics::api(header.api_key).errors.increment(1);
            return Err(ConnectionEnd::Refused {
                api: header.api_key,
                version: header.api_version,
                reason: "SASL is not enabled on this listener",
            });
        }
        return Ok((frame, header, Decision::Sasl));
    }
    let negotiated = shared
        .cluster
        .negotiated(shared.limits.handshake_timeout())
        .await
        .ok_or(ConnectionEnd::ClusterUnavailable)?;
    let authz_on = shared.authz.is_some();
    let decision = if header.api_key == ApiKey::ApiVersions {
        let mut served = if shared.auth.sasl_enabled() {
            negotiated.with_sasl()
        } else {
            (*negotiated).clone()
        };
        if authz_on {
            served = served.enforceable();
        }
        decide(&frame, &header, &served, &shared.limits, authz_on)?
    } else {
        decide(&frame, &header, &negotiated, &shared.limits, authz_on)?
    };
    Ok((frame, header, decision))
}

/// Decides what to do with one request.
fn decide(
    frame: &Bytes,
    header: &RequestHeader,
    negotiated: &Negotiated,
    limits: &LimitsConfig,
    authz_on: bool,
) -> Result<Decision, ConnectionEnd> {
    let api = header.api_key;
    metrics::api(api).requests.increment(1);
    if api == ApiKey::ApiVersions {
        // Any version is answered: too-new versions get Kafka's v0 error answer.
        let response =
            api_versions_response_frame(negotiated, header.api_version, header.correlation_id)
                .map_err(|e| ConnectionEnd::Broker(format!("cannot encode ApiVersions: {e}")))?;
        return Ok(Decision::Answer(response));
    }
    let refuse = |reason: &'static str| {
        metrics::api(api).errors.increment(1);
        ConnectionEnd::Refused {
            api,
            version: header.api_version,
            reason,
        }
    };
    match handling(api) {
        Handling::Refused(reason) => return Err(refuse(reason.as_str())),
        Handling::Local | Handling::Sasl => return Err(refuse("no local handler")),
        Handling::Raw | Handling::RewriteResponse => {}
    }
    if !negotiated.allows(api, header.api_version) {
        return Err(refuse("version not advertised"));
    }
    if authz_on && !api_acl::enforced(api, header.api_version) {
        return Err(refuse("not enforced by the authorizer"));
    }
    let request = match check_request(frame, header, limits.max_records_per_batch) {
        Ok(request) => request,
        Err(e) => {
            metrics::api(api).errors.increment(1);
            return Err(e.into());
        }
    };
    let fire_and_forget = api == ApiKey::Produce && produce_acks(frame, header)? == 0;
    Ok(Decision::Forward {
        fire_and_forget,
        request: authz_on.then(|| Box::new(request)),
    })
}

async fn connect_upstream(target: Target, shared: &Shared) -> Result<BoxedStream, ConnectionEnd> {
    match target {
        Target::Bootstrap => Ok(shared.connector.connect_bootstrap().await?),
        Target::Broker(node_id) => {
            let (host, port) = shared
                .brokers
                .upstream_of(node_id)
                .ok_or_else(|| ConnectionEnd::Broker(format!("broker {node_id} is unknown")))?;
            Ok(shared.connector.connect(&host, port).await?)
        }
    }
}

/// Reads client requests and forwards them upstream, queueing what the pump must deliver.
async fn forward_requests<C: AsyncRead + Unpin>(
    first: (Bytes, RequestHeader, Decision),
    mut reader: FrameReader<C>,
    mut upstream: WriteHalf<BoxedStream>,
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
    stats: Arc<ConnectionStats>,
    (mut session, client): (Session, ClientInfo),
) -> ConnectionEnd {
    let limits = &shared.limits;
    let auth = shared.auth.clone();
    let mut perms = shared
        .authz
        .as_ref()
        .map(|a| a.connection(session.principal(), &client, true));
    let mut next = Some(first);
    loop {
        let (frame, mut header, decision) = match next.take() {
            Some(request) => request,
            None => {
                // An idle connection is closed when its session ends, not only at its
                // next request.
                let idle = match session.deadline() {
                    Some(d) => limits
                        .idle_timeout()
                        .min(d.saturating_duration_since(Instant::now())),
                    None => limits.idle_timeout(),
                };
                let request =
                    next_request(&mut reader, idle, limits.frame_timeout(), &shared, &stats).await;
                match request {
                    Ok(r) => r,
                    Err(end) => {
                        if session.deadline().is_some_and(|d| Instant::now() >= d) {
                            if let ConnectionEnd::ClientFrame(FrameError::Timeout { .. }) = end {
                                return ConnectionEnd::SessionEnded(
                                    "session expired without re-authentication",
                                );
                            }
                        }
                        return end;
                    }
                }
            }
        };
        let started = Instant::now();
        match decision {
            Decision::Answer(response) => {
                if tx.send(Pending::Local(response)).await.is_err() {
                    return ConnectionEnd::ClientClosed;
                }
                metrics::api(header.api_key)
                    .duration
                    .record(started.elapsed().as_secs_f64());
            }
            Decision::Sasl => {
                if header.api_key == ApiKey::SaslHandshake && header.api_version == 0 {
                    return ConnectionEnd::Authentication(
                        "re-authentication needs SaslHandshake v1 or later".into(),
                    );
                }
                let reply = session.sasl_request(&frame, &header, &auth, &client).await;
                if let Some(response) = reply.frame {
                    if tx.send(Pending::Local(response)).await.is_err() {
                        return ConnectionEnd::ClientClosed;
                    }
                }
                if let Some(reason) = reply.close {
                    return ConnectionEnd::Authentication(reason);
                }
                // Re-authentication keeps the principal but may bring new roles (a fresh
                // token): later decisions use them.
                if let (Some(authz), Some(principal)) = (&shared.authz, session.principal()) {
                    perms = Some(authz.connection(Some(principal), &client, true));
                }
            }
            Decision::Forward {
                fire_and_forget,
                mut request,
            } => {
                if let Err(reason) = session.check(Instant::now(), &auth) {
                    return ConnectionEnd::SessionEnded(reason);
                }
                let (rewritten, fix) = match (perms.as_mut(), request.as_mut()) {
                    (None, _) => (None, None),
                    (Some(_), None) => {
                        return ConnectionEnd::Refused {
                            api: header.api_key,
                            version: header.api_version,
                            reason: "request was not decoded for the authorizer",
                        }
                    }
                    (Some(perms), Some(request)) => {
                        perms.begin_request(RequestContext {
                            api: header.api_key,
                            version: header.api_version,
                            correlation_id: header.correlation_id,
                            client_id: header.client_id.take(),
                        });
                        let verdict = authorize_request(request, header.api_version, perms);
                        match verdict.action {
                            Action::Forward => (None, verdict.fix),
                            Action::ForwardModified => {
                                if let (true, RequestKind::Produce(produce)) =
                                    (fire_and_forget, request.as_mut())
                                {
                                    produce.acks = 1;
                                }
                                match encode_request_frame(&frame, &header, request) {
                                    Ok(f) => (Some(f), verdict.fix),
                                    Err(e) => return e,
                                }
                            }
                            Action::Drop => continue,
                            Action::Refuse => {
                                return ConnectionEnd::Refused {
                                    api: header.api_key,
                                    version: header.api_version,
                                    reason: "not enforced by the authorizer",
                                }
                            }
                            Action::Answer(response) => {
                                let answer = response_kind_frame(
                                    header.api_key,
                                    header.api_version,
                                    header.correlation_id,
                                    &response,
                                );
                                let answer = match answer {
                                    Ok(a) => a,
                                    Err(e) => {
                                        return ConnectionEnd::Broker(format!(
                                            "cannot encode {:?} answer: {e}",
                                            header.api_key
                                        ))
                                    }
                                };
                                if tx.send(Pending::Local(answer)).await.is_err() {
                                    return ConnectionEnd::ClientClosed;
                                }
                                continue;
                            }
                        }
                    }
                };
                let frame = if let Some(rewritten) = rewritten {
                    rewritten
                } else if fire_and_forget {
                    match with_produce_acks(&frame, &header, 1) {
                        Ok(f) => f,
                        Err(e) => return e.into(),
                    }
                } else {
                    frame
                };
                let pending = Pending::Upstream {
                    api: header.api_key,
                    version: header.api_version,
                    correlation_id: header.correlation_id,
                    started,
                    deliver: !fire_and_forget,
                    fix,
                };
                if tx.send(pending).await.is_err() {
                    return ConnectionEnd::ClientClosed;
                }
                if let Err(e) = write_frame(&mut upstream, &frame).await {
                    return ConnectionEnd::Broker(format!("write failed: {e}"));
                }
            }
        }
    }
}

/// Delivers responses to the client in request order.
async fn pump_responses<C: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Pending>,
    mut upstream: FrameReader<ReadHalf<BoxedStream>>,
    mut client: C,
    shared: Arc<Shared>,
    (stats, mut perms): (Arc<ConnectionStats>, Option<ConnectionPermissions>),
) -> Result<(), ConnectionEnd> {
    let timeout = shared.limits.upstream_response_timeout();
    loop {
        // While nothing is owed, still watch the broker side: if the broker goes away the
        // client must learn it now (by the connection closing), not at its next request.
        // `biased` matters: a response can only arrive after its `Pending` was queued, so
        // checking the queue first never mistakes a response for an unsolicited frame.
        let pending = tokio::select! {
            biased;
            pending = rx.recv() => pending,
            unsolicited = upstream.next_frame() => {
                return Err(ConnectionEnd::Broker(match unsolicited {
                    Ok(None) => "connection closed".into(),
                    Ok(Some(_)) => "sent a response nobody asked for".into(),
                    Err(e) => e.to_string(),
                }));
            }
        };
        let Some(pending) = pending else { break };
        let (response, api_started) = match pending {
            Pending::Local(frame) => (frame, None),
            Pending::Upstream {
                api,
                version,
                correlation_id,
                started,
                deliver,
                fix,
            } => {
                let frame = match tokio::time::timeout(timeout, upstream.next_frame()).await {
                    Err(_) => {
                        return Err(ConnectionEnd::Broker(format!(
                            "no {api:?} response within {timeout:?}"
                        )))
                    }
                    Ok(Err(e)) => return Err(ConnectionEnd::Broker(e.to_string())),
                    Ok(Ok(None)) => return Err(ConnectionEnd::Broker("connection closed".into())),
                    Ok(Ok(Some(f))) => f,
                };
                let out = checked_response(frame, api, version, correlation_id, &shared.brokers)?;
                if !deliver {
                    continue;
                }
                let out = match (fix, perms.as_mut()) {
                    (Some(fix), Some(perms)) => fixed_response(out, api, version, &fix, perms)?,
                    _ => out,
                };
                (out, Some((api, started)))
            }
        };
        write_frame(&mut client, &response)
            .await
            .map_err(ConnectionEnd::ClientWrite)?;
        count_out(&stats, response.len());
        if let Some((api, started)) = api_started {
            metrics::api(api)
                .duration
                .record(started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// Checks that a broker response answers the expected request and rewrites addresses.
fn checked_response(
    frame: Bytes,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    brokers: &BrokerMap,
) -> Result<Bytes, ConnectionEnd> {
    let header_version = api.response_header_version(version);
    let (got, body_offset) = peek_response_header(&frame, header_version)
        .map_err(|e| ConnectionEnd::Broker(format!("bad {api:?} response header: {e}")))?;
    if got != correlation_id {
        return Err(ConnectionEnd::Broker(format!(
            "{api:?} response has correlation id {got}, expected {correlation_id}"
        )));
    }
    if !response_needs_rewrite(api, version) {
        return Ok(frame);
    }
    let body = frame.slice(body_offset..);
    match rewrite_response(api, version, body, brokers)? {
        None => Ok(frame),
        Some(new_body) => Ok(build_frame(&[&frame[4..body_offset], &new_body])),
    }
}

/// Applies authorization's changes to a (checked) response frame.
fn fixed_response(
    frame: Bytes,
    api: ApiKey,
    version: i16,
    fix: &ResponseFix,
    perms: &mut ConnectionPermissions,
) -> Result<Bytes, ConnectionEnd> {
    let (_, body_offset) = peek_response_header(&frame, api.response_header_version(version))
        .map_err(|e| ConnectionEnd::Broker(format!("bad {api:?} response header: {e}")))?;
    let body = frame.slice(body_offset..);
    let body = apply_fix(fix, api, version, body, perms)
        .map_err(|e| ConnectionEnd::Broker(format!("cannot re-encode {api:?} response: {e}")))?;
    Ok(build_frame(&[&frame[4..body_offset], &body]))
}

/// Re-encodes a request the authorizer changed, keeping the client's header bytes.
fn encode_request_frame(
    frame: &Bytes,
    header: &RequestHeader,
    request: &RequestKind,
) -> Result<Bytes, ConnectionEnd> {
    let mut body = bytes::BytesMut::new();
    request.encode(&mut body, header.api_version).map_err(|e| {
        ConnectionEnd::Broker(format!(
            "cannot re-encode {:?} request: {e}",
            header.api_key
        ))
    })?;
    let header_bytes = frame.get(4..header.body_offset).unwrap_or_default();
    Ok(build_frame(&[header_bytes, &body]))
}

/// Room for a request header (client id included) on top of `auth.max_message_bytes` in
/// frames read before authentication.
const PRE_AUTH_HEADER_ALLOWANCE: usize = 4096;

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

/// A timeout before authentication completed is an authentication timeout.
fn unauthenticated_end(session: &Session, end: ConnectionEnd) -> ConnectionEnd {
    match end {
        ConnectionEnd::ClientFrame(FrameError::Timeout { .. }) if session.principal().is_none() => {
            ConnectionEnd::AuthTimeout
        }
        other => other,
    }
}

/// Writes a SASL reply; `Err` when the connection ends with it.
async fn send_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: Reply,
    stats: &ConnectionStats,
) -> Result<(), ConnectionEnd> {
    if let Some(frame) = reply.frame {
        write_frame(w, &frame)
            .await
            .map_err(ConnectionEnd::ClientWrite)?;
        count_out(stats, frame.len());
    }
    match reply.close {
        Some(reason) => Err(ConnectionEnd::Authentication(reason)),
        None => Ok(()),
    }
}

fn count_in(stats: &ConnectionStats, bytes: usize) {
    stats.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    metrics::client_bytes().read.increment(bytes as u64);
}

fn count_out(stats: &ConnectionStats, bytes: usize) {
    stats.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    metrics::client_bytes().written.increment(bytes as u64);
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}
