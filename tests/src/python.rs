//! Python's Kafka clients (confluent-kafka and kafka-python) driven from Rust tests.
//!
//! The issue asks for the proxy to work with more than one client implementation: librdkafka
//! (Rust and confluent-kafka share it, but with different defaults and API usage) and
//! kafka-python, an independent pure-Python protocol implementation with its own version
//! negotiation. `tests/python/clients.py` produces and consumes through a given bootstrap
//! address and prints one JSON document; this module runs it with the virtualenv made by
//! `scripts/install-test-deps.sh` and checks that document: every record came back
//! byte-identical and in order, and every broker address the client saw is allowed. The
//! records are then read once more with rdkafka, so an error shared by a client's encoder
//! and decoder cannot hide.

use crate::endpoint::{ClientAuth, Endpoint};
use crate::kafka::{self, Placement, Rec};
use crate::process::run_with_timeout;
use crate::{cache_dir, TEST_TIMEOUT};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Time one client script run may take.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The test virtualenv's python: `$PORTCULLIS_VENV/bin/python`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/venv/bin/python`. Panics, naming the install
/// script, when it is missing.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("PORTCULLIS_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        panic!(
            "Python test virtualenv not found at {}: run scripts/install-test-deps.sh \
             (or set PORTCULLIS_VENV)",
            venv.display()
        );
    }
    python
}

/// `tests/python/clients.py`.
pub fn clients_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/clients.py")
}

/// One record in the script's JSON (bytes as hex, `null` for null).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PyRecord {
    /// Partition.
    pub partition: i32,
    /// Offset (-1 when not known).
    #[serde(default = "minus_one")]
    pub offset: i64,
    /// Key as hex.
    pub key: Option<String>,
    /// Value as hex.
    pub value: Option<String>,
    /// Headers as `[name, hex-or-null]`.
    pub headers: Vec<(String, Option<String>)>,
}

fn minus_one() -> i64 {
    -1
}

/// One broker as the client saw it in metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct PyBroker {
    /// Node id.
    pub id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The JSON document `clients.py` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct PyReport {
    /// `confluent-kafka` or `kafka-python`.
    pub client: String,
    /// The library version.
    pub library_version: String,
    /// The protocol version kafka-python settled on (or was pinned to), if applicable.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Records sent, with the offsets their delivery reports gave.
    pub sent: Vec<PyRecord>,
    /// Records read back, in the order received.
    pub received: Vec<PyRecord>,
    /// Brokers the client found in metadata.
    pub brokers: Vec<PyBroker>,
    /// Coordinator address of the consumer group, if the client exposes it.
    #[serde(default)]
    pub coordinator: Option<String>,
    /// Every broker address the client's statistics named (confluent-kafka only).
    #[serde(default)]
    pub seen_brokers: Vec<String>,
    /// Nodes and controller from DescribeCluster (confluent-kafka only).
    #[serde(default)]
    pub cluster_nodes: Vec<PyBroker>,
}

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}")))
        .collect()
}

impl PyRecord {
    /// As a [`Rec`] (timestamps are not compared for Python clients).
    pub fn to_rec(&self) -> Rec {
        Rec {
            partition: self.partition,
            key: self.key.as_deref().map(hex_decode),
            value: self.value.as_deref().map(hex_decode),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(hex_decode)))
                .collect(),
            timestamp: None,
        }
    }
}

/// The script arguments for `ep`'s TLS trust, client certificate and SASL credentials.
fn security_args(cmd: &mut Command, ep: &Endpoint) {
    if let Some(ca) = &ep.ca {
        cmd.arg("--ca").arg(ca);
    }
    if let Some((cert, key)) = &ep.client_cert {
        cmd.arg("--client-cert")
            .arg(cert)
            .arg("--client-key")
            .arg(key);
    }
    match &ep.auth {
        None => {}
        Some(ClientAuth::Password {
            mechanism,
            username,
            password,
        }) => {
            cmd.args(["--sasl-mechanism", mechanism, "--username", username])
                .args(["--password", password]);
        }
        Some(ClientAuth::OAuthBearer(tokens)) => {
            cmd.args([
                "--sasl-mechanism",
                "OAUTHBEARER",
                "--oauth-token",
                &tokens(),
            ]);
        }
    }
}

/// Runs `clients.py --client CLIENT` against `ep` on `topic` (which must exist with
/// `partitions` partitions), producing and consuming `count` records; `extra` are further
/// script arguments (e.g. `--api-version 2.5.0`). Panics with the script's output on failure.
pub fn run_client(
    client: &str,
    ep: &Endpoint,
    topic: &str,
    partitions: i32,
    count: usize,
    extra: &[&str],
) -> PyReport {
    let python = venv_python();
    let scratch = tempfile::Builder::new()
        .prefix("portcullis-python-")
        .tempdir()
        .expect("temp dir");
    let mut cmd = Command::new(python);
    cmd.arg(clients_script())
        .args([
            "--client",
            client,
            "--bootstrap",
            &ep.bootstrap,
            "--topic",
            topic,
        ])
        .args([
            "--partitions",
            &partitions.to_string(),
            "--count",
            &count.to_string(),
        ])
        .args(["--group", &crate::unique_name("py")])
        .args(["--timeout", &(SCRIPT_TIMEOUT.as_secs() - 10).to_string()])
        .args(extra)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    security_args(&mut cmd, ep);
    let done = run_with_timeout(&mut cmd, SCRIPT_TIMEOUT.min(TEST_TIMEOUT), scratch.path());
    if !done.status.success() {
        panic!(
            "{client} script failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            done.status, done.stdout, done.stderr
        );
    }
    let json = done
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "{client} script printed no JSON:\n--- stdout ---\n{}\n--- stderr ---\n{}",
                done.stdout, done.stderr
            )
        });
    serde_json::from_str(json).unwrap_or_else(|e| {
        panic!(
            "{client} script JSON does not parse ({e}): {json}\n--- stderr ---\n{}",
            done.stderr
        )
    })
}

/// Checks a report: `count` records sent and delivered, all received byte-identical and in
/// partition order at their delivered offsets, broker addresses allowed by `ep`; then reads
/// the topic with rdkafka and checks it holds exactly what the script sent.
pub async fn assert_report(
    ep: &Endpoint,
    topic: &str,
    partitions: i32,
    count: usize,
    report: &PyReport,
) {
    let who = format!("{} {}", report.client, report.library_version);
    assert_eq!(
        report.sent.len(),
        count,
        "{who}: sent {} records, expected {count}",
        report.sent.len()
    );
    let sent: Vec<Rec> = report.sent.iter().map(PyRecord::to_rec).collect();
    let placements: Vec<Placement> = report
        .sent
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    assert!(
        placements.iter().all(|(_, o)| *o >= 0),
        "{who}: a delivery report had no offset: {placements:?}"
    );
    kafka::assert_contiguous_offsets(&placements);
    let received: Vec<kafka::Consumed> = report
        .received
        .iter()
        .map(|r| kafka::Consumed {
            rec: r.to_rec(),
            offset: r.offset,
        })
        .collect();
    kafka::assert_same_records(&sent, &placements, &received);

    assert!(
        !report.brokers.is_empty(),
        "{who}: saw no brokers in metadata"
    );
    for b in &report.brokers {
        ep.assert_address(&b.host, b.port, &format!("{who}: metadata broker {}", b.id));
    }
    for b in &report.cluster_nodes {
        ep.assert_address(
            &b.host,
            b.port,
            &format!("{who}: DescribeCluster node {}", b.id),
        );
    }
    if report.client == "confluent-kafka" {
        assert!(
            !report.cluster_nodes.is_empty(),
            "{who}: DescribeCluster named no nodes"
        );
        assert!(
            !report.seen_brokers.is_empty(),
            "{who}: statistics named no brokers"
        );
    }
    if let Some(rules) = &ep.rules {
        for addr in report.coordinator.iter().chain(&report.seen_brokers) {
            if let Err(e) = rules.check_addr(addr) {
                panic!("{who}: learned broker address {addr}: {e}");
            }
        }
    }

    let again = kafka::read_back(ep, topic, partitions, count).await;
    kafka::assert_same_records(&sent, &placements, &again);
}

/// Runs `authz_probe.py --client CLIENT` as `ep` with `probes` (see the script); returns
/// what each probe observed: "ok", a Kafka error name, or (for `list`) the topic names.
pub fn run_probes(
    client: &str,
    ep: &Endpoint,
    probes: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    let scratch = tempfile::Builder::new()
        .prefix("portcullis-probe-")
        .tempdir()
        .expect("temp dir");
    let script = crate::workspace_root().join("tests/python/authz_probe.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(script)
        .args(["--client", client, "--bootstrap", &ep.bootstrap])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for probe in probes {
        cmd.args(["--probe", probe]);
    }
    security_args(&mut cmd, ep);
    let done = run_with_timeout(&mut cmd, SCRIPT_TIMEOUT.min(TEST_TIMEOUT), scratch.path());
    let json = done
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    match (
        done.status.success(),
        json.map(serde_json::from_str::<serde_json::Value>),
    ) {
        (true, Some(Ok(serde_json::Value::Object(map)))) => map,
        _ => panic!(
            "{client} probes failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            done.status, done.stdout, done.stderr
        ),
    }
}
