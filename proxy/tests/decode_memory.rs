//! Proves the second half of the vendored kafka-protocol allocation patch: a hostile frame
//! that announces huge element counts reserves at most about its own size while it is
//! decoded, not "remaining bytes counted as elements" (which let one frame reserve about a
//! hundred times its size).
//!
//! The measure is the process's peak virtual size (`VmPeak` in `/proc/self/status`): a
//! reservation counts there even when its pages are never touched, which is exactly what
//! `Vec::with_capacity` of a hostile count does. (A counting global allocator would need
//! `unsafe`, which the workspace forbids.) The hostile bodies are built before measuring,
//! so the growth of the peak over the size before is what decoding reserved.
#![cfg(target_os = "linux")]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::records::RecordBatchDecoder;

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> usize {
    let bytes = portcullis_tests::process::proc_status_bytes(std::process::id(), field);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Size of each hostile body: large enough that a reservation proportional to the element
/// count dwarfs it.
const FRAME: usize = 16 << 20;

/// A body that starts with `prefix`, then fills the frame with 0xff bytes, so that the
/// first element after the announced count fails to decode (a name that is not UTF-8, an
/// endless varint). Elements that do decode take the memory they take: this test is about
/// what a *count* reserves.
fn padded(prefix: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(FRAME);
    body.put_slice(prefix);
    body.resize(FRAME, 0xff);
    body.freeze()
}

/// A record batch (magic 2, uncompressed) that announces `i32::MAX` records, followed by
/// bytes that are no record, with a valid CRC so that decoding reaches the record count.
fn hostile_batch() -> Bytes {
    let mut batch = BytesMut::with_capacity(FRAME);
    batch.put_i64(0); // base offset
    batch.put_i32(0); // batch length, filled below
    batch.put_i32(0); // partition leader epoch
    batch.put_i8(2); // magic
    batch.put_u32(0); // crc, filled below
    batch.put_i16(0); // attributes: no compression
    batch.put_i32(0); // last offset delta
    batch.put_i64(0); // base timestamp
    batch.put_i64(0); // max timestamp
    batch.put_i64(-1); // producer id
    batch.put_i16(-1); // producer epoch
    batch.put_i32(-1); // base sequence
    batch.put_i32(i32::MAX); // record count
    batch.resize(FRAME, 0xff);
    let length = i32::try_from(FRAME - 12).unwrap_or(i32::MAX);
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

#[test]
fn hostile_counts_reserve_at_most_about_the_frame_size() {
    // Metadata v4: topics array of i32::MAX entries (classic encoding); the first topic
    // name is not UTF-8.
    let metadata_v4 = padded(&[0x7f, 0xff, 0xff, 0xff, 0, 2]);
    // Metadata v12: topics compact array of about 2^31 entries.
    let metadata_v12 = padded(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    // Produce v3: null transactional id, acks, timeout, then i32::MAX topics.
    let produce_v3 = padded(&[
        0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0x7f, 0xff, 0xff, 0xff, 0, 2,
    ]);
    let batch = hostile_batch();

    let cases: [(&str, ApiKey, i16, &Bytes); 3] = [
        ("metadata v4", ApiKey::Metadata, 4, &metadata_v4),
        ("metadata v12", ApiKey::Metadata, 12, &metadata_v12),
        ("produce v3", ApiKey::Produce, 3, &produce_v3),
    ];
    let before = status_bytes("VmSize:");
    assert!(before > 0, "cannot read /proc/self/status");
    for (name, key, version, body) in cases {
        let mut buf = body.clone();
        assert!(
            RequestKind::decode(key, &mut buf, version).is_err(),
            "{name}: a hostile body must not decode"
        );
        let grown = status_bytes("VmPeak:").saturating_sub(before);
        assert!(
            grown <= 2 * FRAME,
            "{name}: decoding a {FRAME}-byte body reserved {grown} bytes"
        );
    }
    let mut buf = batch.clone();
    assert!(
        RecordBatchDecoder::decode(&mut buf).is_err(),
        "a hostile record batch must not decode"
    );
    let grown = status_bytes("VmPeak:").saturating_sub(before);
    assert!(
        grown <= 2 * FRAME,
        "record batch: decoding a {FRAME}-byte batch reserved {grown} bytes"
    );
}
