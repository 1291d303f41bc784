//! The metrics stage: per-api request, error and duration metrics.
//!
//! It stands first in the chain, so it counts every request (refused ones too) and sees
//! every delivery last.

use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use crate::codec::header::RequestHeader;
use crate::metrics;
use crate::pipeline::{ConnectionState, Flow, Request, Stage, Step};

/// Counts requests and errors and times deliveries, per api key.
#[derive(Debug, Default)]
pub struct Metrics;

impl Stage for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn on_request<'a>(
        &'a mut self,
        _state: &'a mut ConnectionState,
        request: &'a mut Request,
    ) -> Step<'a> {
        metrics::api(request.header.api_key).requests.increment(1);
        Flow::Continue.into()
    }

    fn on_refused(&mut self, header: &RequestHeader) {
        metrics::api(header.api_key).errors.increment(1);
    }

    fn on_delivered(&mut self, api: ApiKey, started: Instant) {
        metrics::api(api)
            .duration
            .record(started.elapsed().as_secs_f64());
    }
}
