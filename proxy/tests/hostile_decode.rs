//! Proves the vendored kafka-protocol patch: hostile element counts must produce decode
//! errors, not multi-gigabyte allocations that abort the process. Without the patch in
//! third_party/kafka-protocol this test binary aborts.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

/// Bodies that announce ~2^31 elements (classic Int32 array, and compact varint array) and
/// then end.
fn hostile_bodies() -> Vec<Bytes> {
    let mut bodies = Vec::new();
    for prefix_len in 0..24 {
        let mut classic = vec![0u8; prefix_len];
        classic.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0x01]);
        bodies.push(Bytes::from(classic));
        let mut compact = vec![0u8; prefix_len];
        compact.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07, 0x01]);
        bodies.push(Bytes::from(compact));
    }
    bodies
}

#[test]
fn every_request_and_response_decoder_survives_huge_counts() {
    let mut errors = 0usize;
    for key in ApiKey::iter() {
        let range = key.valid_versions();
        for version in range.min..=range.max {
            for body in hostile_bodies() {
                if RequestKind::decode(key, &mut body.clone(), version).is_err() {
                    errors += 1;
                }
                if ResponseKind::decode(key, &mut body.clone(), version).is_err() {
                    errors += 1;
                }
            }
        }
    }
    // Reaching this line is the main assertion; most hostile bodies must also be refused.
    assert!(errors > 1000, "only {errors} decodes failed");
}
