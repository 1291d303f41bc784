//! Running requests and responses through the stages.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::cluster::api_versions::Negotiated;
use crate::codec::frame::reencoded_frame;
use crate::codec::header::{peek_response_header, RequestHeader};
use crate::codec::response_frame::response_kind_frame;
use crate::connection::{ConnectionEnd, Shared};
use crate::pipeline::address_rewrite::AddressRewrite;
use crate::pipeline::api_gate::ApiGate;
use crate::pipeline::authz::stage::Authorization;
use crate::pipeline::encryption::Encryption;
use crate::pipeline::limits::RequestLimits;
use crate::pipeline::metrics::Metrics;
use crate::pipeline::session::SessionStage;
use crate::pipeline::validation::{decode_request, Validation};
use crate::pipeline::{Answer, ConnectionState, Flow, Note, Request, Response, Stage, Step};

#[cfg(test)]
mod tests;

/// The stages of one connection, in request order.
pub struct Chain {
    stages: Vec<Box<dyn Stage>>,
    /// The cluster's versions the served set was last computed from, and that set.
    served: Option<(Arc<Negotiated>, Arc<Negotiated>)>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name()).collect();
        f.debug_struct("Chain").field("stages", &names).finish()
    }
}

/// What the stages of a forwarded request left for its response.
#[derive(Debug, Default)]
pub struct ResponseNotes(Vec<(usize, Note)>);

/// The request a broker response must answer.
#[derive(Debug, Clone, Copy)]
pub struct Owed {
    /// Api key.
    pub api: ApiKey,
    /// Api version.
    pub version: i16,
    /// Correlation id.
    pub correlation_id: i32,
}

impl Owed {
    /// The response owed for `header`'s request.
    pub fn of(header: &RequestHeader) -> Owed {
        Owed {
            api: header.api_key,
            version: header.api_version,
            correlation_id: header.correlation_id,
        }
    }
}

/// What becomes of one request.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Send `frame` upstream; its response is owed to the client unless `deliver` is false.
    Forward {
        /// The frame to send (the client's bytes unless a stage changed them).
        frame: Bytes,
        /// False for an acks=0 Produce: the broker's answer is checked and dropped.
        deliver: bool,
        /// What the stages left for the response.
        notes: ResponseNotes,
    },
    /// Write `frame` to the client (in request order), then close if `close` says why.
    Answer {
        /// The answer frame.
        frame: Bytes,
        /// Why the connection ends after it, if it does.
        close: Option<ConnectionEnd>,
    },
    /// Nothing is sent and nothing is owed.
    Drop,
    /// The connection ends (after the responses already owed).
    Close(ConnectionEnd),
}

impl Chain {
    /// The chain for one connection: metrics, api gate, session, request limits,
    /// structural validation, authorization (when configured), record encryption (when
    /// configured), address rewriting.
    pub fn new(shared: &Shared) -> Chain {
        let mut stages: Vec<Box<dyn Stage>> = vec![
            Box::new(Metrics),
            Box::new(ApiGate),
            Box::new(SessionStage::new(shared.auth.clone())),
            // Before validation, the first stage that has the request decoded.
            Box::new(RequestLimits::new(
                &shared.limits,
                shared.auth.audit.clone(),
            )),
            Box::new(Validation::new(shared.limits.max_records_per_batch)),
        ];
        if let Some(authz) = &shared.authz {
            stages.push(Box::new(Authorization::new(authz.clone())));
        }
        if let Some(encryption) = &shared.encryption {
            stages.push(Box::new(Encryption::new(encryption.clone())));
        }
        stages.push(Box::new(AddressRewrite::new(shared.brokers.clone())));
        Chain::from_stages(stages)
    }

    /// A chain of the given stages (tests build their own).
    pub fn from_stages(stages: Vec<Box<dyn Stage>>) -> Chain {
        Chain {
            stages,
            served: None,
        }
    }

    /// Sets the versions this connection serves from the cluster's `negotiated` ones,
    /// narrowed by every stage (recomputed only when the cluster's set changed).
    pub fn set_cluster_versions(
        &mut self,
        state: &mut ConnectionState,
        negotiated: Arc<Negotiated>,
    ) {
        let served = match &self.served {
            Some((from, served)) if Arc::ptr_eq(from, &negotiated) => served.clone(),
            _ => {
                // SASL is offered by the proxy itself; the session stage withdraws it on
                // listeners without SASL.
                let served = Arc::new(negotiated.with_sasl().narrowed(|api, range| {
                    self.stages
                        .iter()
                        .try_fold(range, |range, stage| stage.versions(api, range))
                }));
                self.served = Some((negotiated, served.clone()));
                served
            }
        };
        state.served = Some(served);
    }

    /// Runs a request through the stages.
    pub async fn on_request(
        &mut self,
        state: &mut ConnectionState,
        mut request: Request,
    ) -> RequestOutcome {
        let mut notes = ResponseNotes::default();
        for index in 0..self.stages.len() {
            let flow = match self.run_stage(index, state, &mut request).await {
                Ok(flow) => flow,
                Err(end) => Flow::Close(end),
            };
            if let Some(note) = request.note.take() {
                notes.0.push((index, note));
            }
            match flow {
                Flow::Continue => {}
                Flow::Drop => return RequestOutcome::Drop,
                Flow::Close(end) => {
                    self.refused(index, &request.header);
                    return RequestOutcome::Close(end);
                }
                Flow::Answer { answer, close } => {
                    return match answer_frame(&request.header, answer) {
                        Ok(frame) => RequestOutcome::Answer { frame, close },
                        Err(end) => RequestOutcome::Close(end),
                    };
                }
            }
        }
        state.forwarded = true;
        let frame = match (request.body_changed, &request.body) {
            (true, Some(body)) => match encode_request_frame(&request.frame, &request.header, body)
            {
                Ok(frame) => frame,
                Err(end) => return RequestOutcome::Close(end),
            },
            _ => request.frame,
        };
        RequestOutcome::Forward {
            frame,
            deliver: !request.fire_and_forget,
            notes,
        }
    }

    async fn run_stage(
        &mut self,
        index: usize,
        state: &mut ConnectionState,
        request: &mut Request,
    ) -> Result<Flow, ConnectionEnd> {
        let Some(stage) = self.stages.get_mut(index) else {
            return Ok(Flow::Continue);
        };
        let header = &request.header;
        if request.body.is_none() && stage.decodes_request(header.api_key, header.api_version) {
            request.body = Some(decode_request(&request.frame, header)?);
        }
        Ok(match stage.on_request(state, request) {
            Step::Ready(flow) => flow,
            Step::Pending(future) => future.await,
        })
    }

    /// Tells the stages up to `index` that the request was refused.
    fn refused(&mut self, index: usize, header: &RequestHeader) {
        for stage in self.stages.iter_mut().take(index + 1) {
            stage.on_refused(header);
        }
    }

    /// Runs a broker response back through the stages (in reverse order). `frame` must
    /// answer `header`'s request; returns the frame to deliver.
    pub fn on_response(
        &mut self,
        state: &mut ConnectionState,
        owed: &Owed,
        frame: Bytes,
        mut notes: ResponseNotes,
    ) -> Result<Bytes, ConnectionEnd> {
        let (api, version) = (owed.api, owed.version);
        let body_offset = checked_response_header(&frame, owed)?;
        let decode =
            !notes.0.is_empty() || self.stages.iter().any(|s| s.decodes_response(api, version));
        if !decode {
            return Ok(frame);
        }
        let mut response = Response {
            api,
            version,
            body: Some(decode_response(&frame, body_offset, api, version)?),
            body_changed: false,
        };
        for (index, stage) in self.stages.iter_mut().enumerate().rev() {
            let note = match notes.0.last() {
                Some((i, _)) if *i == index => notes.0.pop().map(|(_, note)| note),
                _ => None,
            };
            if note.is_some() || stage.decodes_response(api, version) {
                stage.on_response(state, &mut response, note)?;
            }
        }
        match (response.body_changed, response.body) {
            (true, Some(body)) => reencoded_frame(&frame, body_offset, |out| {
                body.encode(out, version)
            })
            .map_err(|e| ConnectionEnd::Broker(format!("cannot re-encode {api:?} response: {e}"))),
            _ => Ok(frame),
        }
    }

    /// Checks that a broker response nobody will read (acks=0 Produce) answers `owed`.
    pub fn check_response(&self, owed: &Owed, frame: &[u8]) -> Result<(), ConnectionEnd> {
        checked_response_header(frame, owed).map(|_| ())
    }

    /// Tells the stages a response or answer reached the client.
    pub fn delivered(&mut self, api: ApiKey, started: Instant) {
        for stage in &mut self.stages {
            stage.on_delivered(api, started);
        }
    }
}

/// Checks that a broker response answers the `owed` request; returns where its body starts.
fn checked_response_header(frame: &[u8], owed: &Owed) -> Result<usize, ConnectionEnd> {
    let api = owed.api;
    let header_version = api.response_header_version(owed.version);
    let (got, body_offset) = peek_response_header(frame, header_version)
        .map_err(|e| ConnectionEnd::Broker(format!("bad {api:?} response header: {e}")))?;
    if got != owed.correlation_id {
        return Err(ConnectionEnd::Broker(format!(
            "{api:?} response has correlation id {got}, expected {}",
            owed.correlation_id
        )));
    }
    Ok(body_offset)
}

fn decode_response(
    frame: &Bytes,
    body_offset: usize,
    api: ApiKey,
    version: i16,
) -> Result<ResponseKind, ConnectionEnd> {
    let mut body = frame.slice(body_offset.min(frame.len())..);
    ResponseKind::decode(api, &mut body, version).map_err(|e| {
        ConnectionEnd::Broker(format!("cannot decode {api:?} v{version} response: {e:#}"))
    })
}

fn answer_frame(header: &RequestHeader, answer: Answer) -> Result<Bytes, ConnectionEnd> {
    match answer {
        Answer::Frame(frame) => Ok(frame),
        Answer::Body(body) => response_kind_frame(
            header.api_key,
            header.api_version,
            header.correlation_id,
            &body,
        )
        .map_err(|e| {
            ConnectionEnd::Broker(format!("cannot encode {:?} answer: {e}", header.api_key))
        }),
    }
}

/// Re-encodes a request a stage changed, keeping the client's header bytes.
fn encode_request_frame(
    frame: &Bytes,
    header: &RequestHeader,
    request: &RequestKind,
) -> Result<Bytes, ConnectionEnd> {
    reencoded_frame(frame, header.body_offset, |out| {
        request.encode(out, header.api_version)
    })
    .map_err(|e| {
        ConnectionEnd::Broker(format!(
            "cannot re-encode {:?} request: {e}",
            header.api_key
        ))
    })
}
