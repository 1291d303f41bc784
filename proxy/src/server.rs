//! `portcullis serve`: wires configuration into running listeners.
//!
//! Start-up order matters: the crypto provider, metrics recorder and audit sink exist before
//! any socket is bound; the broker listener spawner is registered before cluster discovery
//! can find brokers; the bootstrap listener is bound last so a client never reaches a proxy
//! that is not ready to serve it. Shutdown drains the audit log and signs a last checkpoint.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use portcullis_audit::anchor::Anchor;
use portcullis_audit::{AuditLog, AuditSink, Category, Event, Outcome};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admin::host::AllowedHosts;
use crate::admin::http::{self as admin_http, AdminState};
use crate::audit::anchor_alarm;
use crate::audit::budget::BudgetedSink;
use crate::audit::kafka_anchor::KafkaAnchor;
use crate::authn::AuthService;
use crate::cluster::broker_map::BrokerMap;
use crate::cluster::registry_topic::TopicRegistry;
use crate::cluster::{run_discovery, ClusterView};
use crate::config::auth::{ClientAuth, ListenerAuthConfig};
use crate::config::Config;
use crate::connection::{Shared, Target};
use crate::encryption::keyring_open::{open_keyring, OpenedRegistry};
use crate::net::listener::{accept_loop, ListenerContext};
use crate::net::source_gate::SourceGate;
use crate::net::tls::{install_crypto_provider, ClientCertPolicy, ServerTls};
use crate::net::upstream::Connector;
use crate::pipeline::authz::reserved::ReservedTopics;
use crate::pipeline::authz::AuthzService;
use crate::pipeline::encryption::EncryptionService;
use portcullis_crypto::Keyring;

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    install_crypto_provider();
    let prometheus = admin_http::install_metrics_recorder().map_err(anyhow::Error::msg)?;
    crate::metrics::init();

    let connector = Arc::new(Connector::new(&config.upstream)?);
    let (kafka_anchor, anchored_before) = start_kafka_anchor(&config, &connector).await?;
    let audit_log = open_audit_log(&config, kafka_anchor.as_ref())?;
    // Data-path events go through each principal's event budget (see audit::budget).
    let budgeted = Arc::new(BudgetedSink::new(
        Arc::new(audit_log.clone()),
        config.audit.event_budget,
        Duration::from_millis(config.audit.event_budget_window_ms),
    ));
    budgeted.spawn_flusher();
    crate::metrics::spawn_audit_gauges(audit_log.clone());
    let audit: Arc<dyn AuditSink> = budgeted;
    anchor_alarm::report(
        &*audit,
        audit_log.anchor_findings(),
        kafka_anchor.as_deref(),
        anchored_before,
    );

    let bind_ip: IpAddr = config
        .listener
        .bind_host
        .parse()
        .context("listener.bind_host")?;
    let range = config
        .broker_port_range()
        .map_err(|e| anyhow::anyhow!("listener.broker_ports: {e}"))?;
    let brokers = Arc::new(BrokerMap::new(
        config.listener.advertised_host.clone(),
        bind_ip,
        range,
    ));
    let cluster = Arc::new(ClusterView::new());
    let shared = Arc::new(Shared {
        limits: config.limits.clone(),
        connector: connector.clone(),
        brokers: brokers.clone(),
        cluster: cluster.clone(),
        auth: start_auth(&config, &audit)?,
        authz: start_authz(&config, &audit, &cluster)?,
        encryption: start_encryption(&config, &audit).await?,
    });
    let ctx = ListenerContext {
        shared,
        tls: load_client_tls(&config)?,
        connection_permits: Arc::new(Semaphore::new(config.limits.max_connections)),
        sources: Arc::new(SourceGate::new(
            config.limits.per_source.clone(),
            audit.clone(),
        )),
        audit: audit.clone(),
    };
    ctx.sources.spawn_reporter();
    set_broker_spawner(&brokers, ctx.clone());

    admin_http::spawn_upkeep(prometheus.clone());
    if config.admin.enabled {
        let policy = ctx.shared.authz.as_ref().map(|a| a.authorizer().clone());
        let keyring = ctx.shared.encryption.as_ref().map(|e| e.keyring().clone());
        start_admin(
            &config,
            prometheus,
            cluster.ready_flag(),
            audit_log.clone(),
            policy,
            keyring,
        )
        .await?;
    }

    tokio::spawn(run_discovery(
        cluster.clone(),
        connector,
        brokers,
        Duration::from_millis(config.upstream.metadata_refresh_ms),
        config.limits.max_response_frame_bytes,
        Duration::from_millis(config.upstream.connect_timeout_ms),
    ));

    serve_bootstrap(&config, bind_ip, &audit_log, ctx).await?;

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down");
    shut_down(&audit_log, kafka_anchor).await;
    Ok(())
}

/// Opens the audit anchor topic, when `audit.log.anchor_topic` is set, and says whether
/// checkpoints were anchored there before (the marker file). A topic that cannot be read
/// refuses the start (fail closed).
async fn start_kafka_anchor(
    config: &Config,
    connector: &Arc<Connector>,
) -> anyhow::Result<(Option<Arc<KafkaAnchor>>, bool)> {
    let Some(topic) = &config.audit.log.anchor_topic else {
        return Ok((None, false));
    };
    let origin = config
        .audit
        .log
        .origin
        .as_deref()
        .context("audit.log.origin must be set when anchor_topic is")?;
    let data_dir = &config.audit.data_dir;
    let marker = anchor_alarm::marker_path(data_dir);
    let anchored_before = anchor_alarm::anchored_before(&marker, topic, origin);
    // The current signing key, if the log exists: where the tail scan may stop.
    let own_key = portcullis_audit::key_file::load(&data_dir.join(portcullis_audit::KEY_FILE))
        .ok()
        .map(|signer| signer.verifier().clone());
    let anchor = KafkaAnchor::start(
        connector.clone(),
        topic.clone(),
        origin,
        own_key,
        Some(marker),
        ANCHOR_START_TIMEOUT,
    )
    .await
    .context("audit.log.anchor_topic: cannot read the anchored checkpoints; refusing to start (fail closed)")?;
    Ok((Some(anchor), anchored_before))
}

/// Opens the tamper-evident audit log, checked against the anchor topic when there is one.
fn open_audit_log(
    config: &Config,
    kafka_anchor: Option<&Arc<KafkaAnchor>>,
) -> anyhow::Result<AuditLog> {
    let extra_anchors: Vec<Arc<dyn Anchor>> = kafka_anchor
        .iter()
        .map(|a| Arc::clone(a) as Arc<dyn Anchor>)
        .collect();
    let audit_log =
        AuditLog::open_with_anchors(&config.audit.data_dir, &config.audit.log, extra_anchors)
            .with_context(|| format!("audit.data_dir {}", config.audit.data_dir.display()))?;
    tracing::info!(data_dir = %config.audit.data_dir.display(), "tamper-evident audit log open");
    Ok(audit_log)
}

/// Client authentication, with the credential store watched for changes.
fn start_auth(config: &Config, audit: &Arc<dyn AuditSink>) -> anyhow::Result<Arc<AuthService>> {
    let auth = Arc::new(AuthService::new(
        &config.listener.auth,
        &config.auth,
        audit.clone(),
    )?);
    if let (Some(users), Some(path)) = (&auth.users, &config.auth.users_file) {
        tracing::info!(file = %path.display(), "credential store loaded");
        let audit = audit.clone();
        let file = path.display().to_string();
        users.clone().spawn_watcher(
            Duration::from_millis(config.auth.users_reload_ms),
            move |change| {
                audit.emit(user_store_event(&file, change));
            },
        );
    }
    if !auth.required() {
        tracing::warn!("clients are NOT authenticated (listener.auth): development use only");
    }
    Ok(auth)
}

/// Authorization, when `[authorization]` is configured, reloaded on SIGHUP.
fn start_authz(
    config: &Config,
    audit: &Arc<dyn AuditSink>,
    cluster: &ClusterView,
) -> anyhow::Result<Option<Arc<AuthzService>>> {
    match &config.authorization {
        Some(authz_config) => {
            let reserved = ReservedTopics::of_config(config);
            let service = AuthzService::start_with(
                authz_config,
                audit.clone(),
                reserved,
                cluster.topic_ids(),
            )?;
            tracing::info!(dir = %authz_config.policy_dir.display(), "policies loaded");
            spawn_sighup_reload(service.clone())?;
            Ok(Some(service))
        }
        None => {
            tracing::warn!(
                "authorization is OFF ([authorization] not configured): every authenticated client may do anything the proxy's upstream identity may"
            );
            if let Some(topic) = &config.audit.log.anchor_topic {
                tracing::warn!(%topic, "the audit anchor topic is NOT protected from clients: configure [authorization]");
            }
            Ok(None)
        }
    }
}

/// Record encryption, when `[encryption]` is configured: the keyring opened (a missing
/// root key refuses the start; see `encryption::keyring_open`).
async fn start_encryption(
    config: &Config,
    audit: &Arc<dyn AuditSink>,
) -> anyhow::Result<Option<Arc<EncryptionService>>> {
    let Some(encryption) = config.encryption.clone() else {
        return Ok(None);
    };
    let policies = encryption.topic_policies();
    let refresh = Duration::from_millis(encryption.registry_refresh_ms);
    let upstream = config.upstream.clone();
    let (keyring, registry) =
        tokio::task::spawn_blocking(move || open_keyring(&encryption, &upstream))
            .await
            .context("opening the keyring")??;
    tracing::info!(?keyring, "record encryption on");
    if let OpenedRegistry::Topic(store) = registry {
        tokio::spawn(follow_registry_topic(store, keyring.clone(), refresh));
    }
    Ok(Some(Arc::new(EncryptionService::new(
        keyring,
        policies,
        audit.clone(),
        config.limits.max_frame_bytes,
        config.limits.max_response_frame_bytes,
    ))))
}

/// Reads what other proxies changed in the shared registry topic every `every`, and makes
/// the keyring forget what it cached for the topics concerned (a rotation elsewhere, a
/// shred: after it, this proxy refuses that topic's records within `every`).
async fn follow_registry_topic(store: Arc<TopicRegistry>, keyring: Arc<Keyring>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let (store, keyring) = (store.clone(), keyring.clone());
        let result = tokio::task::spawn_blocking(move || {
            store.catch_up()?;
            for topic in store.take_changed_topics() {
                tracing::info!(topic = %topic, "keys changed by another proxy; reloading them");
                if let Err(e) = keyring.refresh_topic(&topic) {
                    tracing::warn!(topic = %topic, error = %e, "cannot reload the topic's keys");
                }
            }
            Ok::<(), portcullis_crypto::RegistryError>(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the key registry topic"),
            Err(e) => tracing::warn!(error = %e, "the key registry follower failed"),
        }
    }
}

/// The client-facing TLS configuration, reloaded when its files change.
fn load_client_tls(config: &Config) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let client_certs = client_cert_policy(&config.listener.auth);
    match &config.listener.tls {
        Some(tls_config) => {
            let tls = Arc::new(
                ServerTls::load_with_client_certs(tls_config, client_certs.as_ref())
                    .context("listener.tls")?,
            );
            tls.spawn_reloader(Duration::from_millis(tls_config.reload_interval_ms));
            Ok(Some(tls))
        }
        None => {
            tracing::warn!("client-facing listeners are PLAINTEXT: development use only");
            Ok(None)
        }
    }
}

/// Lets cluster discovery start one accept loop per broker it finds.
fn set_broker_spawner(brokers: &BrokerMap, ctx: ListenerContext) {
    let runtime = tokio::runtime::Handle::current();
    brokers.set_spawner(Box::new(move |node_id, std_listener| {
        let _guard = runtime.enter();
        match TcpListener::from_std(std_listener) {
            Ok(listener) => {
                runtime.spawn(accept_loop(listener, Target::Broker(node_id), ctx.clone()));
            }
            Err(e) => tracing::error!(node_id, error = %e, "cannot start broker listener"),
        }
    }));
}

/// Binds the admin listener (metrics, health, audit API) and serves it in the background.
async fn start_admin(
    config: &Config,
    prometheus: PrometheusHandle,
    ready: Arc<AtomicBool>,
    audit: AuditLog,
    policy: Option<portcullis_policy::Authorizer>,
    keyring: Option<Arc<Keyring>>,
) -> anyhow::Result<()> {
    let addr: SocketAddr = config.admin.bind.parse().context("admin.bind")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("admin.bind {addr}"))?;
    tracing::info!(%addr, "admin listener (metrics, healthz, readyz)");
    let (token, reads_need_token) =
        crate::admin::token::for_config(config).map_err(anyhow::Error::msg)?;
    let state = AdminState {
        prometheus,
        ready,
        audit,
        token: Some(token),
        reads_need_token,
        allowed_hosts: Arc::new(AllowedHosts::new(&config.admin.allowed_hosts)),
        policy,
        keyring,
    };
    tokio::spawn(async move {
        if let Err(e) = admin_http::serve(listener, state, std::future::pending()).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    Ok(())
}

/// Binds the bootstrap listener, records `proxy.start` and starts accepting clients.
async fn serve_bootstrap(
    config: &Config,
    bind_ip: IpAddr,
    audit_log: &AuditLog,
    ctx: ListenerContext,
) -> anyhow::Result<()> {
    let bootstrap_addr = SocketAddr::new(bind_ip, config.listener.bootstrap_port);
    let bootstrap = TcpListener::bind(bootstrap_addr)
        .await
        .with_context(|| format!("listener.bootstrap_port: cannot bind {bootstrap_addr}"))?;
    let local = bootstrap.local_addr()?;
    tracing::info!(
        addr = %local,
        advertised = %format!("{}:{}", config.listener.advertised_host, local.port()),
        tls = ctx.tls.is_some(),
        "bootstrap listener"
    );
    // The start is a `config` event (sync/reject by default): a proxy whose audit log cannot
    // record that it started does not serve.
    audit_log
        .record(
            Event::new(Category::Config, "proxy.start", Outcome::Success)
                .detail("bootstrap", local.to_string())
                .detail("version", env!("CARGO_PKG_VERSION")),
        )
        .await
        .context("cannot record proxy.start in the audit log; refusing to serve")?;
    tokio::spawn(accept_loop(bootstrap, Target::Bootstrap, ctx));
    Ok(())
}

/// Records `proxy.stop`, drains the audit log and waits (bounded) for the anchor topic.
async fn shut_down(audit_log: &AuditLog, kafka_anchor: Option<Arc<KafkaAnchor>>) {
    if let Err(e) = audit_log
        .record(Event::new(Category::Config, "proxy.stop", Outcome::Success))
        .await
    {
        tracing::error!(error = %e, "cannot record proxy.stop in the audit log");
    }
    audit_log.shutdown().await;
    if let Some(anchor) = kafka_anchor {
        let waiting = anchor.drain(ANCHOR_DRAIN_TIMEOUT).await;
        if waiting > 0 {
            tracing::error!(waiting, "audit checkpoints not yet on the anchor topic at shutdown (they stay in the local log)");
        }
    }
}

/// How long start-up waits for the anchor topic before refusing to start.
const ANCHOR_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for queued checkpoints to reach the anchor topic.
const ANCHOR_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The client certificate policy of `[listener.auth]`, if certificates are requested.
pub fn client_cert_policy(auth: &ListenerAuthConfig) -> Option<ClientCertPolicy> {
    let ca = auth.client_ca.clone()?;
    match auth.client_auth {
        ClientAuth::None => None,
        ClientAuth::Optional => Some(ClientCertPolicy { ca, optional: true }),
        ClientAuth::Required => Some(ClientCertPolicy {
            ca,
            optional: false,
        }),
    }
}

async fn wait_for_shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Reloads the policies on SIGHUP.
fn spawn_sighup_reload(service: Arc<AuthzService>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // Reading and compiling the policies blocks (tens of ms for large estates).
            let service = service.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || service.reload("sighup")).await {
                tracing::error!(error = %e, "policy reload on SIGHUP failed");
            }
        }
    });
    Ok(())
}

/// The audit event of a credential store change (names and roles only, never credentials).
fn user_store_event(file: &str, change: portcullis_auth::store::StoreChange) -> Event {
    use portcullis_auth::store::StoreChange;
    match change {
        StoreChange::Installed {
            users,
            added,
            removed,
            changed,
        } => Event::new(Category::Config, "users.reload", Outcome::Success)
            .detail("file", file)
            .detail("users", users as u64)
            .detail("added", added)
            .detail("removed", removed)
            .detail("changed", changed),
        StoreChange::Refused(reason) => {
            Event::new(Category::Config, "users.reload", Outcome::Failure)
                .detail("file", file)
                .reason(reason)
        }
    }
}
