//! What the encryption stage costs per record, without sockets: Produce requests of
//! 1 KiB-value batches encrypted (`encrypt_produce`) and the resulting Fetch answers
//! decrypted (`decrypt_fetch`), for each codec. Prints MB/s of plaintext value bytes and
//! CPU seconds per GB on one core, and the bytes a record grows by.
//!
//! `cargo run --release -p portcullis --example encryption_stage_bench [RECORDS_PER_BATCH] [BATCHES]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use portcullis::codec::record_batch::{build_batch, Compression, Header, NewRecord};
use portcullis::config::encryption::EncryptionConfig;
use portcullis::pipeline::encryption::{decrypt_fetch, encrypt_produce};
use portcullis_crypto::{DekLimits, KeyAccess, Keyring, LocalKeyFile, MemoryStore, SecretKey};

/// The proxy's allocator (see `src/main.rs`), so the figures are the proxy's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let per_batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let root = LocalKeyFile::from_key(&SecretKey::from_bytes([1; 32])).unwrap();
    let ring = Keyring::new(
        Arc::new(root),
        Arc::new(MemoryStore::new()),
        DekLimits::default(),
    );
    let config: EncryptionConfig =
        toml::from_str("topics = [\"t\"]\nroot_key = { kind = \"local-file\", path = \"k\" }\n")
            .unwrap();
    let policies = config.topic_policies();
    println!("| codec | encrypt MB/s | decrypt MB/s | encrypt s/GB | decrypt s/GB | bytes added per record |");
    println!("| --- | --- | --- | --- | --- | --- |");
    // A third argument names one codec (`none`, `gzip`, `snappy`, `lz4`, `zstd`), for profiling.
    let only = args.next().map(|a| a.to_ascii_lowercase());
    for codec in Compression::ALL {
        if only
            .as_deref()
            .is_some_and(|o| format!("{codec:?}").to_ascii_lowercase() != o)
        {
            continue;
        }
        let records: Vec<NewRecord> = (0..per_batch)
            .map(|i| NewRecord {
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(
                    (0..1024)
                        .map(|j| ((i * 31 + j * 7) % 251) as u8)
                        .collect::<Vec<_>>(),
                )),
                headers: vec![Header {
                    key: Bytes::from_static(b"trace"),
                    value: Some(Bytes::from_static(b"abc")),
                }],
            })
            .collect();
        let batch = build_batch(&records, codec).unwrap();
        let request = ProduceRequest::default().with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.clone()))])]);
        let value_bytes = (per_batch * 1024 * batches) as f64;
        let start = Instant::now();
        let mut sealed = Bytes::new();
        for _ in 0..batches {
            let mut r = request.clone();
            encrypt_produce(&ring, &policies, &mut r, 1 << 28, KeyAccess::Load).unwrap();
            sealed = r.topic_data[0].partition_data[0].records.clone().unwrap();
        }
        let encrypt = start.elapsed().as_secs_f64();
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    PartitionData::default().with_records(Some(sealed.clone()))
                ])]);
        let start = Instant::now();
        for _ in 0..batches {
            let mut f = response.clone();
            let done = decrypt_fetch(&ring, &policies, &mut f, 1 << 28);
            assert_eq!(done.records, per_batch as u64);
        }
        let decrypt = start.elapsed().as_secs_f64();
        let uncompressed_growth = if codec == Compression::None {
            format!(
                "{:.1}",
                (sealed.len() as f64 - batch.len() as f64) / per_batch as f64
            )
        } else {
            "-".to_string()
        };
        println!(
            "| {codec:?} | {:.0} | {:.0} | {:.2} | {:.2} | {uncompressed_growth} |",
            value_bytes / encrypt / 1e6,
            value_bytes / decrypt / 1e6,
            encrypt / (value_bytes / 1e9),
            decrypt / (value_bytes / 1e9),
        );
    }
}
