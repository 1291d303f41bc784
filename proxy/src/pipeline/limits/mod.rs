//! Request limits: how many items one request may name, counted before it is decoded.
//!
//! A decoded request costs far more than its bytes: an empty topic name is two bytes on the
//! wire and some eighty once decoded, so a 100 MiB Metadata request of declared topics would
//! take gigabytes to decode (and then cost one policy decision and, before aggregation, one
//! audit event per name). This stage reads the top-level and nested array counts straight
//! from the frame, walking the body as Apache Kafka's own message specification describes it
//! (`spec.rs`, `walk.rs`), and refuses a request that names more topics, partitions, groups,
//! config resources or other entries than `[limits]` allows, before anything is decoded.
//! It therefore sits after the session stage (nothing but SASL reaches it unauthenticated)
//! and before validation, the first stage that asks the chain to decode.
//!
//! A refused request is answered with `POLICY_VIOLATION` where the response has a top-level
//! error code (`answer.rs`); for every other api the connection is closed, which is what a
//! Kafka broker does with a request it cannot accept and the only answer that does not cost
//! one entry per named item. Every refusal is counted in
//! `portcullis_request_limit_refusals_total{api,limit}` and audited (`refusal_audit.rs`):
//! the first of a connection at once, later ones in one summary per window.

mod answer;
mod counts;
mod refusal_audit;
mod spec;
mod walk;

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use portcullis_audit::AuditSink;

use crate::config::LimitsConfig;
use crate::connection::ConnectionEnd;
use crate::pipeline::api_table::{handling, Handling};
use crate::pipeline::validation::RequestCheckError;
use crate::pipeline::{Answer, ConnectionState, Flow, Request, Stage, Step};

pub use counts::{Category, Counts, ItemLimits};
pub use spec::{parse_message, specs, MessageSpec};
pub use walk::{count_items, walk, WalkError};

use refusal_audit::RefusalAudit;

/// The request-limits stage of one connection.
pub struct RequestLimits {
    limits: ItemLimits,
    audit: RefusalAudit,
}

impl std::fmt::Debug for RequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLimits")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RequestLimits {
    /// The stage with the limits of `config`, auditing refusals into `audit`.
    pub fn new(config: &LimitsConfig, audit: Arc<dyn AuditSink>) -> RequestLimits {
        RequestLimits {
            limits: ItemLimits::from_config(config),
            audit: RefusalAudit::new(audit),
        }
    }

    fn check(&mut self, state: &ConnectionState, request: &mut Request) -> Flow {
        let header = &request.header;
        let (api, version) = (header.api_key, header.api_version);
        let Some(spec) = specs().get(&(api as i16)) else {
            return Flow::Close(ConnectionEnd::Refused {
                api,
                version,
                reason: "no request specification to bound it by",
            });
        };
        let body = request.frame.get(header.body_offset..).unwrap_or_default();
        match count_items(spec, version, body, &self.limits) {
            Ok(counts) => {
                request.named_items = Category::ALL.iter().map(|c| counts.get(*c)).sum();
                Flow::Continue
            }
            Err(WalkError::Exceeded {
                category,
                count,
                limit,
            }) => {
                self.audit
                    .refused(state, header, category, count, limit, body.len());
                match answer::refusal(api, version) {
                    Some(body) => Flow::answer(Answer::Body(Box::new(body))),
                    None => Flow::Close(ConnectionEnd::OverLimit(format!(
                        "{api:?} v{version} names {count} {} or more (limit {limit})",
                        category.as_str()
                    ))),
                }
            }
            Err(e) => Flow::Close(ConnectionEnd::BadRequest(RequestCheckError::Undecodable {
                api,
                version,
                reason: e.to_string(),
            })),
        }
    }
}

impl Stage for RequestLimits {
    fn name(&self) -> &'static str {
        "request_limits"
    }

    /// Versions the specification describes: a version it does not know cannot be bounded
    /// and is not served (fail closed). SASL and ApiVersions never reach the stage.
    fn versions(&self, api: ApiKey, offered: VersionRange) -> Option<VersionRange> {
        if matches!(handling(api), Handling::Sasl | Handling::Local) {
            return Some(offered);
        }
        let valid = specs().get(&(api as i16))?.valid;
        let range = VersionRange {
            min: offered.min.max(valid.min),
            max: offered.max.min(valid.max),
        };
        (range.min <= range.max).then_some(range)
    }

    fn on_request<'a>(
        &'a mut self,
        state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        self.check(state, request).into()
    }
}

#[cfg(test)]
mod tests;
