//! Request and response header peeking over arbitrary frames (length prefix included).
//!
//! Every client frame goes through `peek_request_header`, Produce frames also through
//! `produce_acks`, and every broker response through `peek_response_header` with header
//! version 0 or 1.
//!
//! Checked beyond "no panic": reported body offsets never pass the end of the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::codec::header::{peek_request_header, peek_response_header, produce_acks};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = peek_request_header(data) {
        assert!(header.body_offset <= data.len());
        let _ = produce_acks(data, &header);
    }
    for header_version in [0, 1] {
        if let Ok((_, body_offset)) = peek_response_header(data, header_version) {
            assert!(body_offset <= data.len());
        }
    }
});
