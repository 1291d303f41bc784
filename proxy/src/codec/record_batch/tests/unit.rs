//! Hand-made cases: hostile counts and sizes, zip bombs, CRC, header details, and
//! compatibility with kafka-protocol's encoder and decoder.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use bytes::{Bytes, BytesMut};

use super::reference::{self, RefCodec};
use crate::codec::record_batch::{
    build_batch, check_batch_headers, split_batches, Attributes, BatchHeader, BatchPiece,
    CodecError, Compression, Header, NewRecord, RawBatch, Record, RecordFault, TimestampType,
};

fn header() -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: Attributes::default(),
        last_offset_delta: 0,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 0,
    }
}

fn record(value: &'static [u8]) -> Record {
    Record {
        attributes: 0,
        timestamp_delta: 0,
        offset_delta: 0,
        key: None,
        value: Some(Bytes::from_static(value)),
        headers: vec![],
    }
}

fn raw(bytes: Vec<u8>) -> RawBatch {
    match split_batches(&Bytes::from(bytes)).next().unwrap().unwrap() {
        BatchPiece::Records(raw) | BatchPiece::Empty(raw) | BatchPiece::Control(raw) => raw,
        other => panic!("{other:?}"),
    }
}

/// Overwrites the record count and fixes the crc.
fn with_count(mut bytes: Vec<u8>, count: i32) -> Vec<u8> {
    bytes[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn hostile_record_count_is_refused_without_allocating() {
    let bytes = reference::batch(&header(), &[record(b"v")], RefCodec::None);
    let err = raw(with_count(bytes.clone(), i32::MAX))
        .decode(1 << 20)
        .unwrap_err();
    assert!(
        matches!(err, CodecError::RecordCountTooLarge { .. }),
        "{err}"
    );
    let err = raw(with_count(bytes, -5)).decode(1 << 20).unwrap_err();
    assert_eq!(err, CodecError::NegativeRecordCount { count: -5 });
}

#[test]
fn hostile_header_count_is_refused() {
    let mut r = record(b"v");
    r.headers.push(Header {
        key: Bytes::from_static(b"k"),
        value: None,
    });
    let mut bytes = reference::batch(&header(), &[r], RefCodec::None);
    // The record is: len, attrs, ts, off, key -1, value len 1, 'v', header count 1, ...
    let count_at = 61 + 7;
    assert_eq!(bytes[count_at], 2, "zigzag 1");
    bytes.splice(count_at..count_at + 1, [0xfe, 0xff, 0xff, 0xff, 0x0f]);
    let len = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&len.to_be_bytes());
    bytes[61] += 4;
    let err = raw(with_count(bytes, 1)).decode(1 << 20).unwrap_err();
    assert_eq!(
        err,
        CodecError::MalformedRecord {
            index: 0,
            fault: RecordFault::Truncated
        }
    );
}

#[test]
fn crc_damage_is_detected() {
    let mut bytes = reference::batch(&header(), &[record(b"value")], RefCodec::None);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        raw(bytes).decode(1 << 20),
        Err(CodecError::CrcMismatch { .. })
    ));
}

#[test]
fn zip_bombs_stop_at_the_cap() {
    let big = vec![0u8; 4 << 20];
    let mut r = record(b"");
    r.value = Some(Bytes::from(big));
    for codec in RefCodec::ALL.into_iter().filter(|c| *c != RefCodec::None) {
        let bytes = reference::batch(&header(), &[r.clone()], codec);
        assert!(bytes.len() < 1 << 20, "{codec:?} compresses zeros");
        let batch = raw(bytes);
        assert_eq!(
            batch.decode(1 << 20).unwrap_err(),
            CodecError::DecompressedTooLarge { limit: 1 << 20 },
            "{codec:?}"
        );
        assert_eq!(batch.decode(8 << 20).unwrap().records[0], r, "{codec:?}");
    }
}

#[test]
fn snappy_declared_sizes_are_checked_before_allocating() {
    // A raw snappy block declaring 2^32-1 bytes, and a xerial block doing the same.
    let declared = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    xerial.extend_from_slice(&(declared.len() as u32).to_be_bytes());
    xerial.extend_from_slice(&declared);
    for payload in [declared.to_vec(), xerial] {
        let mut h = header();
        h.attributes = h.attributes.with_compression(Compression::Snappy);
        let mut bytes = reference::batch(&h, &[], RefCodec::None);
        bytes[21..23].copy_from_slice(&h.attributes.0.to_be_bytes());
        bytes.extend_from_slice(&payload);
        let len = (bytes.len() - 12) as i32;
        bytes[8..12].copy_from_slice(&len.to_be_bytes());
        let err = raw(with_count(bytes, 1)).decode(1 << 20).unwrap_err();
        assert_eq!(err, CodecError::DecompressedTooLarge { limit: 1 << 20 });
    }
}

#[test]
fn unknown_codec_and_bad_lengths_are_errors() {
    let mut bytes = reference::batch(&header(), &[record(b"v")], RefCodec::None);
    bytes[22] |= 6;
    assert_eq!(
        raw(with_count(bytes, 1)).decode(1 << 20).unwrap_err(),
        CodecError::UnknownCompression { codec: 6 }
    );
    let mut bytes = reference::batch(&header(), &[record(b"v")], RefCodec::None);
    bytes[8..12].copy_from_slice(&5i32.to_be_bytes());
    let err = split_batches(&Bytes::from(bytes))
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(err, CodecError::BatchLengthTooSmall { length: 5 });
    let mut bytes = reference::batch(&header(), &[record(b"v")], RefCodec::None);
    bytes[16] = 7;
    let err = split_batches(&Bytes::from(bytes))
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(err, CodecError::UnsupportedMagic { magic: 7 });
}

#[test]
fn null_and_empty_keys_and_values_differ() {
    let mut a = record(b"");
    a.key = Some(Bytes::new());
    let mut b = record(b"");
    b.value = None;
    let bytes = reference::batch(&header(), &[a.clone(), b.clone()], RefCodec::None);
    let decoded = raw(bytes).decode(1 << 20).unwrap();
    assert_eq!(decoded.records, vec![a, b]);
}

#[test]
fn record_offsets_and_timestamps() {
    let mut h = header();
    h.base_offset = 100;
    h.max_timestamp = h.base_timestamp + 50;
    assert_eq!(h.record_offset(3), 103);
    assert_eq!(h.record_timestamp(7), h.base_timestamp + 7);
    h.attributes = h
        .attributes
        .with_timestamp_type(TimestampType::LogAppendTime);
    assert_eq!(h.attributes.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(h.record_timestamp(7), h.max_timestamp);
}

#[test]
fn header_check_errors_carry_the_old_messages() {
    let ok = reference::batch(&header(), &[record(b"v")], RefCodec::None);
    check_batch_headers(&ok, 1).unwrap();
    let total = ok.len();
    let cases = [
        (ok[..5].to_vec(), "truncated batch header".to_string()),
        (
            ok[..total - 1].to_vec(),
            format!(
                "batch of {total} bytes overruns the {} bytes sent",
                total - 1
            ),
        ),
        (
            with_count(ok.clone(), 3),
            format!("record count 3 cannot fit in {} bytes", total - 61),
        ),
        (
            {
                let mut b = ok.clone();
                b[16] = 0xff;
                b
            },
            "record batch magic 255 is not supported (only v2)".to_string(),
        ),
        (
            {
                let mut b = ok.clone();
                b[8..12].copy_from_slice(&48i32.to_be_bytes());
                b
            },
            "batch length 48 is too small".to_string(),
        ),
        (
            with_count(ok.clone(), -1),
            "negative record count -1".to_string(),
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(
            check_batch_headers(&bytes, 10).unwrap_err().to_string(),
            message
        );
    }
    assert_eq!(
        check_batch_headers(&ok, 0).unwrap_err().to_string(),
        "record count 1 exceeds limits.max_records_per_batch 0"
    );
}

/// kafka-protocol's encoder output (the anchor's old path) decodes and re-encodes byte for
/// byte, and kafka-protocol's decoder reads what `build_batch` makes.
#[test]
fn interoperates_with_kafka_protocol() {
    use kafka_protocol::records::{
        Compression as KpCompression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KpTimestampType,
    };
    let kp = KpRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: KpTimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_123,
        key: Some(Bytes::from_static(b"origin/a")),
        value: Some(Bytes::from_static(b"note\n")),
        headers: Default::default(),
    };
    let mut theirs = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: KpCompression::None,
    };
    RecordBatchEncoder::encode(&mut theirs, [&kp], &options).unwrap();
    let theirs = theirs.freeze();
    let decoded = raw(theirs.to_vec()).decode(1 << 20).unwrap();
    assert_eq!(decoded.to_bytes().unwrap(), theirs);

    let ours = build_batch(
        &[NewRecord {
            timestamp: kp.timestamp,
            key: kp.key.clone(),
            value: kp.value.clone(),
            headers: vec![],
        }],
        Compression::None,
    )
    .unwrap();
    assert_eq!(
        ours, theirs,
        "build_batch writes what the anchor wrote before"
    );
    for codec in Compression::ALL {
        let batch = build_batch(
            &[
                NewRecord {
                    timestamp: 5,
                    key: None,
                    value: Some(Bytes::from_static(b"a")),
                    headers: vec![],
                },
                NewRecord {
                    timestamp: 9,
                    key: Some(Bytes::from_static(b"k")),
                    value: None,
                    headers: vec![],
                },
            ],
            codec,
        )
        .unwrap();
        let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.records.len(), 2, "{codec}");
        assert_eq!(set.records[1].offset, 1);
        assert_eq!(set.records[1].timestamp, 9);
        assert_eq!(set.records[0].value.as_deref(), Some(&b"a"[..]));
        let h = *raw(batch.to_vec()).header();
        assert_eq!((h.max_timestamp, h.last_offset_delta), (9, 1));
    }
    assert_eq!(
        build_batch(&[], Compression::None).unwrap_err(),
        CodecError::NoRecords
    );
}

#[test]
fn concatenated_gzip_members_decode() {
    let section = reference::section(&[record(b"one"), record(b"two")]);
    let (a, b) = section.split_at(4);
    let mut payload = Vec::new();
    for part in [a, b] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(part).unwrap();
        payload.extend(e.finish().unwrap());
    }
    let mut h = header();
    h.attributes = h.attributes.with_compression(Compression::Gzip);
    let mut bytes = reference::batch(&h, &[], RefCodec::None);
    bytes[21..23].copy_from_slice(&h.attributes.0.to_be_bytes());
    bytes.extend_from_slice(&payload);
    let len = (bytes.len() - 12) as i32;
    bytes[8..12].copy_from_slice(&len.to_be_bytes());
    let decoded = raw(with_count(bytes, 2)).decode(1 << 20).unwrap();
    assert_eq!(decoded.records, vec![record(b"one"), record(b"two")]);
}
