//! `portcullis decrypt`: reads encrypted records without the proxy's data path and prints
//! them in clear, for recovery (a proxy that cannot start, records to inspect, a backup).
//!
//! Records come from the cluster (one partition, from an offset, with the proxy's upstream
//! credentials) or from a file of record batches (a broker's `.log` segment file is exactly
//! that). Keys come from the registry and root key the configuration names. Each record is
//! one JSON line: offset, key, value, headers (UTF-8 text where the bytes are UTF-8, else
//! `{"base64": ...}`), whether it was encrypted, and the error if it could not be decrypted;
//! a record that fails does not stop the others.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use portcullis_crypto::record::{Header, RecordPayload};
use portcullis_crypto::{CryptoError, Keyring, MARKER_HEADER};
use serde_json::{json, Value};

use crate::cluster::partition_client::{decode_records, FetchedRecord, PartitionClient};
use crate::config::Config;
use crate::encryption::keyring_open::open_keyring;

/// Where `decrypt` reads records.
#[derive(Debug, Clone)]
pub enum Source {
    /// One partition of the topic on the cluster, from `from` (at most `max` records).
    Cluster {
        /// Partition.
        partition: i32,
        /// First offset (`-2` = the earliest).
        from: i64,
        /// Records to print at most.
        max: usize,
    },
    /// A file of record batches.
    File(std::path::PathBuf),
}

/// Decrypts the records of `topic` from `source` with the keys of `config`, one JSON line
/// each on `out`; returns how many records could not be decrypted.
///
/// # Errors
///
/// A message when the configuration, the keyring, the cluster or the file cannot be used.
pub fn run(
    config: &Path,
    topic: &str,
    source: &Source,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let config = Config::load_unvalidated(config)?;
    let encryption = config
        .encryption
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[encryption] is not configured"))?;
    let (keyring, _registry) = open_keyring(&encryption, &config.upstream)?;
    let records = match source {
        Source::File(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            decode_records(Bytes::from(bytes), 0)?
        }
        Source::Cluster {
            partition,
            from,
            max,
        } => read_partition(&config, topic, *partition, *from, *max)?,
    };
    let mut failed = 0;
    for record in &records {
        let line = decrypt_one(&keyring, topic, record);
        if line.get("error").is_some() {
            failed += 1;
        }
        writeln!(out, "{line}")?;
    }
    Ok(failed)
}

fn read_partition(
    config: &Config,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
) -> anyhow::Result<Vec<FetchedRecord>> {
    crate::net::tls::install_crypto_provider();
    let connector = crate::net::upstream::Connector::new(&config.upstream)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let timeout = Duration::from_secs(30);
        let mut client =
            PartitionClient::leader_of_partition(&connector, topic, partition, timeout).await?;
        let start = client.list_offset(topic, -2).await?;
        let end = client.list_offset(topic, -1).await?;
        let from = if from < 0 { start } else { from.max(start) };
        let to = end.min(from.saturating_add(i64::try_from(max).unwrap_or(i64::MAX)));
        Ok(client.read_range(topic, from, to).await?)
    })
}

/// One record as a JSON line, decrypted if it carries the marker header.
pub fn decrypt_one(keyring: &Keyring, topic: &str, record: &FetchedRecord) -> Value {
    let mut payload = RecordPayload {
        value: record.value.as_ref().map(|v| v.to_vec()),
        headers: record
            .headers
            .iter()
            .map(|h| Header {
                key: String::from_utf8_lossy(&h.key).into_owned(),
                value: h.value.as_ref().map(|v| v.to_vec()),
            })
            .collect(),
    };
    let encrypted = payload.headers.iter().any(|h| h.key == MARKER_HEADER);
    let error: Option<CryptoError> = if encrypted {
        keyring.decrypt_record(topic, &mut payload).err()
    } else {
        None
    };
    let mut line = json!({
        "offset": record.offset,
        "key": record.key.as_deref().map(text),
        "encrypted": encrypted,
    });
    if let Some(map) = line.as_object_mut() {
        match error {
            Some(e) => {
                map.insert("error".into(), json!(e.to_string()));
            }
            None => {
                map.insert("value".into(), json!(payload.value.as_deref().map(text)));
                let headers: Vec<Value> = payload
                    .headers
                    .iter()
                    .map(|h| json!({"key": h.key, "value": h.value.as_deref().map(text)}))
                    .collect();
                map.insert("headers".into(), Value::Array(headers));
            }
        }
    }
    line
}

/// Bytes as a JSON string when they are UTF-8, else `{"base64": ...}`.
fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn encrypted_records_print_in_clear_and_failures_say_why() {
        let root = portcullis_crypto::LocalKeyFile::from_key(
            &portcullis_crypto::SecretKey::from_bytes([3; 32]),
        )
        .unwrap();
        let ring = Keyring::new(
            Arc::new(root),
            Arc::new(portcullis_crypto::MemoryStore::new()),
            portcullis_crypto::DekLimits::default(),
        );
        let mut payload = RecordPayload {
            value: Some(b"secret value".to_vec()),
            headers: vec![Header {
                key: "h".into(),
                value: Some(b"hv".to_vec()),
            }],
        };
        ring.encrypt_record(
            "orders",
            &mut payload,
            portcullis_crypto::RecordOptions::default(),
        )
        .unwrap();
        let record = FetchedRecord {
            offset: 7,
            key: Some(Bytes::from_static(b"k")),
            value: payload.value.clone().map(Bytes::from),
            headers: payload
                .headers
                .iter()
                .map(|h| crate::codec::record_batch::Header {
                    key: Bytes::from(h.key.clone()),
                    value: h.value.clone().map(Bytes::from),
                })
                .collect(),
        };
        let line = decrypt_one(&ring, "orders", &record);
        assert_eq!(line["value"], "secret value", "{line}");
        assert_eq!(line["encrypted"], true);
        assert_eq!(
            line["headers"],
            json!([{"key": "h", "value": "hv"}]),
            "{line}"
        );
        let wrong_topic = decrypt_one(&ring, "payments", &record);
        assert!(wrong_topic["error"].is_string(), "{wrong_topic}");
        assert!(wrong_topic.get("value").is_none());
    }
}
