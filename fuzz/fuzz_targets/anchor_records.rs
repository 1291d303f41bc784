//! Record batches read back from the audit anchor topic, decoded as
//! `kafka_anchor::read_topic` does: any bytes the cluster returns must decode or fail with
//! an error, never panic or allocate without bound.
//!
//! Input layout: the first byte picks the starting offset (0..8), the rest is the Fetch
//! answer's record bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use portcullis::audit::kafka_anchor::decode_notes;

fuzz_target!(|data: &[u8]| {
    let Some((&from, records)) = data.split_first() else {
        return;
    };
    let from = i64::from(from % 8);
    if let Ok(notes) = decode_notes(Bytes::copy_from_slice(records), from) {
        assert!(notes.iter().all(|n| n.offset >= from));
    }
});
