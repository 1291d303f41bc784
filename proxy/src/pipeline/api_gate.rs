//! The api gate: which api keys and versions are served at all, and the ApiVersions answer.
//!
//! Fail closed: a key the proxy never serves (`api_table`) or a version outside the set the
//! connection was offered closes the connection. ApiVersions itself is answered here with
//! the served set, the intersection of the cluster's versions and every stage's.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

use crate::cluster::api_versions::api_versions_response_frame;
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::{handling, proxy_versions, Handling};
use crate::pipeline::{Answer, ConnectionState, Flow, Request, Stage, Step};

/// Refuses api keys and versions that are not served; answers ApiVersions.
#[derive(Debug, Default)]
pub struct ApiGate;

impl Stage for ApiGate {
    fn name(&self) -> &'static str {
        "api_gate"
    }

    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        let ours = proxy_versions(api)?;
        Some(ours.intersect(&offered)).filter(|r| !r.is_empty())
    }

    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        gate(state, request).into()
    }
}

fn gate(state: &ConnectionState, request: &Request) -> Flow {
    let header = &request.header;
    let api = header.api_key;
    let refuse = |reason: &'static str| {
        Flow::Close(ConnectionEnd::Refused {
            api,
            version: header.api_version,
            reason,
        })
    };
    match handling(api) {
        Handling::Refused(reason) => return refuse(reason.as_str()),
        // Served (or refused) by the session stage, which needs no cluster.
        Handling::Sasl => return Flow::Continue,
        Handling::Local | Handling::Raw | Handling::RewriteResponse => {}
    }
    let Some(served) = &state.served else {
        return Flow::Close(ConnectionEnd::ClusterUnavailable);
    };
    if api == ApiKey::ApiVersions {
        // Any version is answered: too-new versions get Kafka's v0 error answer.
        return match api_versions_response_frame(served, header.api_version, header.correlation_id)
        {
            Ok(frame) => Flow::answer(Answer::Frame(frame)),
            Err(e) => Flow::Close(ConnectionEnd::Broker(format!(
                "cannot encode ApiVersions: {e}"
            ))),
        };
    }
    if !served.allows(api, header.api_version) {
        return refuse("version not served");
    }
    Flow::Continue
}
