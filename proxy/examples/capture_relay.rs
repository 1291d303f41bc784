//! `capture_relay`: a recording TCP relay between Kafka clients and a broker, used by
//! `scripts/capture-golden-batches.sh` to capture the golden record batches in
//! `proxy/tests/golden_batches/` from real clients.
//!
//! ```text
//! cargo run -p portcullis --example capture_relay -- \
//!     --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --out DIR
//! ```
//!
//! Bytes are forwarded unchanged both ways. On the side, every Produce request's and every
//! Fetch response's `records` fields are written to `DIR/TOPIC.produce.NNN.bin` and
//! `DIR/TOPIC.fetch.NNN.bin` (empty fields and exact repeats of an earlier capture for the
//! same topic and direction are skipped). Fetch v13+ names topics by id, so topic ids are
//! learned from Metadata responses. The broker must advertise the relay's address so that
//! clients keep talking through it. Prints `listening on ADDR` once it accepts connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the relay has learned and written, shared by all connections.
#[derive(Default)]
struct Recorder {
    out: PathBuf,
    topic_ids: HashMap<[u8; 16], String>,
    seen: HashSet<(String, &'static str, Bytes)>,
    counts: HashMap<(String, &'static str), usize>,
}

impl Recorder {
    fn record(&mut self, topic: &str, direction: &'static str, records: &Bytes) {
        if records.is_empty()
            || !self
                .seen
                .insert((topic.to_string(), direction, records.clone()))
        {
            return;
        }
        let n = self
            .counts
            .entry((topic.to_string(), direction))
            .or_default();
        let path = self.out.join(format!("{topic}.{direction}.{n:03}.bin"));
        *n += 1;
        std::fs::write(&path, records).expect("write capture");
        eprintln!("captured {} ({} bytes)", path.display(), records.len());
    }
}

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Bytes> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let len = usize::try_from(i32::from_be_bytes(len)).ok()?;
    let mut frame = vec![0u8; 4 + len];
    frame[..4].copy_from_slice(&(len as i32).to_be_bytes());
    r.read_exact(&mut frame[4..]).await.ok()?;
    Some(Bytes::from(frame))
}

async fn write_frame(w: &mut OwnedWriteHalf, frame: &Bytes) -> bool {
    w.write_all(frame).await.is_ok()
}

/// Client to broker: forwards, remembers (correlation id -> api, version), records Produce.
async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    inflight: mpsc::UnboundedSender<(i32, ApiKey, i16)>,
    recorder: Arc<Mutex<Recorder>>,
) {
    while let Some(frame) = read_frame(&mut from).await {
        let mut body = frame.slice(4..);
        if body.len() >= 8 {
            let key = i16::from_be_bytes([body[0], body[1]]);
            let version = i16::from_be_bytes([body[2], body[3]]);
            if let Ok(api) = ApiKey::try_from(key) {
                let header = RequestHeader::decode(&mut body, api.request_header_version(version));
                if let Ok(header) = header {
                    let _ = inflight.send((header.correlation_id, api, version));
                    if api == ApiKey::Produce {
                        match ProduceRequest::decode(&mut body, version) {
                            Ok(req) => {
                                let mut rec = recorder.lock().unwrap();
                                for t in &req.topic_data {
                                    let name = topic_name(&rec, &t.name.0, t.topic_id.as_bytes());
                                    for p in &t.partition_data {
                                        if let Some(r) = &p.records {
                                            rec.record(&name, "produce", r);
                                        }
                                    }
                                }
                            }
                            Err(e) => eprintln!("produce v{version} does not decode: {e}"),
                        }
                    }
                }
            }
        }
        if !write_frame(&mut to, &frame).await {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn topic_name(rec: &Recorder, name: &str, id: &[u8; 16]) -> String {
    if !name.is_empty() {
        return name.to_string();
    }
    rec.topic_ids.get(id).cloned().unwrap_or_else(|| {
        format!(
            "topic-id-{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    })
}

/// Broker to client: forwards, records Fetch `records` and Metadata topic ids.
async fn responses(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut inflight: mpsc::UnboundedReceiver<(i32, ApiKey, i16)>,
    recorder: Arc<Mutex<Recorder>>,
) {
    let mut pending: HashMap<i32, (ApiKey, i16)> = HashMap::new();
    while let Some(frame) = read_frame(&mut from).await {
        while let Ok((id, api, version)) = inflight.try_recv() {
            pending.insert(id, (api, version));
        }
        let mut body = frame.slice(4..);
        if body.len() >= 4 {
            let id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            if let Some((api, version)) = pending.remove(&id) {
                let header_version = api.response_header_version(version);
                if ResponseHeader::decode(&mut body, header_version).is_ok() {
                    note_response(api, version, &mut body, &recorder);
                }
            }
        }
        if !write_frame(&mut to, &frame).await {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn note_response(api: ApiKey, version: i16, body: &mut Bytes, recorder: &Mutex<Recorder>) {
    match api {
        ApiKey::Metadata => {
            if let Ok(m) = MetadataResponse::decode(body, version) {
                let mut rec = recorder.lock().unwrap();
                for t in &m.topics {
                    if let Some(name) = &t.name {
                        rec.topic_ids
                            .insert(*t.topic_id.as_bytes(), name.0.to_string());
                    }
                }
            }
        }
        ApiKey::Fetch => match decode_fetch(body, version) {
            Ok(f) => {
                let mut rec = recorder.lock().unwrap();
                for t in &f.responses {
                    let name = topic_name(&rec, &t.topic.0, t.topic_id.as_bytes());
                    for p in &t.partitions {
                        if let Some(r) = &p.records {
                            rec.record(&name, "fetch", r);
                        }
                    }
                }
            }
            Err(e) => eprintln!("fetch v{version} response does not decode: {e}"),
        },
        _ => {}
    }
}

/// Decodes a Fetch response body. tansu 0.6.0 writes the top-level tagged field 0
/// (NodeEndpoints, defined from v16 on) in older versions too, which kafka-protocol refuses;
/// then the body is decoded again with the shortest tail replaced by an empty tagged-field
/// section that makes it decode (the records fields come before that tail).
fn decode_fetch(body: &mut Bytes, version: i16) -> anyhow::Result<FetchResponse> {
    let original = body.clone();
    let first = match FetchResponse::decode(body, version) {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    for cut in 1..original.len().min(64 * 1024) {
        let mut trimmed = original[..original.len() - cut].to_vec();
        trimmed.push(0);
        if let Ok(f) = FetchResponse::decode(&mut Bytes::from(trimmed), version) {
            eprintln!("fetch v{version}: dropped {cut} bytes of top-level tagged fields");
            return Ok(f);
        }
    }
    Err(first)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "usage: capture_relay --listen ADDR --upstream ADDR --out DIR (missing {name})"
                )
            })
    };
    let (listen, upstream, out) = (
        arg("--listen"),
        arg("--upstream"),
        PathBuf::from(arg("--out")),
    );
    std::fs::create_dir_all(&out).expect("create --out");
    let recorder = Arc::new(Mutex::new(Recorder {
        out,
        ..Recorder::default()
    }));
    let listener = TcpListener::bind(&listen).await.expect("bind --listen");
    println!("listening on {listen}");
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Ok(broker) = TcpStream::connect(&upstream).await else {
            eprintln!("cannot reach {upstream}");
            continue;
        };
        let (client_r, client_w) = client.into_split();
        let (broker_r, broker_w) = broker.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(requests(client_r, broker_w, tx, recorder.clone()));
        tokio::spawn(responses(broker_r, client_w, rx, recorder.clone()));
    }
}
