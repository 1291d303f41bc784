//! A few Kafka requests encoded by hand, for the checks no client library can make.
//!
//! Client libraries hide the wire: they cannot say "send forty requests in one write and
//! show me the correlation ids in the order they came back", and they are too heavy for a
//! readiness probe. This module encodes ApiVersions v0 and one Metadata request (version
//! chosen from what the server advertises) and reads length-prefixed responses, so tests
//! can probe a broker and check that a proxy keeps responses in request order, including
//! the ones it answers itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Kafka api key of ApiVersions.
pub const API_VERSIONS: i16 = 18;
/// Kafka api key of Metadata.
pub const METADATA: i16 = 3;

/// Largest response this module accepts (a sanity bound, not Kafka's).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// One `(api_key, min_version, max_version)` entry of an ApiVersions response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The api key.
    pub api_key: i16,
    /// Lowest supported version.
    pub min: i16,
    /// Highest supported version.
    pub max: i16,
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Frames a request: length prefix, then the non-flexible (v1) or flexible (v2) header.
fn frame(api_key: i16, version: i16, correlation_id: i32, flexible: bool, body: &[u8]) -> Vec<u8> {
    let client_id = b"portcullis-tests";
    let mut msg = Vec::with_capacity(32 + body.len());
    put_i16(&mut msg, api_key);
    put_i16(&mut msg, version);
    put_i32(&mut msg, correlation_id);
    put_i16(&mut msg, client_id.len() as i16);
    msg.extend_from_slice(client_id);
    if flexible {
        msg.push(0); // no tagged fields in the header
    }
    msg.extend_from_slice(body);
    let mut out = Vec::with_capacity(4 + msg.len());
    put_i32(&mut out, msg.len() as i32);
    out.extend_from_slice(&msg);
    out
}

/// An ApiVersions v0 request (empty body).
pub fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    frame(API_VERSIONS, 0, correlation_id, false, &[])
}

/// The Metadata version this module will use against a server advertising `range`:
/// the highest version in 1..=12 the server supports, or `None`.
pub fn pick_metadata_version(range: ApiRange) -> Option<i16> {
    let top = range.max.min(12);
    (top >= range.min.max(1)).then_some(top)
}

/// A Metadata request for all topics at `version` (1..=12).
pub fn metadata_request(correlation_id: i32, version: i16) -> Vec<u8> {
    assert!(
        (1..=12).contains(&version),
        "unsupported Metadata version {version}"
    );
    let flexible = version >= 9;
    let mut body = Vec::new();
    if flexible {
        body.push(0); // topics: null compact array
    } else {
        put_i32(&mut body, -1); // topics: null array = all topics
    }
    if version >= 4 {
        body.push(0); // allow_auto_topic_creation = false
    }
    if (8..=10).contains(&version) {
        body.push(0); // include_cluster_authorized_operations
    }
    if version >= 8 {
        body.push(0); // include_topic_authorized_operations
    }
    if flexible {
        body.push(0); // no tagged fields
    }
    frame(METADATA, version, correlation_id, flexible, &body)
}

/// Kafka api key of Produce.
pub const PRODUCE: i16 = 0;

/// The Produce version this module will use: the highest in 3..=8 (non-flexible, record
/// batch v2) the server supports, or `None`.
pub fn pick_produce_version(range: ApiRange) -> Option<i16> {
    let top = range.max.min(8);
    (top >= range.min.max(3)).then_some(top)
}

/// CRC-32C (Castagnoli), as record batches v2 use.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// An uncompressed record batch (magic 2) holding `values` with null keys and no headers,
/// all stamped `timestamp` (ms).
pub fn record_batch(values: &[&[u8]], timestamp: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = Vec::new();
        r.push(0); // attributes
        put_varint(&mut r, 0); // timestamp delta
        put_varint(&mut r, i as i64); // offset delta
        put_varint(&mut r, -1); // null key
        put_varint(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        put_varint(&mut r, 0); // no headers
        put_varint(&mut records, r.len() as i64);
        records.extend_from_slice(&r);
    }
    // Everything the CRC covers: attributes .. records.
    let mut tail = Vec::new();
    put_i16(&mut tail, 0); // attributes: no compression, CreateTime
    put_i32(&mut tail, values.len() as i32 - 1); // last offset delta
    tail.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
    tail.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    tail.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    put_i16(&mut tail, -1); // producer epoch
    put_i32(&mut tail, -1); // base sequence
    put_i32(&mut tail, values.len() as i32);
    tail.extend_from_slice(&records);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    put_i32(&mut batch, (4 + 1 + 4 + tail.len()) as i32); // batch length
    put_i32(&mut batch, -1); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&tail).to_be_bytes());
    batch.extend_from_slice(&tail);
    batch
}

/// A Produce request (version 3..=8) with one record batch for `topic`/`partition`.
pub fn produce_request(
    correlation_id: i32,
    version: i16,
    acks: i16,
    topic: &str,
    partition: i32,
    batch: &[u8],
) -> Vec<u8> {
    assert!(
        (3..=8).contains(&version),
        "unsupported Produce version {version}"
    );
    let mut body = Vec::new();
    put_i16(&mut body, -1); // transactional id: null
    put_i16(&mut body, acks);
    put_i32(&mut body, 10_000); // timeout ms
    put_i32(&mut body, 1); // one topic
    put_i16(&mut body, topic.len() as i16);
    body.extend_from_slice(topic.as_bytes());
    put_i32(&mut body, 1); // one partition
    put_i32(&mut body, partition);
    put_i32(&mut body, batch.len() as i32);
    body.extend_from_slice(batch);
    frame(PRODUCE, version, correlation_id, false, &body)
}

/// Looks up `api_key` in an ApiVersions answer.
pub fn find_api(ranges: &[ApiRange], api_key: i16) -> Option<ApiRange> {
    ranges.iter().copied().find(|r| r.api_key == api_key)
}

/// Reads one response frame; returns its correlation id and the rest of the frame.
pub fn read_response(stream: &mut impl Read) -> io::Result<(i32, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > MAX_RESPONSE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad response length {len}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf)?;
    let correlation_id = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    Ok((correlation_id, buf.split_off(4)))
}

/// Parses an ApiVersions v0 response body: `(error_code, api ranges)`.
pub fn parse_api_versions_v0(body: &[u8]) -> io::Result<(i16, Vec<ApiRange>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated ApiVersions response");
    let error_code = i16::from_be_bytes(
        body.get(0..2)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let count = i32::from_be_bytes(
        body.get(2..6)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let mut ranges = Vec::new();
    let mut at = 6;
    for _ in 0..count.max(0) {
        let e = body.get(at..at + 6).ok_or_else(bad)?;
        ranges.push(ApiRange {
            api_key: i16::from_be_bytes([e[0], e[1]]),
            min: i16::from_be_bytes([e[2], e[3]]),
            max: i16::from_be_bytes([e[4], e[5]]),
        });
        at += 6;
    }
    Ok((error_code, ranges))
}

/// Connects to `addr` with `timeout` for connecting and for every read and write.
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{addr} resolves to nothing"),
    );
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends ApiVersions v0 to `addr` and returns the advertised ranges if the server answered
/// with error code 0.
pub fn probe_api_versions(addr: &str, timeout: Duration) -> io::Result<Vec<ApiRange>> {
    let mut s = connect(addr, timeout)?;
    s.write_all(&api_versions_request(1))?;
    let (corr, body) = read_response(&mut s)?;
    if corr != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("correlation id {corr}, expected 1"),
        ));
    }
    let (error_code, ranges) = parse_api_versions_v0(&body)?;
    if error_code != 0 {
        return Err(io::Error::other(format!(
            "ApiVersions error code {error_code}"
        )));
    }
    Ok(ranges)
}

/// Polls [`probe_api_versions`] until it succeeds or `deadline` passes; `still_alive` is
/// called between attempts so a crashed server fails fast (it should panic).
pub fn wait_until_answers(
    addr: &str,
    deadline: Instant,
    mut still_alive: impl FnMut(),
) -> Result<Vec<ApiRange>, String> {
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        still_alive();
        match probe_api_versions(addr, Duration::from_secs(2)) {
            Ok(ranges) => return Ok(ranges),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{addr} did not answer ApiVersions: {last_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_v0_request_bytes() {
        let r = api_versions_request(7);
        // length, key 18, version 0, correlation 7, client id "portcullis-tests"
        assert_eq!(&r[0..4], &(r.len() as i32 - 4).to_be_bytes());
        assert_eq!(&r[4..12], &[0, 18, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&r[12..14], &16i16.to_be_bytes());
    }

    #[test]
    fn metadata_versions_are_picked_inside_both_ranges() {
        let r = |min, max| ApiRange {
            api_key: METADATA,
            min,
            max,
        };
        assert_eq!(pick_metadata_version(r(0, 12)), Some(12));
        assert_eq!(pick_metadata_version(r(0, 13)), Some(12));
        assert_eq!(pick_metadata_version(r(0, 0)), None);
        assert_eq!(pick_metadata_version(r(4, 8)), Some(8));
        assert_eq!(pick_metadata_version(r(13, 13)), None);
    }

    #[test]
    fn flexible_metadata_request_has_tagged_fields() {
        let r = metadata_request(3, 12);
        // header: key 3, version 12, corr 3, client id, 0 tags; body: null topics, auto
        // create false, topic authorized ops false, 0 tags.
        assert_eq!(&r[r.len() - 5..], &[0, 0, 0, 0, 0]);
        let r = metadata_request(3, 1);
        assert_eq!(&r[r.len() - 4..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn api_versions_response_parses() {
        let mut body = vec![0, 0, 0, 0, 0, 1];
        body.extend_from_slice(&[0, 3, 0, 0, 0, 12]);
        let (code, ranges) = parse_api_versions_v0(&body).unwrap();
        assert_eq!(code, 0);
        assert_eq!(
            ranges,
            vec![ApiRange {
                api_key: 3,
                min: 0,
                max: 12
            }]
        );
        assert!(parse_api_versions_v0(&[0, 0, 0, 0, 0, 2, 0]).is_err());
    }
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn varints_are_zigzag() {
        let enc = |v| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), vec![0]);
        assert_eq!(enc(-1), vec![1]);
        assert_eq!(enc(1), vec![2]);
        assert_eq!(enc(64), vec![0x80, 0x01]);
    }

    #[test]
    fn record_batch_length_and_crc_are_consistent() {
        let b = record_batch(&[b"a", b"bc"], 5);
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, b.len() - 12);
        assert_eq!(b[16], 2);
        let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c(&b[21..]));
    }
}
