//! The data path as a chain of stages.
//!
//! Every concern the proxy has about a Kafka message (is the api served? is the session
//! still valid? is the body well formed? may this principal do it? which broker addresses
//! must be rewritten?) is one [`Stage`]. A stage declares which (api key, version) it must
//! see decoded, requests and responses separately, and which versions it can enforce; the
//! [`Chain`] runs requests through the stages in order and responses back through them in
//! reverse, decodes a message at most once per direction and only when a stage asked for
//! it, and re-encodes it only when a stage changed it. Everything else travels as the
//! client's or the broker's original bytes.
//!
//! Stages are sans-io: they see decoded messages and the connection's [`ConnectionState`],
//! never sockets, so each is tested with plain values. The one exception is
//! authentication, whose exchange awaits the audit log: a stage may answer with
//! [`Step::Pending`], a future the connection awaits.
//!
//! The order (see [`Chain::new`]): metrics, api gate, session, request limits, structural
//! validation, authorization, record encryption, address rewriting. A new concern is a new
//! stage inserted where it belongs in that list.

pub mod address_rewrite;
pub mod api_gate;
pub mod api_table;
pub mod authz;
mod chain;
pub mod encryption;
pub mod limits;
pub mod metrics;
pub mod session;
pub mod validation;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::VersionRange;

use crate::authn::sasl_exchange::Session;
use crate::authn::ClientInfo;
use crate::cluster::api_versions::Negotiated;
use crate::codec::header::RequestHeader;
use crate::connection::ConnectionEnd;

pub use chain::{Chain, Owed, RequestOutcome, ResponseNotes};

/// What one connection knows about itself, shared by every stage: the one place its
/// session lives, so request and response handling cannot disagree about it.
#[derive(Debug)]
pub struct ConnectionState {
    /// Who the client is (address, listener, TLS identity).
    pub client: ClientInfo,
    /// The authentication state.
    pub session: Session,
    /// Bumped whenever the session's principal is (re)established, so stages that derive
    /// state from it (authorization's roles) rebuild it.
    pub principal_epoch: u64,
    /// Whether a request has been forwarded upstream yet.
    pub forwarded: bool,
    /// The api versions served on this connection (the cluster's, narrowed by every stage);
    /// `None` until the cluster has answered.
    pub served: Option<std::sync::Arc<Negotiated>>,
}

impl ConnectionState {
    /// The state of a new connection.
    pub fn new(client: ClientInfo, session: Session) -> ConnectionState {
        ConnectionState {
            client,
            session,
            principal_epoch: 0,
            forwarded: false,
            served: None,
        }
    }
}

/// One client request on its way through the chain.
#[derive(Debug)]
pub struct Request {
    /// The request header (peeked, never re-encoded).
    pub header: RequestHeader,
    /// The whole frame as the client sent it (length prefix included). Forwarded as is
    /// unless a stage changes the body or replaces the frame.
    pub frame: Bytes,
    /// The decoded body, once a stage asked for it.
    pub body: Option<RequestKind>,
    /// A stage changed `body`: it is re-encoded before forwarding.
    pub body_changed: bool,
    /// An acks=0 Produce: the client expects no answer (it is forwarded as acks=1 and the
    /// broker's answer is dropped, which keeps responses and requests matched).
    pub fire_and_forget: bool,
    /// When the proxy read it.
    pub started: Instant,
    /// How many topics, partitions, groups, resources and other entries it names (counted
    /// by the request-limits stage; 0 until then).
    pub named_items: u64,
    note: Option<Note>,
}

impl Request {
    /// A request read from the client.
    pub fn new(frame: Bytes, header: RequestHeader) -> Request {
        Request {
            header,
            frame,
            body: None,
            body_changed: false,
            fire_and_forget: false,
            started: Instant::now(),
            named_items: 0,
            note: None,
        }
    }

    /// Leaves `state` for the stage's own `on_response` of this request.
    pub fn leave_note<T: Any + Send>(&mut self, state: T) {
        self.note = Some(Box::new(state));
    }
}

/// State a stage left with a request for its response.
pub type Note = Box<dyn Any + Send>;

/// One broker response on its way back through the chain.
#[derive(Debug)]
pub struct Response {
    /// The api key of the request it answers.
    pub api: ApiKey,
    /// The version of the request it answers.
    pub version: i16,
    /// The decoded body, when a stage asked for it.
    pub body: Option<ResponseKind>,
    /// A stage changed `body`: it is re-encoded before delivery.
    pub body_changed: bool,
}

/// A local answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// A whole frame built by the stage.
    Frame(Bytes),
    /// A response body the chain encodes for the request's version and correlation id.
    Body(Box<ResponseKind>),
}

/// What a stage decided about a request.
#[derive(Debug)]
pub enum Flow {
    /// Pass the request to the next stage (the last one forwards it).
    Continue,
    /// Answer locally; nothing goes upstream. With `close`, the connection ends after the
    /// answer is written.
    Answer {
        /// The answer.
        answer: Answer,
        /// Why the connection closes after it, if it does.
        close: Option<ConnectionEnd>,
    },
    /// Neither forward nor answer (a wholly denied acks=0 Produce).
    Drop,
    /// Close the connection (after the responses already owed are delivered).
    Close(ConnectionEnd),
}

impl Flow {
    /// A local answer that keeps the connection open.
    pub fn answer(answer: Answer) -> Flow {
        Flow::Answer {
            answer,
            close: None,
        }
    }
}

/// A stage's decision, now or after an await (authentication).
pub enum Step<'a> {
    /// Decided.
    Ready(Flow),
    /// Decided once the future completes.
    Pending(Pin<Box<dyn Future<Output = Flow> + Send + 'a>>),
}

impl From<Flow> for Step<'_> {
    fn from(flow: Flow) -> Self {
        Step::Ready(flow)
    }
}

/// One concern of the data path. See the module docs for the order and the contract.
pub trait Stage: Send {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Narrows the versions of `api` the connection may use to those this stage can
    /// handle; `None` removes the api key (it is not advertised, and requests for it are
    /// refused). The served set is the intersection over the chain.
    fn versions(&self, _api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        Some(offered)
    }

    /// Whether this stage must see requests of `api` at `version` decoded.
    fn decodes_request(&self, _api: ApiKey, _version: i16) -> bool {
        false
    }

    /// Whether this stage must see responses of `api` at `version` decoded. A stage that
    /// left a note with the request always sees its response decoded.
    fn decodes_response(&self, _api: ApiKey, _version: i16) -> bool {
        false
    }

    /// Decides about a request. `request.body` is decoded when [`Stage::decodes_request`]
    /// said so.
    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a>;

    /// Sees a response on its way back, with the note the stage left with its request.
    /// `response.body` is decoded when the stage asked for it or left a note.
    fn on_response(
        &mut self,
        _state: &mut ConnectionState,
        _response: &mut Response,
        _note: Option<Note>,
    ) -> Result<(), ConnectionEnd> {
        Ok(())
    }

    /// Told when a request ends the connection or is refused at this stage or a later one
    /// (metrics count errors here).
    fn on_refused(&mut self, _header: &RequestHeader) {}

    /// Told when a response (or a local answer) has been handed to the client.
    fn on_delivered(&mut self, _api: ApiKey, _started: Instant) {}
}
