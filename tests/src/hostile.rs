//! Hostile clients: hand-made bad frames, and the checks that the proxy closed the
//! connection that sent them while it keeps serving everyone else.
//!
//! A well-behaved client library never sends these bytes, so they are built here by hand:
//! frames with impossible lengths, headers that stop short, bodies whose array or record
//! counts promise far more than the bytes hold. Every wait is bounded: a proxy that hangs
//! on one of these inputs fails the test with how long it kept the connection open, never
//! a stuck run.

use crate::endpoint::Endpoint;
use crate::{http, kafka, unique_name, wire, OP_TIMEOUT};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Client id in every hand-made request header.
const CLIENT_ID: &[u8] = b"portcullis-hostile";

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `body` behind a 4-byte big-endian length prefix (the length of `body`).
pub fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    put_i32(&mut out, body.len() as i32);
    out.extend_from_slice(body);
    out
}

/// A request frame with any api key and version: request header v1 (`flexible == false`)
/// or v2 (adds an empty tagged-field section), then `body` verbatim.
pub fn request_frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    flexible: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(32 + body.len());
    put_i16(&mut msg, api_key);
    put_i16(&mut msg, version);
    put_i32(&mut msg, correlation_id);
    put_i16(&mut msg, CLIENT_ID.len() as i16);
    msg.extend_from_slice(CLIENT_ID);
    if flexible {
        msg.push(0);
    }
    msg.extend_from_slice(body);
    raw_frame(&msg)
}

/// A Metadata request whose topics array claims `i32::MAX` entries and holds a few bytes.
/// Versions 1..=8 use a 4-byte array count, 9 and later a compact (varint) one: the 5-byte
/// varint `80 80 80 80 08` is 2^31, i.e. 2^31 - 1 entries, the body that aborts an
/// unpatched kafka-protocol 0.18 on `Vec::with_capacity`.
pub fn huge_array_metadata_request(correlation_id: i32, version: i16) -> Vec<u8> {
    let flexible = version >= 9;
    let mut body = Vec::new();
    if flexible {
        body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
    } else {
        put_i32(&mut body, i32::MAX);
    }
    // A little of what a first topic entry could look like, far short of 2^31 - 1 of them.
    body.extend_from_slice(&[0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    request_frame(wire::METADATA, version, correlation_id, flexible, &body)
}

/// A Produce request (versions 3..=8) whose `topic_data` array claims `i32::MAX` topics.
pub fn huge_array_produce_request(correlation_id: i32, version: i16) -> Vec<u8> {
    let mut body = Vec::new();
    put_i16(&mut body, -1); // transactional id: null
    put_i16(&mut body, -1); // acks = all
    put_i32(&mut body, 10_000);
    put_i32(&mut body, i32::MAX); // topic_data count
    put_i16(&mut body, 1);
    body.push(b't');
    put_i32(&mut body, 1);
    request_frame(wire::PRODUCE, version, correlation_id, false, &body)
}

/// Offset of `attributes` in a v2 record batch (the first byte the CRC covers).
const BATCH_ATTRIBUTES: usize = 21;
/// Offset of the record count in a v2 record batch.
const BATCH_RECORD_COUNT: usize = 57;
/// Offset of the CRC in a v2 record batch.
const BATCH_CRC: usize = 17;

/// Rewrites the record count of a v2 record batch (as built by [`wire::record_batch`]) and
/// recomputes its CRC, so the count is the only thing wrong with it.
pub fn set_record_count(batch: &mut [u8], count: i32) {
    batch[BATCH_RECORD_COUNT..BATCH_RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    fix_crc(batch);
}

/// Sets the compression bits of a v2 record batch's attributes (1 = gzip) and recomputes
/// its CRC. The records are left as they are: a proxy that does not decompress cannot tell.
pub fn set_compression(batch: &mut [u8], codec: i16) {
    let at = BATCH_ATTRIBUTES;
    let attributes = i16::from_be_bytes([batch[at], batch[at + 1]]);
    let attributes = (attributes & !0x7) | (codec & 0x7);
    batch[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
    fix_crc(batch);
}

fn fix_crc(batch: &mut [u8]) {
    let crc = wire::crc32c(&batch[BATCH_ATTRIBUTES..]);
    batch[BATCH_CRC..BATCH_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The first partition's `(error_code, base_offset)` from a Produce response body
/// (versions 3..=8, non-flexible; the correlation id already stripped).
pub fn produce_response_first_partition(body: &[u8]) -> io::Result<(i16, i64)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated Produce response");
    let mut at = 0usize;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        let s = body.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let topics = i32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?);
    if topics < 1 {
        return Err(bad());
    }
    let name_len = i16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
    take(name_len.max(0) as usize)?;
    let partitions = i32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?);
    if partitions < 1 {
        return Err(bad());
    }
    take(4)?; // partition index
    let error_code = i16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
    let base_offset = i64::from_be_bytes(take(8)?.try_into().map_err(|_| bad())?);
    Ok((error_code, base_offset))
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone)]
pub struct Closed {
    /// Time from the call to [`wait_closed`] until the end was seen.
    pub after: Duration,
    /// `"eof"`, or the error kind of a reset.
    pub how: String,
    /// Bytes that arrived before the end.
    pub received: Vec<u8>,
}

fn is_reset(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Reads from `s` until the peer closes it (EOF or reset), collecting whatever arrives,
/// for at most `limit`. `Err` says the connection was still open at the deadline.
pub fn wait_closed(s: &mut TcpStream, limit: Duration) -> Result<Closed, String> {
    let start = Instant::now();
    let deadline = start + limit;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "connection still open after {limit:?} ({} bytes received)",
                received.len()
            ));
        }
        let slice = (deadline - now).min(Duration::from_millis(200));
        s.set_read_timeout(Some(slice.max(Duration::from_millis(1))))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        match s.read(&mut buf) {
            Ok(0) => {
                return Ok(Closed {
                    after: start.elapsed(),
                    how: "eof".into(),
                    received,
                })
            }
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Ok(Closed {
                    after: start.elapsed(),
                    how: format!("{:?}", e.kind()),
                    received,
                })
            }
        }
    }
}

/// Writes `bytes`; a reset or broken pipe (the proxy already closed) is not an error here,
/// because [`wait_closed`] is what judges the connection. Returns whether the write failed
/// that way.
pub fn send_tolerant(s: &mut TcpStream, bytes: &[u8]) -> io::Result<bool> {
    match s.write_all(bytes).and_then(|()| s.flush()) {
        Ok(()) => Ok(false),
        Err(e) if is_reset(e.kind()) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Connects to `addr` (bounded connect, reads and writes).
pub fn connect(addr: &str) -> TcpStream {
    wire::connect(addr, Duration::from_secs(10)).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Opens a fresh connection to `addr`, sends `bytes` in one write, and asserts the proxy
/// closes it within `limit` without sending a single byte back.
pub fn assert_rejected(addr: &str, what: &str, bytes: &[u8], limit: Duration) -> Closed {
    let mut s = connect(addr);
    send_tolerant(&mut s, bytes).unwrap_or_else(|e| panic!("{what}: write failed: {e}"));
    let closed = wait_closed(&mut s, limit).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        closed.received.is_empty(),
        "{what}: the proxy answered {} bytes before closing: {:02x?}",
        closed.received.len(),
        &closed.received[..closed.received.len().min(64)]
    );
    closed
}

/// ApiVersions v0 on `s` (correlation id `corr`): asserts the answer is in order and
/// error-free and returns the advertised ranges.
pub fn api_versions_exchange(s: &mut TcpStream, corr: i32) -> Vec<wire::ApiRange> {
    s.write_all(&wire::api_versions_request(corr))
        .expect("write ApiVersions");
    read_api_versions(s, corr)
}

/// Reads an ApiVersions v0 response with correlation id `corr` from `s`.
pub fn read_api_versions(s: &mut impl Read, corr: i32) -> Vec<wire::ApiRange> {
    let (got, body) = wire::read_response(s).expect("read ApiVersions response");
    assert_eq!(got, corr, "ApiVersions response correlation id");
    let (code, ranges) = wire::parse_api_versions_v0(&body).expect("parse ApiVersions");
    assert_eq!(code, 0, "ApiVersions error code");
    ranges
}

/// A fresh connection to `addr` still gets ApiVersions answered and a Metadata request
/// forwarded and answered.
pub fn assert_serves_raw(addr: &str) {
    let mut s = wire::connect(addr, OP_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let ranges = api_versions_exchange(&mut s, 1);
    let version = wire::find_api(&ranges, wire::METADATA)
        .and_then(wire::pick_metadata_version)
        .unwrap_or_else(|| panic!("no usable Metadata version in {ranges:?}"));
    s.write_all(&wire::metadata_request(2, version))
        .expect("write Metadata");
    let (corr, body) = wire::read_response(&mut s)
        .unwrap_or_else(|e| panic!("Metadata v{version} through {addr}: {e}"));
    assert_eq!(corr, 2, "Metadata response correlation id");
    assert!(!body.is_empty(), "empty Metadata response body");
}

/// The version pair a test uses: highest Metadata version without flexible encoding
/// (1..=8) and the highest flexible one (9..=12), as advertised.
pub fn metadata_versions(ranges: &[wire::ApiRange]) -> (i16, Option<i16>) {
    let r = wire::find_api(ranges, wire::METADATA)
        .unwrap_or_else(|| panic!("no Metadata in {ranges:?}"));
    let non_flexible = r.max.min(8);
    assert!(
        non_flexible >= r.min.max(1),
        "no non-flexible Metadata version in {r:?}"
    );
    let flexible = wire::pick_metadata_version(r).filter(|v| *v >= 9);
    (non_flexible, flexible)
}

/// A full rdkafka round trip through `ep`: a fresh topic, `n` awkward records produced,
/// read back byte-identical at their offsets, nothing extra stored. Clients are used one
/// after the other (never two at once) so it also works under a tight `max_connections`.
pub async fn round_trip(ep: &Endpoint, label: &str, n: usize, partitions: i32) {
    let topic = unique_name(label);
    kafka::create_topic(ep, &topic, partitions).await;
    let recs = kafka::sample_records(n, partitions, 0x5eed ^ n as u64);
    let placements = {
        let producer = kafka::producer(ep, &[("acks", "all"), ("linger.ms", "10")]);
        let placements = kafka::produce_all(&producer, &topic, &recs).await;
        producer
            .observed
            .assert_addresses(ep, &format!("{label} producer"))
            .await;
        placements
    };
    kafka::assert_contiguous_offsets(&placements);
    let got = kafka::read_back(ep, &topic, partitions, recs.len()).await;
    kafka::assert_same_records(&recs, &placements, &got);
}

/// `/metrics` from the admin listener.
pub fn metrics_text(admin: SocketAddr) -> String {
    let r = http::get(admin, "/metrics", Duration::from_secs(5)).expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
    r.body
}

/// Sum of the samples of `name` whose labels include `label` (e.g. `reason="timeout"`).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            let matches = if label.is_empty() {
                labels.is_empty() || labels.starts_with('{')
            } else {
                labels.starts_with('{') && labels.contains(label)
            };
            matches.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Polls `/metrics` until `name{label}` reaches `at_least` (counters are bumped right after
/// a connection closes, so a test may look a moment early); panics with the metrics text
/// after `limit`.
pub fn wait_metric_at_least(
    admin: SocketAddr,
    name: &str,
    label: &str,
    at_least: f64,
    limit: Duration,
) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let text = metrics_text(admin);
        let v = metric_sum(&text, name, label);
        if v >= at_least {
            return v;
        }
        if Instant::now() >= deadline {
            let related: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
            panic!("{name}{{{label}}} is {v} after {limit:?}, expected >= {at_least}; samples of {name}: {related:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Panics if the proxy's log shows a panic.
pub fn assert_no_panic_logged(log: &str) {
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        panic!("the proxy logged a panic: {line}");
    }
}

/// Runs blocking socket code on tokio's blocking pool and re-raises its panic, so an async
/// test's runtime threads stay free for the rdkafka clients running alongside.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_metadata_bodies() {
        let r = huge_array_metadata_request(5, 4);
        let body_at = 4 + 8 + 2 + CLIENT_ID.len();
        assert_eq!(&r[body_at..body_at + 4], &i32::MAX.to_be_bytes());
        let r = huge_array_metadata_request(5, 12);
        // flexible header: one tagged-field byte before the body.
        assert_eq!(
            &r[body_at + 1..body_at + 6],
            &[0x80, 0x80, 0x80, 0x80, 0x08]
        );
    }

    #[test]
    fn record_count_patch_keeps_crc_valid() {
        let mut b = wire::record_batch(&[b"x"], 1);
        set_record_count(&mut b, i32::MAX);
        assert_eq!(&b[57..61], &i32::MAX.to_be_bytes());
        let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
        assert_eq!(crc, wire::crc32c(&b[21..]));
        set_compression(&mut b, 1);
        assert_eq!(b[22] & 7, 1);
        let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
        assert_eq!(crc, wire::crc32c(&b[21..]));
    }

    #[test]
    fn metric_sums_match_labels() {
        let text = "# TYPE x counter\nx{reason=\"a\"} 2\nx{reason=\"b\"} 3\nxy{reason=\"a\"} 7\n";
        assert_eq!(metric_sum(text, "x", "reason=\"a\""), 2.0);
        assert_eq!(metric_sum(text, "x", ""), 5.0);
    }

    #[test]
    fn produce_response_parses() {
        let mut body = Vec::new();
        put_i32(&mut body, 1);
        put_i16(&mut body, 1);
        body.push(b't');
        put_i32(&mut body, 1);
        put_i32(&mut body, 0);
        put_i16(&mut body, 0);
        body.extend_from_slice(&42i64.to_be_bytes());
        assert_eq!(produce_response_first_partition(&body).unwrap(), (0, 42));
        assert!(produce_response_first_partition(&body[..10]).is_err());
    }
}
