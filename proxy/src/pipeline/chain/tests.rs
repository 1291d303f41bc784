//! The chain's contract, with stages written for the test: decode only when asked and at
//! most once, re-encode only what a stage changed, notes back to their stage, versions
//! narrowed by every stage. No sockets: this is how any stage is tested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, VersionRange};

use super::*;
use crate::authn::sasl_exchange::Session;
use crate::authn::ClientInfo;
use crate::codec::header::peek_request_header;
use crate::net::upstream::encode_request;
use crate::pipeline::Response;

/// What the probe stage saw.
#[derive(Default, Debug)]
struct Seen {
    decoded_requests: usize,
    responses: Vec<(bool, Option<String>)>,
    refused: usize,
}

/// A stage that asks for Metadata decoded, optionally renames its first topic, leaves a
/// note, and records what it saw.
struct Probe {
    seen: Arc<Mutex<Seen>>,
    decode: bool,
    rename_to: Option<&'static str>,
    note: Option<&'static str>,
    close: bool,
}

impl Probe {
    fn new(seen: &Arc<Mutex<Seen>>) -> Probe {
        Probe {
            seen: seen.clone(),
            decode: false,
            rename_to: None,
            note: None,
            close: false,
        }
    }
}

impl Stage for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        match api {
            ApiKey::Fetch => None,
            ApiKey::Metadata => Some(VersionRange {
                min: offered.min,
                max: offered.max.min(4),
            }),
            _ => Some(offered),
        }
    }

    fn decodes_request(&self, api: ApiKey, _version: i16) -> bool {
        self.decode && api == ApiKey::Metadata
    }

    fn on_request<'a>(
        &'a mut self,
        _state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        if request.body.is_some() {
            self.seen.lock().unwrap().decoded_requests += 1;
        }
        if let (Some(name), Some(RequestKind::Metadata(m))) = (self.rename_to, &mut request.body) {
            if let Some(topic) = m.topics.as_mut().and_then(|t| t.first_mut()) {
                topic.name = Some(TopicName(StrBytes::from_static_str(name)));
                request.body_changed = true;
            }
        }
        if let Some(note) = self.note {
            request.leave_note(note.to_string());
        }
        if self.close {
            return Flow::Close(ConnectionEnd::ClientClosed).into();
        }
        Flow::Continue.into()
    }

    fn on_response(
        &mut self,
        _state: &mut ConnectionState,
        response: &mut Response,
        note: Option<Note>,
    ) -> Result<(), ConnectionEnd> {
        let note = note.and_then(|n| n.downcast::<String>().ok()).map(|n| *n);
        if let (Some(_), Some(ResponseKind::Metadata(m))) = (&note, &mut response.body) {
            m.throttle_time_ms = 7;
            response.body_changed = true;
        }
        self.seen
            .lock()
            .unwrap()
            .responses
            .push((response.body.is_some(), note));
        Ok(())
    }

    fn on_refused(&mut self, _header: &RequestHeader) {
        self.seen.lock().unwrap().refused += 1;
    }
}

fn state() -> ConnectionState {
    ConnectionState::new(
        ClientInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: "test".into(),
            tls_identity: None,
        },
        Session::anonymous(),
    )
}

fn metadata_request(topic: &str) -> Request {
    let body = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let frame = encode_request(ApiKey::Metadata, 4, 9, &body).unwrap();
    let header = peek_request_header(&frame).unwrap();
    Request::new(frame, header)
}

fn metadata_response(topic: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(9)
        .encode(&mut out, 0)
        .unwrap();
    MetadataResponse::default()
        .with_topics(vec![MetadataResponseTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))])
        .encode(&mut out, 4)
        .unwrap();
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.freeze()
}

async fn forward(chain: &mut Chain, request: Request) -> (Bytes, ResponseNotes) {
    match chain.on_request(&mut state(), request).await {
        RequestOutcome::Forward { frame, notes, .. } => (frame, notes),
        other => panic!("not forwarded: {other:?}"),
    }
}

const OWED: Owed = Owed {
    api: ApiKey::Metadata,
    version: 4,
    correlation_id: 9,
};

#[tokio::test]
async fn nothing_asked_for_means_the_original_bytes_travel_both_ways() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut chain = Chain::from_stages(vec![Box::new(Probe::new(&seen))]);
    let request = metadata_request("orders");
    let original = request.frame.clone();
    let (frame, notes) = forward(&mut chain, request).await;
    assert_eq!(
        frame.as_ptr(),
        original.as_ptr(),
        "request bytes were copied"
    );
    assert_eq!(seen.lock().unwrap().decoded_requests, 0);

    let response = metadata_response("orders");
    let out = chain
        .on_response(&mut state(), &OWED, response.clone(), notes)
        .unwrap();
    assert_eq!(
        out.as_ptr(),
        response.as_ptr(),
        "response bytes were copied"
    );
    assert!(
        seen.lock().unwrap().responses.is_empty(),
        "stage saw a response it did not ask for"
    );
}

#[tokio::test]
async fn a_decoded_request_is_reencoded_only_when_a_stage_changed_it() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut reader = Probe::new(&seen);
    reader.decode = true;
    let mut second_reader = Probe::new(&seen);
    second_reader.decode = true;
    let mut chain = Chain::from_stages(vec![Box::new(reader), Box::new(second_reader)]);
    let request = metadata_request("orders");
    let original = request.frame.clone();
    let (frame, _) = forward(&mut chain, request).await;
    assert_eq!(frame, original);
    assert_eq!(
        frame.as_ptr(),
        original.as_ptr(),
        "unchanged request re-encoded"
    );
    assert_eq!(
        seen.lock().unwrap().decoded_requests,
        2,
        "both stages see the one decoded body"
    );

    let mut renamer = Probe::new(&seen);
    renamer.decode = true;
    renamer.rename_to = Some("payments");
    let mut chain = Chain::from_stages(vec![Box::new(renamer)]);
    let request = metadata_request("orders");
    let header_bytes = request.frame.slice(4..request.header.body_offset);
    let (frame, _) = forward(&mut chain, request).await;
    let header = peek_request_header(&frame).unwrap();
    assert_eq!(
        &frame[4..header.body_offset],
        &header_bytes[..],
        "client header kept"
    );
    let mut body = frame.slice(header.body_offset..);
    match RequestKind::decode(ApiKey::Metadata, &mut body, 4).unwrap() {
        RequestKind::Metadata(m) => {
            let topics = m.topics.unwrap();
            assert_eq!(topics[0].name.as_ref().unwrap().0.as_str(), "payments");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_note_brings_its_stage_the_decoded_response_and_a_change_is_encoded() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut quiet = Probe::new(&seen);
    quiet.note = None;
    let mut noting = Probe::new(&seen);
    noting.note = Some("fix");
    let mut chain = Chain::from_stages(vec![Box::new(quiet), Box::new(noting)]);
    let (_, notes) = forward(&mut chain, metadata_request("orders")).await;
    let out = chain
        .on_response(&mut state(), &OWED, metadata_response("orders"), notes)
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().responses,
        vec![(true, Some("fix".to_string()))],
        "only the stage that left the note sees the response, decoded, with its note"
    );
    let mut body = out.slice(8..);
    let decoded = MetadataResponse::decode(&mut body, 4).unwrap();
    assert_eq!(
        decoded.throttle_time_ms, 7,
        "the stage's change was not encoded"
    );
}

#[tokio::test]
async fn a_response_for_another_request_is_refused() {
    let mut chain = Chain::from_stages(vec![]);
    let wrong = Owed {
        correlation_id: 10,
        ..OWED
    };
    let err = chain
        .on_response(
            &mut state(),
            &wrong,
            metadata_response("t"),
            ResponseNotes::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("correlation id 9"), "{err}");
}

#[tokio::test]
async fn a_close_stops_the_chain_and_earlier_stages_hear_of_it() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first = Probe::new(&seen);
    let mut closer = Probe::new(&seen);
    closer.close = true;
    let mut never = Probe::new(&seen);
    never.decode = true;
    let mut chain = Chain::from_stages(vec![Box::new(first), Box::new(closer), Box::new(never)]);
    let outcome = chain.on_request(&mut state(), metadata_request("t")).await;
    assert!(matches!(outcome, RequestOutcome::Close(_)), "{outcome:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.refused, 2, "the closing stage and the one before it");
    assert_eq!(seen.decoded_requests, 0, "a stage after the close ran");
}

#[test]
fn the_served_versions_are_the_intersection_over_the_chain() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut chain = Chain::from_stages(vec![Box::new(Probe::new(&seen))]);
    let cluster = Arc::new(Negotiated::from_cluster(&[
        (ApiKey::Metadata as i16, 0, 12),
        (ApiKey::Fetch as i16, 0, 12),
        (ApiKey::Produce as i16, 3, 9),
    ]));
    let mut state = state();
    chain.set_cluster_versions(&mut state, cluster.clone());
    let served = state.served.clone().unwrap();
    assert_eq!(served.range(ApiKey::Metadata).unwrap().max, 4);
    assert_eq!(served.range(ApiKey::Fetch), None);
    assert_eq!(
        served.range(ApiKey::Produce),
        cluster.range(ApiKey::Produce)
    );
    chain.set_cluster_versions(&mut state, cluster);
    assert!(
        Arc::ptr_eq(&served, state.served.as_ref().unwrap()),
        "recomputed for the same cluster set"
    );
}
