//! Accept loops: one per client-facing listener (bootstrap and one per broker).
//!
//! Each accepted socket takes a permit from the global connection limit (or is closed at
//! once), completes the TLS handshake within the handshake timeout if TLS is on, and runs
//! `connection::serve`. Open and close are audited and counted here, so every connection
//! is accounted for whatever way it ends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_audit::{AuditSink, Category, Event, Outcome};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::connection::{serve, ConnectionEnd, ConnectionStats, Shared, Target};
use crate::tls::ServerTls;

/// Everything an accept loop needs.
#[derive(Clone)]
pub struct ListenerContext {
    /// Shared connection state.
    pub shared: Arc<Shared>,
    /// Client-facing TLS, if enabled.
    pub tls: Option<Arc<ServerTls>>,
    /// Global connection limit.
    pub connection_permits: Arc<Semaphore>,
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
            handle_connection(tcp, peer, target, &label, ctx).await;
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
    let end = match &ctx.tls {
        None => serve(tcp, target, ctx.shared.clone(), stats.clone()).await,
        Some(tls) => {
            let handshake = tokio::time::timeout(
                ctx.shared.limits.handshake_timeout(),
                tls.acceptor().accept(tcp),
            )
            .await;
            match handshake {
                Ok(Ok(stream)) => serve(stream, target, ctx.shared.clone(), stats.clone()).await,
                Ok(Err(e)) => ConnectionEnd::TlsHandshake(e.to_string()),
                Err(_) => ConnectionEnd::TlsHandshake("timed out".into()),
            }
        }
    };
    open.decrement(1.0);
    let outcome = match &end {
        ConnectionEnd::ClientClosed => Outcome::Success,
        _ => {
            metrics::counter!(crate::metrics::CONNECTION_ERRORS, "reason" => end.label())
                .increment(1);
            Outcome::Failure
        }
    };
    match &end {
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
