//! Key registry records as a fleet of proxies reads them from the registry topic on the
//! cluster (`cluster::registry_topic`): record batches, then each value decoded under each
//! kind of registry key. Any bytes must decode or fail with an error, never panic.
//!
//! Input layout: the first byte picks the starting offset (0..8), the rest is the Fetch
//! answer's record bytes; every record's value is also decoded as a topic, KEK and DEK record.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use portcullis::cluster::partition_client::decode_records;
use portcullis_crypto::registry::{KeyRecord, RecordKey};
use portcullis_crypto::DekId;

fuzz_target!(|data: &[u8]| {
    let Some((&from, records)) = data.split_first() else {
        return;
    };
    let keys = [
        RecordKey::Topic { topic: "t".into() },
        RecordKey::Kek { topic: "t".into(), version: 1 },
        RecordKey::Dek { topic: "t".into(), id: DekId([0; 16]) },
    ];
    for key in &keys {
        let _ = KeyRecord::decode(key, records);
    }
    if let Ok(decoded) = decode_records(Bytes::copy_from_slice(records), i64::from(from % 8)) {
        for r in decoded {
            if let Some(v) = r.value {
                for key in &keys {
                    let _ = KeyRecord::decode(key, &v);
                }
            }
        }
    }
});
