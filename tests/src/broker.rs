//! The real broker: tansu 0.6.0 with its in-memory storage engine, one per test.
//!
//! A broker per test keeps tests independent (no shared topics, groups or offsets) and is
//! cheap with the memory engine (it starts in well under a second). The binary is built by
//! `scripts/install-broker.sh` into the user cache; `PORTCULLIS_TANSU` overrides the path.
//!
//! Known tansu 0.6.0 quirk that shapes the scenarios: with the memory engine a Fetch whose
//! offset lies *inside* a record batch returns no records, so tests that resume from a
//! committed offset produce one record per batch.

use crate::endpoint::Endpoint;
use crate::process::ManagedChild;
use crate::{cache_dir, ports, wire};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a broker may take to answer its first ApiVersions.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables tansu reads as defaults for its flags; cleared so a developer's
/// shell cannot change what the tests start.
const TANSU_ENV: &[&str] = &[
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
];

/// Where the tansu binary is: `$PORTCULLIS_TANSU`, else the install script's location.
/// Panics, naming the install script, when it is missing.
pub fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_TANSU")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("tansu-0.6.0/bin/tansu"));
    if !path.is_file() {
        panic!(
            "tansu broker not found at {}: run scripts/install-broker.sh \
             (or set PORTCULLIS_TANSU to a tansu 0.6.0 binary)",
            path.display()
        );
    }
    path
}

/// A running tansu broker, killed when dropped.
#[derive(Debug)]
pub struct Broker {
    // Field order matters: the child is killed before its directory is removed.
    child: ManagedChild,
    port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers ApiVersions.
    pub fn start() -> Self {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            match Self::try_start() {
                Ok(broker) => return broker,
                Err(log) if is_port_clash(&log) => last_log = log,
                Err(log) => panic!("tansu failed to start:\n{log}"),
            }
        }
        panic!("tansu failed to start three times (port clashes):\n{last_log}");
    }

    fn try_start() -> Result<Self, String> {
        let bin = tansu_binary();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-broker-")
            .tempdir()
            .expect("create broker temp dir");
        let port = ports::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(&bin);
        for var in TANSU_ENV {
            cmd.env_remove(var);
        }
        cmd.current_dir(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("PORTCULLIS_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg("memory://tansu/");
        let mut child = ManagedChild::spawn("tansu", &mut cmd, &dir.path().join("tansu.log"));
        let addr = format!("127.0.0.1:{port}");
        let mut exited = None;
        let probe = wire::wait_until_answers(&addr, Instant::now() + START_TIMEOUT, || {
            if exited.is_none() {
                exited = child.exited();
            }
        });
        match probe {
            Ok(_) if exited.is_none() => Ok(Self { child, port, dir }),
            Ok(_) => Err(format!(
                "tansu exited ({exited:?}) yet {addr} answered: another process owns the port\n{}",
                child.log_tail()
            )),
            Err(e) => {
                let log = child.log_tail();
                child.kill();
                Err(format!("{e}; exit status {exited:?}; tansu output:\n{log}"))
            }
        }
    }

    /// `127.0.0.1:PORT`, what clients put in `bootstrap.servers` for the direct path.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The broker's output so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The broker's temp dir (its log lives there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Panics (with the broker's output) if the broker died.
    pub fn assert_running(&mut self) {
        self.child.assert_running();
    }

    /// What a client uses to reach this broker directly: any broker address is acceptable
    /// in metadata on the direct path.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::plaintext(self.bootstrap())
    }
}

pub(crate) fn is_port_clash(log: &str) -> bool {
    let l = log.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("addrinuse") || l.contains("os error 98")
}
