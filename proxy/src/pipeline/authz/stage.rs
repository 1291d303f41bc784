//! The authorization stage: every request authorized against the policies, partly denied
//! requests split, and the broker's answer merged back and filtered.
//!
//! Both sides use permissions held here and rebuilt together whenever the session's
//! principal is re-established (re-authentication may bring other roles), so a response
//! is always filtered with the same roles its request was authorized with.

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use portcullis_audit::ClientId;

use crate::cluster::api_versions::enforceable_range;
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::{handling, Handling};
use crate::pipeline::authz::request::{authorize_request, Action};
use crate::pipeline::authz::response::{fix_response, ResponseFix};
use crate::pipeline::authz::{AuthzService, ConnectionPermissions, RequestContext};
use crate::pipeline::{Answer, ConnectionState, Flow, Note, Request, Response, Stage, Step};

/// Authorizes requests and fixes their responses.
pub struct Authorization {
    service: Arc<AuthzService>,
    /// The principal epoch the permissions below were built for.
    epoch: Option<u64>,
    /// Decisions about requests (denials audited).
    requests: Option<ConnectionPermissions>,
    /// Decisions made while filtering responses (listings are not denied requests).
    responses: Option<ConnectionPermissions>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// The stage for one connection.
    pub fn new(service: Arc<AuthzService>) -> Authorization {
        Authorization {
            service,
            epoch: None,
            requests: None,
            responses: None,
        }
    }

    /// The permissions for the session's current principal: (requests, responses).
    fn permissions(
        &mut self,
        state: &ConnectionState,
    ) -> (&mut ConnectionPermissions, &mut ConnectionPermissions) {
        if self.epoch != Some(state.principal_epoch) {
            self.epoch = Some(state.principal_epoch);
            self.requests = None;
            self.responses = None;
        }
        let principal = state.session.principal();
        let service = &self.service;
        let requests = self
            .requests
            .get_or_insert_with(|| service.connection(principal, &state.client, true));
        let responses = self
            .responses
            .get_or_insert_with(|| service.connection(principal, &state.client, false));
        (requests, responses)
    }

    fn authorize(&mut self, state: &ConnectionState, request: &mut Request) -> Flow {
        let header = &mut request.header;
        let (api, version) = (header.api_key, header.api_version);
        let Some(body) = request.body.as_mut() else {
            return Flow::Close(ConnectionEnd::Refused {
                api,
                version,
                reason: "request was not decoded for the authorizer",
            });
        };
        let (perms, _) = self.permissions(state);
        perms.begin_request(RequestContext {
            api,
            version,
            correlation_id: header.correlation_id,
            // Cut and hashed once for all of the request's events.
            client_id: header.client_id.take().map(ClientId::new),
        });
        let verdict = if request.named_items >= OFF_WORKER_ITEMS {
            off_worker(|| authorize_request(body, version, perms))
        } else {
            authorize_request(body, version, perms)
        };
        match verdict.action {
            Action::Forward => {}
            Action::ForwardModified => request.body_changed = true,
            Action::Drop => return Flow::Drop,
            Action::Refuse => {
                return Flow::Close(ConnectionEnd::Refused {
                    api,
                    version,
                    reason: "not enforced by the authorizer",
                })
            }
            Action::Answer(response) => return Flow::answer(Answer::Body(response)),
        }
        if let Some(fix) = verdict.fix {
            request.leave_note(fix);
        }
        Flow::Continue
    }
}

/// Requests naming at least this many items are authorized off the async worker.
pub const OFF_WORKER_ITEMS: u64 = 1_000;

/// Runs `f` (a long stretch of decisions) after handing this worker's other tasks to the
/// rest of the runtime, so a request naming 50,000 topics does not hold up the logins and
/// requests of other connections queued on the same worker. Outside a multi-threaded
/// runtime (unit tests) it just runs `f`.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Stage for Authorization {
    fn name(&self) -> &'static str {
        "authorization"
    }

    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        enforceable_range(api, offered)
    }

    fn decodes_request(&self, api: ApiKey, _version: i16) -> bool {
        !matches!(handling(api), Handling::Sasl | Handling::Local)
    }

    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        self.authorize(state, request).into()
    }

    fn on_response(
        &mut self,
        state: &mut ConnectionState,
        response: &mut Response,
        note: Option<Note>,
    ) -> Result<(), ConnectionEnd> {
        let Some(fix) = note.and_then(|n| n.downcast::<ResponseFix>().ok()) else {
            return Ok(());
        };
        let Some(body) = response.body.as_mut() else {
            return Ok(());
        };
        let (_, perms) = self.permissions(state);
        fix_response(&fix, body, perms);
        response.body_changed = true;
        Ok(())
    }
}
