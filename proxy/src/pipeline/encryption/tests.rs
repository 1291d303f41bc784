//! The stage's logic without sockets: Produce requests encrypted batch by batch with every
//! batch field kept, Fetch responses decrypted back to the same records, and each refusal
//! confined to its partition.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use portcullis_crypto::{DekLimits, KeyAccess, Keyring, LocalKeyFile, MemoryStore, SecretKey};

use super::*;
use crate::codec::record_batch::{
    split_batches, Attributes, BatchHeader, BatchPiece, Compression, DecodedBatch, Header, Record,
    SnappyFraming, MAGIC_V2,
};
use crate::config::encryption::EncryptionConfig;

const MARKER: &[u8] = b"0123456789abcdef0123456789ABCDEF";

fn keyring() -> Keyring {
    let root = LocalKeyFile::from_key(&SecretKey::from_bytes([9; 32])).unwrap();
    Keyring::new(
        Arc::new(root),
        Arc::new(MemoryStore::new()),
        DekLimits::default(),
    )
}

fn policies() -> TopicPolicies {
    let config: EncryptionConfig = toml::from_str(
        "topics = [\"orders\"]\nroot_key = { kind = \"local-file\", path = \"k\" }\n\
         [[rules]]\nprefixes = [\"hr.\"]\nencrypt_headers = true\n\
         [[rules]]\ntopics = [\"legacy\"]\nrequire_encryption = false\n",
    )
    .unwrap();
    config.topic_policies()
}

fn record(i: i32, value: Option<&[u8]>) -> Record {
    Record {
        attributes: 0,
        timestamp_delta: i64::from(i) * 3,
        offset_delta: i,
        key: Some(Bytes::from(format!("key-{i}"))),
        value: value.map(Bytes::copy_from_slice),
        headers: vec![
            Header {
                key: Bytes::from_static(b"trace"),
                value: Some(Bytes::from([b"h-", MARKER].concat())),
            },
            Header {
                key: Bytes::from_static(b"trace"),
                value: None,
            },
        ],
    }
}

/// A transactional, idempotent batch with a codec: every header field set to something a
/// careless re-encoder would lose.
fn batch(compression: Compression, base_offset: i64, values: &[Option<&[u8]>]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i32, *v))
        .collect();
    DecodedBatch {
        header: BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 7,
            magic: MAGIC_V2,
            crc: 0,
            attributes: Attributes::default()
                .with_compression(compression)
                .with_transactional(true),
            last_offset_delta: records.len() as i32 - 1,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_042,
            producer_id: 4242,
            producer_epoch: 3,
            base_sequence: 17,
            record_count: 0,
        },
        snappy_framing: SnappyFraming::default(),
        records,
    }
    .to_bytes()
    .unwrap()
}

fn value(i: usize) -> Vec<u8> {
    [format!("value {i} ").as_bytes(), MARKER].concat()
}

fn produce(topics: &[(&str, Vec<Bytes>)]) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_topic_data(
        topics
            .iter()
            .map(|(name, partitions)| {
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string((*name).to_string())))
                    .with_partition_data(
                        partitions
                            .iter()
                            .enumerate()
                            .map(|(i, r)| {
                                PartitionProduceData::default()
                                    .with_index(i as i32)
                                    .with_records(Some(r.clone()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn records_of(request: &ProduceRequest, topic: &str, partition: usize) -> Bytes {
    let t = request
        .topic_data
        .iter()
        .find(|t| &*t.name.0 == topic)
        .unwrap();
    t.partition_data[partition].records.clone().unwrap()
}

fn fetch(topics: &[(&str, Vec<Bytes>)]) -> FetchResponse {
    FetchResponse::default().with_responses(
        topics
            .iter()
            .map(|(name, partitions)| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string((*name).to_string())))
                    .with_partitions(
                        partitions
                            .iter()
                            .enumerate()
                            .map(|(i, r)| {
                                PartitionData::default()
                                    .with_partition_index(i as i32)
                                    .with_high_watermark(100)
                                    .with_records(Some(r.clone()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decoded(records: &Bytes) -> Vec<DecodedBatch> {
    split_batches(records)
        .map(|p| match p.unwrap() {
            BatchPiece::Records(raw) => raw.decode(1 << 24).unwrap(),
            other => panic!("unexpected piece {other:?}"),
        })
        .collect()
}

fn encrypt(ring: &Keyring, request: &mut ProduceRequest) -> Encrypted {
    encrypt_produce(ring, &policies(), request, 1 << 24, KeyAccess::Load).unwrap()
}

#[test]
fn produce_encrypts_every_codec_keeping_batch_fields_and_fetch_restores_the_bytes() {
    let ring = keyring();
    for compression in Compression::ALL {
        let v0 = value(0);
        let v2 = value(2);
        let original = batch(compression, 0, &[Some(&v0), None, Some(&v2), Some(b"")]);
        let plain = batch(compression, 0, &[Some(&v0)]);
        let mut request = produce(&[
            ("orders", vec![original.clone()]),
            ("clear", vec![plain.clone()]),
        ]);
        let done = encrypt(&ring, &mut request);
        assert!(done.refused.is_empty());
        assert_eq!(
            done.records, 3,
            "{compression:?}: the tombstone stays unencrypted"
        );
        let sealed = records_of(&request, "orders", 0);
        // The unencrypted topic is the very same bytes.
        assert_eq!(records_of(&request, "clear", 0), plain);
        let before = &decoded(&original)[0];
        let after = &decoded(&sealed)[0];
        // Every header field kept but length and CRC; codec kept.
        let (mut a, mut b) = (before.header, after.header);
        (a.batch_length, a.crc, b.batch_length, b.crc) = (0, 0, 0, 0);
        assert_eq!(a, b, "{compression:?}");
        for (r, s) in before.records.iter().zip(&after.records) {
            assert_eq!(r.key, s.key);
            assert_eq!(r.timestamp_delta, s.timestamp_delta);
            assert_eq!(r.offset_delta, s.offset_delta);
            if let Some(v) = &s.value {
                assert!(!contains(v, MARKER), "{compression:?}: value in clear");
            }
        }
        // Null value stays null, and stays unmarked (nothing to encrypt: headers in clear
        // on this topic).
        assert_eq!(after.records[1].value, None);
        // Header values stay in clear on "orders" (encrypt_headers = false).
        assert_eq!(after.records[0].headers[..2], before.records[0].headers[..]);
        assert_eq!(&after.records[0].headers[2].key[..], b"portcullis.enc");

        let mut response = fetch(&[("orders", vec![sealed]), ("clear", vec![plain.clone()])]);
        let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
        assert!(done.changed && done.refused.is_empty());
        assert_eq!(done.records, 3);
        let back = response.responses[0].partitions[0].records.clone().unwrap();
        assert_eq!(back, original, "{compression:?}: decrypted batch differs");
        assert_eq!(response.responses[1].partitions[0].records, Some(plain));
    }
}

#[test]
fn header_values_are_encrypted_where_the_rule_says_so() {
    let ring = keyring();
    let v = value(1);
    let original = batch(Compression::None, 0, &[Some(&v), None]);
    let mut request = produce(&[("hr.people", vec![original.clone()])]);
    let done = encrypt(&ring, &mut request);
    assert_eq!(
        done.records, 2,
        "a tombstone with a header value is sealed too"
    );
    let sealed = records_of(&request, "hr.people", 0);
    assert!(!contains(&sealed, MARKER), "a header value is in clear");
    let mut response = fetch(&[("hr.people", vec![sealed])]);
    decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert_eq!(response.responses[0].partitions[0].records, Some(original));
}

/// A topic whose rule changed: records sealed with their header values (marker `1h`) and
/// records sealed value-only (`1`) in one batch, read where the topic is value-only now. The
/// batch is opened in place and the `1h` records take the record-by-record path.
#[test]
fn records_sealed_under_either_rule_read_back_in_one_batch() {
    let ring = keyring();
    let with_headers = |v: &[u8]| {
        let mut request = produce(&[("hr.people", vec![batch(Compression::None, 0, &[Some(v)])])]);
        encrypt(&ring, &mut request);
        decoded(&records_of(&request, "hr.people", 0))[0].records[0].clone()
    };
    let (v0, v1) = (value(0), value(1));
    // Both sealed for topic "hr.people" (the AAD binds the topic): the value-only one by a
    // policy set where hr.people is value-only.
    let value_only_policies: TopicPolicies = toml::from_str::<EncryptionConfig>(
        "topics = [\"hr.people\"]\nroot_key = { kind = \"local-file\", path = \"k\" }\n",
    )
    .unwrap()
    .topic_policies();
    let mut request = produce(&[("hr.people", vec![batch(Compression::None, 0, &[Some(&v1)])])]);
    encrypt_produce(
        &ring,
        &value_only_policies,
        &mut request,
        1 << 24,
        KeyAccess::Load,
    )
    .unwrap();
    let sealed_value_only = decoded(&records_of(&request, "hr.people", 0))[0].records[0].clone();
    let mut first = with_headers(&v0);
    let mut second = sealed_value_only;
    (first.offset_delta, second.offset_delta) = (0, 1);
    let mut template = decoded(&batch(Compression::Zstd, 0, &[Some(&v0), Some(&v1)]))[0].clone();
    let mut expected = template.clone();
    expected.records[1] = Record {
        offset_delta: 1,
        ..record(0, Some(&v1))
    };
    let marker_of = |r: &Record| r.headers.last().and_then(|h| h.value.clone());
    assert_eq!(marker_of(&first).as_deref(), Some(&b"1h"[..]));
    assert_eq!(marker_of(&second).as_deref(), Some(&b"1"[..]));
    template.records = vec![first, second];
    let mixed = template.to_bytes().unwrap();
    let mut response = fetch(&[("hr.people", vec![mixed])]);
    let done = decrypt_fetch(&ring, &value_only_policies, &mut response, 1 << 24);
    assert!(done.refused.is_empty(), "{:?}", done.refused);
    assert_eq!(done.records, 2);
    let back = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        back,
        expected.to_bytes().unwrap(),
        "both records restored byte for byte"
    );
}

#[test]
fn plaintext_and_foreign_ciphertext_fail_only_their_partition() {
    let ring = keyring();
    let v = value(3);
    let mut request = produce(&[("orders", vec![batch(Compression::Lz4, 0, &[Some(&v)])])]);
    encrypt(&ring, &mut request);
    let sealed = records_of(&request, "orders", 0);
    let plaintext = batch(Compression::None, 0, &[Some(&v)]);
    // The same ciphertext read from another encrypted topic: refused (its DEK belongs to
    // "orders" and the AAD binds the topic).
    let mut response = fetch(&[
        ("orders", vec![sealed.clone(), plaintext.clone()]),
        ("hr.copy", vec![sealed.clone()]),
        ("legacy", vec![plaintext.clone()]),
    ]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    let orders = &response.responses[0].partitions;
    assert_eq!(orders[0].error_code, 0);
    assert_eq!(
        orders[0]
            .records
            .as_ref()
            .map(|r| decoded(r)[0].records[0].value.clone()),
        Some(Some(Bytes::from(v.clone())))
    );
    assert_eq!(orders[1].error_code, ResponseError::CorruptMessage.code());
    assert_eq!(orders[1].records, Some(Bytes::new()));
    let copy = &response.responses[1].partitions[0];
    assert_eq!(copy.error_code, ResponseError::CorruptMessage.code());
    // A topic that does not require encryption serves plaintext as it is.
    let legacy = &response.responses[2].partitions[0];
    assert_eq!(
        (legacy.error_code, legacy.records.clone()),
        (0, Some(plaintext))
    );
    let reasons: Vec<_> = done
        .refused
        .iter()
        .map(|r| (r.topic.as_str(), r.partition, r.refusal.failure))
        .collect();
    assert_eq!(
        reasons,
        [
            ("orders", 1, Failure::Plaintext),
            ("hr.copy", 0, Failure::UnknownKey)
        ]
    );
}

/// A partition of several megabyte batches: the batches come back in order, and a bad
/// batch among them ends the partition exactly there.
#[test]
fn large_partitions_decrypt_in_order_and_stop_at_the_first_bad_batch() {
    let ring = keyring();
    let big = vec![0x5au8; 1000];
    let plain_batch = |base: i64| {
        let values: Vec<Option<&[u8]>> = (0..1100).map(|_| Some(&big[..])).collect();
        batch(Compression::None, base, &values)
    };
    let originals: Vec<Bytes> = (0..4).map(|i| plain_batch(i * 1100)).collect();
    let sealed: Vec<Bytes> = originals
        .iter()
        .map(|b| {
            let mut request = produce(&[("orders", vec![b.clone()])]);
            encrypt(&ring, &mut request);
            records_of(&request, "orders", 0)
        })
        .collect();
    assert!(sealed.iter().map(Bytes::len).sum::<usize>() > 4 * 1024 * 1024);
    let mut response = fetch(&[("orders", vec![Bytes::from(sealed.concat())])]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert!(done.refused.is_empty());
    assert_eq!(done.records, 4 * 1100);
    let back = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        back,
        Bytes::from(originals.concat()),
        "batches in their order"
    );

    // The third batch in clear on a topic that requires encryption.
    let field = [
        &sealed[0][..],
        &sealed[1][..],
        &originals[2][..],
        &sealed[3][..],
    ]
    .concat();
    let mut response = fetch(&[("orders", vec![Bytes::from(field)])]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert!(done.refused.is_empty(), "the good prefix is served");
    let served = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(served, Bytes::from(originals[..2].concat()));
    // And the next Fetch, starting at the bad batch, gets the error.
    let field = [
        &originals[2][..],
        &sealed[3][..],
        &sealed[0][..],
        &sealed[1][..],
    ]
    .concat();
    let mut response = fetch(&[("orders", vec![Bytes::from(field)])]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert_eq!(done.refused.len(), 1);
    assert_eq!(done.refused[0].offset, 2 * 1100);
}

#[test]
fn a_bad_batch_after_good_ones_ends_the_partition_there() {
    let ring = keyring();
    let v = value(4);
    let mut request = produce(&[(
        "orders",
        vec![batch(Compression::Zstd, 0, &[Some(&v), Some(&v)])],
    )]);
    encrypt(&ring, &mut request);
    let sealed = records_of(&request, "orders", 0);
    let plaintext = batch(Compression::None, 2, &[Some(&v)]);
    let tail = sealed.slice(..sealed.len() / 2);
    let field = Bytes::from([&sealed[..], &plaintext[..], &sealed[..]].concat());
    let mut response = fetch(&[("orders", vec![field])]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert!(
        done.refused.is_empty(),
        "the good prefix is served without an error"
    );
    let served = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        decoded(&served).len(),
        1,
        "only the batch before the plaintext"
    );
    // A truncated trailing batch passes through after the decrypted ones.
    let field = Bytes::from([&sealed[..], &tail[..]].concat());
    let mut response = fetch(&[("orders", vec![field])]);
    decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    let served = response.responses[0].partitions[0].records.clone().unwrap();
    assert!(served.ends_with(&tail));
    assert!(!contains(
        &served[..served.len() - tail.len()],
        b"portcullis.enc"
    ));
}

#[test]
fn a_forged_marker_refuses_its_partition_and_the_rest_is_encrypted() {
    let ring = keyring();
    let v = value(5);
    let mut forged = DecodedBatch {
        header: decoded(&batch(Compression::None, 0, &[Some(&v)]))[0].header,
        snappy_framing: SnappyFraming::default(),
        records: vec![record(0, Some(&v))],
    };
    forged.records[0].headers.push(Header {
        key: Bytes::from_static(b"portcullis.enc"),
        value: Some(Bytes::from_static(b"1")),
    });
    let good = batch(Compression::Gzip, 0, &[Some(&v)]);
    let mut request = produce(&[("orders", vec![forged.to_bytes().unwrap(), good])]);
    let done = encrypt(&ring, &mut request);
    assert_eq!(done.refused.len(), 1);
    assert_eq!(done.refused[0].partition, 0);
    assert_eq!(done.refused[0].refusal.failure, Failure::ForgedMarker);
    let topic = &request.topic_data[0];
    assert_eq!(topic.partition_data.len(), 1);
    assert_eq!(topic.partition_data[0].index, 1);
    let answer = produce::refused_topics(&done.refused);
    assert_eq!(
        answer[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );
}

/// A batch with more values than a DEK may seal: sealed under several DEKs; where the
/// next DEK would have to be created on the async path, the request is left unchanged and
/// tried again where keys may be created.
#[test]
fn a_batch_over_the_dek_limit_spans_deks_and_asks_for_the_next_one() {
    let root = LocalKeyFile::from_key(&SecretKey::from_bytes([9; 32])).unwrap();
    let ring = Keyring::new(
        Arc::new(root),
        Arc::new(MemoryStore::new()),
        DekLimits::new(4, 3600).unwrap(),
    );
    let v = value(7);
    let values: Vec<Option<&[u8]>> = (0..10).map(|_| Some(&v[..])).collect();
    let original_batch = batch(Compression::Lz4, 0, &values);
    let original = produce(&[("orders", vec![original_batch.clone()])]);
    ring.value_sealer("orders", 1, KeyAccess::Load).unwrap();
    let mut request = original.clone();
    let cached_only = encrypt_produce(
        &ring,
        &policies(),
        &mut request,
        1 << 24,
        KeyAccess::CachedOnly,
    );
    assert_eq!(
        cached_only.unwrap_err(),
        NeedsNewKey,
        "3 values fit the cached DEK, 7 do not"
    );
    assert_eq!(request, original);
    let done = encrypt(&ring, &mut request);
    assert_eq!(done.records, 10);
    let sealed = records_of(&request, "orders", 0);
    let mut response = fetch(&[("orders", vec![sealed])]);
    let done = decrypt_fetch(&ring, &policies(), &mut response, 1 << 24);
    assert!(done.refused.is_empty());
    assert_eq!(
        response.responses[0].partitions[0].records,
        Some(original_batch)
    );
}

/// Empty values grow by the format's overhead many times over: a request whose encrypted
/// records would pass the request limit is refused (MESSAGE_TOO_LARGE), partition by
/// partition, instead of being built.
#[test]
fn encrypted_records_over_the_request_limit_are_refused() {
    let ring = keyring();
    let values: Vec<Option<&[u8]>> = (0..200).map(|_| Some(&b""[..])).collect();
    let small = batch(Compression::None, 0, &values);
    let limit = small.len() * 2;
    let mut request = produce(&[
        ("orders", vec![small.clone()]),
        ("clear", vec![small.clone()]),
    ]);
    let done = encrypt_produce(&ring, &policies(), &mut request, limit, KeyAccess::Load).unwrap();
    assert_eq!(done.refused.len(), 1);
    assert_eq!(done.refused[0].refusal.failure, Failure::TooLarge);
    assert_eq!(
        done.refused[0].refusal.failure.produce_code(),
        ResponseError::MessageTooLarge.code()
    );
    assert_eq!(
        request.topic_data.len(),
        1,
        "only the unencrypted topic goes on"
    );
    // Under a limit it fits, it is encrypted as usual.
    let mut request = produce(&[("orders", vec![small.clone()])]);
    let done = encrypt_produce(
        &ring,
        &policies(),
        &mut request,
        small.len() * 10,
        KeyAccess::Load,
    )
    .unwrap();
    assert!(done.refused.is_empty());
    assert_eq!(done.records, 200);
}

#[test]
fn cached_only_leaves_the_request_unchanged_until_a_key_exists() {
    let ring = keyring();
    let v = value(6);
    let original = produce(&[("orders", vec![batch(Compression::None, 0, &[Some(&v)])])]);
    let mut request = original.clone();
    assert_eq!(
        encrypt_produce(
            &ring,
            &policies(),
            &mut request,
            1 << 24,
            KeyAccess::CachedOnly
        )
        .unwrap_err(),
        NeedsNewKey
    );
    assert_eq!(request, original);
    encrypt(&ring, &mut request);
    let mut again = original.clone();
    encrypt_produce(
        &ring,
        &policies(),
        &mut again,
        1 << 24,
        KeyAccess::CachedOnly,
    )
    .unwrap();
    assert_ne!(again, original);
}

#[test]
fn versions_above_the_named_ones_and_share_fetch_are_not_served() {
    let stage = Encryption::new(Arc::new(EncryptionService::new(
        Arc::new(keyring()),
        policies(),
        Arc::new(portcullis_audit::NullSink),
        1 << 20,
        1 << 20,
    )));
    let range = VersionRange { min: 3, max: 17 };
    assert_eq!(
        stage.versions(ApiKey::Fetch, range),
        Some(VersionRange { min: 3, max: 12 })
    );
    assert_eq!(
        stage.versions(ApiKey::Produce, range),
        Some(VersionRange { min: 3, max: 12 })
    );
    assert_eq!(stage.versions(ApiKey::ShareFetch, range), None);
    assert_eq!(stage.versions(ApiKey::Metadata, range), Some(range));
    assert!(stage.decodes_response(ApiKey::Fetch, 4));
    assert!(!stage.decodes_response(ApiKey::Metadata, 4));
}

#[test]
fn a_fetch_v12_answer_with_tag_0_round_trips() {
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};
    // tansu 0.6.0 sends top-level tag 0 (NodeEndpoints, defined from v16) in Fetch v12.
    let mut response = fetch(&[("orders", vec![Bytes::from_static(b"")])]);
    response
        .unknown_tagged_fields
        .insert(0, Bytes::from_static(&[1, 0]));
    let mut wire = BytesMut::new();
    response.encode(&mut wire, 12).unwrap();
    let mut read = wire.clone().freeze();
    let decoded = FetchResponse::decode(&mut read, 12).unwrap();
    assert!(read.is_empty(), "trailing bytes after the tagged fields");
    assert_eq!(decoded, response);
    let mut again = BytesMut::new();
    decoded.encode(&mut again, 12).unwrap();
    assert_eq!(again, wire);
}
