//! The broker's ApiVersions response, decoded with kafka-protocol as `cluster::refresh_once`
//! does, then intersected with the proxy's table by `Negotiated::from_cluster`, and the
//! resulting ApiVersions answer the proxy serves to clients built from it.
//!
//! Input layout: byte 0 picks the response version (mod the ApiVersions range; the proxy
//! itself asks for v0), the rest is the response body.
//!
//! Checked beyond "no panic": nothing outside the proxy's own version table is advertised,
//! whatever the broker claims, and the answer frame built from it decodes.
#![no_main]

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use portcullis::pipeline::api_table::proxy_versions;
use portcullis::cluster::api_versions::{api_versions_response_frame, Negotiated};

fuzz_target!(|data: &[u8]| {
    let Some((&version_byte, body)) = data.split_first() else {
        return;
    };
    let valid = ApiKey::ApiVersions.valid_versions();
    let span = i32::from(valid.max) - i32::from(valid.min) + 1;
    let Ok(version) = i16::try_from(i32::from(valid.min) + i32::from(version_byte) % span) else {
        return;
    };
    let mut buf = Bytes::copy_from_slice(body);
    let Ok(response) = ApiVersionsResponse::decode(&mut buf, version) else {
        return;
    };
    let negotiated = Negotiated::from_response(&response);
    for (key, range) in negotiated.entries() {
        let key = ApiKey::try_from(key).unwrap_or_else(|()| panic!("unknown key {key} advertised"));
        let ours = proxy_versions(key).unwrap_or_else(|| panic!("refused {key:?} advertised"));
        assert!(range.min <= range.max, "empty range advertised for {key:?}");
        assert!(
            range.min >= ours.min && range.max <= ours.max,
            "{key:?} {range:?} outside {ours:?}"
        );
        assert!(negotiated.allows(key, range.min) && negotiated.allows(key, range.max));
    }
    for request_version in [0, version, i16::MAX] {
        let frame = api_versions_response_frame(&negotiated, request_version, 9)
            .unwrap_or_else(|e| panic!("cannot encode the ApiVersions answer: {e}"));
        let mut answer = frame.slice(8..);
        let answer_version = if (valid.min..=valid.max).contains(&request_version) {
            request_version
        } else {
            0
        };
        ApiVersionsResponse::decode(&mut answer, answer_version).unwrap_or_else(|e| {
            panic!("ApiVersions answer v{answer_version} does not decode: {e}")
        });
        assert_eq!(answer.remaining(), 0);
    }
});
