//! A proxy whose audit data directory outlives the process, for the audit-log tests: it can be
//! stopped (SIGTERM, a clean shutdown that signs a last checkpoint), killed with SIGKILL and
//! started again on the same directory, and the directory can be copied, restored and
//! tampered with in between. The `portcullis audit ...` CLI is run as the real binary.
//!
//! [`crate::Proxy`] owns a throw-away directory and cannot restart; this one keeps its
//! configuration, ports and data directory for its whole life.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::auth::{add_user, toml_str};
use crate::broker::Broker;
use crate::process::{run_with_timeout, Finished, ManagedChild};
use crate::proxy::proxy_binary;
use crate::{http, ports};

/// How long a start may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A restartable proxy with PLAIN and SCRAM users alice/alice-secret and bob/bob-secret.
#[derive(Debug)]
pub struct AuditProxy {
    child: Option<ManagedChild>,
    dir: tempfile::TempDir,
    config: PathBuf,
    data_dir: PathBuf,
    bootstrap: String,
    admin: SocketAddr,
    starts: u32,
}

impl AuditProxy {
    /// Writes the configuration for a proxy in front of `broker` (not started yet).
    /// `audit_log_toml` is the body of the `[audit.log]` table.
    pub fn new(broker: &Broker, audit_log_toml: &str) -> AuditProxy {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-audit-")
            .tempdir()
            .expect("temp dir");
        let users = dir.path().join("users.toml");
        add_user(&users, "alice", "alice-secret", &["producers"]);
        add_user(&users, "bob", "bob-secret", &["consumers"]);
        let bootstrap_port = ports::free_port();
        let admin_port = ports::free_port();
        let broker_ports = ports::free_port_range(4);
        let data_dir = dir.path().join("audit");
        let config = dir.path().join("portcullis.toml");
        let text = format!(
            r#"# Written by the portcullis-tests audit harness.
[listener]
bind_host = "127.0.0.1"
advertised_host = "127.0.0.1"
bootstrap_port = {bootstrap_port}
broker_ports = "{first}-{last}"

[listener.auth]
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

[auth]
users_file = {users}
failure_delay_ms = 1
source_failure_limit = 1000000
max_failed_attempts = 1000

[upstream]
bootstrap_servers = [{upstream}]
metadata_refresh_ms = 1000

[admin]
bind = "127.0.0.1:{admin_port}"

[audit]
data_dir = {data}

[audit.log]
{audit_log_toml}

[log]
level = "info"
"#,
            first = broker_ports.start(),
            last = broker_ports.end(),
            users = toml_str(&users.to_string_lossy()),
            upstream = toml_str(&broker.bootstrap()),
            data = toml_str(&data_dir.to_string_lossy()),
        );
        std::fs::write(&config, text).expect("write config");
        AuditProxy {
            child: None,
            dir,
            config,
            data_dir,
            bootstrap: format!("127.0.0.1:{bootstrap_port}"),
            admin: format!("127.0.0.1:{admin_port}").parse().expect("addr"),
            starts: 0,
        }
    }

    /// Starts the proxy and waits until `/readyz` answers 200; `Err` with the output if it
    /// exits or does not become ready.
    pub fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let mut cmd = Command::new(proxy_binary());
        cmd.current_dir(self.dir.path())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG");
        let log = self
            .dir
            .path()
            .join(format!("portcullis-{}.log", self.starts));
        let mut child = ManagedChild::spawn("portcullis", &mut cmd, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.exited() {
                return Err(format!(
                    "portcullis exited ({status}):\n{}",
                    child.log_tail()
                ));
            }
            if let Ok(r) = http::get(self.admin, "/readyz", Duration::from_secs(2)) {
                if r.status == 200 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let out = child.log_tail();
                child.kill();
                return Err(format!("portcullis not ready:\n{out}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Starts the proxy; panics with its output if it does not become ready.
    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Protects the admin API's audit routes with a bearer token (`admin.token_file`);
    /// returns the token file.
    pub fn with_admin_token(&mut self) -> PathBuf {
        let token = self.dir.path().join("admin.token");
        std::fs::write(&token, "test-admin-token-0123456789abcdef\n").expect("write token");
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let text = text.replacen(
            "[admin]\n",
            &format!(
                "[admin]\ntoken_file = {}\n",
                toml_str(&token.to_string_lossy())
            ),
            1,
        );
        std::fs::write(&self.config, text).expect("write config");
        token
    }

    /// Stops the proxy with SIGTERM (clean shutdown: queue drained, last checkpoint signed)
    /// and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(20));
        }
    }

    /// Kills the proxy with SIGKILL (no shutdown at all) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// The client bootstrap address.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// `http://` + the admin listener, for `portcullis audit --admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The audit data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The configuration file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// A scratch directory that lives as long as this proxy.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The output of the current (or last) run.
    pub fn log(&self) -> String {
        self.child
            .as_ref()
            .map(ManagedChild::log_tail)
            .unwrap_or_default()
    }
}

/// Runs the real `portcullis audit ARGS...` and returns its exit code and output.
pub fn audit_cli(args: &[&str]) -> Finished {
    let scratch = tempfile::tempdir().expect("scratch dir");
    run_with_timeout(
        Command::new(proxy_binary()).arg("audit").args(args),
        Duration::from_secs(120),
        scratch.path(),
    )
}

/// Copies directory `from` to `to` recursively (`to` must not exist).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for item in std::fs::read_dir(from).expect("read dir") {
        let item = item.expect("dir entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).expect("copy file");
        }
    }
}
