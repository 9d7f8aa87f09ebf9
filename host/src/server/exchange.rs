//! One request from its arrival to its one log line.
//!
//! The line is written, and the request counted, exactly once: by `finish`,
//! or, when the client goes away before an answer (hyper then drops the
//! request's future), by `Drop` with status 499 as nginx logs it. Either way
//! `requests_in_flight` comes down and the guest, if one runs, is stopped.

use std::sync::Arc;

use hyper::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::runtime::Services;
use crate::telemetry::logging::Level;
use crate::telemetry::metrics::OTHER_ROUTE;
use crate::telemetry::request_log::{self, LogFields, RequestInfo};

/// What nginx logs for a request whose client closed the connection first.
const CLIENT_CLOSED: u16 = 499;

/// A request in flight; `finish` it with its answer.
pub(super) struct Exchange {
    services: Arc<Services>,
    info: Option<RequestInfo>,
    cancel: CancellationToken,
}

impl Exchange {
    /// Counts a request as in flight from now.
    pub(super) fn begin(services: Arc<Services>, info: RequestInfo) -> Self {
        services.metrics.request_started();
        Self {
            services,
            info: Some(info),
            cancel: CancellationToken::new(),
        }
    }

    /// What the host knows of the request.
    pub(super) fn info(&self) -> &RequestInfo {
        self.info.as_ref().expect("an exchange is finished only once")
    }

    /// The services it is counted and logged with.
    pub(super) fn services(&self) -> &Services {
        &self.services
    }

    /// Fires when the client has gone away before the answer.
    pub(super) fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Counts and logs the request with its answer.
    pub(super) fn finish(mut self, status: StatusCode, fields: LogFields, failure: Option<&str>) {
        if let Some(info) = self.info.take() {
            complete(&self.services, &info, status.as_u16(), fields, failure);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let Some(info) = self.info.take() else { return };
        self.cancel.cancel();
        let mut fields = LogFields::default();
        fields.name_route(self.services.metrics.known_route(&info.path).unwrap_or(OTHER_ROUTE));
        // The client's doing, not a fault of the service: a warning.
        fields.escalate(Level::Warn);
        fields.set("failure", "client_closed".into());
        complete(&self.services, &info, CLIENT_CLOSED, fields, None);
    }
}

fn complete(services: &Services, info: &RequestInfo, status: u16, fields: LogFields, failure: Option<&str>) {
    let latency = request_log::latency_ms(info.started);
    let route = fields.route().unwrap_or(OTHER_ROUTE);
    services.metrics.record_request(route, status, latency);
    request_log::finish(info, status, fields, failure);
}
