//! The connection's task: one loop over both sockets, the chain in between.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use portcullis_auth::{AuthFailure, FailureKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::authn::sasl_exchange::Session;
use crate::authn::ClientInfo;
use crate::codec::frame::{FrameError, LENGTH_PREFIX};
use crate::codec::header::peek_request_header;
use crate::connection::side::Side;
use crate::connection::{
    ConnectionEnd, ConnectionStats, Shared, Target, PRE_AUTH_HEADER_ALLOWANCE,
};
use crate::metrics;
use crate::net::source_gate::PreAuthPermit;
use crate::net::upstream::BoxedStream;
use crate::pipeline::api_table::{handling, Handling};
use crate::pipeline::session::settle_reply;
use crate::pipeline::{Chain, ConnectionState, Flow, Owed, Request, RequestOutcome, ResponseNotes};

/// Bytes queued for one side beyond which the proxy stops reading what would feed it.
const BACKLOG_LIMIT: usize = 1024 * 1024;

/// An answer the client is owed, in request order.
enum Pending {
    /// Built by the proxy; waits only for the answers before it.
    Local {
        frame: Bytes,
        api: ApiKey,
        started: std::time::Instant,
    },
    /// Will come from the broker.
    Upstream {
        owed: Owed,
        started: std::time::Instant,
        /// False for an acks=0 Produce: the answer is checked and dropped.
        deliver: bool,
        notes: ResponseNotes,
    },
}

/// What woke the loop.
enum Event {
    Client(Result<Option<Bytes>, FrameError>),
    Upstream(Result<Option<Bytes>, FrameError>),
    ClientWrite(std::io::Error),
    UpstreamWrite(std::io::Error),
    Deadline,
    Done,
}

/// One client connection and everything it owns.
pub struct Connection<S> {
    shared: Arc<Shared>,
    stats: Arc<ConnectionStats>,
    target: Target,
    state: ConnectionState,
    chain: Chain,
    client: Side<S>,
    upstream: Option<Side<BoxedStream>>,
    pending: VecDeque<Pending>,
    /// Why the client side ended, once it has: the answers already owed are still delivered.
    closing: Option<ConnectionEnd>,
    timer: Pin<Box<Sleep>>,
    /// When the client last completed a frame (idle time counts from here).
    client_active: Instant,
    /// When the client started the frame now buffered, if one is.
    frame_started: Option<Instant>,
    /// When the oldest answer owed by the broker started being waited for.
    head_since: Instant,
    auth_deadline: Instant,
    first_frame: bool,
    /// Held until the client authenticates (`limits.per_source`).
    pre_auth: Option<PreAuthPermit>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// A connection about to be served.
    pub fn new(
        stream: S,
        target: Target,
        shared: Arc<Shared>,
        stats: Arc<ConnectionStats>,
        client: ClientInfo,
        session: Session,
        pre_auth: PreAuthPermit,
    ) -> Connection<S> {
        let limits = &shared.limits;
        let max_frame = if session.principal().is_some() {
            limits.max_frame_bytes
        } else {
            limits.max_frame_bytes.min(
                shared
                    .auth
                    .settings
                    .max_message_bytes
                    .saturating_add(PRE_AUTH_HEADER_ALLOWANCE),
            )
        };
        let now = Instant::now();
        let pre_auth = session.principal().is_none().then_some(pre_auth);
        Connection {
            target,
            stats,
            state: ConnectionState::new(client, session),
            chain: Chain::new(&shared),
            client: Side::new(stream, max_frame),
            upstream: None,
            pending: VecDeque::new(),
            closing: None,
            timer: Box::pin(tokio::time::sleep_until(now)),
            client_active: now,
            frame_started: None,
            head_since: now,
            auth_deadline: now + shared.auth.settings.timeout(),
            first_frame: true,
            pre_auth,
            shared,
        }
    }

    /// Serves the connection until it ends; returns why. A first login left in the middle
    /// is recorded as a failed one (audit event, metric, per-source count).
    pub async fn run(mut self) -> ConnectionEnd {
        let end = self.serve_until_end().await;
        if let Some((mechanism, user)) = self.state.session.abandoned_exchange() {
            let failure = AuthFailure::new(
                FailureKind::Abandoned,
                user,
                format!("the connection ended during the SASL exchange: {end}"),
            );
            self.shared
                .auth
                .note_failure(&self.state.client, mechanism.name(), &failure);
        }
        end
    }

    async fn serve_until_end(&mut self) -> ConnectionEnd {
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            let step = match event {
                Event::Client(Ok(Some(frame))) => self.on_client_frame(frame).await,
                Event::Client(Ok(None)) => {
                    self.closing = Some(ConnectionEnd::ClientClosed);
                    Ok(())
                }
                Event::Client(Err(e)) => {
                    self.closing = Some(self.client_frame_end(e));
                    Ok(())
                }
                Event::Upstream(Ok(Some(frame))) => self.on_upstream_frame(frame),
                Event::Upstream(Ok(None)) => Err(ConnectionEnd::Broker("connection closed".into())),
                Event::Upstream(Err(e)) => Err(ConnectionEnd::Broker(e.to_string())),
                Event::ClientWrite(e) => Err(ConnectionEnd::ClientWrite(e)),
                Event::UpstreamWrite(e) => Err(ConnectionEnd::Broker(format!("write failed: {e}"))),
                Event::Deadline => self.on_deadline(),
                Event::Done => {
                    return self.closing.take().unwrap_or(ConnectionEnd::ClientClosed);
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(Err(e)) = self.client.poll_drain(cx) {
            return Poll::Ready(Event::ClientWrite(e));
        }
        if let Some(upstream) = &mut self.upstream {
            if let Poll::Ready(Err(e)) = upstream.poll_drain(cx) {
                return Poll::Ready(Event::UpstreamWrite(e));
            }
            // While nothing is owed the broker side is still watched: if it goes away the
            // client learns it now, not at its next request.
            if self.client.backlog() < BACKLOG_LIMIT {
                if let Poll::Ready(r) = upstream.poll_frame(cx) {
                    return Poll::Ready(Event::Upstream(r));
                }
            }
        }
        if self.reads_client() {
            if let Poll::Ready(r) = self.client.poll_frame(cx) {
                return Poll::Ready(Event::Client(r));
            }
            if self.client.reader.buffered() > 0 && self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
        }
        if self.closing.is_some() && self.pending.is_empty() && self.client.is_drained() {
            return Poll::Ready(Event::Done);
        }
        match self.deadline() {
            Some(deadline) => {
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Event::Deadline),
                    Poll::Pending => Poll::Pending,
                }
            }
            None => Poll::Pending,
        }
    }

    /// Whether the next client request may be read now.
    fn reads_client(&self) -> bool {
        self.closing.is_none()
            && self.pending.len() < self.shared.limits.max_inflight_requests
            && self
                .upstream
                .as_ref()
                .is_none_or(|u| u.backlog() < BACKLOG_LIMIT)
    }

    /// The earliest time something must have happened: the client's next frame (or the end
    /// of the one it started), or the broker's oldest owed answer.
    fn deadline(&self) -> Option<Instant> {
        let client = self.reads_client().then(|| self.client_deadline());
        let broker = self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Upstream { .. }))
            .then(|| self.head_since + self.shared.limits.upstream_response_timeout());
        match (client, broker) {
            (Some(c), Some(b)) => Some(c.min(b)),
            (c, b) => c.or(b),
        }
    }

    fn client_deadline(&self) -> Instant {
        let limits = &self.shared.limits;
        let (idle, frame_time) = if self.first_frame {
            (limits.handshake_timeout(), limits.handshake_timeout())
        } else {
            (limits.idle_timeout(), limits.frame_timeout())
        };
        let mut deadline = match self.frame_started {
            Some(started) => started + frame_time,
            None => self.client_active + idle,
        };
        if self.state.session.principal().is_none() {
            deadline = deadline.min(self.auth_deadline);
        } else if let Some(session_end) = self.state.session.deadline() {
            // An idle connection is closed when its session ends, not only at its next
            // request.
            deadline = deadline.min(Instant::from_std(session_end));
        }
        deadline
    }

    fn on_deadline(&mut self) -> Result<(), ConnectionEnd> {
        let now = Instant::now();
        if let Some(Pending::Upstream { owed, .. }) = self
            .pending
            .iter()
            .find(|p| matches!(p, Pending::Upstream { .. }))
        {
            let timeout = self.shared.limits.upstream_response_timeout();
            if now >= self.head_since + timeout {
                return Err(ConnectionEnd::Broker(format!(
                    "no {:?} response within {timeout:?}",
                    owed.api
                )));
            }
        }
        if self.reads_client() && now >= self.client_deadline() {
            let in_frame = self.frame_started.is_some();
            self.closing = Some(self.client_frame_end(FrameError::Timeout { in_frame }));
        }
        Ok(())
    }

    /// Why the connection ends after the client's frames failed with `error`.
    fn client_frame_end(&self, error: FrameError) -> ConnectionEnd {
        let timed_out = matches!(error, FrameError::Timeout { .. });
        let session = &self.state.session;
        if timed_out && session.principal().is_none() {
            return ConnectionEnd::AuthTimeout;
        }
        if timed_out
            && session
                .deadline()
                .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return ConnectionEnd::SessionEnded("session expired without re-authentication");
        }
        ConnectionEnd::ClientFrame(error)
    }

    async fn on_client_frame(&mut self, frame: Bytes) -> Result<(), ConnectionEnd> {
        self.client_active = Instant::now();
        self.frame_started = (self.client.reader.buffered() > 0).then_some(self.client_active);
        self.first_frame = false;
        self.stats
            .bytes_in
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        metrics::client_bytes().read.increment(frame.len() as u64);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if self.state.session.expects_raw_token() {
            return self.on_raw_token(frame).await;
        }
        let header = match peek_request_header(&frame) {
            Ok(header) => header,
            Err(e) => {
                self.closing = Some(e.into());
                return Ok(());
            }
        };
        if handling(header.api_key) != Handling::Sasl {
            let negotiated = self
                .shared
                .cluster
                .negotiated(self.shared.limits.handshake_timeout())
                .await;
            let Some(negotiated) = negotiated else {
                self.closing = Some(ConnectionEnd::ClusterUnavailable);
                return Ok(());
            };
            self.chain.set_cluster_versions(&mut self.state, negotiated);
        }
        let owed = Owed::of(&header);
        let request = Request::new(frame, header);
        let started = request.started;
        match self.chain.on_request(&mut self.state, request).await {
            RequestOutcome::Forward {
                frame,
                deliver,
                notes,
            } => {
                self.forward(frame).await?;
                if self.pending.is_empty() {
                    self.head_since = Instant::now();
                }
                self.pending.push_back(Pending::Upstream {
                    owed,
                    started,
                    deliver,
                    notes,
                });
            }
            RequestOutcome::Answer { frame, close } => {
                self.answer(frame, owed.api, started);
                if close.is_some() {
                    self.closing = close;
                }
            }
            RequestOutcome::Drop => {}
            RequestOutcome::Close(end) => self.closing = Some(end),
        }
        self.after_authentication();
        Ok(())
    }

    /// A raw SASL token of the legacy v0 flow (no Kafka header).
    async fn on_raw_token(&mut self, frame: Bytes) -> Result<(), ConnectionEnd> {
        let ConnectionState {
            session,
            client,
            principal_epoch,
            ..
        } = &mut self.state;
        let token = frame.get(LENGTH_PREFIX..).unwrap_or_default();
        let reply = session.raw_token(token, &self.shared.auth, client).await;
        match settle_reply(reply, session, principal_epoch) {
            Flow::Answer { answer, close } => {
                if let crate::pipeline::Answer::Frame(frame) = answer {
                    self.send_to_client(frame);
                }
                if close.is_some() {
                    self.closing = close;
                }
            }
            Flow::Close(end) => self.closing = Some(end),
            Flow::Continue | Flow::Drop => {}
        }
        self.after_authentication();
        Ok(())
    }

    /// Once authenticated, the client may send frames up to the full limit, and no longer
    /// counts among its source's unauthenticated connections.
    fn after_authentication(&mut self) {
        if self.state.session.principal().is_some() {
            self.pre_auth = None;
            self.client
                .reader
                .set_max_frame(self.shared.limits.max_frame_bytes);
        }
    }

    /// Queues `frame` for the broker, opening the upstream connection first if there is
    /// none yet.
    async fn forward(&mut self, frame: Bytes) -> Result<(), ConnectionEnd> {
        let upstream = match &mut self.upstream {
            Some(upstream) => upstream,
            None => {
                let stream = connect_upstream(self.target, &self.shared).await?;
                let limit = self.shared.limits.max_response_frame_bytes;
                self.upstream.insert(Side::new(stream, limit))
            }
        };
        upstream.send(frame);
        Ok(())
    }

    /// A local answer: written now if nothing before it is still owed, else queued.
    fn answer(&mut self, frame: Bytes, api: ApiKey, started: std::time::Instant) {
        if self.pending.is_empty() {
            self.send_to_client(frame);
            self.chain.delivered(api, started);
        } else {
            self.pending.push_back(Pending::Local {
                frame,
                api,
                started,
            });
        }
    }

    fn send_to_client(&mut self, frame: Bytes) {
        self.stats
            .bytes_out
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        metrics::client_bytes()
            .written
            .increment(frame.len() as u64);
        self.client.send(frame);
    }

    /// A broker frame: the answer to the oldest request owed one.
    fn on_upstream_frame(&mut self, frame: Bytes) -> Result<(), ConnectionEnd> {
        let Some(Pending::Upstream {
            owed,
            started,
            deliver,
            notes,
        }) = self.pending.pop_front()
        else {
            return Err(ConnectionEnd::Broker(
                "sent a response nobody asked for".into(),
            ));
        };
        self.head_since = Instant::now();
        if deliver {
            let frame = self
                .chain
                .on_response(&mut self.state, &owed, frame, notes)?;
            self.send_to_client(frame);
            self.chain.delivered(owed.api, started);
        } else {
            self.chain.check_response(&owed, &frame)?;
        }
        while let Some(Pending::Local { .. }) = self.pending.front() {
            if let Some(Pending::Local {
                frame,
                api,
                started,
            }) = self.pending.pop_front()
            {
                self.send_to_client(frame);
                self.chain.delivered(api, started);
            }
        }
        Ok(())
    }
}

async fn connect_upstream(target: Target, shared: &Shared) -> Result<BoxedStream, ConnectionEnd> {
    let connected = match target {
        Target::Bootstrap => shared
            .connector
            .connect_bootstrap()
            .await
            .map_err(Into::into),
        Target::Broker(node_id) => match shared.brokers.upstream_of(node_id) {
            Some((host, port)) => shared
                .connector
                .connect(&host, port)
                .await
                .map_err(Into::into),
            None => Err(ConnectionEnd::Broker(format!(
                "broker {node_id} is unknown"
            ))),
        },
    };
    let counter = match connected {
        Ok(_) => crate::metrics::UPSTREAM_CONNECTIONS,
        Err(_) => crate::metrics::UPSTREAM_CONNECT_FAILURES,
    };
    ::metrics::counter!(counter).increment(1);
    connected
}
