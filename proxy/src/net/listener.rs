//! Accept loops: one per client-facing listener (bootstrap and one per broker).
//!
//! Each accepted socket is admitted by the per-source gate (`source_gate`: unauthenticated
//! connections and new connections per second of its source) and takes a permit from the
//! global connection limit, or is closed at once; completes the TLS handshake within the handshake timeout if TLS is on, and runs
//! `connection::serve`. Open and close are audited and counted here, so every connection
//! is accounted for whatever way it ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_audit::{AuditSink, Category, Event, Outcome};
use portcullis_auth::mtls::TlsIdentity;
use portcullis_auth::{AuthFailure, FailureKind};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::authn::ClientInfo;
use crate::connection::{serve, ConnectionEnd, ConnectionStats, Shared, Target};
use crate::net::source_gate::{PreAuthPermit, SourceGate};
use crate::net::tls::ServerTls;

/// Size of the read buffer between a client's TLS socket and rustls. rustls asks for at
/// most 4 KiB per read, so without it a 1 MiB produce request costs some 256 `read`
/// system calls; through it, one per 64 KiB (the extra copy is far cheaper).
const TLS_SOCKET_READ_BUFFER: usize = 64 * 1024;

/// Everything an accept loop needs.
#[derive(Clone)]
pub struct ListenerContext {
    /// Shared connection state.
    pub shared: Arc<Shared>,
    /// Client-facing TLS, if enabled.
    pub tls: Option<Arc<ServerTls>>,
    /// Global connection limit.
    pub connection_permits: Arc<Semaphore>,
    /// Per-source limits before authentication.
    pub sources: Arc<SourceGate>,
    /// Where audit events go.
    pub audit: Arc<dyn AuditSink>,
}

impl Target {
    /// Label for logs, metrics and audit events.
    pub fn label(&self) -> String {
        match self {
            Target::Bootstrap => "bootstrap".into(),
            Target::Broker(id) => format!("broker-{id}"),
        }
    }
}

/// Accepts connections on `listener` forever.
pub async fn accept_loop(listener: TcpListener, target: Target, ctx: ListenerContext) {
    let label = target.label();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::error!(listener = %label, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Closed at once, before any byte is read: one source must not hold more than its
        // share of unauthenticated connections nor open them faster than its rate.
        let Ok(pre_auth) = ctx.sources.admit(peer.ip(), Instant::now()) else {
            drop(tcp);
            continue;
        };
        let Ok(permit) = ctx.connection_permits.clone().try_acquire_owned() else {
            metrics::counter!(crate::metrics::CONNECTIONS_REJECTED, "reason" => "max_connections")
                .increment(1);
            tracing::warn!(%peer, "connection refused: limits.max_connections reached");
            drop(tcp);
            continue;
        };
        let ctx = ctx.clone();
        let label = label.clone();
        tokio::spawn(async move {
            handle_connection(tcp, peer, target, &label, ctx, pre_auth).await;
            drop(permit);
        });
    }
}

async fn handle_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    target: Target,
    label: &str,
    ctx: ListenerContext,
    pre_auth: PreAuthPermit,
) {
    let _ = tcp.set_nodelay(true);
    let kind = if matches!(target, Target::Bootstrap) {
        "bootstrap"
    } else {
        "broker"
    };
    metrics::counter!(crate::metrics::CONNECTIONS_TOTAL, "listener" => kind).increment(1);
    let open = metrics::gauge!(crate::metrics::CONNECTIONS_OPEN, "listener" => kind);
    open.increment(1.0);
    let opened = Instant::now();
    ctx.audit.emit(
        Event::new(Category::Connection, "connection.open", Outcome::Success)
            .client_addr(peer.to_string())
            .listener(label.to_string())
            .detail("tls", ctx.tls.is_some()),
    );
    let stats = Arc::new(ConnectionStats::default());
    let mut client = ClientInfo {
        peer,
        listener: label.to_string(),
        tls_identity: None,
    };
    let end = match &ctx.tls {
        None => {
            serve(
                tcp,
                target,
                ctx.shared.clone(),
                stats.clone(),
                client,
                pre_auth,
            )
            .await
        }
        Some(tls) => {
            let handshake = tokio::time::timeout(
                ctx.shared.limits.handshake_timeout(),
                tls.acceptor()
                    .accept(BufReader::with_capacity(TLS_SOCKET_READ_BUFFER, tcp)),
            )
            .await;
            match handshake {
                Ok(Ok(stream)) => {
                    let leaf = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first());
                    match leaf.map(|cert| client_identity(&ctx, &client, cert)) {
                        Some(Err(end)) => end,
                        identity => {
                            client.tls_identity = identity.and_then(Result::ok);
                            let shared = ctx.shared.clone();
                            serve(stream, target, shared, stats.clone(), client, pre_auth).await
                        }
                    }
                }
                Ok(Err(e)) => {
                    tls_failure(&ctx, &client, &e.to_string());
                    ConnectionEnd::TlsHandshake(e.to_string())
                }
                Err(_) => ConnectionEnd::TlsHandshake("timed out".into()),
            }
        }
    };
    open.decrement(1.0);
    report_close(&ctx, peer, label, &end, &stats, opened);
}

/// Counts, logs and audits the end of a connection.
fn report_close(
    ctx: &ListenerContext,
    peer: SocketAddr,
    label: &str,
    end: &ConnectionEnd,
    stats: &ConnectionStats,
    opened: Instant,
) {
    let outcome = match end {
        ConnectionEnd::ClientClosed => Outcome::Success,
        _ => {
            metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => end.label())
                .increment(1);
            Outcome::Failure
        }
    };
    match end {
        ConnectionEnd::ClientClosed => {
            tracing::debug!(%peer, listener = %label, "connection closed")
        }
        ConnectionEnd::Refused { .. }
        | ConnectionEnd::BadHeader(_)
        | ConnectionEnd::ClientFrame(_)
        | ConnectionEnd::TlsHandshake(_) => {
            tracing::warn!(%peer, listener = %label, reason = %end, "connection closed")
        }
        _ => tracing::info!(%peer, listener = %label, reason = %end, "connection closed"),
    }
    ctx.audit.emit(
        Event::new(Category::Connection, "connection.close", outcome)
            .client_addr(peer.to_string())
            .listener(label.to_string())
            .reason(end.to_string())
            .detail("bytes_in", stats.bytes_in.load(Ordering::Relaxed))
            .detail("bytes_out", stats.bytes_out.load(Ordering::Relaxed))
            .detail("requests", stats.requests.load(Ordering::Relaxed))
            .detail("duration_ms", opened.elapsed().as_millis() as u64),
    );
}

/// Maps a verified client certificate to its identity; a certificate that cannot be mapped
/// ends the connection (audited as an authentication failure).
fn client_identity(
    ctx: &ListenerContext,
    client: &ClientInfo,
    cert: &rustls_pki_types::CertificateDer<'_>,
) -> Result<TlsIdentity, ConnectionEnd> {
    let auth = &ctx.shared.auth;
    let Some(mapper) = &auth.mtls else {
        return Err(ConnectionEnd::Authentication(
            "client certificate received but no mapping is configured".into(),
        ));
    };
    mapper.map(cert.as_ref()).map_err(|e| {
        let failure = AuthFailure::new(
            FailureKind::BadCredentials,
            None,
            format!("client certificate cannot be mapped to a principal: {e}"),
        );
        auth.note_failure(client, "TLS", &failure);
        ConnectionEnd::Authentication(failure.detail)
    })
}

/// Records a TLS handshake failure that is about the client's certificate (untrusted,
/// expired, missing) as an authentication failure.
fn tls_failure(ctx: &ListenerContext, client: &ClientInfo, error: &str) {
    let about_certificate = error.contains("certificate") || error.contains("Certificate");
    if about_certificate && ctx.shared.auth.mtls.is_some() {
        let failure = AuthFailure::new(FailureKind::BadCredentials, None, error.to_string());
        ctx.shared.auth.note_failure(client, "TLS", &failure);
    }
}
