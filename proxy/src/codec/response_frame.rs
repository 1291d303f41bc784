//! Encoding whole response frames for requests the proxy answers itself.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// Encodes `body` as the response to `api` v`version` with `correlation_id`, length prefix
/// and the response header version Kafka uses for that api version.
pub fn response_frame<M: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> anyhow::Result<Bytes> {
    frame_with(api, version, correlation_id, |out| {
        body.encode(out, version)
    })
}

/// Like [`response_frame`] for a [`ResponseKind`] (the proxy's authorization answers).
pub fn response_kind_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    frame_with(api, version, correlation_id, |out| {
        body.encode(out, version)
    })
}

fn frame_with(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    encode_body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api.response_header_version(version))?;
    encode_body(&mut out)?;
    let body_len = i32::try_from(out.len() - 4)?;
    out[..4].copy_from_slice(&body_len.to_be_bytes());
    Ok(out.freeze())
}

/// A frame carrying `payload` with no Kafka header: how SASL tokens travel after a v0
/// SaslHandshake.
pub fn raw_frame(payload: &[u8]) -> Bytes {
    crate::codec::frame::build_frame(&[payload])
}
