//! The admin HTTP listener: Prometheus metrics and health probes.
//!
//! It listens on loopback by default, because `/metrics` reveals topology and traffic shape.
//! Routes:
//!
//! - `GET /metrics`: the Prometheus text exposition of every metric the proxy records.
//! - `GET /healthz`: liveness; 200 `ok` whenever the process can answer at all.
//! - `GET /readyz`: readiness; 200 `ready` once the upstream cluster has answered, 503 before,
//!   so an orchestrator does not send clients to a proxy that cannot reach its brokers. After
//!   a failed policy reload under `authorization.on_reload_failure = "deny_all"` it answers
//!   503 with the reason (the proxy denies every request); under `"keep_last_good"` it stays
//!   200 and its body says the policy is degraded.
//!
//! - `/audit/...`: the audit log's API (`portcullis_audit::admin_api`), behind a bearer token:
//!   every mutating request needs it, reads too when `admin.token_file` is set (required off
//!   loopback; see [`crate::admin::token`]).
//!
//! - `/keys/...`: the `portcullis keys` commands on the proxy's keyring
//!   ([`crate::admin::keys`]), when `[encryption]` is on; every one needs the token.
//!
//! Every route first checks the `Host` header ([`crate::admin::host`]: DNS rebinding).
//! Everything else is 404 (405 for another method on a known path).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::admin::host::{check_host, AllowedHosts};
use crate::admin::token::{require_token, AdminToken, TokenGuard};

/// The histogram whose buckets [`install_metrics_recorder`] configures.
pub const REQUEST_DURATION_METRIC: &str = "portcullis_request_duration_seconds";

/// Bucket upper bounds, in seconds, for [`REQUEST_DURATION_METRIC`]: 50 µs to 10 s in a
/// 1-2.5-5 progression, fine enough to see a proxy hop (tens of µs) and a slow broker (seconds)
/// on the same histogram.
pub const REQUEST_DURATION_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How often [`serve`] drains recorded histogram samples into their buckets, so memory stays
/// bounded even when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the admin handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Renders the metrics recorded by the installed recorder.
    pub prometheus: PrometheusHandle,
    /// Set once the upstream cluster has answered; drives `/readyz`.
    pub ready: Arc<AtomicBool>,
    /// The audit log, served under `/audit/...` (query, tail, checkpoint, pubkey, prove).
    pub audit: portcullis_audit::AuditLog,
    /// The bearer token of `/audit/...`: always for mutating requests, for reads too when
    /// `reads_need_token` (see [`crate::admin::token`]). `None` only in tests.
    pub token: Option<Arc<AdminToken>>,
    /// Whether reads of `/audit/...` need the token too (`admin.token_file` configured).
    pub reads_need_token: bool,
    /// The `Host` names served besides IP literals and `localhost` (`admin.allowed_hosts`).
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The policy engine, when authorization is on: its degraded state drives `/readyz`.
    pub policy: Option<portcullis_policy::Authorizer>,
    /// The keyring, when `[encryption]` is on: served under `/keys/...`
    /// ([`crate::admin::keys`]), always behind the token.
    pub keyring: Option<Arc<portcullis_crypto::Keyring>>,
}

/// Builds the Prometheus recorder, installs it as the process-wide `metrics` recorder, and
/// returns the handle `/metrics` renders from.
///
/// [`REQUEST_DURATION_METRIC`] is rendered as a true Prometheus histogram with
/// [`REQUEST_DURATION_BUCKETS`]; other histograms are rendered as summaries. The exporter's
/// own HTTP listener is not used: [`serve`] exposes the handle and [`spawn_upkeep`] runs
/// its upkeep.
///
/// # Errors
///
/// A description of the problem if a global recorder is already installed (a second call, or
/// tests), or if the recorder cannot be built.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION_METRIC.to_owned()),
            &REQUEST_DURATION_BUCKETS,
        )
        .map_err(|e| format!("cannot build the metrics recorder: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    Ok(handle)
}

/// Serves the admin routes on `listener` until `shutdown` completes.
///
/// On shutdown the listener stops accepting, idle connections are closed and requests in
/// flight are answered before this returns. A client that holds a connection open mid-request
/// delays that, so a caller that must stop promptly should bound this with a timeout.
///
/// # Errors
///
/// An I/O error from the server itself. Per-connection errors are not returned.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The caller's address goes into the audit events of admin actions.
    let service = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs the recorder's periodic upkeep (draining histogram samples) for as long as the
/// process lives. Needed whether or not the admin listener runs, or samples accumulate.
pub fn spawn_upkeep(prometheus: PrometheusHandle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            upkeep.tick().await;
            prometheus.run_upkeep();
        }
    })
}

/// The admin routes.
fn router(state: AdminState) -> Router {
    let mut audit = portcullis_audit::admin_api::router(state.audit.clone());
    if let Some(token) = &state.token {
        let guard = TokenGuard {
            token: token.clone(),
            audit: Arc::new(state.audit.clone()),
            reads_need_token: state.reads_need_token,
        };
        audit = audit.layer(axum::middleware::from_fn_with_state(guard, require_token));
    }
    if let (Some(keyring), Some(token)) = (&state.keyring, &state.token) {
        let guard = TokenGuard {
            token: token.clone(),
            audit: Arc::new(state.audit.clone()),
            reads_need_token: true,
        };
        let keys = crate::admin::keys::router(crate::admin::keys::KeysState {
            keyring: keyring.clone(),
            audit: state.audit.clone(),
        })
        .layer(axum::middleware::from_fn_with_state(guard, require_token));
        audit = audit.merge(keys);
    }
    let hosts = state.allowed_hosts.clone();
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(audit)
        .layer(axum::middleware::from_fn_with_state(hosts, check_host))
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    let mut text = state.prometheus.render();
    crate::metrics::decision_series::render(&mut text);
    ([(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if !state.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: upstream cluster has not answered yet".into(),
        );
    }
    let degraded = state.policy.as_ref().and_then(|p| p.degraded());
    match degraded.as_deref() {
        None => (StatusCode::OK, "ready".into()),
        Some(d) if d.mode == portcullis_policy::ReloadFailure::DenyAll => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the last policy reload failed and authorization.on_reload_failure = \"deny_all\": every request is denied until a reload succeeds ({})",
                d.reason
            ),
        ),
        Some(d) => (
            StatusCode::OK,
            format!(
                "ready (degraded: the last policy reload failed; the last good policy, generation {}, stays in force: {})",
                d.generation, d.reason
            ),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    struct Response {
        status: u16,
        headers: String,
        body: String,
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
        request_with(addr, method, path, "").await
    }

    async fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Response {
        request_raw(addr, method, path, &format!("Host: localhost\r\n{headers}")).await
    }

    /// `headers` must include `Host` when the test wants one.
    async fn request_raw(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Response {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("response within 10s")
            .unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("header terminator");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .split(' ')
            .nth(1)
            .expect("status code")
            .parse()
            .unwrap();
        Response {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    struct Running {
        addr: SocketAddr,
        ready: Arc<AtomicBool>,
        stop: oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
        _audit_dir: tempfile::TempDir,
    }

    async fn start(prometheus: PrometheusHandle) -> Running {
        start_with_token(prometheus, None).await
    }

    async fn start_with_token(prometheus: PrometheusHandle, token: Option<&str>) -> Running {
        start_with(prometheus, token, None).await
    }

    async fn start_with(
        prometheus: PrometheusHandle,
        token: Option<&str>,
        policy: Option<portcullis_policy::Authorizer>,
    ) -> Running {
        start_tweaked(prometheus, token, |state| state.policy = policy).await
    }

    async fn start_tweaked(
        prometheus: PrometheusHandle,
        token: Option<&str>,
        tweak: impl FnOnce(&mut AdminState),
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = portcullis_audit::AuditLog::open(
            audit_dir.path(),
            &portcullis_audit::AuditLogConfig::default(),
        )
        .unwrap();
        let mut state = AdminState {
            prometheus,
            ready: Arc::clone(&ready),
            audit,
            token: token.map(|t| Arc::new(AdminToken::new(t).unwrap())),
            reads_need_token: true,
            allowed_hosts: Arc::new(AllowedHosts::default()),
            policy: None,
            keyring: None,
        };
        tweak(&mut state);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            ready,
            stop,
            server,
            _audit_dir: audit_dir,
        }
    }

    fn local_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(REQUEST_DURATION_METRIC.to_owned()),
                &REQUEST_DURATION_BUCKETS,
            )
            .unwrap()
            .build_recorder()
    }

    #[tokio::test]
    async fn routes_answer_and_shutdown_is_graceful() {
        let recorder = local_recorder();
        let running = start(recorder.handle()).await;
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("portcullis_admin_test_total").increment(7);
            metrics::histogram!(REQUEST_DURATION_METRIC).record(0.0003);
        });

        let health = request(running.addr, "GET", "/healthz").await;
        assert_eq!(health.status, 200);
        assert_eq!(health.body, "ok");

        let metrics = request(running.addr, "GET", "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics
                .headers
                .contains("content-type: text/plain; version=0.0.4"),
            "{}",
            metrics.headers
        );
        assert!(
            metrics.body.contains("portcullis_admin_test_total 7"),
            "{}",
            metrics.body
        );
        assert!(
            metrics
                .body
                .contains("portcullis_request_duration_seconds_bucket{le=\"0.0005\"} 1"),
            "{}",
            metrics.body
        );

        let missing = request(running.addr, "GET", "/nope").await;
        assert_eq!(missing.status, 404);
        let wrong_method = request(running.addr, "POST", "/healthz").await;
        assert_eq!(wrong_method.status, 405);

        running.stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), running.server)
            .await
            .expect("server stops within 10s")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(TcpStream::connect(running.addr).await.is_err());
    }

    #[tokio::test]
    async fn the_audit_api_requires_the_token_and_refusals_are_audited() {
        const TOKEN: &str = "0123456789abcdef0123456789abcdef";
        let running = start_with_token(local_recorder().handle(), Some(TOKEN)).await;
        let bearer = format!("Authorization: Bearer {TOKEN}\r\n");

        let none = request(running.addr, "GET", "/audit/checkpoint").await;
        assert_eq!(none.status, 401, "{}", none.body);
        assert!(
            none.headers.contains("www-authenticate: bearer"),
            "{}",
            none.headers
        );
        let wrong = request_with(
            running.addr,
            "POST",
            "/audit/rotate-key",
            "Authorization: Bearer 0123456789abcdef0123456789abcdeX\r\nContent-Length: 0\r\n",
        )
        .await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
        let right = request_with(running.addr, "GET", "/audit/pubkey", &bearer).await;
        assert_eq!(right.status, 200, "{}", right.body);
        assert_eq!(request(running.addr, "GET", "/healthz").await.status, 200);
        assert_eq!(request(running.addr, "GET", "/metrics").await.status, 200);

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let denied = request_with(
                running.addr,
                "GET",
                "/audit/query?action=admin.auth&outcome=deny",
                &bearer,
            )
            .await;
            assert_eq!(denied.status, 200, "{}", denied.body);
            let events: Vec<serde_json::Value> = serde_json::from_str(&denied.body).unwrap();
            if events.len() == 2 {
                assert!(
                    !denied.body.contains("abcdeX"),
                    "a presented token was logged"
                );
                assert!(events.iter().all(|e| e["client_addr"].is_string()));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{}", denied.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.stop.send(()).unwrap();
        running.server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn readyz_follows_the_flag() {
        let running = start(local_recorder().handle()).await;

        let before = request(running.addr, "GET", "/readyz").await;
        assert_eq!(before.status, 503);
        assert_eq!(
            before.body,
            "not ready: upstream cluster has not answered yet"
        );

        running.ready.store(true, Ordering::Release);
        let after = request(running.addr, "GET", "/readyz").await;
        assert_eq!(after.status, 200);
        assert_eq!(after.body, "ready");

        running.stop.send(()).unwrap();
        running.server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn readyz_reports_a_degraded_policy() {
        for mode in [
            portcullis_policy::ReloadFailure::DenyAll,
            portcullis_policy::ReloadFailure::KeepLastGood,
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/model.conf"),
                dir.path().join("model.conf"),
            )
            .unwrap();
            let rules = dir.path().join("rules.csv");
            std::fs::write(&rules, "p, User:a, topic, t, Read, allow\n").unwrap();
            let policy = portcullis_policy::Authorizer::load(&portcullis_policy::PolicyConfig {
                on_reload_failure: mode,
                ..portcullis_policy::PolicyConfig::new(dir.path())
            })
            .unwrap();
            let running = start_with(local_recorder().handle(), None, Some(policy.clone())).await;
            running.ready.store(true, Ordering::Release);

            std::fs::write(&rules, "p, User:a, topic, t, Reed, allow\n").unwrap();
            assert!(!policy.reload().accepted);
            let degraded = request(running.addr, "GET", "/readyz").await;
            match mode {
                portcullis_policy::ReloadFailure::DenyAll => {
                    assert_eq!(degraded.status, 503, "{}", degraded.body);
                    assert!(degraded.body.contains("deny_all"), "{}", degraded.body);
                }
                portcullis_policy::ReloadFailure::KeepLastGood => {
                    assert_eq!(degraded.status, 200, "{}", degraded.body);
                    assert!(degraded.body.contains("degraded"), "{}", degraded.body);
                }
            }
            assert!(degraded.body.contains("rules.csv"), "{}", degraded.body);

            std::fs::write(&rules, "p, User:a, topic, t, Read, allow\n").unwrap();
            assert!(policy.reload().accepted);
            let healed = request(running.addr, "GET", "/readyz").await;
            assert_eq!((healed.status, healed.body.as_str()), (200, "ready"));
            running.stop.send(()).unwrap();
            running.server.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn the_host_header_must_name_the_listener() {
        let running = start_tweaked(local_recorder().handle(), None, |state| {
            state.allowed_hosts = Arc::new(AllowedHosts::new(&["proxy-1.internal".into()]));
        })
        .await;
        let addr = running.addr;
        let host = |h: &str| format!("Host: {h}\r\n");
        for ok in [
            host(&addr.to_string()),
            host("localhost"),
            host(&format!("proxy-1.internal:{}", addr.port())),
        ] {
            let r = request_raw(addr, "GET", "/healthz", &ok).await;
            assert_eq!(r.status, 200, "{ok}: {}", r.body);
        }
        for (path, bad) in [
            ("/healthz", host(&format!("evil.example:{}", addr.port()))),
            ("/metrics", host("rebind.evil.example")),
            ("/audit/checkpoint", host("localhost.evil.example")),
            ("/healthz", String::new()),
        ] {
            let r = request_raw(addr, "GET", path, &bad).await;
            assert_ne!(r.status, 200, "{path} with {bad:?} was served");
            assert!(r.status == 403 || r.status == 400, "{}", r.status);
        }
        running.stop.send(()).unwrap();
        running.server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn mutating_requests_need_the_token_on_loopback_too() {
        const TOKEN: &str = "0123456789abcdef0123456789abcdef";
        let running = start_tweaked(local_recorder().handle(), Some(TOKEN), |state| {
            state.reads_need_token = false;
        })
        .await;
        let read = request(running.addr, "GET", "/audit/pubkey").await;
        assert_eq!(read.status, 200, "{}", read.body);
        for path in ["/audit/rotate-key", "/audit/checkpoint"] {
            let r = request_with(running.addr, "POST", path, "Content-Length: 0\r\n").await;
            assert_eq!(r.status, 401, "POST {path} without the token: {}", r.body);
        }
        let rotated = request_with(
            running.addr,
            "POST",
            "/audit/rotate-key",
            &format!("Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n"),
        )
        .await;
        assert_eq!(rotated.status, 200, "{}", rotated.body);
        running.stop.send(()).unwrap();
        running.server.await.unwrap().unwrap();
    }
}
