//! The system under test: the real `portcullis serve` binary in front of a [`Broker`].
//!
//! The proxy is run as a separate process, exactly as an operator runs it, so the tests
//! cover the binary's configuration loading, listeners and shutdown too. Each proxy gets its
//! own temp dir holding its configuration, its log (stdout+stderr), its audit file and, for
//! TLS, the development certificates made by `portcullis certs init`. It is ready when the
//! admin listener's `/readyz` says 200 (the proxy reached the cluster).

use crate::broker::{is_port_clash, Broker};
use crate::endpoint::{AddressRules, Endpoint};
use crate::process::{run_with_timeout, ManagedChild};
use crate::{http, ports, workspace_root};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the proxy may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the proxy binary is: `$PORTCULLIS_BIN`, else `target/debug/portcullis` in this
/// workspace (`$CARGO_TARGET_DIR/debug/portcullis` when that is set). Panics, saying how to
/// build it, when it is missing.
pub fn proxy_binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            let target = if target.is_relative() {
                workspace_root().join(target)
            } else {
                target
            };
            target.join("debug/portcullis")
        });
    if !path.is_file() {
        panic!(
            "proxy binary not found at {}: run `cargo build -p portcullis` first \
             (or set PORTCULLIS_BIN)",
            path.display()
        );
    }
    path
}

/// How to start a proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Terminate TLS on the client-facing listeners with certificates from
    /// `portcullis certs init`.
    pub tls: bool,
    /// `listener.advertised_host`.
    pub advertised_host: String,
    /// Number of per-broker listener ports.
    pub broker_port_count: u16,
    /// `log.level` (`PORTCULLIS_PROXY_LOG` overrides it through `RUST_LOG`).
    pub log_level: String,
    /// `upstream.metadata_refresh_ms`.
    pub metadata_refresh_ms: u64,
    /// Extra TOML appended to the configuration (whole tables, e.g. `[limits]`).
    pub extra_toml: String,
    /// Another `portcullis` binary to run instead of [`proxy_binary`] (the bench's
    /// baseline).
    pub binary: Option<PathBuf>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            tls: false,
            advertised_host: "127.0.0.1".into(),
            broker_port_count: 8,
            log_level: "info".into(),
            metadata_refresh_ms: 1000,
            extra_toml: String::new(),
            binary: None,
        }
    }
}

impl ProxyOptions {
    /// Default options with client-facing TLS.
    pub fn tls() -> Self {
        Self {
            tls: true,
            ..Self::default()
        }
    }
}

/// A running proxy, killed when dropped.
#[derive(Debug)]
pub struct Proxy {
    // Field order matters: the child is killed before its directory is removed.
    child: ManagedChild,
    dir: tempfile::TempDir,
    advertised_host: String,
    bootstrap_port: u16,
    broker_ports: RangeInclusive<u16>,
    admin: SocketAddr,
    audit: PathBuf,
    ca: Option<PathBuf>,
    upstream: Vec<String>,
    upstream_ports: Vec<u16>,
    config_path: PathBuf,
}

/// Quotes `s` as a TOML basic string (JSON string escapes are valid TOML escapes).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

impl Proxy {
    /// Starts a plaintext proxy in front of `broker`.
    pub fn start(broker: &Broker) -> Self {
        Self::start_with(broker, ProxyOptions::default())
    }

    /// Starts a TLS proxy in front of `broker`.
    pub fn start_tls(broker: &Broker) -> Self {
        Self::start_with(broker, ProxyOptions::tls())
    }

    /// Starts a proxy in front of `broker` with `options`, retrying with fresh ports if a
    /// port was taken between choosing and binding it.
    pub fn start_with(broker: &Broker, options: ProxyOptions) -> Self {
        Self::start_upstream(&[broker.bootstrap()], &[broker.port()], options)
    }

    /// Starts a proxy whose upstream bootstrap list is `upstream` (`host:port`).
    /// `upstream_ports` are the real brokers' ports, which clients must never be shown.
    pub fn start_upstream(
        upstream: &[String],
        upstream_ports: &[u16],
        options: ProxyOptions,
    ) -> Self {
        let bin = options.binary.clone().unwrap_or_else(proxy_binary);
        let mut last = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&bin, upstream, upstream_ports, &options) {
                Ok(proxy) => return proxy,
                Err(log) if is_port_clash(&log) => last = log,
                Err(log) => panic!("portcullis failed to become ready:\n{log}"),
            }
        }
        panic!("portcullis failed to start three times (port clashes):\n{last}");
    }

    fn try_start(
        bin: &Path,
        upstream: &[String],
        upstream_ports: &[u16],
        options: &ProxyOptions,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-proxy-")
            .tempdir()
            .expect("create proxy temp dir");
        let bootstrap_port = ports::free_port();
        let admin_port = ports::free_port();
        let broker_ports = ports::free_port_range(options.broker_port_count);
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
        let audit = dir.path().join("audit");

        let (tls_line, ca) = if options.tls {
            let certs = dir.path().join("certs");
            std::fs::create_dir_all(&certs).expect("create certs dir");
            let done = run_with_timeout(
                Command::new(bin)
                    .args(["certs", "init", "--out"])
                    .arg(&certs)
                    .args(["--host", &options.advertised_host]),
                Duration::from_secs(60),
                dir.path(),
            );
            if !done.status.success() {
                panic!(
                    "`portcullis certs init` failed ({}):\n{}\n{}",
                    done.status, done.stdout, done.stderr
                );
            }
            for f in ["ca.pem", "server.pem", "server.key"] {
                assert!(
                    certs.join(f).is_file(),
                    "`portcullis certs init` did not write {f} into {}",
                    certs.display()
                );
            }
            let line = format!(
                "tls = {{ cert = {}, key = {} }}",
                toml_str(&certs.join("server.pem").to_string_lossy()),
                toml_str(&certs.join("server.key").to_string_lossy())
            );
            (line, Some(certs.join("ca.pem")))
        } else {
            (String::new(), None)
        };

        let servers: Vec<String> = upstream.iter().map(|s| toml_str(s)).collect();
        let config = format!(
            r#"# Written by the portcullis-tests harness.
[listener]
bind_host = "127.0.0.1"
advertised_host = {host}
bootstrap_port = {bootstrap_port}
broker_ports = "{first}-{last}"
{tls_line}

[upstream]
bootstrap_servers = [{servers}]
metadata_refresh_ms = {refresh}

[admin]
bind = "{admin}"

[audit]
data_dir = {audit}

[log]
level = {level}

{extra}
"#,
            host = toml_str(&options.advertised_host),
            first = broker_ports.start(),
            last = broker_ports.end(),
            servers = servers.join(", "),
            refresh = options.metadata_refresh_ms,
            audit = toml_str(&audit.to_string_lossy()),
            level = toml_str(&options.log_level),
            extra = options.extra_toml,
        );
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write proxy config");

        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .arg("serve")
            .arg("--config")
            .arg(&config_path);
        match std::env::var("PORTCULLIS_PROXY_LOG") {
            Ok(level) => cmd.env("RUST_LOG", level),
            Err(_) => cmd.env_remove("RUST_LOG"),
        };
        let mut child =
            ManagedChild::spawn("portcullis", &mut cmd, &dir.path().join("portcullis.log"));

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last;
        loop {
            if let Some(status) = child.exited() {
                return Err(format!(
                    "portcullis exited ({status}) before it was ready; config {}; output:\n{}",
                    config_path.display(),
                    child.log_tail()
                ));
            }
            match http::get(admin, "/readyz", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => break,
                Ok(r) => last = format!("/readyz said {}: {}", r.status, r.body.trim()),
                Err(e) => last = format!("/readyz: {e}"),
            }
            if Instant::now() >= deadline {
                let log = child.log_tail();
                child.kill();
                return Err(format!(
                    "portcullis not ready after {READY_TIMEOUT:?} ({last}); output:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            dir,
            advertised_host: options.advertised_host.clone(),
            bootstrap_port,
            broker_ports,
            admin,
            audit,
            ca,
            upstream: upstream.to_vec(),
            upstream_ports: upstream_ports.to_vec(),
            config_path,
        })
    }

    /// `advertised_host:bootstrap_port`: the proxy's bootstrap address for clients.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.advertised_host, self.bootstrap_port)
    }

    /// The bootstrap port.
    pub fn bootstrap_port(&self) -> u16 {
        self.bootstrap_port
    }

    /// The per-broker listener port range.
    pub fn broker_ports(&self) -> RangeInclusive<u16> {
        self.broker_ports.clone()
    }

    /// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The proxy's audit log directory.
    pub fn audit_dir(&self) -> &Path {
        &self.audit
    }

    /// Every audit event so far (up to 10,000, oldest first), read through the admin API's
    /// `/audit/tail` while the proxy runs.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        let r = crate::http::get(self.admin, "/audit/tail?n=10000", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET /audit/tail: {e}"));
        assert_eq!(r.status, 200, "GET /audit/tail: {}", r.body);
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("/audit/tail is not a JSON array of events ({e})"))
    }

    /// The CA that signed the proxy's server certificate (TLS proxies only).
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The directory with the proxy's configuration, log and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file the proxy was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The proxy process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the proxy with SIGTERM (clean shutdown: `proxy.stop` recorded, last checkpoint
    /// signed) and waits for it to exit.
    pub fn stop(&mut self) {
        self.child.terminate(Duration::from_secs(20));
    }

    /// The proxy's output so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Panics (with the proxy's output) if the proxy died.
    pub fn assert_running(&mut self) {
        self.child.assert_running();
    }

    /// The address rules clients of this proxy must obey.
    pub fn address_rules(&self) -> AddressRules {
        AddressRules {
            host: self.advertised_host.clone(),
            bootstrap_port: self.bootstrap_port,
            broker_ports: self.broker_ports.clone(),
            forbidden_ports: self.upstream_ports.clone(),
        }
    }

    /// What a client uses to reach the cluster through this proxy.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            bootstrap: self.bootstrap(),
            ca: self.ca.clone(),
            rules: Some(self.address_rules()),
            upstream: self.upstream.first().cloned(),
            auth: None,
            client_cert: None,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "portcullis files kept for inspection in {}",
                self.dir.path().display()
            );
        }
    }
}
