//! Peeking at Kafka request and response headers without decoding bodies.
//!
//! The proxy must know every request's api key, version and correlation id to route it and
//! to match its response, but most bodies are never decoded. These functions read just the
//! header from a frame (length prefix included), bounds-checked at every step, and report
//! where the body starts.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::codec::frame::LENGTH_PREFIX;

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The frame ended inside the header.
    #[error("truncated header")]
    Truncated,
    /// The api key is not one the proxy knows.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A length field is negative (other than the null marker) or malformed.
    #[error("malformed header field")]
    Malformed,
}

/// The fields of a request header the proxy routes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Api key (known to kafka-protocol).
    pub api_key: ApiKey,
    /// Api version as sent by the client (not yet checked against what is supported).
    pub api_version: i16,
    /// Correlation id the response must carry.
    pub correlation_id: i32,
    /// Client id, if the header carries one (lossy UTF-8, for logs and audit).
    pub client_id: Option<String>,
    /// Offset in the frame (prefix included) where the request body starts.
    pub body_offset: usize,
}

/// Reads the request header of `frame` (a whole frame, length prefix included).
pub fn peek_request_header(frame: &[u8]) -> Result<RequestHeader, HeaderError> {
    let mut cur = Cursor::new(frame, LENGTH_PREFIX);
    let raw_key = cur.i16()?;
    let api_version = cur.i16()?;
    let correlation_id = cur.i32()?;
    let api_key = ApiKey::try_from(raw_key).map_err(|()| HeaderError::UnknownApiKey(raw_key))?;
    let header_version = api_key.request_header_version(api_version);
    let mut client_id = None;
    if header_version >= 1 {
        client_id = cur.nullable_string()?;
    }
    if header_version >= 2 {
        cur.skip_tagged_fields()?;
    }
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
        body_offset: cur.pos,
    })
}

/// Reads the correlation id of a response frame and where its body starts.
///
/// `header_version` comes from the request this response answers.
pub fn peek_response_header(
    frame: &[u8],
    header_version: i16,
) -> Result<(i32, usize), HeaderError> {
    let mut cur = Cursor::new(frame, LENGTH_PREFIX);
    let correlation_id = cur.i32()?;
    if header_version >= 1 {
        cur.skip_tagged_fields()?;
    }
    Ok((correlation_id, cur.pos))
}

/// Reads the `acks` field of a Produce request body (v3 and later: after the
/// transactional id). The proxy needs it to know whether a response will come at all.
pub fn produce_acks(frame: &[u8], header: &RequestHeader) -> Result<i16, HeaderError> {
    let at = produce_acks_offset(frame, header)?;
    Cursor::new(frame, at).i16()
}

/// Returns a copy of a Produce request frame with its `acks` field set to `acks`.
pub fn with_produce_acks(
    frame: &[u8],
    header: &RequestHeader,
    acks: i16,
) -> Result<Bytes, HeaderError> {
    let at = produce_acks_offset(frame, header)?;
    let mut copy = BytesMut::from(frame);
    copy.get_mut(at..at + 2)
        .ok_or(HeaderError::Truncated)?
        .copy_from_slice(&acks.to_be_bytes());
    Ok(copy.freeze())
}

/// Offset of the `acks` field in a Produce request frame.
fn produce_acks_offset(frame: &[u8], header: &RequestHeader) -> Result<usize, HeaderError> {
    let mut cur = Cursor::new(frame, header.body_offset);
    if header.api_version >= 9 {
        cur.compact_nullable_string()?;
    } else {
        cur.nullable_string()?;
    }
    cur.take(2)?;
    Ok(cur.pos - 2)
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self.pos.checked_add(n).ok_or(HeaderError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(HeaderError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn i16(&mut self) -> Result<i16, HeaderError> {
        Ok(self.take(2)?.get_i16())
    }

    fn i32(&mut self) -> Result<i32, HeaderError> {
        Ok(self.take(4)?.get_i32())
    }

    fn unsigned_varint(&mut self) -> Result<u32, HeaderError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(HeaderError::Malformed)
    }

    fn nullable_string(&mut self) -> Result<Option<String>, HeaderError> {
        let len = self.i16()?;
        match len {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(
                String::from_utf8_lossy(self.take(n as usize)?).into_owned(),
            )),
            _ => Err(HeaderError::Malformed),
        }
    }

    fn compact_nullable_string(&mut self) -> Result<(), HeaderError> {
        let len = self.unsigned_varint()?;
        if len > 0 {
            self.take(len as usize - 1)?;
        }
        Ok(())
    }

    fn skip_tagged_fields(&mut self) -> Result<(), HeaderError> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()?;
            self.take(size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader as KpHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use proptest::prelude::*;

    fn encode_request(key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
        let header = KpHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("my-client")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf.to_vec()
    }

    #[test]
    fn reads_flexible_and_legacy_headers_and_acks() {
        for version in [3i16, 7, 8, 9, 11] {
            let body = ProduceRequest::default().with_acks(-1).with_timeout_ms(5);
            let frame = encode_request(ApiKey::Produce, version, &body);
            let header = peek_request_header(&frame).unwrap();
            assert_eq!(header.api_key, ApiKey::Produce);
            assert_eq!(header.api_version, version);
            assert_eq!(header.correlation_id, 77);
            assert_eq!(header.client_id.as_deref(), Some("my-client"));
            assert_eq!(produce_acks(&frame, &header).unwrap(), -1, "v{version}");
        }
        let body = ProduceRequest::default()
            .with_acks(0)
            .with_transactional_id(Some(StrBytes::from_static_str("tx").into()));
        let frame = encode_request(ApiKey::Produce, 9, &body);
        let header = peek_request_header(&frame).unwrap();
        assert_eq!(produce_acks(&frame, &header).unwrap(), 0);
        let patched = with_produce_acks(&frame, &header, 1).unwrap();
        assert_eq!(produce_acks(&patched, &header).unwrap(), 1);
        assert_eq!(patched.len(), frame.len());
        let decoded = kafka_protocol::messages::ProduceRequest::decode(
            &mut patched.slice(header.body_offset..),
            9,
        )
        .unwrap();
        assert_eq!(decoded.acks, 1);
        assert_eq!(decoded.transactional_id.unwrap().0.as_str(), "tx");
    }

    #[test]
    fn truncated_and_unknown_headers_are_errors() {
        assert_eq!(
            peek_request_header(&[0, 0, 0, 2, 0]),
            Err(HeaderError::Truncated)
        );
        let frame = [0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            peek_request_header(&frame),
            Err(HeaderError::UnknownApiKey(0x7f7f))
        );
        // Metadata v9 (flexible header) with a client id longer than the frame.
        let frame = [0, 0, 0, 10, 0, 3, 0, 9, 0, 0, 0, 1, 0x7f, 0x00];
        assert_eq!(peek_request_header(&frame), Err(HeaderError::Truncated));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(h) = peek_request_header(&bytes) {
                prop_assert!(h.body_offset <= bytes.len());
                let _ = produce_acks(&bytes, &h);
            }
            let _ = peek_response_header(&bytes, 1);
        }
    }
}
