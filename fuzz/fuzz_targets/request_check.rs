//! `check_request` (full decode of a client request body) and `check_record_batches`.
//!
//! Input layout: byte 0 picks the mode.
//! * even: the rest is a frame body (header + request body); a length prefix is prepended.
//! * odd: byte 1 picks one of the api keys the proxy forwards, byte 2 a version inside the
//!   range the proxy can serve for it, and the proxy-shaped request header is generated;
//!   the rest is the request body. This reaches the body decoders far more often.
//!
//! In both modes a request reaches `check_request` only under the conditions under which the
//! proxy's `connection::decide` calls it (header parses, api key forwarded, version inside
//! what the proxy can advertise), then `produce_acks` for Produce, as `decide` does.
//! The whole input is also given to `check_record_batches` as a Produce `records` field.
#![no_main]

use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use portcullis::pipeline::api_table::{handling, proxy_versions, Handling};
use portcullis::codec::header::{peek_request_header, produce_acks, RequestHeader};
use portcullis::pipeline::validation::{check_record_batches, check_request};

const MAX_RECORDS_PER_BATCH: usize = 1_000_000;

/// Api keys whose requests the proxy decodes with `check_request`.
static FORWARDED: LazyLock<Vec<ApiKey>> = LazyLock::new(|| {
    ApiKey::iter()
        .filter(|k| matches!(handling(*k), Handling::Raw | Handling::RewriteResponse))
        .collect()
});

fn reaches_check(header: &RequestHeader) -> bool {
    matches!(
        handling(header.api_key),
        Handling::Raw | Handling::RewriteResponse
    ) && proxy_versions(header.api_key)
        .is_some_and(|r| (r.min..=r.max).contains(&header.api_version))
}

fn structured_frame(data: &[u8]) -> Option<Bytes> {
    let (&key_byte, rest) = data.split_first()?;
    let (&version_byte, body) = rest.split_first()?;
    let key = *FORWARDED.get(usize::from(key_byte) % FORWARDED.len().max(1))?;
    let range = proxy_versions(key)?;
    let span = i32::from(range.max) - i32::from(range.min) + 1;
    let version = i16::try_from(i32::from(range.min) + i32::from(version_byte) % span).ok()?;
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    frame.put_i16(key as i16);
    frame.put_i16(version);
    frame.put_i32(7);
    let header_version = key.request_header_version(version);
    if header_version >= 1 {
        frame.put_i16(4);
        frame.put_slice(b"fuzz");
    }
    if header_version >= 2 {
        frame.put_u8(0);
    }
    frame.put_slice(body);
    let len = i32::try_from(frame.len() - 4).ok()?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    Some(frame.freeze())
}

fn raw_frame(body: &[u8]) -> Option<Bytes> {
    let len = i32::try_from(body.len()).ok()?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(len);
    frame.put_slice(body);
    Some(frame.freeze())
}

fuzz_target!(|data: &[u8]| {
    let _ = check_record_batches(data, MAX_RECORDS_PER_BATCH);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let frame = if mode & 1 == 1 {
        structured_frame(rest)
    } else {
        raw_frame(rest)
    };
    let Some(frame) = frame else {
        return;
    };
    let Ok(header) = peek_request_header(&frame) else {
        return;
    };
    if !reaches_check(&header) {
        return;
    }
    if check_request(&frame, &header, MAX_RECORDS_PER_BATCH).is_ok()
        && header.api_key == ApiKey::Produce
    {
        let _ = produce_acks(&frame, &header);
    }
});
